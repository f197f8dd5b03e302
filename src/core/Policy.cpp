#include "core/Policy.hpp"

#include <algorithm>
#include <ctime>
#include <exception>
#include <utility>

#include "core/Base32.hpp"
#include "core/OtpauthUri.hpp"
#include "core/RecoveryCodes.hpp"
#include "core/Totp.hpp"

namespace twostep::core {
namespace {

constexpr std::string_view UnlockPath = "/twostep.dev/unlock";
constexpr std::string_view EnrollPath = "/twostep.dev/enroll";
constexpr std::string_view ConfirmPath = "/twostep.dev/enroll/confirm";
constexpr std::string_view InternalErrorMessage =
    "twostep could not verify the request (internal error; see the webhook log): the change was "
    "refused";
constexpr std::string_view CommitFailedMessage =
    "twostep could not record the decision (database error; see the webhook log): the change was "
    "refused; try again";
/// Usernames longer than this are cut in messages (only a forged review carries such a name).
constexpr std::size_t MaxShownName = 200;

/// What a request asks of the policy.
enum class Scope {
    NotProtected,  ///< nothing to check
    Protected,     ///< needs a code or a grant
    Unlock,        ///< a SelfSubjectAccessReview carrying an unlock code
    EnrollBegin,   ///< a SelfSubjectAccessReview asking for a new secret (design §3b)
    EnrollConfirm, ///< a SelfSubjectAccessReview confirming it with the first code
};

/// The username as messages show it: cut (at a character boundary) when absurdly long.
std::string shown(std::string_view username) {
    if (username.size() <= MaxShownName) {
        return std::string(username);
    }
    std::size_t cut = MaxShownName;
    // Do not cut a UTF-8 sequence: back up over continuation bytes (10xxxxxx).
    while (cut > 0 && (static_cast<unsigned char>(username[cut]) & 0xC0) == 0x80) {
        --cut;
    }
    return std::string(username.substr(0, cut)) + "...";
}

/// RFC 3339 in UTC, e.g. "2026-11-28T17:05:00Z".
std::string formatTime(Seconds at) {
    const auto time = static_cast<std::time_t>(at);
    std::tm tm{};
    char text[32];
    if (gmtime_r(&time, &tm) == nullptr ||
        std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0) {
        return std::to_string(at) + " (unix time)";
    }
    return text;
}

/// "15m", "90s", "1h": the shortest exact spelling.
std::string formatDuration(Seconds seconds) {
    if (seconds > 0 && seconds % 3600 == 0) {
        return std::to_string(seconds / 3600) + "h";
    }
    if (seconds > 0 && seconds % 60 == 0) {
        return std::to_string(seconds / 60) + "m";
    }
    return std::to_string(seconds) + "s";
}

/// The duration asked for after "/twostep.dev/unlock": "" (none: nullopt inside), or
/// "/<n><s|m|h>" with n of 1..6 digits. The outer nullopt means the suffix is malformed.
std::optional<std::optional<Seconds>> requestedDuration(std::string_view suffix) {
    if (suffix.empty()) {
        return std::optional<Seconds>{};
    }
    if (suffix.size() < 3 || suffix.size() > 8 || suffix.front() != '/') {
        return std::nullopt;
    }
    const std::string_view digits = suffix.substr(1, suffix.size() - 2);
    Seconds value = 0;
    for (char c : digits) {
        if (c < '0' || c > '9') {
            return std::nullopt;
        }
        value = value * 10 + (c - '0');
    }
    if (value == 0) {
        return std::nullopt;
    }
    switch (suffix.back()) {
        case 's':
            return std::optional<Seconds>{value};
        case 'm':
            return std::optional<Seconds>{value * 60};
        case 'h':
            return std::optional<Seconds>{value * 3600};
        default:
            return std::nullopt;
    }
}

bool isUnlockPath(std::string_view path) {
    return path.substr(0, UnlockPath.size()) == UnlockPath &&
           (path.size() == UnlockPath.size() || path[UnlockPath.size()] == '/');
}

Scope scopeOf(const ReviewRequest& request, const PolicyConfig& config) {
    if (request.group == "authorization.k8s.io" && request.resource == "selfsubjectaccessreviews") {
        // Every user may create an SSAR and it is never stored: only our own paths matter.
        if (!request.nonResourcePath) {
            return Scope::NotProtected;
        }
        const std::string& path = *request.nonResourcePath;
        if (isUnlockPath(path)) {
            return Scope::Unlock;
        }
        if (path == EnrollPath) {
            return Scope::EnrollBegin;
        }
        return path == ConfirmPath ? Scope::EnrollConfirm : Scope::NotProtected;
    }
    if (request.group.empty() && request.resource == "namespaces" && request.subResource.empty()) {
        // An enforced namespace is itself a protected object: removing its label, weakening its
        // Pod Security labels or changing its annotations would loosen what protects everything
        // inside. Turning enforcement on stays free: before that change the namespace was no
        // more protected than any other, so only the state before the change decides.
        const bool wasEnforced = request.enforceLabelOld == config.enforceValue;
        if (request.operation == "UPDATE" || request.operation == "DELETE") {
            return wasEnforced ? Scope::Protected : Scope::NotProtected;
        }
        return Scope::NotProtected;
    }
    return Scope::Protected;
}

Decision allow(Reason reason, std::vector<std::string> warnings = {}) {
    return Decision{true, reason, {}, std::move(warnings), {}};
}

Decision deny(Reason reason, std::string message) {
    return Decision{false, reason, std::move(message), {}, {}};
}

std::string resourcePath(const ReviewRequest& request) {
    if (request.group.empty()) {
        return request.version + "/" + request.resource;
    }
    return request.group + "/" + request.version + "/" + request.resource;
}

AuditEvent recordOf(const ReviewRequest& request, const Decision& decision, Seconds now) {
    AuditEvent event;
    event.time = now;
    event.username = request.username;
    event.operation = request.operation;
    event.resource = resourcePath(request);
    event.subResource = request.subResource;
    event.nameSpace = request.nameSpace;
    event.name = request.name;
    event.decision = decision.allowed ? "allow" : "deny";
    event.reason = std::string(toString(decision.reason));
    event.uid = request.uid;
    return event;
}

/// Whether `error` is a failed group commit: nothing of the batch was recorded, so the same
/// request may simply be sent again.
bool failedCommit(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const CommitError&) {
        return true;
    } catch (...) {
        return false;
    }
}

/// The message of an exception in flight, for the server log.
std::string describe(const std::exception_ptr& error) {
    try {
        std::rethrow_exception(error);
    } catch (const std::exception& e) {
        return e.what();
    } catch (...) {
        return "unknown exception";
    }
}

ReviewOutcome failedOutcome(const std::exception_ptr& error) noexcept {
    ReviewOutcome outcome;
    outcome.httpStatus = 500;
    try {
        outcome.body = "internal error";
        outcome.error = describe(error);
    } catch (...) {  // NOLINT(bugprone-empty-catch)
        // Out of memory even for the message: a bare 500 still fails closed.
    }
    return outcome;
}

/// The steps of Reviewer::decide after scoping, for one request and one point in time. Every
/// decision it makes is recorded: a decision that changes state (a used code, a counted failure,
/// a grant) commits its audit row together with the change, in the store's group commit; any
/// other gets its audit row alone.
class Verification {
public:
    Verification(Store& store, const Sealer& sealer, const PolicyConfig& config,
                 const ReviewRequest& request, Seconds now)
        : store_(store),
          sealer_(sealer),
          config_(config),
          request_(request),
          now_(now),
          name_(shown(request.username)) {}

