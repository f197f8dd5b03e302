#include "core/Policy.hpp"

#include <algorithm>
#include <atomic>
#include <barrier>
#include <catch2/catch.hpp>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "core/Base32.hpp"
#include "core/Error.hpp"
#include "core/OtpauthUri.hpp"
#include "core/RecoveryCodes.hpp"
#include "core/Totp.hpp"
#include "support/Fixtures.hpp"
#include "support/ForwardingStore.hpp"
#include "support/TempDir.hpp"

using namespace twostep::core;
using nlohmann::json;
using namespace twostep::test;

namespace {

/// A time at which TestSecret's SHA1/6-digit/30 s code is "123456", the token recorded in
/// fixtures 0004-0006 and 0008. Found offline by computing HOTP (RFC 4226, Python's hmac) for the
/// steps around the fixtures' date 2026-11-28 until one gave 123456: step 59569016,
/// 2026-08-18T16:28:00Z; cross-checked with
/// `oathtool --totp -N @1787070480 3132333435363738393031323334353637383930`.
/// The first test asserts it, so this cannot go stale silently.
constexpr Seconds T = 1787070480;
constexpr std::string_view TestSecret = "12345678901234567890";  // RFC 6238 appendix B (SHA1)
constexpr std::string_view FixtureCode = "123456";
const std::string AtT = "2026-08-18T16:28:00Z";

SecretBytes testSecret() {
    return SecretBytes(std::vector<std::uint8_t>(TestSecret.begin(), TestSecret.end()));
}

std::string codeAt(Seconds at, const TotpParams& params = {}) {
    return generateTotp(testSecret(), params, at);
}

/// A store that refuses every call: proves a decision needs no database, or that a failing
/// database fails closed.
class ThrowingStore final : public Store {
public:
    std::optional<User> findUser(std::string_view) override { refuse(); }
    std::vector<User> listUsers() override { refuse(); }
    bool addUser(const NewUser&, Seconds, bool) override { refuse(); }
    void importUsers(const std::vector<NewUser>&, Seconds) override { refuse(); }
    bool removeUser(std::string_view) override { refuse(); }
    bool setState(std::string_view, UserState, Seconds) override { refuse(); }
    bool resetSecret(std::string_view, std::string_view, Seconds) override { refuse(); }
    ChangeOutcome commit(const Change&, const Settle&) override { refuse(); }
    void setCommitObserver(CommitObserver*) override {}
    bool acceptStep(std::string_view, std::int64_t, UserState, Seconds,
                    std::optional<int> = std::nullopt) override {
        refuse();
    }
    bool confirmWithStep(std::string_view, std::int64_t, Seconds) override { refuse(); }
    FailureOutcome recordFailure(std::string_view, const LockoutPolicy&, Seconds) override {
        refuse();
    }
    bool unlock(std::string_view, Seconds) override { refuse(); }
    bool openGrant(std::string_view, Seconds, Seconds) override { refuse(); }
    bool revokeGrant(std::string_view, Seconds) override { refuse(); }
    bool replaceRecoveryCodes(std::string_view, const std::vector<std::string>&, Seconds) override {
        refuse();
    }
    bool consumeRecoveryCode(std::string_view, std::string_view, Seconds) override { refuse(); }
    void putInvitation(const twostep::core::Invitation&, Seconds) override { refuse(); }
    std::optional<twostep::core::Invitation> findInvitation(std::string_view) override {
        refuse();
    }
    std::vector<twostep::core::Invitation> listInvitations() override { refuse(); }
    bool removeInvitation(std::string_view) override { refuse(); }
    bool beginEnrollment(const twostep::core::PendingEnrollment&, Seconds) override { refuse(); }
    std::optional<twostep::core::PendingEnrollment> findPendingEnrollment(
        std::string_view) override {
        refuse();
    }
    FailureOutcome recordEnrollmentFailure(std::string_view, const LockoutPolicy&,
                                           Seconds) override {
        refuse();
    }
    bool completeEnrollment(const twostep::core::PendingEnrollment&, std::int64_t, int,
                            const std::vector<std::string>&, const AuditEvent&, Seconds) override {
        refuse();
    }
    void appendAudit(const AuditEvent&) override { refuse(); }
    std::vector<AuditEvent> listAudit(const AuditFilter&) override { refuse(); }
    void resealAll(const std::function<std::string(const std::string&, const std::string&)>&,
                   std::string_view) override {
        refuse();
    }
    std::optional<std::string> keyFingerprint() override { refuse(); }
    void setKeyFingerprintIfUnset(std::string_view) override { refuse(); }
    int countUsers(UserState) override { refuse(); }
    int countLocked(Seconds) override { refuse(); }
    void ping() override { refuse(); }

private:
    [[noreturn]] static void refuse() { throw twostep::StoreError("database is locked (test)"); }
};

/// What a review of `body` must look like whatever the decision: a 200 AdmissionReview in the
/// request's apiVersion, echoing its uid, with auditAnnotations, 403 on a deny, short warnings,
/// and never the submitted code.
void checkResponse(const std::string& body, const ReviewOutcome& outcome) {
    const json request = json::parse(body);
    REQUIRE(outcome.httpStatus == 200);
    REQUIRE(outcome.decision);
    const Decision& decision = *outcome.decision;
    const json response = json::parse(outcome.body);
    CHECK(response.at("apiVersion") == request.at("apiVersion"));
    CHECK(response.at("kind") == "AdmissionReview");
    const json& r = response.at("response");
    CHECK(r.at("uid") == request.at("request").at("uid"));
    CHECK(r.at("allowed") == decision.allowed);
    CHECK(r.at("auditAnnotations") == json{{"decision", decision.allowed ? "allow" : "deny"},
                                           {"reason", std::string(toString(decision.reason))}});
    if (decision.allowed) {
        CHECK_FALSE(r.contains("status"));
    } else {
        CHECK(r.at("status").at("code") == 403);
        CHECK(r.at("status").at("message") == decision.message);
        CHECK_FALSE(decision.message.empty());
        CHECK_FALSE(r.contains("patch"));
    }
    for (const std::string& warning : decision.warnings) {
        CHECK(warning.size() < 120);
    }
    const json& object = request.at("request").value("object", json());
    std::vector<std::string> codes;
    if (object.is_object() && object.contains("metadata") &&
        object.at("metadata").contains("annotations") &&
        object.at("metadata").at("annotations").contains("twostep.dev/token")) {
        codes.push_back(object.at("metadata").at("annotations").at("twostep.dev/token"));
    }
    if (object.is_object() && object.contains("spec") &&
        object.at("spec").contains("nonResourceAttributes")) {
        codes.push_back(object.at("spec").at("nonResourceAttributes").value("verb", ""));
    }
    for (const std::string& code : codes) {
        if (code.size() >= 4) {
            CHECK(outcome.body.find(code) == std::string::npos);
            CHECK(decision.message.find(code) == std::string::npos);
        }
    }
    REQUIRE(outcome.record);
    CHECK(outcome.record->uid == request.at("request").at("uid"));
    CHECK(outcome.record->reason == toString(decision.reason));
}

/// A Reviewer over a real SQLite store, a fresh master key and a FakeClock at T.
struct Harness {
    explicit Harness(PolicyConfig config = {}, const std::string& db = ":memory:")
        : Harness(openStore(db), std::move(config)) {}
    Harness(std::unique_ptr<Store> store_, PolicyConfig config)
        : store(std::move(store_)), reviewer(*store, sealer, clock, std::move(config)) {}

    void enroll(const std::string& username, UserState state = UserState::Active,
                TotpParams params = {}) {
        REQUIRE(store->addUser(
            NewUser{username, sealer.seal(testSecret(), username), "twostep", params, state}, T,
            false));
    }

    std::optional<User> user(const std::string& username = "alice") {
        return store->findUser(username);
    }

    ReviewOutcome post(const std::string& body, Endpoint endpoint = Endpoint::Validate) {
        ReviewOutcome outcome = reviewer.review(body, endpoint);
        checkResponse(body, outcome);
        return outcome;
    }

    Decision decide(const std::string& body, Endpoint endpoint = Endpoint::Validate) {
        return *post(body, endpoint).decision;
    }

    std::vector<AuditEvent> audit() {
        AuditFilter filter;
        filter.limit = 10000;
        return store->listAudit(filter);
    }

