#include "core/RecoveryCodes.hpp"

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "Subprocess.hpp"
#include "core/Error.hpp"
#include "core/Hex.hpp"
#include "core/Totp.hpp"
#include "support/TempDir.hpp"

using namespace twostep::core;

namespace {

// Hand-written shape checks: std::regex trips a GCC 12 maybe-uninitialized false positive
// under -fsanitize=address with -Werror.

/// Four groups of four symbols of "0123456789abcdefghjkmnpqrstvwxyz", joined by dashes.
bool hasCodeShape(std::string_view code) {
    constexpr std::string_view Alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
    if (code.size() != 19) {
        return false;
    }
    for (std::size_t i = 0; i < code.size(); ++i) {
        const bool dashHere = i % 5 == 4;
        if (dashHere ? code[i] != '-' : Alphabet.find(code[i]) == std::string_view::npos) {
            return false;
        }
    }
    return true;
}

bool isLowerHex(std::string_view text) {
    return text.find_first_not_of("0123456789abcdef") == std::string_view::npos;
}

/// 32 lower-case hex digits, '$', 64 lower-case hex digits.
bool hasHashShape(std::string_view stored) {
    return stored.size() == 97 && stored[32] == '$' && isLowerHex(stored.substr(0, 32)) &&
           isLowerHex(stored.substr(33));
}

/// SHA-256 of `bytes` in hex, from the real openssl binary (an independent implementation).
std::string opensslSha256(const std::string& bytes) {
    const twostep::test::TempDir dir("twostep-recovery");
    const std::filesystem::path input = dir / "input";
    {
        std::ofstream out(input, std::ios::binary);
        out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    }
    const twostep::test::ProcessResult result =
        twostep::test::runProcess({"openssl", "dgst", "-sha256", "-r", input.string()});
    INFO("openssl: " << result.error << " (install the Debian package openssl)");
    REQUIRE(result.started);
    REQUIRE(result.exitCode == 0);
    return result.output.substr(0, 64);
}

}  // namespace

TEST_CASE("recovery codes look like k7qm-2xvd-9fhw-c3tp and differ", "[recovery]") {
    const std::vector<std::string> codes = generateRecoveryCodes(10);
    REQUIRE(codes.size() == 10);
    const std::set<std::string> distinct(codes.begin(), codes.end());
    CHECK(distinct.size() == 10);
    for (const std::string& code : codes) {
        CAPTURE(code);
        CHECK(hasCodeShape(code));
        CHECK(looksLikeRecoveryCode(code));
        // Never mistaken for a TOTP code of either length.
        CHECK_FALSE(isWellFormedCode(code, 6));
        CHECK_FALSE(isWellFormedCode(code, 8));
    }
}

TEST_CASE("recovery codes use the whole 32-symbol alphabet", "[recovery]") {
    std::set<char> seen;
    for (const std::string& code : generateRecoveryCodes(200)) {
        for (const char c : code) {
            if (c != '-') {
                seen.insert(c);
            }
        }
    }
    // 3200 symbols drawn from 32: a missing symbol means a broken encoder, not bad luck.
    CHECK(seen.size() == 32);
    CHECK(seen.count('i') == 0);
    CHECK(seen.count('l') == 0);
    CHECK(seen.count('o') == 0);
    CHECK(seen.count('u') == 0);
}

TEST_CASE("the number of recovery codes is bounded", "[recovery]") {
    CHECK(generateRecoveryCodes(0).empty());
    CHECK_THROWS_MATCHES(generateRecoveryCodes(-1), twostep::Error,
                         Catch::Message("cannot generate -1 recovery codes: must be 0..1000"));
    CHECK_THROWS_MATCHES(generateRecoveryCodes(1001), twostep::Error,
                         Catch::Message("cannot generate 1001 recovery codes: must be 0..1000"));
}