    Decision run(bool unlock) { return recorded(evaluate(unlock)); }

    /// `kubectl twostep enroll` (design §3b): begin, or confirm with the first code. The
    /// enrolment's own writes (the pending secret, a new user's confirmation failures, the
    /// completion) are store transactions of their own, outside the group commit: enrolment is
    /// rare, so batching would buy nothing. The completion commits its audit row in its own
    /// transaction; a failure counted on an enrolled user commits with its audit row, as in
    /// verify(); the other steps' audit rows follow as changes of their own.
    Decision enroll(bool confirm, Endpoint endpoint) {
        if (endpoint == Endpoint::Validate) {
            // A validating webhook cannot change the review, so the secret (or the recovery
            // codes) would have no way back to the user: refuse before anything is made.
            return recorded(deny(Reason::EnrollNeedsMutate,
                                 "self-enrollment needs twostep's mutating webhook: ask an admin "
                                 "to send SelfSubjectAccessReviews for /twostep.dev/ paths to "
                                 "/mutate (docs/admin-guide.md)"));
        }
        return recorded(confirm ? confirmEnrollment() : beginEnrollment());
    }

private:
    /// Commits the decision's audit row alone, unless settle() committed it with a change.
    Decision recorded(Decision decision) {
        if (!recorded_) {
            Change change;
            change.username = request_.username;
            change.now = now_;
            change.audit = recordOf(request_, decision, now_);
            store_.commit(change, {});
        }
        return decision;
    }

