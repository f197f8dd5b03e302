#include "TimeText.hpp"

#include <charconv>
#include <ctime>
#include <limits>

namespace twostep::enroll {

std::string formatTime(core::Seconds time) {
    const auto t = static_cast<std::time_t>(time);
    std::tm tm{};
    if (gmtime_r(&t, &tm) == nullptr) {
        return std::to_string(time);
    }
    char buffer[32];
    const std::size_t n = std::strftime(buffer, sizeof buffer, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buffer, n);
}

namespace {

/// Reads exactly `width` digits at `pos`, advancing it.
std::optional<int> digits(std::string_view text, std::size_t& pos, std::size_t width) {
    if (pos + width > text.size()) {
        return std::nullopt;
    }
    int value = 0;
    for (std::size_t i = 0; i < width; ++i) {
        const char c = text[pos + i];
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        value = value * 10 + (c - '0');
    }
    pos += width;
    return value;
}

bool expect(std::string_view text, std::size_t& pos, char c) {
    if (pos < text.size() && text[pos] == c) {
        ++pos;
        return true;
    }
    return false;
}

bool validDay(int year, int month, int day) {
    static constexpr int Days[] = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    if (month < 1 || month > 12 || day < 1) {
        return false;
    }
    const bool leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    return day <= Days[month - 1] + (month == 2 && leap ? 1 : 0);
}

std::optional<core::Seconds> parseAbsolute(std::string_view text) {
    std::size_t pos = 0;
    const auto year = digits(text, pos, 4);
    if (!year || !expect(text, pos, '-')) {
        return std::nullopt;
    }
    const auto month = digits(text, pos, 2);
    if (!month || !expect(text, pos, '-')) {
        return std::nullopt;
    }
    const auto day = digits(text, pos, 2);
    if (!day || !validDay(*year, *month, *day)) {
        return std::nullopt;
    }
    std::tm tm{};
    tm.tm_year = *year - 1900;
    tm.tm_mon = *month - 1;
    tm.tm_mday = *day;
    core::Seconds offset = 0;
    if (pos < text.size()) {
        if (text[pos] != 'T' && text[pos] != 't' && text[pos] != ' ') {
            return std::nullopt;
        }
        ++pos;
        const auto hour = digits(text, pos, 2);
        if (!hour || *hour > 23 || !expect(text, pos, ':')) {
            return std::nullopt;
        }
        const auto minute = digits(text, pos, 2);
        if (!minute || *minute > 59 || !expect(text, pos, ':')) {
            return std::nullopt;
        }
        const auto second = digits(text, pos, 2);
        if (!second || *second > 60) {
            return std::nullopt;
        }
        if (expect(text, pos, '.')) {
            const std::size_t start = pos;
            while (pos < text.size() && text[pos] >= '0' && text[pos] <= '9') {
                ++pos;
            }
            if (pos == start) {
                return std::nullopt;
            }
        }
        tm.tm_hour = *hour;
        tm.tm_min = *minute;
        tm.tm_sec = *second;
        if (expect(text, pos, 'Z') || expect(text, pos, 'z')) {
            offset = 0;
        } else if (pos < text.size() && (text[pos] == '+' || text[pos] == '-')) {
            const int sign = text[pos] == '-' ? -1 : 1;
            ++pos;
            const auto offHour = digits(text, pos, 2);
            if (!offHour || *offHour > 23 || !expect(text, pos, ':')) {
                return std::nullopt;
            }
            const auto offMinute = digits(text, pos, 2);
            if (!offMinute || *offMinute > 59) {
                return std::nullopt;
            }
            offset = sign * (*offHour * 3600 + *offMinute * 60);
        } else {
            return std::nullopt;  // RFC 3339 requires a zone: never guess local time
        }
        if (pos != text.size()) {
            return std::nullopt;
        }
    }
    return static_cast<core::Seconds>(timegm(&tm)) - offset;
}

}  // namespace

std::optional<core::Seconds> parseDuration(std::string_view text) {
    if (text.size() < 2) {
        return std::nullopt;
    }
    core::Seconds unit = 0;
    switch (text.back()) {
        case 's': unit = 1; break;
        case 'm': unit = 60; break;
        case 'h': unit = 3600; break;
        case 'd': unit = 86400; break;
        case 'w': unit = 7 * 86400; break;
        default: return std::nullopt;
    }
    const std::string_view number = text.substr(0, text.size() - 1);
    core::Seconds value = 0;
    const auto [ptr, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
    if (ec != std::errc() || ptr != number.data() + number.size() || value < 0 ||
        value > std::numeric_limits<core::Seconds>::max() / unit / 1000) {
        return std::nullopt;
    }
    return value * unit;
}

std::optional<core::Seconds> parseTimeSpec(std::string_view text, core::Seconds now) {
    if (const auto span = parseDuration(text)) {
        return now - *span;
    }
    return parseAbsolute(text);
}

}  // namespace twostep::enroll
