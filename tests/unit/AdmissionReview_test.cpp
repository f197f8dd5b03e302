#include "core/AdmissionReview.hpp"

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <variant>
#include <vector>

#include "support/Fixtures.hpp"

using namespace twostep::core;
using nlohmann::json;
using namespace twostep::test;

namespace {

const ReviewFields Fields;

ReviewRequest parseOk(const std::string& body, const ReviewFields& fields = Fields) {
    auto parsed = parseReview(body, fields);
    if (const auto* error = std::get_if<ParseError>(&parsed)) {
        FAIL("unexpected parse error: " << error->reason);
    }
    return std::get<ReviewRequest>(parsed);
}

ParseError parseBad(const std::string& body) {
    auto parsed = parseReview(body, Fields);
    REQUIRE(std::holds_alternative<ParseError>(parsed));
    return std::get<ParseError>(parsed);
}

/// A string member of `object` (read with nlohmann: the oracle for the simdjson reader).
std::string text(const json& object, const std::string& key) {
    return object.contains(key) && object.at(key).is_string() ? object.at(key).get<std::string>()
                                                              : std::string();
}

std::optional<std::string> annotation(const json& object, const std::string& key) {
    if (!object.is_object() || !object.contains("metadata") ||
        !object.at("metadata").contains("annotations") ||
        !object.at("metadata").at("annotations").contains(key)) {
        return std::nullopt;
    }
    return object.at("metadata").at("annotations").at(key).get<std::string>();
}

/// A minimal review around `request`.
std::string review(const json& request, const std::string& apiVersion = "admission.k8s.io/v1") {
    return json{{"kind", "AdmissionReview"}, {"apiVersion", apiVersion}, {"request", request}}
        .dump();
}

json minimalRequest() {
    return json{{"uid", "u-1"},
                {"operation", "CREATE"},
                {"resource", {{"group", "apps"}, {"version", "v1"}, {"resource", "deployments"}}},
                {"userInfo", {{"username", "alice"}, {"groups", {"developers"}}}},
                {"object", {{"metadata", {{"name", "x"}}}}}};
}

/// 0004 with a last-applied-configuration that carries the token too, as `kubectl apply` makes.
json withLastApplied(json review, const std::string& lastApplied) {
    review["request"]["object"]["metadata"]["annotations"]
          ["kubectl.kubernetes.io/last-applied-configuration"] = lastApplied;
    return review;
}

std::string lastAppliedOf(const json& object, const std::string& token) {
    json config = {{"apiVersion", "apps/v1"},
                   {"kind", "Deployment"},
                   {"metadata",
                    {{"name", "demo-ok"},
                     {"namespace", "default"},
                     {"annotations", {{"twostep.dev/token", token}, {"team", "blue"}}}}},
                   {"spec", object.at("spec")}};
    return config.dump() + "\n";
}

}  // namespace

TEST_CASE("every fixture parses to the fields a reader of the raw JSON sees", "[review]") {
    const auto names = fixtureNames();
    REQUIRE(names.size() >= 13);
    for (const std::string& name : names) {
        INFO(name);
        const json raw = fixtureJson(name.substr(0, 4));
        const json& in = raw.at("request");
        const ReviewRequest request = parseOk(readFixture(name.substr(0, 4)));
        CHECK(request.apiVersion == raw.at("apiVersion").get<std::string>());
        CHECK(request.uid == text(in, "uid"));
        CHECK(request.operation == text(in, "operation"));
        CHECK(request.group == text(in.at("resource"), "group"));
        CHECK(request.version == text(in.at("resource"), "version"));
        CHECK(request.resource == text(in.at("resource"), "resource"));
        CHECK(request.kind == text(in.at("kind"), "kind"));
        CHECK(request.subResource == text(in, "subResource"));
        CHECK(request.nameSpace == text(in, "namespace"));
        CHECK(request.name == text(in, "name"));
        CHECK(request.username == text(in.at("userInfo"), "username"));
        CHECK(request.groups == in.at("userInfo").at("groups").get<std::vector<std::string>>());
        CHECK(request.dryRun == in.value("dryRun", false));
        CHECK(request.hasObject == (in.contains("object") && in.at("object").is_object()));
        CHECK(request.hasOldObject == (in.contains("oldObject") && in.at("oldObject").is_object()));
        CHECK(request.token == annotation(in.at("object"), "twostep.dev/token"));
        CHECK_FALSE(request.lastAppliedConfiguration.has_value());
    }
}

