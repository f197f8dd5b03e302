#include "fuzz/FuzzTargets.hpp"

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "core/AdmissionReview.hpp"
#include "core/Base32.hpp"
#include "core/Clock.hpp"
#include "core/MasterKey.hpp"
#include "core/OtpauthUri.hpp"
#include "core/Policy.hpp"
#include "core/RecoveryCodes.hpp"
#include "core/SqliteStore.hpp"
#include "core/Totp.hpp"
#include "http/RequestParser.hpp"

namespace twostep::fuzz {

namespace {

/// The time every review is decided at (2027-01-15T08:00:00Z); tests/fuzz/README.md lists the
/// codes that are valid then, so seeds can reach the allow paths.
constexpr core::Seconds FuzzNow = 1'800'000'000;
/// A recovery code alice holds (also in the dictionary).
constexpr std::string_view AliceRecoveryCode = "k7qm-2xvd-9fhw-c3tp";

void check(bool holds, const std::string& property) {
    if (!holds) {
        throw FuzzFailure(property);
    }
}

std::vector<std::uint8_t> bytesOf(std::string_view text) {
    return {text.begin(), text.end()};
}

/// A user of the fuzz store, with the secret the fuzzer would have to guess.
struct FuzzUser {
    std::string name;
    std::string secret;  ///< raw bytes
    core::TotpParams params;
    core::UserState state;
};

/// What every review input starts from: the key, the users and their sealed secrets.
class World {
public:
    World() : sealer_(core::MasterKey::generate()) {
        users_ = {
            {"alice", "12345678901234567890", {}, core::UserState::Active},
            {"erin", "12345678901234567890123456789012",
             {core::Algorithm::Sha256, 8, 30}, core::UserState::Active},
            {"bob", "abcdefghijklmnopqrst", {}, core::UserState::Pending},
            {"dave", "ABCDEFGHIJKLMNOPQRST", {}, core::UserState::Disabled},
        };
        for (const FuzzUser& user : users_) {
            sealed_.push_back(sealer_.seal(core::SecretBytes(bytesOf(user.secret)), user.name));
        }
        recoveryHash_ = core::hashRecoveryCode(AliceRecoveryCode);
    }

    /// A fresh in-memory store holding the users (so inputs do not influence each other).
    std::unique_ptr<core::SqliteStore> freshStore() const {
        auto store = std::make_unique<core::SqliteStore>(":memory:");
        for (std::size_t i = 0; i < users_.size(); ++i) {
            const FuzzUser& user = users_[i];
            store->addUser(core::NewUser{user.name, sealed_[i], "fuzz", user.params, user.state},
                           FuzzNow - 3600, false);
        }
        store->replaceRecoveryCodes("alice", {recoveryHash_}, FuzzNow - 3600);
        return store;
    }

    const core::Sealer& sealer() const { return sealer_; }
    const std::string& recoveryHash() const { return recoveryHash_; }

    const FuzzUser* find(std::string_view name) const {
        for (const FuzzUser& user : users_) {
            if (user.name == name) {
                return &user;
            }
        }
        return nullptr;
    }

