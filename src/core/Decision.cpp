#include "core/Decision.hpp"

#include <cassert>

namespace twostep::core {

std::string_view toString(Reason reason) {
    switch (reason) {
        case Reason::Exempt:
            return "exempt";
        case Reason::DryRun:
            return "dry_run";
        case Reason::NotProtected:
            return "not_protected";
        case Reason::NotEnrolled:
            return "not_enrolled";
        case Reason::UnenrolledAllowed:
            return "unenrolled_allowed";
        case Reason::Pending:
            return "pending";
        case Reason::Disabled:
            return "disabled";
        case Reason::LockedOut:
            return "locked_out";
        case Reason::Grant:
            return "grant";
        case Reason::NeedsGrant:
            return "needs_grant";
        case Reason::MissingCode:
            return "missing_code";
        case Reason::MalformedCode:
            return "malformed_code";
        case Reason::WrongCode:
            return "wrong_code";
        case Reason::Replayed:
            return "replayed";
        case Reason::Verified:
            return "verified";
        case Reason::RecoveryCode:
            return "recovery_code";
        case Reason::Unlocked:
            return "unlocked";
        case Reason::EnrollStarted:
            return "enroll_started";
        case Reason::Enrolled:
            return "enrolled";
        case Reason::NotInvited:
            return "not_invited";
        case Reason::NoEnrollment:
            return "no_enrollment";
        case Reason::EnrollNeedsMutate:
            return "enroll_needs_mutate";
        case Reason::InternalError:
            return "internal_error";
    }
    assert(false && "every Reason has an id");
    return "internal_error";
}

bool isRoutine(Reason reason) {
    return reason == Reason::Exempt || reason == Reason::NotProtected || reason == Reason::DryRun;
}

}  // namespace twostep::core
