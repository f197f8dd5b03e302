/// The store interface: users, replay state, lockouts, grants, recovery codes, self-enrolment
/// (invitations and pending secrets) and the audit log. SqliteStore and PostgresStore implement it
/// with the same semantics.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/Clock.hpp"
#include "core/Totp.hpp"

namespace twostep::core {

enum class UserState { Pending, Active, Disabled };
std::string_view toString(UserState state);  ///< "pending", "active", "disabled"

/// One enrolled user as stored. The secret stays sealed; only Sealer::open reveals it.
struct User {
    std::string username;
    std::string sealedSecret;
    std::string issuer;
    TotpParams params;
    UserState state = UserState::Pending;
    std::optional<std::int64_t> lastStep;  ///< newest accepted time step (replay protection)
    int failures = 0;                      ///< consecutive failed verifications
    int lockouts = 0;                      ///< lockouts since the last success (lock doubles)
    std::optional<Seconds> lockedUntil;
    std::optional<Seconds> grantUntil;
    int recoveryCodesLeft = 0;
    /// Time steps between the server's clock and the user's device, learned from the last
    /// verified code (see MaxDriftSteps); 0 after (re-)enrolment.
    int driftSteps = 0;
    Seconds createdAt = 0;
    Seconds updatedAt = 0;

    bool isLocked(Seconds now) const { return lockedUntil && *lockedUntil > now; }
    bool hasGrant(Seconds now) const { return grantUntil && *grantUntil > now; }
};

/// What a new or replaced user starts with.
struct NewUser {
    std::string username;
    std::string sealedSecret;
    std::string issuer;
    TotpParams params;
    UserState state = UserState::Pending;
};

/// An admin's invitation to enrol oneself (`twostep-enroll invite`).
struct Invitation {
    std::string username;
    std::string invitedBy;  ///< the admin's local account
    Seconds createdAt = 0;
    Seconds expiresAt = 0;

    bool isOpen(Seconds now) const { return expiresAt > now; }
};

/// A secret made by a self-enrolment begin (`kubectl twostep enroll`), waiting for its first
/// code. The user's current secret, if any, stays in force until this one is confirmed.
struct PendingEnrollment {
    std::string username;
    std::string sealedSecret;
    std::string issuer;
    TotpParams params;
    bool invited = false;  ///< begun under an invitation: it ends with the invitation
    /// Wrong confirmation codes of a user not enrolled yet (an enrolled user's count in User).
    int failures = 0;
    int lockouts = 0;
    std::optional<Seconds> lockedUntil;
    Seconds createdAt = 0;
    Seconds expiresAt = 0;

    bool isOpen(Seconds now) const { return expiresAt > now; }
    bool isLocked(Seconds now) const { return lockedUntil && *lockedUntil > now; }
};

/// How failures turn into lockouts: after `maxFailures` consecutive failures the user is locked
/// for `baseLockSeconds`, doubling with each further lockout up to `maxLockSeconds`.
struct LockoutPolicy {
    int maxFailures = 5;
    Seconds baseLockSeconds = 60;
    Seconds maxLockSeconds = 3600;
    /// The lock length for the n-th lockout (n >= 1).
    Seconds lockFor(int lockoutNumber) const;
};

/// What recordFailure did.
struct FailureOutcome {
    bool refused = false;  ///< the user was locked out already: nothing was counted
    int failures = 0;      ///< failures in the current streak, this one included
    /// The lock that refused the failure, or the one this failure started (then failures is 0).
    std::optional<Seconds> lockedUntil;
};

/// One decision in the audit log. Never holds a code.
struct AuditEvent {
    std::int64_t id = 0;  ///< assigned by the store
    Seconds time = 0;
    std::string username;
    std::string operation;  ///< CREATE, UPDATE, DELETE, CONNECT, or an admin action (e.g. "enroll:add")
    std::string resource;   ///< e.g. "apps/v1/deployments"
    std::string subResource;
    std::string nameSpace;
    std::string name;
    std::string decision;  ///< "allow" or "deny"
    std::string reason;    ///< a stable reason id (see Decision.hpp)
    std::string uid;       ///< the AdmissionReview request uid
};

struct AuditFilter {
    std::optional<std::string> username;
    std::optional<Seconds> since;
    std::optional<Seconds> until;
    int limit = 100;  ///< newest first
};

/// Persistent state. All methods are thread-safe (implementations pool connections) and throw
/// twostep::StoreError (or a subclass) when the database fails; "not found" is a value, not an error.
class Store {
public:
    virtual ~Store() = default;

    /// The user, or nullopt when not enrolled.
    virtual std::optional<User> findUser(std::string_view username) = 0;
    virtual std::vector<User> listUsers() = 0;

    /// Creates a user; with `replace`, an existing user is replaced (fresh state, no recovery codes,
    /// no grant). Returns false when the user exists and `replace` is false.
    virtual bool addUser(const NewUser& user, Seconds now, bool replace) = 0;
    /// Adds every user in one transaction: all or nothing. @throw StoreError naming the first
    /// username that already exists.
    virtual void importUsers(const std::vector<NewUser>& users, Seconds now) = 0;
    /// The following return false when the user does not exist.
    virtual bool removeUser(std::string_view username) = 0;
    /// Sets the state; disabling also ends any grant.
    virtual bool setState(std::string_view username, UserState state, Seconds now) = 0;
    /// New secret, back to pending: clears the replay step, failures, lock, grant, recovery codes.
    virtual bool resetSecret(std::string_view username, std::string_view sealedSecret,
                             Seconds now) = 0;

