#include "actors/container_views.hpp"

#include "protocol/json.hpp"

#include <chrono>
#include <cstdio>
#include <ctime>
#include <unistd.h>

namespace berth::actors {

namespace {

using storage::container_state;

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Go prints a float with the fewest digits that read back the same; for
// seconds with up to nine fractional digits, trimming zeros does that.
std::string trim_fraction(int64_t whole, int64_t frac, int digits) {
  std::string s = std::to_string(whole);
  if (frac == 0)
    return s;
  char buf[16];
  std::snprintf(buf, sizeof buf, "%0*lld", digits, (long long)frac);
  std::string f = buf;
  while (!f.empty() && f.back() == '0')
    f.pop_back();
  return s + "." + f;
}

/// The inode number in a /proc/PID/ns/X link ("net:[4026532012]").
std::string ns_inode(int64_t pid, const char* ns) {
  if (pid <= 0)
    return "";
  char path[64], link[128];
  std::snprintf(path, sizeof path, "/proc/%lld/ns/%s", (long long)pid, ns);
  auto n = ::readlink(path, link, sizeof link - 1);
  if (n <= 0)
    return "";
  std::string s{link, size_t(n)};
  auto open = s.find('['), close = s.find(']');
  if (open == std::string::npos || close == std::string::npos)
    return "";
  return s.substr(open + 1, close - open - 1);
}

bool is_running(container_state s) {
  return s == container_state::running || s == container_state::paused;
}

void strings(json::writer& w, const char* key,
             const std::vector<std::string>& v) {
  w.key(key);
  json::encode(w, v);
}

const char* ns_text(const runtime::ns_choice& n, const char* own) {
  switch (n.mode) {
    case runtime::ns_mode::host: return "host";
    case runtime::ns_mode::container: return "container";
    case runtime::ns_mode::private_: break;
  }
  return own;
}

std::string ns_mode_text(const runtime::ns_choice& n, const char* own) {
  if (n.mode == runtime::ns_mode::container)
    return "container:" + n.container;
  return ns_text(n, own);
}

void state_object(json::writer& w, const container_facts& f) {
  auto& r = f.rec;
  w.begin_object();
  w.key("OciVersion"), w.value("1.0.2");
  w.key("Status"), w.value(storage::state_name(r.state));
  w.key("Running"), w.value(r.state == container_state::running);
  w.key("Paused"), w.value(r.state == container_state::paused);
  w.key("Restarting"), w.value(false);
  w.key("OOMKilled"), w.value(false);
  w.key("Dead"), w.value(false);
  w.key("Pid"), w.value(is_running(r.state) ? r.pid : int64_t{0});
  w.key("ConmonPid"), w.value(is_running(r.state) ? r.conmon_pid : int64_t{0});
  w.key("ExitCode"), w.value(r.exit_code);
  w.key("Error"), w.value("");
  w.key("StartedAt"), w.value(rfc3339(r.started, true));
  w.key("FinishedAt"), w.value(rfc3339(r.finished, true));
  w.end_object();
}

void mounts_array(json::writer& w, const container_facts& f) {
  w.begin_array();
  for (auto& b : f.plan.binds) {
    w.element();
    w.begin_object();
    w.key("Type"), w.value("bind");
    w.key("Source"), w.value(b.source);
    w.key("Destination"), w.value(b.destination);
    w.key("Driver"), w.value("");
    strings(w, "Options", b.options);
    bool ro = false;
    for (auto& o : b.options)
      ro = ro || o == "ro";
    w.key("RW"), w.value(!ro);
    w.key("Propagation"), w.value("rprivate");
    w.end_object();
  }
  w.end_array();
}

} // namespace

std::string go_duration(int64_t ns) {
  if (ns == 0)
    return "0s";
  std::string sign = ns < 0 ? "-" : "";
  uint64_t u = ns < 0 ? uint64_t(-ns) : uint64_t(ns);
  if (u < 1000)
    return sign + std::to_string(u) + "ns";
  if (u < 1000000)
    return sign + trim_fraction(int64_t(u / 1000), int64_t(u % 1000), 3) +
           "µs";
  if (u < 1000000000)
    return sign +
           trim_fraction(int64_t(u / 1000000), int64_t(u % 1000000), 6) + "ms";
  uint64_t secs = u / 1000000000, frac = u % 1000000000;
  std::string out = sign;
  if (secs >= 3600)
    out += std::to_string(secs / 3600) + "h";
  if (secs >= 60)
    out += std::to_string(secs / 60 % 60) + "m";
  out += trim_fraction(int64_t(secs % 60), int64_t(frac), 9) + "s";
  return out;
}

std::string rfc3339(int64_t unix_ns, bool nanos) {
  if (unix_ns <= 0)
    return "0001-01-01T00:00:00Z";
  time_t t = time_t(unix_ns / 1000000000);
  struct tm tm;
  localtime_r(&t, &tm);
  char base[64];
  std::strftime(base, sizeof base, "%Y-%m-%dT%H:%M:%S", &tm);
  std::string s = base;
  if (nanos) {
    char frac[16];
    std::snprintf(frac, sizeof frac, ".%09lld",
                  (long long)(unix_ns % 1000000000));
    s += frac;
  }
  long off = tm.tm_gmtoff;
  if (off == 0)
    return s + "Z";
  char zone[48];
  std::snprintf(zone, sizeof zone, "%c%02ld:%02ld", off < 0 ? '-' : '+',
                std::labs(off) / 3600, std::labs(off) % 3600 / 60);
  return s + zone;
}

podman::Container summarize(const container_facts& f) {
  auto& r = f.rec;
  podman::Container c;
  c.id = r.id;
  c.image = r.image;
  c.imageid = r.image_id;
  c.command = r.command;
  c.createdat = rfc3339(r.created);
  c.runningfor = go_duration(now_ns() - r.created);
  c.status = storage::state_name(r.state);
  c.names = r.name;
  c.labels = f.create.labels;
  for (auto& b : f.plan.binds)
    c.mounts.push_back({b.destination, "bind", b.source, b.options});
  c.containerrunning = r.state == container_state::running;
  int64_t pid = is_running(r.state) ? r.pid : 0;
  c.namespaces.pid = std::to_string(pid);
  c.namespaces.user = ns_inode(pid, "user");
  c.namespaces.uts = ns_inode(pid, "uts");
  c.namespaces.pidns = ns_inode(pid, "pid");
  c.namespaces.cgroup = ns_inode(pid, "cgroup");
  c.namespaces.net = ns_inode(pid, "net");
  c.namespaces.mnt = ns_inode(pid, "mnt");
  c.namespaces.ipc = ns_inode(pid, "ipc");
  return c;
}

std::string inspect_json(const container_facts& f, bool with_config) {
  auto& r = f.rec;
  auto& p = f.plan;
  json::writer w;
  w.begin_object();
  w.key("ID"), w.value(r.id);
  w.key("Created"), w.value(rfc3339(r.created, true));
  w.key("Path"), w.value(r.command.empty() ? "" : r.command.front());
  w.key("Args");
  w.begin_array();
  for (size_t i = 1; i < r.command.size(); ++i)
    w.element(), w.value(r.command[i]);
  w.end_array();
  w.key("State");
  state_object(w, f);
  w.key("Image"), w.value(r.image_id);
  w.key("ImageName"), w.value(r.image);
  w.key("Rootfs"), w.value("");
  w.key("ResolvConfPath"), w.value(f.userdata + "/resolv.conf");
  w.key("HostnamePath"), w.value(f.userdata + "/hostname");
  w.key("HostsPath"), w.value(f.userdata + "/hosts");
  w.key("StaticDir"), w.value(f.userdata);
  w.key("LogPath"), w.value(f.log_path);
  w.key("Name"), w.value(r.name);
  w.key("RestartCount"), w.value(int64_t{0});
  w.key("Driver"), w.value("overlay");
  w.key("MountLabel"), w.value("");
  w.key("ProcessLabel"), w.value("");
  w.key("AppArmorProfile"), w.value("");
  w.key("GraphDriver");
  w.begin_object();
  w.key("Name"), w.value("overlay");
  w.key("Data");
  w.begin_object();
  w.key("MergedDir"), w.value(f.merged);
  w.key("UpperDir"), w.value(f.dir + "/upper");
  w.key("WorkDir"), w.value(f.dir + "/work");
  w.end_object();
  w.end_object();
  w.key("Mounts");
  mounts_array(w, f);
  w.key("Dependencies"), w.begin_array(), w.end_array();
  w.key("NetworkSettings");
  w.begin_object();
  w.key("Bridge"), w.value("");
  w.key("SandboxID"), w.value("");
  w.key("HairpinMode"), w.value(false);
  w.key("Ports"), w.begin_array(), w.end_array();
  w.key("SandboxKey"), w.value("");
  w.key("IPAddress"), w.value("");
  w.key("Gateway"), w.value("");
  w.key("MacAddress"), w.value("");
  w.end_object();
  w.key("ExitCommand"), w.begin_array(), w.end_array();
  w.key("Namespace"), w.value("");
  w.key("IsInfra"), w.value(false);
  if (with_config) {
    w.key("Config");
    w.begin_object();
    w.key("Hostname"), w.value(f.hostname);
    w.key("Domainname"), w.value("");
    w.key("User"), w.value(p.user);
    w.key("AttachStdin"), w.value(p.interactive);
    w.key("AttachStdout"), w.value(false);
    w.key("AttachStderr"), w.value(false);
    w.key("Tty"), w.value(p.tty);
    w.key("OpenStdin"), w.value(p.interactive);
    w.key("StdinOnce"), w.value(false);
    strings(w, "Env", p.env);
    strings(w, "Cmd", f.create.command);
    w.key("Image"), w.value(r.image);
    w.key("Volumes"), w.begin_object();
    for (auto& b : p.binds) {
      w.key(b.destination);
      w.begin_object(), w.end_object();
    }
    w.end_object();
    w.key("WorkingDir"), w.value(p.work_dir);
    strings(w, "Entrypoint", f.create.entrypoint);
    w.key("Labels"), json::encode(w, f.create.labels);
    w.key("Annotations"), w.begin_object(), w.end_object();
    w.key("StopSignal"), w.value(int64_t(p.stop_signal));
    w.key("StopTimeout"), w.value(int64_t(p.stop_timeout));
    w.end_object();
    w.key("HostConfig");
    w.begin_object();
    auto& res = f.create.resources;
    std::vector<std::string> binds;
    for (auto& b : p.binds) {
      std::string s = b.source + ":" + b.destination;
      for (size_t i = 0; i < b.options.size(); ++i)
        s += (i == 0 ? ":" : ",") + b.options[i];
      binds.push_back(s);
    }
    strings(w, "Binds", binds);
    w.key("NetworkMode"), w.value(ns_mode_text(p.net, "none"));
    w.key("PidMode"), w.value(ns_mode_text(p.pid, ""));
    w.key("IpcMode"), w.value(ns_mode_text(p.ipc, ""));
    w.key("UTSMode"), w.value(ns_mode_text(p.uts, ""));
    w.key("AutoRemove"), w.value(p.rm);
    strings(w, "CapAdd", f.create.cap_add);
    strings(w, "CapDrop", f.create.cap_drop);
    strings(w, "Dns", f.create.dns_servers);
    strings(w, "DnsOptions", f.create.dns_opt);
    strings(w, "DnsSearch", f.create.dns_search);
    strings(w, "ExtraHosts", f.create.host_add);
    strings(w, "GroupAdd", f.create.group_add);
    w.key("Privileged"), w.value(p.privileged);
    w.key("ReadonlyRootfs"), w.value(p.readonly_rootfs);
    w.key("Sysctls"), json::encode(w, f.create.sys_ctl);
    strings(w, "Tmpfs", p.tmpfs);
    const std::pair<const char*, int64_t> limits[] = {
      {"ShmSize", res.shm_size},
      {"Memory", res.memory},
      {"MemoryReservation", res.memory_reservation},
      {"MemorySwap", res.memory_swap},
      {"MemorySwappiness", res.memory_swappiness},
      {"KernelMemory", res.kernel_memory},
      {"CpuShares", res.cpu_shares},
      {"CpuPeriod", res.cpu_period},
      {"CpuQuota", res.cpu_quota},
      {"CpuRealtimePeriod", res.cpu_rt_period},
      {"CpuRealtimeRuntime", res.cpu_rt_runtime},
      {"NanoCpus", int64_t(res.cpus * 1e9)},
      {"BlkioWeight", res.blkio_weight},
      {"PidsLimit", res.pids_limit},
      {"OomScoreAdj", res.oom_score_adj},
    };
    for (auto& [key, value] : limits)
      w.key(key), w.value(value);
    w.key("CpusetCpus"), w.value(res.cpuset_cpus);
    w.key("CpusetMems"), w.value(res.cpuset_mems);
    w.key("OomKillDisable"), w.value(res.disable_oomkiller);
    strings(w, "Ulimits", res.ulimit);
    strings(w, "Devices", f.create.devices);
    w.key("LogConfig");
    w.begin_object();
    w.key("Type"), w.value("k8s-file");
    w.key("Config"), w.begin_object(), w.end_object();
    w.end_object();
    w.end_object();
  }
  w.end_object();
  return w.take();
}

std::string config_json(const container_facts& f, const std::string& spec) {
  auto& r = f.rec;
  json::writer w;
  w.begin_object();
  w.key("id"), w.value(r.id);
  w.key("name"), w.value(r.name);
  w.key("rootfsImageID"), w.value(r.image_id);
  w.key("rootfsImageName"), w.value(r.image);
  w.key("spec");
  if (spec.empty())
    w.begin_object(), w.end_object();
  else
    w.value(json::raw{spec});
  w.key("createdTime"), w.value(rfc3339(r.created, true));
  w.key("labels"), json::encode(w, f.create.labels);
  w.key("logPath"), w.value(f.log_path);
  w.key("stopSignal"), w.value(int64_t(f.plan.stop_signal));
  w.key("stopTimeout"), w.value(int64_t(f.plan.stop_timeout));
  w.key("staticDir"), w.value(f.userdata);
  w.key("rootfs"), w.value("");
  w.key("command"), json::encode(w, r.command);
  w.key("hostname"), w.value(f.hostname);
  w.key("privileged"), w.value(f.plan.privileged);
  w.key("noNewPrivileges"), w.value(f.plan.no_new_privs);
  w.key("readonlyRootfs"), w.value(f.plan.readonly_rootfs);
  w.key("autoRemove"), w.value(f.plan.rm);
  w.key("user"), w.value(f.plan.user);
  w.key("workDir"), w.value(f.plan.work_dir);
  w.key("tty"), w.value(f.plan.tty);
  w.key("stdin"), w.value(f.plan.interactive);
  w.end_object();
  return w.take();
}

std::string state_json(const container_facts& f) {
  auto& r = f.rec;
  json::writer w;
  w.begin_object();
  w.key("state"), w.value(int64_t(r.state == container_state::removing
                                      ? container_state::exited
                                      : r.state));
  w.key("configPath"), w.value(f.userdata + "/config.json");
  w.key("runDir"), w.value(f.userdata);
  w.key("mounted"), w.value(is_running(r.state) ||
                            r.state == container_state::created || r.mounted);
  w.key("mountPoint"), w.value(f.merged);
  w.key("startedTime"), w.value(rfc3339(r.started, true));
  w.key("finishedTime"), w.value(rfc3339(r.finished, true));
  w.key("exitCode"), w.value(r.exit_code);
  w.key("exited"), w.value(r.state == container_state::exited ||
                           r.state == container_state::stopped);
  w.key("oomKilled"), w.value(false);
  w.key("pid"), w.value(is_running(r.state) ? r.pid : int64_t{0});
  w.key("conmonPid"), w.value(is_running(r.state) ? r.conmon_pid : int64_t{0});
  w.key("restartCount"), w.value(int64_t{0});
  w.end_object();
  return w.take();
}

} // namespace berth::actors
