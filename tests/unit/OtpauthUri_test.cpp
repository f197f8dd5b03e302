#include "core/OtpauthUri.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <tuple>

#include "Oathtool.hpp"
#include "core/Base32.hpp"
#include "core/Error.hpp"

using namespace twostep::core;

namespace {

OtpauthAccount account(std::string issuer, std::string name, TotpParams params = {}) {
    return OtpauthAccount{std::move(issuer), std::move(name), "JBSWY3DPEHPK3PXP", params};
}

void checkSame(const OtpauthAccount& actual, const OtpauthAccount& expected) {
    CHECK(actual.issuer == expected.issuer);
    CHECK(actual.account == expected.account);
    CHECK(actual.secretBase32 == expected.secretBase32);
    CHECK(actual.params == expected.params);
}

}  // namespace

TEST_CASE("otpauth URI for a plain account", "[otpauth]") {
    CHECK(buildOtpauthUri(account("twostep", "alice")) ==
          "otpauth://totp/twostep:alice?secret=JBSWY3DPEHPK3PXP&issuer=twostep&algorithm=SHA1"
          "&digits=6&period=30");
    CHECK(buildOtpauthUri(account("prod", "bob", {Algorithm::Sha512, 8, 60})) ==
          "otpauth://totp/prod:bob?secret=JBSWY3DPEHPK3PXP&issuer=prod&algorithm=SHA512"
          "&digits=8&period=60");
}

TEST_CASE("issuer and account are percent-encoded in label and parameter", "[otpauth]") {
    const auto [issuer, name, label, issuerParameter] =
        GENERATE(table<std::string, std::string, std::string, std::string>({
            {"twostep", "jürgen@example.com", "twostep:j%C3%BCrgen%40example.com", "twostep"},
            {"twostep", "ops:team lead", "twostep:ops%3Ateam%20lead", "twostep"},
            {"ACME Corp", "system:serviceaccount:ci:deployer",
             "ACME%20Corp:system%3Aserviceaccount%3Aci%3Adeployer", "ACME%20Corp"},
            {"Cluster ☸", "a+b/c?d&e=f#g%h~_.-",
             "Cluster%20%E2%98%B8:a%2Bb%2Fc%3Fd%26e%3Df%23g%25h~_.-", "Cluster%20%E2%98%B8"},
            {"Ëxample:Co", "alice", "%C3%8Bxample%3ACo:alice", "%C3%8Bxample%3ACo"},
        }));
    CAPTURE(issuer, name);
    CHECK(buildOtpauthUri(account(issuer, name)) ==
          "otpauth://totp/" + label + "?secret=JBSWY3DPEHPK3PXP&issuer=" + issuerParameter +
              "&algorithm=SHA1&digits=6&period=30");
}

TEST_CASE("built URIs parse back to the same account", "[otpauth]") {
    const auto [issuer, name] = GENERATE(table<std::string, std::string>({
        {"twostep", "alice"},
        {"twostep", "jürgen@example.com"},
        {"twostep", "ops:team lead"},
        {"ACME Corp", "system:serviceaccount:ci:deployer"},
        {"Cluster ☸", "a+b/c?d&e=f#g%h~_.-"},
        {"Ëxample:Co", "user@corp:8443"},
        {"", "alice"},
        {"", "ops:team lead"},
        {"", "ünïcode user"},
    }));
    const auto params = GENERATE(TotpParams{}, TotpParams{Algorithm::Sha256, 8, 60},
                                 TotpParams{Algorithm::Sha512, 6, 15});
    CAPTURE(issuer, name);
    const OtpauthAccount original = account(issuer, name, params);
    const std::string uri = buildOtpauthUri(original);
    CAPTURE(uri);
    const std::optional<OtpauthAccount> parsed = parseOtpauthUri(uri);
    REQUIRE(parsed.has_value());
    checkSame(*parsed, original);
}

TEST_CASE("the secret is written in canonical base32", "[otpauth]") {
    OtpauthAccount relaxed = account("twostep", "alice");
    relaxed.secretBase32 = "jbsw y3dp-ehpk 3pxp";
    CHECK(buildOtpauthUri(relaxed) ==
          "otpauth://totp/twostep:alice?secret=JBSWY3DPEHPK3PXP&issuer=twostep&algorithm=SHA1"
          "&digits=6&period=30");
}

TEST_CASE("building refuses what no app could use", "[otpauth]") {
    OtpauthAccount badSecret = account("twostep", "alice");
    badSecret.secretBase32 = "JBSWY3DP1";
    CHECK_THROWS_MATCHES(buildOtpauthUri(badSecret), twostep::Error,
                         Catch::Message("cannot build an otpauth uri: the secret is not valid "
                                        "base32"));
    badSecret.secretBase32 = "";
    CHECK_THROWS_MATCHES(buildOtpauthUri(badSecret), twostep::Error,
                         Catch::Message("cannot build an otpauth uri: the secret is not valid "
                                        "base32"));
    CHECK_THROWS_MATCHES(buildOtpauthUri(account("twostep", "")), twostep::Error,
                         Catch::Message("cannot build an otpauth uri without an account name"));
    CHECK_THROWS_MATCHES(buildOtpauthUri(account("twostep", "alice", {Algorithm::Sha1, 7, 30})),
                         twostep::Error,
                         Catch::Message("cannot build an otpauth uri: invalid totp parameters"));
}

