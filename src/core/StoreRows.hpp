/// What both stores share between their rows and the Store types: reading the stored algorithm
/// and state back, and counting a failure, so SQLite and PostgreSQL cannot drift apart.
#pragma once

#include <algorithm>
#include <limits>
#include <optional>
#include <string>
#include <string_view>

#include "core/Error.hpp"
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

/// What importUsers throws when `username` exists already (the import then changed nothing).
inline StoreError importClash(const std::string& username) {
    return StoreError("cannot import users: user '" + username +
                      "' already exists; nothing was imported");
}

}  // namespace twostep::core::rows
