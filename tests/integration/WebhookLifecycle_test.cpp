// Start-up, operations endpoints and shutdown of the real twostep-webhook: flag errors, the
// master-key check, /healthz, /readyz, /metrics, a database that fails under a running server,
// and SIGTERM with a request in flight.
#include <catch2/catch.hpp>

#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "integration/WebhookHarness.hpp"

using twostep::test::HttpResult;
using twostep::test::reviewFor;
using twostep::test::ServerProcess;
using twostep::test::Webhook;
using namespace std::chrono_literals;

namespace {

/// Runs the webhook with `args` and returns its exit code and stderr once it ended.
struct Exit {
    int code = -1;
    std::string errors;
    std::string output;
};

Exit runToExit(const std::vector<std::string>& args,
               const std::map<std::string, std::string>& env = {}) {
    ServerProcess process(args, env);
    const auto code = process.waitExit(10s);
    if (!code) {
        throw std::runtime_error("the webhook kept running; stdout:\n" + process.output());
    }
    return {*code, process.errors(), process.output()};
}

/// Overwrites the database and its WAL and shared-memory files with zeros, in place: the
/// server's open connections then find no database (root ignores file modes, so chmod would not).
void wreck(const std::filesystem::path& db) {
    for (const char* suffix : {"", "-wal", "-shm"}) {
        const std::filesystem::path file = db.string() + suffix;
        if (!std::filesystem::exists(file)) {
            continue;
        }
        const auto size = std::filesystem::file_size(file);
        std::fstream out(file, std::ios::binary | std::ios::in | std::ios::out);
        out << std::string(static_cast<std::size_t>(size), '\0');
    }
}

/// Posts an exempt review, a dry run, a verified and a denied one to `server` (listening on
/// `port`), and returns the level of each admission line it logged, by reason.
std::map<std::string, std::string> decisionLevels(Webhook& webhook, ServerProcess& server,
                                                  std::uint16_t port) {
    const auto post = [&](const std::string& body) {
        Poco::Net::HTTPSClientSession session("127.0.0.1", port, webhook.clientContext());
        return Webhook::exchange(session, "POST", "/validate", body);
    };
    CHECK(post(reviewFor("0001", "system:serviceaccount:kube-system:deployer")).reason() ==
          "exempt");
    CHECK(post(twostep::test::readFixture("0007")).reason() == "dry_run");  // alice, dryRun
    CHECK(post(reviewFor("0004", "alice", webhook.code("alice"))).reason() == "verified");
    CHECK(post(reviewFor("0001", "alice")).reason() == "missing_code");
    // Each line is written before its answer is sent, so once the last one is in, all are.
    REQUIRE(server.waitForOutput("\"reason\":\"missing_code\"", 5s));

    std::map<std::string, std::string> levels;
    std::istringstream lines(server.output());
    for (std::string line; std::getline(lines, line);) {
        const auto json = nlohmann::json::parse(line, nullptr, false);
        if (!json.is_discarded() && json.value("msg", "") == "admission") {
            levels[json.at("reason").get<std::string>()] = json.at("level").get<std::string>();
        }
    }
    return levels;
}

}  // namespace

