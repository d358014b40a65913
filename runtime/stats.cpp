#include "runtime/stats.hpp"

#include "runtime/text_files.hpp"

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fcntl.h>
#include <limits>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

// Sampling runs once a second per watched container, so every read here is
// open/read/close into buffers that live as long as the thread, parsed by
// hand: no streams, and no allocation once the buffers have grown.

namespace berth::runtime {

namespace {

constexpr uint64_t unlimited = std::numeric_limits<uint64_t>::max();

// Where one controller's files are: a mount of its hierarchy and the path
// within the hierarchy that the mount shows as its root.
struct hierarchy {
  std::string mount; // empty: not mounted anywhere
  std::string root;
  bool v2 = false;
};

struct hierarchies {
  hierarchy cpu;    // v1 cpuacct, or cgroup2 (cpu.stat is always there)
  hierarchy memory; // v1 memory, or cgroup2 with "memory"
  hierarchy pids;   // v1 pids, or cgroup2 with "pids"
  hierarchy io;     // v1 blkio, or cgroup2 with "io"
  hierarchy procs;  // where cgroup.procs is read for process listings
};

// Per-thread buffers reused by every read.
struct scratch {
  std::string path;
  std::string text;
};

scratch& thread_scratch() {
  thread_local scratch s;
  return s;
}

// The decimal number at the start of `s` (after blanks); "max" is unlimited.
uint64_t parse_u64(std::string_view s) {
  s = skip_blanks(s);
  if (s.starts_with("max"))
    return unlimited;
  uint64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      break;
    uint64_t d = static_cast<uint64_t>(c - '0');
    if (v > (unlimited - d) / 10)
      return unlimited;
    v = v * 10 + d;
  }
  return v;
}

// mountinfo escapes blanks, newlines and backslashes in paths as \ooo.
std::string unescape(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && s[i + 1] >= '0' &&
        s[i + 1] <= '7') {
      out += static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
                               (s[i + 3] - '0'));
      i += 3;
    } else {
      out += s[i];
    }
  }
  return out;
}

// Whether `word` is one of the `sep`-separated items of `list`.
bool has_item(std::string_view list, std::string_view word, char sep) {
  for (;;) {
    size_t end = list.find(sep);
    std::string_view item = skip_blanks(list.substr(0, end));
    while (!item.empty() && is_blank(item.back()))
      item.remove_suffix(1);
    if (item == word)
      return true;
    if (end == std::string_view::npos)
      return false;
    list.remove_prefix(end + 1);
  }
}

// Records one line of /proc/self/mountinfo when it mounts a cgroup file
// system: "id parent dev root mountpoint opts [optional...] - type src
// superopts".
void note_mount(std::string_view line, hierarchies& h, hierarchy& unified) {
  size_t dash = line.find(" - ");
  if (dash == std::string_view::npos)
    return;
  std::string_view left = line.substr(0, dash);
  std::string_view right = line.substr(dash + 3);
  for (int i = 0; i < 3; ++i)
    next_word(left);
  std::string root = unescape(next_word(left));
  std::string mount = unescape(next_word(left));
  std::string_view type = next_word(right);
  next_word(right);
  std::string_view options = next_word(right);
  if (type == "cgroup2" && unified.mount.empty()) {
    unified = {mount, root, true};
    return;
  }
  if (type != "cgroup")
    return;
  std::pair<const char*, hierarchy*> wanted[] = {{"cpuacct", &h.cpu},
                                                 {"memory", &h.memory},
                                                 {"pids", &h.pids},
                                                 {"blkio", &h.io}};
  for (auto& [name, target] : wanted)
    if (target->mount.empty() && has_item(options, name, ','))
      *target = {mount, root, false};
}

