// The behaviour both stores share, run against each: every STORE_TEST runs once on a SQLite file
// (tagged [sqlite]) and once on a PostgreSQL database (tagged [postgres]; needs
// scripts/with-postgres.sh), each on a fresh database. What only one store has (SQLite's files,
// WAL and busy timeout; PostgreSQL's URLs, pool and TLS) is in SqliteStore_test.cpp and
// PostgresStore_test.cpp.
#include "core/Store.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <barrier>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <catch2/catch.hpp>
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "core/Error.hpp"
#include "core/RecoveryCodes.hpp"
#include "support/StoreBackends.hpp"
#include "support/TestUsers.hpp"

using twostep::StoreError;
using twostep::core::AuditEvent;
using twostep::core::AuditFilter;
using twostep::core::FailureOutcome;
using twostep::core::LockoutPolicy;
using twostep::core::NewUser;
using twostep::core::Seconds;
using twostep::core::Store;
using twostep::core::User;
using twostep::core::UserState;
using twostep::test::newUser;
using twostep::test::StoreBackend;

namespace {

constexpr Seconds T0 = 1'700'000'000;

AuditEvent auditEvent(const std::string& user, Seconds time, const std::string& decision) {
    AuditEvent event;
    event.time = time;
    event.username = user;
    event.operation = "CREATE";
    event.resource = "apps/v1/deployments";
    event.subResource = "";
    event.nameSpace = "default";
    event.name = "demo";
    event.decision = decision;
    event.reason = decision == "allow" ? "accepted" : "wrong-code";
    event.uid = "uid-" + std::to_string(time);
    return event;
}

/// `count` stores on the same database, as separate processes would open it.
std::vector<std::unique_ptr<Store>> openStores(const StoreBackend& backend, int count) {
    std::vector<std::unique_ptr<Store>> stores;
    for (int i = 0; i < count; ++i) {
        stores.push_back(backend.open());
    }
    return stores;
}

/// Runs `attempt(store, round) -> bool` on `threads` threads for `rounds` rounds, the threads
/// spread over `stores`. Every round starts on all threads together (a barrier), so the calls
/// really race. Requires that nothing threw; returns how many calls returned true in each round.
template <typename Attempt>
std::vector<int> raceRounds(const std::vector<std::unique_ptr<Store>>& stores, int threads,
                            int rounds, Attempt attempt) {
    std::barrier sync(threads);
    std::vector<std::atomic<int>> winners(static_cast<std::size_t>(rounds));
    std::vector<std::string> errors(static_cast<std::size_t>(threads));
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            Store& store = *stores[static_cast<std::size_t>(t) % stores.size()];
            for (int round = 0; round < rounds; ++round) {
                sync.arrive_and_wait();
                try {
                    if (attempt(store, round)) {
                        ++winners[static_cast<std::size_t>(round)];
                    }
                } catch (const std::exception& e) {
                    errors[static_cast<std::size_t>(t)] = e.what();
                }
            }
        });
    }
    for (std::thread& worker : workers) {
        worker.join();
    }
    for (const std::string& error : errors) {
        REQUIRE(error.empty());
    }
    return {winners.begin(), winners.end()};
}

/// raceRounds on 16 threads; requires that exactly one call won each round.
template <typename Attempt>
void requireOneWinnerPerRound(const std::vector<std::unique_ptr<Store>>& stores, int rounds,
                              Attempt attempt) {
    const std::vector<int> winners = raceRounds(stores, 16, rounds, attempt);
    for (int round = 0; round < rounds; ++round) {
        CAPTURE(round);
        REQUIRE(winners[static_cast<std::size_t>(round)] == 1);
    }
}

}  // namespace

STORE_TEST("a new database records every migration once", "[store][migrations]") {
    const int newest = backend.newestMigration();
    const auto store = backend.open();
    CHECK(backend.queryInt("SELECT COUNT(*) FROM schema_version") == newest);
    CHECK(backend.queryInt("SELECT MAX(version) FROM schema_version") == newest);
    CHECK(backend.queryInt("SELECT COUNT(*) FROM schema_version WHERE version = 1 AND name = "
                           "'init' AND applied_at > 1600000000") == 1);
    const auto appliedAt =
        backend.queryInt("SELECT applied_at FROM schema_version WHERE version = 1");

    // Opening it again (another process, a restart) applies nothing again.
    const auto again = backend.open();
    CHECK(backend.queryInt("SELECT COUNT(*) FROM schema_version") == newest);
    CHECK(backend.queryInt("SELECT applied_at FROM schema_version WHERE version = 1") == appliedAt);
    CHECK(backend.queryInt("SELECT COUNT(*) FROM users") == 0);
    CHECK_NOTHROW(again->ping());
}

STORE_TEST("a database with a newer schema is refused", "[store][migrations]") {
    backend.open();
    backend.exec("INSERT INTO schema_version (version, name, applied_at) VALUES (99, 'future', 0)");
    CHECK_THROWS_MATCHES(
        backend.open(), StoreError,
        Catch::Message("database schema version 99 is newer than this binary "
                       "supports (" +
                       std::to_string(backend.newestMigration()) + "); upgrade twostep"));
}

STORE_TEST("a stored user with an unknown algorithm is an error, not a default", "[store][users]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    backend.exec("UPDATE users SET algorithm = 'MD5'");
    CHECK_THROWS_MATCHES(
        store->findUser("alice"), StoreError,
        Catch::Message("user 'alice' has an unknown algorithm 'MD5' in the database"));
}

STORE_TEST("an invalid user is refused with a StoreError naming the user", "[store][users]") {
    const auto store = backend.open();
    NewUser bad = newUser("alice");
    bad.params.digits = 7;  // the schema's CHECK constraint, whatever the caller validated
    CHECK_THROWS_WITH(
        store->addUser(bad, T0, false),
        Catch::StartsWith("cannot add user 'alice' in database '" + backend.description() + "': "));
    CHECK_FALSE(store->findUser("alice"));
}

STORE_TEST("removing a user drops its recovery codes", "[store][users][recovery]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->addUser(newUser("bob"), T0, false));
    REQUIRE(store->replaceRecoveryCodes("alice", {"aa$11", "bb$22"}, T0));
    REQUIRE(store->replaceRecoveryCodes("bob", {"cc$33"}, T0));
    CHECK(backend.queryInt("SELECT COUNT(*) FROM recovery_codes") == 3);
    REQUIRE(store->removeUser("alice"));
    CHECK(backend.queryInt("SELECT COUNT(*) FROM recovery_codes") == 1);
    // Re-adding the name starts without the old codes.
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    CHECK(store->findUser("alice")->recoveryCodesLeft == 0);
}

