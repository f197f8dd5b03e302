#include "Import.hpp"

#include <catch2/catch.hpp>

#include "Csv.hpp"

using namespace twostep::enroll;
using twostep::core::Algorithm;

namespace {

/// A valid 160-bit base32 secret.
const std::string Secret = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

}  // namespace

TEST_CASE("CSV records follow RFC 4180 and remember their line", "[enroll][csv]") {
    const auto records = parseCsv("a,b\r\n\n\"c,1\",\"say \"\"hi\"\"\"\n\"multi\nline\",x\n  \nlast");
    REQUIRE(records.size() == 4);
    CHECK(records[0].line == 1);
    CHECK(records[0].fields == std::vector<std::string>{"a", "b"});
    CHECK(records[1].line == 3);
    CHECK(records[1].fields == std::vector<std::string>{"c,1", "say \"hi\""});
    CHECK(records[2].line == 4);
    CHECK(records[2].fields == std::vector<std::string>{"multi\nline", "x"});
    CHECK(records[3].line == 7);
    CHECK(records[3].fields == std::vector<std::string>{"last"});

    CHECK(parseCsv("").empty());
    CHECK(parseCsv("\n\r\n\n").empty());
    CHECK(parseCsv("a,,\n").at(0).fields == std::vector<std::string>{"a", "", ""});
    CHECK(parseCsv("\"\"\n").at(0).fields == std::vector<std::string>{""});
}

TEST_CASE("malformed CSV names the line", "[enroll][csv]") {
    CHECK_THROWS_MATCHES(parseCsv("a,b\n\"open,x\n\n"), CsvError,
                         Catch::Message("line 2: a quoted field is not closed"));
    CHECK_THROWS_MATCHES(
        parseCsv("a,b\nc,\"d\"e\n"), CsvError,
        Catch::Message("line 2: unexpected text after a closing quote (a field is either quoted "
                       "whole or not at all)"));
    CHECK_THROWS_MATCHES(parseCsv("a,b\n\nc,d\"\n"), CsvError,
                         Catch::Message("line 3: a quote inside an unquoted field (quote the "
                                        "whole field and double the quote)"));
}

TEST_CASE("import rows take defaults, a header and optional parameters", "[enroll][import]") {
    const auto rows = parseImport("username,secret,algorithm,digits,period\n"
                                  "alice," + Secret + "\n"
                                  "\n"
                                  " bob , " + Secret + " ,sha256,8,60\n"
                                  "\"carol, ops\",\"" + Secret + "\",,,\n"
                                  "dave,jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp,SHA512,,15\r\n");
    REQUIRE(rows.size() == 4);
    CHECK(rows[0].line == 2);
    CHECK(rows[0].username == "alice");
    CHECK(rows[0].secret.size() == 20);
    CHECK(rows[0].params == twostep::core::TotpParams{});
    CHECK(rows[1].line == 4);
    CHECK(rows[1].username == "bob");
    CHECK(rows[1].params == twostep::core::TotpParams{Algorithm::Sha256, 8, 60});
    CHECK(rows[2].username == "carol, ops");
    CHECK(rows[2].params == twostep::core::TotpParams{});
    CHECK(rows[3].params == twostep::core::TotpParams{Algorithm::Sha512, 6, 15});
    CHECK(rows[3].secret.size() == 20);
}

TEST_CASE("the first bad import row is reported with its line and reason", "[enroll][import]") {
    const std::string head = "username,secret\nalice," + Secret + "\n";
    const auto failsWith = [&](const std::string& row, const std::string& message) {
        INFO(row);
        CHECK_THROWS_MATCHES(parseImport(head + "\n" + row + "\n"), CsvError,
                             Catch::Message(message));
    };
    failsWith("bob,not*base32", "line 4: secret is not valid base32 (letters A-Z and digits 2-7)");
    failsWith("bob,JBSWY3DPEHPK3PXP",
              "line 4: secret is too short (80 bits; at least 128 bits are needed)");
    failsWith("bob,", "line 4: secret is empty");
    failsWith("bob", "line 4: expected 2 to 5 fields (username,secret[,algorithm,digits,period]), "
                     "found 1");
    failsWith("bob," + Secret + ",SHA1,6,30,extra",
              "line 4: expected 2 to 5 fields (username,secret[,algorithm,digits,period]), "
              "found 6");
    failsWith("bob," + Secret + ",MD5", "line 4: algorithm 'MD5' is not SHA1, SHA256 or SHA512");
    failsWith("bob," + Secret + ",,7", "line 4: digits must be 6 or 8, not '7'");
    failsWith("bob," + Secret + ",,,0", "line 4: period must be 1 to 3600 seconds, not '0'");
    failsWith("bob," + Secret + ",,,3601",
              "line 4: period must be 1 to 3600 seconds, not '3601'");
    failsWith("bob," + Secret + ",,,30s",
              "line 4: period must be 1 to 3600 seconds, not '30s'");
    failsWith("," + Secret, "line 4: username is empty");
    failsWith("\"bo\tb\"," + Secret, "line 4: username contains a control character");
    failsWith("\xff\xfe," + Secret, "line 4: username is not valid UTF-8");
    failsWith("alice," + Secret, "line 4: user 'alice' appears twice (first on line 2)");
}

TEST_CASE("a file without rows is refused", "[enroll][import]") {
    CHECK_THROWS_WITH(parseImport("username,secret\n\n"),
                      "the file holds no users to import (expected rows of "
                      "username,secret[,algorithm,digits,period])");
    CHECK_THROWS_WITH(parseImport(""), Catch::Contains("holds no users"));
}

TEST_CASE("usernames are printable UTF-8 without surrounding spaces", "[enroll][import]") {
    CHECK_FALSE(usernameProblem("alice@example.com").has_value());
    CHECK_FALSE(usernameProblem("oidc:J\xc3\xbcrgen").has_value());
    CHECK_FALSE(usernameProblem("system:serviceaccount:ns:sa").has_value());
    CHECK(usernameProblem("") == "username is empty");
    CHECK(usernameProblem(std::string(257, 'a')) == "username is longer than 256 bytes");
    CHECK(usernameProblem(" alice") == "username starts or ends with a space");
    CHECK(usernameProblem("al\x7f" "ice") == "username contains a control character");
    CHECK(usernameProblem("\xc0\x80") == "username is not valid UTF-8");  // overlong NUL
    CHECK(usernameProblem("\xed\xa0\x80") == "username is not valid UTF-8");  // surrogate
    CHECK(usernameProblem("abc\xe2\x82") == "username is not valid UTF-8");  // truncated
}
