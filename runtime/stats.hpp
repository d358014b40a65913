// Resource usage of a container, read from its cgroup (v1 or v2) and from
// the network devices of its namespace, cheaply enough to sample every second.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <sys/types.h>

namespace berth::runtime {

/// One sample of a container's counters; all values are totals since the
/// cgroup was created, except the gauges mem_usage, mem_limit and pids.
struct cgroup_stats {
  uint64_t cpu_nano = 0;    ///< cpu time of all tasks, user and kernel, ns
  uint64_t system_nano = 0; ///< kernel-mode part of cpu_nano, ns
  /// Charged memory, page cache included, as podman reports it (v1
  /// memory.usage_in_bytes, v2 memory.current).
  uint64_t mem_usage = 0;
  uint64_t mem_limit = 0;   ///< cgroup limit, at most the host's RAM
  uint64_t pids = 0;        ///< tasks in the cgroup
  uint64_t block_read = 0;  ///< bytes read from block devices
  uint64_t block_write = 0; ///< bytes written to block devices
  /// Bytes received and sent on every interface of the container's network
  /// namespace except loopback (lo traffic never leaves the container and
  /// would count each byte twice). Zero when the container shares the
  /// daemon's network namespace (host networking), as podman reports.
  uint64_t net_rx = 0;
  uint64_t net_tx = 0;
  uint64_t online_cpus = 0; ///< cpus online on the host
};

/// Reads the stats of the cgroup `cgroups_path` (the OCI linux.cgroupsPath,
/// "/berth/<id>", relative to each hierarchy's root) and the network
/// counters of the namespace of `pid` (none when pid <= 0). Hierarchies are
/// found in /proc/self/mountinfo once per process: a controller mounted as
/// cgroup v1 is read there, otherwise from the cgroup2 mount. False with
/// `err` when the cgroup or the process is gone; a controller that is not
/// mounted at all leaves its values at zero.
bool read_cgroup_stats(const std::string& cgroups_path, pid_t pid,
                       cgroup_stats& out, std::string& err);

/// Cpu use over an interval as a real percentage: 100 is one core busy for
/// the whole interval, 250 two and a half. 0 when either delta is <= 0.
double cpu_percent(uint64_t cpu_prev, uint64_t cpu_now, uint64_t wall_prev_ns,
                   uint64_t wall_now_ns);

/// On cgroup v1, Linux (6.x at least) counts a disk's block I/O in
/// blkio.throttle.io_service_bytes only once some cgroup has had a throttle
/// rule for that disk. This writes a rule without a limit ("<disk> 0") for
/// the disk holding `path` (the storage root) into the cgroup's
/// blkio.throttle.read_bps_device, which turns counting on for every cgroup
/// on that disk at the cost of the throttle check on each of its I/Os. True
/// without doing anything on cgroup v2 (io.stat always counts), without a
/// blkio hierarchy, or when `path` is on no block device. Call it after the
/// runtime made the cgroup and before the container runs.
bool enable_block_accounting(const std::string& cgroups_path,
                             const std::string& path, std::string& err);

/// The directory of `cgroups_path` in the hierarchy that lists the
/// cgroup's processes (v1 pids, memory or cpuacct; else cgroup2); empty
/// when no cgroup file system is mounted.
std::string cgroup_procs_directory(const std::string& cgroups_path);

// The parsers below are exposed for tests; each takes a file's whole text.

/// The value of `key` in a flat keyed file ("key value" lines: cpu.stat,
/// memory.stat, cpuacct.stat); 0 when absent.
uint64_t keyed_value(std::string_view text, std::string_view key);

/// Sums the Read and Write rows of a v1 blkio io_service_bytes file.
void sum_blkio(std::string_view text, uint64_t& read, uint64_t& write);

/// Sums rbytes and wbytes over the devices of a v2 io.stat file.
void sum_io_stat(std::string_view text, uint64_t& read, uint64_t& write);

/// Sums received and sent bytes over the interfaces of /proc/<pid>/net/dev,
/// loopback left out.
void sum_net_dev(std::string_view text, uint64_t& rx, uint64_t& tx);

/// Removes the (empty) cgroup `cgroups_path` from every hierarchy it is in;
/// what is already gone or still busy is left alone.
void remove_cgroups(const std::string& cgroups_path);

} // namespace berth::runtime
