/// What both stores share between their rows and the Store types: reading the stored algorithm
/// and state back, counting a failure, and applying one Change inside a batch's transaction, so
/// SQLite and PostgreSQL cannot drift apart.
#pragma once

#include <algorithm>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "core/Error.hpp"
#include "core/GroupCommit.hpp"
#include "core/RecoveryCodes.hpp"
#include "core/Store.hpp"

namespace twostep::core::rows {

/// toString(UserState)'s text back to the state; nullopt for anything else.
inline std::optional<UserState> parseUserState(std::string_view text) {
    for (const UserState state : {UserState::Pending, UserState::Active, UserState::Disabled}) {
        if (text == toString(state)) {
            return state;
        }
    }
    return std::nullopt;
}

/// The algorithm stored for `username`. @throw StoreError when the database holds another text:
/// an unknown algorithm is an error, never a default.
inline Algorithm storedAlgorithm(const std::string& username, const std::string& text) {
    const std::optional<Algorithm> algorithm = parseAlgorithm(text);
    if (!algorithm) {
        throw StoreError("user '" + username + "' has an unknown algorithm '" + text +
                         "' in the database");
    }
    return *algorithm;
}

/// The state stored for `username`. @throw StoreError when the database holds another text.
inline UserState storedState(const std::string& username, const std::string& text) {
    const std::optional<UserState> state = parseUserState(text);
    if (!state) {
        throw StoreError("user '" + username + "' has an unknown state '" + text +
                         "' in the database");
    }
    return *state;
}

/// The counters to store after one more failure, and what recordFailure reports.
struct FailureRow {
    FailureOutcome outcome;
    int lockouts = 0;  ///< the lockout streak to store
};

/// recordFailure's answer for a user that does not exist: refused, nothing counted.
inline FailureOutcome unknownUserFailure() {
    return FailureOutcome{true, 0, std::nullopt};
}

/// One more failure on top of the stored row (saturating): refused while `lockedUntil` is in
/// the future; otherwise the failure that reaches policy.maxFailures starts a lockout, and the
/// failure streak begins again.
inline FailureRow countFailure(const LockoutPolicy& policy, int failures, int lockouts,
                               std::optional<Seconds> lockedUntil, Seconds now) {
    constexpr int Max = std::numeric_limits<int>::max();
    FailureRow row;
    row.lockouts = lockouts;
    if (lockedUntil && *lockedUntil > now) {
        row.outcome = FailureOutcome{true, failures, lockedUntil};
        return row;
    }
    row.outcome.failures = failures < Max ? failures + 1 : Max;
    if (row.outcome.failures >= std::max(1, policy.maxFailures)) {
        row.lockouts = lockouts < Max ? lockouts + 1 : Max;
        row.outcome.lockedUntil = now + policy.lockFor(row.lockouts);
        row.outcome.failures = 0;  // a new streak starts when the lock ends
    }
    return row;
}

/// A user's failure counters as stored.
struct FailureState {
    int failures = 0;
    int lockouts = 0;
    std::optional<Seconds> lockedUntil;
};

/// Counts a failure through `rows` (see applyChange); refused for an unknown user.
template <typename Rows>
FailureOutcome recordFailure(Rows& rows, std::string_view username, const LockoutPolicy& policy,
                             Seconds now) {
    const std::optional<FailureState> state = rows.failureState(username);
    if (!state) {
        return unknownUserFailure();
    }
    const FailureRow row =
        countFailure(policy, state->failures, state->lockouts, state->lockedUntil, now);
    if (!row.outcome.refused) {
        rows.storeFailure(username, now, row);  // a refused failure changes nothing
    }
    return row.outcome;
}

/// Finds which of a user's stored recovery codes a typed code matches. Every stored hash is
/// checked, so the time taken does not tell which code matched.
class RecoveryCodeMatch {
public:
    explicit RecoveryCodeMatch(std::string_view code) : code_(code) {}
    /// Checks one stored code (id and "salt$hash").
    void check(std::int64_t id, std::string_view hash) {
        const bool matches = matchesRecoveryCode(code_, hash);
        if (matches && !id_) {
            id_ = id;
        }
    }
    /// The first matching code's id.
    std::optional<std::int64_t> id() const { return id_; }

private:
    std::string_view code_;
    std::optional<std::int64_t> id_;
};

/// What a failed batch was doing, for its error message ("cannot <action> '<subject>' ..."): a
/// lone change is named as the single call it stands for.
struct BatchAction {
    std::string action;
    std::string subject;
};

inline BatchAction describeBatch(std::span<QueuedChange* const> batch) {
    if (batch.size() != 1) {
        return {"commit a batch of " + std::to_string(batch.size()) + " changes", {}};
    }
    const Change& change = batch.front()->change;
    switch (change.kind) {
        case Change::Kind::AuditOnly:
            return {"append to the audit log", {}};
        case Change::Kind::AcceptStep:
            return {"accept a time step for user", change.username};
        case Change::Kind::ConfirmStep:
            return {"confirm user", change.username};
        case Change::Kind::RecordFailure:
            return {"record a failure for user", change.username};
        case Change::Kind::ConsumeRecoveryCode:
            return {"use a recovery code of user", change.username};
        case Change::Kind::OpenGrant:
            return {"open a grant for user", change.username};
    }
    return {"commit a change", {}};
}

/// Applies one queued change inside the batch's transaction, then writes the audit row its
/// settle callback names, and returns what the change did. `rows` runs the backend's statements
/// on the batch's connection; the batch holds the write lock (SQLite) or the rows it touched
/// (PostgreSQL, where failureState reads FOR UPDATE) until it commits, so a read here and the
/// write after it see no other writer in between:
///   bool claimStep(username, step, requiredState, now, grantUntil)  // the one conditional UPDATE
///   bool confirmStep(username, step, now)
///   std::optional<FailureState> failureState(username)
///   void storeFailure(username, now, const FailureRow&)
///   std::optional<User> user(username)
///   bool deleteRecoveryCode(username, id)
///   void clearFailures(username, now)
///   bool openGrant(username, until, now)
///   void insertAudit(const AuditEvent&)
template <typename Rows>
ChangeOutcome applyChange(Rows& rows, const QueuedChange& queued) {
    const Change& change = queued.change;
    const std::string_view username = change.username;
    const Seconds now = change.now;
    ChangeOutcome outcome;
    switch (change.kind) {
        case Change::Kind::AuditOnly:
            break;
        case Change::Kind::AcceptStep:
            // The replay compare-and-set (with the grant it opens, in the same statement): of
            // concurrent claims of one step exactly one changes the row.
            outcome.applied = rows.claimStep(username, change.step, change.requiredState, now,
                                             change.grantUntil);
            if (!outcome.applied) {
                outcome.user = rows.user(username);  // why: a replay, a lock, a missing user
            }
            break;
        case Change::Kind::ConfirmStep:
            outcome.applied = rows.confirmStep(username, change.step, now);
            break;
        case Change::Kind::RecordFailure:
            outcome.failure = recordFailure(rows, username, change.lockout, now);
            break;
        case Change::Kind::ConsumeRecoveryCode: {
            // Refused while locked out (the code stays unused); the delete is conditional, so of
            // concurrent uses of one code exactly one deletes it.
            const std::optional<FailureState> state = rows.failureState(username);
            const bool locked = state && state->lockedUntil && *state->lockedUntil > now;
            if (state && !locked && queued.recoveryCodeId &&
                rows.deleteRecoveryCode(username, *queued.recoveryCodeId)) {
                rows.clearFailures(username, now);
                if (change.grantUntil) {
                    rows.openGrant(username, *change.grantUntil, now);
                }
                outcome.applied = true;
            } else if (change.countFailureIfRefused) {
                outcome.failure = recordFailure(rows, username, change.lockout, now);
            }
            break;
        }
        case Change::Kind::OpenGrant:
            outcome.applied =
                change.grantUntil && rows.openGrant(username, *change.grantUntil, now);
            break;
    }
    // The decision follows from the outcome, inside the transaction: the audit row commits with
    // the change it describes, or not at all.
    const std::optional<Verdict> verdict =
        queued.settle ? queued.settle(outcome) : std::optional<Verdict>();
    if (!change.audit || (queued.settle && !verdict)) {
        return outcome;
    }
    AuditEvent event = *change.audit;
    if (verdict) {
        event.decision = verdict->allowed ? "allow" : "deny";
        event.reason = std::string(verdict->reason);
    }
    rows.insertAudit(event);
    return outcome;
}

/// What importUsers throws when `username` exists already (the import then changed nothing).
inline StoreError importClash(const std::string& username) {
    return StoreError("cannot import users: user '" + username +
                      "' already exists; nothing was imported");
}

}  // namespace twostep::core::rows
