// The decisions of issue 3 point 2 over the wire: the real twostep-webhook, TLS on loopback, the
// recorded AdmissionReviews of tests/data with codes computed from each test user's secret.
#include <catch2/catch.hpp>

#include <atomic>
#include <latch>
#include <optional>
#include <thread>
#include <vector>

#include "integration/WebhookHarness.hpp"

using twostep::test::HttpResult;
using twostep::test::reviewFor;
using twostep::test::Webhook;
using twostep::core::UserState;

TEST_CASE("every recorded review gets a 200 AdmissionReview answer echoing uid and apiVersion",
          "[integration][webhook]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.start();
    for (const std::string& name : twostep::test::fixtureNames()) {
        const std::string body = twostep::test::readFixture(name.substr(0, 4));
        const auto request = nlohmann::json::parse(body);
        for (const char* endpoint : {"/validate?timeout=5s", "/mutate?timeout=5s"}) {
            INFO(name << " " << endpoint);
            const HttpResult result = webhook.post(endpoint, body);
            REQUIRE(result.status == 200);
            CHECK(result.contentType == "application/json");
            const auto answer = result.json();
            CHECK(answer.at("apiVersion") == request.at("apiVersion"));
            CHECK(answer.at("kind") == "AdmissionReview");
            CHECK(answer.at("response").at("uid") == request.at("request").at("uid"));
            // None of the recorded codes (123456, 000000) is alice's current code here.
            CHECK(answer.at("response").at("auditAnnotations").contains("reason"));
        }
    }
}

