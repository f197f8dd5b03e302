#include "CommandLine.hpp"

#include <catch2/catch.hpp>

#include <array>

using namespace twostep::enroll;

namespace {

const std::array<OptionSpec, 3> Specs = {{{"digits", true, "N"}, {"json", false}, {"help", false}}};

ParsedArgs parse(std::vector<std::string> args) { return parseArgs(args, Specs, "`test`"); }

}  // namespace

TEST_CASE("long options take values after = or as the next argument", "[enroll][cli]") {
    const ParsedArgs a = parse({"alice", "--digits=8", "--json", "bob"});
    CHECK(a.value("digits") == "8");
    CHECK(a.has("json"));
    CHECK(a.positionals == std::vector<std::string>{"alice", "bob"});

    const ParsedArgs b = parse({"--digits", "6", "alice", "--digits", "8"});
    CHECK(b.value("digits") == "8");  // the last one wins
    CHECK(b.positionals == std::vector<std::string>{"alice"});

    const ParsedArgs c = parse({"--", "--json", "-"});
    CHECK_FALSE(c.has("json"));
    CHECK(c.positionals == std::vector<std::string>{"--json", "-"});

    CHECK(parse({"-h"}).has("help"));
    CHECK(parse({"--digits="}).value("digits") == "");
}

TEST_CASE("option mistakes are usage errors that name the option", "[enroll][cli]") {
    CHECK_THROWS_MATCHES(parse({"--colour"}), UsageError,
                         Catch::Message("unknown option '--colour' for `test`"));
    CHECK_THROWS_MATCHES(parse({"-x"}), UsageError,
                         Catch::Message("unknown option '-x' for `test` (options are long, like "
                                        "--help)"));
    CHECK_THROWS_MATCHES(parse({"--digits"}), UsageError,
                         Catch::Message("option '--digits' needs a value (--digits N)"));
    CHECK_THROWS_MATCHES(parse({"--json=yes"}), UsageError,
                         Catch::Message("option '--json' takes no value"));
}

TEST_CASE("parsing can stop at the first positional (the command)", "[enroll][cli]") {
    std::vector<std::string> rest;
    const std::vector<std::string> args = {"--json", "add", "--digits", "8"};
    const ParsedArgs global = parseArgs(args, Specs, "`test`", true, &rest);
    CHECK(global.has("json"));
    CHECK(rest == std::vector<std::string>{"add", "--digits", "8"});
}

TEST_CASE("integer options are range-checked", "[enroll][cli]") {
    CHECK(parseIntOption("10", "--count", 1, 100) == 10);
    for (const char* bad : {"0", "101", "", "1x", " 5", "-3", "99999999999"}) {
        INFO(bad);
        CHECK_THROWS_AS(parseIntOption(bad, "--count", 1, 100), UsageError);
    }
    CHECK_THROWS_WITH(parseIntOption("abc", "--count", 1, 100),
                      "--count must be a whole number from 1 to 100, not 'abc'");
}