TEST_CASE("what looks like a recovery code", "[recovery]") {
    const auto [text, looks] = GENERATE(table<std::string, bool>({
        {"k7qm-2xvd-9fhw-c3tp", true},
        {"K7QM-2XVD-9FHW-C3TP", true},
        {"k7qm2xvd9fhwc3tp", true},
        {"k7qm 2xvd 9fhw c3tp", true},
        {" k7qm-2xvd-9fhw-c3tp ", true},
        {"k7qm-2xvd-9fhw-c3tO", true},  // O read as 0
        {"k7qm-2xvd-9fhw-c3ti", true},  // i read as 1
        {"k7qm-2xvd-9fhw-c3t", false},
        {"k7qm-2xvd-9fhw-c3tpx", false},
        {"k7qm-2xvd-9fhw-c3tu", false},  // u is not in the alphabet
        {"k7qm_2xvd_9fhw_c3tp", false},
        {"k7qm-2xvd-9fhw-c3t!", false},
        {"k7qm-2xvd-9fhw-c3t\xC3\xA9", false},
        {"123456", false},
        {"12345678", false},
        {"", false},
        {"----", false},
    }));
    CAPTURE(text);
    CHECK(looksLikeRecoveryCode(text) == looks);
}

TEST_CASE("recovery codes are stored as salted SHA-256", "[recovery]") {
    const std::string code = generateRecoveryCodes(1).front();
    const std::string first = hashRecoveryCode(code);
    const std::string second = hashRecoveryCode(code);
    CHECK(hasHashShape(first));
    CHECK(first != second);  // a fresh salt each time
    CHECK(first.find(code) == std::string::npos);

    // Recompute with the openssl binary: SHA-256(salt bytes || code without dashes).
    std::string normalised = code;
    std::erase(normalised, '-');
    const auto salt = hex::decode(first.substr(0, 32));
    REQUIRE(salt.has_value());
    CHECK(opensslSha256(std::string(salt->begin(), salt->end()) + normalised) == first.substr(33));
}

TEST_CASE("a recovery code matches its hash however it is typed", "[recovery]") {
    const std::string code = "k7qm-2xvd-9fhw-c301";
    const std::string stored = hashRecoveryCode(code);
    const auto typed = GENERATE(as<std::string>{}, "k7qm-2xvd-9fhw-c301", "K7QM-2XVD-9FHW-C301",
                                "k7qm2xvd9fhwc301", "k7qm 2xvd 9fhw c301", "K7QM2XVD9FHWC3OL");
    CAPTURE(typed);
    CHECK(matchesRecoveryCode(typed, stored));
}

TEST_CASE("a different code does not match", "[recovery]") {
    const std::string stored = hashRecoveryCode("k7qm-2xvd-9fhw-c3tp");
    CHECK_FALSE(matchesRecoveryCode("k7qm-2xvd-9fhw-c3tq", stored));
    CHECK_FALSE(matchesRecoveryCode("a7qm-2xvd-9fhw-c3tp", stored));
    CHECK_FALSE(matchesRecoveryCode("k7qm-2xvd-9fhw-c3t", stored));
    CHECK_FALSE(matchesRecoveryCode("", stored));
    CHECK_FALSE(matchesRecoveryCode(stored, stored));
    for (const std::string& other : generateRecoveryCodes(20)) {
        CHECK_FALSE(matchesRecoveryCode(other, stored));
    }
}

TEST_CASE("a malformed stored hash never matches", "[recovery]") {
    const std::string code = "k7qm-2xvd-9fhw-c3tp";
    const std::string stored = hashRecoveryCode(code);
    REQUIRE(matchesRecoveryCode(code, stored));
    const auto bad = GENERATE_COPY(as<std::string>{}, "", "$", "nonsense",
                                   stored.substr(0, 32) + stored.substr(33),        // no '$'
                                   stored.substr(2),                                // short salt
                                   stored.substr(0, stored.size() - 2),             // short hash
                                   stored + "00",                                   // long hash
                                   "00" + stored,                                   // long salt
                                   stored + "$",                                    // second '$'
                                   stored.substr(0, 33),                            // salt only
                                   "$" + stored.substr(33),                         // hash only
                                   stored.substr(0, 40) + "g" + stored.substr(41),  // non-hex
                                   stored.substr(0, 40) + " " + stored.substr(41));
    CAPTURE(bad);
    CHECK_FALSE(matchesRecoveryCode(code, bad));
}

TEST_CASE("hashing a malformed recovery code is an error", "[recovery]") {
    CHECK_THROWS_MATCHES(hashRecoveryCode("123456"), twostep::Error,
                         Catch::Message("cannot hash a malformed recovery code"));
}