    std::unique_ptr<Store> store;
    Sealer sealer{MasterKey::generate()};
    FakeClock clock{T};
    Reviewer reviewer;
};

json& annotations(json& review) {
    return review["request"]["object"]["metadata"]["annotations"];
}

/// Fixture `prefix` with the token annotation set to `token` (or removed when nullopt).
std::string withToken(const std::string& prefix, const std::optional<std::string>& token) {
    json review = fixtureJson(prefix);
    if (token) {
        annotations(review)["twostep.dev/token"] = *token;
    } else {
        annotations(review).erase("twostep.dev/token");
    }
    return review.dump();
}

std::string asUser(const std::string& prefix, const std::string& username,
                   const std::vector<std::string>& groups) {
    json review = fixtureJson(prefix);
    review["request"]["userInfo"]["username"] = username;
    review["request"]["userInfo"]["groups"] = groups;
    return review.dump();
}

/// Fixture 0013 (an unlock SelfSubjectAccessReview) with this verb and path.
std::string unlockReview(const std::optional<std::string>& verb,
                         const std::string& path = "/twostep.dev/unlock") {
    json review = fixtureJson("0013");
    json& attributes = review["request"]["object"]["spec"]["nonResourceAttributes"];
    attributes["path"] = path;
    if (verb) {
        attributes["verb"] = *verb;
    } else {
        attributes.erase("verb");
    }
    return review.dump();
}

/// A Namespace's metadata: its labels (besides the name label the API server sets) and
/// annotations.
struct NamespaceMeta {
    json labels = {{"team", "a"}};
    json annotations = json::object();
};

/// NamespaceMeta with the enforcement label set to `value`.
NamespaceMeta enforced(const std::string& value = "enabled") {
    NamespaceMeta meta;
    meta.labels["twostep.dev/enforce"] = value;
    return meta;
}

/// A Namespace request as kube-apiserver sends it (object is null for a DELETE).
std::string namespaceReview(const std::string& operation, const NamespaceMeta& before,
                            const NamespaceMeta& after,
                            const std::optional<std::string>& token = std::nullopt,
                            const std::string& username = "alice") {
    const auto object = [](const NamespaceMeta& meta, const std::optional<std::string>& code) {
        json labels = meta.labels;
        labels["kubernetes.io/metadata.name"] = "team-a";
        json metadata = {{"name", "team-a"}, {"labels", labels}};
        json annotations = meta.annotations;
        if (code) {
            annotations["twostep.dev/token"] = *code;
        }
        if (!annotations.empty()) {
            metadata["annotations"] = annotations;
        }
        return json{{"apiVersion", "v1"}, {"kind", "Namespace"}, {"metadata", metadata}};
    };
    json request = {
        {"uid", "ns-1"},
        {"kind", {{"group", ""}, {"version", "v1"}, {"kind", "Namespace"}}},
        {"resource", {{"group", ""}, {"version", "v1"}, {"resource", "namespaces"}}},
        {"name", "team-a"},
        {"operation", operation},
        {"userInfo", {{"username", username}, {"groups", {"developers", "system:authenticated"}}}},
        {"object", operation == "DELETE" ? json(nullptr) : object(after, token)},
        {"oldObject", operation == "CREATE" ? json(nullptr) : object(before, std::nullopt)},
        {"dryRun", false}};
    return json{
        {"kind", "AdmissionReview"}, {"apiVersion", "admission.k8s.io/v1"}, {"request", request}}
        .dump();
}

const std::string NeedsGrantMessage =
    "deleting and exec/attach/port-forward need an open two-step grant: run `kubectl twostep "
    "unlock` and retry";
const std::string MissingCodeMessage =
    "no two-step code: add the current code from your authenticator app as annotation "
    "twostep.dev/token (`kubectl twostep apply -f FILE`, or set twostep.dev/token=<code>)";
const std::string DryRunWarning =
    "dry run: twostep checked no code; the real request will need one";
const std::string MalformedMessage =
    "annotation twostep.dev/token must hold the 6-digit code from your authenticator app";
const std::string ReplayedAtT =
    "this code was already used; wait for the next code from your authenticator app, in 30 s";
const std::string InternalErrorMessage =
    "twostep could not verify the request (internal error; see the webhook log): the change was "
    "refused";

std::string wrongCodeMessage(int left) {
    return "wrong two-step code for user alice (" + std::to_string(left) +
           " attempts left before a lockout); check that your device's clock is right";
}

std::string unlockDurationMessage() {
    return "the unlock duration must be a number with s, m or h, as in /twostep.dev/unlock/10m "
           "(at most 15m; none asks for the maximum)";
}

}  // namespace

TEST_CASE("the test secret gives the fixtures' code at T", "[policy]") {
    CHECK(codeAt(T) == FixtureCode);
    CHECK(codeAt(T + 29) == FixtureCode);
    // 0003 and 0013 carry 000000: it must be wrong in the whole window around T.
    for (Seconds at : {T - 30, T, T + 30}) {
        CHECK(codeAt(at) != "000000");
    }
}

TEST_CASE("every fixture gets its decision", "[policy]") {
    // What a fresh store with alice enrolled and active (no grant) decides at T.
    const std::map<std::string, std::pair<bool, Reason>> expected = {
        {"0001", {false, Reason::MissingCode}}, {"0002", {false, Reason::MissingCode}},
        {"0003", {false, Reason::WrongCode}},   {"0004", {true, Reason::Verified}},
        {"0005", {true, Reason::Verified}},     {"0006", {true, Reason::DryRun}},
        {"0007", {true, Reason::DryRun}},       {"0008", {true, Reason::Verified}},
        {"0009", {false, Reason::NeedsGrant}},  {"0010", {false, Reason::NeedsGrant}},
        {"0011", {false, Reason::NeedsGrant}},  {"0012", {false, Reason::NotEnrolled}},
        {"0013", {false, Reason::WrongCode}},
    };
    for (const std::string& name : fixtureNames()) {
        INFO(name);
        const auto it = expected.find(name.substr(0, 4));
        REQUIRE(it != expected.end());  // a new fixture needs an expected decision here
        for (Endpoint endpoint : {Endpoint::Validate, Endpoint::Mutate}) {
            Harness h;
            h.enroll("alice");
            const Decision decision = h.decide(readFixture(it->first), endpoint);
            CHECK(decision.allowed == it->second.first);
            CHECK(decision.reason == it->second.second);
        }
    }
}

TEST_CASE("exempt users and groups are allowed without touching the store", "[policy]") {
    ThrowingStore store;
    Sealer sealer(MasterKey::generate());
    FakeClock clock(T);
    Reviewer reviewer(store, sealer, clock, PolicyConfig{});
    const auto check = [&](const std::string& body) {
        const ReviewOutcome outcome = reviewer.review(body, Endpoint::Validate);
        checkResponse(body, outcome);
        CHECK(outcome.decision->allowed);
        CHECK(outcome.decision->reason == Reason::Exempt);
        CHECK(outcome.decision->warnings.empty());
        CHECK(outcome.record->decision == "allow");
        CHECK(outcome.record->reason == "exempt");
        CHECK(outcome.error.empty());
    };
    check(asUser("0001", "system:serviceaccount:kube-system:replicaset-controller", {}));
    check(asUser("0009", "system:node:worker-1", {"system:nodes", "system:authenticated"}));
    check(asUser("0003", "system:kube-scheduler", {}));
    check(asUser("0003", "system:apiserver", {}));
    check(asUser("0010", "bob", {"developers", "system:nodes"}));

    // Not exempt: the same flow needs the store, which fails closed here.
    const ReviewOutcome outcome =
        reviewer.review(asUser("0003", "system:serviceaccountx", {}), Endpoint::Validate);
    CHECK(outcome.decision->reason == Reason::InternalError);
}

TEST_CASE("start() answers what needs no store, finish() the rest, as review() does",
          "[policy]") {
    // start() runs on the server's event loops, so everything it answers must leave a store
    // that refuses every call untouched.
    ThrowingStore refusing;
    Sealer sealer(MasterKey::generate());
    FakeClock clock(T);
    Reviewer loopSide(refusing, sealer, clock, PolicyConfig{});
    const auto answered = [&](const std::string& body) -> ReviewOutcome {
        auto started = loopSide.start(body, Endpoint::Mutate);
        REQUIRE(std::holds_alternative<ReviewOutcome>(started));
        return std::get<ReviewOutcome>(std::move(started));
    };
    const ReviewOutcome exempt = answered(asUser("0004", "system:serviceaccount:a:b", {}));
    checkResponse(asUser("0004", "system:serviceaccount:a:b", {}), exempt);
    CHECK(exempt.decision->reason == Reason::Exempt);
    CHECK(json::parse(exempt.body).at("response").contains("patch"));  // /mutate strips the code
    CHECK(answered(readFixture("0006")).decision->reason == Reason::DryRun);
    CHECK(answered("{").httpStatus == 400);
    CHECK_FALSE(answered("{").decision);

    // A request that needs the store comes back parsed, untouched by start().
    auto pending = loopSide.start(readFixture("0004"), Endpoint::Validate);
    REQUIRE(std::holds_alternative<ReviewRequest>(pending));
    CHECK(std::get<ReviewRequest>(pending).username == "alice");
    CHECK(loopSide.finish(std::get<ReviewRequest>(pending), Endpoint::Validate)
              .decision->reason == Reason::InternalError);  // the refusing store fails closed

    // On a working store finish() decides exactly as review() would.
    Harness h;
    h.enroll("alice");
    auto started = h.reviewer.start(readFixture("0004"), Endpoint::Validate);
    REQUIRE(std::holds_alternative<ReviewRequest>(started));
    const ReviewOutcome finished =
        h.reviewer.finish(std::get<ReviewRequest>(started), Endpoint::Validate);
    checkResponse(readFixture("0004"), finished);
    CHECK(finished.decision->reason == Reason::Verified);
    CHECK(h.reviewer.review(readFixture("0004"), Endpoint::Validate).decision->reason ==
          Reason::Replayed);
    CHECK(h.audit().size() == 2);
}

TEST_CASE("exemption lists come from the configuration", "[policy]") {
    PolicyConfig config;
    config.exemptUsers = {"ci-*-deployer"};
    config.exemptGroups = {"platform-admins"};
    Harness h(config);
    h.enroll("alice");
    CHECK(h.decide(asUser("0001", "ci-prod-deployer", {})).reason == Reason::Exempt);
    CHECK(h.decide(asUser("0001", "alice", {"platform-admins"})).reason == Reason::Exempt);
    CHECK(h.decide(asUser("0001", "system:serviceaccount:x:y", {})).reason == Reason::NotEnrolled);
    CHECK(h.decide(asUser("0001", "alice", {"system:nodes"})).reason == Reason::MissingCode);
}

TEST_CASE("dry runs are allowed without checking a code or touching the store", "[policy]") {
    ThrowingStore store;
    Sealer sealer(MasterKey::generate());
    FakeClock clock(T);
    Reviewer reviewer(store, sealer, clock, PolicyConfig{});
    for (const char* fixture : {"0006", "0007"}) {
        const std::string body = readFixture(fixture);
        const ReviewOutcome outcome = reviewer.review(body, Endpoint::Validate);
        checkResponse(body, outcome);
        CHECK(outcome.decision->allowed);
        CHECK(outcome.decision->reason == Reason::DryRun);
        CHECK(outcome.decision->warnings == std::vector<std::string>{DryRunWarning});
        CHECK(outcome.record->reason == "dry_run");
    }

    // The dry run's code was not consumed: the real request with it is allowed.
    Harness h;
    h.enroll("alice");
    CHECK(h.decide(readFixture("0006")).reason == Reason::DryRun);
    CHECK(h.decide(readFixture("0004")).reason == Reason::Verified);
}

