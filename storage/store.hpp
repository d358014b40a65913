// What the store looks like from outside: paths, driver, file system.
#pragma once

#include <string>

namespace berth::storage {

struct store_status {
  std::string graph_driver = "overlay";
  std::string backing_filesystem; ///< e.g. "extfs", "xfs", "tmpfs"
  bool supports_d_type = false;
  bool native_overlay_diff = true;
};

/// Examines the file system under `root` (created if missing).
store_status probe_store(const std::string& root);

/// Creates `path` and its missing parents with `mode`; false with errno
/// set on failure.
bool make_dirs(const std::string& path, unsigned mode);

} // namespace berth::storage