TEST_CASE("fixture details: connect, delete, dry run, unlock", "[review]") {
    const ReviewRequest connect = parseOk(readFixture("0010"));
    CHECK(connect.operation == "CONNECT");
    CHECK(connect.subResource == "exec");
    CHECK(connect.hasObject);  // PodExecOptions, with no metadata
    CHECK_FALSE(connect.token);

    const ReviewRequest del = parseOk(readFixture("0009"));
    CHECK_FALSE(del.hasObject);
    CHECK(del.hasOldObject);
    CHECK_FALSE(del.token);  // the old object's token is not a code for this request

    CHECK(parseOk(readFixture("0006")).dryRun);
    CHECK(parseOk(readFixture("0006")).token == "123456");
    CHECK(parseOk(readFixture("0004")).token == "123456");

    const ReviewRequest unlock = parseOk(readFixture("0013"));
    CHECK(unlock.group == "authorization.k8s.io");
    CHECK(unlock.resource == "selfsubjectaccessreviews");
    CHECK(unlock.nonResourcePath == "/twostep.dev/unlock");
    CHECK(unlock.nonResourceVerb == "000000");
    CHECK(unlock.nameSpace.empty());
}

TEST_CASE("nonResourceAttributes are read only for SelfSubjectAccessReviews", "[review]") {
    json request = minimalRequest();
    request["object"]["spec"] = {{"nonResourceAttributes", {{"path", "/x"}, {"verb", "get"}}}};
    CHECK_FALSE(parseOk(review(request)).nonResourcePath);
}

TEST_CASE("annotations are read from object, the enforcement label from oldObject", "[review]") {
    json request = minimalRequest();
    request["operation"] = "UPDATE";
    request["resource"] = {{"group", ""}, {"version", "v1"}, {"resource", "namespaces"}};
    request["object"] = {{"metadata",
                          {{"name", "team-a"},
                           {"labels", {{"other", "x"}}},
                           {"annotations",
                            {{"twostep.dev/token", "654321"},
                             {"kubectl.kubernetes.io/last-applied-configuration", "{}"}}}}}};
    request["oldObject"] = {
        {"metadata", {{"name", "team-a"}, {"labels", {{"twostep.dev/enforce", "enabled"}}}}}};
    const ReviewRequest parsed = parseOk(review(request));
    CHECK(parsed.group.empty());
    CHECK(parsed.resource == "namespaces");
    CHECK(parsed.enforceLabelOld == "enabled");
    CHECK(parsed.token == "654321");
    CHECK(parsed.lastAppliedConfiguration == "{}");

    ReviewFields custom;
    custom.tokenAnnotation = "example.com/otp";
    custom.enforceLabel = "other";
    request["oldObject"]["metadata"]["labels"]["other"] = "x";
    const ReviewRequest renamed = parseOk(review(request), custom);
    CHECK_FALSE(renamed.token);
    CHECK(renamed.enforceLabelOld == "x");
}

TEST_CASE("null and absent optional members are the same", "[review]") {
    json request = minimalRequest();
    request["dryRun"] = nullptr;
    request["namespace"] = nullptr;
    request["oldObject"] = nullptr;
    request["object"] = {{"metadata", {{"annotations", nullptr}, {"labels", nullptr}}}};
    request["userInfo"]["groups"] = nullptr;
    const ReviewRequest parsed = parseOk(review(request));
    CHECK_FALSE(parsed.dryRun);
    CHECK(parsed.nameSpace.empty());
    CHECK_FALSE(parsed.hasOldObject);
    CHECK(parsed.groups.empty());
    CHECK_FALSE(parsed.token);
}