    Decision evaluate(bool unlock) {
        const std::optional<User> user = store_.findUser(request_.username);
        if (!user) {
            return notEnrolled();
        }
        if (user->state == UserState::Pending) {
            return deny(Reason::Pending,
                        "user " + name_ + " has not confirmed two-step enrollment yet; confirm " +
                            "it with the first code from the authenticator app: " +
                            "`twostep-enroll confirm " + name_ + " CODE`");
        }
        if (user->state == UserState::Disabled) {
            return disabled();
        }
        if (user->isLocked(now_)) {
            return lockedOut(*user->lockedUntil);
        }
        if (unlock) {
            return runUnlock(*user);
        }
        if (user->hasGrant(now_)) {
            return allow(Reason::Grant,
                         {"allowed by a twostep grant until " + formatTime(*user->grantUntil)});
        }
        if (request_.operation == "DELETE" || request_.operation == "CONNECT") {
            return deny(Reason::NeedsGrant,
                        "deleting and exec/attach/port-forward need an open two-step grant: run "
                        "`kubectl twostep unlock` and retry");
        }
        if (config_.grantTtl > 0) {
            grantUntil_ = now_ + config_.grantTtl;
        }
        return verify(*user, request_.token);
    }

    /// `kubectl twostep enroll`: a new pending secret for the requester, whose otpauth URI is the
    /// answer. An enrolled user's current secret stays in force until the new one is confirmed.
    Decision beginEnrollment() {
        const SelfEnrollConfig& self = config_.selfEnroll;
        if (self.mode == SelfEnrollMode::Off) {
            return deny(Reason::NotInvited,
                        "self-enrollment is turned off on this webhook; ask an admin to enroll "
                        "you (`twostep-enroll add " + name_ + "`)");
        }
        const std::optional<User> user = store_.findUser(request_.username);
        if (user && user->state == UserState::Disabled) {
            return disabled();
        }
        if (user && user->isLocked(now_)) {
            return lockedOut(*user->lockedUntil);
        }
        const std::optional<Invitation> invitation = store_.findInvitation(request_.username);
        const bool invited = invitation && invitation->isOpen(now_);
        if (!invited) {
            if (const auto refusal = uninvitedRefusal(user.has_value())) {
                return *refusal;
            }
        }
        const std::optional<PendingEnrollment> earlier =
            store_.findPendingEnrollment(request_.username);
        if (!user && earlier && earlier->isOpen(now_) && earlier->isLocked(now_)) {
            return lockedOut(*earlier->lockedUntil);
        }
        const SecretBytes secret = generateSecret();
        PendingEnrollment pending;
        pending.username = request_.username;
        pending.sealedSecret = sealer_.seal(secret, request_.username);
        pending.issuer = self.issuer;
        pending.invited = invited;
        pending.expiresAt = invited ? invitation->expiresAt : now_ + self.openTtl;
        if (!store_.beginEnrollment(pending, now_)) {
            return deny(Reason::NotInvited, "the invitation of user " + name_ +
                                                " ended while the enrollment began; ask an " +
                                                "admin to run `twostep-enroll invite " + name_ +
                                                "`");
        }
        Decision decision = allow(Reason::EnrollStarted,
                                  {"scan the secret, then confirm with the first code before " +
                                   formatTime(pending.expiresAt)});
        decision.answer = buildOtpauthUri(OtpauthAccount{
            pending.issuer, request_.username, base32::encode(secret.bytes()), pending.params});
        return decision;
    }

