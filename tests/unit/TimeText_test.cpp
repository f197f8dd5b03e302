#include "TimeText.hpp"

#include <catch2/catch.hpp>

using namespace twostep::enroll;

TEST_CASE("times print as RFC 3339 in UTC", "[enroll][time]") {
    CHECK(formatTime(0) == "1970-01-01T00:00:00Z");
    CHECK(formatTime(1'700'000'000) == "2023-11-14T22:13:20Z");
}

TEST_CASE("durations are one number and one unit", "[enroll][time]") {
    CHECK(parseDuration("45s") == 45);
    CHECK(parseDuration("15m") == 900);
    CHECK(parseDuration("1h") == 3600);
    CHECK(parseDuration("7d") == 7 * 86400);
    CHECK(parseDuration("2w") == 14 * 86400);
    CHECK(parseDuration("0m") == 0);
    for (const char* bad : {"", "h", "1", "1y", "-1h", "+1h", "1.5h", "1 h", "1hh", "h1",
                            "99999999999999999999d"}) {
        INFO(bad);
        CHECK_FALSE(parseDuration(bad).has_value());
    }
}

TEST_CASE("time specs are RFC 3339, a date, or a span back from now", "[enroll][time]") {
    const twostep::core::Seconds now = 1'700'000'000;
    CHECK(parseTimeSpec("1h", now) == now - 3600);
    CHECK(parseTimeSpec("2023-11-14T22:13:20Z", now) == 1'700'000'000);
    CHECK(parseTimeSpec("2023-11-14t22:13:20z", now) == 1'700'000'000);
    CHECK(parseTimeSpec("2023-11-14T22:13:20.123Z", now) == 1'700'000'000);
    CHECK(parseTimeSpec("2023-11-15T00:13:20+02:00", now) == 1'700'000'000);
    CHECK(parseTimeSpec("2023-11-14T17:13:20-05:00", now) == 1'700'000'000);
    CHECK(parseTimeSpec("2023-11-14", now) == 1'699'920'000);
    CHECK(parseTimeSpec("2024-02-29", now).has_value());
    for (const char* bad : {"2023-11-14T22:13:20", "2023-02-29", "2023-13-01", "2023-11-14T24:00:00Z",
                            "2023-11-14T22:13Z", "yesterday", "2023-11-14T22:13:20Zjunk",
                            "2023-11-14T22:13:20.Z", "2023-1-14"}) {
        INFO(bad);
        CHECK_FALSE(parseTimeSpec(bad, now).has_value());
    }
}
