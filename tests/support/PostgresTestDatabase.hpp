/// A fresh PostgreSQL database per test on the server that scripts/with-postgres.sh starts.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <pqxx/pqxx>
#include <random>
#include <stdexcept>
#include <string>
#include <string_view>

namespace twostep::test {

/// The server URL from TWOSTEP_TEST_POSTGRES_URL. A [postgres] test without it fails (it is not
/// skipped): CI must run it. @throw std::runtime_error saying how to run or exclude these tests.
inline std::string postgresServerUrl() {
    const char* url = std::getenv("TWOSTEP_TEST_POSTGRES_URL");
    if (url == nullptr || *url == '\0') {
        throw std::runtime_error(
            "TWOSTEP_TEST_POSTGRES_URL is not set: run the [postgres] tests under "
            "scripts/with-postgres.sh (scripts/test.sh does), or leave them out with "
            "ctest -LE postgres");
    }
    return url;
}

/// An environment variable that scripts/with-postgres.sh sets. @throw std::runtime_error if unset.
inline std::string withPostgresVariable(const char* name) {
    const char* value = std::getenv(name);
    if (value == nullptr || *value == '\0') {
        throw std::runtime_error(std::string(name) +
                                 " is not set: run this test under scripts/with-postgres.sh");
    }
    return value;
}

/// `url` with its database (the URL path) replaced by `database`; the query is kept.
inline std::string postgresUrlWithDatabase(const std::string& url, std::string_view database) {
    const std::size_t scheme = url.find("://");
    if (scheme == std::string::npos) {
        throw std::runtime_error("the test postgresql url is not a url");
    }
    const std::size_t pathStart = url.find_first_of("/?", scheme + 3);
    if (pathStart == std::string::npos) {
        return url + "/" + std::string(database);
    }
    const std::size_t query = url.find('?', pathStart);
    return url.substr(0, pathStart) + "/" + std::string(database) +
           (query == std::string::npos ? std::string() : url.substr(query));
}

/// `url` with one more query parameter.
inline std::string postgresUrlWithParameter(const std::string& url, std::string_view parameter) {
    return url + (url.find('?') == std::string::npos ? "?" : "&") + std::string(parameter);
}

/// Creates `twostep_test_<random>` on the test server and drops it (with any connections still
/// open to it) when destroyed. Raw access goes through separate short connections, as another
/// process would see the data.
class PostgresTestDatabase {
public:
    PostgresTestDatabase() : serverUrl_(postgresServerUrl()) {
        std::random_device random;
        std::uniform_int_distribution<std::uint32_t> digit(0, 15);
        name_ = "twostep_test_";
        for (int i = 0; i < 16; ++i) {
            name_ += "0123456789abcdef"[digit(random)];
        }
        pqxx::connection admin(serverUrl_);
        pqxx::nontransaction tx(admin);
        tx.exec0("CREATE DATABASE " + tx.quote_name(name_));
        url_ = postgresUrlWithDatabase(serverUrl_, name_);
    }
    PostgresTestDatabase(const PostgresTestDatabase&) = delete;
    PostgresTestDatabase& operator=(const PostgresTestDatabase&) = delete;

    ~PostgresTestDatabase() {
        // Best effort: a database left behind goes with the throwaway cluster anyway, and a
        // destructor must not throw.
        try {
            pqxx::connection admin(serverUrl_);
            pqxx::nontransaction tx(admin);
            tx.exec0("DROP DATABASE IF EXISTS " + tx.quote_name(name_) + " WITH (FORCE)");
        } catch (const std::exception&) {
        }
    }

    /// The URL of this test's database (with the server's password).
    const std::string& url() const { return url_; }
    const std::string& name() const { return name_; }
    const std::string& serverUrl() const { return serverUrl_; }

    /// Runs SQL in this database on a connection of its own.
    void exec(const std::string& sql) const {
        pqxx::connection raw(url_);
        pqxx::nontransaction tx(raw);
        tx.exec(sql);
    }

    /// The first column of the first row of `sql`, as an integer.
    std::int64_t queryInt(const std::string& sql) const {
        pqxx::connection raw(url_);
        pqxx::nontransaction tx(raw);
        return tx.exec1(sql)[0].as<std::int64_t>();
    }

private:
    std::string serverUrl_;
    std::string name_;
    std::string url_;
};

}  // namespace twostep::test