TEST_CASE("users who are not enrolled, pending or disabled", "[policy]") {
    SECTION("not enrolled: denied with how to enroll") {
        Harness h;
        const Decision d = h.decide(readFixture("0004"));
        CHECK_FALSE(d.allowed);
        CHECK(d.reason == Reason::NotEnrolled);
        CHECK(d.message ==
              "user alice is not enrolled in two-step verification; ask an admin to run "
              "`twostep-enroll add alice`");
    }
    SECTION("not enrolled, --unenrolled=allow: allowed with a warning, token stripped") {
        PolicyConfig config;
        config.unenrolled = UnenrolledPolicy::Allow;
        Harness h(config);
        const ReviewOutcome outcome = h.post(readFixture("0004"), Endpoint::Mutate);
        CHECK(outcome.decision->allowed);
        CHECK(outcome.decision->reason == Reason::UnenrolledAllowed);
        CHECK(outcome.decision->warnings.size() == 1);
        CHECK(json::parse(outcome.body).at("response").contains("patch"));
    }
    SECTION("pending") {
        Harness h;
        h.enroll("alice", UserState::Pending);
        const Decision d = h.decide(readFixture("0004"));
        CHECK(d.reason == Reason::Pending);
        CHECK(d.message ==
              "user alice has not confirmed two-step enrollment yet; confirm it with the first "
              "code from the authenticator app: `twostep-enroll confirm alice CODE`");
        CHECK_FALSE(h.user()->lastStep);  // the code was not accepted
    }
    SECTION("disabled") {
        Harness h;
        h.enroll("alice");
        REQUIRE(h.store->setState("alice", UserState::Disabled, T));
        const Decision d = h.decide(readFixture("0004"));
        CHECK(d.reason == Reason::Disabled);
        CHECK(d.message ==
              "two-step verification for user alice is disabled, so protected changes are "
              "refused; ask an admin to run `twostep-enroll enable alice`");
    }
    SECTION("a forged, huge username is cut in messages") {
        Harness h;
        const std::string name(5000, 'x');
        const Decision d = h.decide(asUser("0004", name, {}));
        CHECK(d.reason == Reason::NotEnrolled);
        CHECK(d.message.size() < 600);
    }
}

TEST_CASE("codes: missing, malformed, wrong, valid, replayed", "[policy]") {
    Harness h;
    h.enroll("alice");

    SECTION("missing") {
        for (const char* fixture : {"0001", "0002"}) {
            const Decision d = h.decide(readFixture(fixture));
            CHECK(d.reason == Reason::MissingCode);
            CHECK(d.message == MissingCodeMessage);
        }
        CHECK(h.user()->failures == 0);
    }
    SECTION("malformed codes are refused before any check and are not failures") {
        for (const std::string code :
             {"12345", "12a456", "12345678", "", " 123456", "123456 ", "１２３４５６", "+12345"}) {
            INFO(code);
            const Decision d = h.decide(withToken("0004", code));
            CHECK(d.reason == Reason::MalformedCode);
            CHECK(d.message == MalformedMessage);
        }
        CHECK(h.user()->failures == 0);
        CHECK(h.decide(readFixture("0004")).reason == Reason::Verified);
    }
    SECTION("wrong (0003) counts towards a lockout; then locked out with the end time") {
        for (int attempt = 1; attempt < 5; ++attempt) {
            const Decision d = h.decide(readFixture("0003"));
            CHECK(d.reason == Reason::WrongCode);
            CHECK(d.message == wrongCodeMessage(5 - attempt));
        }
        const Decision fifth = h.decide(readFixture("0003"));
        CHECK(fifth.reason == Reason::WrongCode);
        CHECK(fifth.message ==
              "wrong two-step code for user alice; too many wrong codes: locked out until "
              "2026-08-18T16:29:00Z (check your device's clock; an admin can run "
              "`twostep-enroll unlock alice`)");

        // Locked: even the right code is refused, and not consumed.
        const Decision locked = h.decide(readFixture("0004"));
        CHECK(locked.reason == Reason::LockedOut);
        CHECK(locked.message ==
              "user alice is locked out after too many wrong codes until 2026-08-18T16:29:00Z; "
              "wait, or ask an admin to run `twostep-enroll unlock alice`");
        CHECK_FALSE(h.user()->lastStep);

        h.clock.set(T + 60);
        const std::string code = codeAt(T + 60);
        CHECK(h.decide(withToken("0004", code)).reason == Reason::Verified);
    }
    SECTION("valid (0004), then its replay (0005) is refused and not counted") {
        const Decision ok = h.decide(readFixture("0004"));
        CHECK(ok.allowed);
        CHECK(ok.reason == Reason::Verified);
        CHECK(ok.warnings.empty());
        CHECK(h.user()->lastStep == timeStep(T, 30));

        const Decision again = h.decide(readFixture("0005"));
        CHECK_FALSE(again.allowed);
        CHECK(again.reason == Reason::Replayed);
        CHECK(again.message == ReplayedAtT);
        CHECK(h.user()->failures == 0);

        h.clock.set(T + 20);
        CHECK(h.decide(readFixture("0004")).message ==
              "this code was already used; wait for the next code from your authenticator app, "
              "in 10 s");
    }
    SECTION("an older step is refused after a newer one") {
        h.clock.set(T + 30);
        CHECK(h.decide(withToken("0004", codeAt(T + 30))).reason == Reason::Verified);
        // 123456 belongs to the previous step, still inside the ±1 window, but older.
        const Decision older = h.decide(readFixture("0005"));
        CHECK(older.reason == Reason::Replayed);
        CHECK(h.user()->lastStep == timeStep(T + 30, 30));
    }
    SECTION("a code from the next step (clock skew) is accepted once") {
        CHECK(h.decide(withToken("0004", codeAt(T + 30))).reason == Reason::Verified);
        CHECK(h.decide(readFixture("0004")).reason == Reason::Replayed);  // older than the last
        const Decision d = h.decide(withToken("0004", codeAt(T + 30)));
        CHECK(d.message ==
              "this code was already used; wait for the next code from your authenticator app, "
              "in 60 s");
    }
    SECTION("a code outside the window is wrong") {
        CHECK(h.decide(withToken("0004", codeAt(T + 90))).reason == Reason::WrongCode);
    }
    SECTION("a replay after wrong codes is not counted") {
        REQUIRE(h.decide(readFixture("0004")).reason == Reason::Verified);
        REQUIRE(h.decide(readFixture("0003")).reason == Reason::WrongCode);
        REQUIRE(h.decide(readFixture("0003")).reason == Reason::WrongCode);
        REQUIRE(h.user()->failures == 2);
        CHECK(h.decide(readFixture("0004")).reason == Reason::Replayed);
        CHECK(h.user()->failures == 2);
    }
    SECTION("the right code on the attempt that reaches the limit is accepted and ends the lock") {
        for (int attempt = 1; attempt < 5; ++attempt) {
            REQUIRE(h.decide(readFixture("0003")).reason == Reason::WrongCode);
        }
        CHECK(h.decide(readFixture("0004")).reason == Reason::Verified);
        const auto alice = h.user();
        CHECK_FALSE(alice->isLocked(T));
        CHECK(alice->failures == 0);
        CHECK(alice->lockouts == 0);
    }
}

/// Starts a lockout of the user it reads next, as a burst of wrong guesses through another
/// replica would while this request checks its code.
class LockWhenReadStore final : public twostep::test::ForwardingStore {
public:
    using ForwardingStore::ForwardingStore;
    std::optional<User> findUser(std::string_view username) override {
        std::optional<User> user = ForwardingStore::findUser(username);
        if (user && armed) {
            armed = false;
            REQUIRE(inner().recordFailure(username, LockoutPolicy{1, 60, 60}, T).lockedUntil);
        }
        return user;
    }
    bool armed = false;
};

TEST_CASE("a code in flight when a lockout starts is answered with the lockout",
          "[policy][lockout]") {
    auto owned = std::make_unique<LockWhenReadStore>(openStore(":memory:"));
    LockWhenReadStore& store = *owned;
    Harness h(std::move(owned), PolicyConfig{});
    h.enroll("alice");
    const std::vector<std::string> recovery = generateRecoveryCodes(1);
    REQUIRE(h.store->replaceRecoveryCodes("alice", {hashRecoveryCode(recovery[0])}, T));

    // Right or wrong, the answer is the lockout: a guess learns nothing, and nothing is used.
    for (const std::string& body : {readFixture("0004"), readFixture("0003"),
                                    withToken("0004", recovery[0])}) {
        REQUIRE(h.store->unlock("alice", T));
        store.armed = true;
        const Decision d = h.decide(body);
        CHECK(d.reason == Reason::LockedOut);
        CHECK(d.message ==
              "user alice is locked out after too many wrong codes until 2026-08-18T16:29:00Z; "
              "wait, or ask an admin to run `twostep-enroll unlock alice`");
        const auto alice = h.user();
        CHECK_FALSE(alice->lastStep);
        CHECK(alice->recoveryCodesLeft == 1);
        CHECK(alice->failures == 0);
        CHECK(alice->lockouts == 1);
    }
}

TEST_CASE("guesses arriving together: only the lockout's number of codes are checked",
          "[policy][lockout]") {
    // All 24 requests read alice as not locked; the attempt is counted before the code is
    // checked, so only 5 are checked and the rest are refused as locked out.
    Harness h;
    h.enroll("alice");
    constexpr int Requests = 24;
    const std::string wrong = readFixture("0003");
    std::barrier sync(Requests);
    std::vector<Reason> reasons(Requests);
    std::vector<std::thread> workers;
    for (std::size_t i = 0; i < Requests; ++i) {
        workers.emplace_back([&, i] {
            sync.arrive_and_wait();
            reasons[i] = h.reviewer.review(wrong, Endpoint::Validate).decision->reason;
        });
    }
    for (std::thread& worker : workers) {
        worker.join();
    }
    CHECK(std::count(reasons.begin(), reasons.end(), Reason::WrongCode) == 5);
    CHECK(std::count(reasons.begin(), reasons.end(), Reason::LockedOut) == Requests - 5);
    CHECK(h.user()->lockouts == 1);
}

