// Self-enrolment in the store, run against both stores like Store_test.cpp: invitations, pending
// secrets (begin, replacement, expiry, failures), completing an enrolment atomically, and the
// per-user clock drift.
#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <string>
#include <thread>
#include <vector>

#include "core/RecoveryCodes.hpp"
#include "core/Store.hpp"
#include "support/StoreBackends.hpp"
#include "support/TestUsers.hpp"

using twostep::core::FailureOutcome;
using twostep::core::Invitation;
using twostep::core::LockoutPolicy;
using twostep::core::PendingEnrollment;
using twostep::core::Seconds;
using twostep::core::Store;
using twostep::core::User;
using twostep::core::UserState;
using twostep::test::newUser;

namespace {

constexpr Seconds T0 = 1'700'000'000;
constexpr Seconds Day = 86'400;

Invitation invitation(const std::string& user, Seconds expiresAt) {
    return Invitation{user, "admin", T0, expiresAt};
}

/// A pending secret whose fields all differ from the defaults (the bytes hold a NUL).
PendingEnrollment pending(const std::string& user, const std::string& tag, bool invited,
                          Seconds expiresAt = 0) {
    PendingEnrollment p;
    p.username = user;
    p.sealedSecret = std::string("\x02pending\0", 9) + tag;
    p.issuer = "acme";
    p.params.algorithm = twostep::core::Algorithm::Sha512;
    p.params.digits = 8;
    p.params.period = 45;
    p.invited = invited;
    p.expiresAt = expiresAt;
    return p;
}

/// The audit row of a completed enrolment, as the policy writes it.
twostep::core::AuditEvent enrolledEvent(const PendingEnrollment& completed) {
    twostep::core::AuditEvent event;
    event.time = T0;
    event.username = completed.username;
    event.operation = "CREATE";
    event.resource = "authorization.k8s.io/v1/selfsubjectaccessreviews";
    event.decision = "allow";
    event.reason = "enrolled";
    event.uid = "uid-" + completed.username;
    return event;
}

}  // namespace

STORE_TEST("invitations are opened, replaced, listed and removed", "[store][enroll]") {
    const auto store = backend.open();
    CHECK_FALSE(store->findInvitation("alice"));
    CHECK(store->listInvitations().empty());

    store->putInvitation(invitation("alice", T0 + Day), T0);
    store->putInvitation(invitation("bob", T0 + 60), T0);
    const auto alice = store->findInvitation("alice");
    REQUIRE(alice);
    CHECK(alice->username == "alice");
    CHECK(alice->invitedBy == "admin");
    CHECK(alice->createdAt == T0);
    CHECK(alice->expiresAt == T0 + Day);
    CHECK(alice->isOpen(T0 + Day - 1));
    CHECK_FALSE(alice->isOpen(T0 + Day));

    // Inviting again replaces the invitation (a new end, a new admin).
    store->putInvitation(Invitation{"alice", "root", T0 + 5, T0 + 2 * Day}, T0 + 5);
    CHECK(store->findInvitation("alice")->expiresAt == T0 + 2 * Day);
    CHECK(store->findInvitation("alice")->invitedBy == "root");

    const auto all = store->listInvitations();
    REQUIRE(all.size() == 2);
    CHECK(all[0].username == "alice");
    CHECK(all[1].username == "bob");

    CHECK(store->removeInvitation("bob"));
    CHECK_FALSE(store->removeInvitation("bob"));
    CHECK_FALSE(store->findInvitation("bob"));

    // Writing purges what has expired: bob's second invitation ended before carol's was made.
    store->putInvitation(invitation("bob", T0 + 60), T0);
    store->putInvitation(invitation("carol", T0 + Day), T0 + 61);
    CHECK_FALSE(store->findInvitation("bob"));
    CHECK(store->listInvitations().size() == 2);
}