STORE_TEST("usernames are compared and ordered byte by byte", "[store][users]") {
    const auto store = backend.open();
    for (const std::string name : {"b", "B", "a", "\xc3\xa9tienne", "Z", "system:admin", "alice"}) {
        REQUIRE(store->addUser(newUser(name), T0, false));
    }
    std::vector<std::string> names;
    for (const User& user : store->listUsers()) {
        names.push_back(user.username);
    }
    CHECK(names ==
          std::vector<std::string>{"B", "Z", "a", "alice", "b", "system:admin", "\xc3\xa9tienne"});
    CHECK(store->findUser("\xc3\xa9tienne"));
    CHECK_FALSE(store->findUser("etienne"));
    CHECK_FALSE(store->findUser("ALICE"));
}

STORE_TEST("users are added, found, listed and replaced", "[store][users]") {
    const auto store = backend.open();
    CHECK_FALSE(store->findUser("alice"));
    CHECK(store->listUsers().empty());

    REQUIRE(store->addUser(newUser("bob", UserState::Pending), T0, false));
    REQUIRE(store->addUser(newUser("alice"), T0 + 1, false));
    CHECK_FALSE(store->addUser(newUser("alice", UserState::Disabled), T0 + 2, false));

    const auto alice = store->findUser("alice");
    REQUIRE(alice);
    CHECK(alice->username == "alice");
    CHECK(alice->sealedSecret == newUser("alice").sealedSecret);  // binary, with a NUL byte
    CHECK(alice->sealedSecret.size() == 22);
    CHECK(alice->issuer == "twostep");
    CHECK(alice->params.algorithm == twostep::core::Algorithm::Sha256);
    CHECK(alice->params.digits == 8);
    CHECK(alice->params.period == 60);
    CHECK(alice->state == UserState::Active);
    CHECK_FALSE(alice->lastStep);
    CHECK(alice->failures == 0);
    CHECK(alice->lockouts == 0);
    CHECK_FALSE(alice->lockedUntil);
    CHECK_FALSE(alice->grantUntil);
    CHECK(alice->recoveryCodesLeft == 0);
    CHECK(alice->createdAt == T0 + 1);
    CHECK(alice->updatedAt == T0 + 1);
    CHECK_FALSE(store->findUser("Alice"));  // usernames are case-sensitive, as in Kubernetes

    const auto users = store->listUsers();
    REQUIRE(users.size() == 2);
    CHECK(users[0].username == "alice");
    CHECK(users[1].username == "bob");
    CHECK(users[1].state == UserState::Pending);

    // Replacing starts over: no replay step, failures, lock, grant or recovery codes.
    REQUIRE(store->acceptStep("alice", 100, UserState::Active, T0 + 3));
    REQUIRE(store->openGrant("alice", T0 + 600, T0 + 3));
    REQUIRE(store->replaceRecoveryCodes("alice", {"aa$11"}, T0 + 3));
    store->recordFailure("alice", LockoutPolicy{}, T0 + 4);
    NewUser replacement = newUser("alice", UserState::Pending);
    replacement.sealedSecret = "new sealed";
    replacement.params.digits = 6;
    REQUIRE(store->addUser(replacement, T0 + 5, true));
    const auto replaced = store->findUser("alice");
    REQUIRE(replaced);
    CHECK(replaced->sealedSecret == "new sealed");
    CHECK(replaced->params.digits == 6);
    CHECK(replaced->state == UserState::Pending);
    CHECK_FALSE(replaced->lastStep);
    CHECK(replaced->failures == 0);
    CHECK_FALSE(replaced->grantUntil);
    CHECK(replaced->recoveryCodesLeft == 0);
    CHECK(replaced->createdAt == T0 + 5);
    // Replacing a user that does not exist simply adds it.
    CHECK(store->addUser(newUser("carol"), T0, true));
    CHECK(store->findUser("carol"));
}

STORE_TEST("importUsers is all or nothing", "[store][users]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("carol"), T0, false));

    SECTION("a clash with an existing user names it and imports nothing") {
        CHECK_THROWS_MATCHES(
            store->importUsers(
                {newUser("alice"), newUser("bob"), newUser("carol"), newUser("dave")}, T0),
            StoreError,
            Catch::Message("cannot import users: user 'carol' already exists; nothing was "
                           "imported"));
        CHECK(store->listUsers().size() == 1);
        CHECK_FALSE(store->findUser("alice"));
    }
    SECTION("a duplicate within the batch names it and imports nothing") {
        CHECK_THROWS_MATCHES(
            store->importUsers({newUser("alice"), newUser("bob"), newUser("alice")}, T0),
            StoreError,
            Catch::Message("cannot import users: user 'alice' already exists; nothing was "
                           "imported"));
        CHECK(store->listUsers().size() == 1);
    }
    SECTION("an invalid row rolls back the rows before it") {
        NewUser bad = newUser("bad");
        bad.params.digits = 7;
        CHECK_THROWS_AS(store->importUsers({newUser("alice"), bad}, T0), StoreError);
        CHECK(store->listUsers().size() == 1);
    }
    SECTION("a clean import adds every user") {
        store->importUsers({newUser("alice"), newUser("bob", UserState::Pending)}, T0 + 7);
        CHECK(store->listUsers().size() == 3);
        const auto bob = store->findUser("bob");
        REQUIRE(bob);
        CHECK(bob->state == UserState::Pending);
        CHECK(bob->createdAt == T0 + 7);
    }
}

STORE_TEST("removing a user", "[store][users]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    store->appendAudit(auditEvent("alice", T0, "allow"));
    CHECK(store->removeUser("alice"));
    CHECK_FALSE(store->findUser("alice"));
    CHECK_FALSE(store->removeUser("alice"));
    // The audit history of a removed user stays.
    AuditFilter filter;
    filter.username = "alice";
    CHECK(store->listAudit(filter).size() == 1);
}

STORE_TEST("setState changes the state and disabling ends the grant", "[store][users]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->openGrant("alice", T0 + 600, T0));

    CHECK(store->setState("alice", UserState::Active, T0 + 1));
    CHECK(store->findUser("alice")->grantUntil == T0 + 600);  // not disabling keeps the grant

    CHECK(store->setState("alice", UserState::Disabled, T0 + 2));
    auto alice = store->findUser("alice");
    CHECK(alice->state == UserState::Disabled);
    CHECK_FALSE(alice->grantUntil);
    CHECK(alice->updatedAt == T0 + 2);

    CHECK(store->setState("alice", UserState::Active, T0 + 3));
    CHECK(store->findUser("alice")->state == UserState::Active);
    CHECK_FALSE(store->setState("nobody", UserState::Disabled, T0));
}