TEST_CASE("the enrolled digit count is what a code must have", "[policy]") {
    Harness h;
    TotpParams eight;
    eight.digits = 8;
    h.enroll("alice", UserState::Active, eight);
    const Decision six = h.decide(readFixture("0004"));
    CHECK(six.reason == Reason::MalformedCode);
    CHECK(six.message ==
          "annotation twostep.dev/token must hold the 8-digit code from your authenticator app");
    CHECK(h.decide(withToken("0004", codeAt(T, eight))).reason == Reason::Verified);
}

TEST_CASE("a recovery code is accepted once", "[policy]") {
    Harness h;
    h.enroll("alice");
    const std::vector<std::string> codes = generateRecoveryCodes(3);
    std::vector<std::string> hashes;
    for (const std::string& code : codes) {
        hashes.push_back(hashRecoveryCode(code));
    }
    REQUIRE(h.store->replaceRecoveryCodes("alice", hashes, T));

    const Decision first = h.decide(withToken("0001", codes[1]));
    CHECK(first.allowed);
    CHECK(first.reason == Reason::RecoveryCode);
    CHECK(first.warnings == std::vector<std::string>{"a recovery code was used; 2 left"});
    CHECK(h.user()->recoveryCodesLeft == 2);

    const Decision second = h.decide(withToken("0001", codes[1]));
    CHECK_FALSE(second.allowed);
    CHECK(second.reason == Reason::WrongCode);
    CHECK(second.message ==
          "wrong or already used recovery code for user alice (4 attempts left before a "
          "lockout); check that your device's clock is right");
    CHECK(h.user()->failures == 1);
}

TEST_CASE("grants allow without a code, including DELETE and CONNECT", "[policy]") {
    Harness h;
    h.enroll("alice");
    h.enroll("admin");

    SECTION("outside a grant, DELETE and CONNECT are refused with how to unlock") {
        for (const char* fixture : {"0009", "0010", "0011", "0012"}) {
            INFO(fixture);
            const Decision d = h.decide(readFixture(fixture));
            CHECK(d.reason == Reason::NeedsGrant);
            CHECK(d.message == NeedsGrantMessage);
        }
    }
    SECTION("inside a grant, until it ends") {
        REQUIRE(h.store->openGrant("alice", T + 300, T));
        REQUIRE(h.store->openGrant("admin", T + 300, T));
        for (const char* fixture : {"0009", "0010", "0011", "0012", "0001", "0003"}) {
            INFO(fixture);
            const Decision d = h.decide(readFixture(fixture));
            CHECK(d.allowed);
            CHECK(d.reason == Reason::Grant);
            CHECK(d.warnings == std::vector<std::string>{
                                    "allowed by a twostep grant until 2026-08-18T16:33:00Z"});
        }
        CHECK(h.user()->failures == 0);  // 0003's wrong code was not even looked at
        h.clock.set(T + 300);
        CHECK(h.decide(readFixture("0009")).reason == Reason::NeedsGrant);
    }
    SECTION("a lockout wins over a grant") {
        REQUIRE(h.store->openGrant("alice", T + 300, T));
        LockoutPolicy lockout;
        for (int i = 0; i < lockout.maxFailures; ++i) {
            h.store->recordFailure("alice", lockout, T);
        }
        CHECK(h.decide(readFixture("0009")).reason == Reason::LockedOut);
    }
    SECTION("--grant-ttl opens a grant after a verified change") {
        PolicyConfig config;
        config.grantTtl = 120;
        Harness g(config);
        g.enroll("alice");
        CHECK(g.decide(readFixture("0009")).reason == Reason::NeedsGrant);
        CHECK(g.decide(readFixture("0004")).reason == Reason::Verified);
        CHECK(g.user()->grantUntil == T + 120);
        CHECK(g.decide(readFixture("0009")).reason == Reason::Grant);
        CHECK(g.decide(readFixture("0002")).reason == Reason::Grant);
    }
}

TEST_CASE("unlocking through a SelfSubjectAccessReview", "[policy]") {
    Harness h;
    h.enroll("alice");

    SECTION("a valid code opens a grant of the maximum length") {
        const Decision d = h.decide(unlockReview(std::string(FixtureCode)));
        CHECK(d.allowed);
        CHECK(d.reason == Reason::Unlocked);
        CHECK(d.warnings ==
              std::vector<std::string>{"twostep grant open until 2026-08-18T16:43:00Z"});
        CHECK(h.user()->grantUntil == T + 900);
        CHECK(h.decide(readFixture("0009")).reason == Reason::Grant);
        CHECK(h.decide(readFixture("0010")).reason == Reason::Grant);
    }
    SECTION("a requested duration, and one above the maximum is clipped") {
        const std::vector<std::tuple<std::string, Seconds, std::string>> cases = {
            {"/10m", 600, "2026-08-18T16:38:00Z"},
            {"/90s", 90, "2026-08-18T16:29:30Z"},
            {"/1h", 900, "2026-08-18T16:43:00Z"},
            {"/15m", 900, "2026-08-18T16:43:00Z"},
            {"/999999h", 900, "2026-08-18T16:43:00Z"}};
        for (const auto& [suffix, ttl, until] : cases) {
            INFO(suffix);
            Harness fresh;
            fresh.enroll("alice");
            const Decision d = fresh.decide(
                unlockReview(std::string(FixtureCode), "/twostep.dev/unlock" + suffix));
            CHECK(d.reason == Reason::Unlocked);
            CHECK(d.warnings == std::vector<std::string>{"twostep grant open until " + until});
            CHECK(fresh.user()->grantUntil == T + ttl);
        }
    }
    SECTION("a shorter unlock does not shorten an open grant") {
        REQUIRE(
            h.decide(unlockReview(std::string(FixtureCode), "/twostep.dev/unlock/10m")).reason ==
            Reason::Unlocked);
        h.clock.set(T + 30);
        const Decision d = h.decide(unlockReview(codeAt(T + 30), "/twostep.dev/unlock/1m"));
        CHECK(d.reason == Reason::Unlocked);
        CHECK(d.warnings ==
              std::vector<std::string>{"twostep grant open until 2026-08-18T16:38:00Z"});
        CHECK(h.user()->grantUntil == T + 600);
    }
    SECTION("a bad duration is refused before the code is used") {
        for (const std::string suffix :
             {"/", "/10x", "/0m", "/m", "/1234567m", "/10m/x", "/-5m", "/ 5m", "/5M", "//5m"}) {
            INFO(suffix);
            const Decision d =
                h.decide(unlockReview(std::string(FixtureCode), "/twostep.dev/unlock" + suffix));
            CHECK(d.reason == Reason::MalformedCode);
            CHECK(d.message == unlockDurationMessage());
        }
        CHECK(h.user()->failures == 0);
        CHECK_FALSE(h.user()->lastStep);
        CHECK(h.decide(unlockReview(std::string(FixtureCode))).reason == Reason::Unlocked);
    }
    SECTION("a wrong code (0013 as recorded) is denied and counted") {
        const Decision d = h.decide(readFixture("0013"));
        CHECK(d.reason == Reason::WrongCode);
        CHECK(d.message == wrongCodeMessage(4));
        CHECK_FALSE(h.user()->grantUntil);
    }
    SECTION("a replayed code is denied, also while a grant is open") {
        CHECK(h.decide(unlockReview(std::string(FixtureCode))).reason == Reason::Unlocked);
        const Decision d = h.decide(unlockReview(std::string(FixtureCode)));
        CHECK(d.reason == Reason::Replayed);
        CHECK(d.message == ReplayedAtT);
        // The code of a change was used for the unlock: it cannot be used again either.
        CHECK(h.decide(readFixture("0004")).reason == Reason::Grant);
    }
    SECTION("a code used for a change cannot unlock") {
        CHECK(h.decide(readFixture("0004")).reason == Reason::Verified);
        CHECK(h.decide(unlockReview(std::string(FixtureCode))).reason == Reason::Replayed);
    }
    SECTION("locked out users cannot unlock") {
        for (int i = 0; i < 5; ++i) {
            h.decide(readFixture("0013"));
        }
        CHECK(h.decide(unlockReview(std::string(FixtureCode))).reason == Reason::LockedOut);
    }
    SECTION("malformed and missing unlock codes") {
        const Decision malformed = h.decide(unlockReview("12345"));
        CHECK(malformed.reason == Reason::MalformedCode);
        CHECK(malformed.message ==
              "the unlock request's verb must hold the 6-digit code from your authenticator app");
        const Decision missing = h.decide(unlockReview(std::nullopt));
        CHECK(missing.reason == Reason::MissingCode);
        CHECK(missing.message ==
              "the unlock request carries no code in its verb; run `kubectl twostep unlock`");
    }
    SECTION("a recovery code unlocks too") {
        const std::vector<std::string> codes = generateRecoveryCodes(1);
        REQUIRE(h.store->replaceRecoveryCodes("alice", {hashRecoveryCode(codes[0])}, T));
        const Decision d = h.decide(unlockReview(codes[0]));
        CHECK(d.reason == Reason::Unlocked);
        CHECK(d.warnings ==
              std::vector<std::string>{"twostep grant open until 2026-08-18T16:43:00Z",
                                       "a recovery code was used; 0 left"});
    }
    SECTION("dry-run unlocks open nothing") {
        json review = json::parse(unlockReview(std::string(FixtureCode)));
        review["request"]["dryRun"] = true;
        CHECK(h.decide(review.dump()).reason == Reason::DryRun);
        CHECK_FALSE(h.user()->grantUntil);
    }
}