    /// `kubectl twostep enroll`, second step: the first code from the app activates the pending
    /// secret; the answer carries fresh recovery codes, shown once.
    Decision confirmEnrollment() {
        const std::optional<PendingEnrollment> pending =
            store_.findPendingEnrollment(request_.username);
        if (!pending || !pending->isOpen(now_)) {
            return deny(Reason::NoEnrollment,
                        "user " + name_ +
                            " has no enrollment waiting for a code (it expired, or none was "
                            "begun); run `kubectl twostep enroll` again");
        }
        const std::optional<User> user = store_.findUser(request_.username);
        if (user && user->state == UserState::Disabled) {
            return disabled();
        }
        if (user && user->isLocked(now_)) {
            return lockedOut(*user->lockedUntil);
        }
        if (!user && pending->isLocked(now_)) {
            return lockedOut(*pending->lockedUntil);
        }
        const std::optional<std::string>& code = request_.nonResourceVerb;
        if (!code) {
            return deny(Reason::MissingCode,
                        "the confirmation carries no code in its verb; run `kubectl twostep "
                        "enroll`");
        }
        if (!isWellFormedCode(*code, pending->params.digits)) {
            return malformed(pending->params.digits, "the confirmation's verb");
        }
        const SecretBytes secret = sealer_.open(pending->sealedSecret, request_.username);
        const TotpResult result =
            verifyTotp(secret, *code, pending->params, now_, config_.window);
        if (result.check != CodeCheck::Matched) {
            // A wrong confirmation is a guess like any other: an enrolled user's counts toward
            // their lockout (with the audit row, in the group commit), a new user's on the
            // pending enrolment.
            if (user) {
                return settle(change(Change::Kind::RecordFailure),
                              [&](const ChangeOutcome& outcome) {
                                  return wrongCode(outcome, "wrong two-step code");
                              });
            }
            return failed(
                store_.recordEnrollmentFailure(request_.username, config_.lockout, now_),
                "wrong two-step code");
        }
        const std::vector<std::string> codes =
            generateRecoveryCodes(config_.selfEnroll.recoveryCodes);
        std::vector<std::string> hashes;
        hashes.reserve(codes.size());
        for (const std::string& recovery : codes) {
            hashes.push_back(hashRecoveryCode(recovery));
        }
        const int drift = driftOf(result.step, pending->params.period);
        Decision decision =
            allow(Reason::Enrolled, {"enrolled: two-step verification is active for you"});
        // The audit row commits with the enrolment: an enrolment is never active unrecorded,
        // nor recorded and rolled back.
        if (!store_.completeEnrollment(*pending, result.step, drift, hashes,
                                       recordOf(request_, decision, now_), now_)) {
            return deny(Reason::NoEnrollment,
                        "the enrollment of user " + name_ +
                            " changed while this code was checked (a newer `kubectl twostep "
                            "enroll`, an uninvite, or a lockout); run `kubectl twostep enroll` "
                            "again");
        }
        recorded_ = true;
        std::string answer;
        for (const std::string& recovery : codes) {
            answer += (answer.empty() ? "" : " ") + recovery;
        }
        decision.answer = std::move(answer);
        return decision;
    }

