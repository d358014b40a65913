// Opening files below a directory with openat2, for code that walks trees
// a container or an archive may have filled with hostile symlinks.
#pragma once

#include <linux/openat2.h>

#include <cerrno>
#include <cstdint>
#include <fcntl.h>
#include <string>
#include <sys/syscall.h>
#include <unistd.h>

namespace berth::storage {

/// openat2(2) of `path` below `dirfd` with `flags` (O_CLOEXEC added) and
/// the RESOLVE_* bits `resolve`: the descriptor, or -1 with errno set.
inline int open_below(int dirfd, const std::string& path, uint64_t flags,
                      uint64_t resolve) {
  open_how how{};
  how.flags = flags | O_CLOEXEC;
  how.resolve = resolve;
  for (int tries = 0;; ++tries) {
    auto fd = syscall(SYS_openat2, dirfd, path.c_str(), &how, sizeof how);
    // EAGAIN: a concurrent rename made the kernel give up; try again.
    if (fd >= 0 || errno != EAGAIN || tries == 16)
      return static_cast<int>(fd);
  }
}

/// Opens `path` below `root` with every step, symlink targets included,
/// resolved inside `root` as if it were `/`.
inline int open_in_root(int root, const std::string& path, uint64_t flags) {
  return open_below(root, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS);
}

/// A path for the file open as `fd` (an O_PATH one included, on which the
/// f*xattr calls fail): the kernel follows the magic link to that very
/// file, so nothing is resolved again.
inline std::string proc_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

} // namespace berth::storage