TEST_CASE("other SelfSubjectAccessReviews pass untouched", "[policy]") {
    ThrowingStore store;
    Sealer sealer(MasterKey::generate());
    FakeClock clock(T);
    Reviewer reviewer(store, sealer, clock, PolicyConfig{});
    for (const std::string path : {"/apis", "/twostep.dev/unlockx", "/twostep.dev", ""}) {
        INFO(path);
        const ReviewOutcome outcome = reviewer.review(unlockReview("get", path), Endpoint::Mutate);
        CHECK(outcome.decision->allowed);
        CHECK(outcome.decision->reason == Reason::NotProtected);
    }
    json resourceReview = fixtureJson("0013");
    resourceReview["request"]["object"]["spec"] = {
        {"resourceAttributes", {{"verb", "delete"}, {"resource", "pods"}}}};
    const ReviewOutcome outcome = reviewer.review(resourceReview.dump(), Endpoint::Validate);
    checkResponse(resourceReview.dump(), outcome);
    CHECK(outcome.decision->reason == Reason::NotProtected);
}

TEST_CASE("an enforced namespace is a protected object", "[policy]") {
    Harness h;
    h.enroll("alice");
    NamespaceMeta weakened = enforced();
    weakened.labels["pod-security.kubernetes.io/enforce"] = "privileged";
    NamespaceMeta annotated = enforced();
    annotated.annotations["scheduler.alpha.kubernetes.io/node-selector"] = "pool=any";

    SECTION("any update of an enforced namespace needs a code") {
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), NamespaceMeta{})).reason ==
              Reason::MissingCode);  // label removed
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), enforced("disabled"))).reason ==
              Reason::MissingCode);  // label changed
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), weakened)).reason ==
              Reason::MissingCode);  // label kept, Pod Security weakened
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), annotated)).reason ==
              Reason::MissingCode);  // label kept, annotation changed
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), enforced())).reason ==
              Reason::MissingCode);  // nothing changed but the request
    }
    SECTION("with a code the update is verified, and a wrong one counts") {
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), weakened, "123456")).reason ==
              Reason::Verified);
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), NamespaceMeta{}, "000000")).reason ==
              Reason::WrongCode);
    }
    SECTION("turning enforcement on, and namespaces never enforced, stay free") {
        CHECK(h.decide(namespaceReview("UPDATE", NamespaceMeta{}, enforced())).reason ==
              Reason::NotProtected);  // label added
        CHECK(h.decide(namespaceReview("UPDATE", NamespaceMeta{}, weakened)).reason ==
              Reason::NotProtected);  // label added together with other changes
        CHECK(h.decide(namespaceReview("UPDATE", NamespaceMeta{}, annotated)).reason ==
              Reason::NotProtected);
        CHECK(h.decide(namespaceReview("UPDATE", enforced("disabled"), NamespaceMeta{})).reason ==
              Reason::NotProtected);  // "disabled" is not enforced
        CHECK(h.decide(namespaceReview("CREATE", NamespaceMeta{}, enforced())).reason ==
              Reason::NotProtected);
    }
    SECTION("deleting an enforced namespace needs a grant") {
        CHECK(h.decide(namespaceReview("DELETE", enforced(), NamespaceMeta{})).reason ==
              Reason::NeedsGrant);
        CHECK(h.decide(namespaceReview("DELETE", NamespaceMeta{}, NamespaceMeta{})).reason ==
              Reason::NotProtected);
        REQUIRE(h.store->openGrant("alice", T + 60, T));
        CHECK(h.decide(namespaceReview("DELETE", enforced(), NamespaceMeta{})).reason ==
              Reason::Grant);
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), weakened)).reason == Reason::Grant);
    }
    SECTION("the namespace controller and other exempt identities need nothing") {
        const std::string controller = "system:serviceaccount:kube-system:namespace-controller";
        CHECK(h.decide(namespaceReview("UPDATE", enforced(), weakened, std::nullopt, controller))
                  .reason == Reason::Exempt);
        CHECK(h.decide(namespaceReview("DELETE", enforced(), NamespaceMeta{}, std::nullopt,
                                       controller))
                  .reason == Reason::Exempt);
    }
    SECTION("a namespace subresource is an ordinary protected request") {
        json review = json::parse(namespaceReview("UPDATE", NamespaceMeta{}, NamespaceMeta{}));
        review["request"]["subResource"] = "finalize";
        CHECK(h.decide(review.dump()).reason == Reason::MissingCode);
    }
}

TEST_CASE("responses in v1beta1 echo the request's apiVersion", "[policy]") {
    Harness h;
    h.enroll("alice");
    json review = fixtureJson("0004");
    review["apiVersion"] = "admission.k8s.io/v1beta1";
    const ReviewOutcome ok = h.post(review.dump(), Endpoint::Mutate);
    CHECK(json::parse(ok.body).at("apiVersion") == "admission.k8s.io/v1beta1");
    CHECK(ok.decision->reason == Reason::Verified);
    const ReviewOutcome replay = h.post(review.dump());
    CHECK(json::parse(replay.body).at("apiVersion") == "admission.k8s.io/v1beta1");
    CHECK(json::parse(replay.body).at("response").at("status").at("code") == 403);
}

TEST_CASE("/mutate strips the token on an allow; /validate and denials never patch", "[policy]") {
    Harness h;
    h.enroll("alice");
    json review = fixtureJson("0004");
    json lastApplied = {{"apiVersion", "apps/v1"},
                        {"kind", "Deployment"},
                        {"metadata",
                         {{"name", "demo-ok"},
                          {"annotations", {{"twostep.dev/token", "123456"}, {"team", "blue"}}}}},
                        {"spec", review.at("request").at("object").at("spec")}};
    annotations(review)["kubectl.kubernetes.io/last-applied-configuration"] =
        lastApplied.dump() + "\n";
    const json object = review.at("request").at("object");

    const ReviewOutcome ok = h.post(review.dump(), Endpoint::Mutate);
    REQUIRE(ok.decision->reason == Reason::Verified);
    const json response = json::parse(ok.body).at("response");
    REQUIRE(response.at("patchType") == "JSONPatch");
    const json patch = json::parse(base64Decode(response.at("patch").get<std::string>()));
    const json patched = object.patch(patch);

    json expectedLastApplied = lastApplied;
    expectedLastApplied["metadata"]["annotations"].erase("twostep.dev/token");
    json expected = object;
    expected["metadata"]["annotations"].erase("twostep.dev/token");
    expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
        expectedLastApplied.dump() + "\n";
    CHECK(patched == expected);
    CHECK(patched.dump().find("123456") == std::string::npos);

    // The replay is denied: no patch on a deny.
    const ReviewOutcome replay = h.post(review.dump(), Endpoint::Mutate);
    CHECK(replay.decision->reason == Reason::Replayed);
    CHECK_FALSE(json::parse(replay.body).at("response").contains("patch"));

    // /validate never patches, even on an allow.
    h.clock.set(T + 30);
    annotations(review)["twostep.dev/token"] = codeAt(T + 30);
    const ReviewOutcome validated = h.post(review.dump(), Endpoint::Validate);
    CHECK(validated.decision->reason == Reason::Verified);
    CHECK_FALSE(json::parse(validated.body).at("response").contains("patch"));

    // An allow without a code on the object (a grant) has nothing to strip.
    REQUIRE(h.store->openGrant("alice", T + 600, T + 30));
    const ReviewOutcome grant = h.post(readFixture("0001"), Endpoint::Mutate);
    CHECK(grant.decision->reason == Reason::Grant);
    CHECK_FALSE(json::parse(grant.body).at("response").contains("patch"));
    // A token on an object allowed by a grant is stripped all the same.
    const ReviewOutcome grantWithToken = h.post(readFixture("0003"), Endpoint::Mutate);
    CHECK(json::parse(grantWithToken.body).at("response").contains("patch"));
}

TEST_CASE("decisions are audited, without the code", "[policy]") {
    Harness h;
    h.enroll("alice");
    h.decide(asUser("0004", "system:node:n1", {}));  // exempt: not audited
    h.decide(unlockReview("get", "/apis"));          // not protected: not audited
    h.decide(readFixture("0006"));                   // dry run: nothing written
    h.decide(readFixture("0003"));                   // wrong
    h.decide(readFixture("0004"));                   // verified
    h.decide(readFixture("0005"));                   // replayed
    h.decide(readFixture("0010"));                   // needs grant
    h.decide(unlockReview(codeAt(T + 30)));          // unlocked (next step, in window)

    const std::vector<AuditEvent> events = h.audit();
    REQUIRE(events.size() == 5);
    std::multiset<std::string> reasons;
    for (const AuditEvent& event : events) {
        reasons.insert(event.reason);
        for (const std::string& field :
             {event.username, event.operation, event.resource, event.subResource, event.nameSpace,
              event.name, event.decision, event.reason, event.uid}) {
            CHECK(field.find("123456") == std::string::npos);
            CHECK(field.find("000000") == std::string::npos);
            CHECK(field.find(codeAt(T + 30)) == std::string::npos);
        }
    }
    CHECK(reasons == std::multiset<std::string>{"wrong_code", "verified", "replayed", "needs_grant",
                                                "unlocked"});
    const auto verified = std::find_if(events.begin(), events.end(),
                                       [](const AuditEvent& e) { return e.reason == "verified"; });
    REQUIRE(verified != events.end());
    CHECK(verified->time == T);
    CHECK(verified->username == "alice");
    CHECK(verified->operation == "CREATE");
    CHECK(verified->resource == "apps/v1/deployments");
    CHECK(verified->nameSpace == "default");
    CHECK(verified->name == "demo-ok");
    CHECK(verified->decision == "allow");
    CHECK(verified->uid == "487d8ae1-d294-4801-8b5f-1f7553cf6e4b");
    const auto exec = std::find_if(events.begin(), events.end(),
                                   [](const AuditEvent& e) { return e.reason == "needs_grant"; });
    REQUIRE(exec != events.end());
    CHECK(exec->resource == "v1/pods");
    CHECK(exec->subResource == "exec");
    CHECK(exec->operation == "CONNECT");
    CHECK(exec->decision == "deny");
}