    /// Why a user without an open invitation may not begin, or nullopt when open mode lets them.
    std::optional<Decision> uninvitedRefusal(bool enrolled) const {
        const SelfEnrollConfig& self = config_.selfEnroll;
        const std::string invite = "ask an admin to run `twostep-enroll invite " + name_ + "`";
        const std::string ask = "; " + invite;
        if (enrolled) {
            return deny(Reason::NotInvited, "user " + name_ +
                                                " is enrolled already; to enroll a new device, " +
                                                invite);
        }
        if (self.mode != SelfEnrollMode::Open) {
            return deny(Reason::NotInvited,
                        "user " + name_ + " has no open invitation to enroll" + ask);
        }
        // Trust on first use is for people the API server authenticated, never anonymous ones.
        const auto& groups = request_.groups;
        const bool authenticated =
            request_.username != "system:anonymous" &&
            std::find(groups.begin(), groups.end(), "system:authenticated") != groups.end();
        const bool member =
            self.openGroups.empty() ||
            std::any_of(groups.begin(), groups.end(), [&](const std::string& group) {
                return std::any_of(self.openGroups.begin(), self.openGroups.end(),
                                   [&](const std::string& glob) { return globMatch(glob, group); });
            });
        if (!authenticated || !member) {
            return deny(Reason::NotInvited, "user " + name_ +
                                                " may not enroll without an invitation" + ask);
        }
        return std::nullopt;
    }

    /// The step offset of a verified code, bounded: where the next check is centred.
    int driftOf(std::int64_t step, int period) const {
        const std::int64_t offset = step - timeStep(now_, period);
        return static_cast<int>(std::clamp<std::int64_t>(offset, -MaxDriftSteps, MaxDriftSteps));
    }

    Decision disabled() const {
        return deny(Reason::Disabled, "two-step verification for user " + name_ +
                                          " is disabled, so protected changes are refused; " +
                                          "ask an admin to run `twostep-enroll enable " + name_ +
                                          "`");
    }

    Decision lockedOut(Seconds until) const {
        return deny(Reason::LockedOut, "user " + name_ +
                                           " is locked out after too many wrong codes until " +
                                           formatTime(until) + "; wait, or ask an admin to run " +
                                           "`twostep-enroll unlock " + name_ + "`");
    }

    Decision notEnrolled() const {
        if (config_.unenrolled == UnenrolledPolicy::Allow) {
            return allow(
                Reason::UnenrolledAllowed,
                {"you are not enrolled in twostep two-step verification; allowed for now"});
        }
        return deny(Reason::NotEnrolled,
                    "user " + name_ + " is not enrolled in two-step verification; ask an admin " +
                        "to run `twostep-enroll add " + name_ + "`");
    }

    Decision runUnlock(const User& user) {
        const std::string_view path = *request_.nonResourcePath;
        const auto requested = requestedDuration(path.substr(UnlockPath.size()));
        if (!requested) {
            return deny(Reason::MalformedCode,
                        "the unlock duration must be a number with s, m or h, as in "
                        "/twostep.dev/unlock/10m (at most " +
                            formatDuration(config_.grantMaxTtl) + "; none asks for the maximum)");
        }
        if (config_.grantMaxTtl <= 0) {
            return deny(Reason::NeedsGrant,
                        "unlocking is turned off on this webhook (the grant "
                        "maximum is 0); ask an admin");
        }
        const Seconds ttl = std::min(requested->value_or(config_.grantMaxTtl), config_.grantMaxTtl);
        unlock_ = true;
        grantUntil_ = now_ + ttl;
        return verify(user, request_.nonResourceVerb);
    }

