#include "runtime/top.hpp"

#include "runtime/stats.hpp"
#include "runtime/text_files.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <string_view>
#include <sys/syscall.h>
#include <unistd.h>
#include <unordered_map>

namespace berth::runtime {

namespace {

enum class column {
  user,
  ruser,
  uid,
  group,
  rgroup,
  groups,
  pid,
  ppid,
  pgid,
  pcpu,
  etime,
  time,
  stime,
  tty,
  comm,
  args,
  nice,
  vsz,
  rss,
  state,
  capamb,
  capinh,
  capprm,
  capeff,
  capbnd,
  seccomp,
  label,
  hpid,
  huser,
  huid,
  hgroup,
  hgroups
};

// A descriptor as psgo names it: AIX code, long name, header.
struct descriptor {
  std::string_view code;
  std::string_view name;
  std::string_view header;
  column col;
};

constexpr descriptor known_descriptors[] = {
    {"%U", "user", "USER", column::user},
    {"%u", "ruser", "RUSER", column::ruser},
    {"", "uid", "UID", column::uid},
    {"%G", "group", "GROUP", column::group},
    {"%g", "rgroup", "RGROUP", column::rgroup},
    {"", "groups", "GROUPS", column::groups},
    {"%p", "pid", "PID", column::pid},
    {"%P", "ppid", "PPID", column::ppid},
    {"%r", "pgid", "PGID", column::pgid},
    {"%C", "pcpu", "%CPU", column::pcpu},
    {"%t", "etime", "ELAPSED", column::etime},
    {"%x", "time", "TIME", column::time},
    {"", "stime", "STIME", column::stime},
    {"%y", "tty", "TTY", column::tty},
    {"%c", "comm", "COMMAND", column::comm},
    {"%a", "args", "COMMAND", column::args},
    {"%n", "nice", "NI", column::nice},
    {"%z", "vsz", "VSZ", column::vsz},
    {"", "rss", "RSS", column::rss},
    {"", "state", "STATE", column::state},
    {"", "capamb", "AMBIENT CAPS", column::capamb},
    {"", "capinh", "INHERITED CAPS", column::capinh},
    {"", "capprm", "PERMITTED CAPS", column::capprm},
    {"", "capeff", "EFFECTIVE CAPS", column::capeff},
    {"", "capbnd", "BOUNDING CAPS", column::capbnd},
    {"", "seccomp", "SECCOMP", column::seccomp},
    {"", "label", "LABEL", column::label},
    {"", "hpid", "HPID", column::hpid},
    {"", "huser", "HUSER", column::huser},
    {"", "huid", "HUID", column::huid},
    {"", "hgroup", "HGROUP", column::hgroup},
    {"", "hgroups", "HGROUPS", column::hgroups},
};

constexpr std::string_view default_descriptors[] = {
    "user", "pid", "ppid", "pcpu", "etime", "tty", "time", "comm"};

// Capability names by bit, as psgo prints them.
constexpr const char* capability_names[] = {"CHOWN",
                                            "DAC_OVERRIDE",
                                            "DAC_READ_SEARCH",
                                            "FOWNER",
                                            "FSETID",
                                            "KILL",
                                            "SETGID",
                                            "SETUID",
                                            "SETPCAP",
                                            "LINUX_IMMUTABLE",
                                            "NET_BIND_SERVICE",
                                            "NET_BROADCAST",
                                            "NET_ADMIN",
                                            "NET_RAW",
                                            "IPC_LOCK",
                                            "IPC_OWNER",
                                            "SYS_MODULE",
                                            "SYS_RAWIO",
                                            "SYS_CHROOT",
                                            "SYS_PTRACE",
                                            "SYS_PACCT",
                                            "SYS_ADMIN",
                                            "SYS_BOOT",
                                            "SYS_NICE",
                                            "SYS_RESOURCE",
                                            "SYS_TIME",
                                            "SYS_TTY_CONFIG",
                                            "MKNOD",
                                            "LEASE",
                                            "AUDIT_WRITE",
                                            "AUDIT_CONTROL",
                                            "SETFCAP",
                                            "MAC_OVERRIDE",
                                            "MAC_ADMIN",
                                            "SYSLOG",
                                            "WAKE_ALARM",
                                            "BLOCK_SUSPEND",
                                            "AUDIT_READ",
                                            "PERFMON",
                                            "BPF",
                                            "CHECKPOINT_RESTORE"};

enum cap_set { cap_inh, cap_prm, cap_eff, cap_bnd, cap_amb };

// What /proc tells about one task, ids as the host sees them.
struct task {
  pid_t host_pid = 0;
  pid_t pid = 0;    // in the innermost pid namespace of the task
  size_t depth = 0; // how many pid namespaces the task is in
  pid_t host_ppid = 0;
  pid_t pgid = 0;   // innermost, like pid
  std::string name; // status Name, for args of a task without any
  std::string comm;
  char state = '?';
  uint64_t tty_nr = 0;
  uint64_t cpu_ticks = 0;
  long long nice = 0;
  uint64_t start_ticks = 0;
  uint64_t vsize = 0;
  std::string rss = "0"; // KiB
  unsigned uid[2] = {};  // real, effective
  unsigned gid[2] = {};
  std::vector<unsigned> groups;
  uint64_t caps[5] = {};
  int seccomp = -1;
};

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
    s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' ||
                        s.back() == '\n' || s.back() == '\0'))
    s.remove_suffix(1);
  return s;
}