TEST_CASE("store and key failures fail closed", "[policy]") {
    SECTION("the store throws") {
        ThrowingStore store;
        Sealer sealer(MasterKey::generate());
        FakeClock clock(T);
        Reviewer reviewer(store, sealer, clock, PolicyConfig{});
        const std::string body = readFixture("0004");
        const ReviewOutcome outcome = reviewer.review(body, Endpoint::Mutate);
        checkResponse(body, outcome);
        CHECK_FALSE(outcome.decision->allowed);
        CHECK(outcome.decision->reason == Reason::InternalError);
        CHECK(outcome.decision->message == InternalErrorMessage);
        CHECK(outcome.error == "database is locked (test)");
        CHECK_THROWS_AS(reviewer.decide(std::get<ReviewRequest>(parseReview(body, {}))),
                        twostep::StoreError);
    }
    SECTION("the secret was sealed under another key") {
        Harness h;
        Sealer other(MasterKey::generate());
        REQUIRE(h.store->addUser(NewUser{"alice", other.seal(testSecret(), "alice"), "twostep",
                                         TotpParams{}, UserState::Active},
                                 T, false));
        const ReviewOutcome outcome = h.post(readFixture("0004"));
        CHECK(outcome.decision->reason == Reason::InternalError);
        CHECK(outcome.decision->message == InternalErrorMessage);
        CHECK_FALSE(outcome.error.empty());
        CHECK_FALSE(h.user()->lastStep);
        REQUIRE(h.audit().size() == 1);
        CHECK(h.audit().front().reason == "internal_error");
    }
    SECTION("a window the TOTP code refuses") {
        PolicyConfig config;
        config.window = 1000;
        Harness h(config);
        h.enroll("alice");
        CHECK(h.decide(readFixture("0004")).reason == Reason::InternalError);
    }
}

/// Fails every commit of a change that is not an audit row alone, as a batch whose commit fails.
class FailingCommitStore final : public twostep::test::ForwardingStore {
public:
    using ForwardingStore::ForwardingStore;
    ChangeOutcome commit(const Change& change, const Settle& settle) override {
        if (change.kind != Change::Kind::AuditOnly) {
            throw CommitError("cannot commit a batch of 3 changes in database 'test': disk I/O error");
        }
        return ForwardingStore::commit(change, settle);
    }
};

TEST_CASE("a failed group commit is refused with a deny that says to try again", "[policy]") {
    Harness h(std::make_unique<FailingCommitStore>(openStore(":memory:")), PolicyConfig{});
    h.enroll("alice");
    for (const std::string& body : {readFixture("0004"), readFixture("0003")}) {
        const ReviewOutcome outcome = h.post(body, Endpoint::Mutate);
        CHECK_FALSE(outcome.decision->allowed);
        CHECK(outcome.decision->reason == Reason::InternalError);
        CHECK(outcome.decision->message ==
              "twostep could not record the decision (database error; see the webhook log): the "
              "change was refused; try again");
        CHECK(outcome.error ==
              "cannot commit a batch of 3 changes in database 'test': disk I/O error");
    }
    // Nothing of the failed changes happened; only the refusals were recorded.
    const auto alice = h.user();
    CHECK_FALSE(alice->lastStep);
    CHECK(alice->failures == 0);
    const auto audit = h.audit();
    REQUIRE(audit.size() == 2);
    CHECK(audit[0].reason == "internal_error");
    CHECK(audit[1].reason == "internal_error");
}

TEST_CASE("bad bodies are answered 400 with a short reason", "[policy]") {
    ThrowingStore store;  // a bad request never reaches the store
    Sealer sealer(MasterKey::generate());
    FakeClock clock(T);
    Reviewer reviewer(store, sealer, clock, PolicyConfig{});
    json review = fixtureJson("0004");
    review["request"].erase("uid");
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"", "bad request: body is empty"},
        {"not json", "bad request: body is not valid JSON"},
        {std::string(100000, '['), "bad request: body is not valid JSON"},
        {std::string(100000, '[') + std::string(100000, ']'),
         "bad request: body is not valid JSON (nested deeper than 512 levels)"},
        {review.dump(), "bad request: request.uid is missing"},
    };
    for (const auto& [body, expected] : cases) {
        for (Endpoint endpoint : {Endpoint::Validate, Endpoint::Mutate}) {
            const ReviewOutcome outcome = reviewer.review(body, endpoint);
            CHECK(outcome.httpStatus == 400);
            CHECK(outcome.body == expected);
            CHECK_FALSE(outcome.decision);
            CHECK_FALSE(outcome.record);
        }
    }
}

TEST_CASE("of concurrent requests with the same code exactly one is allowed", "[policy]") {
    twostep::test::TempDir dir;
    Harness h(PolicyConfig{}, (dir / "twostep.db").string());
    h.enroll("alice");
    constexpr int Threads = 8;
    constexpr int Rounds = 25;
    json review = fixtureJson("0004");
    for (int round = 0; round < Rounds; ++round) {
        const Seconds at = T + 30 * round;
        h.clock.set(at);
        annotations(review)["twostep.dev/token"] = codeAt(at);
        const std::string body = review.dump();
        std::atomic<int> allowed{0};
        std::atomic<int> replayed{0};
        std::barrier start(Threads);
        std::vector<std::thread> threads;
        for (int t = 0; t < Threads; ++t) {
            threads.emplace_back([&] {
                start.arrive_and_wait();
                const ReviewOutcome outcome = h.reviewer.review(body, Endpoint::Mutate);
                if (outcome.decision && outcome.decision->allowed) {
                    ++allowed;
                } else if (outcome.decision && outcome.decision->reason == Reason::Replayed) {
                    ++replayed;
                }
            });
        }
        for (auto& thread : threads) {
            thread.join();
        }
        INFO("round " << round);
        REQUIRE(allowed == 1);
        REQUIRE(replayed == Threads - 1);
    }
    CHECK(h.user()->failures == 0);
}

TEST_CASE("globMatch: '*' only, no backtracking blowup", "[policy]") {
    CHECK(globMatch("system:serviceaccount:*", "system:serviceaccount:kube-system:x"));
    CHECK(globMatch("system:serviceaccount:*", "system:serviceaccount:"));
    CHECK_FALSE(globMatch("system:serviceaccount:*", "system:serviceaccount"));
    CHECK(globMatch("*", ""));
    CHECK(globMatch("", ""));
    CHECK_FALSE(globMatch("", "a"));
    CHECK(globMatch("a*b*c", "aXXbYYc"));
    CHECK(globMatch("a*b*c", "abc"));
    CHECK_FALSE(globMatch("a*b*c", "acb"));
    CHECK(globMatch("*-admin", "team-a-admin"));
    CHECK_FALSE(globMatch("*-admin", "team-a-admins"));
    CHECK(globMatch("**", "x"));
    CHECK_FALSE(globMatch("system:node?", "system:node1"));  // '?' is a plain character
    CHECK(globMatch("system:node?", "system:node?"));
    CHECK_FALSE(globMatch("alice", "Alice"));
    const std::string text(100000, 'a');
    CHECK_FALSE(globMatch("*a*a*a*a*a*a*a*a*b", text));
    CHECK(globMatch("*a*a*a*a*a*a*a*a*a", text));
}

// ---- self-enrolment (design §3b) -------------------------------------------------------------

namespace {

/// Fixture 0013 turned into a self-enrolment review: path, verb, and who asks.
std::string enrollReview(const std::string& path, const std::optional<std::string>& verb,
                         const std::string& username = "alice",
                         const std::vector<std::string>& groups = {"developers",
                                                                   "system:authenticated"}) {
    json review = json::parse(unlockReview(verb, path));
    review["request"]["userInfo"]["username"] = username;
    review["request"]["userInfo"]["groups"] = groups;
    return review.dump();
}

std::string beginReview(const std::string& username = "alice",
                        const std::vector<std::string>& groups = {"developers",
                                                                  "system:authenticated"}) {
    return enrollReview("/twostep.dev/enroll", "get", username, groups);
}

std::string confirmReview(const std::string& code, const std::string& username = "alice") {
    return enrollReview("/twostep.dev/enroll/confirm", code, username);
}

/// The verb /mutate's patch puts into the SelfSubjectAccessReview, or nullopt without a patch.
std::optional<std::string> answeredVerb(const ReviewOutcome& outcome, const std::string& body) {
    const json response = json::parse(outcome.body).at("response");
    if (!response.contains("patch")) {
        return std::nullopt;
    }
    CHECK(response.at("patchType") == "JSONPatch");
    const json patch = json::parse(base64Decode(response.at("patch").get<std::string>()));
    const json patched = json::parse(body).at("request").at("object").patch(patch);
    // Only the verb changes: the API server refuses any other change to a review's spec.
    json unchanged = patched;
    unchanged["spec"]["nonResourceAttributes"]["verb"] =
        json::parse(body)["request"]["object"]["spec"]["nonResourceAttributes"].value("verb", "");
    CHECK(unchanged == json::parse(body).at("request").at("object"));
    return patched.at("spec").at("nonResourceAttributes").at("verb").get<std::string>();
}

/// Self-enrolment's answer must never reach the log record, the message or a warning.
void checkAnswerKeptSecret(const ReviewOutcome& outcome, const std::string& answer) {
    REQUIRE(outcome.decision);
    CHECK(outcome.decision->message.find(answer) == std::string::npos);
    for (const std::string& warning : outcome.decision->warnings) {
        CHECK(warning.find(answer) == std::string::npos);
    }
    REQUIRE(outcome.record);
    CHECK(outcome.record->name.find(answer) == std::string::npos);
    CHECK(outcome.record->reason.find(answer) == std::string::npos);
}

/// Begins through /mutate and returns the secret from the answered otpauth URI.
struct Begun {
    SecretBytes secret;
    OtpauthAccount account;
};

Begun begin(Harness& h, const std::string& username = "alice") {
    const std::string body = beginReview(username);
    const ReviewOutcome outcome = h.post(body, Endpoint::Mutate);
    REQUIRE(outcome.decision->reason == Reason::EnrollStarted);
    const std::optional<std::string> uri = answeredVerb(outcome, body);
    REQUIRE(uri);
    checkAnswerKeptSecret(outcome, *uri);
    const std::optional<OtpauthAccount> account = parseOtpauthUri(*uri);
    REQUIRE(account);
    std::optional<std::vector<std::uint8_t>> bytes =
        twostep::core::base32::decode(account->secretBase32);
    REQUIRE(bytes);
    return Begun{SecretBytes(std::move(*bytes)), *account};
}

std::string codeOf(const Begun& begun, Seconds at) {
    return generateTotp(begun.secret, begun.account.params, at);
}

PolicyConfig openMode(std::vector<std::string> groups = {}) {
    PolicyConfig config;
    config.selfEnroll.mode = SelfEnrollMode::Open;
    config.selfEnroll.openGroups = std::move(groups);
    return config;
}

}  // namespace

