#include "Scenario.hpp"

#include <algorithm>
#include <array>
#include <cstdio>
#include <fstream>
#include <stdexcept>
#include <utility>

#include "core/Base32.hpp"
#include "core/Totp.hpp"

namespace twostep::bench {

namespace {

constexpr std::string_view ExemptUser = "system:serviceaccount:shop:deployer";
constexpr std::array<std::pair<std::string_view, char>, 3> Placeholders{
    {{"@USER@", 'U'}, {"@CODE@", 'C'}, {"@UID@", 'I'}}};

/// The value of `"key":"…"` (or the literal after `"key":`) that follows `from`; empty if none.
std::string_view valueAfter(std::string_view body, std::string_view key, std::size_t from = 0) {
    const std::size_t at = body.find(key, from);
    if (at == std::string_view::npos) {
        return {};
    }
    std::size_t start = at + key.size();
    const bool quoted = start < body.size() && body[start] == '"';
    if (quoted) {
        ++start;
    }
    const std::size_t end = body.find_first_of(quoted ? "\"" : ",}", start);
    return end == std::string_view::npos ? std::string_view{} : body.substr(start, end - start);
}

}  // namespace

std::optional<ScenarioKind> parseScenario(std::string_view name) {
    for (const ScenarioKind kind : {ScenarioKind::Exempt, ScenarioKind::WrongCode,
                                    ScenarioKind::Valid, ScenarioKind::Replay,
                                    ScenarioKind::Mutate, ScenarioKind::Locked,
                                    ScenarioKind::Recheck, ScenarioKind::Healthz}) {
        if (name == toString(kind)) {
            return kind;
        }
    }
    return std::nullopt;
}

std::string_view toString(ScenarioKind kind) {
    switch (kind) {
    case ScenarioKind::Exempt: return "exempt";
    case ScenarioKind::WrongCode: return "wrong";
    case ScenarioKind::Valid: return "valid";
    case ScenarioKind::Replay: return "replay";
    case ScenarioKind::Mutate: return "mutate";
    case ScenarioKind::Locked: return "locked";
    case ScenarioKind::Recheck: return "recheck";
    case ScenarioKind::Healthz: return "healthz";
    }
    return "?";
}

std::vector<BenchUser> readUsers(const std::string& path) {
    std::ifstream in(path);
    if (!in) {
        throw std::runtime_error("cannot read users from '" + path + "'");
    }
    std::vector<BenchUser> users;
    std::string line;
    int number = 0;
    while (std::getline(in, line)) {
        ++number;
        if (line.empty() || line.starts_with("username")) {
            continue;
        }
        const std::size_t comma = line.find(',');
        const auto secret = comma == std::string::npos
                                ? std::nullopt
                                : core::base32::decode(std::string_view(line).substr(comma + 1));
        if (!secret || secret->empty()) {
            throw std::runtime_error(path + ": line " + std::to_string(number) +
                                     ": expected username,base32secret");
        }
        users.push_back(BenchUser{line.substr(0, comma), core::SecretBytes(*secret)});
    }
    return users;
}

Answer readAnswer(std::string_view body) {
    Answer answer;
    const std::string_view allowed = valueAfter(body, "\"allowed\":");
    const std::size_t audit = body.find("\"auditAnnotations\":{");
    if (allowed.empty() || audit == std::string_view::npos) {
        return answer;
    }
    answer.allowed = allowed == "true";
    answer.reason = std::string(valueAfter(body, "\"reason\":", audit));
    answer.hasPatch = body.find("\"patch\":\"") != std::string_view::npos;
    answer.parsed = !answer.reason.empty();
    return answer;
}

Answer readPeerAnswer(std::string_view body) {
    Answer answer;
    const std::string_view allowed = valueAfter(body, "\"allowed\":");
    if (allowed.empty()) {
        return answer;
    }
    answer.parsed = true;
    answer.allowed = allowed == "true";
    if (!answer.allowed) {
        answer.reason = body.find("already used") != std::string_view::npos ? "replayed"
                        : body.find("invalid TOTP code") != std::string_view::npos
                            ? "wrong_code"
                            : "peer_deny";
    }
    return answer;
}

Scenario::Scenario(ScenarioOptions options, std::string_view bodyTemplate,
                   std::vector<BenchUser> users, const core::Clock& clock)
    : options_(std::move(options)), users_(std::move(users)), clock_(clock) {
    path_ = options_.path;
    if (path_.empty()) {
        path_ = options_.kind == ScenarioKind::Mutate ? "/mutate" : "/validate";
    }
    // The API server appends its timeout (tests/data/README.md).
    path_ += "?timeout=10s";
    std::size_t at = 0;
    std::array<bool, Placeholders.size()> seen{};
    for (;;) {
        std::size_t best = std::string_view::npos;
        std::size_t which = 0;
        for (std::size_t i = 0; i < Placeholders.size(); ++i) {
            const std::size_t found = bodyTemplate.find(Placeholders[i].first, at);
            if (found < best) {
                best = found;
                which = i;
            }
        }
        pieces_.emplace_back(bodyTemplate.substr(at, best - at));
        if (best == std::string_view::npos) {
            break;
        }
        holes_.push_back(Placeholders[which].second);
        seen[which] = true;
        at = best + Placeholders[which].first.size();
    }
    for (std::size_t i = 0; i < Placeholders.size(); ++i) {
        if (!seen[i]) {
            throw std::runtime_error("the body template lacks the placeholder " +
                                     std::string(Placeholders[i].first));
        }
    }
    const bool needsUsers = options_.kind != ScenarioKind::Exempt &&
                            options_.kind != ScenarioKind::Recheck &&
                            options_.kind != ScenarioKind::Healthz;
    if (needsUsers && users_.size() <= options_.userOffset) {
        throw std::runtime_error("scenario " + std::string(toString(options_.kind)) +
                                 " needs enrolled users (--users) beyond --user-offset");
    }
    nextUser_ = options_.userOffset;
}

std::size_t Scenario::usersLeft() const {
    return users_.size() > nextUser_ ? users_.size() - nextUser_ : 0;
}

std::string Scenario::body(std::string_view user, std::string_view code,
                           std::uint64_t serial) const {
    char uid[40];
    // A v4-shaped uid that is unique per request, as the API server's are.
    std::snprintf(uid, sizeof uid, "6b1f3c2e-0d4a-4c8e-9f00-%012llx",
                  static_cast<unsigned long long>(serial));
    std::string out;
    out.reserve(pieces_.size() * 64 + 5000);
    for (std::size_t i = 0; i < pieces_.size(); ++i) {
        out += pieces_[i];
        if (i < holes_.size()) {
            out += holes_[i] == 'U' ? user : holes_[i] == 'C' ? code : std::string_view(uid);
        }
    }
    return out;
}

Request Scenario::request(std::string user, std::string code) {
    const std::string payload = body(user, code, ++serial_);
    Request request;
    request.bytes.reserve(payload.size() + 256);
    request.bytes += "POST " + path_ + " HTTP/1.1\r\nHost: " + options_.hostHeader +
                     "\r\nUser-Agent: kube-apiserver-admission\r\nContent-Length: " +
                     std::to_string(payload.size()) +
                     "\r\nAccept: application/json, */*\r\nContent-Type: application/json\r\n"
                     "Accept-Encoding: gzip\r\n\r\n";
    request.bytes += payload;
    request.user = std::move(user);
    request.code = std::move(code);
    return request;
}

std::string Scenario::wrongCode(const BenchUser& user) const {
    const core::Seconds now = clock_.now();
    const core::TotpParams params;
    // Seen from the webhook the window may have moved on by a step: stay clear of one more.
    std::array<std::string, 4> valid;
    for (std::size_t i = 0; i < valid.size(); ++i) {
        valid[i] = core::generateTotp(user.secret, params,
                                      now + (static_cast<core::Seconds>(i) - 1) * params.period);
    }
    for (unsigned candidate = 0;; ++candidate) {
        char text[8];
        std::snprintf(text, sizeof text, "%06u", (candidate * 142857u + 1u) % 1000000u);
        if (std::find(valid.begin(), valid.end(), std::string_view(text)) == valid.end()) {
            return text;
        }
    }
}

std::optional<Request> Scenario::next() {
    const core::TotpParams params;
    switch (options_.kind) {
    case ScenarioKind::Healthz: {
        Request r;
        r.bytes = "GET /healthz HTTP/1.1\r\nHost: " + options_.hostHeader +
                  "\r\nUser-Agent: kube-probe/1.28\r\nAccept: */*\r\n\r\n";
        r.expectedBody = "ok\n";
        return r;
    }
    case ScenarioKind::Exempt: {
        Request r = request(std::string(ExemptUser), "000000");
        r.expected = {{true, "exempt"}};
        return r;
    }
    case ScenarioKind::WrongCode: {
        // Round robin over every user, so none of them reaches the lockout in a short run.
        const std::size_t count = users_.size() - options_.userOffset;
        const BenchUser& user = users_[options_.userOffset + (serial_ % count)];
        Request r = request(user.name, wrongCode(user));
        r.expected = {{false, "wrong_code"}};
        return r;
    }
    case ScenarioKind::Locked: {
        const BenchUser& user = users_[options_.userOffset];
        Request r = request(user.name, wrongCode(user));
        r.expected = {{false, "wrong_code"}, {false, "locked_out"}};
        return r;
    }
    case ScenarioKind::Replay: {
        const BenchUser& user = users_[options_.userOffset];
        Request r = request(user.name, core::generateTotp(user.secret, params, clock_.now()));
        // The first use of each step's code is a success; every later one a replay.
        r.expected = {{false, "replayed"}, {true, "verified"}};
        return r;
    }
    case ScenarioKind::Recheck: {
        if (nextCode_ >= options_.codes.size()) {
            return std::nullopt;
        }
        const auto& [user, code] = options_.codes[nextCode_++];
        Request r = request(user, code);
        // Used before: a replay, or a wrong code once its step has left the window.
        r.expected = {{false, "replayed"}, {false, "wrong_code"}, {false, "locked_out"}};
        return r;
    }
    case ScenarioKind::Valid:
    case ScenarioKind::Mutate: {
        if (nextUser_ >= users_.size()) {
            return std::nullopt;
        }
        const BenchUser& user = users_[nextUser_++];
        Request r = request(user.name, core::generateTotp(user.secret, params, clock_.now()));
        r.expected = {{true, "verified"}};
        r.expectPatch = options_.kind == ScenarioKind::Mutate;
        return r;
    }
    }
    return std::nullopt;
}

}  // namespace twostep::bench
