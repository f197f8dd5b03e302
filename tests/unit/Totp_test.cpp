#include "core/Totp.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <tuple>
#include <vector>

#include "Oathtool.hpp"
#include "core/Error.hpp"
#include "core/Hex.hpp"

using namespace twostep::core;
using twostep::test::OathtoolKey;
using twostep::test::oathtoolTotp;

namespace {

SecretBytes secretOf(std::string_view text) {
    return SecretBytes(std::vector<std::uint8_t>(text.begin(), text.end()));
}

/// The seeds of RFC 6238 Appendix B: the ASCII digits repeated to the hash's block of choice.
SecretBytes rfcSeed(Algorithm algorithm) {
    switch (algorithm) {
        case Algorithm::Sha1:
            return secretOf("12345678901234567890");
        case Algorithm::Sha256:
            return secretOf("12345678901234567890123456789012");
        case Algorithm::Sha512:
            return secretOf("1234567890123456789012345678901234567890123456789012345678901234");
    }
    FAIL("unknown algorithm");
    return {};
}

constexpr TotpParams Sha1Six{Algorithm::Sha1, 6, 30};

}  // namespace

TEST_CASE("RFC 6238 Appendix B vectors, generated and verified", "[totp]") {
    const auto [time, algorithm, code] = GENERATE(table<Seconds, Algorithm, std::string>({
        {59, Algorithm::Sha1, "94287082"},
        {59, Algorithm::Sha256, "46119246"},
        {59, Algorithm::Sha512, "90693936"},
        {1111111109, Algorithm::Sha1, "07081804"},
        {1111111109, Algorithm::Sha256, "68084774"},
        {1111111109, Algorithm::Sha512, "25091201"},
        {1111111111, Algorithm::Sha1, "14050471"},
        {1111111111, Algorithm::Sha256, "67062674"},
        {1111111111, Algorithm::Sha512, "99943326"},
        {1234567890, Algorithm::Sha1, "89005924"},
        {1234567890, Algorithm::Sha256, "91819424"},
        {1234567890, Algorithm::Sha512, "93441116"},
        {2000000000, Algorithm::Sha1, "69279037"},
        {2000000000, Algorithm::Sha256, "90698825"},
        {2000000000, Algorithm::Sha512, "38618901"},
        {20000000000, Algorithm::Sha1, "65353130"},
        {20000000000, Algorithm::Sha256, "77737706"},
        {20000000000, Algorithm::Sha512, "47863826"},
    }));
    CAPTURE(time, toString(algorithm));
    const SecretBytes seed = rfcSeed(algorithm);
    const TotpParams eight{algorithm, 8, 30};
    CHECK(generateTotp(seed, eight, time) == code);

    for (const int window : {0, 1}) {
        const TotpResult result = verifyTotp(seed, code, eight, time, window);
        CHECK(result.check == CodeCheck::Matched);
        CHECK(result.step == time / 30);
    }

    // A 6-digit code is the 8-digit one modulo 10^6 (RFC 4226 §5.3): its last six digits.
    const TotpParams six{algorithm, 6, 30};
    const std::string sixDigits = code.substr(2);
    CHECK(generateTotp(seed, six, time) == sixDigits);
    const TotpResult result = verifyTotp(seed, sixDigits, six, time, 1);
    CHECK(result.check == CodeCheck::Matched);
    CHECK(result.step == time / 30);
}

TEST_CASE("codes inside the window match with their own step and just outside do not", "[totp]") {
    const auto algorithm = GENERATE(Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512);
    const int window = GENERATE(0, 1, 2, 3);
    const TotpParams params{algorithm, 6, 30};
    const SecretBytes seed = rfcSeed(algorithm);
    const Seconds now = 1111111109;  // mid-step: the edges are about steps, not seconds
    const std::int64_t current = now / 30;
    CAPTURE(toString(algorithm), window);

    for (int offset = -window; offset <= window; ++offset) {
        CAPTURE(offset);
        const std::string code = generateTotp(seed, params, now + offset * 30);
        const TotpResult result = verifyTotp(seed, code, params, now, window);
        CHECK(result.check == CodeCheck::Matched);
        CHECK(result.step == current + offset);
    }
    for (const int offset : {-(window + 1), window + 1}) {
        CAPTURE(offset);
        const std::string code = generateTotp(seed, params, now + offset * 30);
        CHECK(verifyTotp(seed, code, params, now, window).check == CodeCheck::NoMatch);
    }
}

