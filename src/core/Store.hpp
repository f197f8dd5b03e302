/// The store interface: users, replay state, lockouts, grants, recovery codes, self-enrolment
/// (invitations and pending secrets) and the audit log. SqliteStore and PostgresStore implement it
/// with the same semantics.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/Clock.hpp"
#include "core/Error.hpp"
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

/// What a request asks the store to change. The store's writer applies the changes of concurrent
/// requests together, in one transaction, in arrival order, and commits once (group commit,
/// docs/architecture.md): see Store::commit.
struct Change {
    enum class Kind {
        AuditOnly,            ///< nothing but the audit row (a decision that changed no state)
        AcceptStep,           ///< the replay compare-and-set (Store::acceptStep)
        ConfirmStep,          ///< pending -> active with the step (Store::confirmWithStep)
        RecordFailure,        ///< count a wrong code (Store::recordFailure)
        ConsumeRecoveryCode,  ///< use a recovery code (Store::consumeRecoveryCode)
        OpenGrant,            ///< open or extend a grant until grantUntil (Store::openGrant)
    };
    Kind kind = Kind::AuditOnly;
    std::string username;
    Seconds now = 0;
    std::int64_t step = 0;                        ///< AcceptStep, ConfirmStep
    UserState requiredState = UserState::Active;  ///< AcceptStep
    /// AcceptStep: the offset (in steps, see MaxDriftSteps) the code verified at, stored with the
    /// claim in the same conditional UPDATE; nullopt keeps the stored drift.
    std::optional<int> driftSteps;
    std::string recoveryCode;                     ///< ConsumeRecoveryCode: the code as typed
    LockoutPolicy lockout;  ///< RecordFailure, and ConsumeRecoveryCode with countFailureIfRefused
    /// ConsumeRecoveryCode: a code that is refused (wrong, already used, or the user locked out)
    /// counts as a failure in the same transaction, as a wrong TOTP code does.
    bool countFailureIfRefused = false;
    /// AcceptStep, ConsumeRecoveryCode: the grant the claim opens (extends) when it succeeds, in
    /// the same transaction; OpenGrant: the grant's end.
    std::optional<Seconds> grantUntil;
    /// The decision's audit row (who, what, when), written in the change's transaction. Its
    /// decision and reason come from the Settle callback, or as set here when there is none.
    std::optional<AuditEvent> audit;

    /// About how many bytes the change puts into the database (for the batch's byte bound).
    std::size_t approximateBytes() const;
};

/// What a change did, as the writer saw it inside its transaction.
struct ChangeOutcome {
    /// The claim, grant or confirmation changed the user's row (always false for AuditOnly and
    /// RecordFailure).
    bool applied = false;
    /// Set when a failure was counted or refused (RecordFailure, or a refused claim with
    /// countFailureIfRefused).
    std::optional<FailureOutcome> failure;
    /// A refused AcceptStep: the user's row as it stood in the transaction (nullopt when the
    /// user does not exist), which tells a replay from a lockout.
    std::optional<User> user;
};

/// The audit row's verdict, chosen from a change's outcome.
struct Verdict {
    bool allowed = false;
    std::string_view reason;  ///< a stable reason id (see Decision.hpp); must outlive the call
};

/// Turns what a change did into its decision's verdict. The writer calls it inside the
/// transaction, so the audit row says what really happened; it must be quick and must not block
/// on the store. Returns nullopt to write no audit row.
using Settle = std::function<std::optional<Verdict>(const ChangeOutcome&)>;

/// Told about the store's group commits, e.g. to fill a histogram. Called on the committing
/// thread; must be quick, thread-safe, and must not throw.
class CommitObserver {
public:
    virtual ~CommitObserver() = default;
    /// A change joined the queue; `queued` changes (this one included) now wait for the writer.
    virtual void changeQueued(std::size_t queued) noexcept = 0;
    /// A batch of `changes` changes (`bytes` by Change::approximateBytes) ended: committed, or
    /// failed and rolled back, every member answered with the error.
    virtual void batchDone(std::size_t changes, std::size_t bytes, bool committed) noexcept = 0;
};

