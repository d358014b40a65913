// conmon's exit files, watched with inotify (never by polling).
#pragma once

#include <functional>
#include <string>
#include <thread>
#include <vector>

namespace berth::runtime {

class exit_watcher {
public:
  exit_watcher() = default;
  exit_watcher(const exit_watcher&) = delete;
  exit_watcher& operator=(const exit_watcher&) = delete;
  ~exit_watcher() { stop(); }

  /// Watches `dir` (created if missing) on its own thread and calls
  /// on_exit(id) once per file that appears there (IN_CLOSE_WRITE,
  /// IN_MOVED_TO; conmon writes a temporary `ID.XXXXXX` and renames it,
  /// and the temporary is skipped). If the kernel's event queue overflows,
  /// every file present is reported again, so the callback must tolerate a
  /// repeat. It runs on the watcher's thread: cheap and thread-safe.
  bool start(const std::string& dir,
             std::function<void(const std::string& id)> on_exit,
             std::string& err);
  void stop();

  /// The exit files already in `dir`, for recovery at start-up.
  static std::vector<std::string> existing(const std::string& dir);

private:
  void watch();

  std::string dir_;
  std::function<void(const std::string&)> on_exit_;
  std::thread thread_;
  int inotify_fd_ = -1;
  int wake_fd_ = -1;
};

} // namespace berth::runtime
