/// The load generator's request streams: one AdmissionReview template filled per request with a
/// user, a TOTP code and a uid, and what the webhook must answer to each scenario.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/Clock.hpp"
#include "core/Secret.hpp"

namespace twostep::bench {

/// The scenarios of bench/run.sh (docs/benchmarks.md describes each).
enum class ScenarioKind {
    Exempt,     ///< a service account: allowed without a database access
    WrongCode,  ///< enrolled users in turn, a code that matches no step of the window
    Valid,      ///< the current code of a new user per request (each user once)
    Replay,     ///< one user's current code, again and again: replayed after the first use
    Mutate,     ///< Valid on /mutate: allowed with the strip patch
    Locked,     ///< one user's wrong codes: a few wrong_code, then locked_out (brute force)
    Recheck,    ///< each "user,code" of --codes once: every one must be refused (after a crash)
    Healthz,    ///< GET /healthz: the floor of the HTTP/TLS handling, no review at all
};

/// "exempt", "wrong", "valid", "replay", "mutate", "locked", "recheck", "healthz"; nullopt
/// otherwise.
std::optional<ScenarioKind> parseScenario(std::string_view name);
std::string_view toString(ScenarioKind kind);

/// An enrolled user whose secret the generator knows (from the CSV it wrote for the import).
struct BenchUser {
    std::string name;
    core::SecretBytes secret;
};

/// Reads `username,base32secret` lines (as `twostep-loadgen users` writes them).
/// @throw std::runtime_error naming the file and line when one is malformed.
std::vector<BenchUser> readUsers(const std::string& path);

/// The decision in one AdmissionReview response, read from its auditAnnotations.
struct Answer {
    bool parsed = false;   ///< the body carried auditAnnotations {decision, reason}
    bool allowed = false;  ///< response.allowed
    std::string reason;
    bool hasPatch = false;
};

/// Reads `"allowed":…` and `"auditAnnotations":{"decision":…,"reason":…}` (the webhook writes
/// them in this order with nlohmann's sorted keys) without a JSON parser.
Answer readAnswer(std::string_view body);

/// The decision in one answer of the Node.js peer: `allowed`, and for a deny the reason its
/// message stands for (replayed, wrong_code, or peer_deny for any other).
Answer readPeerAnswer(std::string_view body);

/// An answer the scenario expects: response.allowed and the reason id.
struct Expected {
    bool allowed = false;
    std::string_view reason;
};

/// One request to send and how to judge its answer.
struct Request {
    std::string bytes;  ///< the whole HTTP/1.1 request
    std::string user;
    std::string code;
    std::vector<Expected> expected;  ///< any of these is as expected
    bool expectPatch = false;        ///< an allow must carry a JSONPatch
    /// Set: the answer must be a 200 with exactly this body (no review to read).
    std::optional<std::string> expectedBody;
};

struct ScenarioOptions {
    ScenarioKind kind = ScenarioKind::Exempt;
    std::string path;       ///< "" = the scenario's default (/validate, /mutate for Mutate)
    std::string hostHeader;  ///< e.g. "127.0.0.1:8443"
    std::size_t userOffset = 0;  ///< the first user of the CSV this run uses
    /// Recheck: the (user, code) pairs to send, each once.
    std::vector<std::pair<std::string, std::string>> codes;
};

/// Fills the template for each request of a scenario. Not thread-safe (one per generator).
class Scenario {
public:
    /// `bodyTemplate` holds @USER@, @CODE@ (any number of times) and @UID@.
    /// @throw std::runtime_error when the template lacks a placeholder or the scenario needs
    /// users and `users` is empty.
    Scenario(ScenarioOptions options, std::string_view bodyTemplate,
             std::vector<BenchUser> users, const core::Clock& clock);

    /// The next request, or nullopt when the scenario ran out of users (Valid and Mutate use
    /// each user once).
    std::optional<Request> next();

    /// How many users the scenario can still use once (Valid, Mutate).
    std::size_t usersLeft() const;
    std::string_view path() const { return path_; }

private:
    std::string body(std::string_view user, std::string_view code, std::uint64_t serial) const;
    Request request(std::string user, std::string code);
    /// A well-formed code that matches none of the steps now-1..now+1 of `user`.
    std::string wrongCode(const BenchUser& user) const;

    ScenarioOptions options_;
    std::string path_;
    std::vector<std::string> pieces_;  ///< literal text between placeholders
    std::vector<char> holes_;          ///< 'U', 'C', 'I' after each piece but the last
    std::vector<BenchUser> users_;
    const core::Clock& clock_;
    std::size_t nextUser_ = 0;
    std::size_t nextCode_ = 0;
    std::uint64_t serial_ = 0;
};

}  // namespace twostep::bench
