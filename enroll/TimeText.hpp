/// Times as people type and read them: RFC 3339 in UTC, and relative spans like 15m or 7d.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/Clock.hpp"

namespace twostep::enroll {

/// "2024-05-01T12:00:00Z".
std::string formatTime(core::Seconds time);

/// A span like "45s", "15m", "1h", "7d", "2w" (one number, one unit); nullopt otherwise.
std::optional<core::Seconds> parseDuration(std::string_view text);

/// An absolute RFC 3339 time ("2024-05-01T12:00:00Z", "2024-05-01T14:00:00+02:00", fractions
/// ignored), a date ("2024-05-01", midnight UTC), or a span back from `now` ("1h" = an hour
/// ago); nullopt when it is none of these.
std::optional<core::Seconds> parseTimeSpec(std::string_view text, core::Seconds now);

}  // namespace twostep::enroll
