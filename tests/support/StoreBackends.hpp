/// One store test suite for both backends: STORE_TEST defines a test body once and registers it
/// for SQLite (tagged [sqlite]) and PostgreSQL (tagged [postgres]), each on a fresh database.
#pragma once

#include <SQLiteCpp/Database.h>

#include <catch2/catch.hpp>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <pqxx/pqxx>
#include <span>
#include <string>
#include <string_view>

#include "core/Migrations.hpp"
#include "core/Store.hpp"
#include "support/PostgresTestDatabase.hpp"
#include "support/TempDir.hpp"

namespace twostep::test {

/// A fresh database of one backend for one test, removed when the test ends.
class StoreBackend {
public:
    virtual ~StoreBackend() = default;

    /// "sqlite" or "postgresql".
    virtual std::string_view name() const = 0;
    /// The --db value that names this test's database.
    virtual const std::string& url() const = 0;
    /// How the database appears in the store's messages ("in database '<this>'").
    virtual std::string description() const = 0;
    /// Runs SQL on a raw connection of its own (what another process would do).
    virtual void exec(const std::string& sql) const = 0;
    /// The first column of the first row of `sql` as an integer, read on a raw connection.
    virtual std::int64_t queryInt(const std::string& sql) const = 0;
    /// This backend's embedded migrations.
    virtual std::span<const core::Migration> migrations() const = 0;

    /// A new store on the database; each call opens another one, as another process would.
    std::unique_ptr<core::Store> open() const { return core::openStore(url()); }
    /// The newest embedded migration of this backend.
    int newestMigration() const { return migrations().back().version; }
};

/// A SQLite file in a temp dir of its own.
class SqliteBackend final : public StoreBackend {
public:
    SqliteBackend() : path_((dir_ / "twostep.db").string()) {}

    std::string_view name() const override { return "sqlite"; }
    const std::string& url() const override { return path_; }
    std::string description() const override { return path_; }
    void exec(const std::string& sql) const override {
        SQLite::Database raw(path_, SQLite::OPEN_READWRITE);
        raw.exec(sql);
    }
    std::int64_t queryInt(const std::string& sql) const override {
        SQLite::Database raw(path_, SQLite::OPEN_READONLY);
        return raw.execAndGet(sql).getInt64();
    }
    std::span<const core::Migration> migrations() const override {
        return core::embeddedMigrations(core::SqlDialect::Sqlite);
    }

private:
    TempDir dir_;
    std::string path_;
};

/// A database of its own on the server of scripts/with-postgres.sh; fails without that server.
class PostgresBackend final : public StoreBackend {
public:
    std::string_view name() const override { return "postgresql"; }
    const std::string& url() const override { return database_.url(); }
    std::string description() const override;
    void exec(const std::string& sql) const override { database_.exec(sql); }
    std::int64_t queryInt(const std::string& sql) const override { return database_.queryInt(sql); }
    std::span<const core::Migration> migrations() const override {
        return core::embeddedMigrations(core::SqlDialect::Postgresql);
    }

private:
    PostgresTestDatabase database_;
};

/// "postgresql://host:port/database": the URL without user, password or query.
inline std::string PostgresBackend::description() const {
    const std::string& url = database_.url();
    const std::size_t authority = url.find("://") + 3;
    const std::size_t at = url.find('@', authority);
    const std::size_t host = at == std::string::npos ? authority : at + 1;
    const std::size_t query = url.find('?', host);
    return "postgresql://" + url.substr(host, query == std::string::npos ? query : query - host);
}

}  // namespace twostep::test

#define TWOSTEP_STORE_TEST_IMPL(function, name, tags)                   \
    static void function(const ::twostep::test::StoreBackend& backend); \
    TEST_CASE(name " (sqlite)", tags "[sqlite]") {                      \
        const ::twostep::test::SqliteBackend backend;                   \
        function(backend);                                              \
    }                                                                   \
    TEST_CASE(name " (postgres)", tags "[postgres]") {                  \
        const ::twostep::test::PostgresBackend backend;                 \
        function(backend);                                              \
    }                                                                   \
    static void function(const ::twostep::test::StoreBackend& backend)

/// Defines a test that runs against both stores: `backend` names the test's fresh database.
#define STORE_TEST(name, tags) \
    TWOSTEP_STORE_TEST_IMPL(INTERNAL_CATCH_UNIQUE_NAME(twostepStoreTest), name, tags)