    /// Checks a TOTP or recovery code; a success consumes it (and opens grantUntil_).
    Decision verify(const User& user, const std::optional<std::string>& code) {
        const std::string where =
            unlock_ ? "the unlock request's verb" : "annotation " + config_.fields.tokenAnnotation;
        if (!code) {
            if (unlock_) {
                return deny(Reason::MissingCode,
                            "the unlock request carries no code in its verb; run `kubectl "
                            "twostep unlock`");
            }
            const std::string& annotation = config_.fields.tokenAnnotation;
            return deny(Reason::MissingCode,
                        "no two-step code: add the current code from your authenticator app as "
                        "annotation " +
                            annotation + " (`kubectl twostep apply -f FILE`, or set " + annotation +
                            "=<code>)");
        }
        if (looksLikeRecoveryCode(*code)) {
            Change use = change(Change::Kind::ConsumeRecoveryCode);
            use.recoveryCode = *code;
            use.countFailureIfRefused = true;  // a wrong or used recovery code is a guess too
            use.grantUntil = grantUntil_;
            return settle(use, [&](const ChangeOutcome& outcome) {
                if (!outcome.applied) {
                    return wrongCode(outcome, "wrong or already used recovery code");
                }
                const int left = std::max(0, user.recoveryCodesLeft - 1);
                return accepted(allow(Reason::RecoveryCode, {"a recovery code was used; " +
                                                             std::to_string(left) + " left"}),
                                user);
            });
        }
        if (!isWellFormedCode(*code, user.params.digits)) {
            // Not counted as a failure: a typo or a pasted name is not a guess.
            return malformed(user.params.digits, where);
        }
        const SecretBytes secret = sealer_.open(user.sealedSecret, user.username);
        // Centred on the step where the user's codes last verified: a device whose clock is
        // off keeps working with a small window (bounded by MaxDriftSteps, so the window never
        // wanders to codes from long ago).
        const int drift = std::clamp(user.driftSteps, -MaxDriftSteps, MaxDriftSteps);
        const Seconds centre = now_ + static_cast<Seconds>(drift) * user.params.period;
        const TotpResult result =
            verifyTotp(secret, *code, user.params, std::max<Seconds>(centre, 0), config_.window);
        switch (result.check) {
            case CodeCheck::Malformed:
                return malformed(user.params.digits, where);
            case CodeCheck::NoMatch:
                return settle(change(Change::Kind::RecordFailure),
                              [&](const ChangeOutcome& outcome) {
                                  return wrongCode(outcome, "wrong two-step code");
                              });
            case CodeCheck::Matched:
                break;
        }
        Change claim = change(Change::Kind::AcceptStep);
        claim.step = result.step;
        claim.requiredState = UserState::Active;
        claim.driftSteps = driftOf(result.step, user.params.period);
        claim.grantUntil = grantUntil_;
        return settle(claim, [&](const ChangeOutcome& outcome) {
            return outcome.applied ? accepted(allow(Reason::Verified), user)
                                   : refusedMatch(outcome.user, result.step);
        });
    }

    /// A change of `kind` for this request's user, now.
    Change change(Change::Kind kind) const {
        Change change;
        change.kind = kind;
        change.username = request_.username;
        change.now = now_;
        change.lockout = config_.lockout;
        return change;
    }

    /// Commits `change` together with the decision's audit row. `answer` turns what the change
    /// did into the decision; the store calls it inside the transaction, so the audit row says
    /// what really happened (a claim that lost a race is recorded as the replay or lockout it
    /// was). @throw CommitError when the batch failed: then nothing was recorded.
    template <typename Answer>
    Decision settle(Change change, const Answer& answer) {
        change.audit = recordOf(request_, Decision{}, now_);
        Decision decision;
        store_.commit(change, [&](const ChangeOutcome& outcome) {
            decision = answer(outcome);
            return std::optional<Verdict>(Verdict{decision.allowed, toString(decision.reason)});
        });
        recorded_ = true;
        return decision;
    }

    /// A used code's decision: an unlock names the grant it opened.
    Decision accepted(Decision decision, const User& user) const {
        if (!unlock_) {
            return decision;
        }
        // A grant only extends: a longer grant that is already open stays.
        const Seconds until = std::max(grantUntil_.value_or(now_), user.grantUntil.value_or(0));
        decision.reason = Reason::Unlocked;
        decision.warnings.insert(decision.warnings.begin(),
                                 "twostep grant open until " + formatTime(until));
        return decision;
    }

    /// A right code that the claim refused: a replay, unless a lockout started (or the user
    /// changed) since the request read the user. `current` is the row as the claim saw it.
    Decision refusedMatch(const std::optional<User>& current, std::int64_t step) const {
        if (!current) {
            return notEnrolled();
        }
        if (current->isLocked(now_)) {
            return lockedOut(*current->lockedUntil);
        }
        // Not a failure: `kubectl apply` of several objects sends one code several times.
        return replayed(*current, step);
    }