TEST_CASE("bad reviews get a short reason", "[review]") {
    struct Case {
        std::string body;
        std::string reason;
        std::string uid;
    };
    const auto changed = [](const std::string& pointer, const json& value) {
        json request = minimalRequest();
        request[json::json_pointer(pointer)] = value;
        return review(request);
    };
    const auto without = [](const std::string& key) {
        json request = minimalRequest();
        request.erase(key);
        return review(request);
    };
    const std::vector<Case> cases = {
        {"{", "body is not valid JSON", ""},
        {"{\"kind\": \"AdmissionReview\"} trailing", "body is not valid JSON", ""},
        {"[1, 2]", "body is not an AdmissionReview (kind must be AdmissionReview)", ""},
        {"\"AdmissionReview\"", "body is not an AdmissionReview (kind must be AdmissionReview)",
         ""},
        {R"({"kind": "Pod", "apiVersion": "v1"})",
         "body is not an AdmissionReview (kind must be AdmissionReview)", ""},
        {R"({"kind": 1, "apiVersion": "v1"})",
         "body is not an AdmissionReview (kind must be AdmissionReview)", ""},
        {R"({"kind": "AdmissionReview"})", "apiVersion is missing", ""},
        {R"({"kind": "AdmissionReview", "apiVersion": 1})", "apiVersion must be a string", ""},
        {R"({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v2"})",
         "unsupported apiVersion \"admission.k8s.io/v2\" (want admission.k8s.io/v1 or v1beta1)",
         ""},
        {R"({"kind": "AdmissionReview", "apiVersion": "a\u0001b"})",
         "unsupported apiVersion \"a?b\" (want admission.k8s.io/v1 or v1beta1)", ""},
        {R"({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1"})",
         "request is missing", ""},
        {R"({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": null})",
         "request is missing", ""},
        {R"({"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": []})",
         "request must be an object", ""},
        {without("uid"), "request.uid is missing", ""},
        {changed("/uid", ""), "request.uid is missing", ""},
        {changed("/uid", 7), "request.uid must be a string", ""},
        {without("operation"), "request.operation is missing", "u-1"},
        {changed("/operation", "PATCH"),
         "request.operation must be CREATE, UPDATE, DELETE or CONNECT", "u-1"},
        {without("userInfo"), "request.userInfo.username is missing", "u-1"},
        {changed("/userInfo", json::object()), "request.userInfo.username is missing", "u-1"},
        {changed("/userInfo/username", ""), "request.userInfo.username is missing", "u-1"},
        {changed("/userInfo/username", 3), "request.userInfo.username must be a string", "u-1"},
        {changed("/userInfo", "alice"), "request.userInfo must be an object", "u-1"},
        {changed("/userInfo/groups", "developers"),
         "request.userInfo.groups must be an array of strings", "u-1"},
        {changed("/userInfo/groups", json::array({"a", 1})),
         "request.userInfo.groups must be an array of strings", "u-1"},
        {changed("/dryRun", "true"), "request.dryRun must be a boolean", "u-1"},
        {changed("/dryRun", 1), "request.dryRun must be a boolean", "u-1"},
        {changed("/object", "x"), "request.object must be an object", "u-1"},
        {changed("/oldObject", json::array()), "request.oldObject must be an object", "u-1"},
        {changed("/object/metadata", 1), "request.object.metadata must be an object", "u-1"},
        {changed("/object/metadata/annotations", json::array()),
         "request.object.metadata.annotations must be an object", "u-1"},
        {changed("/object/metadata/annotations", {{"twostep.dev/token", 123456}}),
         "annotation twostep.dev/token must be a string", "u-1"},
        {changed("/object/metadata/annotations",
                 {{"kubectl.kubernetes.io/last-applied-configuration", json::object()}}),
         "annotation kubectl.kubernetes.io/last-applied-configuration must be a string", "u-1"},
        {changed("/oldObject", {{"metadata", {{"labels", {{"twostep.dev/enforce", 1}}}}}}),
         "label twostep.dev/enforce must be a string", "u-1"},
        {changed("/kind", "Deployment"), "request.kind must be an object", "u-1"},
        {changed("/resource/resource", 1), "request.resource.resource must be a string", "u-1"},
        {changed("/subResource", 1), "request.subResource must be a string", "u-1"},
        {changed("/namespace", false), "request.namespace must be a string", "u-1"},
        {changed("/name", json::object()), "request.name must be a string", "u-1"},
    };
    for (const Case& c : cases) {
        INFO(c.body);
        const ParseError error = parseBad(c.body);
        CHECK(error.httpStatus == 400);
        CHECK(error.reason == c.reason);
        CHECK(error.uid == c.uid);
    }
}