STORE_TEST("resetSecret starts the user over as pending", "[store][users]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->acceptStep("alice", 100, UserState::Active, T0));
    REQUIRE(store->openGrant("alice", T0 + 600, T0));
    REQUIRE(store->replaceRecoveryCodes("alice", {"aa$11", "bb$22"}, T0));
    for (int i = 0; i < 5; ++i) {
        store->recordFailure("alice", LockoutPolicy{}, T0);
    }
    REQUIRE(store->findUser("alice")->lockedUntil);

    CHECK(store->resetSecret("alice", "fresh sealed", T0 + 10));
    const auto alice = store->findUser("alice");
    REQUIRE(alice);
    CHECK(alice->sealedSecret == "fresh sealed");
    CHECK(alice->state == UserState::Pending);
    CHECK_FALSE(alice->lastStep);
    CHECK(alice->failures == 0);
    CHECK(alice->lockouts == 0);
    CHECK_FALSE(alice->lockedUntil);
    CHECK_FALSE(alice->grantUntil);
    CHECK(alice->recoveryCodesLeft == 0);
    CHECK(alice->updatedAt == T0 + 10);
    CHECK_FALSE(store->resetSecret("nobody", "x", T0));
}

STORE_TEST("acceptStep accepts only a newer step in the required state", "[store][replay]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->addUser(newUser("pat", UserState::Pending), T0, false));

    CHECK(store->acceptStep("alice", 1000, UserState::Active, T0 + 1));
    CHECK(store->findUser("alice")->lastStep == 1000);
    CHECK(store->findUser("alice")->updatedAt == T0 + 1);
    CHECK_FALSE(store->acceptStep("alice", 1000, UserState::Active, T0 + 2));  // replay
    CHECK_FALSE(store->acceptStep("alice", 999, UserState::Active, T0 + 2));   // older
    CHECK(store->acceptStep("alice", 1001, UserState::Active, T0 + 3));
    CHECK(store->findUser("alice")->lastStep == 1001);

    CHECK_FALSE(store->acceptStep("alice", 2000, UserState::Pending, T0));  // wrong state
    CHECK_FALSE(store->acceptStep("pat", 2000, UserState::Active, T0));
    CHECK_FALSE(store->findUser("pat")->lastStep);
    REQUIRE(store->setState("alice", UserState::Disabled, T0));
    CHECK_FALSE(store->acceptStep("alice", 3000, UserState::Active, T0));
    CHECK(store->findUser("alice")->lastStep == 1001);
    CHECK_FALSE(store->acceptStep("nobody", 1, UserState::Active, T0));
}

STORE_TEST("acceptStep clears failures and the lockout streak", "[store][replay][lockout]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    for (int i = 0; i < 5; ++i) {
        store->recordFailure("alice", LockoutPolicy{}, T0);
    }
    // Two more after the lock has ended.
    store->recordFailure("alice", LockoutPolicy{}, T0 + 60);
    store->recordFailure("alice", LockoutPolicy{}, T0 + 60);
    auto before = store->findUser("alice");
    REQUIRE(before->failures == 2);
    REQUIRE(before->lockouts == 1);
    REQUIRE(before->lockedUntil);

    REQUIRE(store->acceptStep("alice", 5, UserState::Active, T0 + 100));
    const auto after = store->findUser("alice");
    CHECK(after->failures == 0);
    CHECK(after->lockouts == 0);
    CHECK_FALSE(after->lockedUntil);
}

STORE_TEST("confirmWithStep activates a pending user once", "[store][replay]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("pat", UserState::Pending), T0, false));
    REQUIRE(store->addUser(newUser("alice"), T0, false));

    CHECK(store->confirmWithStep("pat", 500, T0 + 1));
    const auto pat = store->findUser("pat");
    CHECK(pat->state == UserState::Active);
    CHECK(pat->lastStep == 500);
    CHECK(pat->updatedAt == T0 + 1);
    CHECK_FALSE(store->confirmWithStep("pat", 501, T0 + 2));  // already active
    CHECK_FALSE(store->confirmWithStep("alice", 1, T0));
    CHECK_FALSE(store->findUser("alice")->lastStep);
    CHECK_FALSE(store->confirmWithStep("nobody", 1, T0));

    // A pending user whose step was used (reset keeps nothing, so set it by hand) cannot reuse it.
    REQUIRE(store->addUser(newUser("quinn", UserState::Pending), T0, false));
    REQUIRE(store->acceptStep("quinn", 700, UserState::Pending, T0));
    CHECK_FALSE(store->confirmWithStep("quinn", 700, T0));
    CHECK(store->findUser("quinn")->state == UserState::Pending);
    CHECK(store->confirmWithStep("quinn", 701, T0));
}

STORE_TEST("failures lock a user out, the lock doubles and is capped", "[store][lockout]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    const LockoutPolicy policy{5, 60, 300};

    for (int i = 1; i <= 4; ++i) {
        const FailureOutcome outcome = store->recordFailure("alice", policy, T0 + i);
        CHECK(outcome.failures == i);
        CHECK_FALSE(outcome.lockedUntil);
    }
    CHECK_FALSE(store->findUser("alice")->isLocked(T0 + 5));
    CHECK(store->countLocked(T0 + 5) == 0);

    const std::vector<Seconds> expectedLocks = {60, 120, 240, 300, 300};
    Seconds now = T0 + 5;
    for (std::size_t lockout = 0; lockout < expectedLocks.size(); ++lockout) {
        CAPTURE(lockout);
        // The first lockout needs 4 more failures (4 were counted above), later ones 5 each.
        const int needed = lockout == 0 ? 1 : 5;
        FailureOutcome outcome;
        for (int i = 0; i < needed; ++i) {
            outcome = store->recordFailure("alice", policy, now);
        }
        REQUIRE(outcome.lockedUntil);
        CHECK(*outcome.lockedUntil == now + expectedLocks[lockout]);
        CHECK(outcome.failures == 0);
        const auto alice = store->findUser("alice");
        CHECK(alice->lockouts == static_cast<int>(lockout) + 1);
        CHECK(alice->failures == 0);
        CHECK(alice->lockedUntil == now + expectedLocks[lockout]);
        CHECK(alice->isLocked(now));
        CHECK(store->countLocked(now) == 1);
        CHECK(store->countLocked(now + expectedLocks[lockout]) == 0);
        now += expectedLocks[lockout];
    }

    // A failure that starts no lockout leaves the previous lock time alone.
    const auto lockedUntil = store->findUser("alice")->lockedUntil;
    CHECK(store->recordFailure("alice", policy, now).failures == 1);
    CHECK(store->findUser("alice")->lockedUntil == lockedUntil);

    CHECK(store->unlock("alice", now));
    const auto unlocked = store->findUser("alice");
    CHECK(unlocked->failures == 0);
    CHECK(unlocked->lockouts == 0);
    CHECK_FALSE(unlocked->lockedUntil);
    CHECK_FALSE(store->unlock("nobody", now));

    const FailureOutcome unknown = store->recordFailure("nobody", policy, now);
    CHECK(unknown.refused);
    CHECK(unknown.failures == 0);
    CHECK_FALSE(unknown.lockedUntil);
}

