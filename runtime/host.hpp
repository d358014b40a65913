// Facts about the host, read from /proc, uname and os-release.
#pragma once

#include <cstdint>
#include <string>

namespace berth::runtime {

struct host_info {
  std::string distribution; ///< os-release ID, e.g. "debian"
  std::string version;      ///< os-release VERSION_ID, e.g. "12"
  int64_t mem_total = 0;    ///< bytes
  int64_t mem_free = 0;     ///< bytes
  int64_t swap_total = 0;   ///< bytes
  int64_t swap_free = 0;    ///< bytes
  int64_t cpus = 0;
  std::string arch;     ///< Go-style: amd64, arm64, ...
  std::string hostname;
  std::string kernel;   ///< uname release
  double uptime = 0;    ///< seconds since boot
};

/// Reads the host's facts; fields that cannot be read stay empty or zero.
host_info read_host_info(const std::string& os_release = "/etc/os-release");

/// Go's name for this machine's architecture (amd64, arm64, 386, ...).
std::string go_arch();

/// Uptime as podman prints it: "26h 50m 27.6s (Approximately 1.12 days)";
/// below one hour "50m 27.6s", below a minute "27.6s".
std::string format_uptime(double seconds);

} // namespace berth::runtime
