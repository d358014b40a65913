// From a CreateContainer request to a checked plan, and from the plan to the
// OCI config.json that runc and crun read, with podman 1.x's defaults.
#include "runtime/spec.hpp"

#include "protocol/json.hpp"

#include <linux/openat2.h>

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <climits>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <fstream>
#include <set>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <tuple>
#include <unistd.h>

namespace berth::runtime {

namespace {

// ---------------------------------------------------------------------------
// Text helpers

std::string errno_text(int e) {
  std::string text = std::strerror(e);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z')
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

std::string quoted(std::string_view s) {
  return "\"" + std::string{s} + "\"";
}

// Refuses a request: `err` becomes "invalid FIELD SHOWN: WHY".
bool refuse(std::string& err, std::string_view field, std::string_view shown,
            std::string_view why) {
  err = "invalid ";
  err.append(field).append(" ").append(shown).append(": ").append(why);
  return false;
}

// As refuse, showing the text `value` quoted.
bool fail_text(std::string& err, std::string_view field, std::string_view value,
               std::string_view why) {
  return refuse(err, field, quoted(value), why);
}

// As refuse, showing the number `v`.
bool fail_value(std::string& err, std::string_view field, int64_t v,
                std::string_view why) {
  return refuse(err, field, std::to_string(v), why);
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  for (size_t start = 0;;) {
    auto pos = s.find(sep, start);
    out.emplace_back(s.substr(start, pos - start));
    if (pos == std::string_view::npos)
      return out;
    start = pos + 1;
  }
}

// `s` with the ASCII letters from `from` on turned into those from `to` on
// ('a', 'A': upper case), whatever the locale.
std::string recase(std::string_view s, char from, char to) {
  std::string out{s};
  for (auto& ch : out)
    if (ch >= from && ch <= from + 25)
      ch = static_cast<char>(ch - from + to);
  return out;
}

std::string upper(std::string_view s) {
  return recase(s, 'a', 'A');
}

std::string lower(std::string_view s) {
  return recase(s, 'A', 'a');
}

template <class T>
bool parse_number(std::string_view s, T& v) {
  if (s.empty() || s[0] == '+')
    return false;
  auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc{} && r.ptr == s.data() + s.size();
}

bool has_space(std::string_view s) {
  return s.find_first_of(" \t\r\n\v\f") != std::string_view::npos;
}

bool has_nul(std::string_view s) {
  return s.find('\0') != std::string_view::npos;
}

bool is_ip(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// A size with an optional unit: "512", "10k", "64mb", "1.5g". `base` is
// 1000 or 1024.
bool parse_size(std::string_view s, int64_t base, int64_t& out) {
  size_t digits = 0;
  while (
      digits < s.size() &&
      (std::isdigit(static_cast<unsigned char>(s[digits])) || s[digits] == '.'))
    ++digits;
  double number = 0;
  auto r = std::from_chars(s.data(), s.data() + digits, number);
  if (digits == 0 || r.ec != std::errc{} || r.ptr != s.data() + digits)
    return false;
  auto unit = lower(s.substr(digits));
  if (unit.size() == 2 && unit[1] == 'b')
    unit.pop_back();
  static constexpr std::string_view units = "bkmgt";
  double mult = 1;
  if (!unit.empty()) {
    auto at = units.find(unit[0]);
    if (unit.size() != 1 || at == std::string_view::npos)
      return false;
    mult = std::pow(static_cast<double>(base), static_cast<double>(at));
  }
  double bytes = number * mult;
  if (bytes >= 9.2e18)
    return false;
  out = std::llround(bytes);
  return true;
}

// "/dev/sda:VALUE" split at the last colon.
bool split_device_value(const std::string& s, std::string& path,
                        std::string& value) {
  auto colon = s.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == s.size())
    return false;
  path = s.substr(0, colon);
  value = s.substr(colon + 1);
  return true;
}

// An absolute path without "." or ".." steps and without a trailing slash
// (the root itself excepted).
bool clean_absolute(std::string& path) {
  if (path.empty() || path[0] != '/' || has_nul(path))
    return false;
  for (const auto& step : split(path, '/'))
    if (step == "." || step == "..")
      return false;
  while (path.size() > 1 && path.back() == '/')
    path.pop_back();
  return true;
}

// ---------------------------------------------------------------------------
// Signals

struct signal_name {
  std::string_view name;
  int number;
};

constexpr signal_name signal_names[] = {
    {"HUP", SIGHUP},       {"INT", SIGINT},       {"QUIT", SIGQUIT},
    {"ILL", SIGILL},       {"TRAP", SIGTRAP},     {"ABRT", SIGABRT},
    {"IOT", SIGIOT},       {"BUS", SIGBUS},       {"FPE", SIGFPE},
    {"KILL", SIGKILL},     {"USR1", SIGUSR1},     {"SEGV", SIGSEGV},
    {"USR2", SIGUSR2},     {"PIPE", SIGPIPE},     {"ALRM", SIGALRM},
    {"TERM", SIGTERM},
#ifdef SIGSTKFLT
    {"STKFLT", SIGSTKFLT},
#endif
    {"CHLD", SIGCHLD},     {"CLD", SIGCHLD},      {"CONT", SIGCONT},
    {"STOP", SIGSTOP},     {"TSTP", SIGTSTP},     {"TTIN", SIGTTIN},
    {"TTOU", SIGTTOU},     {"URG", SIGURG},       {"XCPU", SIGXCPU},
    {"XFSZ", SIGXFSZ},     {"VTALRM", SIGVTALRM}, {"PROF", SIGPROF},
    {"WINCH", SIGWINCH},   {"IO", SIGIO},         {"POLL", SIGPOLL},
    {"PWR", SIGPWR},       {"SYS", SIGSYS}};

// The real-time range as Go and podman number it (glibc keeps 32 and 33).
constexpr int rt_min = 34, rt_max = 64;

// ---------------------------------------------------------------------------
// Capabilities, by number

// clang-format off
constexpr std::string_view capability_names[] = {
  "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL",
  "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE",
  "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
  "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT",
  "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME",
  "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL",
  "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM",
  "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"};
// clang-format on
constexpr int capability_count = std::size(capability_names);

// podman 1.x's default set.
constexpr std::string_view default_capabilities[] = {
    "CHOWN",   "DAC_OVERRIDE",     "FOWNER",     "FSETID",
    "KILL",    "NET_BIND_SERVICE", "SETFCAP",    "SETGID",
    "SETPCAP", "SETUID",           "SYS_CHROOT", "AUDIT_WRITE",
    "MKNOD",   "NET_RAW"};

// The capabilities this process may pass on: its bounding set (root here
// may lack some, CAP_SYS_RESOURCE for one), within what our table names.
std::vector<bool> available_capabilities() {
  std::vector<bool> out(capability_count, true);
  std::ifstream in{"/proc/self/status"};
  std::string line;
  while (std::getline(in, line)) {
    if (!line.starts_with("CapBnd:"))
      continue;
    uint64_t mask = 0;
    auto hex = line.substr(line.find_first_not_of(" \t", 7));
    auto r = std::from_chars(hex.data(), hex.data() + hex.size(), mask, 16);
    if (r.ec != std::errc{})
      break;
    for (int i = 0; i < capability_count; ++i)
      out[i] = (mask >> i) & 1;
    break;
  }
  return out;
}

// The number of a capability name given with or without "CAP_", any case;
// -1 if unknown.
int capability_number(std::string_view name) {
  auto u = upper(name);
  if (u.starts_with("CAP_"))
    u.erase(0, 4);
  for (int i = 0; i < capability_count; ++i)
    if (capability_names[i] == u)
      return i;
  return -1;
}

bool contains_all(const std::vector<std::string>& caps) {
  return std::any_of(caps.begin(), caps.end(),
                     [](const auto& c) { return upper(c) == "ALL"; });
}

bool plan_capabilities(const podman::Create& c, container_plan& out,
                       std::string& err) {
  // Every name must be known, privileged or not.
  for (auto* list : {&c.cap_add, &c.cap_drop})
    for (const auto& name : *list)
      if (upper(name) != "ALL" && capability_number(name) < 0) {
        err = "unknown capability " + quoted(name) + " in " +
              (list == &c.cap_add ? "cap_add" : "cap_drop");
        return false;
      }

  // A capability berthd lacks cannot be granted: the runtime would fail.
  auto available = available_capabilities();
  if (!c.privileged)
    for (const auto& name : c.cap_add)
      if (upper(name) != "ALL" && !available[capability_number(name)]) {
        err = "cap_add " + quoted(name) + ": berthd's own bounding set " +
              "lacks it, so no container can have it";
        return false;
      }

  // Start from the defaults, nothing or everything; drop, then add.
  std::vector<bool> on(capability_count, false);
  if (c.privileged || contains_all(c.cap_add)) {
    on = available;
  } else if (!contains_all(c.cap_drop)) {
    for (auto name : default_capabilities)
      on[capability_number(name)] = available[capability_number(name)];
  }
  if (!c.privileged) {
    for (const auto& name : c.cap_drop)
      if (upper(name) != "ALL")
        on[capability_number(name)] = false;
    for (const auto& name : c.cap_add)
      if (upper(name) != "ALL")
        on[capability_number(name)] = true;
  }
  for (int i = 0; i < capability_count; ++i)
    if (on[i])
      out.caps.push_back("CAP_" + std::string{capability_names[i]});
  return true;
}

// ---------------------------------------------------------------------------
// Process: arguments, environment, working directory, user

bool joins_to_empty(const std::vector<std::string>& v) {
  return std::all_of(v.begin(), v.end(),
                     [](const auto& s) { return s.empty(); });
}

// docker's and podman's rules: the request's entrypoint replaces the
// image's ([""] clears it); the request's command replaces the image's
// CMD, which is only used when the entrypoint was not overridden.
bool plan_args(const podman::Create& c, const image_defaults& img,
               container_plan& out, std::string& err) {
  bool entrypoint_given = !c.entrypoint.empty();
  auto args = entrypoint_given ? c.entrypoint : img.entrypoint;
  if (entrypoint_given && joins_to_empty(c.entrypoint))
    args.clear();
  auto command = requested_command(c);
  if (command.empty() && !entrypoint_given)
    command = img.cmd;
  args.insert(args.end(), command.begin(), command.end());
  if (args.empty() || args[0].empty()) {
    err = "no command specified";
    return false;
  }
  for (const auto& a : args)
    if (has_nul(a))
      return fail_text(err, "command argument", a, "contains a NUL byte");
  out.args = std::move(args);
  return true;
}

// Sets KEY=value, replacing an earlier KEY in place.
void set_env(std::vector<std::string>& env, std::string_view key,
             std::string_view value) {
  std::string entry = std::string{key} + "=" + std::string{value};
  for (auto& e : env)
    if (e.size() > key.size() && e.compare(0, key.size(), key) == 0 &&
        e[key.size()] == '=') {
      e = std::move(entry);
      return;
    }
  env.push_back(std::move(entry));
}

bool has_env(const std::vector<std::string>& env, std::string_view key) {
  return std::any_of(env.begin(), env.end(), [&](const auto& e) {
    return e.size() > key.size() && e.starts_with(key) && e[key.size()] == '=';
  });
}

bool plan_env(const podman::Create& c, const image_defaults& img,
              container_plan& out, std::string& err) {
  auto& env = out.env;
  set_env(env, "PATH",
          "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
  if (c.tty)
    set_env(env, "TERM", "xterm");
  if (!c.hostname.empty())
    set_env(env, "HOSTNAME", c.hostname);

  // The image's entries; one without "=" or a name means nothing to a
  // runtime, which would refuse it.
  for (const auto& e : img.env) {
    auto eq = e.find('=');
    if (eq != std::string::npos && eq > 0 && !has_nul(e))
      set_env(env, e.substr(0, eq), e.substr(eq + 1));
  }

  for (const auto& [key, value] : c.env) {
    if (key.empty() || key.find('=') != std::string::npos || has_nul(key) ||
        has_nul(value))
      return fail_text(err, "env", key + "=" + value,
                       "a name must be non-empty, without \"=\" and NUL bytes");
    set_env(env, key, value);
  }
  return true;
}

bool plan_work_dir(const podman::Create& c, const image_defaults& img,
                   container_plan& out, std::string& err) {
  if (!c.work_dir.empty()) {
    out.work_dir = c.work_dir;
    if (out.work_dir[0] != '/' || has_nul(out.work_dir))
      return fail_text(err, "work_dir", c.work_dir, "must be an absolute path");
  } else if (!img.working_dir.empty()) {
    out.work_dir =
        img.working_dir[0] == '/' ? img.working_dir : "/" + img.working_dir;
  } else {
    out.work_dir = "/";
  }
  return true;
}

bool valid_user_part(std::string_view s) {
  return !s.empty() && !has_space(s) && !has_nul(s) &&
         s.find_first_of(":/") == std::string_view::npos;
}

bool plan_user(const podman::Create& c, const image_defaults& img,
               container_plan& out, std::string& err) {
  out.user = c.user.empty() ? img.user : c.user;
  if (!out.user.empty()) {
    auto parts = split(out.user, ':');
    if (parts.size() > 2 ||
        !std::all_of(parts.begin(), parts.end(), valid_user_part))
      return fail_text(err, "user", out.user,
                       "want name, uid, name:group or uid:gid");
  }
  for (const auto& g : c.group_add)
    if (!valid_user_part(g))
      return fail_text(err, "group_add entry", g,
                       "want a group name or number");
  out.group_add = c.group_add;
  return true;
}

// ---------------------------------------------------------------------------
// Namespaces, hostname

bool parse_ns(const char* field, const std::string& v, ns_choice& out,
              std::string& err) {
  if (v.empty() || v == "private") {
    out = {};
  } else if (v == "host") {
    out = {ns_mode::host, {}};
  } else if (v.starts_with("container:") && v.size() > 10) {
    out = {ns_mode::container, v.substr(10)};
  } else {
    return fail_text(err, field, v, "use \"\", \"host\" or \"container:<id>\"");
  }
  return true;
}

bool plan_net(const podman::Create& c, container_plan& out, std::string& err) {
  // `network` names CNI networks to join, which only bridge mode does.
  if (!c.network.empty() && c.network != "none" && c.network != "host") {
    err = "network " + quoted(c.network) +
          ": bridge networking is not supported yet: use net_mode "
          "\"none\", \"host\" or \"container:<id>\"";
    return false;
  }
  // Until bridge networking exists, podman's default ("") means none.
  const auto& mode = c.net_mode;
  if (mode.empty() || mode == "none") {
    out.net = {};
  } else if (mode == "host") {
    out.net = {ns_mode::host, {}};
  } else if (mode.starts_with("container:") && mode.size() > 10) {
    out.net = {ns_mode::container, mode.substr(10)};
  } else {
    err = "net_mode " + quoted(mode) +
          ": bridge networking is not supported yet: use net_mode "
          "\"none\", \"host\" or \"container:<id>\"";
    return false;
  }
  if (out.net.mode != ns_mode::host && (!c.publish.empty() || c.publish_all)) {
    err = "publish " + quoted(c.publish.empty() ? "all" : c.publish.front()) +
          ": publishing ports needs bridge networking, which is not "
          "supported yet";
    return false;
  }
  return true;
}

bool valid_hostname(std::string_view h) {
  if (h.empty() || h.size() > 64 || h.front() == '-' || h.front() == '.' ||
      h.back() == '-' || h.back() == '.')
    return false;
  return std::all_of(h.begin(), h.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '-' ||
           ch == '.';
  });
}

bool plan_namespaces(const podman::Create& c, container_plan& out,
                     std::string& err) {
  if (!parse_ns("pid_mode", c.pid_mode, out.pid, err) ||
      !parse_ns("ipc_mode", c.ipc_mode, out.ipc, err) ||
      !parse_ns("uts_mode", c.uts_mode, out.uts, err) || !plan_net(c, out, err))
    return false;

  // User namespaces would need ID-mapped storage.
  bool userns =
      !c.uidmap.empty() || !c.gidmap.empty() || !c.subuidname.empty() ||
      !c.subgidname.empty() || !c.subuidmap.empty() || !c.subgidmap.empty() ||
      c.id_mappings.uid_map.size > 0 || c.id_mappings.gid_map.size > 0 ||
      (!c.userns_mode.empty() && c.userns_mode != "host");
  if (userns) {
    err = "userns_mode " + quoted(c.userns_mode) +
          ": user namespaces and ID maps are not supported yet";
    return false;
  }

  if (!c.hostname.empty()) {
    if (!valid_hostname(c.hostname))
      return fail_text(err, "hostname", c.hostname,
                       "up to 64 letters, digits, \"-\" and \".\"");
    if (out.uts.mode != ns_mode::private_) {
      err = "hostname " + quoted(c.hostname) +
            ": cannot be set without a UTS namespace of its own (uts_mode " +
            quoted(c.uts_mode) + ")";
      return false;
    }
  }
  out.hostname = c.hostname;
  return true;
}

// ---------------------------------------------------------------------------
// Mounts: host volumes and tmpfs

bool volume_option(const std::string& opt, std::string& rw,
                   std::string& propagation, std::string& bind,
                   std::vector<std::string>& flags) {
  static const std::set<std::string> propagations = {
      "private", "rprivate", "shared", "rshared", "slave", "rslave"};
  static const std::set<std::string> mount_flags = {"nosuid", "suid",   "nodev",
                                                    "dev",    "noexec", "exec"};
  if (opt == "ro" || opt == "rw")
    rw = opt;
  else if (propagations.count(opt))
    propagation = opt;
  else if (opt == "bind" || opt == "rbind")
    bind = opt;
  else if (mount_flags.count(opt))
    flags.push_back(opt);
  else if (opt != "z" && opt != "Z" && opt != "nocopy")
    return false; // z and Z relabel for SELinux, which this host lacks
  return true;
}

bool plan_volume(const std::string& v, container_plan& out, std::string& err) {
  auto parts = split(v, ':');
  auto bad = [&](const std::string& why) {
    return fail_text(err, "volume", v, why);
  };
  if (parts.size() == 1)
    return bad("anonymous volumes are not supported yet: give "
               "\"/host/path:/container/path\"");
  if (parts.size() > 3)
    return bad("want \"src:dst[:options]\"");
  bind_mount b{parts[0], parts[1], {}};
  if (b.source.empty() || b.source[0] != '/')
    return bad("named volumes are not supported yet: the source must be "
               "an absolute host path");
  if (!clean_absolute(b.destination) || b.destination == "/")
    return bad("the destination must be an absolute path other than /");
  struct stat st;
  if (stat(b.source.c_str(), &st) != 0)
    return bad("host path " + quoted(b.source) + ": " + errno_text(errno));

  std::string rw = "rw", propagation = "rprivate", bind = "rbind";
  std::vector<std::string> flags;
  if (parts.size() == 3)
    for (const auto& opt : split(parts[2], ','))
      if (!volume_option(opt, rw, propagation, bind, flags))
        return bad("unknown option " + quoted(opt));
  b.options = {bind, rw, propagation};
  b.options.insert(b.options.end(), flags.begin(), flags.end());
  out.binds.push_back(std::move(b));
  return true;
}

bool valid_tmpfs_option(const std::string& opt) {
  static const std::set<std::string> flags = {
      "rw",         "ro",       "exec",   "noexec",  "suid",      "nosuid",
      "dev",        "nodev",    "atime",  "noatime", "relatime",  "strictatime",
      "nodiratime", "diratime", "sync",   "async",   "tmpcopyup", "notmpcopyup",
      "private",    "rprivate", "shared", "rshared", "slave",     "rslave"};
  if (flags.count(opt))
    return true;
  auto eq = opt.find('=');
  if (eq == std::string::npos)
    return false;
  auto key = opt.substr(0, eq), value = opt.substr(eq + 1);
  int64_t n;
  if (key == "size" && value.size() > 1 && value.back() == '%')
    return parse_number(std::string_view{value}.substr(0, value.size() - 1), n);
  if (key == "size")
    return parse_size(value, 1024, n);
  if (key == "nr_inodes" || key == "nr_blocks")
    return parse_size(value, 1024, n);
  if (key == "uid" || key == "gid")
    return parse_number(value, n) && n >= 0;
  if (key == "mode")
    return !value.empty() && value.size() <= 4 &&
           value.find_first_not_of("01234567") == std::string::npos;
  return false;
}

bool plan_tmpfs(const std::string& t, container_plan& out, std::string& err) {
  auto colon = t.find(':');
  std::string dst = t.substr(0, colon);
  if (!clean_absolute(dst) || dst == "/")
    return fail_text(err, "tmpfs", t,
                     "the destination must be an absolute path other than /");
  if (colon != std::string::npos)
    for (const auto& opt : split(t.substr(colon + 1), ','))
      if (!valid_tmpfs_option(opt))
        return fail_text(err, "tmpfs", t, "unknown option " + quoted(opt));
  out.tmpfs.push_back(t);
  return true;
}

std::string tmpfs_destination(const std::string& t) {
  std::string dst = t.substr(0, t.find(':'));
  clean_absolute(dst);
  return dst;
}

bool plan_mounts(const podman::Create& c, container_plan& out,
                 std::string& err) {
  for (const auto& v : c.volumes)
    if (!plan_volume(v, out, err))
      return false;
  for (const auto& t : c.tmpfs)
    if (!plan_tmpfs(t, out, err))
      return false;

  // One mount per destination.
  std::set<std::string> seen;
  std::vector<std::string> destinations;
  for (const auto& b : out.binds)
    destinations.push_back(b.destination);
  for (const auto& t : out.tmpfs)
    destinations.push_back(tmpfs_destination(t));
  for (const auto& d : destinations)
    if (!seen.insert(d).second) {
      err =
          "duplicate mount destination " + quoted(d) + " in volumes and tmpfs";
      return false;
    }
  return true;
}

// ---------------------------------------------------------------------------
// Devices

bool valid_permissions(std::string_view p) {
  if (p.empty() || p.size() > 3)
    return false;
  std::set<char> seen;
  for (char ch : p)
    if ((ch != 'r' && ch != 'w' && ch != 'm') || !seen.insert(ch).second)
      return false;
  return true;
}

bool plan_device(const std::string& d, container_plan& out, std::string& err) {
  auto parts = split(d, ':');
  auto bad = [&](const std::string& why) {
    return fail_text(err, "device", d, why);
  };
  if (parts.size() > 3)
    return bad("want \"/dev/host[:/dev/container][:rwm]\"");
  std::string src = parts[0], dst = src, access = "rwm";
  if (parts.size() == 2 && valid_permissions(parts[1]))
    access = parts[1];
  else if (parts.size() >= 2)
    dst = parts[1];
  if (parts.size() == 3)
    access = parts[2];
  if (!valid_permissions(access))
    return bad("permissions must be made of r, w and m");
  if (!clean_absolute(src) || !clean_absolute(dst))
    return bad("paths must be absolute");

  struct stat st;
  if (stat(src.c_str(), &st) != 0)
    return bad(quoted(src) + ": " + errno_text(errno));
  if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
    return bad(quoted(src) + " is not a device node");
  out.devices.push_back({dst, S_ISCHR(st.st_mode) ? 'c' : 'b',
                         major(st.st_rdev), minor(st.st_rdev),
                         st.st_mode & 07777, st.st_uid, st.st_gid, access});
  return true;
}

// ---------------------------------------------------------------------------
// sysctl and ulimit

bool plan_sysctls(const podman::Create& c, container_plan& out,
                  std::string& err) {
  for (const auto& [key, value] : c.sys_ctl) {
    auto bad = [&, &key = key](const std::string& why) {
      return fail_text(err, "sys_ctl", key, why);
    };
    if (value.empty() || value.find('\n') != std::string::npos ||
        has_nul(value))
      return bad("the value " + quoted(value) + " is not one line");
    bool ipc = key.starts_with("kernel.msg") || key.starts_with("kernel.shm") ||
               key == "kernel.sem" || key.starts_with("fs.mqueue.");
    bool net = key.starts_with("net.");
    if (!ipc && !net)
      return bad("not a namespaced sysctl; a container may set only "
                 "kernel.msg*, kernel.sem, kernel.shm*, fs.mqueue.* and "
                 "net.*");
    if (ipc && out.ipc.mode == ns_mode::host)
      return bad("not allowed with the host's IPC namespace");
    if (net && out.net.mode == ns_mode::host)
      return bad("not allowed with the host's network namespace");
    out.sysctls[key] = value;
  }
  return true;
}

struct rlimit_name {
  std::string_view name;
  int resource;
};

// clang-format off
constexpr rlimit_name rlimit_names[] = {
  {"as", RLIMIT_AS},             {"core", RLIMIT_CORE},
  {"cpu", RLIMIT_CPU},           {"data", RLIMIT_DATA},
  {"fsize", RLIMIT_FSIZE},       {"locks", RLIMIT_LOCKS},
  {"memlock", RLIMIT_MEMLOCK},   {"msgqueue", RLIMIT_MSGQUEUE},
  {"nice", RLIMIT_NICE},         {"nofile", RLIMIT_NOFILE},
  {"nproc", RLIMIT_NPROC},       {"rss", RLIMIT_RSS},
  {"rtprio", RLIMIT_RTPRIO},     {"rttime", RLIMIT_RTTIME},
  {"sigpending", RLIMIT_SIGPENDING}, {"stack", RLIMIT_STACK}};
// clang-format on

constexpr uint64_t unlimited = UINT64_MAX;

// One limit value: a count, or -1 for unlimited.
bool parse_limit(std::string_view s, uint64_t& out) {
  if (s == "-1") {
    out = unlimited;
    return true;
  }
  return parse_number(s, out) && out != unlimited;
}

void set_rlimit(std::vector<rlimit_setting>& limits, rlimit_setting r) {
  for (auto& l : limits)
    if (l.resource == r.resource) {
      l = std::move(r);
      return;
    }
  limits.push_back(std::move(r));
}

bool plan_ulimit(const std::string& u, container_plan& out, std::string& err) {
  auto bad = [&](const std::string& why) {
    return fail_text(err, "ulimit", u, why);
  };
  auto eq = u.find('=');
  if (eq == std::string::npos)
    return bad("want \"name=soft[:hard]\"");
  auto name = lower(u.substr(0, eq));
  const rlimit_name* known = nullptr;
  for (const auto& r : rlimit_names)
    if (r.name == name)
      known = &r;
  if (!known)
    return bad("unknown limit " + quoted(name));

  auto values = split(u.substr(eq + 1), ':');
  rlimit_setting r{"RLIMIT_" + upper(name), known->resource, 0, 0};
  if (values.size() > 2 || !parse_limit(values[0], r.soft))
    return bad("the soft limit must be a number or -1");
  r.hard = r.soft;
  if (values.size() == 2 && !parse_limit(values[1], r.hard))
    return bad("the hard limit must be a number or -1");
  if (r.soft > r.hard)
    return bad("the soft limit exceeds the hard limit");
  set_rlimit(out.rlimits, std::move(r));
  return true;
}

bool plan_ulimits(const podman::Create& c, container_plan& out,
                  std::string& err) {
  for (const auto& u : c.resources.ulimit)
    if (!plan_ulimit(u, out, err))
      return false;
  // podman's defaults for root; render_spec clamps them to the host.
  constexpr uint64_t podman_default = 1048576;
  for (auto [type, resource] : {std::pair{"RLIMIT_NOFILE", RLIMIT_NOFILE},
                                std::pair{"RLIMIT_NPROC", RLIMIT_NPROC}}) {
    int wanted = resource; // clang 14 cannot capture a structured binding
    bool given =
        std::any_of(out.rlimits.begin(), out.rlimits.end(),
                    [&](const auto& l) { return l.resource == wanted; });
    if (!given)
      out.rlimits.push_back({type, resource, podman_default, podman_default});
  }
  return true;
}

// ---------------------------------------------------------------------------
// Resources

bool block_device(const std::string& field, const std::string& entry,
                  const std::string& path, blkio_device& out,
                  std::string& err) {
  struct stat st;
  if (stat(path.c_str(), &st) != 0)
    return fail_text(err, field, entry,
                     quoted(path) + ": " + errno_text(errno));
  if (!S_ISBLK(st.st_mode))
    return fail_text(err, field, entry,
                     quoted(path) + " is not a block device");
  out.major = major(st.st_rdev);
  out.minor = minor(st.st_rdev);
  return true;
}

// Entries "/dev/x:value" of one throttle or weight list. `kind` says how
// the value reads: "weight" (10-1000), "bps" (size with unit), "iops".
bool plan_blkio_list(const std::string& field,
                     const std::vector<std::string>& entries,
                     std::string_view kind, std::vector<blkio_device>& out,
                     std::string& err) {
  for (const auto& e : entries) {
    std::string path, value;
    blkio_device d;
    if (!split_device_value(e, path, value))
      return fail_text(err, field, e, "want \"/dev/x:value\"");
    int64_t n = 0;
    bool ok =
        kind == "bps" ? parse_size(value, 1024, n) : parse_number(value, n);
    if (kind == "weight")
      ok = ok && n >= 10 && n <= 1000;
    if (!ok || n < 0)
      return fail_text(
          err, field, e,
          quoted(value) + (kind == "weight" ? " is not a weight from 10 to 1000"
                           : kind == "bps"
                               ? " is not a rate in bytes (e.g. 1mb)"
                               : " is not a number of operations"));
    if (!block_device(field, e, path, d, err))
      return false;
    d.value = static_cast<uint64_t>(n);
    out.push_back(d);
  }
  return true;
}

// "0-3,5" style lists of CPUs or memory nodes.
bool valid_cpuset(const std::string& s) {
  for (const auto& part : split(s, ',')) {
    auto dash = part.find('-');
    unsigned lo = 0, hi = 0;
    if (dash == std::string::npos) {
      if (!parse_number(part, lo))
        return false;
    } else if (!parse_number(std::string_view{part}.substr(0, dash), lo) ||
               !parse_number(std::string_view{part}.substr(dash + 1), hi) ||
               lo > hi) {
      return false;
    }
  }
  return true;
}

constexpr int64_t min_memory = 4 << 20;

bool plan_memory(const podman::CreateResourceConfig& r, resource_limits& out,
                 std::string& err) {
  if (r.memory < 0 || (r.memory > 0 && r.memory < min_memory))
    return fail_value(err, "memory", r.memory,
                      "the minimum is 4194304 bytes (4 MiB)");
  if (r.memory_reservation < 0 ||
      (r.memory > 0 && r.memory_reservation > r.memory))
    return fail_value(err, "memory_reservation", r.memory_reservation,
                      "must be from 0 to the memory limit");
  if (r.memory_swap < -1 ||
      (r.memory_swap > 0 && (r.memory == 0 || r.memory_swap < r.memory)))
    return fail_value(err, "memory_swap", r.memory_swap,
                      "memory plus swap: -1 or at least the memory limit, "
                      "which must be set");
  if (r.memory_swappiness < -1 || r.memory_swappiness > 100)
    return fail_value(err, "memory_swappiness", r.memory_swappiness,
                      "must be from 0 to 100 (-1: not set)");
  if (r.kernel_memory < 0 ||
      (r.kernel_memory > 0 && r.kernel_memory < min_memory))
    return fail_value(err, "kernel_memory", r.kernel_memory,
                      "the minimum is 4194304 bytes (4 MiB)");
  out.memory = r.memory;
  out.memory_reservation = r.memory_reservation;
  out.memory_swap = r.memory_swap;
  out.memory_swappiness = r.memory_swappiness > 0 ? r.memory_swappiness : -1;
  out.kernel_memory = r.kernel_memory;
  out.disable_oom_killer = r.disable_oomkiller;
  return true;
}

bool plan_cpu(const podman::CreateResourceConfig& r, resource_limits& out,
              std::string& err) {
  if (r.cpu_shares < 0)
    return fail_value(err, "cpu_shares", r.cpu_shares, "must be positive");
  if (r.cpu_period != 0 && (r.cpu_period < 1000 || r.cpu_period > 1000000))
    return fail_value(err, "cpu_period", r.cpu_period,
                      "must be from 1000 to 1000000 microseconds");
  if (r.cpu_quota < -1 || (r.cpu_quota > 0 && r.cpu_quota < 1000))
    return fail_value(err, "cpu_quota", r.cpu_quota,
                      "must be at least 1000 microseconds (-1: no limit)");
  if (r.cpu_rt_period < 0)
    return fail_value(err, "cpu_rt_period", r.cpu_rt_period,
                      "must be positive");
  if (r.cpu_rt_runtime < -1 ||
      (r.cpu_rt_period > 0 && r.cpu_rt_runtime > r.cpu_rt_period))
    return fail_value(err, "cpu_rt_runtime", r.cpu_rt_runtime,
                      "must be from 0 to cpu_rt_period");
  if (!std::isfinite(r.cpus) || r.cpus < 0 || (r.cpus > 0 && r.cpus < 0.01))
    return refuse(err, "cpus", std::to_string(r.cpus), "must be at least 0.01");
  if (r.cpus > 0 && (r.cpu_period != 0 || r.cpu_quota != 0)) {
    err = "cpus conflicts with cpu_period and cpu_quota: give one or the "
          "other";
    return false;
  }
  for (auto [field, value] : {std::pair{"cpuset_cpus", &r.cpuset_cpus},
                              std::pair{"cpuset_mems", &r.cpuset_mems}})
    if (!value->empty() && !valid_cpuset(*value))
      return fail_text(err, field, *value, "want a list like \"0-3,5\"");

  out.cpu_shares = static_cast<uint64_t>(r.cpu_shares);
  out.cpu_period = static_cast<uint64_t>(r.cpu_period);
  out.cpu_quota = r.cpu_quota;
  if (r.cpus > 0) {
    out.cpu_period = 100000;
    out.cpu_quota = std::llround(r.cpus * 100000);
  }
  out.cpu_rt_period = static_cast<uint64_t>(r.cpu_rt_period);
  out.cpu_rt_runtime = r.cpu_rt_runtime;
  out.cpuset_cpus = r.cpuset_cpus;
  out.cpuset_mems = r.cpuset_mems;
  return true;
}

bool plan_resources(const podman::Create& c, container_plan& out,
                    std::string& err) {
  const auto& r = c.resources;
  auto& res = out.resources;
  if (!plan_memory(r, res, err) || !plan_cpu(r, res, err))
    return false;
  if (r.pids_limit < -1)
    return fail_value(err, "pids_limit", r.pids_limit,
                      "must be positive (-1: no limit)");
  res.pids_limit = r.pids_limit;
  if (r.blkio_weight != 0 && (r.blkio_weight < 10 || r.blkio_weight > 1000))
    return fail_value(err, "blkio_weight", r.blkio_weight,
                      "must be from 10 to 1000");
  res.blkio_weight = static_cast<uint16_t>(r.blkio_weight);
  if (!plan_blkio_list("blkio_weight_device", r.blkio_weight_device, "weight",
                       res.weight_device, err) ||
      !plan_blkio_list("device_read_bps", r.device_read_bps, "bps",
                       res.read_bps, err) ||
      !plan_blkio_list("device_write_bps", r.device_write_bps, "bps",
                       res.write_bps, err) ||
      !plan_blkio_list("device_read_iops", r.device_read_iops, "iops",
                       res.read_iops, err) ||
      !plan_blkio_list("device_write_iops", r.device_write_iops, "iops",
                       res.write_iops, err))
    return false;
  if (r.oom_score_adj < -1000 || r.oom_score_adj > 1000)
    return fail_value(err, "oom_score_adj", r.oom_score_adj,
                      "must be from -1000 to 1000");
  out.oom_score_adj = static_cast<int>(r.oom_score_adj);
  if (r.shm_size < 0)
    return fail_value(err, "shm_size", r.shm_size, "must be positive");
  if (r.shm_size > 0)
    out.shm_size = r.shm_size;
  return true;
}

// ---------------------------------------------------------------------------
// DNS and /etc/hosts

bool plan_dns(const podman::Create& c, container_plan& out, std::string& err) {
  for (const auto& s : c.dns_servers)
    if (!is_ip(s))
      return fail_text(err, "dns_servers entry", s, "not an IP address");
  for (auto [field, list] : {std::pair{"dns_search", &c.dns_search},
                             std::pair{"dns_opt", &c.dns_opt}})
    for (const auto& s : *list)
      if (s.empty() || has_space(s) || has_nul(s))
        return fail_text(err, std::string{field} + " entry", s,
                         "must be one word");
  for (const auto& h : c.host_add) {
    auto colon = h.find(':');
    std::string name = h.substr(0, colon);
    std::string ip = colon == std::string::npos ? "" : h.substr(colon + 1);
    if (name.empty() || has_space(name) || has_nul(name) || !is_ip(ip))
      return fail_text(err, "host_add entry", h, "want \"name:ip\"");
    out.hosts.emplace_back(name, ip);
  }
  out.dns_servers = c.dns_servers;
  out.dns_search = c.dns_search;
  out.dns_options = c.dns_opt;
  return true;
}

// ---------------------------------------------------------------------------
// Security options, logging, the rest

bool plan_security(const podman::Create& c, container_plan& out,
                   std::string& err) {
  out.no_new_privs = c.no_new_privs;
  // No seccomp profile is applied at all yet: a request for one is refused
  // rather than silently run with less confinement than asked.
  auto unconfined = [](std::string_view p) {
    return p.empty() || p == "unconfined";
  };
  if (!unconfined(c.seccomp_profile_path)) {
    err = "seccomp_profile_path " + quoted(c.seccomp_profile_path) +
          ": seccomp profiles are not supported yet";
    return false;
  }
  for (const auto& opt : c.security_opts) {
    auto sep = opt.find_first_of("=:");
    auto key = opt.substr(0, sep);
    auto value = sep == std::string::npos ? "" : opt.substr(sep + 1);
    if (key == "no-new-privileges" && (value.empty() || value == "true"))
      out.no_new_privs = true;
    else if (key == "no-new-privileges" && value == "false")
      continue;
    else if (key == "seccomp" && unconfined(value))
      continue;
    else if (key == "seccomp") {
      err = "security_opts " + quoted(opt) +
            ": seccomp profiles are not supported yet";
      return false;
    } else if (key != "label" && key != "apparmor") {
      // SELinux labels and AppArmor profiles: this host has neither.
      err = "invalid security_opts entry " + quoted(opt);
      return false;
    }
  }
  return true;
}

bool plan_logging(const podman::Create& c, container_plan& out,
                  std::string& err) {
  if (!c.log_driver.empty() && c.log_driver != "k8s-file" &&
      c.log_driver != "json-file") {
    err = "log_driver " + quoted(c.log_driver) +
          " is not supported: use \"k8s-file\"";
    return false;
  }
  for (const auto& opt : c.log_driver_opt) {
    int64_t size = 0;
    if (!opt.starts_with("max-size="))
      return fail_text(err, "log_driver_opt", opt,
                       "only max-size=N[k|m|g] is supported");
    auto value = opt.substr(9);
    if (value == "-1") {
      out.log_max_size = -1;
    } else if (parse_size(value, 1000, size) && size > 0) {
      out.log_max_size = size;
    } else {
      return fail_text(err, "log_driver_opt", opt,
                       "the size must be a positive number with k, m or g");
    }
  }
  return true;
}

bool plan_stop(const podman::Create& c, const image_defaults& img,
               container_plan& out, std::string& err) {
  if (c.stop_signal < 0 || c.stop_signal > rt_max)
    return fail_value(err, "stop_signal", c.stop_signal,
                      "must be from 1 to 64");
  if (c.stop_signal > 0) {
    out.stop_signal = static_cast<int>(c.stop_signal);
  } else if (!img.stop_signal.empty()) {
    out.stop_signal = parse_signal(img.stop_signal);
    if (out.stop_signal == 0) {
      err = "invalid stop signal " + quoted(img.stop_signal) +
            " in the image configuration";
      return false;
    }
  } else {
    out.stop_signal = SIGTERM;
  }
  if (c.stop_timeout < 0 || c.stop_timeout > UINT_MAX)
    return fail_value(err, "stop_timeout", c.stop_timeout,
                      "must be a positive number of seconds");
  out.stop_timeout =
      c.stop_timeout > 0 ? static_cast<unsigned>(c.stop_timeout) : 10;
  return true;
}

bool plan_misc(const podman::Create& c, container_plan& out, std::string& err) {
  out.tty = c.tty;
  out.interactive = c.interactive;
  out.readonly_rootfs = c.readonly_rootfs;
  out.privileged = c.privileged;
  out.init = c.init;
  out.rm = c.rm;
  for (const auto& [key, value] : c.labels)
    if (key.empty()) {
      err = "invalid labels entry with an empty name (value " + quoted(value) +
            ")";
      return false;
    }
  out.labels = c.labels;

  out.init_path = c.init_path;
  struct stat st;
  if (c.init && !c.init_path.empty() &&
      (c.init_path[0] != '/' || stat(c.init_path.c_str(), &st) != 0 ||
       !S_ISREG(st.st_mode)))
    return fail_text(err, "init_path", c.init_path,
                     "must be an absolute path to an existing program");

  out.cgroup_parent = c.cgroup_parent;
  if (!out.cgroup_parent.empty() && !clean_absolute(out.cgroup_parent))
    return fail_text(err, "cgroup_parent", c.cgroup_parent,
                     "must be an absolute path without \"..\"");
  return true;
}

} // namespace

// ---------------------------------------------------------------------------
// Public: planning

int parse_signal(std::string_view s) {
  if (s.empty())
    return 0;
  if (std::isdigit(static_cast<unsigned char>(s[0]))) {
    int n = 0;
    return parse_number(s, n) && n >= 1 && n <= rt_max ? n : 0;
  }
  auto name = upper(s);
  if (name.starts_with("SIG"))
    name.erase(0, 3);
  for (const auto& sig : signal_names)
    if (sig.name == name)
      return sig.number;

  // RTMIN, RTMIN+n, RTMAX, RTMAX-n, all within 34-64.
  for (auto [prefix, base, sign] :
       {std::tuple{"RTMIN", rt_min, '+'}, std::tuple{"RTMAX", rt_max, '-'}}) {
    std::string_view rest{name};
    if (!rest.starts_with(prefix))
      continue;
    rest.remove_prefix(5);
    if (rest.empty())
      return base;
    int offset = 0;
    if (rest[0] != sign || !parse_number(rest.substr(1), offset))
      return 0;
    int n = sign == '+' ? base + offset : base - offset;
    return n >= rt_min && n <= rt_max ? n : 0;
  }
  return 0;
}

std::vector<std::string> requested_command(const podman::Create& c) {
  if (!c.command.empty())
    return c.command;
  if (!c.args.empty() && (c.image.empty() || c.args[0] == c.image))
    return {c.args.begin() + 1, c.args.end()};
  return {};
}

bool plan_container(const podman::Create& c, const image_defaults& img,
                    container_plan& out, std::string& err) {
  out = {};
  if (!plan_args(c, img, out, err) || !plan_env(c, img, out, err) ||
      !plan_work_dir(c, img, out, err) || !plan_user(c, img, out, err) ||
      !plan_namespaces(c, out, err) || !plan_mounts(c, out, err) ||
      !plan_capabilities(c, out, err) || !plan_sysctls(c, out, err) ||
      !plan_ulimits(c, out, err) || !plan_resources(c, out, err) ||
      !plan_dns(c, out, err) || !plan_security(c, out, err) ||
      !plan_logging(c, out, err) || !plan_stop(c, img, out, err) ||
      !plan_misc(c, out, err))
    return false;
  for (const auto& d : c.devices)
    if (!plan_device(d, out, err))
      return false;
  return true;
}

// ---------------------------------------------------------------------------
// Users and groups inside the root file system

namespace {

struct passwd_entry {
  std::string name;
  uint32_t uid = 0, gid = 0;
  std::string home;
};

struct group_entry {
  std::string name;
  uint32_t gid = 0;
  std::vector<std::string> members;
};

// Reads `path` (relative to `rootfs`) with every step, links included,
// resolved inside rootfs as if it were "/". A missing file is no error:
// `found` says whether there was one.
bool read_in_root(const std::string& rootfs, const char* path,
                  std::string& text, bool& found, std::string& err) {
  found = false;
  int root = open(rootfs.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root < 0) {
    err = "opening root file system " + rootfs + ": " + errno_text(errno);
    return false;
  }
  open_how how{};
  how.flags = O_RDONLY | O_NONBLOCK | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd;
  do
    fd = syscall(SYS_openat2, root, path, &how, sizeof how);
  while (fd < 0 && errno == EAGAIN);
  int open_errno = errno;
  close(root);
  if (fd < 0) {
    if (open_errno == ENOENT || open_errno == ENOTDIR)
      return true;
    err = "opening /" + std::string{path} + " in " + rootfs + ": " +
          errno_text(open_errno);
    return false;
  }

  // Only a regular file, and not an endless one.
  struct stat st;
  constexpr size_t limit = 16 << 20;
  if (fstat(static_cast<int>(fd), &st) != 0 || !S_ISREG(st.st_mode) ||
      static_cast<size_t>(st.st_size) > limit) {
    close(static_cast<int>(fd));
    err = "/" + std::string{path} + " in " + rootfs +
          " is not a regular file of at most 16 MiB";
    return false;
  }
  text.clear();
  char buf[8192];
  ssize_t n;
  while ((n = read(static_cast<int>(fd), buf, sizeof buf)) > 0 &&
         text.size() < limit)
    text.append(buf, static_cast<size_t>(n));
  close(static_cast<int>(fd));
  found = true;
  return true;
}

// Lines of "field:field:..." with comments and blank lines left out.
std::vector<std::vector<std::string>> colon_records(const std::string& text) {
  std::vector<std::vector<std::string>> out;
  for (auto& line : split(text, '\n')) {
    if (line.empty() || line[0] == '#')
      continue;
    out.push_back(split(line, ':'));
  }
  return out;
}

// Numbers as docker accepts them: 0 to 2^31-1.
bool parse_id(std::string_view s, uint32_t& out) {
  return parse_number(s, out) && out <= INT32_MAX;
}

std::vector<passwd_entry> parse_passwd(const std::string& text) {
  std::vector<passwd_entry> out;
  for (auto& f : colon_records(text)) {
    passwd_entry e;
    if (f.size() < 4 || !parse_id(f[2], e.uid) || !parse_id(f[3], e.gid))
      continue;
    e.name = f[0];
    e.home = f.size() > 5 && !f[5].empty() ? f[5] : "/";
    out.push_back(std::move(e));
  }
  return out;
}

std::vector<group_entry> parse_group(const std::string& text) {
  std::vector<group_entry> out;
  for (auto& f : colon_records(text)) {
    group_entry e;
    if (f.size() < 3 || !parse_id(f[2], e.gid))
      continue;
    e.name = f[0];
    if (f.size() > 3 && !f[3].empty())
      e.members = split(f[3], ',');
    out.push_back(std::move(e));
  }
  return out;
}

// A group by name or number: its gid, or the number itself if unlisted.
bool find_group(const std::vector<group_entry>& groups, bool have_file,
                const std::string& spec, const char* what, uint32_t& gid,
                std::string& err) {
  uint32_t n = 0;
  bool numeric = parse_id(spec, n);
  for (const auto& g : groups)
    if (g.name == spec || (numeric && g.gid == n)) {
      gid = g.gid;
      return true;
    }
  if (numeric) {
    gid = n;
    return true;
  }
  err = std::string{"unable to find group "} + quoted(spec) + " (" + what +
        ") in the container's /etc/group" +
        (have_file ? "" : ": the image has none");
  return false;
}

} // namespace

bool resolve_user(const std::string& rootfs, const std::string& user,
                  const std::vector<std::string>& group_add, exec_ids& out,
                  std::string& err) {
  out = {};
  std::string passwd_text, group_text;
  bool have_passwd = false, have_group = false;
  if (!read_in_root(rootfs, "etc/passwd", passwd_text, have_passwd, err) ||
      !read_in_root(rootfs, "etc/group", group_text, have_group, err))
    return false;
  auto users = parse_passwd(passwd_text);
  auto groups = parse_group(group_text);

  // The user: a listed name or uid, else a bare number (gid 0).
  auto colon = user.find(':');
  std::string name = user.empty() ? "0" : user.substr(0, colon);
  uint32_t n = 0;
  bool numeric = parse_id(name, n);
  const passwd_entry* match = nullptr;
  for (const auto& u : users)
    if (u.name == name || (numeric && u.uid == n)) {
      match = &u;
      break;
    }
  if (match) {
    out.uid = match->uid;
    out.gid = match->gid;
    out.home = match->home;
  } else if (numeric) {
    out.uid = n;
  } else {
    err = "unable to find user " + quoted(name) +
          " in the container's /etc/passwd" +
          (have_passwd ? "" : ": the image has none");
    return false;
  }

  // The group: as given, else the user's own and its supplementary ones.
  if (colon != std::string::npos) {
    if (!find_group(groups, have_group, user.substr(colon + 1), "user", out.gid,
                    err))
      return false;
  } else if (match) {
    for (const auto& g : groups)
      if (std::find(g.members.begin(), g.members.end(), match->name) !=
          g.members.end())
        out.additional_gids.push_back(g.gid);
  }
  for (const auto& spec : group_add) {
    uint32_t gid = 0;
    if (!find_group(groups, have_group, spec, "group_add", gid, err))
      return false;
    out.additional_gids.push_back(gid);
  }

  // Each group once, in the order found.
  std::vector<uint32_t> unique;
  for (auto gid : out.additional_gids)
    if (std::find(unique.begin(), unique.end(), gid) == unique.end())
      unique.push_back(gid);
  out.additional_gids = std::move(unique);
  return true;
}

// ---------------------------------------------------------------------------
// Files for /etc: resolv.conf, hosts, hostname

namespace {

bool read_file(const std::string& path, std::string& text) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return false;
  text.assign(std::istreambuf_iterator<char>{in}, {});
  return true;
}

// Writes `dir`/`name` through a temporary file and a rename.
bool write_file(const std::string& dir, const std::string& name,
                const std::string& text, std::string& err) {
  auto path = dir + "/" + name;
  auto tmp = dir + "/." + name + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    err = "writing " + path + ": " + errno_text(errno);
    return false;
  }
  size_t done = 0;
  while (done < text.size()) {
    auto n = write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    done += static_cast<size_t>(n);
  }
  int write_errno = errno;
  // The files are bind-mounted read by anyone in the container.
  if (done != text.size() || fchmod(fd, 0644) != 0) {
    close(fd);
    unlink(tmp.c_str());
    err = "writing " + path + ": " + errno_text(write_errno);
    return false;
  }
  close(fd);
  if (rename(tmp.c_str(), path.c_str()) != 0) {
    err = "writing " + path + ": " + errno_text(errno);
    unlink(tmp.c_str());
    return false;
  }
  return true;
}

bool loopback_address(const std::string& ip) {
  return ip.starts_with("127.") || ip == "::1";
}

// The host's resolv.conf with the request's servers, search domains and
// options each replacing the host's. A container with a network namespace
// of its own cannot reach the host's loopback resolvers, so those go; with
// net "none" nothing is reachable anyway and no public fallback is added.
std::string resolv_conf(const container_plan& p, const std::string& host) {
  std::vector<std::string> servers, search, options;
  std::string host_text;
  read_file(host, host_text);
  for (const auto& line : split(host_text, '\n')) {
    auto words = split(line, ' ');
    std::vector<std::string> w;
    for (auto& word : words)
      for (auto& part : split(word, '\t'))
        if (!part.empty())
          w.push_back(part);
    if (w.size() < 2)
      continue;
    if (w[0] == "nameserver")
      servers.push_back(w[1]);
    else if (w[0] == "search" || (w[0] == "domain" && search.empty()))
      search.assign(w.begin() + 1, w.end());
    else if (w[0] == "options")
      options.insert(options.end(), w.begin() + 1, w.end());
  }
  if (p.net.mode != ns_mode::host)
    std::erase_if(servers, loopback_address);
  if (!p.dns_servers.empty())
    servers = p.dns_servers;
  if (!p.dns_search.empty())
    search = p.dns_search;
  if (search.size() == 1 && search[0] == ".") // docker's "no search"
    search.clear();
  if (!p.dns_options.empty())
    options = p.dns_options;

  std::string out;
  auto line = [&](const char* key, const std::vector<std::string>& words) {
    out += key;
    for (const auto& w : words)
      out += " " + w;
    out += "\n";
  };
  if (!search.empty())
    line("search", search);
  for (const auto& s : servers)
    line("nameserver", {s});
  if (!options.empty())
    line("options", options);
  return out;
}

// The host's file when sharing its network, else loopback names; then the
// request's entries and the container's own name.
std::string hosts_file(const container_plan& p, const std::string& host,
                       const std::string& hostname) {
  std::string out;
  if (p.net.mode == ns_mode::host && read_file(host, out)) {
    if (!out.empty() && out.back() != '\n')
      out += '\n';
  } else {
    out = "127.0.0.1\tlocalhost\n"
          "::1\tlocalhost ip6-localhost ip6-loopback\n";
  }
  for (const auto& [name, ip] : p.hosts)
    out += ip + "\t" + name + "\n";
  if (p.uts.mode != ns_mode::host || p.net.mode != ns_mode::host)
    out += "127.0.1.1\t" + hostname + "\n";
  return out;
}

// ---------------------------------------------------------------------------
// config.json pieces

using json::writer;

void write_strings(writer& w, const std::vector<std::string>& v) {
  w.begin_array();
  for (const auto& s : v) {
    w.element();
    w.value(s);
  }
  w.end_array();
}

void write_u64(writer& w, uint64_t v) {
  w.value(json::raw{std::to_string(v)});
}

// `key`: an array of one object per item of `items`, whose members
// `write_members(item)` writes.
template <class List, class Members>
void write_objects(writer& w, const char* key, const List& items,
                   Members write_members) {
  w.key(key);
  w.begin_array();
  for (const auto& item : items) {
    w.element();
    w.begin_object();
    write_members(item);
    w.end_object();
  }
  w.end_array();
}

struct mount_entry {
  std::string destination, type, source;
  std::vector<std::string> options;
};

void write_mount(writer& w, const mount_entry& m) {
  w.element();
  w.begin_object();
  w.key("destination");
  w.value(m.destination);
  w.key("type");
  w.value(m.type);
  w.key("source");
  w.value(m.source);
  w.key("options");
  write_strings(w, m.options);
  w.end_object();
}

// The file systems every container gets, as podman sets them up.
std::vector<mount_entry> default_mounts(const container_plan& p,
                                        const render_inputs& in) {
  const char* sys_access = p.privileged ? "rw" : "ro";
  std::vector<mount_entry> m = {
      {"/proc", "proc", "proc", {"nosuid", "noexec", "nodev"}},
      {"/dev",
       "tmpfs",
       "tmpfs",
       {"nosuid", "strictatime", "mode=755", "size=65536k"}},
      {"/dev/pts",
       "devpts",
       "devpts",
       {"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620",
        "gid=5"}},
      {"/dev/mqueue", "mqueue", "mqueue", {"nosuid", "noexec", "nodev"}},
      {"/sys", "sysfs", "sysfs", {"nosuid", "noexec", "nodev", sys_access}},
      {"/sys/fs/cgroup",
       "cgroup",
       "cgroup",
       {"nosuid", "noexec", "nodev", "relatime", sys_access}}};

  // /dev/shm: own tmpfs (mounted on the host by the caller, so that other
  // containers can join it; a bind from another mount namespace through
  // /proc/PID/root fails), or the one of the IPC namespace joined.
  if (p.ipc.mode == ns_mode::private_ && in.shm_path.empty())
    m.push_back({"/dev/shm",
                 "tmpfs",
                 "shm",
                 {"nosuid", "noexec", "nodev", "mode=1777",
                  "size=" + std::to_string(p.shm_size)}});
  else
    m.push_back({"/dev/shm",
                 "bind",
                 p.ipc.mode == ns_mode::host ? "/dev/shm" : in.shm_path,
                 {"rbind", "nosuid", "noexec", "nodev"}});

  for (const char* name : {"resolv.conf", "hosts", "hostname"})
    m.push_back({std::string{"/etc/"} + name,
                 "bind",
                 in.userdata + "/" + name,
                 {"rbind", "rprivate"}});
  return m;
}

size_t path_depth(const std::string& path) {
  return static_cast<size_t>(std::count(path.begin(), path.end(), '/'));
}

// Defaults first (minus those a request mounts over), then the request's
// mounts parents before children, then the init binary.
std::vector<mount_entry> all_mounts(const container_plan& p,
                                    const render_inputs& in,
                                    const std::string& init) {
  std::vector<mount_entry> user;
  for (const auto& b : p.binds)
    user.push_back({b.destination, "bind", b.source, b.options});
  for (const auto& t : p.tmpfs) {
    auto colon = t.find(':');
    std::vector<std::string> opts = {"rw", "noexec", "nosuid", "nodev"};
    if (colon != std::string::npos)
      opts = split(t.substr(colon + 1), ',');
    user.push_back({tmpfs_destination(t), "tmpfs", "tmpfs", opts});
  }
  std::stable_sort(user.begin(), user.end(), [](const auto& a, const auto& b) {
    return path_depth(a.destination) < path_depth(b.destination);
  });

  std::vector<mount_entry> out;
  for (auto& m : default_mounts(p, in)) {
    bool covered = std::any_of(user.begin(), user.end(), [&](const auto& u) {
      return u.destination == m.destination;
    });
    if (!covered)
      out.push_back(std::move(m));
  }
  out.insert(out.end(), user.begin(), user.end());
  if (p.init)
    out.push_back({"/dev/init", "bind", init, {"bind", "ro"}});
  return out;
}

const std::vector<std::string> masked_paths = {
    "/proc/acpi",          "/proc/kcore",      "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
    "/proc/sched_debug",   "/proc/scsi",       "/sys/firmware",
    "/sys/fs/selinux",     "/sys/dev/block"};

const std::vector<std::string> readonly_paths = {
    "/proc/asound", "/proc/bus", "/proc/fs",
    "/proc/irq",    "/proc/sys", "/proc/sysrq-trigger"};

// Every device node of the host for a privileged container, leaving out
// what the runtime mounts or makes itself.
void host_devices(const std::string& dir, std::vector<device_node>& out) {
  static const std::set<std::string> skip = {
      "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev", "console"};
  DIR* d = opendir(dir.c_str());
  if (!d)
    return;
  while (auto* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == ".." || skip.count(name))
      continue;
    auto path = dir + "/" + name;
    struct stat st;
    if (lstat(path.c_str(), &st) != 0)
      continue;
    if (S_ISDIR(st.st_mode))
      host_devices(path, out);
    else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode))
      out.push_back({path, S_ISCHR(st.st_mode) ? 'c' : 'b', major(st.st_rdev),
                     minor(st.st_rdev), st.st_mode & 07777, st.st_uid,
                     st.st_gid, "rwm"});
  }
  closedir(d);
}

