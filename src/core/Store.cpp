#include "core/Store.hpp"

#include <array>
#include <cassert>

#include "core/Error.hpp"
#include "core/PostgresStore.hpp"
#include "core/SqliteStore.hpp"

namespace twostep::core {

std::string_view toString(UserState state) {
    switch (state) {
        case UserState::Pending:
            return "pending";
        case UserState::Active:
            return "active";
        case UserState::Disabled:
            return "disabled";
    }
    assert(false && "UserState has only three values");
    return "unknown";
}

Seconds LockoutPolicy::lockFor(int lockoutNumber) const {
    if (baseLockSeconds <= 0 || maxLockSeconds <= 0) {
        return 0;
    }
    // Doubles from the base until the cap; stops doubling at the cap, so a long lockout streak
    // (or a huge lockoutNumber) neither overflows nor loops more than ~63 times.
    Seconds lock = baseLockSeconds;
    for (int n = 1; n < lockoutNumber && lock < maxLockSeconds; ++n) {
        lock = lock > maxLockSeconds / 2 ? maxLockSeconds : lock * 2;
    }
    return lock < maxLockSeconds ? lock : maxLockSeconds;
}

std::size_t Change::approximateBytes() const {
    // The row bytes a change writes: the user row's update is small; the audit row carries the
    // request's names, which a forged review can make long.
    std::size_t bytes = 64 + username.size() + recoveryCode.size();
    if (audit) {
        bytes += 64 + audit->username.size() + audit->operation.size() + audit->resource.size() +
                 audit->subResource.size() + audit->nameSpace.size() + audit->name.size() +
                 audit->uid.size();
    }
    return bytes;
}

namespace {

/// A change of `kind` for `username` at `now`.
Change changeOf(Change::Kind kind, std::string_view username, Seconds now) {
    Change change;
    change.kind = kind;
    change.username = std::string(username);
    change.now = now;
    return change;
}

}  // namespace

bool Store::acceptStep(std::string_view username, std::int64_t step, UserState requiredState,
                       Seconds now) {
    Change change = changeOf(Change::Kind::AcceptStep, username, now);
    change.step = step;
    change.requiredState = requiredState;
    return commit(change, {}).applied;
}

bool Store::confirmWithStep(std::string_view username, std::int64_t step, Seconds now) {
    Change change = changeOf(Change::Kind::ConfirmStep, username, now);
    change.step = step;
    return commit(change, {}).applied;
}

FailureOutcome Store::recordFailure(std::string_view username, const LockoutPolicy& policy,
                                    Seconds now) {
    Change change = changeOf(Change::Kind::RecordFailure, username, now);
    change.lockout = policy;
    const ChangeOutcome outcome = commit(change, {});
    assert(outcome.failure && "a RecordFailure change always reports the failure");
    return outcome.failure.value_or(FailureOutcome{true, 0, std::nullopt});
}

bool Store::openGrant(std::string_view username, Seconds until, Seconds now) {
    Change change = changeOf(Change::Kind::OpenGrant, username, now);
    change.grantUntil = until;
    return commit(change, {}).applied;
}

bool Store::consumeRecoveryCode(std::string_view username, std::string_view code, Seconds now) {
    Change change = changeOf(Change::Kind::ConsumeRecoveryCode, username, now);
    change.recoveryCode = std::string(code);
    return commit(change, {}).applied;
}

void Store::appendAudit(const AuditEvent& event) {
    Change change = changeOf(Change::Kind::AuditOnly, event.username, event.time);
    change.audit = event;
    commit(change, {});
}

namespace {

/// One kind of store, chosen by the prefix of the --db value.
struct Backend {
    std::string_view prefix;
    std::unique_ptr<Store> (*open)(const std::string& url);
};

std::unique_ptr<Store> openSqlite(const std::string& url) {
    constexpr std::string_view Scheme = "sqlite:";
    std::string path = url.starts_with(Scheme) ? url.substr(Scheme.size()) : url;
    SqliteOptions options;
    // sqlite:PATH?synchronous=full|normal|durable-state (docs/benchmarks.md, durability). A plain
    // path is taken as it is: a file name may hold a '?'.
    if (const std::size_t query = path.find('?');
        url.starts_with(Scheme) && query != std::string::npos) {
        const std::string parameter = path.substr(query + 1);
        path.resize(query);
        if (parameter == "synchronous=full") {
            options.synchronous = SqliteOptions::Synchronous::Full;
        } else if (parameter == "synchronous=normal") {
            options.synchronous = SqliteOptions::Synchronous::Normal;
        } else if (parameter == "synchronous=durable-state") {
            options.synchronous = SqliteOptions::Synchronous::DurableState;
        } else {
            throw StoreError("unknown sqlite: parameter '" + parameter +
                             "' (want synchronous=full, normal or durable-state)");
        }
    }
    if (path.empty()) {
        throw StoreError("the database path is empty");
    }
    return std::make_unique<SqliteStore>(std::move(path), options);
}

std::unique_ptr<Store> openPostgres(const std::string& url) {
    // PostgresStore never puts the URL's password in a message.
    return std::make_unique<PostgresStore>(url);
}

// Checked in order; a value matching none is a SQLite file path.
constexpr std::array Backends{
    Backend{"postgresql://", &openPostgres},
    Backend{"postgres://", &openPostgres},
    Backend{"sqlite:", &openSqlite},
};

}  // namespace

std::unique_ptr<Store> openStore(const std::string& url) {
    for (const Backend& backend : Backends) {
        if (url.starts_with(backend.prefix)) {
            return backend.open(url);
        }
    }
    // "mysql://..." is a typo or an unsupported store, not a relative file name. Only a plain
    // scheme is echoed: anything else in the URL might be a password.
    if (const auto end = url.find("://"); end != std::string::npos) {
        const std::string_view scheme(url.data(), end);
        const bool plain = !scheme.empty() && scheme.size() <= 32 &&
                           scheme.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789+.-") ==
                               std::string_view::npos;
        throw StoreError("unsupported database url" +
                         (plain ? " scheme '" + std::string(scheme) + "'" : std::string()) +
                         "; use a file path, sqlite:PATH or postgresql://...");
    }
    return openSqlite(url);
}

}  // namespace twostep::core
