#include "cmkfs/log.h"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <iterator>
#include <memory>
#include <string>

namespace cmkfs {
namespace {

// `%*` in a pattern: the syslog priority of the line's level, as sd-daemon(3)
// prefixes ("<3>" error ... "<7>" debug). journald strips it and stores the
// line with that priority (SyslogLevelPrefix=yes, the default).
class SyslogPriorityFlag : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&,
              spdlog::memory_buf_t& dest) override {
    // Indexed by spdlog's level: trace, debug, info, warn, err, critical.
    static constexpr int kPriority[] = {LOG_DEBUG,   LOG_DEBUG, LOG_INFO,
                                        LOG_WARNING, LOG_ERR,   LOG_CRIT};
    static_assert(spdlog::level::critical == 5);
    const size_t index = static_cast<size_t>(msg.level);
    const int priority =
        index < std::size(kPriority) ? kPriority[index] : LOG_DEBUG;
    const char prefix[] = {'<', static_cast<char>('0' + priority), '>'};
    dest.append(prefix, prefix + sizeof(prefix));
  }
  std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriorityFlag>();
  }
};

// True when stderr is the stream systemd connected to the journal:
// JOURNAL_STREAM is "DEVICE:INODE" of that stream (systemd.exec(5)); a
// child whose stderr was redirected elsewhere inherits the variable but not
// the stream, and gets plain lines.
bool StderrIsJournal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  if (env == nullptr) return false;
  unsigned long long dev = 0, ino = 0;
  char rest = 0;
  if (std::sscanf(env, "%llu:%llu%c", &dev, &ino, &rest) != 2) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return static_cast<unsigned long long>(st.st_dev) == dev &&
         static_cast<unsigned long long>(st.st_ino) == ino;
}

}  // namespace

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
      if (StderrIsJournal()) {
        // journald keeps the level from the prefix and adds its own time.
        auto formatter = std::make_unique<spdlog::pattern_formatter>();
        formatter->add_flag<SyslogPriorityFlag>('*').set_pattern(
            "%*%l [%n] %v");
        sink->set_formatter(std::move(formatter));
      } else {
        sink->set_formatter(std::make_unique<spdlog::pattern_formatter>(
            "%Y-%m-%dT%H:%M:%S.%eZ %l [%n] %v",
            spdlog::pattern_time_type::utc));
      }
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
