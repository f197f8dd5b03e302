// PostgreSQL-only behaviour: URLs and secrets in messages, TLS through sslmode, the pool, the
// statement timeout, reconnecting, and migrating replicas. The behaviour both stores share is in
// Store_test.cpp. Tests tagged [postgres] need scripts/with-postgres.sh (they fail without it).
#include "core/PostgresStore.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <pqxx/pqxx>
#include <string>
#include <thread>
#include <vector>

#include "core/Error.hpp"
#include "core/Migrations.hpp"
#include "support/PostgresTestDatabase.hpp"
#include "support/TestUsers.hpp"

using twostep::StoreError;
using twostep::core::LockoutPolicy;
using twostep::core::NewUser;
using twostep::core::PostgresOptions;
using twostep::core::PostgresStore;
using twostep::core::redactPostgresUrl;
using twostep::core::Seconds;
using twostep::core::UserState;
using twostep::test::newUser;
using twostep::test::PostgresTestDatabase;
using twostep::test::postgresUrlWithParameter;
using twostep::test::withPostgresVariable;

namespace {

constexpr Seconds T0 = 1'700'000'000;

/// The message of the StoreError that `fn` throws (fails the test when it throws none).
template <typename Fn>
std::string storeErrorOf(Fn&& fn) {
    try {
        fn();
    } catch (const StoreError& e) {
        return e.what();
    }
    FAIL("no StoreError was thrown");
    return {};
}

/// The password in a postgresql://user:password@... URL.
std::string passwordOf(const std::string& url) {
    const std::size_t start = url.find(':', url.find("://") + 3) + 1;
    return url.substr(start, url.find('@') - start);
}

/// The store's connections to `database`, as the server counts them.
std::int64_t storeConnections(const PostgresTestDatabase& database) {
    return database.queryInt(
        "SELECT COUNT(*) FROM pg_stat_activity WHERE application_name = 'twostep' "
        "AND datname = current_database()");
}

int newestMigration() {
    return twostep::core::embeddedMigrations(twostep::core::SqlDialect::Postgresql).back().version;
}

}  // namespace

TEST_CASE("postgresql urls are redacted for messages", "[store][postgres-no-server]") {
    CHECK(redactPostgresUrl("postgresql://alice:s3cret@db:5432/twostep") ==
          "postgresql://alice:***@db:5432/twostep");
    CHECK(redactPostgresUrl("postgres://alice:p%40ss@db/twostep?sslmode=verify-full") ==
          "postgres://alice:***@db/twostep?sslmode=verify-full");
    CHECK(redactPostgresUrl("postgresql://db/twostep?user=alice&password=s3cret&sslmode=require") ==
          "postgresql://db/twostep?user=alice&password=***&sslmode=require");
    // A user without a password and an '@' in the password itself.
    CHECK(redactPostgresUrl("postgresql://alice@db/twostep") == "postgresql://alice@db/twostep");
    CHECK(redactPostgresUrl("postgresql://alice:a@b@db/twostep") ==
          "postgresql://alice:***@db/twostep");
    CHECK(redactPostgresUrl("postgresql://db/x?password=a&password=b#password=c") ==
          "postgresql://db/x?password=***&password=***#password=c");
    // Anything that is not a password stays exactly as written, file paths included.
    CHECK(redactPostgresUrl("postgresql://db/x?sslmode&a=1&&b=") ==
          "postgresql://db/x?sslmode&a=1&&b=");
    CHECK(redactPostgresUrl("/var/lib/twostep/twostep.db") == "/var/lib/twostep/twostep.db");
}

TEST_CASE("an invalid postgresql url is refused without the password",
          "[store][postgres-no-server]") {
    // libpq rejects these while parsing, before any connection is tried.
    const std::string unknown =
        storeErrorOf([] { PostgresStore store("postgresql://alice:s3cret@db/twostep?color=red"); });
    CHECK(unknown ==
          "invalid postgresql url 'postgresql://alice:***@db/twostep?color=red': invalid URI "
          "query parameter: \"color\"");
    const std::string badEscape =
        storeErrorOf([] { PostgresStore store("postgresql://alice:s3%zzcret@db/twostep"); });
    CHECK_THAT(badEscape, Catch::StartsWith("invalid postgresql url 'postgresql://alice:***@db/"));
    CHECK(badEscape.find("s3") == std::string::npos);
    CHECK(badEscape.find("zz") == std::string::npos);
}