hierarchies find_hierarchies() {
  hierarchies h;
  hierarchy unified;
  std::string text;
  if (read_text_file("/proc/self/mountinfo", text)) {
    std::string_view rest = text;
    while (!rest.empty())
      note_mount(next_line(rest), h, unified);
  }

  // Controllers not mounted as v1 come from cgroup2, when it has them.
  if (!unified.mount.empty()) {
    std::string controllers;
    read_text_file(unified.mount + "/cgroup.controllers", controllers);
    if (h.cpu.mount.empty())
      h.cpu = unified;
    if (h.memory.mount.empty() && has_item(controllers, "memory", ' '))
      h.memory = unified;
    if (h.pids.mount.empty() && has_item(controllers, "pids", ' '))
      h.pids = unified;
    if (h.io.mount.empty() && has_item(controllers, "io", ' '))
      h.io = unified;
  }

  // v1 controllers are where runc puts tasks on a hybrid host; cgroup2 is
  // only used for listings when nothing else is mounted.
  for (const hierarchy* c : {&h.pids, &h.memory, &h.cpu, &unified})
    if (h.procs.mount.empty() && !c->mount.empty())
      h.procs = *c;
  return h;
}

const hierarchies& mounts() {
  static const hierarchies h = find_hierarchies();
  return h;
}

uint64_t host_memory() {
  static const uint64_t total = [] {
    std::string text;
    if (!read_text_file("/proc/meminfo", text))
      return uint64_t{0};
    return keyed_value(text, "MemTotal:") * 1024;
  }();
  return total;
}

uint64_t clock_ticks() {
  static const long hz = ::sysconf(_SC_CLK_TCK);
  return hz > 0 ? static_cast<uint64_t>(hz) : 100;
}

// Builds the path of file `name` of cgroup `cgroups_path` in `h` into
// `out`, dropping the part of the path that the mount shows as its root.
void cgroup_file(const hierarchy& h, std::string_view cgroups_path,
                 const char* name, std::string& out) {
  std::string_view rel = cgroups_path;
  if (h.root != "/" && rel.starts_with(h.root) &&
      (rel.size() == h.root.size() || rel[h.root.size()] == '/'))
    rel.remove_prefix(h.root.size());
  out.assign(h.mount);
  if (!rel.empty() && rel.front() != '/')
    out += '/';
  out += rel;
  if (name != nullptr) {
    out += '/';
    out += name;
  }
}

// Reads file `name` of the cgroup into s.text: false with errno set.
bool read_cgroup_file(const hierarchy& h, std::string_view cgroups_path,
                      const char* name, scratch& s) {
  cgroup_file(h, cgroups_path, name, s.path);
  return read_text_file(s.path.c_str(), s.text);
}

// As read_cgroup_file, but a missing file reads as empty.
bool read_optional(const hierarchy& h, std::string_view cgroups_path,
                   const char* name, scratch& s) {
  if (read_cgroup_file(h, cgroups_path, name, s))
    return true;
  if (errno != ENOENT)
    return false;
  s.text.clear();
  return true;
}

bool read_cpu(const hierarchy& h, std::string_view path, cgroup_stats& out,
              scratch& s) {
  if (h.v2) {
    if (!read_cgroup_file(h, path, "cpu.stat", s))
      return false;
    out.cpu_nano = keyed_value(s.text, "usage_usec") * 1000;
    out.system_nano = keyed_value(s.text, "system_usec") * 1000;
    return true;
  }
  if (!read_cgroup_file(h, path, "cpuacct.usage", s))
    return false;
  out.cpu_nano = parse_u64(s.text);

  // cpuacct.usage_sys (Linux 4.7) counts in ns; cpuacct.stat in ticks.
  if (!read_optional(h, path, "cpuacct.usage_sys", s))
    return false;
  if (!s.text.empty()) {
    out.system_nano = parse_u64(s.text);
    return true;
  }
  if (!read_optional(h, path, "cpuacct.stat", s))
    return false;
  out.system_nano =
      keyed_value(s.text, "system") * 1'000'000'000 / clock_ticks();
  return true;
}

bool read_memory(const hierarchy& h, std::string_view path, cgroup_stats& out,
                 scratch& s) {
  out.mem_limit = host_memory();
  if (h.mount.empty())
    return true;
  if (!read_optional(h, path, h.v2 ? "memory.current" : "memory.usage_in_bytes",
                     s))
    return false;
  out.mem_usage = parse_u64(s.text);
  if (!read_optional(h, path, h.v2 ? "memory.max" : "memory.limit_in_bytes", s))
    return false;
  uint64_t limit = s.text.empty() ? unlimited : parse_u64(s.text);
  if (limit < out.mem_limit || out.mem_limit == 0)
    out.mem_limit = limit;
  return true;
}