STORE_TEST("failures while locked out are refused and not counted", "[store][lockout]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    const LockoutPolicy policy{3, 60, 300};
    CHECK_FALSE(store->recordFailure("alice", policy, T0).refused);
    CHECK_FALSE(store->recordFailure("alice", policy, T0).refused);
    const FailureOutcome third = store->recordFailure("alice", policy, T0);
    CHECK_FALSE(third.refused);
    REQUIRE(third.lockedUntil == T0 + 60);

    for (const Seconds at : {T0, T0 + 30, T0 + 59}) {
        CAPTURE(at);
        const FailureOutcome refused = store->recordFailure("alice", policy, at);
        CHECK(refused.refused);
        CHECK(refused.lockedUntil == T0 + 60);
    }
    const auto alice = store->findUser("alice");
    CHECK(alice->failures == 0);
    CHECK(alice->lockouts == 1);
    CHECK(alice->lockedUntil == T0 + 60);

    const FailureOutcome after = store->recordFailure("alice", policy, T0 + 60);
    CHECK_FALSE(after.refused);
    CHECK(after.failures == 1);
}

STORE_TEST("while locked out, right codes and recovery codes are refused and stay unused",
           "[store][lockout][recovery]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    const std::string code = twostep::core::generateRecoveryCodes(1).front();
    REQUIRE(store->replaceRecoveryCodes("alice", {twostep::core::hashRecoveryCode(code)}, T0));
    const LockoutPolicy policy{1, 60, 300};
    REQUIRE(store->recordFailure("alice", policy, T0).lockedUntil == T0 + 60);

    CHECK_FALSE(store->acceptStep("alice", 10, UserState::Active, T0 + 59));
    CHECK_FALSE(store->consumeRecoveryCode("alice", code, T0 + 59));
    auto alice = store->findUser("alice");
    CHECK_FALSE(alice->lastStep);
    CHECK(alice->recoveryCodesLeft == 1);
    CHECK(alice->lockedUntil == T0 + 60);

    // When the lock ends both work again, and clear the streak.
    REQUIRE(store->recordFailure("alice", LockoutPolicy{5, 60, 300}, T0 + 60).failures == 1);
    CHECK(store->consumeRecoveryCode("alice", code, T0 + 60));
    alice = store->findUser("alice");
    CHECK(alice->failures == 0);
    CHECK(alice->lockouts == 0);
    CHECK(alice->recoveryCodesLeft == 0);
    REQUIRE(store->recordFailure("alice", policy, T0 + 60).lockedUntil == T0 + 120);
    CHECK(store->acceptStep("alice", 10, UserState::Active, T0 + 120));
    CHECK(store->findUser("alice")->lastStep == 10);
}

STORE_TEST("grants open, extend and end", "[store][grant]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));

    CHECK(store->openGrant("alice", T0 + 300, T0));
    CHECK(store->findUser("alice")->hasGrant(T0 + 299));
    CHECK_FALSE(store->findUser("alice")->hasGrant(T0 + 300));
    CHECK(store->openGrant("alice", T0 + 900, T0 + 10));
    CHECK(store->findUser("alice")->grantUntil == T0 + 900);
    CHECK(store->openGrant("alice", T0 + 400, T0 + 20));  // never shortens
    CHECK(store->findUser("alice")->grantUntil == T0 + 900);

    CHECK(store->revokeGrant("alice", T0 + 30));
    CHECK_FALSE(store->findUser("alice")->grantUntil);
    CHECK(store->openGrant("alice", T0 + 60, T0 + 40));  // a new grant after a revoke
    CHECK(store->findUser("alice")->grantUntil == T0 + 60);

    CHECK_FALSE(store->openGrant("nobody", T0 + 300, T0));
    CHECK_FALSE(store->revokeGrant("nobody", T0));
}

STORE_TEST("recovery codes are replaced and each is used once", "[store][recovery]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->addUser(newUser("bob"), T0, false));

    const auto codes = twostep::core::generateRecoveryCodes(3);
    std::vector<std::string> hashes;
    for (const std::string& code : codes) {
        hashes.push_back(twostep::core::hashRecoveryCode(code));
    }
    CHECK(store->replaceRecoveryCodes("alice", hashes, T0));
    CHECK(store->findUser("alice")->recoveryCodesLeft == 3);
    CHECK_FALSE(store->replaceRecoveryCodes("nobody", hashes, T0));

    store->recordFailure("alice", LockoutPolicy{}, T0);
    CHECK_FALSE(store->consumeRecoveryCode("bob", codes[1], T0));  // another user's code
    CHECK_FALSE(store->consumeRecoveryCode("nobody", codes[1], T0));
    CHECK_FALSE(store->consumeRecoveryCode("alice", "aaaa-bbbb-cccc-dddd", T0));
    CHECK(store->consumeRecoveryCode("alice", codes[1], T0 + 1));
    const auto alice = store->findUser("alice");
    CHECK(alice->recoveryCodesLeft == 2);
    CHECK(alice->failures == 0);
    CHECK_FALSE(store->consumeRecoveryCode("alice", codes[1], T0 + 2));  // single use
    CHECK(store->consumeRecoveryCode("alice", codes[0], T0 + 3));
    CHECK(store->consumeRecoveryCode("alice", codes[2], T0 + 4));
    CHECK(store->findUser("alice")->recoveryCodesLeft == 0);

    // Replacing drops the old set.
    CHECK(store->replaceRecoveryCodes("alice", {twostep::core::hashRecoveryCode(codes[0])}, T0));
    CHECK(store->replaceRecoveryCodes("alice", {}, T0));
    CHECK(store->findUser("alice")->recoveryCodesLeft == 0);
    CHECK_FALSE(store->consumeRecoveryCode("alice", codes[0], T0));
}