long long to_number(std::string_view s, int base = 10) {
  std::string copy{trim(s)};
  return std::strtoll(copy.c_str(), nullptr, base);
}

uint64_t to_unsigned(std::string_view s, int base = 10) {
  std::string copy{trim(s)};
  return std::strtoull(copy.c_str(), nullptr, base);
}

std::string proc_path(pid_t pid, const char* name) {
  return "/proc/" + std::to_string(pid) + "/" + name;
}

// Fields of /proc/<pid>/stat after the command, which sits in parentheses
// and may itself hold blanks and parentheses.
bool parse_stat(const std::string& text, task& t) {
  size_t open = text.find('(');
  size_t close = text.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open)
    return false;
  t.comm = text.substr(open + 1, close - open - 1);
  std::string_view rest = std::string_view{text}.substr(close + 1);
  std::string_view f[22];
  for (auto& field : f)
    field = next_word(rest);
  t.state = f[0].empty() ? '?' : f[0].front();
  t.host_ppid = static_cast<pid_t>(to_number(f[1]));
  t.pgid = static_cast<pid_t>(to_number(f[2]));
  t.tty_nr = to_unsigned(f[4]);
  t.cpu_ticks = to_unsigned(f[11]) + to_unsigned(f[12]);
  t.nice = to_number(f[16]);
  t.start_ticks = to_unsigned(f[19]);
  t.vsize = to_unsigned(f[20]);
  return true;
}

// The last of the blank-separated numbers of an NSpid-like line, and how
// many there are.
pid_t innermost(std::string_view list, size_t* depth = nullptr) {
  size_t n = 0;
  std::string_view last;
  for (auto w = next_word(list); !w.empty(); w = next_word(list), ++n)
    last = w;
  if (depth != nullptr)
    *depth = n;
  return static_cast<pid_t>(to_number(last));
}

void parse_status_line(std::string_view key, std::string_view value, task& t) {
  static constexpr std::pair<std::string_view, cap_set> caps[] = {
      {"CapInh", cap_inh},
      {"CapPrm", cap_prm},
      {"CapEff", cap_eff},
      {"CapBnd", cap_bnd},
      {"CapAmb", cap_amb}};
  if (key == "Name") {
    t.name = trim(value);
  } else if (key == "Uid" || key == "Gid") {
    unsigned* ids = key == "Uid" ? t.uid : t.gid;
    ids[0] = static_cast<unsigned>(to_unsigned(next_word(value)));
    ids[1] = static_cast<unsigned>(to_unsigned(next_word(value)));
  } else if (key == "Groups") {
    for (auto w = next_word(value); !w.empty(); w = next_word(value))
      t.groups.push_back(static_cast<unsigned>(to_unsigned(w)));
  } else if (key == "NSpid") {
    t.pid = innermost(value, &t.depth);
  } else if (key == "NSpgid") {
    t.pgid = innermost(value);
  } else if (key == "VmRSS") {
    t.rss = next_word(value);
  } else if (key == "Seccomp") {
    t.seccomp = static_cast<int>(to_number(value));
  }
  for (auto& [name, set] : caps)
    if (key == name)
      t.caps[set] = to_unsigned(value, 16);
}

