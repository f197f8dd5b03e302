// The decision log line: every field, valid JSON whatever the request carried, and text lines
// that quote what needs quoting.
#include <catch2/catch.hpp>

#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "core/Store.hpp"
#include "http/Log.hpp"

using twostep::http::Log;
using twostep::http::LogFormat;
using twostep::http::LogLevel;

namespace {

twostep::core::AuditEvent sampleEvent() {
    twostep::core::AuditEvent event;
    event.username = "eve\"\n\\ \x01 ünïcode";
    event.operation = "CONNECT";
    event.resource = "v1/pods";
    event.subResource = "exec";
    event.nameSpace = "default";
    event.name = "web-0";
    event.decision = "deny";
    event.reason = "needs_grant";
    event.uid = "705ab4f5-6393-11e8-b7cc-42010a800002";
    return event;
}

/// Everything a Log wrote to a temporary FILE.
std::string captured(LogFormat format, void (*write)(Log&)) {
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    {
        Log log(format, file);
        write(log);
    }
    std::rewind(file);
    std::string text;
    char buffer[1024];
    while (const std::size_t got = std::fread(buffer, 1, sizeof buffer, file)) {
        text.append(buffer, got);
    }
    std::fclose(file);
    return text;
}

}  // namespace

TEST_CASE("a JSON decision line has every field and stays valid JSON", "[log]") {
    const std::string line = captured(LogFormat::Json, [](Log& log) {
        log.decision("validate", sampleEvent(), 1.23456, "");
    });
    REQUIRE(line.back() == '\n');
    REQUIRE(line.find('\n') == line.size() - 1);  // one line, whatever the username held
    const auto json = nlohmann::json::parse(line);
    CHECK(json.at("level") == "info");
    CHECK(json.at("msg") == "admission");
    CHECK(json.at("time").get<std::string>().size() == 24);  // 2024-05-01T12:00:00.123Z
    CHECK(json.at("endpoint") == "validate");
    CHECK(json.at("uid") == "705ab4f5-6393-11e8-b7cc-42010a800002");
    CHECK(json.at("user") == sampleEvent().username);
    CHECK(json.at("operation") == "CONNECT");
    CHECK(json.at("resource") == "v1/pods/exec");
    CHECK(json.at("namespace") == "default");
    CHECK(json.at("name") == "web-0");
    CHECK(json.at("decision") == "deny");
    CHECK(json.at("reason") == "needs_grant");
    CHECK(json.at("duration_ms").get<double>() == Approx(1.235));
    CHECK_FALSE(json.contains("error"));
}

TEST_CASE("an internal error line carries the error and level error", "[log]") {
    const std::string line = captured(LogFormat::Json, [](Log& log) {
        log.decision("mutate", sampleEvent(), 0.5, "cannot read user 'eve': disk I/O error");
    });
    const auto json = nlohmann::json::parse(line);
    CHECK(json.at("level") == "error");
    CHECK(json.at("error") == "cannot read user 'eve': disk I/O error");
}

TEST_CASE("text lines quote values with spaces, quotes or control characters", "[log]") {
    const std::string line = captured(LogFormat::Text, [](Log& log) {
        log.info("listening on 127.0.0.1:8443",
                 {{"address", std::string_view("127.0.0.1:8443")}, {"count", std::int64_t{3}}});
        log.warn("odd", {{"user", std::string_view("a b=\"c\"\n")}});
    });
    CHECK_THAT(line, Catch::Contains(" level=info msg=\"listening on 127.0.0.1:8443\" "
                                     "address=127.0.0.1:8443 count=3\n"));
    CHECK_THAT(line, Catch::Contains(" level=warn msg=odd user=\"a b=\\\"c\\\"\\n\"\n"));
    CHECK(std::count(line.begin(), line.end(), '\n') == 2);
}
