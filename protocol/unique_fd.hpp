// An owned file descriptor. Header-only and free of everything else of
// ours, so that storage and runtime can share it.
#pragma once

#include <cerrno>
#include <unistd.h>
#include <utility>

namespace berth {

/// Closes its descriptor when dropped or reset; closing keeps errno, so a
/// failure can be reported after the descriptors of the failed step are
/// gone.
class unique_fd {
public:
  explicit unique_fd(int fd = -1) : fd_(fd) {}
  ~unique_fd() { reset(); }
  unique_fd(unique_fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  unique_fd& operator=(unique_fd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  unique_fd(const unique_fd&) = delete;
  unique_fd& operator=(const unique_fd&) = delete;

  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }

  /// Closes the descriptor held, if any, and holds `fd` instead.
  void reset(int fd = -1) {
    if (fd_ >= 0 && fd_ != fd) {
      int saved = errno;
      ::close(fd_);
      errno = saved;
    }
    fd_ = fd;
  }

private:
  int fd_;
};

} // namespace berth
