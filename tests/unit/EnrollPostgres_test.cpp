// twostep-enroll on a PostgreSQL database (issue 7: postgresql:// in both binaries), in process.
// Tagged [postgres]: needs scripts/with-postgres.sh.
#include <catch2/catch.hpp>

#include <string>
#include <vector>

#include "support/EnrollHarness.hpp"
#include "support/PostgresTestDatabase.hpp"

using twostep::test::CliResult;
using twostep::test::EnrollCli;
using twostep::test::PostgresTestDatabase;

namespace {

/// The password in a postgresql://user:password@... URL.
std::string passwordOf(const std::string& url) {
    const std::size_t start = url.find(':', url.find("://") + 3) + 1;
    return url.substr(start, url.find('@') - start);
}

}  // namespace

TEST_CASE("twostep-enroll manages users on PostgreSQL and never prints the password",
          "[enroll][postgres]") {
    const PostgresTestDatabase database;
    const std::string password = passwordOf(database.url());
    REQUIRE(password.size() >= 8);
    EnrollCli cli;
    cli.env()["TWOSTEP_DB"] = database.url();
    std::vector<CliResult> results;
    const auto run = [&](const std::vector<std::string>& args) {
        results.push_back(cli.run(args));
        INFO(results.back().err);
        return results.back();
    };

    const CliResult init = run({"init"});
    REQUIRE(init.code == 0);
    CHECK(init.out.find("initialised database 'postgresql://twostep:***@127.0.0.1:") !=
          std::string::npos);
    REQUIRE(run({"add", "alice", "--no-qr", "--active"}).code == 0);
    REQUIRE(run({"add", "bob", "--no-qr"}).code == 0);
    const CliResult list = run({"list"});
    REQUIRE(list.code == 0);
    CHECK(list.out.find("alice") != std::string::npos);
    CHECK(list.out.find("bob") != std::string::npos);
    CHECK(run({"disable", "alice"}).code == 0);
    CHECK(run({"remove", "bob"}).code == 0);
    CHECK(database.queryInt("SELECT COUNT(*) FROM users") == 1);
    CHECK(database.queryInt("SELECT COUNT(*) FROM users WHERE state = 'disabled'") == 1);
    // A second key for the same database is refused, naming the database without the password.
    const CliResult other = run({"init", "--master-key-file", (cli.dir() / "k2").string()});
    CHECK(other.code == 1);
    CHECK(other.err.find("is already initialised with another master key") != std::string::npos);
    // A wrong password: a clear error, and still not the (right or wrong) password.
    std::string wrongUrl = database.url();
    wrongUrl.replace(wrongUrl.find(password), password.size(), "not-the-" + password);
    cli.env()["TWOSTEP_DB"] = wrongUrl;
    const CliResult wrong = run({"list"});
    CHECK(wrong.code == 1);
    CHECK(wrong.err.find("password authentication failed") != std::string::npos);

    for (const CliResult& r : results) {
        CHECK(r.out.find(password) == std::string::npos);
        CHECK(r.err.find(password) == std::string::npos);
    }
}