TEST_CASE("pool_size and statement_timeout in the url are checked and applied",
          "[store][postgres-no-server]") {
    CHECK(storeErrorOf([] { PostgresStore store("postgresql://db/twostep?pool_size=0"); }) ==
          "invalid pool_size '0' in the postgresql url; expected a whole number from 1 to 1000");
    CHECK(storeErrorOf([] {
              PostgresStore store("postgresql://db/twostep?sslmode=disable&statement_timeout=5s");
          }) ==
          "invalid statement_timeout '5s' in the postgresql url; expected a whole number from 1 "
          "to 86400000");
}

TEST_CASE("the postgresql migrations have the sqlite ones' versions and names",
          "[store][migrations][postgres-no-server]") {
    using twostep::core::embeddedMigrations;
    using twostep::core::SqlDialect;
    const auto sqlite = embeddedMigrations(SqlDialect::Sqlite);
    const auto postgresql = embeddedMigrations(SqlDialect::Postgresql);
    REQUIRE(postgresql.size() == sqlite.size());
    for (std::size_t i = 0; i < postgresql.size(); ++i) {
        CAPTURE(i);
        CHECK(postgresql[i].version == sqlite[i].version);
        CHECK(postgresql[i].name == sqlite[i].name);
        CHECK(postgresql[i].file == "postgresql/" + std::string(sqlite[i].file));
    }
    CHECK(postgresql.front().sql.find("CREATE TABLE users") != std::string_view::npos);
}

TEST_CASE("the url's pool_size and statement_timeout override the defaults", "[store][postgres]") {
    const PostgresTestDatabase database;
    PostgresStore store(
        postgresUrlWithParameter(database.url(), "pool_size=3&statement_timeout=1500"));
    CHECK(store.options().poolSize == 3);
    CHECK(store.options().statementTimeoutMs == 1500);
    // The description names server and database, never the user or password.
    CHECK_THAT(store.description(), Catch::StartsWith("postgresql://127.0.0.1:"));
    CHECK_THAT(store.description(), Catch::EndsWith("/" + database.name()));
    CHECK(store.schemaVersion() == newestMigration());
}

TEST_CASE("a wrong password is refused with a message that does not contain it",
          "[store][postgres]") {
    const PostgresTestDatabase database;
    const std::string good = passwordOf(database.url());
    std::string url = database.url();
    const std::string wrong = "wrong-" + good;
    url.replace(url.find(good), good.size(), wrong);
    const std::string message = storeErrorOf([&] { PostgresStore store(url); });
    CHECK_THAT(message, Catch::StartsWith("cannot open database 'postgresql://127.0.0.1:"));
    CHECK_THAT(message, Catch::Contains("password authentication failed for user"));
    CHECK(message.find(good) == std::string::npos);
}

TEST_CASE("the url's sslmode reaches libpq: TLS is required and verified when asked",
          "[store][postgres]") {
    const PostgresTestDatabase database;
    const std::string ca = withPostgresVariable("TWOSTEP_TEST_POSTGRES_CA");
    {
        // verify-full: the server's certificate must chain to the CA and name the host.
        PostgresStore store(
            postgresUrlWithParameter(database.url(), "sslmode=verify-full&sslrootcert=" + ca));
        REQUIRE(store.addUser(newUser("alice"), T0, false));
        CHECK(
            database.queryInt("SELECT COUNT(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                              "WHERE application_name = 'twostep' AND datname = "
                              "current_database() AND ssl") >= 1);
    }
    {
        // verify-full without the CA: the server's certificate is not trusted.
        const std::string message = storeErrorOf([&] {
            PostgresStore store(postgresUrlWithParameter(
                database.url(), "sslmode=verify-full&sslrootcert=/nonexistent/ca.crt"));
        });
        CHECK_THAT(message, Catch::Contains("root certificate file \"/nonexistent/ca.crt\" does "
                                            "not exist"));
    }
    {
        // disable: plain TCP, as the URL asks.
        PostgresStore store(postgresUrlWithParameter(database.url(), "sslmode=disable"));
        CHECK(store.findUser("alice").has_value());
        CHECK(
            database.queryInt("SELECT COUNT(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) "
                              "WHERE application_name = 'twostep' AND datname = "
                              "current_database() AND NOT ssl") >= 1);
    }
}