TEST_CASE("the window edges are step boundaries", "[totp]") {
    const SecretBytes seed = rfcSeed(Algorithm::Sha1);
    const std::string previous = generateTotp(seed, Sha1Six, 1111111079);  // step 37037035
    // At the last second of the next step the previous code is still within window 1...
    CHECK(verifyTotp(seed, previous, Sha1Six, 1111111109, 1).check == CodeCheck::Matched);
    // ...and one second later, two steps away, it is not.
    CHECK(verifyTotp(seed, previous, Sha1Six, 1111111110, 1).check == CodeCheck::NoMatch);
}

TEST_CASE("malformed codes are refused before any HMAC", "[totp]") {
    const SecretBytes seed = rfcSeed(Algorithm::Sha1);
    const Seconds now = 1111111109;
    const std::string good = generateTotp(seed, Sha1Six, now);
    REQUIRE(verifyTotp(seed, good, Sha1Six, now, 1).check == CodeCheck::Matched);

    const auto code = GENERATE_COPY(as<std::string>{},
                                    "",                                        // empty
                                    good.substr(0, 5),                         // too short
                                    good + "0",                                // too long
                                    "0" + good,                                // too long, leading
                                    good.substr(0, 5) + "a",                   // non-digit
                                    "abcdef",                                  // letters
                                    good.substr(0, 3) + " " + good.substr(3),  // inner space
                                    " " + good,                                // leading space
                                    good + " ",                                // trailing space
                                    " " + good.substr(1),                      // space for a digit
                                    "+" + good.substr(1),                      // a sign
                                    "-" + good.substr(1),                      // a minus
                                    good.substr(0, 5) + ".",                   // punctuation
                                    std::string("07081\0", 6),                 // an embedded NUL
                                    "\u0660\u0667\u0660\u0668\u0661\u0668",    // Arabic-Indic
                                    "\uFF10\uFF17\uFF10\uFF18\uFF11\uFF18",    // fullwidth
                                    "\u0660\u0667\u0660",  // 3 Arabic-Indic digits: 6 bytes
                                    "\uFF10\uFF17",        // 2 fullwidth digits: 6 bytes
                                    "0708\u0661");         // ASCII and one Arabic-Indic: 6 bytes
    CAPTURE(code);
    const TotpResult result = verifyTotp(seed, code, Sha1Six, now, 1);
    CHECK(result.check == CodeCheck::Malformed);
    CHECK(result.step == 0);
    CHECK_FALSE(isWellFormedCode(code, 6));
}

TEST_CASE("an 8-digit user refuses 6-digit codes, even the matching digits", "[totp]") {
    const SecretBytes seed = rfcSeed(Algorithm::Sha1);
    const TotpParams eight{Algorithm::Sha1, 8, 30};
    const Seconds now = 1111111109;
    const std::string code = generateTotp(seed, eight, now);
    REQUIRE(code == "07081804");
    CHECK(verifyTotp(seed, code.substr(0, 6), eight, now, 1).check == CodeCheck::Malformed);
    // The 6-digit code of the same step is the suffix: liboath's plain validate would take it.
    const std::string sixDigitCode = generateTotp(seed, Sha1Six, now);
    REQUIRE(sixDigitCode == code.substr(2));
    CHECK(verifyTotp(seed, sixDigitCode, eight, now, 1).check == CodeCheck::Malformed);
    // Eight bytes that are not eight ASCII digits.
    CHECK(verifyTotp(seed, "\u0660\u0667\u0660\u0668", eight, now, 1).check ==
          CodeCheck::Malformed);
    // And a 6-digit user refuses an 8-digit code.
    CHECK(verifyTotp(seed, code, Sha1Six, now, 1).check == CodeCheck::Malformed);
}

TEST_CASE("a well-formed wrong code does not match", "[totp]") {
    const SecretBytes seed = rfcSeed(Algorithm::Sha1);
    const Seconds now = 1111111109;
    const std::string good = generateTotp(seed, Sha1Six, now);
    std::string wrong = good;
    wrong[5] = good[5] == '9' ? '0' : static_cast<char>(good[5] + 1);
    const TotpResult result = verifyTotp(seed, wrong, Sha1Six, now, 1);
    CHECK(result.check == CodeCheck::NoMatch);
    CHECK(result.step == 0);
    // The right code under another secret does not match either.
    CHECK(verifyTotp(secretOf("another secret, 20 b"), good, Sha1Six, now, 1).check ==
          CodeCheck::NoMatch);
}

