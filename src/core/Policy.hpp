/// The decision flow of design §3: exemptions, dry run, enrolment state, lockout, grants, code
/// verification with replay protection, recovery codes and the audit record. No HTTP in here.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/AdmissionReview.hpp"
#include "core/Clock.hpp"
#include "core/Decision.hpp"
#include "core/MasterKey.hpp"
#include "core/Store.hpp"

namespace twostep::core {

enum class UnenrolledPolicy { Deny, Allow };

/// Who may enrol themselves with `kubectl twostep enroll` (design §3b).
enum class SelfEnrollMode {
    Invite,  ///< only users an admin invited (`twostep-enroll invite`)
    Open,    ///< also any authenticated user who is not enrolled (trust on first use)
    Off,     ///< nobody: admins enrol every user
};

/// Self-service enrolment settings.
struct SelfEnrollConfig {
    SelfEnrollMode mode = SelfEnrollMode::Invite;
    /// Open mode: only members of a group matching one of these globs enrol without an
    /// invitation (empty: every authenticated user).
    std::vector<std::string> openGroups;
    /// Open mode: how long a pending secret waits for its first code (an invited one waits as
    /// long as its invitation lasts).
    Seconds openTtl = 3600;
    std::string issuer = "twostep";  ///< the issuer the authenticator app shows
    int recoveryCodes = 10;          ///< recovery codes handed out on confirmation
};

struct PolicyConfig {
    ReviewFields fields;
    int window = 1;  ///< ±steps accepted around now
    /// Globs (`*` matches any run of characters) on request.userInfo.username.
    std::vector<std::string> exemptUsers = {"system:serviceaccount:*", "system:node:*",
                                            "system:kube-*", "system:apiserver"};
    /// Exact or glob group names.
    std::vector<std::string> exemptGroups = {"system:nodes"};
    UnenrolledPolicy unenrolled = UnenrolledPolicy::Deny;
    LockoutPolicy lockout;
    Seconds grantTtl = 0;       ///< grant opened after each verified change (0: none)
    Seconds grantMaxTtl = 900;  ///< upper bound of an unlock grant
    std::string enforceValue = "enabled";  ///< the enforcement label's value that means "on"
    SelfEnrollConfig selfEnroll;
};

/// `*` glob match (no other metacharacters).
bool globMatch(std::string_view pattern, std::string_view text);

enum class Endpoint { Validate, Mutate };

/// The answer to one HTTP body.
struct ReviewOutcome {
    int httpStatus = 200;
    std::string body;             ///< AdmissionReview response, or a short reason on 4xx
    std::optional<Decision> decision;  ///< absent on 4xx
    std::optional<AuditEvent> record;  ///< who/what/decision, for the log line (also on exempt)
    std::string error;  ///< on internal_error: the exception's what(), for the server log only
};

/// Turns AdmissionReview bodies into responses. Thread-safe: holds only references to
/// thread-safe services and immutable configuration.
class Reviewer {
public:
    Reviewer(Store& store, const Sealer& sealer, const Clock& clock, PolicyConfig config);

    /// Never throws: a store or key failure becomes a deny with reason internal_error (fail
    /// closed), with the uid echoed when it was read. start() then finish().
    ReviewOutcome review(std::string_view body, Endpoint endpoint) const noexcept;

    /// The part of review() that never touches the store: parses `body` and answers a malformed
    /// body, an exempt user, an unprotected request or a dry run at once; any other request is
    /// returned parsed, for finish() (which may block on the store, so servers run it on a
    /// worker thread). Never throws.
    std::variant<ReviewOutcome, ReviewRequest> start(std::string_view body,
                                                     Endpoint endpoint) const noexcept;
    /// The rest of review() for a request start() returned. Never throws (as review()).
    ReviewOutcome finish(const ReviewRequest& request, Endpoint endpoint) const noexcept;

    /// The decision for a parsed request (exposed for tests). May throw StoreError/KeyError.
    /// `endpoint` matters only to self-enrolment, which /validate cannot answer.
    Decision decide(const ReviewRequest& request, Endpoint endpoint = Endpoint::Mutate) const;
    /// The decision when it needs no store (exempt, not protected, dry run), else nullopt.
    std::optional<Decision> decideWithoutStore(const ReviewRequest& request) const;

    const PolicyConfig& config() const { return config_; }

private:
    /// decide() for a request decideWithoutStore() did not answer. May throw as decide().
    Decision decideWithStore(const ReviewRequest& request, Endpoint endpoint) const;
    /// `known`: the decision decideWithoutStore() made; nullopt when it made none, and then
    /// decideWithStore() decides.
    ReviewOutcome respond(const ReviewRequest& request, Endpoint endpoint,
                          std::optional<Decision> known) const;

    Store& store_;
    const Sealer& sealer_;
    const Clock& clock_;
    PolicyConfig config_;
};

}  // namespace twostep::core
