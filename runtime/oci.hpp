// The OCI runtime (crun or runc) and its monitor conmon, driven by their
// command lines: create through conmon, then start, kill, pause, resume,
// delete and state through the runtime itself.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <sys/types.h>
#include <vector>

namespace berth::runtime {

struct runtime_info {
  std::string name; ///< "runc"
  std::string path; ///< "/usr/sbin/runc"
};

/// Picks the OCI runtime. `wanted` "" means crun when it can run on this
/// host, else runc; `note` then says in one line why crun was passed over
/// (the caller logs it once). "crun", "runc" or an absolute path mean that
/// one, an error when missing. crun's problem is read from facts, not tried:
/// hybrid cgroups, i.e. a v1 hierarchy mounted and a non-empty
/// /sys/fs/cgroup/unified/cgroup.controllers.
bool choose_runtime(const std::string& wanted, runtime_info& out,
                    std::string& note, std::string& err);

/// True when crun 1.8 refuses this host: cgroup v1 mounted and controllers
/// on the v2 hierarchy beside it. `controllers` gets that v2 list.
bool hybrid_cgroups(std::string& controllers);

struct oci_paths {
  std::string runtime_root; ///< --root of the runtime, e.g. RUNROOT/runc
  std::string exits_dir;    ///< conmon --exit-dir, e.g. RUNROOT/exits
  std::string sockets_dir;  ///< conmon --socket-dir-path, RUNROOT/socket
  std::string conmon = "/usr/bin/conmon";
};

struct create_request {
  std::string id, name;
  /// Holds config.json (whose root.path names the rootfs). conmon also puts
  /// its `ctl` and `winsz` FIFOs and the `attach` socket here.
  std::string bundle;
  /// conmon's pid files: `pidfile` (the container's) and `conmon.pid`.
  std::string userdata;
  std::string log_path; ///< k8s-file log
  int64_t log_max_size = -1;
  bool tty = false, interactive = false;
};

struct created {
  pid_t pid = 0;
  pid_t conmon_pid = 0;
};

class oci {
public:
  oci(runtime_info rt, oci_paths paths);

  const runtime_info& info() const { return rt_; }
  const oci_paths& paths() const { return paths_; }

  /// Starts conmon with its sync and start pipes, lets it run `RUNTIME
  /// create` and reads the container's pid from the sync pipe: on true the
  /// container exists (state "created"). On failure `err` carries the
  /// runtime's own message (`exec: "/etc": permission denied`) and nothing
  /// is left behind: runtime state deleted, conmon gone.
  bool create(const create_request& r, created& out, std::string& err);
  bool start(const std::string& id, std::string& err);
  bool kill(const std::string& id, int sig, bool all, std::string& err);
  bool pause(const std::string& id, std::string& err);
  bool resume(const std::string& id, std::string& err);
  /// `RUNTIME delete [--force]`, which also removes the container's
  /// cgroups, and conmon's leftover socket link; an unknown container is
  /// success.
  bool remove(const std::string& id, bool force, std::string& err);
  /// `RUNTIME state`: status ("created", "running", "paused", "stopped")
  /// and pid; false if the runtime does not know the container.
  bool state(const std::string& id, std::string& status, pid_t& pid,
             std::string& err);
  /// exits_dir/<id> as conmon wrote it: the exit code, 128+signal when the
  /// container was killed by a signal.
  std::optional<int> exit_code(const std::string& id) const;
  /// Removes exits_dir/<id>.
  void forget_exit(const std::string& id);

private:
  std::vector<std::string> conmon_argv(const create_request& r) const;
  bool prepare(const create_request& r, std::string& err);
  bool await_sync(int sync_fd, int diag_fd, int64_t& pid,
                  std::string& why) const;
  bool runtime_call(const std::string& verb,
                    const std::vector<std::string>& args, std::string& output,
                    std::string& err);
  void clean_up_failed(const std::string& id, const created& partial);

  runtime_info rt_;
  oci_paths paths_;
};

/// Classifies a create or start failure for the CLI: 126 (permission denied,
/// is a directory, not executable), 127 (not found), else 125.
int failure_exit_code(std::string_view runtime_message);

/// The runtime's text made readable: a logrus line (`time=... level=error
/// msg="..."`) becomes its unquoted msg; other text is trimmed.
std::string runtime_message(std::string_view text);

/// runc resolves the command at create, but the exec itself happens after
/// start; when it fails there (exec format error, a script's missing
/// interpreter) the container exits with 1 or 255 and its last stderr line
/// in the k8s-file log reads `exec PATH: REASON`. Returns that line for
/// such an exit, nothing otherwise.
std::optional<std::string> exec_failure(int exit_code,
                                        const std::string& log_path);

} // namespace berth::runtime