TEST_CASE("secrets of odd lengths agree with oathtool and verify", "[totp]") {
    const auto size = GENERATE(as<std::size_t>{}, 1, 7, 33);
    const auto algorithm = GENERATE(Algorithm::Sha1, Algorithm::Sha256, Algorithm::Sha512);
    const auto digits = GENERATE(6, 8);
    const SecretBytes secret = generateSecret(size);
    const TotpParams params{algorithm, digits, 30};
    const Seconds now = 1700000000;
    CAPTURE(size, toString(algorithm), digits);

    const std::string code = generateTotp(secret, params, now);
    CHECK(code == oathtoolTotp(twostep::core::hex::encode(secret.bytes()), OathtoolKey::Hex,
                               toString(algorithm), digits, 30, now));
    const TotpResult result = verifyTotp(secret, code, params, now, 1);
    CHECK(result.check == CodeCheck::Matched);
    CHECK(result.step == now / 30);
}

TEST_CASE("periods other than 30 seconds", "[totp]") {
    const auto [period, algorithm] = GENERATE(table<int, Algorithm>({
        {60, Algorithm::Sha1},
        {60, Algorithm::Sha256},
        {15, Algorithm::Sha1},
        {15, Algorithm::Sha512},
        {1, Algorithm::Sha1},
        {3600, Algorithm::Sha256},
    }));
    const SecretBytes secret = generateSecret();
    const TotpParams params{algorithm, 6, period};
    const Seconds now = 1111111111;
    CAPTURE(period, toString(algorithm));

    const std::string code = generateTotp(secret, params, now);
    CHECK(code == oathtoolTotp(twostep::core::hex::encode(secret.bytes()), OathtoolKey::Hex,
                               toString(algorithm), 6, period, now));
    const TotpResult result = verifyTotp(secret, code, params, now, 0);
    CHECK(result.check == CodeCheck::Matched);
    CHECK(result.step == now / period);
    // One period later the code belongs to the previous step.
    const TotpResult later = verifyTotp(secret, code, params, now + period, 1);
    CHECK(later.check == CodeCheck::Matched);
    CHECK(later.step == now / period);
    CHECK(verifyTotp(secret, code, params, now + 2 * period, 1).check == CodeCheck::NoMatch);
}

TEST_CASE("when two steps share a code, the newest step is reported", "[totp]") {
    // Found by search and checked with oathtool: this secret's 6-digit SHA1 codes for steps 1000
    // and 1001 are both 191415, a 1-in-10^6 collision.
    const SecretBytes secret = secretOf("twostep-collision-1972592");
    REQUIRE(generateTotp(secret, Sha1Six, 30000) == "191415");
    REQUIRE(generateTotp(secret, Sha1Six, 30030) == "191415");
    REQUIRE(oathtoolTotp(twostep::core::hex::encode(secret.bytes()), OathtoolKey::Hex, "SHA1", 6,
                         30, 30000) == "191415");
    const auto now = GENERATE(as<Seconds>{}, 30000, 30030, 30059);
    const TotpResult result = verifyTotp(secret, "191415", Sha1Six, now, 1);
    CHECK(result.check == CodeCheck::Matched);
    CHECK(result.step == 1001);
}

TEST_CASE("no step before the epoch is tried", "[totp]") {
    const SecretBytes seed = rfcSeed(Algorithm::Sha1);
    const std::string first = generateTotp(seed, Sha1Six, 0);
    const TotpResult result = verifyTotp(seed, first, Sha1Six, 10, 2);
    CHECK(result.check == CodeCheck::Matched);
    CHECK(result.step == 0);
}

