/// Structured log lines on stdout (JSON or key=value text): one line per decision, plus start-up,
/// reload and error events. Never given a code or a secret.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "core/Decision.hpp"
#include "http/ServerConfig.hpp"

namespace twostep::core {
struct AuditEvent;
}

namespace twostep::http {

/// One key and its value in a log line.
struct LogField {
    using Value = std::variant<std::string_view, std::int64_t, double>;
    std::string_view key;
    Value value;
};

/// Writes whole lines with one write each under a mutex, so lines from worker threads never
/// interleave; lines below the level are dropped before they are formatted. Thread-safe. Write
/// errors are ignored (logging must never fail a request).
class Log {
public:
    explicit Log(LogFormat format, std::FILE* out = stdout, LogLevel level = LogLevel::Info)
        : format_(format), level_(level), out_(out) {}

    /// Whether lines at `level` are written: check it before building a costly line.
    bool enabled(LogLevel level) const { return level >= level_; }

    /// time, level, msg, then `fields` in order; nothing when `level` is not enabled.
    void write(LogLevel level, std::string_view message, std::span<const LogField> fields);

    void debug(std::string_view message, std::initializer_list<LogField> fields = {}) {
        write(LogLevel::Debug, message, std::span(fields.begin(), fields.size()));
    }
    void info(std::string_view message, std::initializer_list<LogField> fields = {}) {
        write(LogLevel::Info, message, std::span(fields.begin(), fields.size()));
    }
    void warn(std::string_view message, std::initializer_list<LogField> fields = {}) {
        write(LogLevel::Warn, message, std::span(fields.begin(), fields.size()));
    }
    void error(std::string_view message, std::initializer_list<LogField> fields = {}) {
        write(LogLevel::Error, message, std::span(fields.begin(), fields.size()));
    }

    /// The line for one admission decision (`reason` is the one in `record`): at error when
    /// `errorText` is set (only for internal_error), at debug when core::isRoutine(reason), else
    /// at info.
    void decision(std::string_view endpoint, core::Reason reason, const core::AuditEvent& record,
                  double durationMs, std::string_view errorText);

    /// Formats without writing (for tests).
    std::string format(LogLevel level, std::string_view message,
                       std::span<const LogField> fields) const;

private:
    LogFormat format_;
    LogLevel level_;
    std::FILE* out_;
    std::mutex mutex_;
};

}  // namespace twostep::http