void write_process(writer& w, const container_plan& p,
                   const std::vector<std::string>& env, const exec_ids& ids,
                   const std::vector<rlimit_setting>& rlimits) {
  w.key("process");
  w.begin_object();
  w.key("terminal");
  w.value(p.tty);
  w.key("user");
  w.begin_object();
  w.key("uid");
  w.value(int64_t{ids.uid});
  w.key("gid");
  w.value(int64_t{ids.gid});
  if (!ids.additional_gids.empty()) {
    w.key("additionalGids");
    w.begin_array();
    for (auto gid : ids.additional_gids) {
      w.element();
      w.value(int64_t{gid});
    }
    w.end_array();
  }
  w.end_object();

  std::vector<std::string> args = p.args;
  if (p.init)
    args.insert(args.begin(), {"/dev/init", "--"});
  w.key("args");
  write_strings(w, args);
  w.key("env");
  write_strings(w, env);
  w.key("cwd");
  w.value(p.work_dir);

  // No inheritable or ambient set: what a process gains across exec comes
  // from file capabilities only.
  w.key("capabilities");
  w.begin_object();
  for (const char* set : {"bounding", "effective", "permitted"}) {
    w.key(set);
    write_strings(w, p.caps);
  }
  w.end_object();

  write_objects(w, "rlimits", rlimits, [&](const rlimit_setting& r) {
    w.key("type");
    w.value(r.type);
    w.key("hard");
    write_u64(w, r.hard);
    w.key("soft");
    write_u64(w, r.soft);
  });
  w.key("noNewPrivileges");
  w.value(p.no_new_privs);
  if (p.oom_score_adj != 0) {
    w.key("oomScoreAdj");
    w.value(int64_t{p.oom_score_adj});
  }
  w.end_object();
}