TEST_CASE("a malformed unlock review is refused", "[review]") {
    json unlock = fixtureJson("0013");
    unlock["request"]["object"]["spec"]["nonResourceAttributes"]["verb"] = 123456;
    CHECK(parseBad(unlock.dump()).reason ==
          "request.object.spec.nonResourceAttributes.verb must be a string");
    unlock["request"]["object"]["spec"] = "x";
    CHECK(parseBad(unlock.dump()).reason == "request.object.spec must be an object");
}

TEST_CASE("hostile bodies are refused without crashing", "[review]") {
    SECTION("empty") {
        CHECK(parseBad("").reason == "body is empty");
    }
    SECTION("deeply nested arrays") {
        // Unbalanced: simdjson's first stage refuses it before any nesting is followed.
        CHECK(parseBad(std::string(100000, '[')).reason == "body is not valid JSON");
        const ParseError error = parseBad(std::string(100000, '[') + std::string(100000, ']'));
        CHECK(error.reason == "body is not valid JSON (nested deeper than 512 levels)");
        CHECK(parseBad(std::string(100000, '{')).reason == "body is not valid JSON");
    }
    SECTION("deeply nested inside the object") {
        json request = minimalRequest();
        std::string deep = std::string(600, '[') + std::string(600, ']');
        std::string body = review(request);
        body.insert(body.rfind('}'), ",\"extra\":" + deep);
        const ParseError error = parseBad(body);
        CHECK(error.reason == "body is not valid JSON (nested deeper than 512 levels)");
        CHECK(error.uid.empty());
    }
    SECTION("nesting within the bound is fine") {
        std::string body = review(minimalRequest());
        body.insert(body.rfind('}'), ",\"extra\":" + std::string(400, '[') + std::string(400, ']'));
        CHECK(parseOk(body).uid == "u-1");
    }
    SECTION("invalid UTF-8") {
        std::string body = review(minimalRequest());
        body.replace(body.find("alice"), 5, "al\xC3\x28");
        CHECK(parseBad(body).reason == "body is not valid JSON (invalid UTF-8)");
    }
    SECTION("a NUL byte and control characters") {
        std::string body = review(minimalRequest());
        body.replace(body.find("alice"), 5, std::string("a\0b", 3));
        CHECK(parseBad(body).reason == "body is not valid JSON");
    }
    SECTION("huge strings, then a normal body on the same thread") {
        json request = minimalRequest();
        request["userInfo"]["username"] = std::string(2 * 1024 * 1024, 'a');
        request["object"]["metadata"]["annotations"] = {
            {"twostep.dev/token", std::string(50000, '9')}};
        const ReviewRequest parsed = parseOk(review(request));
        CHECK(parsed.username.size() == 2u * 1024 * 1024);
        CHECK(parsed.token->size() == 50000u);
        CHECK(parseOk(readFixture("0004")).token == "123456");
    }
    SECTION("a huge unsupported apiVersion is cut in the reason") {
        const std::string body =
            json{{"kind", "AdmissionReview"}, {"apiVersion", std::string(10000, 'v')}}.dump();
        CHECK(parseBad(body).reason == "unsupported apiVersion \"" + std::string(64, 'v') +
                                           "...\" (want admission.k8s.io/v1 or v1beta1)");
    }
    SECTION("truncated fixtures") {
        const std::string body = readFixture("0004");
        for (std::size_t cut = 0; cut < body.size(); cut += 97) {
            CHECK_FALSE(std::holds_alternative<ReviewRequest>(
                parseReview(std::string_view(body).substr(0, cut), Fields)));
        }
    }
}

