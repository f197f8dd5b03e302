/// The PostgreSQL implementation of Store (libpqxx): a bounded connection pool that reconnects
/// after the server restarts, statement timeouts, and the migration runner for
/// migrations/postgresql/.
#pragma once

#include <memory>
#include <optional>
#include <span>
#include <string>

#include "core/GroupCommit.hpp"
#include "core/Store.hpp"

namespace twostep::core {

/// How PostgresStore connects. The URL's query may override the first two (see docs/postgresql.md).
struct PostgresOptions {
    /// The most connections open at once; further callers wait up to `acquireTimeoutMs` for one.
    int poolSize = 16;
    /// SET statement_timeout on every connection: a statement running longer fails (fail closed).
    int statementTimeoutMs = 5000;
    /// libpq's connect_timeout, used when the URL does not set one.
    int connectTimeoutSeconds = 5;
    /// How long a caller waits for a free connection when all `poolSize` are in use.
    int acquireTimeoutMs = 5000;
    /// How big one group commit may grow (maxChanges 1: every change commits alone).
    BatchLimits batch;
};

class PostgresConnectionPool;

/// Store on a PostgreSQL database, shared safely by threads (a pool hands each caller its own
/// connection) and by processes and replicas (every read-modify-write is one conditional statement
/// or a transaction with row locks). The changes of the request path are group committed: one
/// transaction per batch, each claim still a conditional UPDATE in the database, so replicas that
/// share the database stay correct. A connection that breaks is dropped and a new one opened on
/// next use, so the store recovers by itself after the server restarts; operations during an
/// outage throw StoreError. Thread-safe.
class PostgresStore final : public Store {
public:
    /// Connects to `url` (postgresql://user:password@host:port/db?sslmode=...; libpq's keyword
    /// form works too) and applies the embedded migrations it lacks. The query may also carry
    /// `pool_size=N` and `statement_timeout=MS`, which are taken out before libpq sees the URL.
    /// @throw StoreError (never containing the password) when the URL is invalid, the server does
    /// not answer, a migration fails, or the schema is newer than this binary.
    explicit PostgresStore(const std::string& url, PostgresOptions options = {});
    ~PostgresStore() override;
    PostgresStore(const PostgresStore&) = delete;
    PostgresStore& operator=(const PostgresStore&) = delete;

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
    /// The server and database the store talks to, without user or password (for messages).
    const std::string& description() const { return description_; }
    /// The options in effect after the URL's overrides.
    const PostgresOptions& options() const { return options_; }

private:
    /// Runs `fn(pqxx::connection&)` on a pooled connection and turns a libpqxx error into a
    /// StoreError "cannot <action> '<subject>' in database '<description>': <message>".
    template <typename Fn>
    auto withConnection(std::string_view action, std::string_view subject, Fn&& fn);
    /// One UPDATE of the user's row (`sql` binds username as $1, now as $2, then `extra`) through
    /// withConnection; true when it changed the row. False at once for a name holding a NUL
    /// byte, which no stored name does (see text()).
    template <typename... Extra>
    bool updateUserRow(std::string_view action, const char* sql, std::string_view username,
                       Seconds now, const Extra&... extra);

    /// Applies and commits one batch of the group commit (GroupCommit::ApplyBatch).
    void applyBatch(std::span<QueuedChange* const> batch);
    /// The id of `username`'s stored recovery code that `code` matches, read outside the writer.
    std::optional<std::int64_t> matchRecoveryCode(std::string_view username,
                                                  std::string_view code);

    PostgresOptions options_;
    std::string description_;
    std::vector<std::string> secrets_;  ///< password forms scrubbed from every message
    std::unique_ptr<PostgresConnectionPool> pool_;
    std::unique_ptr<GroupCommit> writes_;
};

/// `url` with any password replaced by "***" (in the user info and in a password= parameter),
/// for messages and logs.
std::string redactPostgresUrl(std::string_view url);

}  // namespace twostep::core