TEST_CASE("decisions over the wire", "[integration][webhook]") {
    Webhook webhook;

    SECTION("a valid code is allowed once, then refused as a replay") {
        webhook.enroll("alice");
        webhook.start();
        const std::string body = reviewFor("0004", "alice", webhook.code("alice"));
        const HttpResult first = webhook.post("/validate?timeout=5s", body);
        REQUIRE(first.status == 200);
        CHECK(first.allowed());
        CHECK(first.reason() == "verified");
        CHECK(first.json().at("response").at("auditAnnotations").at("decision") == "allow");
        // The code never appears in the answer (only decision and reason are annotated).
        CHECK_FALSE(twostep::test::containsNumber(first.body, webhook.code("alice")));

        const HttpResult again = webhook.post("/validate?timeout=5s", body);
        CHECK_FALSE(again.allowed());
        CHECK(again.reason() == "replayed");
        CHECK(again.json().at("response").at("status").at("code") == 403);
        CHECK_THAT(again.message(), Catch::Contains("already used"));
    }

    SECTION("a missing code is denied naming the annotation") {
        webhook.enroll("alice");
        webhook.start();
        const HttpResult result = webhook.post("/validate", reviewFor("0001", "alice"));
        CHECK_FALSE(result.allowed());
        CHECK(result.reason() == "missing_code");
        CHECK_THAT(result.message(), Catch::Contains("twostep.dev/token"));
    }

    SECTION("a malformed code is denied saying what a code looks like") {
        webhook.enroll("alice");
        webhook.start();
        const HttpResult result = webhook.post("/validate", reviewFor("0004", "alice", "12ab"));
        CHECK_FALSE(result.allowed());
        CHECK(result.reason() == "malformed_code");
        CHECK_THAT(result.message(), Catch::Contains("6-digit"));
    }

    SECTION("wrong codes count toward a lockout that then refuses even a valid code") {
        webhook.enroll("alice");
        webhook.start({"--lockout-failures=2", "--lockout-base=10m", "--lockout-max=1h"});
        const std::string wrong = webhook.code("alice") == "000000" ? "000001" : "000000";
        const HttpResult first = webhook.post("/validate", reviewFor("0003", "alice", wrong));
        CHECK(first.reason() == "wrong_code");
        CHECK_THAT(first.message(), Catch::Contains("1 attempts left"));
        const HttpResult second = webhook.post("/validate", reviewFor("0003", "alice", wrong));
        CHECK(second.reason() == "wrong_code");
        CHECK_THAT(second.message(), Catch::Contains("locked out until"));
        const HttpResult locked =
            webhook.post("/validate", reviewFor("0004", "alice", webhook.code("alice")));
        CHECK_FALSE(locked.allowed());
        CHECK(locked.reason() == "locked_out");
        CHECK_THAT(locked.message(), Catch::Contains("until"));
    }

    SECTION("users who are not enrolled are denied, or allowed with --unenrolled=allow") {
        SECTION("deny (default)") {
            webhook.start();
            const HttpResult result = webhook.post("/validate", reviewFor("0001", "mallory"));
            CHECK_FALSE(result.allowed());
            CHECK(result.reason() == "not_enrolled");
            CHECK_THAT(result.message(), Catch::Contains("twostep-enroll add mallory"));
        }
        SECTION("allow") {
            webhook.start({"--unenrolled=allow"});
            const HttpResult result = webhook.post("/validate", reviewFor("0001", "mallory"));
            CHECK(result.allowed());
            CHECK(result.reason() == "unenrolled_allowed");
            CHECK(result.json().at("response").at("warnings").size() == 1);
        }
    }

    SECTION("pending and disabled users are denied even with a valid code") {
        webhook.enroll("pat", UserState::Pending);
        webhook.enroll("dan", UserState::Disabled);
        webhook.start();
        const HttpResult pending =
            webhook.post("/validate", reviewFor("0004", "pat", webhook.code("pat")));
        CHECK_FALSE(pending.allowed());
        CHECK(pending.reason() == "pending");
        const HttpResult disabled =
            webhook.post("/validate", reviewFor("0004", "dan", webhook.code("dan")));
        CHECK_FALSE(disabled.allowed());
        CHECK(disabled.reason() == "disabled");
    }

    SECTION("exempt users and groups are allowed without a code") {
        webhook.start({"--exempt-group=ops"});
        const HttpResult serviceAccount = webhook.post(
            "/validate", reviewFor("0001", "system:serviceaccount:kube-system:deployer"));
        CHECK(serviceAccount.allowed());
        CHECK(serviceAccount.reason() == "exempt");

        auto review = twostep::test::fixtureJson("0001");
        review["request"]["userInfo"]["groups"] = {"ops", "system:authenticated"};
        const HttpResult group = webhook.post("/validate", review.dump());
        CHECK(group.allowed());
        CHECK(group.reason() == "exempt");
    }

    SECTION("--no-default-exemptions makes service accounts need a code") {
        webhook.start({"--no-default-exemptions"});
        const HttpResult result = webhook.post(
            "/validate", reviewFor("0001", "system:serviceaccount:kube-system:deployer"));
        CHECK_FALSE(result.allowed());
        CHECK(result.reason() == "not_enrolled");
    }

    SECTION("a dry run is allowed without a code and with a warning") {
        webhook.enroll("alice");
        webhook.start();
        const HttpResult result = webhook.post("/validate", twostep::test::readFixture("0007"));
        CHECK(result.allowed());
        CHECK(result.reason() == "dry_run");
        const auto warnings = result.json().at("response").at("warnings");
        REQUIRE(warnings.size() == 1);
        CHECK(warnings.at(0).get<std::string>().size() < 120);
    }

    SECTION("a recovery code is accepted once") {
        webhook.enroll("alice");
        const std::vector<std::string> codes = webhook.recoveryCodes("alice");
        webhook.start();
        const HttpResult used = webhook.post("/validate", reviewFor("0004", "alice", codes[0]));
        CHECK(used.allowed());
        CHECK(used.reason() == "recovery_code");
        const HttpResult reused = webhook.post("/validate", reviewFor("0004", "alice", codes[0]));
        CHECK_FALSE(reused.allowed());
        CHECK(reused.reason() == "wrong_code");
    }

    SECTION("--grant-ttl lets a verified user make further changes without a code") {
        webhook.enroll("alice");
        webhook.start({"--grant-ttl=60s"});
        CHECK(webhook.post("/validate", reviewFor("0004", "alice", webhook.code("alice")))
                  .reason() == "verified");
        const HttpResult next = webhook.post("/validate", reviewFor("0002", "alice"));
        CHECK(next.allowed());
        CHECK(next.reason() == "grant");
        CHECK_THAT(next.json().at("response").at("warnings").at(0).get<std::string>(),
                   Catch::Contains("grant"));
    }

    SECTION("a DELETE needs a grant, which an unlock review with a valid code opens") {
        webhook.enroll("alice");
        webhook.start();
        const HttpResult refused = webhook.post("/validate", reviewFor("0009", "alice"));
        CHECK_FALSE(refused.allowed());
        CHECK(refused.reason() == "needs_grant");

        auto unlock = twostep::test::fixtureJson("0013");
        unlock["request"]["object"]["spec"]["nonResourceAttributes"]["verb"] =
            webhook.code("alice");
        const HttpResult unlocked = webhook.post("/validate", unlock.dump());
        CHECK(unlocked.allowed());
        CHECK(unlocked.reason() == "unlocked");

        const HttpResult deleted = webhook.post("/validate", reviewFor("0009", "alice"));
        CHECK(deleted.allowed());
        CHECK(deleted.reason() == "grant");
    }

    SECTION("an admission.k8s.io/v1beta1 review is answered in v1beta1") {
        webhook.enroll("alice");
        webhook.start();
        auto review = nlohmann::json::parse(reviewFor("0004", "alice", webhook.code("alice")));
        review["apiVersion"] = "admission.k8s.io/v1beta1";
        const HttpResult result = webhook.post("/validate", review.dump());
        REQUIRE(result.status == 200);
        CHECK(result.json().at("apiVersion") == "admission.k8s.io/v1beta1");
        CHECK(result.allowed());
    }
}

