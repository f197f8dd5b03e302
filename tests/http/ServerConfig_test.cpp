// twostep-webhook's flag parsing without a process: durations, listen addresses, sizes, and
// ServerConfig::from over a POCO configuration (flags bound as twostep.<flag>, environment as
// system.env.TWOSTEP_<FLAG>).
#include <catch2/catch.hpp>

#include <Poco/AutoPtr.h>
#include <Poco/Util/MapConfiguration.h>

#include "http/ServerConfig.hpp"

using twostep::http::ConfigError;
using twostep::http::ServerConfig;
using namespace std::chrono_literals;

namespace {

/// A configuration holding only `entries`.
Poco::AutoPtr<Poco::Util::MapConfiguration> configOf(
    std::initializer_list<std::pair<const char*, const char*>> entries) {
    Poco::AutoPtr<Poco::Util::MapConfiguration> config = new Poco::Util::MapConfiguration;
    config->setString("twostep.tls-cert", "/certs/tls.crt");
    config->setString("twostep.tls-key", "/certs/tls.key");
    for (const auto& [key, value] : entries) {
        config->setString(key, value);
    }
    return config;
}

}  // namespace

TEST_CASE("durations", "[config]") {
    using twostep::http::parseDuration;
    CHECK(parseDuration("--x", "90s") == 90s);
    CHECK(parseDuration("--x", "15m") == 15min);
    CHECK(parseDuration("--x", "1h") == 1h);
    CHECK(parseDuration("--x", "1h30m") == 90min);
    CHECK(parseDuration("--x", "250ms") == 250ms);
    CHECK(parseDuration("--x", "30") == 30s);
    CHECK(parseDuration("--x", "0") == 0s);
    for (const char* bad : {"", "-1", "1d", "s", "1.5s", "5 m", "1h-", "9999999999h", "m5"}) {
        INFO(bad);
        CHECK_THROWS_MATCHES(parseDuration("--grant-ttl", bad), ConfigError,
                             Catch::Message("invalid --grant-ttl '" + std::string(bad) +
                                            "': expected a duration like 90s, 15m, 1h or a "
                                            "number of seconds"));
    }
}

TEST_CASE("listen addresses", "[config]") {
    using twostep::http::parseListen;
    const auto v4 = parseListen("--listen", "0.0.0.0:8443");
    CHECK(v4.host == "0.0.0.0");
    CHECK(v4.port == 8443);
    const auto v6 = parseListen("--listen", "[::1]:0");
    CHECK(v6.host == "::1");
    CHECK(v6.port == 0);
    CHECK(parseListen("--listen", "localhost:9443").host == "localhost");
    CHECK_THROWS_WITH(parseListen("--listen", "::1:8443"),
                      "invalid --listen '::1:8443': an IPv6 address needs brackets, e.g. "
                      "[::]:8443");
    for (const char* bad : {"8443", ":8443", "host:", "host:65536", "host:-1", "[::1:8443",
                            "[]:1", "host:84x3"}) {
        INFO(bad);
        CHECK_THROWS_AS(parseListen("--listen", bad), ConfigError);
    }
}

TEST_CASE("sizes", "[config]") {
    using twostep::http::parseSize;
    CHECK(parseSize("--max-body", "3MiB") == 3 * 1024 * 1024);
    CHECK(parseSize("--max-body", "512KiB") == 512 * 1024);
    CHECK(parseSize("--max-body", "4096") == 4096);
    CHECK(parseSize("--max-body", "2k") == 2048);
    CHECK_THROWS_WITH(parseSize("--max-body", "3MB"),
                      "invalid --max-body '3MB': expected a size like 3MiB, 512KiB or a number "
                      "of bytes");
    CHECK_THROWS_AS(parseSize("--max-body", "99999999999999999999"), ConfigError);
}