TEST_CASE("parsing is safe from many threads at once", "[review]") {
    const std::string good = readFixture("0004");
    const std::string bad = std::string(5000, '[');
    std::vector<std::thread> threads;
    std::vector<int> ok(8, 0);
    for (std::size_t t = 0; t < ok.size(); ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < 200; ++i) {
                const auto parsed = parseReview(i % 2 == 0 ? good : bad, Fields);
                if (const auto* r = std::get_if<ReviewRequest>(&parsed);
                    r != nullptr && r->uid == "487d8ae1-d294-4801-8b5f-1f7553cf6e4b") {
                    ++ok[t];
                }
            }
        });
    }
    for (auto& thread : threads) {
        thread.join();
    }
    for (int count : ok) {
        CHECK(count == 100);
    }
}

TEST_CASE("the strip patch removes the token and nothing else", "[review]") {
    SECTION("nothing to strip") {
        CHECK_FALSE(buildStripPatch(parseOk(readFixture("0001")), Fields));
        CHECK_FALSE(buildStripPatch(parseOk(readFixture("0009")), Fields));
    }
    SECTION("token only (0004 as recorded)") {
        const json raw = fixtureJson("0004");
        const auto patch = buildStripPatch(parseOk(raw.dump()), Fields);
        REQUIRE(patch);
        CHECK(
            json::parse(*patch) ==
            json::parse(R"([{"op":"remove","path":"/metadata/annotations/twostep.dev~1token"}])"));
        const json object = raw.at("request").at("object");
        json expected = object;
        expected["metadata"]["annotations"].erase("twostep.dev/token");
        CHECK(object.patch(json::parse(*patch)) == expected);
    }
    SECTION("token and last-applied-configuration (0004 applied with kubectl apply)") {
        const json plain = fixtureJson("0004");
        const std::string lastApplied = lastAppliedOf(plain.at("request").at("object"), "123456");
        const json raw = withLastApplied(plain, lastApplied);
        const ReviewRequest request = parseOk(raw.dump());
        REQUIRE(request.lastAppliedConfiguration == lastApplied);
        const auto patch = buildStripPatch(request, Fields);
        REQUIRE(patch);
        const json patched = raw.at("request").at("object").patch(json::parse(*patch));

        const json& annotations = patched.at("metadata").at("annotations");
        CHECK_FALSE(annotations.contains("twostep.dev/token"));
        const std::string newLastApplied =
            annotations.at("kubectl.kubernetes.io/last-applied-configuration");
        CHECK(newLastApplied.find("123456") == std::string::npos);
        CHECK(newLastApplied.back() == '\n');  // kubectl's trailing newline is kept
        json expectedConfig = json::parse(lastApplied);
        expectedConfig["metadata"]["annotations"].erase("twostep.dev/token");
        CHECK(json::parse(newLastApplied) == expectedConfig);

        // Everything else is unchanged.
        json expected = raw.at("request").at("object");
        expected["metadata"]["annotations"].erase("twostep.dev/token");
        expected["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"] =
            newLastApplied;
        CHECK(patched == expected);
    }
    SECTION("last-applied that is not JSON, or is too deep, is left alone") {
        for (const std::string& lastApplied :
             {std::string("{not json"),
              "{\"metadata\":{\"annotations\":{\"twostep.dev/token\":\"1\"}},\"x\":" +
                  std::string(100000, '[') + std::string(100000, ']') + "}"}) {
            const auto patch = buildStripPatch(
                parseOk(withLastApplied(fixtureJson("0004"), lastApplied).dump()), Fields);
            REQUIRE(patch);
            CHECK(json::parse(*patch).size() == 1);
            CHECK(json::parse(*patch).at(0).at("op") == "remove");
        }
    }
    SECTION("last-applied without the token is left alone") {
        json raw = fixtureJson("0001");
        raw["request"]["object"]["metadata"]["annotations"] = {
            {"kubectl.kubernetes.io/last-applied-configuration",
             R"({"metadata":{"annotations":{"team":"blue"}}})"}};
        CHECK_FALSE(buildStripPatch(parseOk(raw.dump()), Fields));
    }
    SECTION("an annotation name with '/' and '~' is escaped (RFC 6901)") {
        ReviewFields fields;
        fields.tokenAnnotation = "ex~ample.com/otp";
        json raw = fixtureJson("0004");
        raw["request"]["object"]["metadata"]["annotations"] = {{"ex~ample.com/otp", "1"}};
        const auto patch = buildStripPatch(parseOk(raw.dump(), fields), fields);
        REQUIRE(patch);
        CHECK(json::parse(*patch).at(0).at("path") == "/metadata/annotations/ex~0ample.com~1otp");
        CHECK_FALSE(raw.at("request")
                        .at("object")
                        .patch(json::parse(*patch))
                        .at("metadata")
                        .at("annotations")
                        .contains("ex~ample.com/otp"));
    }
}

