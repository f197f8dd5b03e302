#include "http/Log.hpp"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <array>

#include "core/Store.hpp"

namespace twostep::http {

namespace {

/// RFC 3339 UTC with milliseconds, e.g. 2024-05-01T12:00:00.123Z.
void appendTime(std::string& out) {
    const auto now = std::chrono::system_clock::now();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch());
    const std::time_t seconds = static_cast<std::time_t>(ms.count() / 1000);
    std::tm utc{};
    gmtime_r(&seconds, &utc);
    char buffer[40];
    const int n = std::snprintf(buffer, sizeof buffer, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
                                utc.tm_year + 1900, utc.tm_mon + 1, utc.tm_mday, utc.tm_hour,
                                utc.tm_min, utc.tm_sec, static_cast<int>(ms.count() % 1000));
    out.append(buffer, n > 0 ? static_cast<std::size_t>(n) : 0);
}

void appendJsonString(std::string& out, std::string_view text) {
    out += '"';
    // Runs of characters that need no escape are copied at once: a line per request is on the
    // hot path, and appending byte by byte cost more than formatting the rest of the line.
    std::size_t copied = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        const auto u = static_cast<unsigned char>(c);
        if (u >= 0x20 && u != 0x7f && c != '"' && c != '\\') {
            continue;  // UTF-8 passes through; invalid bytes are the reader's problem
        }
        out.append(text.substr(copied, i - copied));
        copied = i + 1;
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: {
            char escaped[8];
            std::snprintf(escaped, sizeof escaped, "\\u%04x", u);
            out += escaped;
        }
        }
    }
    out.append(text.substr(copied));
    out += '"';
}

/// Text values are bare when they are simple, else quoted like JSON strings.
void appendTextValue(std::string& out, std::string_view text) {
    const bool bare = !text.empty() && text.find_first_of(" \"=\\\t\r\n") == std::string_view::npos &&
                      std::all_of(text.begin(), text.end(),
                                  [](char c) { return static_cast<unsigned char>(c) >= 0x20; });
    if (bare) {
        out += text;
        return;
    }
    appendJsonString(out, text);
}

void appendNumber(std::string& out, const LogField::Value& v) {
    if (const auto* i = std::get_if<std::int64_t>(&v)) {
        out += std::to_string(*i);
        return;
    }
    const double d = std::get<double>(v);
    char buffer[32];
    const int n = std::snprintf(buffer, sizeof buffer, "%.3f", std::isfinite(d) ? d : 0.0);
    out.append(buffer, n > 0 ? static_cast<std::size_t>(n) : 0);
}

std::string_view levelName(LogLevel level) {
    switch (level) {
    case LogLevel::Debug: return "debug";
    case LogLevel::Info: return "info";
    case LogLevel::Warn: return "warn";
    case LogLevel::Error: return "error";
    }
    return "error";
}

}  // namespace

std::string Log::format(LogLevel level, std::string_view message,
                        std::span<const LogField> fields) const {
    const bool json = format_ == LogFormat::Json;
    std::string line;
    line.reserve(256);
    // JSON: {"time":"...","level":"info","msg":"...","key":value...}
    // text: time=... level=info msg="..." key=value...
    const auto appendValue = [&](const LogField::Value& value) {
        if (const auto* s = std::get_if<std::string_view>(&value)) {
            json ? appendJsonString(line, *s) : appendTextValue(line, *s);
        } else {
            appendNumber(line, value);
        }
    };
    const auto appendKey = [&](std::string_view key) {
        if (json) {
            line += ',';
            appendJsonString(line, key);
            line += ':';
            return;
        }
        line += ' ';
        line += key;
        line += '=';
    };
    line += json ? "{\"time\":\"" : "time=";
    appendTime(line);
    line += json ? "\"" : "";
    appendKey("level");
    appendValue(levelName(level));
    appendKey("msg");
    appendValue(message);
    for (const LogField& field : fields) {
        appendKey(field.key);
        appendValue(field.value);
    }
    line += json ? "}\n" : "\n";
    return line;
}

void Log::write(LogLevel level, std::string_view message, std::span<const LogField> fields) {
    if (!enabled(level)) {
        return;
    }
    try {
        const std::string line = format(level, message, fields);
        const std::lock_guard lock(mutex_);
        std::fwrite(line.data(), 1, line.size(), out_);
        std::fflush(out_);
    } catch (...) {
        // Out of memory while formatting: drop the line rather than fail the request.
    }
}

void Log::decision(std::string_view endpoint, core::Reason reason, const core::AuditEvent& record,
                   double durationMs, std::string_view errorText) {
    LogLevel level = core::isRoutine(reason) ? LogLevel::Debug : LogLevel::Info;
    if (!errorText.empty()) {
        level = LogLevel::Error;
    }
    // Routine decisions are most requests: skip them before building anything of the line.
    if (!enabled(level)) {
        return;
    }
    std::string resource = record.resource;
    if (!record.subResource.empty()) {
        resource += '/';
        resource += record.subResource;
    }
    const std::array<LogField, 11> fields{{{"endpoint", endpoint},
                                           {"uid", record.uid},
                                           {"user", record.username},
                                           {"operation", record.operation},
                                           {"resource", resource},
                                           {"namespace", record.nameSpace},
                                           {"name", record.name},
                                           {"decision", record.decision},
                                           {"reason", record.reason},
                                           {"duration_ms", durationMs},
                                           {"error", errorText}}};
    if (errorText.empty()) {
        write(level, "admission", std::span(fields).first(fields.size() - 1));
        return;
    }
    write(level, "admission", fields);
}

}  // namespace twostep::http
