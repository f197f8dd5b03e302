// Several webhook replicas on one PostgreSQL database (issue 7): the real twostep-webhook binary,
// two processes at once, TLS on loopback. Tagged [postgres]: they need scripts/with-postgres.sh.
#include <catch2/catch.hpp>

#include <array>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "integration/WebhookHarness.hpp"
#include "support/PostgresTestDatabase.hpp"

using twostep::test::HttpResult;
using twostep::test::PostgresTestDatabase;
using twostep::test::reviewFor;
using twostep::test::ServerProcess;
using twostep::test::Webhook;

namespace {

using namespace std::chrono_literals;

/// A keep-alive HTTPS session to one of the webhook processes, already past the handshake.
std::unique_ptr<Poco::Net::HTTPSClientSession> connect(const Webhook& webhook, std::uint16_t port) {
    auto session =
        std::make_unique<Poco::Net::HTTPSClientSession>("127.0.0.1", port, webhook.clientContext());
    if (Webhook::exchange(*session, "GET", "/healthz", "").status != 200) {
        throw std::runtime_error("the webhook on port " + std::to_string(port) + " is not healthy");
    }
    return session;
}

/// A second webhook process on the same database and files as `webhook`.
std::unique_ptr<ServerProcess> startReplica(const Webhook& webhook, std::uint16_t& port) {
    auto replica = std::make_unique<ServerProcess>(webhook.arguments({"--threads=32"}));
    port = replica->waitForPort();
    return replica;
}

/// GET /readyz on a new connection: its HTTP status (0 when there was no answer).
int readiness(const Webhook& webhook, std::uint16_t port) {
    try {
        Poco::Net::HTTPSClientSession session("127.0.0.1", port, webhook.clientContext());
        return Webhook::exchange(session, "GET", "/readyz", "").status;
    } catch (const std::exception&) {
        return 0;
    }
}

}  // namespace

TEST_CASE(
    "two webhook processes on one PostgreSQL: of concurrent requests carrying the same "
    "code exactly one is allowed",
    "[integration][webhook][concurrency][postgres]") {
    constexpr int Rounds = 40;
    constexpr int ClientsPerProcess = 4;
    constexpr int Clients = 2 * ClientsPerProcess;
    const PostgresTestDatabase database;
    Webhook webhook(database.url());
    for (int round = 0; round < Rounds; ++round) {
        webhook.enroll("racer" + std::to_string(round));  // each round needs an unused step
    }
    webhook.start({"--threads=32"});
    std::uint16_t secondPort = 0;
    const auto second = startReplica(webhook, secondPort);
    const std::array<std::uint16_t, 2> ports{webhook.port(), secondPort};

    // One keep-alive session per client, half to each process, so the requests themselves race.
    std::vector<std::unique_ptr<Poco::Net::HTTPSClientSession>> sessions;
    for (int i = 0; i < Clients; ++i) {
        sessions.push_back(connect(webhook, ports[static_cast<std::size_t>(i % 2)]));
    }
    std::vector<std::string> bodies;
    for (int round = 0; round < Rounds; ++round) {
        const std::string user = "racer" + std::to_string(round);
        bodies.push_back(reviewFor("0004", user, webhook.code(user)));
    }

    // allowedBy[round][process]: who allowed; replayed/other: every other answer.
    std::vector<std::array<std::atomic<int>, 2>> allowedBy(Rounds);
    std::atomic<int> replayed{0};
    std::atomic<int> other{0};
    std::barrier sync(Clients);
    std::vector<std::thread> clients;
    for (int i = 0; i < Clients; ++i) {
        clients.emplace_back([&, i] {
            for (int round = 0; round < Rounds; ++round) {
                sync.arrive_and_wait();
                try {
                    const HttpResult r =
                        Webhook::exchange(*sessions[static_cast<std::size_t>(i)], "POST",
                                          i % 4 < 2 ? "/validate" : "/mutate",
                                          bodies[static_cast<std::size_t>(round)]);
                    if (r.status == 200 && r.allowed() && r.reason() == "verified") {
                        ++allowedBy[static_cast<std::size_t>(round)]
                                   [static_cast<std::size_t>(i % 2)];
                    } else if (r.status == 200 && !r.allowed() && r.reason() == "replayed") {
                        ++replayed;
                    } else {
                        ++other;
                    }
                } catch (...) {
                    ++other;
                }
            }
        });
    }
    for (std::thread& client : clients) {
        client.join();
    }

    std::array<int, 2> wins{0, 0};
    for (int round = 0; round < Rounds; ++round) {
        CAPTURE(round);
        const int first = allowedBy[static_cast<std::size_t>(round)][0].load();
        const int secondWins = allowedBy[static_cast<std::size_t>(round)][1].load();
        REQUIRE(first + secondWins == 1);
        wins[first == 1 ? 0 : 1] += 1;
    }
    CHECK(replayed.load() == Rounds * (Clients - 1));
    CHECK(other.load() == 0);
    // Both processes won some rounds: the race really was between them.
    CHECK(wins[0] > 0);
    CHECK(wins[1] > 0);
    // What the store recorded: one accepted step per user.
    for (int round = 0; round < Rounds; ++round) {
        CHECK(webhook.store().findUser("racer" + std::to_string(round))->lastStep.has_value());
    }
}

