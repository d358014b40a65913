#include "runtime/host.hpp"

#include <cmath>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <sys/utsname.h>
#include <unistd.h>

namespace berth::runtime {

namespace {

// A value of /proc/meminfo in bytes ("MemTotal:  24576000 kB").
void read_meminfo(host_info& h) {
  std::ifstream in{"/proc/meminfo"};
  std::string key, unit;
  int64_t value;
  while (in >> key >> value) {
    std::getline(in, unit);
    int64_t bytes = unit.find("kB") != std::string::npos ? value * 1024
                                                          : value;
    if (key == "MemTotal:")
      h.mem_total = bytes;
    else if (key == "MemFree:")
      h.mem_free = bytes;
    else if (key == "SwapTotal:")
      h.swap_total = bytes;
    else if (key == "SwapFree:")
      h.swap_free = bytes;
  }
}

std::string unquote(std::string v) {
  if (v.size() >= 2 && (v.front() == '"' || v.front() == '\'') &&
      v.back() == v.front())
    return v.substr(1, v.size() - 2);
  return v;
}

void read_os_release(host_info& h, const std::string& path) {
  std::ifstream in{path};
  std::string line;
  while (std::getline(in, line)) {
    auto eq = line.find('=');
    if (eq == std::string::npos)
      continue;
    auto key = line.substr(0, eq);
    if (key == "ID")
      h.distribution = unquote(line.substr(eq + 1));
    else if (key == "VERSION_ID")
      h.version = unquote(line.substr(eq + 1));
  }
}

} // namespace

std::string go_arch() {
  utsname u;
  if (uname(&u) != 0)
    return "unknown";
  std::string m = u.machine;
  if (m == "x86_64")
    return "amd64";
  if (m == "aarch64")
    return "arm64";
  if (m.size() == 4 && m[0] == 'i' && m.substr(2) == "86")
    return "386";
  if (m.starts_with("armv"))
    return "arm";
  return m;
}

host_info read_host_info(const std::string& os_release) {
  host_info h;
  read_meminfo(h);
  read_os_release(h, os_release);
  h.cpus = sysconf(_SC_NPROCESSORS_ONLN);
  h.arch = go_arch();
  utsname u;
  if (uname(&u) == 0) {
    h.hostname = u.nodename;
    h.kernel = u.release;
  }
  std::ifstream up{"/proc/uptime"};
  up >> h.uptime;
  return h;
}

std::string format_uptime(double seconds) {
  auto total = int64_t(seconds);
  int64_t hours = total / 3600, minutes = total % 3600 / 60;
  double secs = seconds - double(hours * 3600 + minutes * 60);
  char sec[32];
  std::snprintf(sec, sizeof sec, "%.2f", secs);
  // Trim as Go prints durations: 27.60 -> 27.6, 27.00 -> 27.
  std::string s = sec;
  while (s.back() == '0')
    s.pop_back();
  if (s.back() == '.')
    s.pop_back();
  std::ostringstream out;
  if (hours > 0)
    out << hours << "h ";
  if (hours > 0 || minutes > 0)
    out << minutes << "m ";
  out << s << 's';
  if (hours > 0) {
    char days[32];
    // As podman computes it: whole hours over 24.
    std::snprintf(days, sizeof days, "%.2f", double(hours) / 24);
    out << " (Approximately " << days << " days)";
  }
  return out.str();
}

} // namespace berth::runtime