STORE_TEST("an invited begin needs an open invitation and ends with it", "[store][enroll]") {
    const auto store = backend.open();
    CHECK_FALSE(store->beginEnrollment(pending("alice", "a", true), T0));
    CHECK_FALSE(store->findPendingEnrollment("alice"));

    store->putInvitation(invitation("alice", T0 + Day), T0);
    // The invitation's end, not the caller's, is the pending secret's end.
    REQUIRE(store->beginEnrollment(pending("alice", "a", true, T0 + 5), T0 + 10));
    const auto found = store->findPendingEnrollment("alice");
    REQUIRE(found);
    CHECK(found->username == "alice");
    CHECK(found->sealedSecret == pending("alice", "a", true).sealedSecret);
    CHECK(found->issuer == "acme");
    CHECK(found->params == pending("alice", "a", true).params);
    CHECK(found->invited);
    CHECK(found->failures == 0);
    CHECK_FALSE(found->lockedUntil);
    CHECK(found->createdAt == T0 + 10);
    CHECK(found->expiresAt == T0 + Day);

    // An expired invitation lets nobody begin.
    CHECK_FALSE(store->beginEnrollment(pending("alice", "late", true), T0 + Day));

    SECTION("uninvite discards the pending secret") {
        CHECK(store->removeInvitation("alice"));
        CHECK_FALSE(store->findPendingEnrollment("alice"));
    }
    SECTION("a new invitation discards the secret begun under the old one") {
        store->putInvitation(invitation("alice", T0 + 2 * Day), T0 + 20);
        CHECK_FALSE(store->findPendingEnrollment("alice"));
    }
}

STORE_TEST("a second begin replaces the secret and keeps the failure count", "[store][enroll]") {
    const auto store = backend.open();
    const LockoutPolicy policy;  // 5 failures, then 60 s
    REQUIRE(store->beginEnrollment(pending("tofu", "first", false, T0 + 3600), T0));
    const FailureOutcome once = store->recordEnrollmentFailure("tofu", policy, T0 + 1);
    CHECK_FALSE(once.refused);
    CHECK(once.failures == 1);

    REQUIRE(store->beginEnrollment(pending("tofu", "second", false, T0 + 7200), T0 + 2));
    const auto found = store->findPendingEnrollment("tofu");
    REQUIRE(found);
    CHECK(found->sealedSecret == pending("tofu", "second", false).sealedSecret);
    CHECK(found->expiresAt == T0 + 7200);
    CHECK_FALSE(found->invited);
    CHECK(found->failures == 1);

    for (int i = 2; i < policy.maxFailures; ++i) {
        CHECK(store->recordEnrollmentFailure("tofu", policy, T0 + 3).failures == i);
    }
    const FailureOutcome locking = store->recordEnrollmentFailure("tofu", policy, T0 + 3);
    REQUIRE(locking.lockedUntil);
    CHECK(*locking.lockedUntil == T0 + 3 + 60);
    CHECK(store->findPendingEnrollment("tofu")->isLocked(T0 + 4));
    const FailureOutcome refused = store->recordEnrollmentFailure("tofu", policy, T0 + 4);
    CHECK(refused.refused);
    CHECK(refused.lockedUntil == locking.lockedUntil);

    // Unknown users are refused, not counted.
    CHECK(store->recordEnrollmentFailure("nobody", policy, T0).refused);
}