    Decision malformed(int digits, const std::string& where) const {
        return deny(Reason::MalformedCode, where + " must hold the " + std::to_string(digits) +
                                               "-digit code from your authenticator app");
    }

    /// The answer to a wrong code, counted in `outcome`.
    Decision wrongCode(const ChangeOutcome& outcome, const std::string& what) const {
        return failed(outcome.failure.value_or(FailureOutcome{true, 0, {}}), what);
    }

    /// Answers a counted wrong code; while the user is locked out the answer is the lockout,
    /// right or wrong, so a guess in flight learns nothing.
    Decision failed(const FailureOutcome& failure, const std::string& what) const {
        if (failure.refused) {
            return failure.lockedUntil ? lockedOut(*failure.lockedUntil) : notEnrolled();
        }
        if (failure.lockedUntil) {
            return deny(Reason::WrongCode,
                        what + " for user " + name_ + "; too many wrong codes: locked out until " +
                            formatTime(*failure.lockedUntil) + " (check your device's clock; an " +
                            "admin can run `twostep-enroll unlock " + name_ + "`)");
        }
        const int left = std::max(0, config_.lockout.maxFailures - failure.failures);
        return deny(Reason::WrongCode, what + " for user " + name_ + " (" + std::to_string(left) +
                                           " attempts left before a " +
                                           "lockout); check that your device's clock is right");
    }

    Decision replayed(const User& user, std::int64_t step) const {
        const std::int64_t newest = std::max(step, user.lastStep.value_or(step));
        const Seconds wait = (newest + 1) * user.params.period - now_;
        if (wait <= 0) {
            return deny(Reason::Replayed,
                        "this code was already used; use the current code "
                        "from your authenticator app");
        }
        return deny(Reason::Replayed,
                    "this code was already used; wait for the next code from "
                    "your authenticator app, in " +
                        std::to_string(wait) + " s");
    }

    Store& store_;
    const Sealer& sealer_;
    const PolicyConfig& config_;
    const ReviewRequest& request_;
    const Seconds now_;
    const std::string name_;
    bool unlock_ = false;                  ///< an unlock request (a SelfSubjectAccessReview)
    std::optional<Seconds> grantUntil_;    ///< the grant a used code opens
    bool recorded_ = false;                ///< the decision's audit row is committed
};

}  // namespace

bool globMatch(std::string_view pattern, std::string_view text) {
    // Greedy match that backtracks only to the last '*': O(pattern * text), no recursion.
    std::size_t p = 0;
    std::size_t t = 0;
    std::size_t star = std::string_view::npos;
    std::size_t resume = 0;
    while (t < text.size()) {
        if (p < pattern.size() && pattern[p] == '*') {
            star = p++;
            resume = t;
        } else if (p < pattern.size() && pattern[p] == text[t]) {
            ++p;
            ++t;
        } else if (star != std::string_view::npos) {
            p = star + 1;
            t = ++resume;
        } else {
            return false;
        }
    }
    while (p < pattern.size() && pattern[p] == '*') {
        ++p;
    }
    return p == pattern.size();
}

Reviewer::Reviewer(Store& store, const Sealer& sealer, const Clock& clock, PolicyConfig config)
    : store_(store), sealer_(sealer), clock_(clock), config_(std::move(config)) {}

std::optional<Decision> Reviewer::decideWithoutStore(const ReviewRequest& request) const {
    const auto matches = [](const std::vector<std::string>& patterns, std::string_view text) {
        return std::any_of(patterns.begin(), patterns.end(),
                           [text](const std::string& pattern) { return globMatch(pattern, text); });
    };
    if (matches(config_.exemptUsers, request.username) ||
        std::any_of(request.groups.begin(), request.groups.end(), [&](const std::string& group) {
            return matches(config_.exemptGroups, group);
        })) {
        return allow(Reason::Exempt);
    }
    const Scope scope = scopeOf(request, config_);
    if (scope == Scope::NotProtected) {
        return allow(Reason::NotProtected);
    }
    if (request.dryRun) {
        // Nothing persists, and checking the code would make dry runs a free guessing oracle.
        return allow(Reason::DryRun,
                     {"dry run: twostep checked no code; the real request will need one"});
    }
    return std::nullopt;
}