void parse_status(std::string_view text, task& t) {
  while (!text.empty()) {
    std::string_view line = next_line(text);
    size_t colon = line.find(':');
    if (colon != std::string_view::npos)
      parse_status_line(line.substr(0, colon), line.substr(colon + 1), t);
  }
}

// Reads stat and status of a task; false when it has gone meanwhile.
bool read_task(pid_t host_pid, task& t) {
  std::string text;
  t.host_pid = host_pid;
  t.pid = host_pid;
  t.depth = 1;
  if (!read_text_file(proc_path(host_pid, "stat"), text) ||
      !parse_stat(text, t))
    return false;
  if (!read_text_file(proc_path(host_pid, "status"), text))
    return false;
  parse_status(text, t);
  return true;
}

// Host pids in `dir`/cgroup.procs and in its child cgroups, down to a sane
// depth. False with errno set when `dir` itself cannot be read.
bool collect_pids(const std::string& dir, std::vector<pid_t>& pids,
                  int depth = 0) {
  std::string text;
  if (!read_text_file(dir + "/cgroup.procs", text))
    return false;
  std::string_view rest = text;
  while (!rest.empty()) {
    auto line = trim(next_line(rest));
    if (!line.empty())
      pids.push_back(static_cast<pid_t>(to_number(line)));
  }
  DIR* d = depth < 32 ? ::opendir(dir.c_str()) : nullptr;
  if (d == nullptr)
    return true;
  while (dirent* e = ::readdir(d))
    if (e->d_type == DT_DIR && std::strcmp(e->d_name, ".") != 0 &&
        std::strcmp(e->d_name, "..") != 0)
      collect_pids(dir + "/" + e->d_name, pids, depth + 1);
  ::closedir(d);
  return true;
}

// An id translation of /proc/<pid>/{uid,gid}_map: host ids to the ids the
// task's user namespace sees.
struct id_map {
  struct range {
    uint64_t inside, outside, count;
  };
  std::vector<range> ranges;

  unsigned to_inside(unsigned host) const {
    for (const auto& r : ranges)
      if (host >= r.outside && host - r.outside < r.count)
        return static_cast<unsigned>(r.inside + (host - r.outside));
    return 65534; // the kernel's overflow id
  }
};

id_map read_id_map(pid_t pid, const char* file) {
  id_map m;
  std::string text;
  if (!read_text_file(proc_path(pid, file), text))
    return {{{0, 0, 4294967295u}}};
  std::string_view rest = text;
  while (!rest.empty()) {
    auto line = next_line(rest);
    auto inside = next_word(line);
    auto outside = next_word(line);
    auto count = next_word(line);
    if (!count.empty())
      m.ranges.push_back(
          {to_unsigned(inside), to_unsigned(outside), to_unsigned(count)});
  }
  return m;
}

using name_table = std::unordered_map<unsigned, std::string>;

// Names by id from passwd or group text ("name:x:id:...").
name_table parse_names(std::string_view text) {
  name_table names;
  while (!text.empty()) {
    auto line = next_line(text);
    size_t c1 = line.find(':');
    size_t c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    size_t c3 = c2 == std::string_view::npos ? c2 : line.find(':', c2 + 1);
    if (c3 == std::string_view::npos || c1 == 0 || c3 == c2 + 1)
      continue;
    auto id =
        static_cast<unsigned>(to_unsigned(line.substr(c2 + 1, c3 - c2 - 1)));
    names.emplace(id, std::string{line.substr(0, c1)});
  }
  return names;
}

// Opens `rel` below the directory `root_fd`, resolving symlinks as if it
// were "/": a container's /etc/passwd cannot lead to a host file.
int open_in_root(int root_fd, const char* rel) {
  open_how how{};
  how.flags = O_RDONLY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, root_fd, rel, &how, sizeof how);
  if (fd < 0 && errno == ENOSYS)
    fd = ::openat(root_fd, rel, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  return static_cast<int>(fd);
}

name_table container_names(const std::string& root, const char* rel) {
  std::string text;
  int root_fd = ::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0)
    return {};
  int fd = open_in_root(root_fd, rel);
  ::close(root_fd);
  if (fd < 0 || !read_and_close(fd, text))
    return {};
  return parse_names(text);
}

