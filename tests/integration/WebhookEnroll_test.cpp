// Self-enrolment over the wire (design §3b): the real twostep-webhook, TLS on loopback, reviews
// shaped like the API server's (fixture 0013 with the enrolment paths). What the API server would
// hand back is the review with the returned JSONPatch applied.
#include <catch2/catch.hpp>

#include <sstream>
#include <string>
#include <vector>

#include "core/Base32.hpp"
#include "core/OtpauthUri.hpp"
#include "core/Totp.hpp"
#include "integration/WebhookHarness.hpp"

using twostep::test::HttpResult;
using twostep::test::Webhook;

namespace {

std::string review(const std::string& path, const std::string& verb,
                   const std::string& user = "alice") {
    nlohmann::json body = twostep::test::fixtureJson("0013");
    body["request"]["object"]["spec"]["nonResourceAttributes"] = {{"path", path}, {"verb", verb}};
    body["request"]["userInfo"]["username"] = user;
    return body.dump();
}

/// The verb of the review as the API server returns it: patched when the webhook sent a patch.
std::string returnedVerb(const HttpResult& result, const std::string& body) {
    nlohmann::json object = nlohmann::json::parse(body).at("request").at("object");
    const nlohmann::json response = result.json().at("response");
    if (response.contains("patch")) {
        object = object.patch(nlohmann::json::parse(
            twostep::test::base64Decode(response.at("patch").get<std::string>())));
    }
    return object.at("spec").at("nonResourceAttributes").at("verb").get<std::string>();
}

/// The secret in an otpauth URI.
twostep::core::SecretBytes secretOf(const std::string& uri) {
    const auto account = twostep::core::parseOtpauthUri(uri);
    REQUIRE(account);
    auto bytes = twostep::core::base32::decode(account->secretBase32);
    REQUIRE(bytes);
    return twostep::core::SecretBytes(std::move(*bytes));
}

std::string codeAt(const twostep::core::SecretBytes& secret, twostep::core::Seconds at) {
    return twostep::core::generateTotp(secret, twostep::core::TotpParams{}, at);
}

}  // namespace

TEST_CASE("an invited user enrols over the wire; the secret is never logged",
          "[integration][webhook][enroll]") {
    Webhook webhook;
    webhook.store().putInvitation({"alice", "admin", Webhook::now(), Webhook::now() + 600},
                                  Webhook::now());
    webhook.start({"--log-level=debug"});

    // /validate cannot answer the secret: refused before anything is made.
    const std::string begin = review("/twostep.dev/enroll", "enroll");
    const HttpResult validate = webhook.post("/validate?timeout=5s", begin);
    CHECK_FALSE(validate.allowed());
    CHECK(validate.reason() == "enroll_needs_mutate");
    CHECK_FALSE(webhook.store().findPendingEnrollment("alice"));

    // A first begin, then a second one: the second secret replaces the first.
    const HttpResult first = webhook.post("/mutate?timeout=5s", begin);
    REQUIRE(first.allowed());
    CHECK(first.reason() == "enroll_started");
    const std::string firstUri = returnedVerb(first, begin);
    const HttpResult second = webhook.post("/mutate?timeout=5s", begin);
    REQUIRE(second.allowed());
    const std::string uri = returnedVerb(second, begin);
    INFO(uri);
    REQUIRE(uri.rfind("otpauth://totp/twostep:alice?secret=", 0) == 0);
    CHECK(uri != firstUri);
    // The allowed answer carries no message or warning holding it.
    CHECK(second.json().at("response").dump().find("otpauth") == std::string::npos);

    const auto now = Webhook::now();
    const std::string stale = codeAt(secretOf(firstUri), now);
    const std::string fresh = codeAt(secretOf(uri), now);
    if (stale != fresh) {  // a 1-in-10^6 collision would make this check meaningless
        const std::string body = review("/twostep.dev/enroll/confirm", stale);
        const HttpResult refused = webhook.post("/mutate?timeout=5s", body);
        CHECK_FALSE(refused.allowed());
        CHECK(refused.reason() == "wrong_code");
    }
    const std::string confirm = review("/twostep.dev/enroll/confirm", fresh);
    const HttpResult confirmed = webhook.post("/mutate?timeout=5s", confirm);
    REQUIRE(confirmed.allowed());
    CHECK(confirmed.reason() == "enrolled");
    std::istringstream words(returnedVerb(confirmed, confirm));
    std::vector<std::string> recovery;
    for (std::string word; words >> word;) {
        recovery.push_back(word);
    }
    CHECK(recovery.size() == 10);

    // alice is enrolled with the scanned secret: her next change with its code is allowed.
    const auto alice = webhook.store().findUser("alice");
    REQUIRE(alice);
    CHECK(alice->state == twostep::core::UserState::Active);
    const HttpResult withRecovery = webhook.post(
        "/mutate?timeout=5s", twostep::test::reviewFor("0004", "alice", recovery.front()));
    CHECK(withRecovery.allowed());
    CHECK(withRecovery.reason() == "recovery_code");

    // bob, not invited, is refused and told whom to ask.
    const HttpResult bob = webhook.post("/mutate?timeout=5s", review("/twostep.dev/enroll",
                                                                     "enroll", "bob"));
    CHECK_FALSE(bob.allowed());
    CHECK(bob.reason() == "not_invited");
    CHECK_THAT(bob.message(), Catch::Contains("twostep-enroll invite bob"));

    // The webhook logged every step, and never the URI, the secret or a recovery code.
    const std::string log = webhook.server().output() + webhook.server().errors();
    CHECK(log.find("enroll_started") != std::string::npos);
    CHECK(log.find("\"enrolled\"") != std::string::npos);
    CHECK(log.find("otpauth") == std::string::npos);
    CHECK(log.find(twostep::core::parseOtpauthUri(uri)->secretBase32) == std::string::npos);
    for (const std::string& code : recovery) {
        CHECK(log.find(code) == std::string::npos);
    }
}

TEST_CASE("the open and off self-enrolment modes over the wire", "[integration][webhook][enroll]") {
    SECTION("open: a member of a listed group enrols without an invitation") {
        Webhook webhook;
        webhook.start({"--self-enroll=open", "--self-enroll-group=developers"});
        const HttpResult begun =
            webhook.post("/mutate", review("/twostep.dev/enroll", "enroll"));  // in "developers"
        CHECK(begun.allowed());
        CHECK(begun.reason() == "enroll_started");
    }
    SECTION("off: nobody") {
        Webhook webhook;
        webhook.start({"--self-enroll=off"});
        const HttpResult refused = webhook.post("/mutate", review("/twostep.dev/enroll", "x"));
        CHECK_FALSE(refused.allowed());
        CHECK(refused.reason() == "not_invited");
        CHECK_THAT(refused.message(), Catch::Contains("turned off"));
    }
}
