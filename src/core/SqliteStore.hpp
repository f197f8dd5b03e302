/// The SQLite implementation of Store (SQLiteCpp): a small connection pool and the migration
/// runner.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "core/GroupCommit.hpp"
#include "core/Store.hpp"

namespace SQLite {
class Database;
}

namespace twostep::core {

template <typename Connection>
class ConnectionPool;
class SqliteConnection;

/// How SqliteStore opens its connections.
struct SqliteOptions {
    /// PRAGMA synchronous in WAL mode. Full: every commit waits for the disk (fsync). Normal: no
    /// commit waits (checkpoints do); after a power loss or OS crash the last commits may be gone,
    /// never the file's consistency. DurableState (the default): Full for every change of state
    /// (users, used time steps, recovery codes, grants, locks), Normal only for the two writes
    /// of the request path whose loss costs little: counting a failure and appending an audit
    /// row. docs/benchmarks.md measures the three and explains the choice.
    enum class Synchronous { Normal, Full, DurableState };
    Synchronous synchronous = Synchronous::DurableState;
    /// How long a caller waits for the write lock of another connection or process, and for a
    /// free pooled connection, before it fails with StoreError ("database is locked").
    int busyTimeoutMs = 5000;
    /// The most connections open at once; further callers wait for a free one. ":memory:" always
    /// uses exactly one connection, so every caller sees the same in-memory database.
    int maxConnections = 16;
    /// How big one group commit may grow (maxChanges 1: every change commits alone).
    BatchLimits batch;
};

/// Store on one SQLite file in WAL mode, shared safely by threads (a pool hands each caller its own
/// connection) and by processes (SQLite's file locks; every read-modify-write is one conditional
/// statement or a BEGIN IMMEDIATE transaction). The changes of the request path are group
/// committed: one BEGIN IMMEDIATE transaction and one commit (one fsync) per batch. Thread-safe.
class SqliteStore final : public Store {
public:
    /// Opens the database at `path` (created when missing; ":memory:" for a private in-memory
    /// database) and applies the embedded migrations it lacks.
    /// @throw StoreError naming the path when it cannot be opened or is not a SQLite database,
    /// when a migration fails, or when its schema is newer than this binary.
    explicit SqliteStore(std::string path, SqliteOptions options = {});
    ~SqliteStore() override;
    SqliteStore(const SqliteStore&) = delete;
    SqliteStore& operator=(const SqliteStore&) = delete;

    std::optional<User> findUser(std::string_view username) override;
    std::vector<User> listUsers() override;
    bool addUser(const NewUser& user, Seconds now, bool replace) override;
    void importUsers(const std::vector<NewUser>& users, Seconds now) override;
    bool removeUser(std::string_view username) override;
    bool setState(std::string_view username, UserState state, Seconds now) override;
    bool resetSecret(std::string_view username, std::string_view sealedSecret,
                     Seconds now) override;
    ChangeOutcome commit(const Change& change, const Settle& settle) override;
    void setCommitObserver(CommitObserver* observer) override;
    bool unlock(std::string_view username, Seconds now) override;
    bool revokeGrant(std::string_view username, Seconds now) override;
    bool replaceRecoveryCodes(std::string_view username, const std::vector<std::string>& hashes,
                              Seconds now) override;
    void putInvitation(const Invitation& invitation, Seconds now) override;
    std::optional<Invitation> findInvitation(std::string_view username) override;
    std::vector<Invitation> listInvitations() override;
    bool removeInvitation(std::string_view username) override;
    bool beginEnrollment(const PendingEnrollment& pending, Seconds now) override;
    std::optional<PendingEnrollment> findPendingEnrollment(std::string_view username) override;
    FailureOutcome recordEnrollmentFailure(std::string_view username, const LockoutPolicy& policy,
                                           Seconds now) override;
    bool completeEnrollment(const PendingEnrollment& pending, std::int64_t step, int driftSteps,
                            const std::vector<std::string>& recoveryHashes, const AuditEvent& audit,
                            Seconds now) override;
    std::vector<AuditEvent> listAudit(const AuditFilter& filter) override;
    void resealAll(const std::function<std::string(const std::string&, const std::string&)>& reseal,
                   std::string_view newKeyFingerprint) override;
    std::optional<std::string> keyFingerprint() override;
    void setKeyFingerprintIfUnset(std::string_view fingerprint) override;
    int countUsers(UserState state) override;
    int countLocked(Seconds now) override;
    void ping() override;

    /// The newest applied migration. @throw StoreError when the database fails.
    int schemaVersion();
    /// The path the store was opened with.
    const std::string& path() const { return path_; }

private:
    using Pool = ConnectionPool<SqliteConnection>;
    enum class Access { Read, Write };

    /// Runs `fn(SQLite::Database&)` on a pooled connection and turns a SQLite::Exception into a
    /// StoreError "cannot <action> '<subject>' in database '<path>': <sqlite message>".
    template <typename Fn>
    auto withConnection(Access access, std::string_view action, std::string_view subject, Fn&& fn);
    /// Applies and commits one batch of the group commit (GroupCommit::ApplyBatch).
    void applyBatch(std::span<QueuedChange* const> batch);
    /// The id of `username`'s stored recovery code that `code` matches, read outside the writer.
    std::optional<std::int64_t> matchRecoveryCode(std::string_view username,
                                                  std::string_view code);

    std::string path_;
    SqliteOptions::Synchronous synchronous_;
    std::chrono::milliseconds busyTimeout_;
    /// Taken by every write of this store: SQLite lets one writer in at a time anyway, and waiting
    /// here hands over at once where SQLite's busy handler would poll and sleep. Writers in other
    /// processes (or other stores) still meet at SQLite's lock and the busy timeout. Not a
    /// std::timed_mutex: GCC 12 locks that with pthread_mutex_clocklock, which ThreadSanitizer
    /// does not intercept, so TSan reported every unlock as a bug.
    std::mutex writerMutex_;
    std::condition_variable writerFree_;
    bool writerBusy_ = false;
    std::unique_ptr<Pool> pool_;
    std::unique_ptr<GroupCommit> writes_;
};

}  // namespace twostep::core