name_table host_names(const char* path) {
  std::string text;
  if (!read_text_file(path, text))
    return {};
  return parse_names(text);
}

std::string name_of(const name_table& names, unsigned id) {
  auto it = names.find(id);
  return it != names.end() ? it->second : std::to_string(id);
}

// The controlling terminal from its device number, as it appears under
// /dev: pseudo terminals, virtual consoles and serial lines.
std::string tty_name(uint64_t nr) {
  unsigned major = (nr >> 8) & 0xfff;
  unsigned minor = (nr & 0xff) | ((nr >> 12) & 0xfff00);
  if (nr == 0)
    return "?";
  if (major >= 136 && major <= 143)
    return "pts/" + std::to_string((major - 136) * 256 + minor);
  if (major == 4 && minor < 64)
    return "tty" + std::to_string(minor);
  if (major == 4)
    return "ttyS" + std::to_string(minor - 64);
  if (major == 5 && minor == 0)
    return "tty";
  if (major == 5 && minor == 1)
    return "console";
  return "?";
}

unsigned last_capability() {
  static const unsigned last = [] {
    std::string text;
    if (!read_text_file("/proc/sys/kernel/cap_last_cap", text))
      return 40u;
    return static_cast<unsigned>(to_unsigned(text));
  }();
  return last;
}

// A capability set as psgo shows it: "full", "none", or sorted names.
std::string capability_list(uint64_t mask) {
  unsigned last = std::min(last_capability(), 63u);
  uint64_t full = last == 63 ? ~uint64_t{0} : (uint64_t{1} << (last + 1)) - 1;
  if (mask == full)
    return "full";
  std::vector<std::string> names;
  for (unsigned bit = 0; bit < 64; ++bit)
    if (mask & (uint64_t{1} << bit))
      names.push_back(bit < std::size(capability_names) ? capability_names[bit]
                                                        : "unknown");
  if (names.empty())
    return "none";
  std::sort(names.begin(), names.end());
  std::string out;
  for (const auto& n : names)
    out += (out.empty() ? "" : ",") + n;
  return out;
}

std::string fixed3(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", v);
  return buf;
}

std::string security_label(pid_t pid) {
  std::string text;
  if (!read_text_file(proc_path(pid, "attr/current"), text))
    return "?";
  return std::string{trim(text)};
}

// Command and arguments, blank-joined; "[name]" for a task without any.
std::string command_line(const task& t) {
  std::string text;
  read_text_file(proc_path(t.host_pid, "cmdline"), text);
  while (!text.empty() && text.back() == '\0')
    text.pop_back();
  if (text.empty())
    return "[" + t.name + "]";
  std::replace(text.begin(), text.end(), '\0', ' ');
  return text;
}

int64_t clock_ns(clockid_t id) {
  timespec ts{};
  ::clock_gettime(id, &ts);
  return int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}

// Shared by every row of one listing: the clock, and names and id maps
// loaded on first use.
struct listing {
  std::string rootfs;
  int64_t boot_ns = clock_ns(CLOCK_BOOTTIME);
  int64_t real_ns = clock_ns(CLOCK_REALTIME);
  uint64_t hz = static_cast<uint64_t>(::sysconf(_SC_CLK_TCK));
  std::unordered_map<pid_t, const task*> by_host_pid;
  bool names_loaded = false;
  name_table users, groups, host_users, host_groups;

  void load_names(pid_t first) {
    if (names_loaded)
      return;
    std::string root = rootfs.empty() ? proc_path(first, "root") : rootfs;
    users = container_names(root, "etc/passwd");
    groups = container_names(root, "etc/group");
    host_users = host_names("/etc/passwd");
    host_groups = host_names("/etc/group");
    names_loaded = true;
  }

  std::unordered_map<pid_t, std::pair<id_map, id_map>> maps;

  // The uid and gid maps of a task's user namespace.
  const std::pair<id_map, id_map>& id_maps(pid_t pid) {
    auto it = maps.find(pid);
    if (it == maps.end())
      it = maps.emplace(pid, std::pair{read_id_map(pid, "uid_map"),
                                       read_id_map(pid, "gid_map")})
               .first;
    return it->second;
  }