    /// The replay compare-and-set: records `step` as accepted only if it is newer than the
    /// user's last accepted step, the user is in `requiredState` and not locked out. One
    /// conditional UPDATE, so of concurrent callers with the same step exactly one gets true. On
    /// success also clears the failure count and the lockout streak, and stores `driftSteps`
    /// (the offset the code verified at) when given, in the same statement.
    virtual bool acceptStep(std::string_view username, std::int64_t step, UserState requiredState,
                            Seconds now, std::optional<int> driftSteps = std::nullopt) = 0;
    /// Pending -> active together with acceptStep, atomically (used by `confirm`).
    virtual bool confirmWithStep(std::string_view username, std::int64_t step, Seconds now) = 0;

    /// Counts a wrong code atomically; the failure that reaches policy.maxFailures starts a
    /// lockout. While the user is locked out, the failure is refused and not counted, and
    /// acceptStep and consumeRecoveryCode refuse too. Together they bound the codes checked per
    /// lockout to maxFailures however many guesses arrive at once: once the lock is on, a guess
    /// in flight is answered "locked out", right or wrong. An unknown user is refused.
    virtual FailureOutcome recordFailure(std::string_view username, const LockoutPolicy& policy,
                                         Seconds now) = 0;
    /// Clears failures, lock and lockout streak. False when the user does not exist.
    virtual bool unlock(std::string_view username, Seconds now) = 0;

    /// Opens (or extends) a grant until `until`. False when the user does not exist.
    virtual bool openGrant(std::string_view username, Seconds until, Seconds now) = 0;
    /// Ends a grant. False when the user does not exist.
    virtual bool revokeGrant(std::string_view username, Seconds now) = 0;

    /// Replaces the user's recovery codes with these hashes. False when the user does not exist.
    virtual bool replaceRecoveryCodes(std::string_view username,
                                      const std::vector<std::string>& hashes, Seconds now) = 0;
    /// Consumes the recovery code matching `code` (checked with matchesRecoveryCode) atomically:
    /// of concurrent callers with the same code exactly one gets true. False while the user is
    /// locked out (the code stays unused). On success also clears the failure count and the
    /// lockout streak, as acceptStep does.
    virtual bool consumeRecoveryCode(std::string_view username, std::string_view code,
                                     Seconds now) = 0;

    /// Opens (or replaces) an invitation. A replaced invitation's pending enrolment is discarded:
    /// the user begins again under the new one. Expired invitations and pending enrolments are
    /// purged on the way.
    virtual void putInvitation(const Invitation& invitation, Seconds now) = 0;
    /// The invitation, open or expired (nullopt when there is none).
    virtual std::optional<Invitation> findInvitation(std::string_view username) = 0;
    /// Every stored invitation, by username (expired ones until they are purged).
    virtual std::vector<Invitation> listInvitations() = 0;
    /// Ends an invitation and discards the enrolment pending under it. False when there was none.
    virtual bool removeInvitation(std::string_view username) = 0;

    /// Stores `pending` for its user, replacing a pending secret (whose failure counters stay).
    /// With pending.invited, only while the user has an open invitation, whose end becomes the
    /// pending secret's end (pending.expiresAt is then ignored); false when there is none.
    virtual bool beginEnrollment(const PendingEnrollment& pending, Seconds now) = 0;
    /// The pending enrolment, open or expired (nullopt when there is none).
    virtual std::optional<PendingEnrollment> findPendingEnrollment(std::string_view username) = 0;
    /// Counts a wrong confirmation code on the pending enrolment, as recordFailure does on a
    /// user. Refused when there is none.
    virtual FailureOutcome recordEnrollmentFailure(std::string_view username,
                                                   const LockoutPolicy& policy, Seconds now) = 0;
    /// Makes the pending secret the user's, active, with `step` as the last accepted step, the
    /// drift and these recovery codes (replacing any), and ends the invitation: one transaction.
    /// Only while the pending enrolment still holds pending.sealedSecret, is open and not locked,
    /// and the user (if enrolled) is neither disabled nor locked out; false otherwise.
    virtual bool completeEnrollment(const PendingEnrollment& pending, std::int64_t step,
                                    int driftSteps, const std::vector<std::string>& recoveryHashes,
                                    Seconds now) = 0;

    virtual void appendAudit(const AuditEvent& event) = 0;
    virtual std::vector<AuditEvent> listAudit(const AuditFilter& filter) = 0;

    /// Re-seals every secret (users' and pending enrolments') with `reseal(username, sealed) ->
    /// newSealed` and records the new key fingerprint, in one transaction: if anything throws,
    /// nothing changes.
    virtual void resealAll(
        const std::function<std::string(const std::string&, const std::string&)>& reseal,
        std::string_view newKeyFingerprint) = 0;

    /// The fingerprint of the master key the secrets are sealed with (nullopt in a new database).
    virtual std::optional<std::string> keyFingerprint() = 0;
    /// Records the fingerprint if none is recorded yet.
    virtual void setKeyFingerprintIfUnset(std::string_view fingerprint) = 0;

    /// Counts for metrics.
    virtual int countUsers(UserState state) = 0;
    virtual int countLocked(Seconds now) = 0;

    /// Cheap liveness query for /readyz. @throw StoreError when the database does not answer.
    virtual void ping() = 0;
};

/// Opens the store that `url` names: a file path or `sqlite:PATH` for SQLite, `:memory:` for a
/// private in-memory SQLite, `postgresql://...` for PostgreSQL. Migrates the schema.
/// @throw StoreError when it cannot be opened, or its schema is newer than this binary.
std::unique_ptr<Store> openStore(const std::string& url);

}  // namespace twostep::core