bool read_pids(const hierarchy& h, std::string_view path, cgroup_stats& out,
               scratch& s) {
  if (h.mount.empty())
    return true;
  if (!read_optional(h, path, "pids.current", s))
    return false;
  out.pids = parse_u64(s.text);
  return true;
}

bool read_io(const hierarchy& h, std::string_view path, cgroup_stats& out,
             scratch& s) {
  if (h.mount.empty())
    return true;
  if (h.v2) {
    if (!read_optional(h, path, "io.stat", s))
      return false;
    sum_io_stat(s.text, out.block_read, out.block_write);
    return true;
  }
  // The recursive file counts child cgroups too; old kernels lack it.
  if (!read_optional(h, path, "blkio.throttle.io_service_bytes_recursive", s))
    return false;
  if (s.text.empty() &&
      !read_optional(h, path, "blkio.throttle.io_service_bytes", s))
    return false;
  sum_blkio(s.text, out.block_read, out.block_write);
  return true;
}

// The daemon's own network namespace, as (device, inode) of its ns file.
const struct stat& own_netns() {
  static const struct stat st = [] {
    struct stat s {};
    ::stat("/proc/self/ns/net", &s);
    return s;
  }();
  return st;
}

bool read_net(pid_t pid, cgroup_stats& out, scratch& s) {
  s.path.assign("/proc/");
  s.path += std::to_string(pid);
  size_t base = s.path.size();
  s.path += "/ns/net";
  struct stat ns {};
  if (::stat(s.path.c_str(), &ns) != 0)
    return false;
  if (ns.st_ino == own_netns().st_ino && ns.st_dev == own_netns().st_dev)
    return true;
  s.path.resize(base);
  s.path += "/net/dev";
  if (!read_text_file(s.path.c_str(), s.text))
    return false;
  sum_net_dev(s.text, out.net_rx, out.net_tx);
  return true;
}

// The whole disk holding device `dev` as "major:minor": a partition's
// parent in /sys/dev/block, since throttle rules only take whole disks.
bool whole_disk(dev_t dev, std::string& out) {
  std::string sys = "/sys/dev/block/" + std::to_string(major(dev)) + ":" +
                    std::to_string(minor(dev));
  std::string text;
  if (::access((sys + "/partition").c_str(), F_OK) != 0) {
    out = sys.substr(sizeof "/sys/dev/block/" - 1);
    return true;
  }
  if (!read_text_file(sys + "/../dev", text))
    return false;
  while (!text.empty() && is_blank(text.back()))
    text.pop_back();
  out = text;
  return true;
}

} // namespace

bool enable_block_accounting(const std::string& cgroups_path,
                             const std::string& path, std::string& err) {
  const hierarchy& h = mounts().io;
  struct stat st {};
  if (h.mount.empty() || h.v2)
    return true;
  if (::stat(path.c_str(), &st) != 0) {
    err =
        "enabling block I/O accounting: " + path + ": " + std::strerror(errno);
    return false;
  }
  if (major(st.st_dev) == 0)
    return true;

  std::string disk, file;
  if (!whole_disk(st.st_dev, disk)) {
    err = "enabling block I/O accounting: finding the disk of " + path + ": " +
          std::strerror(errno);
    return false;
  }
  cgroup_file(h, cgroups_path, "blkio.throttle.read_bps_device", file);
  std::string rule = disk + " 0";
  int fd = ::open(file.c_str(), O_WRONLY | O_CLOEXEC);
  bool ok = fd >= 0 && ::write(fd, rule.data(), rule.size()) ==
                           static_cast<ssize_t>(rule.size());
  int e = errno;
  if (fd >= 0)
    ::close(fd);
  if (!ok) {
    err = "enabling block I/O accounting: writing \"" + rule + "\" to " + file +
          ": " + std::strerror(e);
    return false;
  }
  return true;
}

