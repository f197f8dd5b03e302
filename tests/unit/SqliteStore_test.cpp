// SQLite-only behaviour: files, WAL, the busy timeout, :memory: and openStore's dispatch. What
// both stores share runs against each in Store_test.cpp.
#include "core/SqliteStore.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>

#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <cstdint>
#include <fstream>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "core/Error.hpp"
#include "core/Migrations.hpp"
#include "support/TempDir.hpp"
#include "support/TestUsers.hpp"

using twostep::StoreError;
using twostep::core::LockoutPolicy;
using twostep::core::NewUser;
using twostep::core::Seconds;
using twostep::core::SqliteOptions;
using twostep::core::SqliteStore;
using twostep::core::UserState;
using twostep::test::newUser;
using twostep::test::TempDir;

namespace {

constexpr Seconds T0 = 1'700'000'000;

/// Reads one integer with a separate, raw connection (what another process would see).
std::int64_t queryInt(const std::filesystem::path& db, const std::string& sql) {
    SQLite::Database raw(db.string(), SQLite::OPEN_READONLY);
    return raw.execAndGet(sql).getInt64();
}

}  // namespace

TEST_CASE("user states have stable names", "[store]") {
    CHECK(toString(UserState::Pending) == "pending");
    CHECK(toString(UserState::Active) == "active");
    CHECK(toString(UserState::Disabled) == "disabled");
}

TEST_CASE("the lock doubles per lockout up to the cap without overflowing", "[store][lockout]") {
    const LockoutPolicy policy{5, 60, 3600};
    const auto [lockout, seconds] = GENERATE(table<int, Seconds>({
        {0, 60},
        {1, 60},
        {2, 120},
        {3, 240},
        {6, 1920},
        {7, 3600},
        {64, 3600},
        {std::numeric_limits<int>::max(), 3600},
    }));
    CAPTURE(lockout);
    CHECK(policy.lockFor(lockout) == seconds);

    const Seconds huge = std::numeric_limits<Seconds>::max() / 2 + 1;
    const LockoutPolicy nearOverflow{5, huge, std::numeric_limits<Seconds>::max()};
    CHECK(nearOverflow.lockFor(2) == std::numeric_limits<Seconds>::max());
    CHECK(nearOverflow.lockFor(std::numeric_limits<int>::max()) ==
          std::numeric_limits<Seconds>::max());
    CHECK(LockoutPolicy{5, 7200, 3600}.lockFor(1) == 3600);
    CHECK(LockoutPolicy{5, 0, 3600}.lockFor(3) == 0);
}

TEST_CASE("embedded migrations are numbered from 1 without gaps", "[store][migrations]") {
    const auto migrations = twostep::core::embeddedMigrations(twostep::core::SqlDialect::Sqlite);
    REQUIRE_FALSE(migrations.empty());
    CHECK(migrations.front().name == "init");
    CHECK(migrations.front().file == "0001_init.sql");
    for (std::size_t i = 0; i < migrations.size(); ++i) {
        CHECK(migrations[i].version == static_cast<int>(i) + 1);
        CHECK_FALSE(migrations[i].sql.empty());
    }
    CHECK(migrations.front().sql.find("CREATE TABLE users") != std::string_view::npos);
}

TEST_CASE("a failing migration names itself and changes nothing", "[store][migrations]") {
    const TempDir dir;
    const auto path = dir / "other-app.db";
    {
        // Some other application's database that happens to have a users table.
        SQLite::Database raw(path.string(), SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE);
        raw.exec("CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)");
    }
    CHECK_THROWS_MATCHES(SqliteStore(path.string()), StoreError,
                         Catch::Message("cannot apply migration 0001_init.sql to database '" +
                                        path.string() + "': table users already exists"));
    // The migration's transaction rolled back: not even schema_version was created.
    CHECK(queryInt(path, "SELECT COUNT(*) FROM sqlite_master WHERE name = 'schema_version'") == 0);
    CHECK(queryInt(path, "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table'") == 1);
}

TEST_CASE("a file that is not a database is refused, naming the path", "[store]") {
    const TempDir dir;
    const auto path = dir / "notes.txt";
    {
        std::ofstream out(path);
        for (int i = 0; i < 200; ++i) {
            out << "this is a text file, not a SQLite database\n";
        }
    }
    CHECK_THROWS_MATCHES(
        SqliteStore(path.string()), StoreError,
        Catch::Message("cannot open database '" + path.string() + "': file is not a database"));
}

TEST_CASE("a database path that cannot be opened is refused, naming the path", "[store]") {
    const TempDir dir;
    const auto path = dir / "missing-dir" / "twostep.db";
    CHECK_THROWS_MATCHES(SqliteStore(path.string()), StoreError,
                         Catch::Message("cannot open database '" + path.string() +
                                        "': unable to open database file"));
}

