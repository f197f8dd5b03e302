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