TEST_CASE("bad flags exit 78 with one line naming the flag and value",
          "[integration][lifecycle]") {
    Webhook webhook;
    const auto with = [&](std::vector<std::string> extra) { return webhook.arguments(extra); };

    struct Case {
        std::vector<std::string> args;
        std::string message;
    };
    const std::vector<Case> cases{
        {{"--window=11"}, "invalid --window '11': must be an integer from 0 to 10"},
        {{"--listen=localhost"}, "invalid --listen 'localhost': expected host:port"},
        {{"--grant-ttl=5 minutes"}, "invalid --grant-ttl '5 minutes': expected a duration"},
        {{"--unenrolled=maybe"}, "invalid --unenrolled 'maybe': must be deny or allow"},
        {{"--log-format=xml"}, "invalid --log-format 'xml': must be json or text"},
        {{"--log-level=verbose"},
         "invalid --log-level 'verbose': must be debug, info, warn or error"},
        {{"--max-body=lots"}, "invalid --max-body 'lots': expected a size"},
        {{"--threads=0"}, "invalid --threads '0': must be an integer from 1 to 1024"},
        {{"--annotation=not a key"}, "invalid --annotation 'not a key'"},
        {{"--lockout-base=2h", "--lockout-max=1h"}, "--lockout-max (3600s) is shorter"},
        {{"--tls-cert=/nonexistent/cert.pem"}, "cannot read certificate file /nonexistent/cert.pem"},
        {{"--db=/nonexistent/dir/twostep.db"}, "cannot open database '/nonexistent/dir/twostep.db'"},
    };
    for (const Case& c : cases) {
        INFO(c.args.front());
        const Exit exit = runToExit(with(c.args));
        CHECK(exit.code == 78);
        CHECK_THAT(exit.errors, Catch::StartsWith("twostep-webhook: ") && Catch::Contains(c.message));
        CHECK(std::count(exit.errors.begin(), exit.errors.end(), '\n') == 1);
    }

    // The environment is read too, and named in the message.
    const Exit fromEnv = runToExit(with({}), {{"TWOSTEP_WINDOW", "x"}});
    CHECK(fromEnv.code == 78);
    CHECK_THAT(fromEnv.errors, Catch::Contains("invalid TWOSTEP_WINDOW 'x'"));
    const Exit levelFromEnv = runToExit(with({}), {{"TWOSTEP_LOG_LEVEL", "loud"}});
    CHECK(levelFromEnv.code == 78);
    CHECK_THAT(levelFromEnv.errors,
               Catch::Contains("invalid TWOSTEP_LOG_LEVEL 'loud': must be debug, info, warn or "
                               "error"));

    // Unknown options and stray arguments are usage errors.
    const Exit unknown = runToExit(with({"--bogus"}));
    CHECK(unknown.code == 64);
    CHECK_THAT(unknown.errors, Catch::Contains("bogus") && Catch::Contains("--help"));
    CHECK(runToExit(with({"stray"})).code == 64);

    const Exit help = runToExit({TWOSTEP_WEBHOOK_BINARY, "--help"});
    CHECK(help.code == 0);
    for (const char* flag :
         {"--listen", "--tls-cert", "--tls-key", "--client-ca", "--db", "--master-key-file",
          "--annotation", "--window", "--exempt-user", "--exempt-group", "--no-default-exemptions",
          "--unenrolled", "--grant-ttl", "--grant-max-ttl", "--lockout-failures",
          "--lockout-base", "--lockout-max", "--log-format", "--log-level", "--max-body",
          "--threads", "--event-loops", "--max-connections", "--idle-timeout",
          "--read-timeout", "--header-timeout", "--cert-reload-interval"}) {
        CHECK_THAT(help.output, Catch::Contains(flag));
    }
}

TEST_CASE("a master key the database was not sealed with is refused at start-up",
          "[integration][lifecycle]") {
    Webhook webhook;
    const auto otherKey = webhook.path("other.key");
    twostep::core::MasterKey::generate().writeNewFile(otherKey);
    const Exit exit = runToExit(webhook.arguments({"--master-key-file=" + otherKey.string()}));
    CHECK(exit.code == 78);
    CHECK_THAT(exit.errors, Catch::Contains("the master key in " + otherKey.string() +
                                            " is not the key this database was sealed with"));
    CHECK(exit.output.find("listening on") == std::string::npos);
}

TEST_CASE("a new database records the key's fingerprint at first start",
          "[integration][lifecycle]") {
    Webhook webhook;
    const auto freshDb = webhook.path("fresh.db");
    {
        ServerProcess process(webhook.arguments({"--db=" + freshDb.string()}));
        process.waitForPort();
    }
    const auto otherKey = webhook.path("other.key");
    twostep::core::MasterKey::generate().writeNewFile(otherKey);
    const Exit exit = runToExit(webhook.arguments(
        {"--db=" + freshDb.string(), "--master-key-file=" + otherKey.string()}));
    CHECK(exit.code == 78);
}