TEST_CASE("openStore chooses the store from the url", "[store]") {
    const TempDir dir;
    SECTION("a plain path is a SQLite file") {
        const auto path = dir / "plain.db";
        auto store = twostep::core::openStore(path.string());
        REQUIRE(store->addUser(newUser("alice"), T0, false));
        CHECK(queryInt(path, "SELECT COUNT(*) FROM users") == 1);
    }
    SECTION("sqlite:PATH is a SQLite file") {
        const auto path = dir / "prefixed.db";
        auto store = twostep::core::openStore("sqlite:" + path.string());
        REQUIRE(store->addUser(newUser("alice"), T0, false));
        CHECK(queryInt(path, "SELECT COUNT(*) FROM users") == 1);
        CHECK_FALSE(std::filesystem::exists("sqlite:" + path.string()));
    }
    SECTION(":memory: is a private in-memory database") {
        auto first = twostep::core::openStore(":memory:");
        auto second = twostep::core::openStore(":memory:");
        REQUIRE(first->addUser(newUser("alice"), T0, false));
        CHECK(first->findUser("alice"));
        CHECK_FALSE(second->findUser("alice"));
    }
    SECTION("postgresql:// and postgres:// are PostgreSQL, and the password stays secret") {
        // URLs that libpq refuses while parsing: no server is needed to see who handled them.
        CHECK_THROWS_MATCHES(
            twostep::core::openStore("postgresql://twostep:pw@db/twostep?color=red"), StoreError,
            Catch::Message("invalid postgresql url 'postgresql://twostep:***@db/twostep?color=red'"
                           ": invalid URI query parameter: \"color\""));
        CHECK_THROWS_MATCHES(twostep::core::openStore("postgres://db/x?pool_size=0"), StoreError,
                             Catch::Message("invalid pool_size '0' in the postgresql url; "
                                            "expected a whole number from 1 to 1000"));
    }
    SECTION("other schemes and empty paths are refused") {
        CHECK_THROWS_MATCHES(twostep::core::openStore("mysql://root:pw@db/x"), StoreError,
                             Catch::Message("unsupported database url scheme 'mysql'; use a file "
                                            "path, sqlite:PATH or postgresql://..."));
        CHECK_THROWS_MATCHES(twostep::core::openStore("sqlite:"), StoreError,
                             Catch::Message("the database path is empty"));
        CHECK_THROWS_MATCHES(twostep::core::openStore(""), StoreError,
                             Catch::Message("the database path is empty"));
    }
}