TEST_CASE("errors name the operation and leave out DETAIL lines that quote rows",
          "[store][postgres]") {
    const PostgresTestDatabase database;
    PostgresStore store(database.url());
    NewUser user = newUser("alice");
    user.params.digits = 7;  // the CHECK constraint's DETAIL would quote the sealed secret
    const std::string message = storeErrorOf([&] { store.addUser(user, T0, false); });
    CHECK(message == "cannot add user 'alice' in database '" + store.description() +
                         "': new row for relation \"users\" violates check constraint "
                         "\"users_digits_check\"");
    CHECK(message.find("sealed") == std::string::npos);
    // The store keeps working after a failed statement.
    CHECK(store.addUser(newUser("alice"), T0, false));
}

TEST_CASE("text with a NUL byte is refused, never stored cut short", "[store][postgres]") {
    const PostgresTestDatabase database;
    PostgresStore store(database.url());
    const std::string evil("alice\0x", 7);
    CHECK_THROWS_MATCHES(
        store.addUser(newUser(evil), T0, false), StoreError,
        Catch::Message("cannot add user 'alice\\0x' in database '" + store.description() +
                       "': text with a NUL byte cannot be stored in PostgreSQL"));
    twostep::core::AuditEvent event;
    event.time = T0;
    event.username = evil;
    event.operation = "CREATE";
    event.decision = "deny";
    CHECK_THROWS_AS(store.appendAudit(event), StoreError);
    CHECK(database.queryInt("SELECT COUNT(*) FROM users") == 0);
    CHECK(database.queryInt("SELECT COUNT(*) FROM audit_events") == 0);
}

TEST_CASE("a statement that waits too long fails with a StoreError, and the store goes on",
          "[store][postgres]") {
    const PostgresTestDatabase database;
    PostgresStore store(postgresUrlWithParameter(database.url(), "statement_timeout=300"));
    REQUIRE(store.addUser(newUser("alice"), T0, false));

    // Another session holds alice's row lock (as a stuck replica would).
    pqxx::connection other(database.url());
    pqxx::work holding(other);
    holding.exec1("SELECT 1 FROM users WHERE username = 'alice' FOR UPDATE");

    const auto start = std::chrono::steady_clock::now();
    const std::string message =
        storeErrorOf([&] { store.acceptStep("alice", 10, UserState::Active, T0); });
    const auto waited = std::chrono::steady_clock::now() - start;
    CHECK(message == "cannot accept a time step for user 'alice' in database '" +
                         store.description() + "': canceling statement due to statement timeout");
    CHECK(waited >= std::chrono::milliseconds(250));
    CHECK(waited < std::chrono::seconds(3));

    holding.abort();
    CHECK(store.acceptStep("alice", 10, UserState::Active, T0));
    CHECK(store.findUser("alice")->lastStep == 10);
}