// Hidden: it stops the PostgreSQL server, so it runs alone on a server of its own (its ctest
// entry wraps it in scripts/with-postgres.sh).
TEST_CASE(
    "a PostgreSQL restart under load: the webhooks deny with internal_error, recover by "
    "themselves, and accept no code twice",
    "[.][postgres-restart-webhook]") {
    constexpr int Users = 6;
    constexpr int Clients = 12;  // two per user, one to each process
    const std::string ctl = twostep::test::withPostgresVariable("TWOSTEP_TEST_POSTGRES_CTL");
    const PostgresTestDatabase database;
    Webhook webhook(database.url());
    for (int u = 0; u < Users; ++u) {
        webhook.enroll("user" + std::to_string(u));
    }
    webhook.enroll("probe-down");
    webhook.enroll("probe-up-0");
    webhook.enroll("probe-up-1");
    webhook.start({"--threads=32"});
    std::uint16_t secondPort = 0;
    const auto second = startReplica(webhook, secondPort);
    const std::array<std::uint16_t, 2> ports{webhook.port(), secondPort};

    std::mutex mutex;
    std::map<std::pair<std::string, std::string>, int> allowed;  // (user, code) -> allows
    std::map<std::string, int> reasons;                          // every deny reason seen
    std::atomic<int> unanswered{0};
    std::atomic<bool> stop{false};
    std::vector<std::thread> clients;
    for (int c = 0; c < Clients; ++c) {
        clients.emplace_back([&, c] {
            const std::string user = "user" + std::to_string(c % Users);
            const std::uint16_t port = ports[static_cast<std::size_t>(c % 2)];
            std::unique_ptr<Poco::Net::HTTPSClientSession> session;
            while (!stop.load()) {
                // The current code, sent again and again: once allowed, every repeat is a replay.
                const std::string code = webhook.code(user);
                try {
                    if (!session) {
                        session = connect(webhook, port);
                    }
                    const HttpResult r = Webhook::exchange(*session, "POST", "/validate",
                                                           reviewFor("0004", user, code));
                    const std::lock_guard lock(mutex);
                    if (r.status != 200) {
                        ++reasons["http " + std::to_string(r.status)];
                    } else if (r.allowed()) {
                        ++allowed[{user, code}];
                    } else {
                        ++reasons[r.reason()];
                    }
                } catch (const std::exception&) {
                    // A connection the webhook closed: reconnect (never counts as an allow).
                    session.reset();
                    ++unanswered;
                    std::this_thread::sleep_for(10ms);
                }
                std::this_thread::sleep_for(2ms);
            }
        });
    }

    std::this_thread::sleep_for(1s);
    REQUIRE(std::system(("'" + ctl + "' stop >/dev/null").c_str()) == 0);
    std::this_thread::sleep_for(500ms);
    // While the database is down: denied (fail closed) with reason internal_error, and not ready.
    for (std::size_t p = 0; p < ports.size(); ++p) {
        CAPTURE(p);
        Poco::Net::HTTPSClientSession session("127.0.0.1", ports[p], webhook.clientContext());
        const HttpResult down =
            Webhook::exchange(session, "POST", "/validate",
                              reviewFor("0004", "probe-down", webhook.code("probe-down")));
        REQUIRE(down.status == 200);
        CHECK_FALSE(down.allowed());
        CHECK(down.reason() == "internal_error");
        CHECK(readiness(webhook, ports[p]) == 503);
    }
    REQUIRE(std::system(("'" + ctl + "' start >/dev/null").c_str()) == 0);

    // Service resumes by itself: each process allows a fresh code within a bounded time.
    for (std::size_t p = 0; p < ports.size(); ++p) {
        CAPTURE(p);
        const std::string user = "probe-up-" + std::to_string(p);
        const auto deadline = std::chrono::steady_clock::now() + 20s;
        bool resumed = false;
        while (!resumed && std::chrono::steady_clock::now() < deadline) {
            try {
                Poco::Net::HTTPSClientSession session("127.0.0.1", ports[p],
                                                      webhook.clientContext());
                const HttpResult r = Webhook::exchange(session, "POST", "/validate",
                                                       reviewFor("0004", user, webhook.code(user)));
                resumed = r.status == 200 && r.allowed();
                if (!resumed) {
                    CHECK((r.status == 200 && r.reason() == "internal_error"));
                }
            } catch (const std::exception&) {
            }
            if (!resumed) {
                std::this_thread::sleep_for(100ms);
            }
        }
        CHECK(resumed);
        CHECK(readiness(webhook, ports[p]) == 200);
    }
    std::this_thread::sleep_for(500ms);
    stop = true;
    for (std::thread& client : clients) {
        client.join();
    }

    const std::lock_guard lock(mutex);
    for (const auto& [reason, count] : reasons) {
        INFO(reason << ": " << count);
        // Every denial is a replay of an accepted code, or the outage.
        CHECK((reason == "replayed" || reason == "internal_error"));
    }
    CHECK(reasons["internal_error"] > 0);
    CHECK(reasons["replayed"] > 0);
    // No code was accepted twice: before, during or after the outage.
    REQUIRE_FALSE(allowed.empty());
    for (const auto& [key, count] : allowed) {
        CAPTURE(key.first, key.second);
        CHECK(count == 1);
    }
    // Both processes are still running.
    CHECK_FALSE(webhook.server().waitExit(0ms));
    CHECK_FALSE(second->waitExit(0ms));
}