TEST_CASE("an in-memory store is one database for every thread", "[store]") {
    SqliteStore store(":memory:");
    REQUIRE(store.addUser(newUser("alice"), T0, false));
    std::atomic<int> seen{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 4; ++i) {
        threads.emplace_back([&] {
            if (store.findUser("alice")) {
                ++seen;
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    CHECK(seen == 4);
}

TEST_CASE("connections use WAL mode and foreign keys", "[store]") {
    const TempDir dir;
    const auto path = dir / "twostep.db";
    SqliteStore store(path.string());
    SQLite::Database raw(path.string(), SQLite::OPEN_READONLY);
    CHECK(raw.execAndGet("PRAGMA journal_mode").getString() == "wal");

    // Foreign keys are on in the store's connections: removing a user cascades to its codes.
    REQUIRE(store.addUser(newUser("alice"), T0, false));
    REQUIRE(store.replaceRecoveryCodes("alice", {"aa$11", "bb$22"}, T0));
    CHECK(queryInt(path, "SELECT COUNT(*) FROM recovery_codes") == 2);
    REQUIRE(store.removeUser("alice"));
    CHECK(queryInt(path, "SELECT COUNT(*) FROM recovery_codes") == 0);
}

TEST_CASE("a writer waits for another connection's lock up to the busy timeout", "[store]") {
    const TempDir dir;
    const auto path = dir / "twostep.db";

    SECTION("a lock released within the timeout is waited for") {
        SqliteStore store(path.string());
        REQUIRE(store.addUser(newUser("alice"), T0, false));
        SQLite::Database other(path.string(), SQLite::OPEN_READWRITE);
        other.exec("BEGIN IMMEDIATE");
        std::thread release([&] {
            std::this_thread::sleep_for(std::chrono::milliseconds(300));
            other.exec("COMMIT");
        });
        const bool accepted = store.acceptStep("alice", 10, UserState::Active, T0);
        release.join();
        CHECK(accepted);
    }
    SECTION("a lock held past the timeout is a StoreError with context") {
        SqliteOptions options;
        options.busyTimeoutMs = 50;
        SqliteStore store(path.string(), options);
        REQUIRE(store.addUser(newUser("alice"), T0, false));
        SQLite::Database other(path.string(), SQLite::OPEN_READWRITE);
        other.exec("BEGIN IMMEDIATE");
        CHECK_THROWS_MATCHES(store.acceptStep("alice", 10, UserState::Active, T0), StoreError,
                             Catch::Message("cannot accept a time step for user 'alice' in "
                                            "database '" +
                                            path.string() + "': database is locked"));
        other.exec("ROLLBACK");
        // The connection that failed went back to the pool in a usable state.
        CHECK(store.acceptStep("alice", 10, UserState::Active, T0));
    }
    SECTION("a writer of the same store waits for the one before it, up to the timeout") {
        SqliteOptions options;
        options.busyTimeoutMs = 50;
        SqliteStore store(path.string(), options);
        REQUIRE(store.addUser(newUser("alice"), T0, false));
        std::atomic<bool> inside{false};
        std::atomic<bool> leave{false};
        std::thread slowWriter([&] {
            store.resealAll(
                [&](const std::string&, const std::string& sealed) {
                    inside = true;
                    while (!leave) {
                        std::this_thread::sleep_for(std::chrono::milliseconds(1));
                    }
                    return sealed;
                },
                "key");
        });
        while (!inside) {
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        CHECK_THROWS_MATCHES(store.acceptStep("alice", 10, UserState::Active, T0), StoreError,
                             Catch::Message("cannot accept a time step for user 'alice' in "
                                            "database '" +
                                            path.string() +
                                            "': database is locked (waited 50 ms for another "
                                            "writer)"));
        CHECK(store.findUser("alice"));  // readers are not held up by the writer
        leave = true;
        slowWriter.join();
        CHECK(store.acceptStep("alice", 10, UserState::Active, T0));
    }
}


TEST_CASE("sqlite:PATH?synchronous= chooses the durability; other parameters are refused",
          "[store]") {
    const TempDir dir;
    for (const std::string mode : {"full", "normal", "durable-state"}) {
        INFO("synchronous=" << mode);
        const auto path = dir / (mode + ".db");
        auto store = twostep::core::openStore("sqlite:" + path.string() + "?synchronous=" + mode);
        CHECK_FALSE(std::filesystem::exists(path.string() + "?synchronous=" + mode));
        REQUIRE(store->addUser(newUser("alice"), T0, false));
        REQUIRE(store->acceptStep("alice", 10, UserState::Active, T0));
        // durable-state commits this one with synchronous=NORMAL, then switches back.
        store->recordFailure("alice", LockoutPolicy{}, T0);
        REQUIRE(store->acceptStep("alice", 11, UserState::Active, T0));
        CHECK(queryInt(path, "SELECT last_step FROM users") == 11);
        CHECK(queryInt(path, "SELECT failures FROM users") == 0);
    }
    const std::string bad = "sqlite:" + (dir / "x.db").string() + "?synchronous=off";
    CHECK_THROWS_MATCHES(twostep::core::openStore(bad), StoreError,
                         Catch::Message("unknown sqlite: parameter 'synchronous=off' (want "
                                        "synchronous=full, normal or durable-state)"));
}

TEST_CASE("a database that disappears under the store fails every call until it is back",
          "[store]") {
    const TempDir dir;
    const auto data = dir / "data";
    std::filesystem::create_directory(data);
    const auto path = data / "twostep.db";
    SqliteStore store(path.string());
    REQUIRE(store.addUser(newUser("alice"), T0, false));
    REQUIRE(store.acceptStep("alice", 10, UserState::Active, T0));

    // Without the check, the pooled connection would go on using the moved file.
    std::filesystem::rename(data, dir / "away");
    CHECK_THROWS_MATCHES(store.acceptStep("alice", 11, UserState::Active, T0), StoreError,
                         Catch::Message("cannot accept a time step for user 'alice' in database '" +
                                        path.string() +
                                        "': the database file was deleted or replaced while the "
                                        "webhook had it open; restore it, or restart the webhook"));
    CHECK_THROWS_AS(store.ping(), StoreError);
    CHECK_THROWS_AS(store.findUser("alice"), StoreError);
    CHECK_FALSE(std::filesystem::exists(data));  // no new, empty database in its place

    std::filesystem::rename(dir / "away", data);
    const auto alice = store.findUser("alice");
    REQUIRE(alice);
    CHECK(alice->lastStep == 10);
    CHECK_FALSE(store.acceptStep("alice", 10, UserState::Active, T0));  // still used
    CHECK(store.acceptStep("alice", 11, UserState::Active, T0));
}
