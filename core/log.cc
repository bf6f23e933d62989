#include "cmkfs/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <syslog.h>

#include <algorithm>
#include <memory>
#include <string>

namespace cmkfs {

Status InitLogging(std::string_view level, bool to_stderr) {
  static constexpr struct {
    std::string_view name;
    spdlog::level::level_enum level;
  } kLevels[] = {
      {"trace", spdlog::level::trace}, {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},   {"warn", spdlog::level::warn},
      {"error", spdlog::level::err},   {"off", spdlog::level::off}};
  const auto* match =
      std::find_if(std::begin(kLevels), std::end(kLevels),
                   [&](const auto& l) { return l.name == level; });
  if (match == std::end(kLevels)) {
    return InvalidArgumentError("unknown log level '" + std::string(level) +
                                "': expected trace, debug, info, warn, error "
                                "or off");
  }
  try {
    std::shared_ptr<spdlog::logger> logger;
    if (to_stderr) {
      auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
      sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
          "%Y-%m-%dT%H:%M:%S.%eZ %l [%n] %v", spdlog::pattern_time_type::utc));
      logger = std::make_shared<spdlog::logger>("cmkfs", std::move(sink));
    } else {
      // syslog adds its own timestamp and the pid.
      auto sink = std::make_shared<spdlog::sinks::syslog_sink_mt>(
          "cmkfs", LOG_PID, LOG_DAEMON, /*enable_formatting=*/true);
      sink->set_formatter(
          std::make_unique<spdlog::pattern_formatter>("%l [%n] %v"));
      logger = std::make_shared<spdlog::logger>("cmkfs", std::move(sink));
    }
    logger->set_level(match->level);
    logger->flush_on(spdlog::level::warn);
    spdlog::set_default_logger(std::move(logger));
  } catch (const spdlog::spdlog_ex& e) {
    return IOError(std::string("cannot set up logging: ") + e.what());
  }
  return Status::Ok();
}

}  // namespace cmkfs