TEST_CASE("responses echo apiVersion and uid and carry the decision", "[review]") {
    json raw = fixtureJson("0004");
    for (const std::string apiVersion : {"admission.k8s.io/v1", "admission.k8s.io/v1beta1"}) {
        INFO(apiVersion);
        raw["apiVersion"] = apiVersion;
        const ReviewRequest request = parseOk(raw.dump());

        const json denied = json::parse(buildResponse(
            request, Decision{false, Reason::WrongCode, "wrong two-step code", {}}, std::nullopt));
        CHECK(denied.at("apiVersion") == apiVersion);
        CHECK(denied.at("kind") == "AdmissionReview");
        const json& response = denied.at("response");
        CHECK(response.at("uid") == "487d8ae1-d294-4801-8b5f-1f7553cf6e4b");
        CHECK(response.at("allowed") == false);
        CHECK(response.at("status") ==
              json{{"code", 403}, {"reason", "Forbidden"}, {"message", "wrong two-step code"}});
        CHECK(response.at("auditAnnotations") ==
              json{{"decision", "deny"}, {"reason", "wrong_code"}});
        CHECK_FALSE(response.contains("warnings"));
        CHECK_FALSE(response.contains("patch"));
        CHECK_FALSE(response.contains("patchType"));

        const auto patch = buildStripPatch(request, Fields);
        const json allowed = json::parse(
            buildResponse(request, Decision{true, Reason::DryRun, {}, {"a warning"}}, patch));
        const json& ok = allowed.at("response");
        CHECK(allowed.at("apiVersion") == apiVersion);
        CHECK(ok.at("allowed") == true);
        CHECK_FALSE(ok.contains("status"));
        CHECK(ok.at("auditAnnotations") == json{{"decision", "allow"}, {"reason", "dry_run"}});
        CHECK(ok.at("warnings") == json::array({"a warning"}));
        CHECK(ok.at("patchType") == "JSONPatch");
        CHECK(base64Decode(ok.at("patch").get<std::string>()) == *patch);
    }
}

TEST_CASE("reason ids are stable snake_case", "[review]") {
    CHECK(toString(Reason::Exempt) == "exempt");
    CHECK(toString(Reason::DryRun) == "dry_run");
    CHECK(toString(Reason::NotProtected) == "not_protected");
    CHECK(toString(Reason::NotEnrolled) == "not_enrolled");
    CHECK(toString(Reason::UnenrolledAllowed) == "unenrolled_allowed");
    CHECK(toString(Reason::Pending) == "pending");
    CHECK(toString(Reason::Disabled) == "disabled");
    CHECK(toString(Reason::LockedOut) == "locked_out");
    CHECK(toString(Reason::Grant) == "grant");
    CHECK(toString(Reason::NeedsGrant) == "needs_grant");
    CHECK(toString(Reason::MissingCode) == "missing_code");
    CHECK(toString(Reason::MalformedCode) == "malformed_code");
    CHECK(toString(Reason::WrongCode) == "wrong_code");
    CHECK(toString(Reason::Replayed) == "replayed");
    CHECK(toString(Reason::Verified) == "verified");
    CHECK(toString(Reason::RecoveryCode) == "recovery_code");
    CHECK(toString(Reason::Unlocked) == "unlocked");
    CHECK(toString(Reason::InternalError) == "internal_error");
}
