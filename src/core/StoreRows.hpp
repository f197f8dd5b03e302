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
struct FailureCount {
    FailureOutcome outcome;
    int lockouts = 0;  ///< the lockout streak to store
};

/// One more failure on top of the stored `failures` and `lockouts` (saturating): the failure
/// that reaches policy.maxFailures starts a lockout, and the failure streak begins again.
inline FailureCount countFailure(const LockoutPolicy& policy, int failures, int lockouts,
                                 Seconds now) {
    constexpr int Max = std::numeric_limits<int>::max();
    FailureCount count;
    count.lockouts = lockouts;
    count.outcome.failures = failures < Max ? failures + 1 : Max;
    if (count.outcome.failures >= std::max(1, policy.maxFailures)) {
        count.lockouts = lockouts < Max ? lockouts + 1 : Max;
        count.outcome.lockedUntil = now + policy.lockFor(count.lockouts);
        count.outcome.failures = 0;  // a new streak starts when the lock ends
    }
    return count;
}

/// What importUsers throws when `username` exists already (the import then changed nothing).
inline StoreError importClash(const std::string& username) {
    return StoreError("cannot import users: user '" + username +
                      "' already exists; nothing was imported");
}

}  // namespace twostep::core::rows
