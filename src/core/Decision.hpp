/// What the policy answers for one review: allowed or not, a stable reason, a message for people.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace twostep::core {

/// Stable reason ids: they appear in audit rows, auditAnnotations, logs and metric labels, so
/// never rename one.
enum class Reason {
    Exempt,             ///< user or group on an exemption list
    DryRun,             ///< request.dryRun: nothing persists
    NotProtected,       ///< nothing to check (e.g. a Namespace UPDATE that keeps enforcement on)
    NotEnrolled,        ///< unknown user, --unenrolled=deny
    UnenrolledAllowed,  ///< unknown user, --unenrolled=allow
    Pending,            ///< enrolled but not yet confirmed
    Disabled,           ///< disabled by an admin
    LockedOut,          ///< too many recent failures
    Grant,              ///< allowed inside an open grant
    NeedsGrant,         ///< DELETE or CONNECT outside a grant
    MissingCode,        ///< no token annotation
    MalformedCode,      ///< annotation present but not a code of the user's length
    WrongCode,          ///< no match in the window
    Replayed,           ///< matched a step not newer than the last accepted one
    Verified,           ///< a valid, unused TOTP code
    RecoveryCode,       ///< a valid, unused recovery code (now consumed)
    Unlocked,           ///< an unlock review opened a grant
    EnrollStarted,      ///< self-enrolment: a pending secret was made, its URI answered
    Enrolled,           ///< self-enrolment: the first code confirmed the pending secret
    NotInvited,         ///< self-enrolment refused: no invitation (or turned off, or not allowed)
    NoEnrollment,       ///< a confirmation with no open self-enrolment to confirm
    EnrollNeedsMutate,  ///< self-enrolment sent to /validate, which cannot answer the secret
    // InternalError stays last: metrics size their per-reason arrays from it.
    InternalError,      ///< the store or a key failed: fail closed
};

/// The snake_case id, e.g. "wrong_code".
std::string_view toString(Reason reason);

/// Whether `reason` is routine: exempt, not_protected or dry_run. Such decisions check no code
/// (system accounts, objects outside the protected scope, changes that do not persist) and are
/// most of a cluster's traffic, so they are not audited and are logged at debug only. Every other
/// reason is audited and logged at info (or error), so the two can never drift apart.
bool isRoutine(Reason reason);

struct Decision {
    bool allowed = false;
    Reason reason = Reason::InternalError;
    std::string message;                ///< for people: what was wrong and what to do
    std::vector<std::string> warnings;  ///< each under 120 characters (API server limit)
    /// Self-enrolment only: what /mutate writes into the SelfSubjectAccessReview's
    /// spec.nonResourceAttributes.verb for the API server to hand back to the requester (the
    /// otpauth URI, or the recovery codes). A secret: never logged, never in a message.
    std::optional<std::string> answer;
};

}  // namespace twostep::core