TEST_CASE("self-enrolment: an invited user enrols through /mutate", "[policy][enroll]") {
    Harness h;
    h.store->putInvitation(Invitation{"alice", "admin", T, T + 86400}, T);

    const Begun begun = begin(h);
    CHECK(begun.account.account == "alice");
    CHECK(begun.account.issuer == "twostep");
    CHECK(begun.account.params == TotpParams{});
    CHECK(begun.secret.size() == DefaultSecretBytes);
    const auto pending = h.store->findPendingEnrollment("alice");
    REQUIRE(pending);
    CHECK(pending->expiresAt == T + 86400);  // with the invitation
    CHECK(pending->invited);
    // Sealed at rest: the stored bytes are not the secret, and they open to it.
    CHECK(pending->sealedSecret.find(std::string(begun.secret.bytes().begin(),
                                                 begun.secret.bytes().end())) == std::string::npos);
    CHECK(constantTimeEquals(h.sealer.open(pending->sealedSecret, "alice").bytes(),
                             begun.secret.bytes()));
    CHECK_FALSE(h.user());  // not enrolled until confirmed

    h.clock.advance(20);
    const std::string body = confirmReview(codeOf(begun, T + 20));
    const ReviewOutcome confirmed = h.post(body, Endpoint::Mutate);
    REQUIRE(confirmed.decision->reason == Reason::Enrolled);
    const std::optional<std::string> codes = answeredVerb(confirmed, body);
    REQUIRE(codes);
    checkAnswerKeptSecret(confirmed, *codes);
    std::vector<std::string> recovery;
    std::istringstream words(*codes);
    for (std::string word; words >> word;) {
        CHECK(looksLikeRecoveryCode(word));
        recovery.push_back(word);
    }
    CHECK(recovery.size() == 10);

    const auto alice = h.user();
    REQUIRE(alice);
    CHECK(alice->state == UserState::Active);
    CHECK(alice->recoveryCodesLeft == 10);
    CHECK(alice->lastStep == timeStep(T + 20, 30));
    CHECK_FALSE(h.store->findPendingEnrollment("alice"));
    CHECK_FALSE(h.store->findInvitation("alice"));
    // The confirming code is used: the same code on a change is a replay.
    CHECK(h.decide(withToken("0004", codeOf(begun, T + 20))).reason == Reason::Replayed);
    h.clock.advance(30);
    CHECK(h.decide(withToken("0004", codeOf(begun, T + 50))).reason == Reason::Verified);
    CHECK(h.decide(withToken("0004", recovery[3])).reason == Reason::RecoveryCode);
    // Nothing left to confirm, and no second enrolment without a new invitation.
    CHECK(h.decide(confirmReview(codeOf(begun, T + 80)), Endpoint::Mutate).reason ==
          Reason::NoEnrollment);
    CHECK(h.decide(beginReview(), Endpoint::Mutate).reason == Reason::NotInvited);

    // Every step is audited, with its reason and never the secret or a recovery code.
    std::vector<std::string> reasons;
    for (const AuditEvent& event : h.audit()) {
        reasons.push_back(event.reason);
        CHECK((event.resource == "authorization.k8s.io/v1/selfsubjectaccessreviews" ||
               event.resource == "apps/v1/deployments"));
    }
    CHECK(std::count(reasons.begin(), reasons.end(), "enroll_started") == 1);
    CHECK(std::count(reasons.begin(), reasons.end(), "enrolled") == 1);
    CHECK(std::count(reasons.begin(), reasons.end(), "not_invited") == 1);
}

TEST_CASE("self-enrolment: who may begin", "[policy][enroll]") {
    SECTION("invite mode: nobody without an invitation, and the message says whom to ask") {
        Harness h;
        const Decision d = h.decide(beginReview(), Endpoint::Mutate);
        CHECK(d.reason == Reason::NotInvited);
        CHECK(d.message ==
              "user alice has no open invitation to enroll; ask an admin to run "
              "`twostep-enroll invite alice`");
        CHECK_FALSE(h.store->findPendingEnrollment("alice"));
    }
    SECTION("an expired invitation is no invitation") {
        Harness h;
        h.store->putInvitation(Invitation{"alice", "admin", T - 100, T}, T - 100);
        CHECK(h.decide(beginReview(), Endpoint::Mutate).reason == Reason::NotInvited);
    }
    SECTION("an enrolled user needs an invitation, even in open mode") {
        Harness h(openMode());
        h.enroll("alice");
        const Decision d = h.decide(beginReview(), Endpoint::Mutate);
        CHECK(d.reason == Reason::NotInvited);
        CHECK(d.message ==
              "user alice is enrolled already; to enroll a new device, ask an admin to run "
              "`twostep-enroll invite alice`");
    }
    SECTION("open mode: any authenticated user not enrolled, for --self-enroll-ttl") {
        Harness h(openMode());
        const Begun begun = begin(h);
        CHECK(h.store->findPendingEnrollment("alice")->expiresAt == T + 3600);
        CHECK_FALSE(h.store->findPendingEnrollment("alice")->invited);
        // Not authenticated, or anonymous: never trust on first use.
        CHECK(h.decide(beginReview("bob", {"developers"}), Endpoint::Mutate).reason ==
              Reason::NotInvited);
        CHECK(h.decide(beginReview("system:anonymous",
                                   {"system:unauthenticated", "system:authenticated"}),
                       Endpoint::Mutate)
                  .reason == Reason::NotInvited);
        // The pending secret expires: confirming after the hour is refused.
        h.clock.advance(3600);
        CHECK(h.decide(confirmReview(codeOf(begun, T + 3600)), Endpoint::Mutate).reason ==
              Reason::NoEnrollment);
    }
    SECTION("open mode with --self-enroll-group: members only") {
        Harness h(openMode({"team-*"}));
        CHECK(h.decide(beginReview("bob", {"developers", "system:authenticated"}),
                       Endpoint::Mutate)
                  .reason == Reason::NotInvited);
        CHECK(h.decide(beginReview("carol", {"team-blue", "system:authenticated"}),
                       Endpoint::Mutate)
                  .reason == Reason::EnrollStarted);
        // An invitation lets a non-member in.
        h.store->putInvitation(Invitation{"bob", "admin", T, T + 60}, T);
        CHECK(h.decide(beginReview("bob", {"developers", "system:authenticated"}),
                       Endpoint::Mutate)
                  .reason == Reason::EnrollStarted);
    }
    SECTION("off: nobody, invited or not") {
        PolicyConfig config;
        config.selfEnroll.mode = SelfEnrollMode::Off;
        Harness h(config);
        h.store->putInvitation(Invitation{"alice", "admin", T, T + 60}, T);
        const Decision d = h.decide(beginReview(), Endpoint::Mutate);
        CHECK(d.reason == Reason::NotInvited);
        CHECK(d.message == "self-enrollment is turned off on this webhook; ask an admin to "
                           "enroll you (`twostep-enroll add alice`)");
    }
    SECTION("a disabled user is refused") {
        Harness h;
        h.enroll("alice", UserState::Disabled);
        h.store->putInvitation(Invitation{"alice", "admin", T, T + 60}, T);
        CHECK(h.decide(beginReview(), Endpoint::Mutate).reason == Reason::Disabled);
    }
    SECTION("a very long name: the warnings stay short, the name is cut in messages") {
        Harness h(openMode());
        const std::string name(300, 'n');
        const Begun begun = begin(h, name);  // checkResponse: every warning under 120 characters
        const ReviewOutcome confirmed =
            h.post(enrollReview("/twostep.dev/enroll/confirm", codeOf(begun, T), name),
                   Endpoint::Mutate);
        CHECK(confirmed.decision->reason == Reason::Enrolled);
        CHECK(h.decide(beginReview(name), Endpoint::Mutate).message.find(name) ==
              std::string::npos);
    }
    SECTION("exempt users are let through untouched") {
        Harness h(openMode());
        const std::string body = beginReview("system:serviceaccount:ci:bot");
        const ReviewOutcome outcome = h.post(body, Endpoint::Mutate);
        CHECK(outcome.decision->reason == Reason::Exempt);
        CHECK_FALSE(answeredVerb(outcome, body));
    }
}

TEST_CASE("self-enrolment: /validate and dry runs make nothing", "[policy][enroll]") {
    Harness h(openMode());
    h.store->putInvitation(Invitation{"alice", "admin", T, T + 60}, T);
    const Decision refused = h.decide(beginReview(), Endpoint::Validate);
    CHECK(refused.reason == Reason::EnrollNeedsMutate);
    CHECK(refused.message ==
          "self-enrollment needs twostep's mutating webhook: ask an admin to send "
          "SelfSubjectAccessReviews for /twostep.dev/ paths to /mutate (docs/admin-guide.md)");
    CHECK(h.decide(confirmReview("123456"), Endpoint::Validate).reason ==
          Reason::EnrollNeedsMutate);
    CHECK_FALSE(h.store->findPendingEnrollment("alice"));

    json dryRun = json::parse(beginReview());
    dryRun["request"]["dryRun"] = true;
    const ReviewOutcome outcome = h.post(dryRun.dump(), Endpoint::Mutate);
    CHECK(outcome.decision->reason == Reason::DryRun);
    CHECK_FALSE(answeredVerb(outcome, dryRun.dump()));
    CHECK_FALSE(h.store->findPendingEnrollment("alice"));
    CHECK(h.store->findInvitation("alice"));
}