STORE_TEST("the audit log is appended and listed newest first with filters", "[store][audit]") {
    const auto store = backend.open();
    CHECK(store->listAudit({}).empty());
    store->appendAudit(auditEvent("alice", T0 + 10, "allow"));
    store->appendAudit(auditEvent("bob", T0 + 20, "deny"));
    store->appendAudit(auditEvent("alice", T0 + 30, "deny"));
    store->appendAudit(auditEvent("alice", T0 + 30, "allow"));  // same second: id breaks the tie
    store->appendAudit(auditEvent("carol", T0 + 40, "allow"));

    const auto all = store->listAudit({});
    REQUIRE(all.size() == 5);
    CHECK(all[0].username == "carol");
    CHECK(all[1].time == T0 + 30);
    CHECK(all[1].decision == "allow");
    CHECK(all[2].decision == "deny");
    CHECK(all[1].id > all[2].id);
    CHECK(all[4].username == "alice");
    CHECK(all[4].operation == "CREATE");
    CHECK(all[4].resource == "apps/v1/deployments");
    CHECK(all[4].subResource.empty());
    CHECK(all[4].nameSpace == "default");
    CHECK(all[4].name == "demo");
    CHECK(all[4].reason == "accepted");
    CHECK(all[4].uid == "uid-" + std::to_string(T0 + 10));

    AuditFilter byUser;
    byUser.username = "alice";
    const auto alice = store->listAudit(byUser);
    REQUIRE(alice.size() == 3);
    CHECK(alice[0].time == T0 + 30);
    CHECK(alice[2].time == T0 + 10);

    AuditFilter window;
    window.since = T0 + 20;
    window.until = T0 + 40;  // until is exclusive
    const auto inWindow = store->listAudit(window);
    REQUIRE(inWindow.size() == 3);
    CHECK(inWindow.front().time == T0 + 30);
    CHECK(inWindow.back().username == "bob");

    AuditFilter combined = window;
    combined.username = "alice";
    combined.limit = 1;
    const auto newest = store->listAudit(combined);
    REQUIRE(newest.size() == 1);
    CHECK(newest[0].decision == "allow");
    CHECK(newest[0].time == T0 + 30);

    AuditFilter none;
    none.limit = 0;
    CHECK(store->listAudit(none).empty());
    AuditFilter nobody;
    nobody.username = "nobody";
    CHECK(store->listAudit(nobody).empty());
}

STORE_TEST("resealAll reseals every secret and records the key, or changes nothing",
           "[store][reseal]") {
    const auto store = backend.open();
    CHECK_FALSE(store->keyFingerprint());
    store->setKeyFingerprintIfUnset("old-key");
    store->setKeyFingerprintIfUnset("ignored");
    CHECK(store->keyFingerprint() == "old-key");
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->addUser(newUser("bob"), T0, false));
    REQUIRE(store->addUser(newUser("carol"), T0, false));

    SECTION("a throwing callback midway leaves every row and the key as they were") {
        int calls = 0;
        CHECK_THROWS_MATCHES(store->resealAll(
                                 [&](const std::string& username, const std::string&) {
                                     if (++calls == 2) {
                                         throw twostep::KeyError(
                                             "cannot open the secret of user '" + username + "'");
                                     }
                                     return std::string("resealed");
                                 },
                                 "new-key"),
                             twostep::KeyError,
                             Catch::Message("cannot open the secret of user 'bob'"));
        CHECK(calls == 2);
        for (const User& user : store->listUsers()) {
            CHECK(user.sealedSecret == newUser(user.username).sealedSecret);
        }
        CHECK(store->keyFingerprint() == "old-key");
    }
    SECTION("a clean run reseals all and records the new key") {
        store->resealAll(
            [](const std::string& username, const std::string& sealed) {
                CHECK(sealed == newUser(username).sealedSecret);
                return "resealed for " + username;
            },
            "new-key");
        for (const User& user : store->listUsers()) {
            CHECK(user.sealedSecret == "resealed for " + user.username);
        }
        CHECK(store->keyFingerprint() == "new-key");
    }
}

STORE_TEST("users are counted by state, and ping answers", "[store]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("a"), T0, false));
    REQUIRE(store->addUser(newUser("b"), T0, false));
    REQUIRE(store->addUser(newUser("c", UserState::Pending), T0, false));
    REQUIRE(store->addUser(newUser("d", UserState::Disabled), T0, false));
    CHECK(store->countUsers(UserState::Active) == 2);
    CHECK(store->countUsers(UserState::Pending) == 1);
    CHECK(store->countUsers(UserState::Disabled) == 1);
    CHECK_NOTHROW(store->ping());
}

STORE_TEST("a username with a NUL byte is never taken for the name before it", "[store][users]") {
    // JSON allows \u0000 in a username; the name must not be cut at it (PostgreSQL's text
    // parameters are C strings), or "alice\0x" would use alice's grant or burn her failures.
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->openGrant("alice", T0 + 600, T0));
    const std::string evil("alice\0x", 7);
    CHECK_FALSE(store->findUser(evil));
    CHECK_FALSE(store->acceptStep(evil, 10, UserState::Active, T0));
    CHECK_FALSE(store->confirmWithStep(evil, 10, T0));
    CHECK_FALSE(store->recordFailure(evil, LockoutPolicy{1, 60, 60}, T0).lockedUntil);
    CHECK_FALSE(store->setState(evil, UserState::Disabled, T0));
    CHECK_FALSE(store->openGrant(evil, T0 + 900, T0));
    CHECK_FALSE(store->revokeGrant(evil, T0));
    CHECK_FALSE(store->unlock(evil, T0));
    CHECK_FALSE(store->resetSecret(evil, "other", T0));
    CHECK_FALSE(store->replaceRecoveryCodes(evil, {"aa$11"}, T0));
    CHECK_FALSE(store->consumeRecoveryCode(evil, "k7qm-2xvd-9fhw-c3tp", T0));
    CHECK_FALSE(store->removeUser(evil));
    AuditFilter filter;
    filter.username = evil;
    CHECK(store->listAudit(filter).empty());

    const auto alice = store->findUser("alice");
    REQUIRE(alice);
    CHECK(alice->state == UserState::Active);
    CHECK(alice->grantUntil == T0 + 600);
    CHECK_FALSE(alice->lastStep);
    CHECK(alice->failures == 0);
    CHECK_FALSE(alice->lockedUntil);
    CHECK(alice->sealedSecret == newUser("alice").sealedSecret);
}