// The device numbers of a device node, a device rule or a block device.
void write_device_numbers(writer& w, int64_t major, int64_t minor) {
  w.key("major");
  w.value(major);
  w.key("minor");
  w.value(minor);
}

void write_blkio_list(writer& w, const char* key,
                      const std::vector<blkio_device>& list,
                      const char* value_key) {
  if (list.empty())
    return;
  write_objects(w, key, list, [&](const blkio_device& d) {
    write_device_numbers(w, d.major, d.minor);
    w.key(value_key);
    write_u64(w, d.value);
  });
}

void write_device_rules(writer& w, const container_plan& p) {
  w.key("devices");
  w.begin_array();
  w.element();
  w.begin_object();
  w.key("allow");
  w.value(p.privileged);
  w.key("access");
  w.value("rwm");
  w.end_object();
  if (!p.privileged)
    for (const auto& d : p.devices) {
      w.element();
      w.begin_object();
      w.key("allow");
      w.value(true);
      w.key("type");
      w.value(std::string(1, d.type));
      write_device_numbers(w, d.major, d.minor);
      w.key("access");
      w.value(d.access);
      w.end_object();
    }
  w.end_array();
}

void write_memory(writer& w, const resource_limits& r) {
  if (r.memory == 0 && r.memory_reservation == 0 && r.memory_swap == 0 &&
      r.kernel_memory == 0 && r.memory_swappiness < 0 && !r.disable_oom_killer)
    return;
  w.key("memory");
  w.begin_object();
  for (auto [key, value] :
       {std::pair{"limit", r.memory},
        std::pair{"reservation", r.memory_reservation},
        std::pair{"swap", r.memory_swap}, std::pair{"kernel", r.kernel_memory}})
    if (value != 0) {
      w.key(key);
      w.value(value);
    }
  if (r.memory_swappiness >= 0) {
    w.key("swappiness");
    w.value(r.memory_swappiness);
  }
  if (r.disable_oom_killer) {
    w.key("disableOOMKiller");
    w.value(true);
  }
  w.end_object();
}