/// A batch of changes could not be committed: none of it was, and every request in it is
/// refused. Derived from StoreError, so callers that fail closed on store errors keep doing so.
class CommitError : public StoreError {
public:
    using StoreError::StoreError;
};

struct AuditFilter {
    std::optional<std::string> username;
    std::optional<Seconds> since;
    std::optional<Seconds> until;
    int limit = 100;  ///< newest first
};

/// Persistent state. All methods are thread-safe (implementations pool connections) and throw
/// twostep::StoreError (or a subclass) when the database fails; "not found" is a value, not an error.
/// Reads run concurrently on the pool; the writes of the request path (commit, and acceptStep,
/// confirmWithStep, recordFailure, consumeRecoveryCode, openGrant and appendAudit, which are one
/// change each) are committed in batches by one writer at a time.
class Store {
public:
    virtual ~Store() = default;

    /// Hands `change` to the store's writer and waits until it is committed: the writer takes
    /// every change queued (up to a bound), applies them in one transaction in arrival order, each
    /// as if alone (a claim is still one conditional UPDATE, so of concurrent claims of one step
    /// exactly one applies), calls each change's `settle` with its outcome and writes the audit
    /// row it names, then commits once. A lone change commits at once. Returns this change's
    /// outcome only once it is durable. @throw CommitError when the batch failed: nothing of it
    /// was committed; StoreError when the change could not be queued.
    virtual ChangeOutcome commit(const Change& change, const Settle& settle) = 0;
    /// Reports every later batch to `observer` (nullptr: none). Set it before the store is shared
    /// between threads; the observer must outlive the store's use.
    virtual void setCommitObserver(CommitObserver* observer) = 0;

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

    // acceptStep, confirmWithStep, recordFailure, openGrant and consumeRecoveryCode are each one
    // change through commit(), batched with the changes of other callers.

    /// The replay compare-and-set: records `step` as accepted only if it is newer than the
    /// user's last accepted step, the user is in `requiredState` and not locked out. One
    /// conditional UPDATE, so of concurrent callers with the same step exactly one gets true. On
    /// success also clears the failure count and the lockout streak, and stores `driftSteps`
    /// (the offset the code verified at) when given, in the same statement.
    virtual bool acceptStep(std::string_view username, std::int64_t step, UserState requiredState,
                            Seconds now, std::optional<int> driftSteps = std::nullopt);
    /// Pending -> active together with acceptStep, atomically (used by `confirm`).
    virtual bool confirmWithStep(std::string_view username, std::int64_t step, Seconds now);

    /// Counts a wrong code atomically; the failure that reaches policy.maxFailures starts a
    /// lockout. While the user is locked out, the failure is refused and not counted, and
    /// acceptStep and consumeRecoveryCode refuse too. Together they bound the codes checked per
    /// lockout to maxFailures however many guesses arrive at once: once the lock is on, a guess
    /// in flight is answered "locked out", right or wrong. An unknown user is refused.
    virtual FailureOutcome recordFailure(std::string_view username, const LockoutPolicy& policy,
                                         Seconds now);
    /// Clears failures, lock and lockout streak. False when the user does not exist.
    virtual bool unlock(std::string_view username, Seconds now) = 0;

    /// Opens (or extends) a grant until `until`. False when the user does not exist.
    virtual bool openGrant(std::string_view username, Seconds until, Seconds now);
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
                                     Seconds now);

    // Self-enrolment. Each of these is its own transaction, outside the group commit: an
    // enrolment is rare (once per user and device), so batching it would buy nothing, and its
    // audit rows are appended after it (appendAudit) as for the enroll tool's admin actions.

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
    /// drift and these recovery codes (replacing any), ends the invitation and appends `audit`:
    /// one transaction. Only while the pending enrolment still holds pending.sealedSecret, is
    /// open and not locked, and the user (if enrolled) is neither disabled nor locked out; false
    /// otherwise, and then nothing is written.
    virtual bool completeEnrollment(const PendingEnrollment& pending, std::int64_t step,
                                    int driftSteps, const std::vector<std::string>& recoveryHashes,
                                    const AuditEvent& audit, Seconds now) = 0;

    /// Appends one audit row (one AuditOnly change through commit()).
    virtual void appendAudit(const AuditEvent& event);
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
