// Named loggers, one per subsystem, sharing the default logger's sinks.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace berth {

/// The logger named `name` ("varlink", "gateway", "container", ...).
std::shared_ptr<spdlog::logger> logger(const std::string& name);

} // namespace berth