STORE_TEST("completing an enrolment makes a new user active with recovery codes",
           "[store][enroll]") {
    const auto store = backend.open();
    store->putInvitation(invitation("alice", T0 + Day), T0);
    const PendingEnrollment begun = pending("alice", "a", true);
    REQUIRE(store->beginEnrollment(begun, T0));
    const auto codes = twostep::core::generateRecoveryCodes(3);
    std::vector<std::string> hashes;
    for (const auto& code : codes) {
        hashes.push_back(twostep::core::hashRecoveryCode(code));
    }

    // A secret that is no longer the pending one (replaced meanwhile) is refused, and leaves no
    // audit row claiming an enrolment.
    CHECK_FALSE(store->completeEnrollment(pending("alice", "other", true), 1000, 0, hashes,
                                          enrolledEvent(begun), T0));
    CHECK(store->listAudit({}).empty());

    REQUIRE(store->completeEnrollment(begun, 1000, -2, hashes, enrolledEvent(begun), T0 + 30));
    const auto alice = store->findUser("alice");
    REQUIRE(alice);
    CHECK(alice->state == UserState::Active);
    CHECK(alice->sealedSecret == begun.sealedSecret);
    CHECK(alice->issuer == "acme");
    CHECK(alice->params == begun.params);
    CHECK(alice->lastStep == 1000);
    CHECK(alice->driftSteps == -2);
    CHECK(alice->recoveryCodesLeft == 3);
    CHECK(alice->createdAt == T0 + 30);
    // The audit row commits with the enrolment, in its transaction.
    const auto audit = store->listAudit({});
    REQUIRE(audit.size() == 1);
    CHECK(audit[0].username == "alice");
    CHECK(audit[0].reason == "enrolled");
    CHECK(audit[0].uid == "uid-alice");
    // The pending secret and the invitation are used up.
    CHECK_FALSE(store->findPendingEnrollment("alice"));
    CHECK_FALSE(store->findInvitation("alice"));
    CHECK_FALSE(store->completeEnrollment(begun, 1001, 0, hashes, enrolledEvent(begun), T0 + 31));
    CHECK(store->consumeRecoveryCode("alice", codes[1], T0 + 40));
}

STORE_TEST("re-enrolment replaces an enrolled user's secret only when confirmed",
           "[store][enroll]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->acceptStep("alice", 5000, UserState::Active, T0));
    REQUIRE(store->openGrant("alice", T0 + 600, T0));
    REQUIRE(store->replaceRecoveryCodes("alice", {"old-hash"}, T0));
    store->putInvitation(invitation("alice", T0 + Day), T0);
    const PendingEnrollment begun = pending("alice", "new", true);
    REQUIRE(store->beginEnrollment(begun, T0));
    // Until the new secret is confirmed, the old one is alice's.
    CHECK(store->findUser("alice")->sealedSecret == newUser("alice").sealedSecret);

    SECTION("a disabled user is not re-enrolled, and the pending secret stays") {
        REQUIRE(store->setState("alice", UserState::Disabled, T0));
        CHECK_FALSE(store->completeEnrollment(begun, 100, 0, {}, enrolledEvent(begun), T0 + 1));
        CHECK(store->findUser("alice")->sealedSecret == newUser("alice").sealedSecret);
        CHECK(store->findPendingEnrollment("alice"));
        CHECK(store->listAudit({}).empty());  // rolled back with the rest
    }
    SECTION("a locked-out user is not re-enrolled") {
        const LockoutPolicy policy{1, 60, 60};
        REQUIRE(store->recordFailure("alice", policy, T0).lockedUntil);
        CHECK_FALSE(store->completeEnrollment(begun, 100, 0, {}, enrolledEvent(begun), T0 + 1));
        CHECK(store->findUser("alice")->state == UserState::Active);
        CHECK(store->findPendingEnrollment("alice"));
    }
    SECTION("confirming starts the user over with the new secret") {
        REQUIRE(
            store->completeEnrollment(begun, 100, 1, {"new-hash"}, enrolledEvent(begun), T0 + 1));
        const auto alice = store->findUser("alice");
        CHECK(alice->sealedSecret == begun.sealedSecret);
        CHECK(alice->params == begun.params);
        CHECK(alice->lastStep == 100);  // the new secret's own step, lower than the old one's
        CHECK(alice->driftSteps == 1);
        CHECK_FALSE(alice->hasGrant(T0 + 2));
        CHECK(alice->recoveryCodesLeft == 1);
        CHECK(alice->createdAt == T0);  // still the same user
    }
}