TEST_CASE("self-enrolment: a second begin replaces the pending secret", "[policy][enroll]") {
    Harness h;
    h.store->putInvitation(Invitation{"alice", "admin", T, T + 600}, T);
    const Begun first = begin(h);
    const Begun second = begin(h);
    CHECK(first.account.secretBase32 != second.account.secretBase32);
    const Decision stale = h.decide(confirmReview(codeOf(first, T)), Endpoint::Mutate);
    CHECK(stale.reason == Reason::WrongCode);
    CHECK(h.decide(confirmReview(codeOf(second, T)), Endpoint::Mutate).reason ==
          Reason::Enrolled);
    CHECK(constantTimeEquals(h.sealer.open(h.user()->sealedSecret, "alice").bytes(),
                             second.secret.bytes()));
}

TEST_CASE("self-enrolment: the invitation's end ends the pending secret", "[policy][enroll]") {
    Harness h;
    h.store->putInvitation(Invitation{"alice", "admin", T, T + 120}, T);
    const Begun begun = begin(h);
    SECTION("expiry") {
        h.clock.advance(120);
        const Decision d = h.decide(confirmReview(codeOf(begun, T + 120)), Endpoint::Mutate);
        CHECK(d.reason == Reason::NoEnrollment);
        CHECK(d.message == "user alice has no enrollment waiting for a code (it expired, or none "
                           "was begun); run `kubectl twostep enroll` again");
        CHECK_FALSE(h.user());
    }
    SECTION("uninvite") {
        REQUIRE(h.store->removeInvitation("alice"));
        CHECK(h.decide(confirmReview(codeOf(begun, T)), Endpoint::Mutate).reason ==
              Reason::NoEnrollment);
    }
}

TEST_CASE("self-enrolment: re-enrolment keeps the current secret until confirmed",
          "[policy][enroll]") {
    Harness h;
    h.enroll("alice");  // TestSecret
    REQUIRE(h.store->replaceRecoveryCodes("alice", {hashRecoveryCode("aaaa-bbbb-cccc-dddd")}, T));
    h.store->putInvitation(Invitation{"alice", "admin", T, T + 600}, T);
    const Begun begun = begin(h);
    // The old phone still works while the new one is pending.
    CHECK(h.decide(withToken("0004", std::string(FixtureCode))).reason == Reason::Verified);
    h.clock.advance(30);
    CHECK(h.decide(confirmReview(codeOf(begun, T + 30)), Endpoint::Mutate).reason ==
          Reason::Enrolled);
    h.clock.advance(30);
    CHECK(h.decide(withToken("0004", codeAt(T + 60))).reason == Reason::WrongCode);
    CHECK(h.decide(withToken("0004", "aaaa-bbbb-cccc-dddd")).reason == Reason::WrongCode);
    CHECK(h.decide(withToken("0004", codeOf(begun, T + 60))).reason == Reason::Verified);
}

TEST_CASE("self-enrolment: wrong confirmation codes count toward the lockout",
          "[policy][enroll][lockout]") {
    SECTION("a user not enrolled yet: counted on the pending secret, kept across begins") {
        Harness h(openMode());
        begin(h);
        const Decision malformed = h.decide(confirmReview("12345"), Endpoint::Mutate);
        CHECK(malformed.reason == Reason::MalformedCode);
        CHECK(malformed.message ==
              "the confirmation's verb must hold the 6-digit code from your authenticator app");
        CHECK(h.store->findPendingEnrollment("alice")->failures == 0);  // a typo is no guess
        const Decision wrong = h.decide(confirmReview("000000"), Endpoint::Mutate);
        CHECK(wrong.reason == Reason::WrongCode);
        CHECK(wrong.message == "wrong two-step code for user alice (4 attempts left before a "
                               "lockout); check that your device's clock is right");
        for (int i = 0; i < 4; ++i) {
            CHECK(h.decide(confirmReview("000000"), Endpoint::Mutate).reason ==
                  Reason::WrongCode);
        }
        CHECK(h.decide(beginReview(), Endpoint::Mutate).reason == Reason::LockedOut);
        h.clock.advance(60);
        const Begun fresh = begin(h);
        CHECK(h.decide(confirmReview(codeOf(fresh, T + 60)), Endpoint::Mutate).reason ==
              Reason::Enrolled);
    }
    SECTION("an enrolled user: counted on the user, like any wrong code") {
        PolicyConfig config;
        config.lockout.maxFailures = 2;
        Harness h(config);
        h.enroll("alice");
        h.store->putInvitation(Invitation{"alice", "admin", T, T + 600}, T);
        const Begun begun = begin(h);
        CHECK(h.decide(confirmReview("000000"), Endpoint::Mutate).reason == Reason::WrongCode);
        CHECK(h.user()->failures == 1);
        CHECK(h.decide(confirmReview("000000"), Endpoint::Mutate).reason == Reason::WrongCode);
        REQUIRE(h.user()->isLocked(T));
        // Locked: the right confirmation code and the old secret's code are both refused.
        CHECK(h.decide(confirmReview(codeOf(begun, T)), Endpoint::Mutate).reason ==
              Reason::LockedOut);
        CHECK(h.decide(withToken("0004", std::string(FixtureCode))).reason == Reason::LockedOut);
        CHECK(h.decide(beginReview(), Endpoint::Mutate).reason == Reason::LockedOut);
    }
}

TEST_CASE("self-enrolment: a confirmation needs the pending secret's code", "[policy][enroll]") {
    Harness h(openMode());
    CHECK(h.decide(confirmReview("123456"), Endpoint::Mutate).reason == Reason::NoEnrollment);
    const Begun begun = begin(h);
    const Decision missing =
        h.decide(enrollReview("/twostep.dev/enroll/confirm", std::nullopt), Endpoint::Mutate);
    CHECK(missing.reason == Reason::MissingCode);
    // Only /twostep.dev/enroll and /twostep.dev/enroll/confirm are enrolment.
    CHECK(h.decide(enrollReview("/twostep.dev/enroll/other", "get"), Endpoint::Mutate).reason ==
          Reason::NotProtected);
    CHECK(h.decide(enrollReview("/twostep.dev/enrollment", "get"), Endpoint::Mutate).reason ==
          Reason::NotProtected);
    // A code two steps away is outside the window of 1.
    CHECK(h.decide(confirmReview(codeOf(begun, T + 60)), Endpoint::Mutate).reason ==
          Reason::WrongCode);
    CHECK(h.decide(confirmReview(codeOf(begun, T - 30)), Endpoint::Mutate).reason ==
          Reason::Enrolled);
    // The offset of the confirming code is remembered: the phone is a step behind.
    CHECK(h.user()->driftSteps == -1);
}

TEST_CASE("clock drift: the window follows the step where a user's codes verify",
          "[policy][drift]") {
    Harness h;
    h.enroll("alice");
    h.enroll("bob");  // the same secret, and no drift learned: the comparison
    // A phone 40 s ahead: its code is one step ahead for the first 20 s of each step, two steps
    // ahead for the last 10 s.
    const auto phone = [&] { return codeAt(h.clock.now() + 40); };
    h.clock.advance(5);  // T is a step boundary: the phone shows step +1
    CHECK(h.decide(withToken("0004", phone())).reason == Reason::Verified);
    CHECK(h.user()->driftSteps == 1);
    h.clock.advance(50);  // 25 s into the next step: the phone shows +2
    CHECK(h.decide(withToken("0004", phone())).reason == Reason::Verified);
    CHECK(h.user()->driftSteps == 2);
    const std::string bobsCode = phone();
    json bobReview = json::parse(withToken("0004", bobsCode));
    bobReview["request"]["userInfo"]["username"] = "bob";
    CHECK(h.decide(bobReview.dump()).reason == Reason::WrongCode);  // outside ±1 around now
    // The phone keeps working at every point of the next steps.
    for (int i = 0; i < 12; ++i) {
        h.clock.advance(10);
        const Decision d = h.decide(withToken("0004", phone()));
        INFO("at T+" << h.clock.now() - T);
        CHECK((d.reason == Reason::Verified || d.reason == Reason::Replayed));
    }
    CHECK(h.user()->failures == 0);

    // Only verified codes move it: wrong codes and replays leave it where it is.
    const int learned = h.user()->driftSteps;
    CHECK(h.decide(withToken("0004", "000000")).reason == Reason::WrongCode);
    CHECK(h.user()->driftSteps == learned);
}

TEST_CASE("clock drift is bounded", "[policy][drift]") {
    Harness h;
    h.enroll("alice");
    // Walk the phone's clock ahead a step at a time: the drift follows up to MaxDriftSteps.
    for (int ahead = 1; ahead <= MaxDriftSteps + 1; ++ahead) {
        h.clock.advance(30);
        const Decision d =
            h.decide(withToken("0004", codeAt(h.clock.now() + ahead * 30)));
        INFO("ahead " << ahead);
        CHECK(d.reason == Reason::Verified);
        CHECK(h.user()->driftSteps == std::min(ahead, MaxDriftSteps));
    }
    // At the bound, a code further ahead than bound + window is refused.
    h.clock.advance(30);
    CHECK(h.decide(withToken("0004", codeAt(h.clock.now() + (MaxDriftSteps + 2) * 30))).reason ==
          Reason::WrongCode);
    CHECK(h.user()->driftSteps == MaxDriftSteps);
    // And a device whose clock is put right is followed back (once its codes are newer than
    // the last one used).
    h.clock.advance(4 * 30);
    CHECK(h.decide(withToken("0004", codeAt(h.clock.now() + 2 * 30))).reason == Reason::Verified);
    CHECK(h.user()->driftSteps == 2);
}
