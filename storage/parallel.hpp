// Runs independent blocking tasks a few at a time (layer downloads and
// uploads), stopping at the first failure.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace berth::storage {

/// Runs task(i, err) for i in [0, count) on at most `width` threads; after
/// a failure no new task starts. False with the first failure's `err`.
inline bool run_parallel(size_t count, size_t width,
                         const std::function<bool(size_t, std::string&)>& task,
                         std::string& err) {
  std::atomic<size_t> next{0};
  std::atomic<bool> failed{false};
  std::mutex mtx;
  auto work = [&] {
    for (size_t i; (i = next++) < count && !failed;) {
      std::string e;
      if (!task(i, e)) {
        std::lock_guard guard{mtx};
        if (!failed.exchange(true))
          err = e;
      }
    }
  };
  std::vector<std::thread> threads;
  for (size_t t = 0; t < std::min(width, count); ++t)
    threads.emplace_back(work);
  for (auto& t : threads)
    t.join();
  return !failed;
}

} // namespace berth::storage
