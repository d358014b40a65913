// One inotify watch on the exit directory, read on a thread of its own that
// an eventfd wakes for stopping.
#include "runtime/exits.hpp"

#include <cctype>
#include <cerrno>
#include <climits>
#include <cstring>
#include <filesystem>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/inotify.h>
#include <unistd.h>

namespace berth::runtime {

namespace fs = std::filesystem;

namespace {

// glib writes "NAME.XXXXXX" and renames it over NAME (g_file_set_contents).
bool is_temporary(const std::string& name) {
  auto dot = name.rfind('.');
  if (dot == std::string::npos || dot == 0 || name.size() - dot != 7)
    return false;
  for (size_t i = dot + 1; i < name.size(); ++i)
    if (!std::isalnum(static_cast<unsigned char>(name[i])))
      return false;
  return true;
}

} // namespace

std::vector<std::string> exit_watcher::existing(const std::string& dir) {
  std::vector<std::string> ids;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator{dir, ec}) {
    auto name = entry.path().filename().string();
    if (entry.is_regular_file(ec) && !is_temporary(name))
      ids.push_back(name);
  }
  return ids;
}

bool exit_watcher::start(const std::string& dir,
                         std::function<void(const std::string&)> on_exit,
                         std::string& err) {
  stop();
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    err = "watching exit files: creating " + dir + ": " + ec.message();
    return false;
  }
  inotify_fd_ = ::inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
  wake_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (inotify_fd_ < 0 || wake_fd_ < 0 ||
      ::inotify_add_watch(inotify_fd_, dir.c_str(),
                          IN_CLOSE_WRITE | IN_MOVED_TO) < 0) {
    err = "watching exit files in " + dir + ": " + std::strerror(errno);
    stop();
    return false;
  }
  dir_ = dir;
  on_exit_ = std::move(on_exit);
  thread_ = std::thread{[this] { watch(); }};
  return true;
}

void exit_watcher::stop() {
  if (thread_.joinable()) {
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_fd_, &one, sizeof one);
    thread_.join();
  }
  for (int* fd : {&inotify_fd_, &wake_fd_})
    if (*fd >= 0) {
      ::close(*fd);
      *fd = -1;
    }
}

void exit_watcher::watch() {
  pollfd fds[2] = {{inotify_fd_, POLLIN, 0}, {wake_fd_, POLLIN, 0}};
  alignas(inotify_event) char buf[64 * (sizeof(inotify_event) + NAME_MAX + 1)];
  for (;;) {
    if (::poll(fds, 2, -1) < 0 && errno != EINTR)
      return;
    if (fds[1].revents & POLLIN)
      return;
    if (!(fds[0].revents & POLLIN))
      continue;
    ssize_t n;
    while ((n = ::read(inotify_fd_, buf, sizeof buf)) > 0) {
      for (char* p = buf; p < buf + n;) {
        auto* ev = reinterpret_cast<inotify_event*>(p);
        p += sizeof(inotify_event) + ev->len;
        if (ev->mask & IN_Q_OVERFLOW) {
          // Events were lost: report everything there, once more.
          for (const auto& id : existing(dir_))
            on_exit_(id);
          continue;
        }
        if (ev->len == 0)
          continue;
        std::string name = ev->name;
        if (!is_temporary(name))
          on_exit_(name);
      }
    }
  }
}

} // namespace berth::runtime