TEST_CASE("/mutate strips the code from the object and from last-applied-configuration",
          "[integration][webhook]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.start();
    const std::string code = webhook.code("alice");
    // What `kubectl apply` sends: the token annotation, and a copy of the applied object (token
    // included) in last-applied-configuration.
    auto review = nlohmann::json::parse(reviewFor("0004", "alice", code));
    auto& metadata = review.at("request").at("object").at("metadata");
    const nlohmann::json applied = {
        {"apiVersion", "apps/v1"},
        {"kind", "Deployment"},
        {"metadata",
         {{"annotations", {{"twostep.dev/token", code}}},
          {"name", metadata.at("name")},
          {"namespace", "default"}}},
        {"spec", review.at("request").at("object").at("spec")}};
    metadata["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        applied.dump() + "\n";
    const std::string body = review.dump();
    const HttpResult result = webhook.post("/mutate?timeout=5s", body);
    REQUIRE(result.status == 200);
    REQUIRE(result.allowed());
    const auto response = result.json().at("response");
    CHECK(response.at("patchType") == "JSONPatch");
    const auto patch =
        nlohmann::json::parse(twostep::test::base64Decode(response.at("patch").get<std::string>()));

    const auto object = nlohmann::json::parse(body).at("request").at("object");
    const auto& before = object.at("metadata").at("annotations");
    REQUIRE(before.contains("twostep.dev/token"));
    REQUIRE(before.at("kubectl.kubernetes.io/last-applied-configuration").get<std::string>().find(
                code) != std::string::npos);

    const auto patched = object.patch(patch);
    const auto& annotations = patched.at("metadata").at("annotations");
    CHECK_FALSE(annotations.contains("twostep.dev/token"));
    const auto lastApplied = nlohmann::json::parse(
        annotations.at("kubectl.kubernetes.io/last-applied-configuration").get<std::string>());
    CHECK_FALSE(lastApplied.at("metadata").at("annotations").contains("twostep.dev/token"));
    CHECK_FALSE(twostep::test::containsNumber(patched.dump(), code));
    // Everything else is untouched.
    CHECK(patched.at("spec") == object.at("spec"));
    CHECK(lastApplied.at("spec") ==
          nlohmann::json::parse(before.at("kubectl.kubernetes.io/last-applied-configuration")
                                    .get<std::string>())
              .at("spec"));
}

TEST_CASE("of 16 concurrent requests carrying the same code exactly one is allowed",
          "[integration][webhook][concurrency]") {
    constexpr int Rounds = 20;
    constexpr int Clients = 16;
    Webhook webhook;
    for (int round = 0; round < Rounds; ++round) {
        webhook.enroll("user" + std::to_string(round));  // each round needs an unused step
    }
    webhook.start({"--threads=32"});
    const Poco::Net::Context::Ptr context = webhook.clientContext();

    for (int round = 0; round < Rounds; ++round) {
        const std::string user = "user" + std::to_string(round);
        const std::string body = reviewFor("0004", user, webhook.code(user));
        std::atomic<int> allowed{0};
        std::atomic<int> replayed{0};
        std::atomic<int> other{0};
        std::latch connected(Clients);
        std::latch go(1);
        std::vector<std::thread> threads;
        for (int i = 0; i < Clients; ++i) {
            threads.emplace_back([&] {
                // Connect and handshake first, so that the requests themselves race.
                std::optional<Poco::Net::HTTPSClientSession> session;
                bool up = false;
                try {
                    session.emplace("127.0.0.1", webhook.port(), context);
                    up = Webhook::exchange(*session, "GET", "/healthz", "").status == 200;
                } catch (...) {
                    up = false;
                }
                connected.count_down();
                go.wait();
                try {
                    const HttpResult r = up ? Webhook::exchange(*session, "POST", "/validate", body)
                                            : HttpResult{};
                    if (r.status == 200 && r.allowed()) {
                        ++allowed;
                    } else if (r.status == 200 && r.reason() == "replayed") {
                        ++replayed;
                    } else {
                        ++other;
                    }
                } catch (...) {
                    ++other;
                }
            });
        }
        connected.wait();
        go.count_down();
        for (auto& t : threads) {
            t.join();
        }
        INFO("round " << round);
        REQUIRE(allowed.load() == 1);
        REQUIRE(replayed.load() == Clients - 1);
        REQUIRE(other.load() == 0);
    }
}