STORE_TEST("two stores on one database see each other's writes", "[store][concurrency]") {
    const auto webhook = backend.open();
    const auto enroll = backend.open();

    REQUIRE(enroll->addUser(newUser("alice"), T0, false));
    REQUIRE(webhook->findUser("alice"));
    REQUIRE(webhook->acceptStep("alice", 10, UserState::Active, T0));
    CHECK(enroll->findUser("alice")->lastStep == 10);
    CHECK_FALSE(enroll->acceptStep("alice", 10, UserState::Active, T0));
    REQUIRE(enroll->setState("alice", UserState::Disabled, T0));
    CHECK_FALSE(webhook->acceptStep("alice", 11, UserState::Active, T0));
    CHECK(webhook->findUser("alice")->state == UserState::Disabled);
}

STORE_TEST("threads racing to accept the same step: exactly one wins each round",
           "[store][concurrency]") {
    constexpr int Rounds = 200;
    // One store: its threads share the store's pool (and SQLite's writer mutex). Two stores on
    // the same database: only the database stands between them, as between processes.
    const int storeCount = GENERATE(1, 2);
    CAPTURE(storeCount);
    const auto stores = openStores(backend, storeCount);
    REQUIRE(stores.front()->addUser(newUser("alice"), T0, false));

    requireOneWinnerPerRound(stores, Rounds, [](Store& store, int round) {
        return store.acceptStep("alice", 1000 + round, UserState::Active, T0);
    });
    CHECK(stores.back()->findUser("alice")->lastStep == 1000 + Rounds - 1);
}

STORE_TEST("threads racing to confirm a pending user: exactly one wins", "[store][concurrency]") {
    constexpr int Rounds = 50;
    const auto stores = openStores(backend, 2);
    for (int round = 0; round < Rounds; ++round) {
        REQUIRE(stores.front()->addUser(newUser("pat" + std::to_string(round), UserState::Pending),
                                        T0, false));
    }
    requireOneWinnerPerRound(stores, Rounds, [](Store& store, int round) {
        return store.confirmWithStep("pat" + std::to_string(round), 500, T0);
    });
    CHECK(stores.back()->countUsers(UserState::Active) == Rounds);
}

STORE_TEST("threads racing to use the same recovery code: exactly one wins each round",
           "[store][concurrency][recovery]") {
    constexpr int Rounds = 200;
    const int storeCount = GENERATE(1, 2);
    CAPTURE(storeCount);
    const auto stores = openStores(backend, storeCount);
    REQUIRE(stores.front()->addUser(newUser("alice"), T0, false));
    const auto codes = twostep::core::generateRecoveryCodes(Rounds);
    std::vector<std::string> hashes;
    for (const std::string& code : codes) {
        hashes.push_back(twostep::core::hashRecoveryCode(code));
    }
    REQUIRE(stores.front()->replaceRecoveryCodes("alice", hashes, T0));

    requireOneWinnerPerRound(stores, Rounds, [&](Store& store, int round) {
        return store.consumeRecoveryCode("alice", codes[static_cast<std::size_t>(round)], T0);
    });
    CHECK(stores.back()->findUser("alice")->recoveryCodesLeft == 0);
}

STORE_TEST("concurrent failures are all counted and start one lockout", "[store][concurrency]") {
    const auto stores = openStores(backend, 2);
    REQUIRE(stores.front()->addUser(newUser("alice"), T0, false));
    const LockoutPolicy policy{16, 60, 3600};
    // 16 threads, one failure each per round: the 16th failure of the streak starts the lock.
    // Each round comes after the previous round's lock has ended.
    constexpr int Rounds = 5;
    requireOneWinnerPerRound(stores, Rounds, [&](Store& store, int round) {
        return store.recordFailure("alice", policy, T0 + round * 3600).lockedUntil.has_value();
    });
    const auto alice = stores.back()->findUser("alice");
    CHECK(alice->lockouts == Rounds);
    CHECK(alice->failures == 0);
}

STORE_TEST("of many failures at once, only the policy's number are counted",
           "[store][concurrency][lockout]") {
    // The brute-force bound: 32 guesses arriving together, across two stores (two replicas),
    // must not get more than maxFailures of them answered "wrong" before the lock.
    const auto stores = openStores(backend, 2);
    REQUIRE(stores.front()->addUser(newUser("alice"), T0, false));
    const LockoutPolicy policy{5, 60, 3600};
    std::atomic<int> locksStarted{0};
    const std::vector<int> counted = raceRounds(stores, 32, 1, [&](Store& store, int) {
        const FailureOutcome outcome = store.recordFailure("alice", policy, T0);
        if (!outcome.refused && outcome.lockedUntil) {
            ++locksStarted;
        }
        return !outcome.refused;
    });
    CHECK(counted.front() == policy.maxFailures);
    CHECK(locksStarted == 1);
    CHECK(stores.back()->findUser("alice")->lockouts == 1);
}