TEST_CASE("/healthz, /readyz and a database that fails under a running server",
          "[integration][lifecycle]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.start();
    CHECK(webhook.get("/healthz").body == "ok\n");
    const HttpResult ready = webhook.get("/readyz");
    CHECK(ready.status == 200);
    CHECK(ready.body == "ok\n");

    wreck(webhook.dbFile());

    const HttpResult notReady = webhook.get("/readyz");
    CHECK(notReady.status == 503);
    CHECK_THAT(notReady.body, Catch::StartsWith("database not usable: "));
    CHECK(webhook.get("/healthz").status == 200);  // alive, just not ready

    // An exempt request never touches the database, so it is still allowed...
    const HttpResult exempt = webhook.post(
        "/validate", reviewFor("0001", "system:serviceaccount:kube-system:deployer"));
    CHECK(exempt.allowed());
    CHECK(exempt.reason() == "exempt");
    // ...while everything that needs the database fails closed.
    const HttpResult failed = webhook.post("/validate", reviewFor("0001", "alice"));
    REQUIRE(failed.status == 200);
    CHECK_FALSE(failed.allowed());
    CHECK(failed.reason() == "internal_error");
    // The log says what failed; the answer does not. (The line may trail the answer a little:
    // it is read from a pipe.)
    REQUIRE(webhook.server().waitForOutput("\"reason\":\"internal_error\"", 5s));
    CHECK_THAT(webhook.server().output(), Catch::Contains("\"error\":\"cannot "));
    CHECK(failed.body.find("not a database") == std::string::npos);
}

TEST_CASE("/metrics counts decisions, answers and users", "[integration][lifecycle]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.enroll("pat", twostep::core::UserState::Pending);
    webhook.start();
    const HttpResult first = webhook.get("/metrics");
    REQUIRE(first.status == 200);
    CHECK(first.contentType.rfind("text/plain; version=0.0.4", 0) == 0);
    CHECK_THAT(first.body, Catch::Contains("# TYPE twostep_admission_review_duration_seconds "
                                           "histogram"));
    CHECK_THAT(first.body, Catch::Contains("twostep_build_info{version=\""));
    CHECK(webhook.metric("twostep_enrolled_users{state=\"active\"}") == 1);
    CHECK(webhook.metric("twostep_enrolled_users{state=\"pending\"}") == 1);
    CHECK(webhook.metric("twostep_locked_users") == 0);

    const std::string missing =
        "twostep_admission_requests_total{decision=\"deny\",endpoint=\"validate\","
        "reason=\"missing_code\"}";
    const std::string verified =
        "twostep_admission_requests_total{decision=\"allow\",endpoint=\"mutate\","
        "reason=\"verified\"}";
    CHECK(webhook.metric(missing) == 0);
    webhook.post("/validate", reviewFor("0001", "alice"));
    webhook.post("/validate", reviewFor("0002", "alice"));
    webhook.post("/mutate", reviewFor("0004", "alice", webhook.code("alice")));
    webhook.post("/validate", "{");
    CHECK(webhook.metric(missing) == 2);
    CHECK(webhook.metric(verified) == 1);
    CHECK(webhook.metric("twostep_http_requests_total{code=\"400\"}") == 1);
    CHECK(webhook.metric(
              "twostep_admission_review_duration_seconds_count{endpoint=\"validate\"}") == 3);
    // Three audited decisions one after another: three store batches of one change each.
    CHECK(webhook.metric("twostep_store_batch_size_count") == 3);
    CHECK(webhook.metric("twostep_store_batch_size_sum") == 3);
    CHECK(webhook.metric("twostep_store_batch_failures_total") == 0);
    // Usernames never become label values.
    CHECK(webhook.get("/metrics").body.find("alice") == std::string::npos);
}

TEST_CASE("SIGTERM lets the request in flight finish, then exits 0", "[integration][lifecycle]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.start();
    const std::string body = reviewFor("0004", "alice", webhook.code("alice"));

    Poco::Net::HTTPSClientSession session("127.0.0.1", webhook.port(), webhook.clientContext());
    session.setTimeout(Poco::Timespan(10, 0));
    Poco::Net::HTTPRequest request("POST", "/validate", Poco::Net::HTTPMessage::HTTP_1_1);
    request.setContentType("application/json");
    request.setContentLength(static_cast<std::streamsize>(body.size()));
    std::ostream& out = session.sendRequest(request);
    out << body.substr(0, body.size() / 2);
    out.flush();
    std::this_thread::sleep_for(200ms);  // the server is now reading this request's body

    webhook.server().signal(SIGTERM);
    REQUIRE(webhook.server().waitForOutput("stopping", 5s));
    // Still running: it waits for the request in flight.
    CHECK_FALSE(webhook.server().waitExit(300ms).has_value());

    out << body.substr(body.size() / 2);
    Poco::Net::HTTPResponse response;
    std::istream& in = session.receiveResponse(response);
    const std::string answer{std::istreambuf_iterator<char>(in), {}};
    CHECK(response.getStatus() == Poco::Net::HTTPResponse::HTTP_OK);
    CHECK(nlohmann::json::parse(answer).at("response").at("allowed") == true);

    const auto code = webhook.server().waitExit(10s);
    REQUIRE(code.has_value());
    CHECK(*code == 0);
    CHECK_THAT(webhook.server().output(), Catch::Contains("\"msg\":\"stopped\""));
}

