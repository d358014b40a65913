#include "protocol/log.hpp"

#include <mutex>

namespace berth {

std::shared_ptr<spdlog::logger> logger(const std::string& name) {
  static std::mutex mtx;
  std::lock_guard guard{mtx};
  if (auto l = spdlog::get(name))
    return l;
  auto l = spdlog::default_logger()->clone(name);
  spdlog::register_logger(l);
  return l;
}

} // namespace berth