namespace {

/// A pipe whose ends close on destruction.
struct Pipe {
    int fds[2] = {-1, -1};
    Pipe() {
        if (::pipe(fds) != 0) {
            throw std::runtime_error("pipe failed");
        }
    }
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    ~Pipe() {
        closeRead();
        closeWrite();
    }
    int readEnd() const { return fds[0]; }
    int writeEnd() const { return fds[1]; }
    void closeRead() {
        if (fds[0] >= 0) {
            ::close(fds[0]);
            fds[0] = -1;
        }
    }
    void closeWrite() {
        if (fds[1] >= 0) {
            ::close(fds[1]);
            fds[1] = -1;
        }
    }
};

bool writeAll(int fd, const char* data, std::size_t size) {
    while (size > 0) {
        const ssize_t n = ::write(fd, data, size);
        if (n <= 0) {
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

/// Reads exactly `size` bytes, giving up after 30 s of silence (so a stuck peer fails the test).
bool readAll(int fd, char* data, std::size_t size) {
    while (size > 0) {
        pollfd waiting{fd, POLLIN, 0};
        if (::poll(&waiting, 1, 30'000) != 1) {
            return false;
        }
        const ssize_t n = ::read(fd, data, size);
        if (n <= 0) {
            return false;
        }
        data += n;
        size -= static_cast<std::size_t>(n);
    }
    return true;
}

/// A forked child that is killed and reaped if the test ends early.
class Child {
public:
    explicit Child(pid_t pid) : pid_(pid) {}
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;
    ~Child() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, nullptr, 0);
        }
    }
    /// The exit status, or -1 when it did not exit normally.
    int wait() {
        int status = 0;
        const pid_t done = ::waitpid(pid_, &status, 0);
        pid_ = -1;
        return done > 0 && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    }

private:
    pid_t pid_;
};

}  // namespace

STORE_TEST("two processes racing on one database: exactly one wins each round",
           "[store][concurrency]") {
    constexpr int Rounds = 200;
    const std::string url = backend.url();
    Pipe toChild;
    Pipe toParent;

    const pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
        // The child: its own store (no connection crosses the fork), no Catch2, and _exit so no
        // destructor of the parent's objects (the temp dir, the test database!) runs here.
        toChild.closeWrite();
        toParent.closeRead();
        int status = 1;
        try {
            // Opened together with the parent: both try to migrate the new database.
            const auto store = twostep::core::openStore(url);
            char byte = 'r';
            std::string won(Rounds, '0');
            if (writeAll(toParent.writeEnd(), &byte, 1) && readAll(toChild.readEnd(), &byte, 1)) {
                bool synced = true;
                for (int round = 0; round < Rounds && synced; ++round) {
                    synced = writeAll(toParent.writeEnd(), &byte, 1) &&
                             readAll(toChild.readEnd(), &byte, 1);
                    if (synced && store->acceptStep("alice", 1000 + round, UserState::Active, T0)) {
                        won[static_cast<std::size_t>(round)] = '1';
                    }
                }
                if (synced && writeAll(toParent.writeEnd(), won.data(), won.size())) {
                    status = 0;
                }
            }
        } catch (...) {
            status = 2;
        }
        ::_exit(status);
    }

    Child child(pid);
    toChild.closeRead();
    toParent.closeWrite();
    const auto store = twostep::core::openStore(url);
    char byte = 'p';
    REQUIRE(readAll(toParent.readEnd(), &byte, 1));  // the child has opened the store
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(writeAll(toChild.writeEnd(), &byte, 1));

    std::string won(Rounds, '0');
    for (int round = 0; round < Rounds; ++round) {
        // A two-way handshake per round, so both processes call acceptStep at about the same time.
        REQUIRE(writeAll(toChild.writeEnd(), &byte, 1));
        REQUIRE(readAll(toParent.readEnd(), &byte, 1));
        if (store->acceptStep("alice", 1000 + round, UserState::Active, T0)) {
            won[static_cast<std::size_t>(round)] = '1';
        }
    }
    std::string childWon(Rounds, '?');
    REQUIRE(readAll(toParent.readEnd(), childWon.data(), childWon.size()));
    REQUIRE(child.wait() == 0);

    for (int round = 0; round < Rounds; ++round) {
        CAPTURE(round);
        const bool parent = won[static_cast<std::size_t>(round)] == '1';
        const bool other = childWon[static_cast<std::size_t>(round)] == '1';
        REQUIRE(parent != other);
    }
    // Both processes opened the new database at once; the schema was still applied exactly once.
    CHECK(backend.queryInt("SELECT COUNT(*) FROM schema_version") == backend.newestMigration());
    CHECK(store->findUser("alice")->lastStep == 1000 + Rounds - 1);
}

STORE_TEST("eight processes opening a new database at once all succeed", "[store][concurrency]") {
    // Replicas and the enroll tool may start together on an empty volume. On SQLite, switching a
    // new file to WAL from two connections makes SQLite refuse one at once (SQLITE_BUSY without
    // the busy handler); the store must wait its turn instead of failing to start.
    constexpr int Processes = 8;
    const std::string url = backend.url();
    Pipe go;
    std::vector<std::unique_ptr<Child>> children;
    for (int i = 0; i < Processes; ++i) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            go.closeWrite();
            int status = 1;
            try {
                char byte = 0;
                // Every child blocks here until the parent closes the pipe: they open together.
                if (::read(go.readEnd(), &byte, 1) == 0) {
                    status = twostep::core::openStore(url)->findUser("nobody") ? 3 : 0;
                }
            } catch (...) {
                status = 2;
            }
            ::_exit(status);
        }
        children.push_back(std::make_unique<Child>(pid));
    }
    go.closeRead();
    go.closeWrite();
    for (std::size_t i = 0; i < children.size(); ++i) {
        CAPTURE(i);
        CHECK(children[i]->wait() == 0);
    }
    CHECK(backend.queryInt("SELECT COUNT(*) FROM schema_version") == backend.newestMigration());
}

namespace {

using twostep::core::Change;
using twostep::core::ChangeOutcome;
using twostep::core::CommitError;
using twostep::core::Verdict;

/// Records the store's group commits, and lets a test wait until changes have queued up.
class BatchRecorder final : public twostep::core::CommitObserver {
public:
    struct Batch {
        std::size_t changes;
        bool committed;
    };

    void changeQueued(std::size_t queued) noexcept override {
        const std::lock_guard lock(mutex_);
        mostQueued_ = std::max(mostQueued_, queued);
        changed_.notify_all();
    }
    void batchDone(std::size_t changes, std::size_t, bool committed) noexcept override {
        const std::lock_guard lock(mutex_);
        batches_.push_back(Batch{changes, committed});
    }
    /// Waits (30 s at most) until `count` changes have waited for the writer at once.
    bool awaitQueued(std::size_t count) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, std::chrono::seconds(30),
                                 [&] { return mostQueued_ >= count; });
    }
    std::vector<Batch> batches() {
        const std::lock_guard lock(mutex_);
        return batches_;
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::size_t mostQueued_ = 0;
    std::vector<Batch> batches_;
};

/// A verified code's change for `user`: the claim of `step` with its audit row (uid `uid`), and
/// the verdict "allow verified" or, when the claim is refused, "deny replayed".
Change claimWithAudit(const std::string& user, std::int64_t step, const std::string& uid) {
    Change change;
    change.kind = Change::Kind::AcceptStep;
    change.username = user;
    change.step = step;
    change.now = T0;
    change.audit = auditEvent(user, T0, "");
    change.audit->uid = uid;
    return change;
}