STORE_TEST("an expired or locked pending enrolment cannot be completed", "[store][enroll]") {
    const auto store = backend.open();
    const PendingEnrollment begun = pending("tofu", "a", false, T0 + 100);
    REQUIRE(store->beginEnrollment(begun, T0));
    CHECK_FALSE(store->completeEnrollment(begun, 1, 0, {}, enrolledEvent(begun), T0 + 100));
    CHECK_FALSE(store->findUser("tofu"));

    REQUIRE(store->beginEnrollment(pending("tofu", "b", false, T0 + 1000), T0 + 100));
    const LockoutPolicy policy{1, 60, 60};
    REQUIRE(store->recordEnrollmentFailure("tofu", policy, T0 + 101).lockedUntil);
    const PendingEnrollment second = pending("tofu", "b", false);
    CHECK_FALSE(store->completeEnrollment(second, 1, 0, {}, enrolledEvent(second), T0 + 102));
    CHECK(store->completeEnrollment(second, 1, 0, {}, enrolledEvent(second), T0 + 161));
    // Expired rows are purged by the next write.
    REQUIRE(store->beginEnrollment(pending("old", "x", false, T0 + 200), T0 + 150));
    REQUIRE(store->beginEnrollment(pending("new", "y", false, T0 + 900), T0 + 200));
    CHECK_FALSE(store->findPendingEnrollment("old"));
}

STORE_TEST("acceptStep stores the drift, resetSecret clears it", "[store][enroll][replay]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    CHECK(store->findUser("alice")->driftSteps == 0);
    REQUIRE(store->acceptStep("alice", 100, UserState::Active, T0, 2));
    CHECK(store->findUser("alice")->driftSteps == 2);
    // A refused step changes nothing, the drift included.
    CHECK_FALSE(store->acceptStep("alice", 100, UserState::Active, T0, -3));
    CHECK(store->findUser("alice")->driftSteps == 2);
    REQUIRE(store->acceptStep("alice", 101, UserState::Active, T0, -1));
    CHECK(store->findUser("alice")->driftSteps == -1);
    REQUIRE(store->resetSecret("alice", "new", T0));
    CHECK(store->findUser("alice")->driftSteps == 0);
}

STORE_TEST("resealAll reseals pending secrets too", "[store][enroll][reseal]") {
    const auto store = backend.open();
    REQUIRE(store->addUser(newUser("alice"), T0, false));
    REQUIRE(store->beginEnrollment(pending("bob", "b", false, T0 + 100), T0));
    store->resealAll([](const std::string& username,
                        const std::string& sealed) { return username + ":" + sealed; },
                     "new-key");
    CHECK(store->findUser("alice")->sealedSecret == "alice:" + newUser("alice").sealedSecret);
    CHECK(store->findPendingEnrollment("bob")->sealedSecret ==
          "bob:" + pending("bob", "b", false).sealedSecret);
}

STORE_TEST("threads racing to complete one enrolment: exactly one wins", "[store][enroll]") {
    constexpr int Threads = 4;
    const auto first = backend.open();
    const auto second = backend.open();
    const PendingEnrollment begun = pending("race", "r", false, T0 + 100);
    REQUIRE(first->beginEnrollment(begun, T0));
    std::barrier sync(Threads);
    std::atomic<int> winners = 0;
    std::vector<std::thread> threads;
    for (int t = 0; t < Threads; ++t) {
        Store& store = t % 2 == 0 ? *first : *second;
        threads.emplace_back([&, t] {
            sync.arrive_and_wait();
            if (store.completeEnrollment(begun, 10 + t, 0, {}, enrolledEvent(begun), T0 + 1)) {
                ++winners;
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    CHECK(winners == 1);
    CHECK(first->findUser("race")->state == UserState::Active);
}