TEST_CASE("ServerConfig::from: defaults, flags, environment", "[config]") {
    SECTION("defaults") {
        const ServerConfig config = ServerConfig::from(*configOf({}));
        CHECK(config.listen.host == "0.0.0.0");
        CHECK(config.listen.port == 8443);
        CHECK(config.db == "/var/lib/twostep/twostep.db");
        CHECK(config.masterKeyFile == "/etc/twostep/master.key");
        CHECK(config.maxBody == 3 * 1024 * 1024);
        CHECK(config.threads == 32);
        CHECK(config.eventLoops == 0);  // one per CPU
        CHECK(config.maxConnections == 10'000);
        CHECK(config.idleTimeout == 60s);
        CHECK(config.readTimeout == 10s);
        CHECK(config.certReloadInterval == 10s);
        CHECK(config.policy.window == 1);
        CHECK(config.policy.fields.tokenAnnotation == "twostep.dev/token");
        CHECK(config.policy.exemptUsers == twostep::core::PolicyConfig{}.exemptUsers);
        CHECK(config.clientCa.empty());
        CHECK(config.logLevel == twostep::http::LogLevel::Info);
    }
    SECTION("flags") {
        const ServerConfig config = ServerConfig::from(*configOf({
            {"twostep.listen", "[::]:9443"},
            {"twostep.window", "2"},
            {"twostep.annotation", "example.com/otp"},
            {"twostep.unenrolled", "allow"},
            {"twostep.grant-ttl", "5m"},
            {"twostep.grant-max-ttl", "1h"},
            {"twostep.lockout-failures", "3"},
            {"twostep.lockout-base", "30s"},
            {"twostep.lockout-max", "2h"},
            {"twostep.log-format", "text"},
            {"twostep.log-level", "warn"},
            {"twostep.max-body", "1MiB"},
            {"twostep.read-timeout", "1500ms"},
            {"twostep.threads", "4"},
            {"twostep.event-loops", "3"},
            {"twostep.max-connections", "20000"},
            {"twostep.exempt-user[0]", "ci-bot"},
            {"twostep.exempt-user[1]", "admin-*"},
            {"twostep.exempt-group[0]", "ops"},
        }));
        CHECK(config.listen.host == "::");
        CHECK(config.listen.port == 9443);
        CHECK(config.policy.window == 2);
        CHECK(config.policy.fields.tokenAnnotation == "example.com/otp");
        CHECK(config.policy.unenrolled == twostep::core::UnenrolledPolicy::Allow);
        CHECK(config.policy.grantTtl == 300);
        CHECK(config.policy.grantMaxTtl == 3600);
        CHECK(config.policy.lockout.maxFailures == 3);
        CHECK(config.policy.lockout.baseLockSeconds == 30);
        CHECK(config.policy.lockout.maxLockSeconds == 7200);
        CHECK(config.logFormat == twostep::http::LogFormat::Text);
        CHECK(config.logLevel == twostep::http::LogLevel::Warn);
        CHECK(config.maxBody == 1024 * 1024);
        CHECK(config.readTimeout == 1500ms);
        CHECK(config.threads == 4);
        CHECK(config.eventLoops == 3);
        CHECK(config.maxConnections == 20'000);
        // Added to the defaults, which stay.
        const auto& users = config.policy.exemptUsers;
        CHECK(std::find(users.begin(), users.end(), "system:serviceaccount:*") != users.end());
        CHECK(users.back() == "admin-*");
        CHECK(users[users.size() - 2] == "ci-bot");
        CHECK(config.policy.exemptGroups.back() == "ops");
    }
    SECTION("the environment fills in what no flag set; flags win") {
        const ServerConfig config = ServerConfig::from(*configOf({
            {"system.env.TWOSTEP_DB", "/data/twostep.db"},
            {"system.env.TWOSTEP_WINDOW", "3"},
            {"twostep.window", "0"},
            {"system.env.TWOSTEP_EXEMPT_USER", "a,b"},
            {"system.env.TWOSTEP_NO_DEFAULT_EXEMPTIONS", "true"},
        }));
        CHECK(config.db == "/data/twostep.db");
        CHECK(config.policy.window == 0);
        CHECK(config.policy.exemptUsers == std::vector<std::string>{"a", "b"});
        CHECK(config.policy.exemptGroups.empty());
    }
    SECTION("the log level from the environment, and every level's name") {
        using twostep::http::LogLevel;
        const auto [name, level] = GENERATE(table<const char*, LogLevel>({
            {"debug", LogLevel::Debug},
            {"info", LogLevel::Info},
            {"warn", LogLevel::Warn},
            {"error", LogLevel::Error},
        }));
        INFO(name);
        CHECK(ServerConfig::from(*configOf({{"system.env.TWOSTEP_LOG_LEVEL", name}})).logLevel ==
              level);
        CHECK(ServerConfig::from(*configOf({{"system.env.TWOSTEP_LOG_LEVEL", "error"},
                                            {"twostep.log-level", name}}))
                  .logLevel == level);
    }
    SECTION("--no-default-exemptions as a flag") {
        const ServerConfig config =
            ServerConfig::from(*configOf({{"twostep.no-default-exemptions", ""}}));
        CHECK(config.policy.exemptUsers.empty());
        CHECK(config.policy.exemptGroups.empty());
    }
}

TEST_CASE("ServerConfig::from: bad values name the flag or variable and the value", "[config]") {
    const auto error = [](std::initializer_list<std::pair<const char*, const char*>> entries) {
        try {
            ServerConfig::from(*configOf(entries));
        } catch (const ConfigError& e) {
            return std::string(e.what());
        }
        return std::string("no error");
    };
    CHECK(error({{"twostep.window", "-1"}}) ==
          "invalid --window '-1': must be an integer from 0 to 10");
    CHECK(error({{"system.env.TWOSTEP_THREADS", "lots"}}) ==
          "invalid TWOSTEP_THREADS 'lots': must be an integer from 1 to 1024");
    CHECK(error({{"twostep.max-connections", "0"}}) ==
          "invalid --max-connections '0': must be an integer from 1 to 1000000");
    CHECK(error({{"system.env.TWOSTEP_EVENT_LOOPS", "0"}}) ==
          "invalid TWOSTEP_EVENT_LOOPS '0': must be an integer from 1 to 256");
    CHECK(error({{"twostep.grant-ttl", "1500ms"}}) ==
          "invalid --grant-ttl '1500ms': must be a whole number of seconds");
    CHECK(error({{"twostep.grant-ttl", "25h"}}) ==
          "invalid --grant-ttl '25h': must be from 0s to 86400s");
    CHECK(error({{"twostep.annotation", "-bad-"}}) ==
          "invalid --annotation '-bad-': not an annotation key like twostep.dev/token");
    CHECK(error({{"twostep.exempt-user[0]", ""}}) ==
          "invalid --exempt-user '': must not be empty");
    CHECK(error({{"twostep.max-body", "100"}}) ==
          "invalid --max-body '100': must be from 1KiB to 64MiB");
    CHECK(error({{"twostep.read-timeout", "20m"}}) ==
          "invalid --read-timeout '20m': must be from 100ms to 600s");
    CHECK(error({{"system.env.TWOSTEP_NO_DEFAULT_EXEMPTIONS", "perhaps"}}) ==
          "invalid TWOSTEP_NO_DEFAULT_EXEMPTIONS 'perhaps': must be true or false");
    CHECK(error({{"twostep.db", ""}}) == "invalid --db '': must not be empty");
    CHECK(error({{"twostep.log-level", "verbose"}}) ==
          "invalid --log-level 'verbose': must be debug, info, warn or error");
    CHECK(error({{"system.env.TWOSTEP_LOG_LEVEL", "INFO"}}) ==
          "invalid TWOSTEP_LOG_LEVEL 'INFO': must be debug, info, warn or error");

    Poco::AutoPtr<Poco::Util::MapConfiguration> noKey = new Poco::Util::MapConfiguration;
    noKey->setString("twostep.tls-cert", "/certs/tls.crt");
    CHECK_THROWS_WITH(ServerConfig::from(*noKey),
                      "missing --tls-key (or TWOSTEP_TLS_KEY): the webhook serves HTTPS only");
}

TEST_CASE("ServerConfig::from: --header-timeout", "[config]") {
    CHECK(ServerConfig::from(*configOf({})).headerTimeout == 10s);
    CHECK(ServerConfig::from(*configOf({{"twostep.header-timeout", "2s"}})).headerTimeout == 2s);
    CHECK(ServerConfig::from(*configOf({{"system.env.TWOSTEP_HEADER_TIMEOUT", "500ms"}}))
              .headerTimeout == 500ms);
    CHECK(ServerConfig::from(*configOf({{"twostep.header-timeout", "3s"},
                                        {"system.env.TWOSTEP_HEADER_TIMEOUT", "500ms"}}))
              .headerTimeout == 3s);
    CHECK_THROWS_WITH(ServerConfig::from(*configOf({{"twostep.header-timeout", "0"}})),
                      "invalid --header-timeout '0': must be from 100ms to 600s");
    CHECK_THROWS_WITH(ServerConfig::from(*configOf({{"system.env.TWOSTEP_HEADER_TIMEOUT", "1d"}})),
                      "invalid TWOSTEP_HEADER_TIMEOUT '1d': expected a duration like 90s, 15m, "
                      "1h or a number of seconds");
}

TEST_CASE("ServerConfig::from: self-enrolment flags", "[config][enroll]") {
    using twostep::core::SelfEnrollMode;
    const ServerConfig defaults = ServerConfig::from(*configOf({}));
    CHECK(defaults.policy.selfEnroll.mode == SelfEnrollMode::Invite);
    CHECK(defaults.policy.selfEnroll.openGroups.empty());
    CHECK(defaults.policy.selfEnroll.openTtl == 3600);
    CHECK(defaults.policy.selfEnroll.issuer == "twostep");

    const ServerConfig open = ServerConfig::from(*configOf({
        {"twostep.self-enroll", "open"},
        {"twostep.self-enroll-group[0]", "team-*"},
        {"twostep.self-enroll-group[1]", "ops"},
        {"twostep.self-enroll-ttl", "15m"},
        {"twostep.issuer", "prod cluster"},
    }));
    CHECK(open.policy.selfEnroll.mode == SelfEnrollMode::Open);
    CHECK(open.policy.selfEnroll.openGroups == std::vector<std::string>{"team-*", "ops"});
    CHECK(open.policy.selfEnroll.openTtl == 900);
    CHECK(open.policy.selfEnroll.issuer == "prod cluster");
    CHECK(ServerConfig::from(*configOf({{"system.env.TWOSTEP_SELF_ENROLL", "off"}}))
              .policy.selfEnroll.mode == SelfEnrollMode::Off);

    CHECK_THROWS_WITH(ServerConfig::from(*configOf({{"twostep.self-enroll", "always"}})),
                      "invalid --self-enroll 'always': must be invite, open or off");
    CHECK_THROWS_WITH(ServerConfig::from(*configOf({{"twostep.self-enroll-group[0]", "ops"}})),
                      "--self-enroll-group applies only with --self-enroll=open");
    CHECK_THROWS_WITH(ServerConfig::from(*configOf({{"twostep.self-enroll-ttl", "10s"}})),
                      "invalid --self-enroll-ttl '10s': must be from 60s to 86400s");
    CHECK_THROWS_WITH(ServerConfig::from(*configOf({{"twostep.issuer", ""}})),
                      "invalid --issuer '': must not be empty");
}