    /// Whether `code` is the user's TOTP code for a step inside the window around FuzzNow.
    static bool isValidCode(const FuzzUser& user, std::string_view code, int window) {
        const core::SecretBytes secret(bytesOf(user.secret));
        for (int offset = -window; offset <= window; ++offset) {
            if (core::generateTotp(secret, user.params, FuzzNow + offset * user.params.period) ==
                code) {
                return true;
            }
        }
        return false;
    }

private:
    core::Sealer sealer_;
    std::vector<FuzzUser> users_;
    std::vector<std::string> sealed_;
    std::string recoveryHash_;
};

const World& world() {
    static const World instance;
    return instance;
}

bool anyMatch(const std::vector<std::string>& patterns, std::string_view text) {
    for (const std::string& pattern : patterns) {
        if (core::globMatch(pattern, text)) {
            return true;
        }
    }
    return false;
}

/// Why an allow for `request` with `reason` is justified; a FuzzFailure when it is not.
void checkAllow(const core::ReviewRequest& request, core::Reason reason,
                const core::PolicyConfig& config, bool grantPossible) {
    const std::string why = "allowed with reason " + std::string(core::toString(reason));
    switch (reason) {
    case core::Reason::Exempt: {
        bool exempt = anyMatch(config.exemptUsers, request.username);
        for (const std::string& group : request.groups) {
            exempt = exempt || anyMatch(config.exemptGroups, group);
        }
        check(exempt, why + " for a user and groups that match no exemption");
        return;
    }
    case core::Reason::DryRun: check(request.dryRun, why + " without dryRun"); return;
    case core::Reason::NotProtected: return;  // scope rules; covered by the unit tests
    case core::Reason::Grant:
        check(grantPossible, why + " although no unlock could have opened a grant");
        return;
    case core::Reason::Verified:
    case core::Reason::Unlocked: {
        const auto* found = world().find(request.username);
        check(found != nullptr && found->state == core::UserState::Active,
              why + " for a user who is not active");
        const std::optional<std::string>& code =
            reason == core::Reason::Unlocked ? request.nonResourceVerb : request.token;
        check(code && World::isValidCode(*found, *code, config.window),
              why + " for a code that is not valid now");
        return;
    }
    case core::Reason::RecoveryCode:
        check(request.username == "alice" && request.token &&
                  core::matchesRecoveryCode(*request.token, world().recoveryHash()),
              why + " for a user without that recovery code");
        return;
    case core::Reason::EnrollStarted:
    case core::Reason::Enrolled:
        // The fuzz store invites nobody and the default mode is invite: nobody may enrol.
        check(false, why + " although nobody is invited");
        return;
    default: check(false, why + ", which must never allow"); return;
    }
}

void checkAnswer(const core::ReviewRequest& request, const core::ReviewOutcome& outcome,
                 core::Endpoint endpoint, const core::PolicyConfig& config, bool grantPossible) {
    check(outcome.httpStatus == 200 || outcome.httpStatus == 500,
          "a parsed review answered with HTTP " + std::to_string(outcome.httpStatus));
    if (outcome.httpStatus == 500) {
        check(!outcome.error.empty(), "an HTTP 500 without an error for the log");
        return;
    }
    check(outcome.decision.has_value(), "an HTTP 200 without a decision");
    const nlohmann::json body = nlohmann::json::parse(outcome.body, nullptr, false);
    check(!body.is_discarded() && body.is_object(), "the response is not a JSON object");
    // buildResponse writes by hand what nlohmann would: sorted keys, the same escapes.
    check(body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) == outcome.body,
          "the response is not what nlohmann would have written: " + outcome.body);
    check(body.value("apiVersion", "") == request.apiVersion, "the apiVersion is not echoed");
    const nlohmann::json& response = body.at("response");
    check(response.value("uid", "") == request.uid, "the uid is not echoed");
    check(response.value("allowed", !outcome.decision->allowed) == outcome.decision->allowed,
          "response.allowed differs from the decision");
    if (!outcome.decision->allowed) {
        check(response.contains("status") && response.at("status").value("code", 0) == 403,
              "a denial without status.code 403");
        check(!response.contains("patch"), "a denial carries a patch");
        return;
    }
    checkAllow(request, outcome.decision->reason, config, grantPossible);
    if (endpoint == core::Endpoint::Mutate && request.token) {
        check(response.contains("patch"), "an allowed /mutate of a token left it in place");
    }
    if (endpoint == core::Endpoint::Validate) {
        check(!response.contains("patch"), "/validate returned a patch");
    }
}

}  // namespace

void reviewTarget(std::string_view input) {
    reviewDecisions(input);
}

