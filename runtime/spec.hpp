// A container's OCI runtime configuration: the Create request of the varlink
// API and the image's defaults become a checked plan, and the plan becomes
// config.json (runtime-spec 1.0.2) plus the files bind-mounted into /etc.
#pragma once

#include "protocol/gen/io_podman.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace berth::runtime {

/// What a container started from the image gets unless told otherwise.
struct image_defaults {
  std::vector<std::string> entrypoint, cmd, env; ///< env as "K=V"
  std::string user, working_dir;
  std::string stop_signal;          ///< as in the config: "SIGTERM", "15", ...
  std::vector<std::string> volumes; ///< ignored: no volume support yet
};

enum class ns_mode { private_, host, container };

/// The choice for one of the pid, ipc, uts and net namespaces.
struct ns_choice {
  ns_mode mode = ns_mode::private_;
  std::string container; ///< the name or ID as given, for mode container
};

struct bind_mount {
  std::string source, destination;
  std::vector<std::string> options;
};

/// A host device node made available in the container.
struct device_node {
  std::string path; ///< inside the container
  char type = 'c';  ///< 'c' or 'b'
  int64_t major = 0, minor = 0;
  uint32_t file_mode = 0, uid = 0, gid = 0;
  std::string access = "rwm"; ///< cgroup permissions
};

/// One process rlimit, as requested; render_spec clamps it to the host.
struct rlimit_setting {
  std::string type;            ///< "RLIMIT_NOFILE"
  int resource = 0;            ///< RLIMIT_NOFILE
  uint64_t soft = 0, hard = 0; ///< UINT64_MAX = unlimited
};

/// A per-device block I/O weight or throttle.
struct blkio_device {
  int64_t major = 0, minor = 0;
  uint64_t value = 0;
};

/// linux.resources; zero means "not set" for every field but the ones
/// noted.
struct resource_limits {
  int64_t memory = 0, memory_reservation = 0, kernel_memory = 0;
  int64_t memory_swap = 0;        ///< total memory+swap; -1 = unlimited
  int64_t memory_swappiness = -1; ///< -1 = not set
  bool disable_oom_killer = false;
  uint64_t cpu_shares = 0, cpu_period = 0, cpu_rt_period = 0;
  int64_t cpu_quota = 0, cpu_rt_runtime = 0;
  std::string cpuset_cpus, cpuset_mems;
  int64_t pids_limit = 0; ///< -1 = unlimited
  uint16_t blkio_weight = 0;
  std::vector<blkio_device> weight_device, read_bps, write_bps, read_iops,
      write_iops;
};

struct container_plan {
  std::vector<std::string> args; ///< entrypoint + command, podman's rules
  /// "K=V": defaults (PATH, TERM when tty, HOSTNAME when known), image env,
  /// then the request's env, later ones replacing earlier ones in place.
  std::vector<std::string> env;
  std::string work_dir = "/";
  std::string user;     ///< as given or the image's; "" = root
  std::string hostname; ///< "" -> the first 12 hex digits of the ID
  bool tty = false, interactive = false, readonly_rootfs = false,
       privileged = false, no_new_privs = false, init = false, rm = false;
  int stop_signal = 15;
  unsigned stop_timeout = 10;     ///< seconds
  ns_choice pid, ipc, uts, net;   ///< net private = own netns, loopback only
  std::vector<bind_mount> binds;  ///< from volumes "src:dst[:opts]"
  std::vector<std::string> tmpfs; ///< "dst[:opts]" as given, validated
  std::vector<std::string> caps;  ///< "CAP_CHOWN", ...; all when privileged
  std::vector<device_node> devices;
  std::map<std::string, std::string> sysctls;
  std::vector<rlimit_setting> rlimits; ///< always has nofile and nproc
  resource_limits resources;
  int oom_score_adj = 0;
  int64_t shm_size = 64 << 20; ///< bytes of the /dev/shm tmpfs
  std::vector<std::string> dns_servers, dns_search, dns_options;
  std::vector<std::pair<std::string, std::string>> hosts; ///< name, address
  std::vector<std::string> group_add; ///< names or numbers, resolved later
  std::map<std::string, std::string> labels;
  std::string init_path; ///< "" -> render_inputs::init_path
  std::string cgroup_parent;
  int64_t log_max_size = -1; ///< bytes, -1 = unlimited
};

/// Checks and normalises a CreateContainer request against the image's
/// defaults. False with `err` naming the bad field and value, e.g.
/// `invalid ulimit "nofile=abc": ...`. Host paths given (volumes, devices)
/// must exist. Notes on choices where the wire is ambiguous:
/// - net_mode "" is podman's default bridge; until bridge networking exists
///   it means "none". "bridge", "slirp4netns" and the rest are refused.
/// - memory_swappiness 0 counts as "not set" like -1: a client that omits
///   the field sends 0.
/// - The command comes from `command`, or else from `args` after the image
///   name (later 1.x clients), see requested_command().
bool plan_container(const podman::Create& c, const image_defaults& img,
                    container_plan& out, std::string& err);

/// The command a request asks for: `command` when given, otherwise the
/// elements of `args` after the image (args[0]).
std::vector<std::string> requested_command(const podman::Create& c);

struct render_inputs {
  std::string id; ///< 64 hex digits
  /// The mounted root (absolute); its /etc/passwd and /etc/group are read.
  std::string rootfs;
  /// resolv.conf, hosts and hostname are written here.
  std::string userdata;
  std::string cgroups_path; ///< e.g. "/berth/<id>"
  std::string init_path = "/usr/bin/catatonit";
  /// For ns_mode::container: the running pid of the target container.
  pid_t pid_ns_pid = 0, ipc_ns_pid = 0, uts_ns_pid = 0, net_ns_pid = 0;
  /// The host directory mounted at /dev/shm: a tmpfs the caller mounted for
  /// this container (private IPC), or the one of the container whose IPC
  /// namespace it joins. Empty with private IPC: a tmpfs of its own inside.
  std::string shm_path;
  /// For a joined UTS namespace: the target's hostname (for HOSTNAME and
  /// /etc/hostname); "" -> this container's own hostname.
  std::string uts_hostname;
  std::string host_hosts = "/etc/hosts", host_resolv = "/etc/resolv.conf";
};

/// Writes userdata/{resolv.conf,hosts,hostname} and returns config.json.
/// Resolves the user and group_add in the root file system (never following
/// a link out of it) and clamps rlimits to this process's hard limits.
bool render_spec(const container_plan& p, const render_inputs& in,
                 std::string& json, std::string& err);

/// "SIGTERM", "TERM", "term", "15", "SIGRTMIN+3", "RTMIN+3", "RTMAX-2" ->
/// the signal number (1-64); 0 if invalid.
int parse_signal(std::string_view s);

/// The user and groups a process runs as.
struct exec_ids {
  uint32_t uid = 0, gid = 0;
  std::vector<uint32_t> additional_gids;
  std::string home = "/"; ///< from /etc/passwd when the user is listed
};

/// Resolves "", "name", "uid", "name:group", "uid:gid" and extra groups in
/// `rootfs`'s /etc/passwd and /etc/group, docker's way: a number not listed
/// is taken as is (gid 0 when no group is given), a name not listed is an
/// error. Links in the root file system never lead out of it.
bool resolve_user(const std::string& rootfs, const std::string& user,
                  const std::vector<std::string>& group_add, exec_ids& out,
                  std::string& err);

} // namespace berth::runtime