  uint64_t elapsed_ns(const task& t) const {
    int64_t start = static_cast<int64_t>(t.start_ticks * 1'000'000'000 / hz);
    return boot_ns > start ? static_cast<uint64_t>(boot_ns - start) : 0;
  }

  // The parent's pid as the task's own namespace sees it: 0 when the
  // parent lives outside it (the runtime or conmon for the first process).
  pid_t parent_pid(const task& t) const {
    if (t.host_ppid <= 0)
      return 0;
    auto it = by_host_pid.find(t.host_ppid);
    task parent;
    const task* p = it != by_host_pid.end() ? it->second : nullptr;
    if (p == nullptr && read_task(t.host_ppid, parent))
      p = &parent;
    return p != nullptr && p->depth == t.depth ? p->pid : 0;
  }

  std::string start_time(const task& t) const {
    time_t start =
        static_cast<time_t>((real_ns - boot_ns) / 1'000'000'000 +
                            static_cast<int64_t>(t.start_ticks / hz));
    tm local{};
    ::localtime_r(&start, &local);
    char buf[64];
    std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S %z %Z", &local);
    return buf;
  }
};

std::string id_names(const std::vector<unsigned>& ids, const id_map* map,
                     const name_table& names) {
  std::string out;
  for (unsigned id : ids)
    out += (out.empty() ? "" : ",") +
           name_of(names, map != nullptr ? map->to_inside(id) : id);
  return out;
}

// Columns about the task's users and groups.
std::string identity_cell(column c, const task& t, listing& l) {
  l.load_names(t.host_pid);
  const auto& [uids, gids] = l.id_maps(t.host_pid);
  switch (c) {
  case column::user:
    return name_of(l.users, uids.to_inside(t.uid[1]));
  case column::ruser:
    return name_of(l.users, uids.to_inside(t.uid[0]));
  case column::uid:
    return std::to_string(uids.to_inside(t.uid[1]));
  case column::group:
    return name_of(l.groups, gids.to_inside(t.gid[1]));
  case column::rgroup:
    return name_of(l.groups, gids.to_inside(t.gid[0]));
  case column::groups:
    return id_names(t.groups, &gids, l.groups);
  case column::huser:
    return name_of(l.host_users, t.uid[1]);
  case column::huid:
    return std::to_string(t.uid[1]);
  case column::hgroup:
    return name_of(l.host_groups, t.gid[1]);
  case column::hgroups:
    return id_names(t.groups, nullptr, l.host_groups);
  default:
    return "?";
  }
}

std::string cell(column c, const task& t, listing& l) {
  switch (c) {
  case column::pid:
    return std::to_string(t.pid);
  case column::ppid:
    return std::to_string(l.parent_pid(t));
  case column::pgid:
    return std::to_string(t.pgid);
  case column::hpid:
    return std::to_string(t.host_pid);
  case column::pcpu: {
    double elapsed = static_cast<double>(l.elapsed_ns(t)) / 1e9;
    double cpu = static_cast<double>(t.cpu_ticks) / static_cast<double>(l.hz);
    return fixed3(elapsed > 0 ? 100 * cpu / elapsed : 0);
  }
  case column::etime:
    return go_duration(l.elapsed_ns(t));
  case column::time: // whole seconds, as psgo counts
    return go_duration(t.cpu_ticks / l.hz * 1'000'000'000);
  case column::stime:
    return l.start_time(t);
  case column::tty:
    return tty_name(t.tty_nr);
  case column::comm:
    return t.comm;
  case column::args:
    return command_line(t);
  case column::nice:
    return std::to_string(t.nice);
  case column::vsz:
    return std::to_string(t.vsize / 1024);
  case column::rss:
    return t.rss;
  case column::state:
    return std::string(1, t.state);
  case column::capamb:
    return capability_list(t.caps[cap_amb]);
  case column::capinh:
    return capability_list(t.caps[cap_inh]);
  case column::capprm:
    return capability_list(t.caps[cap_prm]);
  case column::capeff:
    return capability_list(t.caps[cap_eff]);
  case column::capbnd:
    return capability_list(t.caps[cap_bnd]);
  case column::seccomp: {
    static constexpr const char* modes[] = {"disabled", "strict", "filter"};
    return t.seccomp >= 0 && t.seccomp < 3 ? modes[t.seccomp] : "?";
  }
  case column::label:
    return security_label(t.host_pid);
  default:
    return identity_cell(c, t, l);
  }
}

// The descriptor named `word`, by name or AIX code.
const descriptor* find_descriptor(std::string_view word) {
  for (const auto& d : known_descriptors)
    if (word == d.name || (!d.code.empty() && word == d.code))
      return &d;
  return nullptr;
}

// Descriptors from the caller's list, splitting entries at commas and
// blanks. False with `err` naming the first unknown one.
bool resolve_descriptors(const std::vector<std::string>& wanted,
                         std::vector<const descriptor*>& out,
                         std::string& err) {
  for (const auto& entry : wanted) {
    std::string_view rest = entry;
    while (!rest.empty()) {
      size_t end = rest.find_first_of(", \t");
      std::string_view word = rest.substr(0, end);
      rest.remove_prefix(end == std::string_view::npos ? rest.size() : end + 1);
      if (word.empty())
        continue;
      const descriptor* d = find_descriptor(word);
      if (d == nullptr) {
        err =
            "listing processes: unknown descriptor '" + std::string{word} + "'";
        return false;
      }
      out.push_back(d);
    }
  }
  if (out.empty())
    for (auto name : default_descriptors)
      out.push_back(find_descriptor(name));
  return true;
}

std::string join_row(const std::vector<std::string>& cells) {
  std::string row;
  for (const auto& c : cells) {
    if (!row.empty())
      row += '\t';
    row += c;
  }
  return row;
}

} // namespace

std::string go_duration(uint64_t ns) {
  constexpr uint64_t second = 1'000'000'000;
  if (ns == 0)
    return "0s";

  // The fraction with trailing zeros dropped, e.g. ".25"; empty for none.
  auto fraction = [](uint64_t part, int digits) {
    if (part == 0)
      return std::string{};
    char buf[24];
    std::snprintf(buf, sizeof buf, ".%0*llu", digits,
                  static_cast<unsigned long long>(part));
    std::string s = buf;
    while (s.back() == '0')
      s.pop_back();
    return s;
  };

  if (ns < 1000)
    return std::to_string(ns) + "ns";
  if (ns < 1'000'000)
    return std::to_string(ns / 1000) + fraction(ns % 1000, 3) + "\xc2\xb5s";
  if (ns < second)
    return std::to_string(ns / 1'000'000) + fraction(ns % 1'000'000, 6) + "ms";
  uint64_t secs = ns / second;
  std::string out;
  if (secs >= 3600)
    out += std::to_string(secs / 3600) + "h";
  if (secs >= 60)
    out += std::to_string(secs / 60 % 60) + "m";
  return out + std::to_string(secs % 60) + fraction(ns % second, 9) + "s";
}

bool list_processes(const std::string& cgroups_path, const std::string& rootfs,
                    const std::vector<std::string>& descriptors,
                    std::vector<std::string>& rows, std::string& err) {
  std::vector<const descriptor*> columns;
  if (!resolve_descriptors(descriptors, columns, err))
    return false;

  std::string dir = cgroup_procs_directory(cgroups_path);
  std::vector<pid_t> pids;
  if (dir.empty() || !collect_pids(dir, pids)) {
    err = "listing processes of cgroup " + cgroups_path + ": " +
          (dir.empty() ? std::string{"no cgroup file system is mounted"}
                       : dir + "/cgroup.procs: " + std::strerror(errno));
    return false;
  }

  // Tasks that exit while we read are left out.
  std::vector<task> tasks;
  tasks.reserve(pids.size());
  for (pid_t pid : pids)
    if (task t; read_task(pid, t))
      tasks.push_back(std::move(t));
  std::sort(tasks.begin(), tasks.end(),
            [](const task& a, const task& b) { return a.pid < b.pid; });

  listing l;
  l.rootfs = rootfs;
  for (const auto& t : tasks)
    l.by_host_pid.emplace(t.host_pid, &t);
  rows.clear();
  std::vector<std::string> cells;
  for (const auto* d : columns)
    cells.emplace_back(d->header);
  rows.push_back(join_row(cells));
  for (const auto& t : tasks) {
    cells.clear();
    for (const auto* d : columns)
      cells.push_back(cell(d->col, t, l));
    rows.push_back(join_row(cells));
  }
  return true;
}

} // namespace berth::runtime