std::vector<std::string> reviewDecisions(std::string_view input) {
    core::PolicyConfig config;
    const auto parsed = core::parseReview(input, config.fields);
    if (const auto* error = std::get_if<core::ParseError>(&parsed)) {
        check(!error->reason.empty(), "a parse error without a reason");
        check(error->httpStatus == 400 || error->httpStatus == 413 || error->httpStatus == 503,
              "a parse error with HTTP " + std::to_string(error->httpStatus));
        return {};
    }
    const core::ReviewRequest& request = std::get<core::ReviewRequest>(parsed);
    check(!request.uid.empty(), "a review without a uid was accepted");
    const std::unique_ptr<core::SqliteStore> store = world().freshStore();
    const core::FakeClock clock(FuzzNow);
    const core::Reviewer reviewer(*store, world().sealer(), clock, config);
    // The same body twice: the second call sees what the first one stored (a used code, a
    // failure, a grant), as a retry from the API server would.
    bool grantPossible = false;
    std::vector<std::string> reasons;
    for (const core::Endpoint endpoint : {core::Endpoint::Validate, core::Endpoint::Mutate}) {
        const core::ReviewOutcome outcome = reviewer.review(input, endpoint);
        checkAnswer(request, outcome, endpoint, config, grantPossible);
        grantPossible = grantPossible || (outcome.decision && outcome.decision->allowed &&
                                          outcome.decision->reason == core::Reason::Unlocked);
        reasons.emplace_back(outcome.decision ? core::toString(outcome.decision->reason)
                                              : "http " + std::to_string(outcome.httpStatus));
    }
    return reasons;
}

void stripPatchTarget(std::string_view input) {
    const core::ReviewFields fields;
    core::ReviewRequest request;
    request.token = "123456";
    request.lastAppliedConfiguration = std::string(input);
    const std::optional<core::JsonPatch> patch = core::buildStripPatch(request, fields);
    check(patch.has_value(), "no patch although the token annotation is present");
    const nlohmann::json operations = nlohmann::json::parse(*patch, nullptr, false);
    check(!operations.is_discarded() && operations.is_array() && !operations.empty(),
          "the patch is not a non-empty JSON array");
    check(operations.at(0).value("op", "") == "remove" &&
              operations.at(0).value("path", "") == "/metadata/annotations/twostep.dev~1token",
          "the first operation does not remove the token annotation");
    check(operations.size() <= 2, "more than two patch operations");
    if (operations.size() == 1) {
        return;
    }
    const nlohmann::json& replace = operations.at(1);
    check(replace.value("op", "") == "replace" &&
              replace.value("path", "") ==
                  "/metadata/annotations/kubectl.kubernetes.io~1last-applied-configuration" &&
              replace.contains("value") && replace.at("value").is_string(),
          "the second operation does not replace last-applied-configuration with a string");
    const nlohmann::json stripped =
        nlohmann::json::parse(replace.at("value").get<std::string>(), nullptr, false);
    check(!stripped.is_discarded() && stripped.is_object(),
          "the rewritten last-applied-configuration is not a JSON object");
    const auto metadata = stripped.find("metadata");
    check(metadata != stripped.end() && metadata->is_object(),
          "the rewritten last-applied-configuration lost its metadata");
    const auto annotations = metadata->find("annotations");
    check(annotations != metadata->end() && annotations->is_object() &&
              !annotations->contains("twostep.dev/token"),
          "the rewritten last-applied-configuration still holds the token annotation");
}

void base32Target(std::string_view input) {
    if (const auto decoded = core::base32::decode(input)) {
        const std::string encoded = core::base32::encode(*decoded);
        check(encoded.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") == std::string::npos,
              "encode wrote a character outside the upper-case alphabet");
        const auto again = core::base32::decode(encoded);
        check(again && *again == *decoded, "decode(encode(decode(x))) != decode(x)");
    }
    const std::vector<std::uint8_t> raw = bytesOf(input);
    const auto back = core::base32::decode(core::base32::encode(raw));
    check(back && *back == raw, "decode(encode(bytes)) != bytes");
}

void otpauthTarget(std::string_view input) {
    const std::optional<core::OtpauthAccount> account = core::parseOtpauthUri(input);
    if (!account) {
        return;
    }
    check(core::isValid(account->params), "a URI with invalid TOTP parameters was accepted");
    const auto secret = core::base32::decode(account->secretBase32);
    check(secret && !secret->empty(), "a URI with an undecodable secret was accepted");
    const std::string uri = core::buildOtpauthUri(*account);
    const std::optional<core::OtpauthAccount> again = core::parseOtpauthUri(uri);
    check(again.has_value(), "a rebuilt URI does not parse: " + uri);
    check(again->issuer == account->issuer && again->account == account->account &&
              again->params == account->params,
          "a rebuilt URI names another account, issuer or parameters: " + uri);
    check(core::base32::decode(again->secretBase32) == secret,
          "a rebuilt URI carries another secret");
}

