// overlayfs mounts for container root file systems.
#pragma once

#include <string>
#include <vector>

namespace berth::runtime {

/// Mounts overlayfs at `merged` over `lower_top_first` (top layer first, as
/// overlay wants them) with `upper` and `work`; an empty `upper` makes a
/// read-only mount (then `work` is ignored and two lowers are needed).
/// Mount data is limited to one page, so long layer lists go through short
/// /proc/self/fd/N names of opened layer directories (no chdir: the daemon
/// has many threads), and lists too long even for that are passed one layer
/// at a time through fsconfig's "lowerdir+" (Linux 6.8 and later).
bool mount_overlay(const std::vector<std::string>& lower_top_first,
                   const std::string& upper, const std::string& work,
                   const std::string& merged, std::string& err);

/// Unmounts `merged`, detaching lazily when it is busy; a path that is not
/// mounted is success.
bool unmount(const std::string& merged, std::string& err);

/// True when `path` is a mount point in our mount namespace.
bool is_mounted(const std::string& path);

/// Mounts a tmpfs of `size` bytes for a container's /dev/shm at `path`
/// (created if missing; already mounted is success).
bool mount_shm(const std::string& path, int64_t size, std::string& err);

} // namespace berth::runtime