void write_cpu(writer& w, const resource_limits& r) {
  if (r.cpu_shares == 0 && r.cpu_quota == 0 && r.cpu_period == 0 &&
      r.cpu_rt_runtime == 0 && r.cpu_rt_period == 0 && r.cpuset_cpus.empty() &&
      r.cpuset_mems.empty())
    return;
  w.key("cpu");
  w.begin_object();
  for (auto [key, value] :
       {std::pair{"shares", r.cpu_shares}, std::pair{"period", r.cpu_period},
        std::pair{"realtimePeriod", r.cpu_rt_period}})
    if (value != 0) {
      w.key(key);
      write_u64(w, value);
    }
  for (auto [key, value] : {std::pair{"quota", r.cpu_quota},
                            std::pair{"realtimeRuntime", r.cpu_rt_runtime}})
    if (value != 0) {
      w.key(key);
      w.value(value);
    }
  for (auto [key, value] :
       {std::pair{"cpus", &r.cpuset_cpus}, std::pair{"mems", &r.cpuset_mems}})
    if (!value->empty()) {
      w.key(key);
      w.value(*value);
    }
  w.end_object();
}

void write_resources(writer& w, const container_plan& p) {
  const auto& r = p.resources;
  w.key("resources");
  w.begin_object();
  write_device_rules(w, p);
  write_memory(w, r);
  write_cpu(w, r);
  if (r.pids_limit != 0) {
    w.key("pids");
    w.begin_object();
    w.key("limit");
    w.value(r.pids_limit);
    w.end_object();
  }
  bool blkio = r.blkio_weight != 0 || !r.weight_device.empty() ||
               !r.read_bps.empty() || !r.write_bps.empty() ||
               !r.read_iops.empty() || !r.write_iops.empty();
  if (blkio) {
    w.key("blockIO");
    w.begin_object();
    if (r.blkio_weight != 0) {
      w.key("weight");
      w.value(int64_t{r.blkio_weight});
    }
    write_blkio_list(w, "weightDevice", r.weight_device, "weight");
    write_blkio_list(w, "throttleReadBpsDevice", r.read_bps, "rate");
    write_blkio_list(w, "throttleWriteBpsDevice", r.write_bps, "rate");
    write_blkio_list(w, "throttleReadIOPSDevice", r.read_iops, "rate");
    write_blkio_list(w, "throttleWriteIOPSDevice", r.write_iops, "rate");
    w.end_object();
  }
  w.end_object();
}