namespace {

/// What a connection's byte stream parses into: each request, then the refusal (if any).
struct Parsed {
    std::string method, uri, version, body;
    int refusal = 0;
    bool operator==(const Parsed&) const = default;
};

constexpr std::size_t FuzzMaxBody = 4096;

/// Feeds `stream` to one parser `piece` bytes at a time (0: at once), as a connection does:
/// readBody() after each head, reset() after each request. A request still incomplete at the
/// end is left out.
std::vector<Parsed> parseStream(std::string_view stream, std::size_t piece) {
    http::RequestParser parser(FuzzMaxBody);
    std::vector<Parsed> out;
    std::size_t offset = 0;
    std::string_view pending;
    for (;;) {
        switch (parser.state()) {
        case http::RequestParser::State::HeadDone: parser.readBody(); continue;
        case http::RequestParser::State::Done: {
            const auto& head = parser.head();
            check(parser.body().size() <= FuzzMaxBody, "a body over the limit was accepted");
            check(parser.framing() != http::BodyFraming::Length ||
                      parser.body().size() == parser.contentLength(),
                  "a body does not have its Content-Length");
            check(head.getVersion() == "HTTP/1.1" || head.getVersion() == "HTTP/1.0",
                  "a request with another HTTP version was accepted");
            check(!head.getMethod().empty() &&
                      head.getMethod().find_first_of(" \t\r\n") == std::string::npos,
                  "an empty or spaced method was accepted");
            out.push_back({head.getMethod(), head.getURI(), head.getVersion(), parser.body(), 0});
            parser.reset();
            continue;
        }
        case http::RequestParser::State::Failed: {
            const http::Refusal& refusal = parser.refusal();
            check(refusal.status == 400 || refusal.status == 413 || refusal.status == 431 ||
                      refusal.status == 505,
                  "a refusal with status " + std::to_string(refusal.status));
            check(!refusal.reason.empty(), "a refusal without a reason");
            Parsed failed;
            failed.refusal = refusal.status;
            out.push_back(std::move(failed));
            return out;
        }
        case http::RequestParser::State::Head:
        case http::RequestParser::State::Body: break;
        }
        if (pending.empty()) {
            if (offset >= stream.size()) {
                return out;
            }
            pending = stream.substr(offset, piece == 0 ? stream.size() : piece);
            offset += pending.size();
        }
        const std::size_t used = parser.parse(pending);
        check(used <= pending.size(), "the parser consumed more than it was given");
        pending.remove_prefix(used);
        const auto state = parser.state();
        check(pending.empty() || (state != http::RequestParser::State::Head &&
                                  state != http::RequestParser::State::Body),
              "the parser stopped short while it still needed bytes");
    }
}

}  // namespace

void httpRequestTarget(std::string_view input) {
    if (input.empty()) {
        return;
    }
    // The first byte picks how the rest is cut into pieces, as the network may cut it.
    const std::size_t piece = static_cast<std::size_t>(static_cast<unsigned char>(input[0])) % 13 + 1;
    const std::string_view stream = input.substr(1);
    const std::vector<Parsed> whole = parseStream(stream, 0);
    check(parseStream(stream, piece) == whole, "pieces of " + std::to_string(piece) +
                                                   " bytes parse differently from the whole");
    check(parseStream(stream, 1) == whole, "single bytes parse differently from the whole");
    // What was accepted means the same when written plainly: a request another parser in
    // front of us would read as this one.
    for (const Parsed& request : whole) {
        if (request.refusal != 0) {
            continue;
        }
        const std::string plain = request.method + " " + request.uri + " " + request.version +
                                  "\r\nContent-Length: " + std::to_string(request.body.size()) +
                                  "\r\n\r\n" + request.body;
        const std::vector<Parsed> again = parseStream(plain, 0);
        check(again.size() == 1 && again.front() == request,
              "a parsed request written plainly parses differently");
    }
}

std::span<const Target> targets() {
    static constexpr std::array<Target, 5> All{{{"review", reviewTarget},
                                                {"strip_patch", stripPatchTarget},
                                                {"base32", base32Target},
                                                {"otpauth", otpauthTarget},
                                                {"http_request", httpRequestTarget}}};
    return All;
}

}  // namespace twostep::fuzz