TEST_CASE("invalid parameters are errors, not silent refusals", "[totp]") {
    const SecretBytes seed = rfcSeed(Algorithm::Sha1);
    const std::string paramsMessage =
        "invalid totp parameters: digits must be 6 or 8 and the period 1..3600 s";
    for (const TotpParams params :
         {TotpParams{Algorithm::Sha1, 7, 30}, TotpParams{Algorithm::Sha1, 0, 30},
          TotpParams{Algorithm::Sha1, 10, 30}, TotpParams{Algorithm::Sha1, 6, 0},
          TotpParams{Algorithm::Sha1, 6, -30}, TotpParams{Algorithm::Sha1, 6, 3601}}) {
        CAPTURE(params.digits, params.period);
        CHECK_FALSE(isValid(params));
        CHECK_THROWS_MATCHES(verifyTotp(seed, "123456", params, 1000, 1), twostep::Error,
                             Catch::Message(paramsMessage));
        CHECK_THROWS_MATCHES(generateTotp(seed, params, 1000), twostep::Error,
                             Catch::Message(paramsMessage));
    }
    CHECK_THROWS_MATCHES(verifyTotp(seed, "123456", Sha1Six, 1000, -1), twostep::Error,
                         Catch::Message("invalid totp window -1: must be 0..10"));
    CHECK_THROWS_MATCHES(verifyTotp(seed, "123456", Sha1Six, 1000, MaxWindow + 1), twostep::Error,
                         Catch::Message("invalid totp window 11: must be 0..10"));
    CHECK_THROWS_MATCHES(verifyTotp(SecretBytes(), "123456", Sha1Six, 1000, 1), twostep::Error,
                         Catch::Message("cannot compute a totp code with an empty secret"));
    CHECK_THROWS_MATCHES(generateTotp(seed, Sha1Six, -1), twostep::Error,
                         Catch::Message("cannot compute a totp code for time -1"));
    CHECK(verifyTotp(seed, generateTotp(seed, Sha1Six, 1000), Sha1Six, 1000, MaxWindow).check ==
          CodeCheck::Matched);
}

TEST_CASE("valid parameters", "[totp]") {
    CHECK(isValid(TotpParams{}));
    CHECK(isValid(TotpParams{Algorithm::Sha512, 8, 1}));
    CHECK(isValid(TotpParams{Algorithm::Sha256, 6, 3600}));
    CHECK(TotpParams{} == TotpParams{Algorithm::Sha1, 6, 30});
}

TEST_CASE("algorithm names", "[totp]") {
    const auto [text, expected] = GENERATE(table<std::string, Algorithm>({
        {"SHA1", Algorithm::Sha1},
        {"sha1", Algorithm::Sha1},
        {"SHA-1", Algorithm::Sha1},
        {"SHA256", Algorithm::Sha256},
        {"sha-256", Algorithm::Sha256},
        {"Sha_256", Algorithm::Sha256},
        {"SHA512", Algorithm::Sha512},
        {"sha512", Algorithm::Sha512},
    }));
    CAPTURE(text);
    const auto parsed = parseAlgorithm(text);
    REQUIRE(parsed.has_value());
    CHECK(*parsed == expected);
    CHECK(parseAlgorithm(toString(expected)) == expected);
}

TEST_CASE("unknown algorithm names are refused", "[totp]") {
    const auto text = GENERATE(as<std::string>{}, "", "SHA", "MD5", "SHA384", "SHA-", "SHA--1",
                               "SHA 1", " SHA1", "SHA1 ", "HMAC-SHA1", "SHA3-256", "sha1\n");
    CAPTURE(text);
    CHECK_FALSE(parseAlgorithm(text).has_value());
}

TEST_CASE("algorithm spelling for otpauth URIs", "[totp]") {
    CHECK(toString(Algorithm::Sha1) == "SHA1");
    CHECK(toString(Algorithm::Sha256) == "SHA256");
    CHECK(toString(Algorithm::Sha512) == "SHA512");
}

TEST_CASE("well-formed codes are exactly the enrolled number of ASCII digits", "[totp]") {
    CHECK(isWellFormedCode("000000", 6));
    CHECK(isWellFormedCode("99999999", 8));
    CHECK_FALSE(isWellFormedCode("99999999", 6));
    CHECK_FALSE(isWellFormedCode("999999", 8));
    CHECK_FALSE(isWellFormedCode("", 0));
    CHECK_FALSE(isWellFormedCode("", -1));
}

TEST_CASE("timeStep divides by the period", "[totp]") {
    CHECK(timeStep(59, 30) == 1);
    CHECK(timeStep(60, 30) == 2);
    CHECK(timeStep(1111111109, 30) == 0x23523EC);
    CHECK(timeStep(20000000000, 30) == 0x27BC86AA);
}