void write_devices(writer& w, const std::vector<device_node>& devices) {
  write_objects(w, "devices", devices, [&](const device_node& d) {
    w.key("path");
    w.value(d.path);
    w.key("type");
    w.value(std::string(1, d.type));
    write_device_numbers(w, d.major, d.minor);
    w.key("fileMode");
    w.value(int64_t{d.file_mode});
    w.key("uid");
    w.value(int64_t{d.uid});
    w.key("gid");
    w.value(int64_t{d.gid});
  });
}

// A namespace entry: omitted for the host's, a path for a joined one.
bool write_namespace(writer& w, const char* type, const char* proc_name,
                     const ns_choice& ns, pid_t pid, std::string& err) {
  if (ns.mode == ns_mode::host)
    return true;
  if (ns.mode == ns_mode::container && pid <= 0) {
    err = std::string{"joining the "} + type + " namespace of container " +
          quoted(ns.container) + ": it has no running process";
    return false;
  }
  w.element();
  w.begin_object();
  w.key("type");
  w.value(type);
  if (ns.mode == ns_mode::container) {
    w.key("path");
    w.value("/proc/" + std::to_string(pid) + "/ns/" + proc_name);
  }
  w.end_object();
  return true;
}

bool write_linux(writer& w, const container_plan& p, const render_inputs& in,
                 std::string& err) {
  w.key("linux");
  w.begin_object();
  w.key("namespaces");
  w.begin_array();
  if (!write_namespace(w, "pid", "pid", p.pid, in.pid_ns_pid, err) ||
      !write_namespace(w, "network", "net", p.net, in.net_ns_pid, err) ||
      !write_namespace(w, "ipc", "ipc", p.ipc, in.ipc_ns_pid, err) ||
      !write_namespace(w, "uts", "uts", p.uts, in.uts_ns_pid, err) ||
      !write_namespace(w, "mount", "mnt", {}, 0, err))
    return false;
  w.end_array();

  std::vector<device_node> devices = p.devices;
  if (p.privileged) {
    std::vector<device_node> host;
    host_devices("/dev", host);
    for (auto& d : host)
      if (std::none_of(devices.begin(), devices.end(),
                       [&](const auto& x) { return x.path == d.path; }))
        devices.push_back(std::move(d));
  }
  write_devices(w, devices);
  write_resources(w, p);
  if (!in.cgroups_path.empty()) {
    w.key("cgroupsPath");
    w.value(in.cgroups_path);
  }
  if (!p.sysctls.empty()) {
    w.key("sysctl");
    json::encode(w, p.sysctls);
  }
  // No seccomp section: no profile is applied yet (plan_container refuses
  // requests for one). AppArmor and SELinux: this host has neither.
  if (!p.privileged) {
    w.key("maskedPaths");
    write_strings(w, masked_paths);
    w.key("readonlyPaths");
    write_strings(w, readonly_paths);
  }
  w.end_object();
  return true;
}