TEST_CASE("URIs written by other tools parse", "[otpauth]") {
    const auto [uri, issuer, name, secret, params] =
        GENERATE(table<std::string, std::string, std::string, std::string, TotpParams>({
            // The Key Uri Format page's examples.
            {"otpauth://totp/Example:alice@google.com?secret=JBSWY3DPEHPK3PXP&issuer=Example",
             "Example", "alice@google.com", "JBSWY3DPEHPK3PXP", TotpParams{}},
            {"otpauth://totp/ACME%20Co:john.doe@email.com?secret=HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ"
             "&issuer=ACME%20Co&algorithm=SHA1&digits=6&period=30",
             "ACME Co", "john.doe@email.com", "HXDMVJECJJWSRB3HWIZR4IFUGFTMXBOZ", TotpParams{}},
            {"otpauth://totp/Big%20Corporation%3A%20alice%40bigco.com?secret=JBSWY3DPEHPK3PXP"
             "&issuer=Big%20Corporation",
             "Big Corporation", "alice@bigco.com", "JBSWY3DPEHPK3PXP", TotpParams{}},
            // Issuer only in the label, or nowhere.
            {"otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP", "Example", "alice",
             "JBSWY3DPEHPK3PXP", TotpParams{}},
            {"otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP", "", "alice", "JBSWY3DPEHPK3PXP",
             TotpParams{}},
            // Spaces before the account are decoration, with or without an issuer prefix.
            {"otpauth://totp/%20%20alice?secret=JBSWY3DPEHPK3PXP&issuer=Example", "Example",
             "alice", "JBSWY3DPEHPK3PXP", TotpParams{}},
            // Case, padding and lower-case secrets as other generators write them.
            {"OTPAUTH://TOTP/x:bob?SECRET=jbswy3dpehpk3pxp&Digits=8&ALGORITHM=sha256&period=60",
             "x", "bob", "JBSWY3DPEHPK3PXP", TotpParams{Algorithm::Sha256, 8, 60}},
            {"otpauth://totp/x:bob?secret=MZXW6YTBOI======&algorithm=SHA-512&image=https%3A%2F%2F"
             "example.com%2Flogo.png&",
             "x", "bob", "MZXW6YTBOI", TotpParams{Algorithm::Sha512, 6, 30}},
        }));
    CAPTURE(uri);
    const std::optional<OtpauthAccount> parsed = parseOtpauthUri(uri);
    REQUIRE(parsed.has_value());
    checkSame(*parsed, OtpauthAccount{issuer, name, secret, params});
}

TEST_CASE("malformed otpauth URIs are refused", "[otpauth]") {
    const std::string ok = "otpauth://totp/twostep:alice?secret=JBSWY3DPEHPK3PXP&issuer=twostep";
    REQUIRE(parseOtpauthUri(ok).has_value());
    const auto uri =
        GENERATE(as<std::string>{}, "", "otpauth://totp", "otpauth://totp/",
                 "otpauth://totp/?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://hotp/alice?secret=JBSWY3DPEHPK3PXP&counter=0",
                 "https://totp/alice?secret=JBSWY3DPEHPK3PXP",
                 " otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP", "otpauth://totp/alice",
                 "otpauth://totp/alice?issuer=x",
                 "otpauth://totp/alice?secret=", "otpauth://totp/alice?secret",
                 "otpauth://totp/alice?=JBSWY3DPEHPK3PXP", "otpauth://totp/alice?secret=JBSWY3DP1",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&digits=7",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&digits=6a",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&digits=",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&digits=+6",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&digits=%206",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&digits=99999999999999",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&period=0",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&period=-30",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&period=3601",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&algorithm=MD5",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&algorithm=",
                 "otpauth://totp/Example:alice?secret=JBSWY3DPEHPK3PXP&issuer=Other",
                 "otpauth://totp/Example:?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/Example:%20?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/%20?secret=JBSWY3DPEHPK3PXP&issuer=Example",
                 "otpauth://totp/al%zzice?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%4?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%0A?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%00?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%C3%28?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%ED%A0%80?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%C0%AF?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%F4%90%80%80?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%E2%98?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice%98?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP&issuer=a%0Db",
                 "otpauth://totp/a/lice?secret=JBSWY3DPEHPK3PXP",
                 "otpauth://totp/alice?secret=JBSWY3DPEHPK3PXP#fragment");
    CAPTURE(uri);
    CHECK_FALSE(parseOtpauthUri(uri).has_value());
}

TEST_CASE("a code from a parsed URI matches the real oathtool", "[otpauth]") {
    const auto params = GENERATE(TotpParams{}, TotpParams{Algorithm::Sha256, 8, 60},
                                 TotpParams{Algorithm::Sha512, 6, 15});
    const SecretBytes secret = generateSecret();
    const std::string uri = buildOtpauthUri(
        OtpauthAccount{"twostep", "jürgen@example.com", base32::encode(secret.bytes()), params});
    const std::optional<OtpauthAccount> parsed = parseOtpauthUri(uri);
    REQUIRE(parsed.has_value());

    std::optional<std::vector<std::uint8_t>> decoded = base32::decode(parsed->secretBase32);
    REQUIRE(decoded.has_value());
    const SecretBytes fromUri(std::move(*decoded));
    const Seconds now = 1700000000;
    const std::string ours = generateTotp(fromUri, parsed->params, now);
    CHECK(ours == twostep::test::oathtoolTotp(parsed->secretBase32,
                                              twostep::test::OathtoolKey::Base32,
                                              toString(parsed->params.algorithm),
                                              parsed->params.digits, parsed->params.period, now));
    CHECK(verifyTotp(secret, ours, params, now, 0).check == CodeCheck::Matched);
}
