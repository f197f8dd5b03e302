// The decision log line: every field, valid JSON whatever the request carried, and text lines
// that quote what needs quoting; the level filter, and the level of each kind of decision.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string>

#include "core/Store.hpp"
#include "http/Log.hpp"

using twostep::core::Reason;
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

/// Everything a Log at `level` wrote to a temporary FILE.
template <typename Write>
std::string captured(LogFormat format, Write write, LogLevel level = LogLevel::Info) {
    std::FILE* file = std::tmpfile();
    REQUIRE(file != nullptr);
    {
        Log log(format, file, level);
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
        log.decision("validate", Reason::NeedsGrant, sampleEvent(), 1.23456, "");
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
        auto event = sampleEvent();
        event.reason = "internal_error";
        log.decision("mutate", Reason::InternalError, event, 0.5,
                     "cannot read user 'eve': disk I/O error");
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

TEST_CASE("lines below the log level are dropped", "[log]") {
    const auto everyLevel = [](Log& log) {
        log.debug("d");
        log.info("i");
        log.warn("w");
        log.error("e");
    };
    const auto levels = [&](LogLevel level) {
        std::string seen;
        const std::string text = captured(LogFormat::Text, everyLevel, level);
        for (const char* name : {"debug", "info", "warn", "error"}) {
            if (text.find(" level=" + std::string(name) + " msg=") != std::string::npos) {
                seen += seen.empty() ? name : " " + std::string(name);
            }
        }
        CHECK(std::count(text.begin(), text.end(), '\n') ==
              std::count(seen.begin(), seen.end(), ' ') + 1);  // nothing else was written
        return seen;
    };
    CHECK(levels(LogLevel::Debug) == "debug info warn error");
    CHECK(levels(LogLevel::Info) == "info warn error");
    CHECK(levels(LogLevel::Warn) == "warn error");
    CHECK(levels(LogLevel::Error) == "error");

    const Log warnOnly(LogFormat::Json, stdout, LogLevel::Warn);  // only asked, never writes
    CHECK_FALSE(warnOnly.enabled(LogLevel::Debug));
    CHECK_FALSE(warnOnly.enabled(LogLevel::Info));
    CHECK(warnOnly.enabled(LogLevel::Warn));
    CHECK(warnOnly.enabled(LogLevel::Error));
}

TEST_CASE("routine decisions are logged at debug and all others at info", "[log]") {
    // Exempt, out-of-scope and dry-run decisions are not audited; everything audited stays at
    // info so that the log keeps every security decision at the default level.
    const auto [reason, routine] = GENERATE(table<Reason, bool>({
        {Reason::Exempt, true},
        {Reason::DryRun, true},
        {Reason::NotProtected, true},
        {Reason::NotEnrolled, false},
        {Reason::UnenrolledAllowed, false},
        {Reason::Pending, false},
        {Reason::Disabled, false},
        {Reason::LockedOut, false},
        {Reason::Grant, false},
        {Reason::NeedsGrant, false},
        {Reason::MissingCode, false},
        {Reason::MalformedCode, false},
        {Reason::WrongCode, false},
        {Reason::Replayed, false},
        {Reason::Verified, false},
        {Reason::RecoveryCode, false},
        {Reason::Unlocked, false},
        {Reason::EnrollStarted, false},
        {Reason::Enrolled, false},
        {Reason::NotInvited, false},
        {Reason::NoEnrollment, false},
        {Reason::EnrollNeedsMutate, false},
        {Reason::InternalError, false},
    }));
    INFO(twostep::core::toString(reason));
    CHECK(twostep::core::isRoutine(reason) == routine);
    auto event = sampleEvent();
    event.reason = std::string(twostep::core::toString(reason));
    const auto logDecision = [&](Log& log) { log.decision("validate", reason, event, 0.1, ""); };

    const std::string atInfo = captured(LogFormat::Json, logDecision, LogLevel::Info);
    const std::string atDebug = captured(LogFormat::Json, logDecision, LogLevel::Debug);
    REQUIRE_FALSE(atDebug.empty());
    const auto line = nlohmann::json::parse(atDebug);
    CHECK(line.at("reason") == event.reason);
    if (routine) {
        CHECK(atInfo.empty());
        CHECK(line.at("level") == "debug");
    } else {
        CHECK(nlohmann::json::parse(atInfo).at("level") == "info");
        CHECK(line.at("level") == "info");
    }
    // --log-level=warn hides every decision but the failed ones.
    CHECK(captured(LogFormat::Json, logDecision, LogLevel::Warn).empty());
}

TEST_CASE("a failed review is logged at error even when only errors are written", "[log]") {
    auto event = sampleEvent();
    event.reason = "internal_error";
    const std::string text = captured(
        LogFormat::Json,
        [&](Log& log) {
            log.decision("validate", Reason::NeedsGrant, sampleEvent(), 0.1, "");
            log.decision("validate", Reason::InternalError, event, 0.1, "database is locked");
        },
        LogLevel::Error);
    REQUIRE(std::count(text.begin(), text.end(), '\n') == 1);
    const auto line = nlohmann::json::parse(text);
    CHECK(line.at("level") == "error");
    CHECK(line.at("error") == "database is locked");
}