TEST_CASE("text log lines carry the decision fields and never the code",
          "[integration][lifecycle]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.start({"--log-format=text"});
    const std::string code = webhook.code("alice");
    CHECK(webhook.post("/validate", reviewFor("0004", "alice", code)).allowed());
    REQUIRE(webhook.server().waitForOutput("msg=admission", 5s));
    const std::string log = webhook.server().output();
    CHECK_THAT(log, Catch::Contains("msg=admission endpoint=validate uid=") &&
                        Catch::Contains(" user=alice operation=CREATE "
                                        "resource=apps/v1/deployments namespace=default") &&
                        Catch::Contains(" decision=allow reason=verified duration_ms="));
    CHECK_FALSE(twostep::test::containsNumber(log, code));
}

TEST_CASE("exempt and dry-run reviews are logged only at debug; verified and denied stay at info",
          "[integration][lifecycle]") {
    Webhook webhook;
    webhook.enroll("alice");
    std::map<std::string, std::string> levels;  // reason -> level of its admission line

    SECTION("default level: routine decisions leave no line") {
        webhook.start();
        levels = decisionLevels(webhook, webhook.server(), webhook.port());
        CHECK(levels == std::map<std::string, std::string>{{"verified", "info"},
                                                           {"missing_code", "info"}});
    }
    SECTION("--log-level=debug") {
        webhook.start({"--log-level=debug"});
        levels = decisionLevels(webhook, webhook.server(), webhook.port());
        CHECK(levels == std::map<std::string, std::string>{{"exempt", "debug"},
                                                           {"dry_run", "debug"},
                                                           {"verified", "info"},
                                                           {"missing_code", "info"}});
    }
    SECTION("TWOSTEP_LOG_LEVEL=debug") {
        ServerProcess server(webhook.arguments(), {{"TWOSTEP_LOG_LEVEL", "debug"}});
        levels = decisionLevels(webhook, server, server.waitForPort());
        CHECK(levels.at("exempt") == "debug");
        CHECK(levels.at("verified") == "info");
    }
    SECTION("the flag wins over TWOSTEP_LOG_LEVEL") {
        ServerProcess server(webhook.arguments({"--log-level=info"}),
                             {{"TWOSTEP_LOG_LEVEL", "debug"}});
        levels = decisionLevels(webhook, server, server.waitForPort());
        CHECK(levels.count("exempt") == 0);
        CHECK(levels.at("verified") == "info");
    }
}

TEST_CASE("a client trickling its headers cannot hold a stop open for long",
          "[integration][lifecycle]") {
    Webhook webhook;
    webhook.start({"--read-timeout=1s"});
    // One byte every 400 ms: never idle for a whole read timeout, never done with its headers.
    Poco::Net::SecureStreamSocket trickle(Poco::Net::SocketAddress("127.0.0.1", webhook.port()),
                                          webhook.clientContext());
    std::atomic<bool> stop{false};
    std::thread sender([&] {
        const std::string head = "POST /validate HTTP/1.1\r\nX-Slow: ";
        try {
            trickle.sendBytes(head.data(), static_cast<int>(head.size()));
            while (!stop.load()) {
                trickle.sendBytes("a", 1);
                std::this_thread::sleep_for(400ms);
            }
        } catch (const Poco::Exception&) {
            // The server went away: expected at the end.
        }
    });
    std::this_thread::sleep_for(500ms);
    const auto start = std::chrono::steady_clock::now();
    webhook.server().signal(SIGTERM);
    const auto code = webhook.server().waitExit(10s);
    const auto took = std::chrono::steady_clock::now() - start;
    stop = true;
    sender.join();
    REQUIRE(code.has_value());
    // 2 x --read-timeout + 2 s, then out, with a message saying why.
    CHECK(took < 6s);
    CHECK(*code == 70);
    CHECK_THAT(webhook.server().output(), Catch::Contains("stopping took longer than 4000 ms"));
}