// Each limit within this process's hard limit: without CAP_SYS_RESOURCE
// the runtime could not raise it, and the container would fail to start.
std::vector<rlimit_setting> clamped(std::vector<rlimit_setting> limits) {
  for (auto& l : limits) {
    rlimit host;
    if (getrlimit(l.resource, &host) != 0 || host.rlim_max == RLIM_INFINITY)
      continue;
    l.hard = std::min<uint64_t>(l.hard, host.rlim_max);
    l.soft = std::min(l.soft, l.hard);
  }
  return limits;
}

std::string host_name() {
  char buf[256] = {};
  if (gethostname(buf, sizeof buf - 1) != 0)
    return "localhost";
  return buf;
}

} // namespace

// ---------------------------------------------------------------------------
// Public: rendering

bool render_spec(const container_plan& p, const render_inputs& in,
                 std::string& json, std::string& err) {
  if (in.id.size() < 12 || in.rootfs.empty() || in.rootfs[0] != '/' ||
      in.userdata.empty()) {
    err = "rendering the spec of container " + quoted(in.id) +
          ": an ID, an absolute rootfs and a userdata directory are needed";
    return false;
  }

  // Who the process runs as, resolved in the image's own files.
  exec_ids ids;
  if (!resolve_user(in.rootfs, p.user, p.group_add, ids, err))
    return false;

  // The name the container sees, and its environment.
  std::string hostname = p.hostname.empty() ? in.id.substr(0, 12) : p.hostname;
  if (p.uts.mode == ns_mode::host)
    hostname = host_name();
  else if (p.uts.mode == ns_mode::container && !in.uts_hostname.empty())
    hostname = in.uts_hostname;
  auto env = p.env;
  if (!has_env(env, "HOSTNAME"))
    set_env(env, "HOSTNAME", hostname);
  if (!has_env(env, "HOME"))
    set_env(env, "HOME", ids.home);

  // The init program, checked before anything is written.
  std::string init = p.init_path.empty() ? in.init_path : p.init_path;
  struct stat st;
  if (p.init && stat(init.c_str(), &st) != 0) {
    err = "init program " + quoted(init) + ": " + errno_text(errno);
    return false;
  }
  if (p.init && !S_ISREG(st.st_mode)) {
    err = "init program " + quoted(init) + ": not a regular file";
    return false;
  }

  // The files bind-mounted into /etc.
  if (!write_file(in.userdata, "hostname", hostname + "\n", err) ||
      !write_file(in.userdata, "hosts", hosts_file(p, in.host_hosts, hostname),
                  err) ||
      !write_file(in.userdata, "resolv.conf", resolv_conf(p, in.host_resolv),
                  err))
    return false;

  // config.json.
  writer w;
  w.begin_object();
  w.key("ociVersion");
  w.value("1.0.2");
  write_process(w, p, env, ids, clamped(p.rlimits));
  w.key("root");
  w.begin_object();
  w.key("path");
  w.value(in.rootfs);
  w.key("readonly");
  w.value(p.readonly_rootfs);
  w.end_object();
  if (p.uts.mode == ns_mode::private_) {
    w.key("hostname");
    w.value(hostname);
  }
  w.key("mounts");
  w.begin_array();
  for (const auto& m : all_mounts(p, in, init))
    write_mount(w, m);
  w.end_array();
  if (!write_linux(w, p, in, err))
    return false;
  w.key("annotations");
  json::encode(w, p.labels);
  w.end_object();
  json = w.take();
  return true;
}

} // namespace berth::runtime
