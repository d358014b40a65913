// A thread that owns one io_uring ring: work posted from other threads runs
// on it (woken through an eventfd read on the same ring), and completions
// go to the owner by the tag their submission carried. The log hub and the
// attach hub are built on it.
#pragma once

#include <liburing.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace berth::runtime {

class ring_loop {
public:
  ring_loop() = default;
  virtual ~ring_loop();
  ring_loop(const ring_loop&) = delete;
  ring_loop& operator=(const ring_loop&) = delete;

  bool start(unsigned entries, std::string& err);
  /// Stops the thread; posted work not yet run is dropped.
  void stop();

  /// Runs `f` on the loop's thread.
  void post(std::function<void()> f);

protected:
  /// A submission entry, on the loop's thread only; `tag` comes back with
  /// its completion. Tags with the top byte 0xff are the loop's own.
  io_uring_sqe* submission(uint64_t tag);
  /// A completion of one of the owner's submissions.
  virtual void on_completion(uint64_t tag, int res) = 0;
  /// Runs first on the loop's thread (to arm the owner's own reads).
  virtual void on_start() {}

private:
  void run();
  void arm_wakeup();

  io_uring ring_{};
  bool ring_ok_ = false;
  int event_fd_ = -1;
  uint64_t event_value_ = 0;
  std::thread thread_;
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<std::function<void()>> posted_;
};

} // namespace berth::runtime