std::optional<Verdict> verdictOf(const ChangeOutcome& outcome) {
    return outcome.applied ? Verdict{true, "verified"} : Verdict{false, "replayed"};
}

/// Commits a claim for "holder" whose verdict waits until `followers` other changes have queued
/// behind it, then the followers' changes (each on its own thread, started while the holder's
/// transaction is open), and returns what each follower got: "applied", "refused", or the
/// CommitError's message.
std::vector<std::string> commitBehindHolder(Store& store, BatchRecorder& recorder,
                                            const std::vector<Change>& followers) {
    std::atomic<bool> holderQueuedAll{false};
    std::atomic<bool> holding{false};
    std::thread holder([&] {
        store.commit(claimWithAudit("holder", 1, "uid-holder"), [&](const ChangeOutcome& outcome) {
            // Inside the holder's transaction: the followers queue up meanwhile.
            holding = true;
            holderQueuedAll = recorder.awaitQueued(followers.size());
            return verdictOf(outcome);
        });
    });
    while (!holding) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    std::vector<std::string> results(followers.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < followers.size(); ++i) {
        threads.emplace_back([&, i] {
            try {
                results[i] = store.commit(followers[i], &verdictOf).applied ? "applied" : "refused";
            } catch (const CommitError& e) {
                results[i] = e.what();
            }
        });
    }
    holder.join();
    for (std::thread& thread : threads) {
        thread.join();
    }
    REQUIRE(holderQueuedAll);
    return results;
}

}  // namespace

STORE_TEST("changes that arrive during a commit are committed together in the next batch",
           "[store][groupcommit]") {
    const auto store = backend.open();
    BatchRecorder recorder;
    store->setCommitObserver(&recorder);
    constexpr int Followers = 12;
    REQUIRE(store->addUser(newUser("holder"), T0, false));
    std::vector<Change> followers;
    for (int i = 0; i < Followers; ++i) {
        const std::string user = "user" + std::to_string(i);
        REQUIRE(store->addUser(newUser(user), T0, false));
        followers.push_back(claimWithAudit(user, 100, "uid-" + user));
    }
    // Two claims of one step by one user in the same batch: exactly one applies.
    followers.push_back(claimWithAudit("user0", 100, "uid-user0-again"));

    const std::vector<std::string> results = commitBehindHolder(*store, recorder, followers);
    CHECK(std::count(results.begin(), results.end(), "applied") == Followers);
    CHECK(std::count(results.begin(), results.end(), "refused") == 1);
    const auto batches = recorder.batches();
    REQUIRE(batches.size() == 2);
    CHECK(batches[0].changes == 1);
    CHECK(batches[1].changes == followers.size());
    CHECK(batches[0].committed);
    CHECK(batches[1].committed);
    store->setCommitObserver(nullptr);

    // Each audit row says what its own change did, committed with it.
    for (int i = 0; i < Followers; ++i) {
        CHECK(store->findUser("user" + std::to_string(i))->lastStep == 100);
    }
    CHECK(backend.queryInt("SELECT COUNT(*) FROM audit_events WHERE decision = 'allow' AND "
                           "reason = 'verified'") == Followers + 1);
    CHECK(backend.queryInt("SELECT COUNT(*) FROM audit_events WHERE decision = 'deny' AND "
                           "reason = 'replayed' AND username = 'user0'") == 1);
}

STORE_TEST("a batch whose commit fails refuses every member and records none of it",
           "[store][groupcommit]") {
    const auto store = backend.open();
    BatchRecorder recorder;
    store->setCommitObserver(&recorder);
    // An audit row with uid "poison" makes the COMMIT itself fail: a constraint checked only
    // when the transaction commits (a deferred foreign key in SQLite, a deferred constraint
    // trigger in PostgreSQL), as a disk that fills up at the commit would.
    if (backend.name() == "sqlite") {
        backend.exec(
            "CREATE TABLE poison_target (id INTEGER PRIMARY KEY);"
            "CREATE TABLE poison (ref INTEGER REFERENCES poison_target (id) "
            "DEFERRABLE INITIALLY DEFERRED);"
            "CREATE TRIGGER poison_audit AFTER INSERT ON audit_events WHEN NEW.uid = 'poison' "
            "BEGIN INSERT INTO poison (ref) VALUES (1); END;");
    } else {
        backend.exec(
            "CREATE FUNCTION poison_check() RETURNS trigger LANGUAGE plpgsql AS "
            "$$ BEGIN RAISE EXCEPTION 'poisoned batch'; END $$;"
            "CREATE CONSTRAINT TRIGGER poison_audit AFTER INSERT ON audit_events "
            "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.uid = 'poison') "
            "EXECUTE FUNCTION poison_check();");
    }
    REQUIRE(store->addUser(newUser("holder"), T0, false));
    constexpr int Followers = 8;
    std::vector<Change> followers;
    for (int i = 0; i < Followers; ++i) {
        const std::string user = "user" + std::to_string(i);
        REQUIRE(store->addUser(newUser(user), T0, false));
        followers.push_back(claimWithAudit(user, 100, i == Followers / 2 ? "poison" : "uid-" + user));
    }
    Change failure;
    failure.kind = Change::Kind::RecordFailure;
    failure.username = "user1";
    failure.now = T0;
    failure.audit = auditEvent("user1", T0, "deny");
    followers.push_back(failure);

    const std::vector<std::string> results = commitBehindHolder(*store, recorder, followers);
    for (const std::string& result : results) {
        CHECK_THAT(result, Catch::StartsWith("cannot commit a batch of " +
                                             std::to_string(followers.size()) +
                                             " changes in database '" + backend.description() +
                                             "': "));
    }
    const auto batches = recorder.batches();
    REQUIRE(batches.size() == 2);
    CHECK(batches[0].committed);
    CHECK_FALSE(batches[1].committed);
    CHECK(batches[1].changes == followers.size());
    store->setCommitObserver(nullptr);

    // None of it happened: no step, no counted failure, no audit row but the holder's.
    for (int i = 0; i < Followers; ++i) {
        CHECK_FALSE(store->findUser("user" + std::to_string(i))->lastStep);
    }
    CHECK(store->findUser("user1")->failures == 0);
    CHECK(backend.queryInt("SELECT COUNT(*) FROM audit_events") == 1);
    CHECK(store->findUser("holder")->lastStep == 1);
    // The store goes on: the same claim, sent again without the poison, is accepted.
    CHECK(store->commit(claimWithAudit("user0", 100, "uid-retry"), &verdictOf).applied);
}