uint64_t keyed_value(std::string_view text, std::string_view key) {
  while (!text.empty()) {
    std::string_view line = next_line(text);
    if (line.size() > key.size() && line.starts_with(key) &&
        (line[key.size()] == ' ' || line[key.size()] == '\t'))
      return parse_u64(line.substr(key.size()));
  }
  return 0;
}

void sum_blkio(std::string_view text, uint64_t& read, uint64_t& write) {
  while (!text.empty()) {
    std::string_view line = next_line(text);
    std::string_view device = next_word(line);
    std::string_view op = next_word(line);
    if (device.find(':') == std::string_view::npos)
      continue; // the closing "Total N" line
    if (op == "Read")
      read += parse_u64(line);
    else if (op == "Write")
      write += parse_u64(line);
  }
}

void sum_io_stat(std::string_view text, uint64_t& read, uint64_t& write) {
  while (!text.empty()) {
    std::string_view line = next_line(text);
    next_word(line); // major:minor
    for (auto field = next_word(line); !field.empty();
         field = next_word(line)) {
      if (field.starts_with("rbytes="))
        read += parse_u64(field.substr(7));
      else if (field.starts_with("wbytes="))
        write += parse_u64(field.substr(7));
    }
  }
}

void sum_net_dev(std::string_view text, uint64_t& rx, uint64_t& tx) {
  while (!text.empty()) {
    std::string_view line = next_line(text);
    size_t colon = line.find(':');
    if (colon == std::string_view::npos)
      continue; // the two header lines
    std::string_view name = skip_blanks(line.substr(0, colon));
    if (name == "lo")
      continue;
    // 8 receive columns, bytes first, then 8 transmit columns.
    std::string_view fields = line.substr(colon + 1);
    rx += parse_u64(next_word(fields));
    for (int i = 0; i < 7; ++i)
      next_word(fields);
    tx += parse_u64(next_word(fields));
  }
}

bool read_cgroup_stats(const std::string& cgroups_path, pid_t pid,
                       cgroup_stats& out, std::string& err) {
  const hierarchies& h = mounts();
  scratch& s = thread_scratch();
  out = cgroup_stats{};
  if (h.cpu.mount.empty()) {
    err = "reading stats of cgroup " + cgroups_path +
          ": no cgroup file system is mounted";
    return false;
  }

  if (!read_cpu(h.cpu, cgroups_path, out, s) ||
      !read_memory(h.memory, cgroups_path, out, s) ||
      !read_pids(h.pids, cgroups_path, out, s) ||
      !read_io(h.io, cgroups_path, out, s)) {
    err = "reading stats of cgroup " + cgroups_path + ": " + s.path + ": " +
          std::strerror(errno);
    return false;
  }

  long cpus = ::sysconf(_SC_NPROCESSORS_ONLN);
  out.online_cpus = cpus > 0 ? static_cast<uint64_t>(cpus) : 0;

  if (pid > 0 && !read_net(pid, out, s)) {
    err = "reading network stats of process " + std::to_string(pid) + ": " +
          s.path + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

double cpu_percent(uint64_t cpu_prev, uint64_t cpu_now, uint64_t wall_prev_ns,
                   uint64_t wall_now_ns) {
  if (cpu_now <= cpu_prev || wall_now_ns <= wall_prev_ns)
    return 0;
  return static_cast<double>(cpu_now - cpu_prev) /
         static_cast<double>(wall_now_ns - wall_prev_ns) * 100.0;
}

std::string cgroup_procs_directory(const std::string& cgroups_path) {
  const hierarchies& h = mounts();
  if (h.procs.mount.empty())
    return {};
  std::string dir;
  cgroup_file(h.procs, cgroups_path, nullptr, dir);
  return dir;
}

void remove_cgroups(const std::string& cgroups_path) {
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator("/sys/fs/cgroup", ec)) {
    if (!e.is_directory(ec))
      continue;
    auto dir = e.path().string() + cgroups_path;
    ::rmdir(dir.c_str());
  }
  // cgroup v2 mounted at /sys/fs/cgroup itself.
  ::rmdir(("/sys/fs/cgroup" + cgroups_path).c_str());
}

} // namespace berth::runtime