TEST_CASE("the pool never opens more connections than its size", "[store][postgres]") {
    const PostgresTestDatabase database;
    PostgresStore store(postgresUrlWithParameter(database.url(), "pool_size=3"));
    REQUIRE(store.addUser(newUser("alice"), T0, false));

    constexpr int Threads = 12;
    constexpr int Calls = 40;
    std::atomic<int> failures{0};
    std::atomic<bool> done{false};
    std::int64_t most = 0;
    std::thread sampler([&] {
        while (!done.load()) {
            most = std::max(most, storeConnections(database));
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
    });
    std::vector<std::thread> workers;
    for (int t = 0; t < Threads; ++t) {
        workers.emplace_back([&] {
            for (int i = 0; i < Calls; ++i) {
                try {
                    store.recordFailure("alice", LockoutPolicy{1000, 60, 3600}, T0);
                    store.findUser("alice");
                } catch (const std::exception&) {
                    failures.fetch_add(1);
                }
            }
        });
    }
    for (std::thread& worker : workers) {
        worker.join();
    }
    done.store(true);
    sampler.join();
    CHECK(failures.load() == 0);
    CHECK(most >= 1);
    CHECK(most <= 3);
    // Every failure was counted: the row lock serialises the read-modify-write.
    CHECK(store.findUser("alice")->failures == Threads * Calls);
}

TEST_CASE("connections the server closed are replaced without failing a call",
          "[store][postgres]") {
    const PostgresTestDatabase database;
    PostgresStore store(database.url());
    REQUIRE(store.addUser(newUser("alice"), T0, false));
    REQUIRE(storeConnections(database) >= 1);

    // What a server restart or an idle timeout does to pooled connections.
    CHECK(database.queryInt("SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE application_name = 'twostep' AND datname = "
                            "current_database()") >= 1);
    for (int i = 0; i < 50 && storeConnections(database) > 0; ++i) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    REQUIRE(storeConnections(database) == 0);

    // The idle connection is found dead before use and a new one opened.
    CHECK(store.acceptStep("alice", 7, UserState::Active, T0));
    CHECK(store.findUser("alice")->lastStep == 7);
}

TEST_CASE("replicas starting together on a new database migrate it exactly once",
          "[store][postgres][migrations]") {
    const PostgresTestDatabase database;
    constexpr int Replicas = 6;
    std::barrier start(Replicas);
    std::atomic<int> opened{0};
    std::vector<std::string> errors(Replicas);
    std::vector<std::thread> replicas;
    for (int r = 0; r < Replicas; ++r) {
        replicas.emplace_back([&, r] {
            start.arrive_and_wait();
            try {
                PostgresStore store(database.url());
                if (store.schemaVersion() == newestMigration()) {
                    opened.fetch_add(1);
                }
            } catch (const std::exception& e) {
                errors[static_cast<std::size_t>(r)] = e.what();
            }
        });
    }
    for (std::thread& replica : replicas) {
        replica.join();
    }
    for (const std::string& error : errors) {
        CAPTURE(error);
        CHECK(error.empty());
    }
    CHECK(opened.load() == Replicas);
    CHECK(database.queryInt("SELECT COUNT(*) FROM schema_version") == newestMigration());
}

TEST_CASE("a store on a server that does not answer fails with a StoreError",
          "[store][postgres-no-server]") {
    // A bound socket that does not listen: connecting is refused, at once and deterministically.
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(fd >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    const std::string port = std::to_string(ntohs(address.sin_port));

    const std::string message = storeErrorOf(
        [&] { PostgresStore store("postgresql://twostep:secret@127.0.0.1:" + port + "/twostep"); });
    ::close(fd);
    CHECK(message == "cannot open database 'postgresql://127.0.0.1:" + port +
                         "/twostep': connection to server at \"127.0.0.1\", port " + port +
                         " failed: Connection refused");
}

namespace {

/// Runs the with-postgres control script (start, stop or restart; it waits until done).
void controlServer(const std::string& command) {
    const std::string ctl = withPostgresVariable("TWOSTEP_TEST_POSTGRES_CTL");
    const std::string line = "'" + ctl + "' " + command + " >/dev/null";
    REQUIRE(std::system(line.c_str()) == 0);
}

}  // namespace

// Hidden: it stops the server, so it runs alone on a server of its own (a ctest entry of its own
// wraps it in scripts/with-postgres.sh), never next to other tests on the shared one.
TEST_CASE("a server restart under load fails calls closed, service resumes, no step twice",
          "[.][postgres-restart]") {
    const PostgresTestDatabase database;
    PostgresStore store(postgresUrlWithParameter(database.url(), "pool_size=4"));
    constexpr int Users = 3;
    constexpr int Threads = 9;  // three racers per user
    for (int u = 0; u < Users; ++u) {
        REQUIRE(store.addUser(newUser("user" + std::to_string(u)), T0, false));
    }

    // Racers on one user share the step they try next, so they often race for the same step
    // (the same code in concurrent requests). After any answer the step moves on; a step whose
    // acceptance was committed while the reply got lost (an error) is then refused as a replay.
    std::array<std::atomic<std::int64_t>, Users> next{};
    for (auto& step : next) {
        step.store(1);
    }
    std::mutex winsMutex;
    std::map<std::pair<int, std::int64_t>, int> wins;  // (user, step) -> calls that got true
    std::atomic<bool> stop{false};
    std::atomic<bool> restarted{false};
    std::atomic<int> storeErrors{0};
    std::vector<std::string> otherErrors(Threads);
    std::vector<std::atomic<int>> successesAfterRestart(Threads);
    std::vector<std::thread> racers;
    for (int t = 0; t < Threads; ++t) {
        racers.emplace_back([&, t] {
            const int user = t % Users;
            const std::string name = "user" + std::to_string(user);
            while (!stop.load()) {
                std::int64_t step = next[static_cast<std::size_t>(user)].load();
                try {
                    const bool accepted = store.acceptStep(name, step, UserState::Active, T0);
                    if (accepted) {
                        const std::lock_guard lock(winsMutex);
                        ++wins[{user, step}];
                    }
                    if (restarted.load()) {
                        successesAfterRestart[static_cast<std::size_t>(t)].fetch_add(1);
                    }
                    next[static_cast<std::size_t>(user)].compare_exchange_strong(step, step + 1);
                } catch (const StoreError&) {
                    storeErrors.fetch_add(1);
                    std::this_thread::sleep_for(std::chrono::milliseconds(2));
                } catch (const std::exception& e) {
                    otherErrors[static_cast<std::size_t>(t)] = e.what();
                    return;
                }
            }
        });
    }

    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const std::int64_t stepsBefore = next[0].load();
    controlServer("stop");
    // While the server is down every call fails with a StoreError (fail closed), never a
    // crash, a hang or an allow.
    std::this_thread::sleep_for(std::chrono::milliseconds(500));
    const int errorsWhileDown = storeErrors.load();
    CHECK_THROWS_AS(store.acceptStep("user0", 1'000'000, UserState::Active, T0), StoreError);
    CHECK_THROWS_AS(store.findUser("user0"), StoreError);
    controlServer("start");
    restarted.store(true);

    // Service resumes by itself: every racer succeeds again within a bounded time.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(15);
    const auto allResumed = [&] {
        for (int t = 0; t < Threads; ++t) {
            if (successesAfterRestart[static_cast<std::size_t>(t)].load() == 0) {
                return false;
            }
        }
        return true;
    };
    while (!allResumed() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    stop.store(true);
    for (std::thread& racer : racers) {
        racer.join();
    }

    for (const std::string& error : otherErrors) {
        CHECK(error.empty());
    }
    CHECK(errorsWhileDown > 0);
    CHECK(allResumed());
    CHECK(stepsBefore > 1);
    CHECK(next[0].load() > stepsBefore);
    // No step was accepted twice, before, during or after the outage.
    for (const auto& [key, count] : wins) {
        CAPTURE(key.first, key.second);
        CHECK(count == 1);
    }
    // The stored step is the newest accepted one (or one whose reply was lost in the outage).
    for (int u = 0; u < Users; ++u) {
        std::int64_t newestWin = 0;
        for (const auto& [key, count] : wins) {
            if (key.first == u) {
                newestWin = std::max(newestWin, key.second);
            }
        }
        const auto stored = store.findUser("user" + std::to_string(u))->lastStep;
        REQUIRE(stored.has_value());
        CHECK(*stored >= newestWin);
        CHECK(*stored <= next[static_cast<std::size_t>(u)].load());
    }
}