Decision Reviewer::decide(const ReviewRequest& request, Endpoint endpoint) const {
    if (std::optional<Decision> decision = decideWithoutStore(request)) {
        return std::move(*decision);
    }
    return decideWithStore(request, endpoint);
}

Decision Reviewer::decideWithStore(const ReviewRequest& request, Endpoint endpoint) const {
    const Scope scope = scopeOf(request, config_);
    Verification verification(store_, sealer_, config_, request, clock_.now());
    if (scope == Scope::EnrollBegin || scope == Scope::EnrollConfirm) {
        return verification.enroll(scope == Scope::EnrollConfirm, endpoint);
    }
    return verification.run(scope == Scope::Unlock);
}

ReviewOutcome Reviewer::review(std::string_view body, Endpoint endpoint) const noexcept {
    std::variant<ReviewOutcome, ReviewRequest> started = start(body, endpoint);
    if (auto* done = std::get_if<ReviewOutcome>(&started)) {
        return std::move(*done);
    }
    return finish(std::get<ReviewRequest>(started), endpoint);
}

std::variant<ReviewOutcome, ReviewRequest> Reviewer::start(std::string_view body,
                                                           Endpoint endpoint) const noexcept {
    try {
        auto parsed = parseReview(body, config_.fields);
        if (const auto* error = std::get_if<ParseError>(&parsed)) {
            ReviewOutcome outcome;
            outcome.httpStatus = error->httpStatus;
            outcome.body = "bad request: " + error->reason;
            return outcome;
        }
        auto& request = std::get<ReviewRequest>(parsed);
        if (std::optional<Decision> decision = decideWithoutStore(request)) {
            return respond(request, endpoint, std::move(decision));
        }
        return std::move(request);
    } catch (...) {
        // Only allocation can fail out here; the API server applies its failurePolicy to a 500.
        return failedOutcome(std::current_exception());
    }
}

ReviewOutcome Reviewer::finish(const ReviewRequest& request, Endpoint endpoint) const noexcept {
    try {
        // start() found that this request needs the store: not decided again from the top.
        return respond(request, endpoint, std::nullopt);
    } catch (...) {
        return failedOutcome(std::current_exception());
    }
}

ReviewOutcome Reviewer::respond(const ReviewRequest& request, Endpoint endpoint,
                                std::optional<Decision> known) const {
    ReviewOutcome outcome;
    Decision decision;
    std::optional<JsonPatch> patch;
    try {
        // decide() records every decision it makes through Verification, together with its state
        // change; the routine ones (exempt, not protected, dry run, which decideWithoutStore
        // answers) are not audited (design §3.9; the webhooks declare sideEffects NoneOnDryRun),
        // though they still get a log line.
        decision = known ? std::move(*known) : decideWithStore(request, endpoint);
        if (endpoint == Endpoint::Mutate && decision.allowed) {
            patch = decision.answer ? buildAnswerPatch(*decision.answer)
                                    : buildStripPatch(request, config_.fields);
        }
    } catch (...) {
        const std::exception_ptr error = std::current_exception();
        outcome.error = describe(error);
        decision = deny(Reason::InternalError, std::string(failedCommit(error)
                                                               ? CommitFailedMessage
                                                               : InternalErrorMessage));
        patch.reset();
        try {
            store_.appendAudit(recordOf(request, decision, clock_.now()));
        } catch (...) {  // NOLINT(bugprone-empty-catch)
            // Best effort: the store is most likely what failed; the log line still records it.
        }
    }
    outcome.body = buildResponse(request, decision, patch);
    outcome.record = recordOf(request, decision, clock_.now());
    outcome.decision = std::move(decision);
    return outcome;
}

}  // namespace twostep::core
