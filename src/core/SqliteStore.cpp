#include "core/SqliteStore.hpp"

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
#include <SQLiteCpp/Transaction.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <limits>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>

#include "core/ConnectionPool.hpp"
#include "core/Error.hpp"
#include "core/Migrations.hpp"
#include "core/StoreRows.hpp"

namespace twostep::core {

/// A connection that keeps the statements of the request path compiled: preparing the user query
/// cost more than running it (docs/benchmarks.md). Its statements are finalized before the
/// connection closes (members die before the base). Used by one thread at a time (a pool lease).
class SqliteConnection final : public SQLite::Database {
public:
    using SQLite::Database::Database;

    /// The compiled statement for `sql`, which must outlive the connection (a literal or a
    /// static string). Use it through ReusedStatement, which resets it after each use.
    SQLite::Statement& statement(std::string_view sql) {
        std::unique_ptr<SQLite::Statement>& slot = statements_[sql];
        if (!slot) {
            slot = std::make_unique<SQLite::Statement>(*this, std::string(sql));
        }
        return *slot;
    }

private:
    std::unordered_map<std::string_view, std::unique_ptr<SQLite::Statement>> statements_;
};

namespace {

/// One use of a connection's cached statement, reset when the use ends: a statement left on a
/// row would keep its read transaction (and an old snapshot) open until its next use.
class ReusedStatement {
public:
    ReusedStatement(SQLite::Database& db, std::string_view sql)
        : statement_(static_cast<SqliteConnection&>(db).statement(sql)) {}
    ~ReusedStatement() { statement_.tryReset(); }
    ReusedStatement(const ReusedStatement&) = delete;
    ReusedStatement& operator=(const ReusedStatement&) = delete;

    SQLite::Statement& operator*() { return statement_; }
    SQLite::Statement* operator->() { return &statement_; }

private:
    SQLite::Statement& statement_;
};

/// Runs the connection's next commit with PRAGMA synchronous = NORMAL and puts FULL back after
/// it (the next FULL commit syncs the WAL, this commit's frames included).
class LightCommit {
public:
    explicit LightCommit(SQLite::Database& db) : db_(db) {
        ReusedStatement(db_, "PRAGMA synchronous = NORMAL")->executeStep();
    }
    ~LightCommit() {
        try {
            ReusedStatement(db_, "PRAGMA synchronous = FULL")->executeStep();
        } catch (...) {  // NOLINT(bugprone-empty-catch)
            // Only a broken connection fails here; it is closed before it is used again.
        }
    }
    LightCommit(const LightCommit&) = delete;
    LightCommit& operator=(const LightCommit&) = delete;

private:
    SQLite::Database& db_;
};

/// A store's turn to write, given back when it goes out of scope.
class WriterTurn {
public:
    WriterTurn(std::mutex& mutex, std::condition_variable& free, bool& busy)
        : mutex_(mutex), free_(free), busy_(busy) {}
    WriterTurn(const WriterTurn&) = delete;
    WriterTurn& operator=(const WriterTurn&) = delete;
    ~WriterTurn() {
        if (!held_) {
            return;
        }
        {
            const std::lock_guard lock(mutex_);
            busy_ = false;
        }
        free_.notify_one();
    }

    /// Waits up to `timeout` for the previous writer to finish; false when it did not.
    bool take(std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        if (!free_.wait_for(lock, timeout, [this] { return !busy_; })) {
            return false;
        }
        busy_ = true;
        held_ = true;
        return true;
    }

private:
    std::mutex& mutex_;
    std::condition_variable& free_;
    bool& busy_;
    bool held_ = false;
};

constexpr std::string_view MemoryPath = ":memory:";

bool isBusy(const SQLite::Exception& e) {
    return (e.getErrorCode() & 0xff) == SQLITE_BUSY;
}

/// Runs `step` again while it fails with SQLITE_BUSY, for up to `timeout`. The busy handler
/// does not cover every case: two connections switching a new file to WAL each hold a shared
/// lock and want an exclusive one, and SQLite answers one of them SQLITE_BUSY at once rather
/// than deadlock. Two processes opening a new database together (two replicas, or the webhook
/// and the enroll tool) meet exactly that.
template <typename Step>
auto retryWhileBusy(std::chrono::milliseconds timeout, Step&& step) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        try {
            return step();
        } catch (const SQLite::Exception& e) {
            if (!isBusy(e) || std::chrono::steady_clock::now() >= deadline) {
                throw;
            }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
}
constexpr const char* KeyFingerprintKey = "key_fingerprint";

/// Opens one connection. Only the store's first connection may create the file: a database that
/// disappears while the webhook runs must fail every request (fail closed), not be replaced by an
/// empty one that knows no user and no used code.
std::unique_ptr<SqliteConnection> openConnection(const std::string& path,
                                                 const SqliteOptions& options, bool create) {
    auto db = std::make_unique<SqliteConnection>(
        path, SQLite::OPEN_READWRITE | (create ? SQLite::OPEN_CREATE : 0), options.busyTimeoutMs);
    // Per-connection settings: SQLite does not store these in the file.
    db->exec("PRAGMA foreign_keys = ON");
    db->exec(options.synchronous == SqliteOptions::Synchronous::Normal
                 ? "PRAGMA synchronous = NORMAL"
                 : "PRAGMA synchronous = FULL");
    if (path == MemoryPath) {
        return db;
    }
    // WAL lets readers (the webhook) proceed while a writer (the enroll tool) commits. This is
    // also the first statement that reads the file, so a file that is not a database fails here.
    const std::string mode =
        retryWhileBusy(std::chrono::milliseconds(std::max(0, options.busyTimeoutMs)), [&] {
            return db->execAndGet("PRAGMA journal_mode = WAL").getString();
        });
    if (mode != "wal") {
        throw StoreError("cannot switch database '" + path + "' to WAL mode (journal mode is '" +
                         mode + "')");
    }
    return db;
}

/// Whether the file `db` has open is no longer the one at its path (deleted, renamed or replaced):
/// SQLite would go on reading and writing the orphaned file, so accepted codes would be lost.
bool fileHasMoved(SQLite::Database& db) {
    int moved = 0;
    // ":memory:" has no file: SQLITE_NOTFOUND, never moved.
    return sqlite3_file_control(db.getHandle(), "main", SQLITE_FCNTL_HAS_MOVED, &moved) ==
               SQLITE_OK &&
           moved != 0;
}

int readSchemaVersion(SQLite::Database& db) {
    if (!db.tableExists("schema_version")) {
        return 0;
    }
    return db.execAndGet("SELECT COALESCE(MAX(version), 0) FROM schema_version").getInt();
}

/// Applies the embedded migrations the database lacks, each in its own BEGIN IMMEDIATE
/// transaction together with its schema_version row.
void migrate(SQLite::Database& db, const std::string& path) {
    const std::span<const Migration> migrations = embeddedMigrations(SqlDialect::Sqlite);
    const int newest = newestVersion(migrations);
    int current = readSchemaVersion(db);
    refuseNewerSchema(current, newest);
    for (const Migration& migration : migrations) {
        if (migration.version <= current) {
            continue;
        }
        try {
            SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
            // Another process may have migrated while this one waited for the write lock.
            current = readSchemaVersion(db);
            refuseNewerSchema(current, newest);
            if (migration.version <= current) {
                continue;  // the transaction rolls back; it wrote nothing
            }
            db.exec(std::string(migration.sql));
            SQLite::Statement record(db,
                                     "INSERT INTO schema_version (version, name, applied_at) "
                                     "VALUES (?, ?, CAST(strftime('%s', 'now') AS INTEGER))");
            record.bind(1, migration.version);
            record.bind(2, std::string(migration.name));
            record.exec();
            transaction.commit();
            current = migration.version;
        } catch (const SQLite::Exception& e) {
            if (isBusy(e)) {
                throw;  // the caller tries again
            }
            throw StoreError("cannot apply migration " + std::string(migration.file) +
                             " to database '" + path + "': " + e.what());
        }
    }
}

void bindText(SQLite::Statement& statement, int index, std::string_view text) {
    statement.bind(index, std::string(text));
}

void bindBlob(SQLite::Statement& statement, int index, std::string_view bytes) {
    if (bytes.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
        throw StoreError("a sealed secret of " + std::to_string(bytes.size()) +
                         " bytes is too large to store");
    }
    // A null pointer would bind NULL instead of an empty blob.
    statement.bind(index, bytes.empty() ? "" : bytes.data(), static_cast<int>(bytes.size()));
}

/// Binds the value, or NULL when there is none.
void bindOptional(SQLite::Statement& statement, int index, std::optional<std::int64_t> value) {
    if (value) {
        statement.bind(index, *value);
    } else {
        statement.bind(index);
    }
}

std::optional<std::int64_t> optionalInt64(const SQLite::Column& column) {
    if (column.isNull()) {
        return std::nullopt;
    }
    return column.getInt64();
}

constexpr const char* SelectUsers =
    "SELECT username, sealed_secret, issuer, algorithm, digits, period, state, last_step, "
    "failures, lockouts, locked_until, grant_until, created_at, updated_at, "
    "(SELECT COUNT(*) FROM recovery_codes AS r WHERE r.username = users.username), drift_steps "
    "FROM users";

User readUser(const SQLite::Statement& row) {
    User user;
    user.username = row.getColumn(0).getString();
    user.sealedSecret = row.getColumn(1).getString();
    user.issuer = row.getColumn(2).getString();
    user.params.algorithm = rows::storedAlgorithm(user.username, row.getColumn(3).getString());
    user.params.digits = row.getColumn(4).getInt();
    user.params.period = row.getColumn(5).getInt();
    user.state = rows::storedState(user.username, row.getColumn(6).getString());
    user.lastStep = optionalInt64(row.getColumn(7));
    user.failures = row.getColumn(8).getInt();
    user.lockouts = row.getColumn(9).getInt();
    user.lockedUntil = optionalInt64(row.getColumn(10));
    user.grantUntil = optionalInt64(row.getColumn(11));
    user.createdAt = row.getColumn(12).getInt64();
    user.updatedAt = row.getColumn(13).getInt64();
    user.recoveryCodesLeft = row.getColumn(14).getInt();
    user.driftSteps = row.getColumn(15).getInt();
    return user;
}

constexpr const char* SelectInvitations =
    "SELECT username, invited_by, created_at, expires_at FROM invitations";

Invitation readInvitation(const SQLite::Statement& row) {
    return Invitation{row.getColumn(0).getString(), row.getColumn(1).getString(),
                      row.getColumn(2).getInt64(), row.getColumn(3).getInt64()};
}

PendingEnrollment readPendingEnrollment(const SQLite::Statement& row) {
    PendingEnrollment pending;
    pending.username = row.getColumn(0).getString();
    pending.sealedSecret = row.getColumn(1).getString();
    pending.issuer = row.getColumn(2).getString();
    pending.params.algorithm =
        rows::storedAlgorithm(pending.username, row.getColumn(3).getString());
    pending.params.digits = row.getColumn(4).getInt();
    pending.params.period = row.getColumn(5).getInt();
    pending.invited = row.getColumn(6).getInt() != 0;
    pending.failures = row.getColumn(7).getInt();
    pending.lockouts = row.getColumn(8).getInt();
    pending.lockedUntil = optionalInt64(row.getColumn(9));
    pending.createdAt = row.getColumn(10).getInt64();
    pending.expiresAt = row.getColumn(11).getInt64();
    return pending;
}

/// Binds ?1..?6 to the pending secret's username, sealed secret, issuer, algorithm, digits and
/// period: the columns pending_enrollments and users share.
void bindSecretColumns(SQLite::Statement& statement, const PendingEnrollment& pending) {
    bindText(statement, 1, pending.username);
    bindBlob(statement, 2, pending.sealedSecret);
    bindText(statement, 3, pending.issuer);
    bindText(statement, 4, toString(pending.params.algorithm));
    statement.bind(5, pending.params.digits);
    statement.bind(6, pending.params.period);
}

/// Drops invitations and pending enrolments that have ended: they grant nothing any more.
void purgeExpiredEnrollments(SQLite::Database& db, Seconds now) {
    ReusedStatement invitations(db, "DELETE FROM invitations WHERE expires_at <= ?");
    invitations->bind(1, now);
    invitations->exec();
    ReusedStatement pending(db, "DELETE FROM pending_enrollments WHERE expires_at <= ?");
    pending->bind(1, now);
    pending->exec();
}

/// Inserts a fresh user unless the username exists; true when inserted.
bool insertUser(SQLite::Database& db, const NewUser& user, Seconds now) {
    SQLite::Statement insert(
        db,
        "INSERT INTO users (username, sealed_secret, issuer, algorithm, digits, period, state, "
        "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (username) DO NOTHING");
    bindText(insert, 1, user.username);
    bindBlob(insert, 2, user.sealedSecret);
    bindText(insert, 3, user.issuer);
    bindText(insert, 4, toString(user.params.algorithm));
    insert.bind(5, user.params.digits);
    insert.bind(6, user.params.period);
    bindText(insert, 7, toString(user.state));
    insert.bind(8, now);
    insert.bind(9, now);
    return insert.exec() == 1;
}

/// Runs a one-statement update bound as (username, now, extra...); true when a row matched.
template <typename... Extra>
bool updateUser(SQLite::Database& db, const char* sql, std::string_view username, Seconds now,
                const Extra&... extra) {
    ReusedStatement update(db, sql);
    bindText(*update, 1, username);
    update->bind(2, now);
    int index = 3;
    (update->bind(index++, extra), ...);
    return update->exec() == 1;
}

/// SelectUsers for one username.
const std::string& selectUserByName() {
    static const std::string sql = std::string(SelectUsers) + " WHERE username = ?";
    return sql;
}

}  // namespace

template <typename Fn>
auto SqliteStore::withConnection(Access access, std::string_view action, std::string_view subject,
                                 Fn&& fn) {
    const auto failure = [&](std::string_view reason) {
        std::string message = "cannot ";
        message += action;
        if (!subject.empty()) {
            message += " '";
            message += subject;
            message += "'";
        }
        message += " in database '" + path_ + "': ";
        message += reason;
        return StoreError(message);
    };
    // The writer lock comes before the lease: with one connection (":memory:") the other order
    // would let a writer hold the only connection while it waits for the writer lock.
    WriterTurn turn(writerMutex_, writerFree_, writerBusy_);
    if (access != Access::Read && !turn.take(busyTimeout_)) {
        throw failure("database is locked (waited " + std::to_string(busyTimeout_.count()) +
                      " ms for another writer)");
    }
    try {
        Pool::Lease lease = pool_->acquire();
        if (fileHasMoved(lease.connection())) {
            // Closed instead of reused; the next caller opens the path again (and fails until
            // the file is back).
            lease.markBroken();
            throw failure("the database file was deleted or replaced while the webhook had it "
                          "open; restore it, or restart the webhook");
        }
        return fn(lease.connection());
    } catch (const SQLite::Exception& e) {
        throw failure(e.what());
    } catch (const PoolTimeout& e) {
        throw failure(e.what());
    }
}

namespace {

/// The statements of applyChange (StoreRows.hpp) on the batch's connection, inside its
/// BEGIN IMMEDIATE transaction.
class SqliteRows {
public:
    explicit SqliteRows(SQLite::Database& db) : db_(db) {}

    bool claimStep(std::string_view username, std::int64_t step, UserState requiredState,
                   Seconds now, std::optional<Seconds> grantUntil, std::optional<int> driftSteps) {
        // The replay compare-and-set in one statement: SQLite runs it under the write lock, so
        // of concurrent claims (threads or processes) with the same step exactly one changes the
        // row. Opening extends a grant, never shortens it; the drift moves only with a claim.
        ReusedStatement update(db_,
                               "UPDATE users SET last_step = ?3, failures = 0, lockouts = 0, "
                               "locked_until = NULL, updated_at = ?2, grant_until = CASE WHEN ?5 "
                               "IS NULL THEN grant_until ELSE MAX(COALESCE(grant_until, ?5), ?5) "
                               "END, drift_steps = COALESCE(?6, drift_steps) "
                               "WHERE username = ?1 AND state = ?4 "
                               "AND (last_step IS NULL OR last_step < ?3) "
                               "AND (locked_until IS NULL OR locked_until <= ?2)");
        bindText(*update, 1, username);
        update->bind(2, now);
        update->bind(3, step);
        bindText(*update, 4, toString(requiredState));
        bindOptional(*update, 5, grantUntil);
        bindOptional(*update, 6, driftSteps);
        return update->exec() == 1;
    }

    bool confirmStep(std::string_view username, std::int64_t step, Seconds now) {
        return updateUser(db_,
                          "UPDATE users SET state = 'active', last_step = ?3, failures = 0, "
                          "lockouts = 0, locked_until = NULL, updated_at = ?2 "
                          "WHERE username = ?1 AND state = 'pending' "
                          "AND (last_step IS NULL OR last_step < ?3)",
                          username, now, step);
    }

    std::optional<rows::FailureState> failureState(std::string_view username) {
        ReusedStatement read(
            db_, "SELECT failures, lockouts, locked_until FROM users WHERE username = ?");
        bindText(*read, 1, username);
        if (!read->executeStep()) {
            return std::nullopt;
        }
        return rows::FailureState{read->getColumn(0).getInt(), read->getColumn(1).getInt(),
                                  optionalInt64(read->getColumn(2))};
    }

    void storeFailure(std::string_view username, Seconds now, const rows::FailureRow& row) {
        ReusedStatement update(db_,
                               "UPDATE users SET failures = ?3, lockouts = ?4, "
                               "locked_until = COALESCE(?5, locked_until), updated_at = ?2 "
                               "WHERE username = ?1");
        bindText(*update, 1, username);
        update->bind(2, now);
        update->bind(3, row.outcome.failures);
        update->bind(4, row.lockouts);
        bindOptional(*update, 5, row.outcome.lockedUntil);
        update->exec();
    }

    std::optional<User> user(std::string_view username) {
        ReusedStatement query(db_, selectUserByName());
        bindText(*query, 1, username);
        if (!query->executeStep()) {
            return std::nullopt;
        }
        return readUser(*query);
    }

    bool deleteRecoveryCode(std::string_view username, std::int64_t id) {
        ReusedStatement remove(db_, "DELETE FROM recovery_codes WHERE id = ? AND username = ?");
        remove->bind(1, id);
        bindText(*remove, 2, username);
        return remove->exec() == 1;
    }

    void clearFailures(std::string_view username, Seconds now) {
        updateUser(db_,
                   "UPDATE users SET failures = 0, lockouts = 0, locked_until = NULL, "
                   "updated_at = ?2 WHERE username = ?1",
                   username, now);
    }

    bool openGrant(std::string_view username, Seconds until, Seconds now) {
        // Opening extends, never shortens: two overlapping unlocks keep the later end.
        return updateUser(db_,
                          "UPDATE users SET grant_until = MAX(COALESCE(grant_until, ?3), ?3), "
                          "updated_at = ?2 WHERE username = ?1",
                          username, now, until);
    }

    void insertAudit(const AuditEvent& event) {
        ReusedStatement insert(
            db_,
            "INSERT INTO audit_events (time, username, operation, resource, subresource, "
            "namespace, name, decision, reason, uid) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)");
        insert->bind(1, event.time);
        bindText(*insert, 2, event.username);
        bindText(*insert, 3, event.operation);
        bindText(*insert, 4, event.resource);
        bindText(*insert, 5, event.subResource);
        bindText(*insert, 6, event.nameSpace);
        bindText(*insert, 7, event.name);
        bindText(*insert, 8, event.decision);
        bindText(*insert, 9, event.reason);
        bindText(*insert, 10, event.uid);
        insert->exec();
    }

private:
    SQLite::Database& db_;
};

}  // namespace

void SqliteStore::applyBatch(std::span<QueuedChange* const> batch) {
    // A batch that may change state (a claim, a grant) waits for the disk; one of only failure
    // counts and audit rows may wait for the next sync. SQLite fixes this before the transaction
    // starts, so a batch of refused claims still syncs.
    const bool light =
        synchronous_ == SqliteOptions::Synchronous::DurableState &&
        std::all_of(batch.begin(), batch.end(), [](const QueuedChange* member) {
            return member->change.kind == Change::Kind::AuditOnly ||
                   member->change.kind == Change::Kind::RecordFailure;
        });
    const rows::BatchAction what = rows::describeBatch(batch);
    withConnection(Access::Write, what.action, what.subject, [&](SQLite::Database& db) {
        std::optional<LightCommit> lightCommit;
        if (light) {
            lightCommit.emplace(db);
        }
        // One transaction for the whole batch: a failure anywhere rolls all of it back, and
        // every member is refused.
        SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
        SqliteRows rows(db);
        for (QueuedChange* member : batch) {
            member->outcome = rows::applyChange(rows, *member);
        }
        transaction.commit();
    });
}

std::optional<std::int64_t> SqliteStore::matchRecoveryCode(std::string_view username,
                                                           std::string_view code) {
    return withConnection(
        Access::Read, "read the recovery codes of user", username,
        [&](SQLite::Database& db) -> std::optional<std::int64_t> {
            ReusedStatement read(
                db, "SELECT id, hash FROM recovery_codes WHERE username = ? ORDER BY id");
            bindText(*read, 1, username);
            rows::RecoveryCodeMatch match(code);
            while (read->executeStep()) {
                match.check(read->getColumn(0).getInt64(), read->getColumn(1).getString());
            }
            return match.id();
        });
}

ChangeOutcome SqliteStore::commit(const Change& change, const Settle& settle) {
    std::optional<std::int64_t> recoveryCodeId;
    if (change.kind == Change::Kind::ConsumeRecoveryCode) {
        recoveryCodeId = matchRecoveryCode(change.username, change.recoveryCode);
    }
    return writes_->submit(change, settle, recoveryCodeId);
}

void SqliteStore::setCommitObserver(CommitObserver* observer) {
    writes_->setObserver(observer);
}

SqliteStore::SqliteStore(std::string path, SqliteOptions options)
    : path_(std::move(path)),
      synchronous_(options.synchronous),
      busyTimeout_(std::max(0, options.busyTimeoutMs)),
      writes_(std::make_unique<GroupCommit>(
          [this](std::span<QueuedChange* const> batch) { applyBatch(batch); }, options.batch)) {
    const bool memory = path_ == MemoryPath;
    // ":memory:" names a new database per connection, so an in-memory store has exactly one, and
    // keeps it even when a rollback fails: closing it would drop the database.
    const int maxConnections = memory ? 1 : options.maxConnections;
    // Set once the first connection has created (and migrated) the file.
    auto created = std::make_shared<std::atomic<bool>>(false);
    pool_ = std::make_unique<Pool>(
        [path = path_, options, created, memory] {
            return openConnection(path, options, memory || !created->load());
        },
        [memory](SQLite::Database& db) noexcept {
            // A transaction left open (its rollback failed) would hold the
            // write lock and leak its state into the next caller: roll back
            // once more, or close the connection.
            if (sqlite3_get_autocommit(db.getHandle()) != 0) {
                return true;
            }
            db.tryExec("ROLLBACK");
            return sqlite3_get_autocommit(db.getHandle()) != 0 || memory;
        },
        maxConnections, busyTimeout_);
    try {
        retryWhileBusy(busyTimeout_, [&] {
            Pool::Lease lease = pool_->acquire();
            migrate(lease.connection(), path_);
        });
        created->store(true);
    } catch (const SQLite::Exception& e) {
        throw StoreError("cannot open database '" + path_ + "': " + e.what());
    }
}


// Closing a connection never throws: SQLiteCpp's Database destructor only asserts.
SqliteStore::~SqliteStore() = default;

std::optional<User> SqliteStore::findUser(std::string_view username) {
    return withConnection(
        Access::Read, "read user", username, [&](SQLite::Database& db) -> std::optional<User> {
            ReusedStatement query(db, selectUserByName());
            bindText(*query, 1, username);
            if (!query->executeStep()) {
                return std::nullopt;
            }
            return readUser(*query);
        });
}

std::vector<User> SqliteStore::listUsers() {
    return withConnection(Access::Read, "list users", {}, [&](SQLite::Database& db) {
        SQLite::Statement query(db, std::string(SelectUsers) + " ORDER BY username");
        std::vector<User> users;
        while (query.executeStep()) {
            users.push_back(readUser(query));
        }
        return users;
    });
}

bool SqliteStore::addUser(const NewUser& user, Seconds now, bool replace) {
    return withConnection(Access::Write, "add user", user.username, [&](SQLite::Database& db) {
        SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
        if (replace) {
            // A replaced user starts over: the cascade also drops its recovery codes.
            SQLite::Statement remove(db, "DELETE FROM users WHERE username = ?");
            bindText(remove, 1, user.username);
            remove.exec();
        }
        if (!insertUser(db, user, now)) {
            return false;
        }
        transaction.commit();
        return true;
    });
}

void SqliteStore::importUsers(const std::vector<NewUser>& users, Seconds now) {
    withConnection(Access::Write, "import users", {}, [&](SQLite::Database& db) {
        SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
        for (const NewUser& user : users) {
            if (!insertUser(db, user, now)) {
                // The transaction rolls back: an import is all or nothing.
                throw rows::importClash(user.username);
            }
        }
        transaction.commit();
    });
}

bool SqliteStore::removeUser(std::string_view username) {
    return withConnection(Access::Write, "remove user", username, [&](SQLite::Database& db) {
        // Recovery codes go with the user (ON DELETE CASCADE); the audit log stays.
        SQLite::Statement remove(db, "DELETE FROM users WHERE username = ?");
        bindText(remove, 1, username);
        return remove.exec() == 1;
    });
}

bool SqliteStore::setState(std::string_view username, UserState state, Seconds now) {
    return withConnection(
        Access::Write, "set the state of user", username, [&](SQLite::Database& db) {
            return updateUser(
                db,
                "UPDATE users SET state = ?3, updated_at = ?2, "
                "grant_until = CASE WHEN ?3 = 'disabled' THEN NULL ELSE grant_until END "
                "WHERE username = ?1",
                username, now, std::string(toString(state)));
        });
}

bool SqliteStore::resetSecret(std::string_view username, std::string_view sealedSecret,
                              Seconds now) {
    return withConnection(
        Access::Write, "reset the secret of user", username, [&](SQLite::Database& db) {
            SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
            SQLite::Statement update(
                db,
                "UPDATE users SET sealed_secret = ?3, state = 'pending', last_step = NULL, "
                "failures = 0, lockouts = 0, locked_until = NULL, grant_until = NULL, "
                "drift_steps = 0, updated_at = ?2 WHERE username = ?1");
            bindText(update, 1, username);
            update.bind(2, now);
            bindBlob(update, 3, sealedSecret);
            if (update.exec() != 1) {
                return false;
            }
            // Codes made for the old secret's owner must not survive a reset.
            SQLite::Statement removeCodes(db, "DELETE FROM recovery_codes WHERE username = ?");
            bindText(removeCodes, 1, username);
            removeCodes.exec();
            transaction.commit();
            return true;
        });
}

bool SqliteStore::unlock(std::string_view username, Seconds now) {
    return withConnection(Access::Write, "unlock user", username, [&](SQLite::Database& db) {
        return updateUser(db,
                          "UPDATE users SET failures = 0, lockouts = 0, locked_until = NULL, "
                          "updated_at = ?2 WHERE username = ?1",
                          username, now);
    });
}

bool SqliteStore::revokeGrant(std::string_view username, Seconds now) {
    return withConnection(
        Access::Write, "revoke the grant of user", username, [&](SQLite::Database& db) {
            return updateUser(db,
                              "UPDATE users SET grant_until = NULL, updated_at = ?2 "
                              "WHERE username = ?1",
                              username, now);
        });
}

bool SqliteStore::replaceRecoveryCodes(std::string_view username,
                                       const std::vector<std::string>& hashes, Seconds now) {
    return withConnection(
        Access::Write, "replace the recovery codes of user", username, [&](SQLite::Database& db) {
            SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
            if (!updateUser(db, "UPDATE users SET updated_at = ?2 WHERE username = ?1", username,
                            now)) {
                return false;
            }
            SQLite::Statement removeCodes(db, "DELETE FROM recovery_codes WHERE username = ?");
            bindText(removeCodes, 1, username);
            removeCodes.exec();
            SQLite::Statement insert(
                db, "INSERT INTO recovery_codes (username, hash, created_at) VALUES (?, ?, ?)");
            for (const std::string& hash : hashes) {
                bindText(insert, 1, username);
                bindText(insert, 2, hash);
                insert.bind(3, now);
                insert.exec();
                insert.reset();
            }
            transaction.commit();
            return true;
        });
}

void SqliteStore::putInvitation(const Invitation& invitation, Seconds now) {
    withConnection(Access::Write, "invite user", invitation.username, [&](SQLite::Database& db) {
        SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
        purgeExpiredEnrollments(db, now);
        SQLite::Statement upsert(
            db,
            "INSERT INTO invitations (username, invited_by, created_at, expires_at) "
            "VALUES (?, ?, ?, ?) ON CONFLICT (username) DO UPDATE SET "
            "invited_by = excluded.invited_by, created_at = excluded.created_at, "
            "expires_at = excluded.expires_at");
        bindText(upsert, 1, invitation.username);
        bindText(upsert, 2, invitation.invitedBy);
        upsert.bind(3, invitation.createdAt);
        upsert.bind(4, invitation.expiresAt);
        upsert.exec();
        // A new invitation starts the enrolment over: a secret begun under the old one goes.
        SQLite::Statement discard(db,
                                  "DELETE FROM pending_enrollments WHERE username = ? AND invited");
        bindText(discard, 1, invitation.username);
        discard.exec();
        transaction.commit();
    });
}

std::optional<Invitation> SqliteStore::findInvitation(std::string_view username) {
    return withConnection(Access::Read, "read the invitation of user", username,
                          [&](SQLite::Database& db) -> std::optional<Invitation> {
                              SQLite::Statement query(
                                  db, std::string(SelectInvitations) + " WHERE username = ?");
                              bindText(query, 1, username);
                              if (!query.executeStep()) {
                                  return std::nullopt;
                              }
                              return readInvitation(query);
                          });
}

std::vector<Invitation> SqliteStore::listInvitations() {
    return withConnection(Access::Read, "list invitations", {}, [&](SQLite::Database& db) {
        SQLite::Statement query(db, std::string(SelectInvitations) + " ORDER BY username");
        std::vector<Invitation> invitations;
        while (query.executeStep()) {
            invitations.push_back(readInvitation(query));
        }
        return invitations;
    });
}

bool SqliteStore::removeInvitation(std::string_view username) {
    return withConnection(
        Access::Write, "remove the invitation of user", username, [&](SQLite::Database& db) {
            SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
            SQLite::Statement remove(db, "DELETE FROM invitations WHERE username = ?");
            bindText(remove, 1, username);
            const bool removed = remove.exec() == 1;
            SQLite::Statement discard(
                db, "DELETE FROM pending_enrollments WHERE username = ? AND invited");
            bindText(discard, 1, username);
            discard.exec();
            transaction.commit();
            return removed;
        });
}

bool SqliteStore::beginEnrollment(const PendingEnrollment& pending, Seconds now) {
    return withConnection(
        Access::Write, "begin the enrolment of user", pending.username, [&](SQLite::Database& db) {
            SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
            purgeExpiredEnrollments(db, now);
            // An invited enrolment ends with its invitation: its end is read here, under the
            // write lock, so an uninvite cannot slip between the check and the insert.
            std::optional<Seconds> expiresAt = pending.expiresAt;
            if (pending.invited) {
                SQLite::Statement invitation(
                    db, "SELECT expires_at FROM invitations WHERE username = ? AND expires_at > ?");
                bindText(invitation, 1, pending.username);
                invitation.bind(2, now);
                expiresAt = invitation.executeStep()
                                ? std::optional(invitation.getColumn(0).getInt64())
                                : std::nullopt;
            }
            if (!expiresAt) {
                return false;
            }
            // A second begin replaces the secret; the failure counters stay, so beginning again
            // does not wipe out a lockout.
            SQLite::Statement upsert(
                db,
                "INSERT INTO pending_enrollments (username, sealed_secret, issuer, algorithm, "
                "digits, period, invited, created_at, expires_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (username) DO UPDATE SET "
                "sealed_secret = excluded.sealed_secret, issuer = excluded.issuer, "
                "algorithm = excluded.algorithm, digits = excluded.digits, "
                "period = excluded.period, invited = excluded.invited, "
                "created_at = excluded.created_at, expires_at = excluded.expires_at");
            bindSecretColumns(upsert, pending);
            upsert.bind(7, pending.invited ? 1 : 0);
            upsert.bind(8, now);
            upsert.bind(9, *expiresAt);
            upsert.exec();
            transaction.commit();
            return true;
        });
}

std::optional<PendingEnrollment> SqliteStore::findPendingEnrollment(std::string_view username) {
    return withConnection(
        Access::Read, "read the pending enrolment of user", username,
        [&](SQLite::Database& db) -> std::optional<PendingEnrollment> {
            SQLite::Statement query(
                db,
                "SELECT username, sealed_secret, issuer, algorithm, digits, period, invited, "
                "failures, lockouts, locked_until, created_at, expires_at "
                "FROM pending_enrollments WHERE username = ?");
            bindText(query, 1, username);
            if (!query.executeStep()) {
                return std::nullopt;
            }
            return readPendingEnrollment(query);
        });
}

namespace {

/// A pending enrolment's failure counters, for rows::recordFailure: a wrong confirmation code
/// counts there as a wrong code counts on a user.
class SqlitePendingFailures {
public:
    explicit SqlitePendingFailures(SQLite::Database& db) : db_(db) {}

    std::optional<rows::FailureState> failureState(std::string_view username) {
        ReusedStatement read(db_,
                             "SELECT failures, lockouts, locked_until "
                             "FROM pending_enrollments WHERE username = ?");
        bindText(*read, 1, username);
        if (!read->executeStep()) {
            return std::nullopt;
        }
        return rows::FailureState{read->getColumn(0).getInt(), read->getColumn(1).getInt(),
                                  optionalInt64(read->getColumn(2))};
    }

    void storeFailure(std::string_view username, Seconds /*now*/, const rows::FailureRow& row) {
        ReusedStatement update(db_,
                               "UPDATE pending_enrollments SET failures = ?2, lockouts = ?3, "
                               "locked_until = COALESCE(?4, locked_until) WHERE username = ?1");
        bindText(*update, 1, username);
        update->bind(2, row.outcome.failures);
        update->bind(3, row.lockouts);
        bindOptional(*update, 4, row.outcome.lockedUntil);
        update->exec();
    }

private:
    SQLite::Database& db_;
};

}  // namespace

FailureOutcome SqliteStore::recordEnrollmentFailure(std::string_view username,
                                                    const LockoutPolicy& policy, Seconds now) {
    return withConnection(Access::Write, "record an enrolment failure for user", username,
                          [&](SQLite::Database& db) {
                              SQLite::Transaction transaction(
                                  db, SQLite::TransactionBehavior::IMMEDIATE);
                              SqlitePendingFailures pending(db);
                              const FailureOutcome outcome =
                                  rows::recordFailure(pending, username, policy, now);
                              transaction.commit();
                              return outcome;
                          });
}

bool SqliteStore::completeEnrollment(const PendingEnrollment& pending, std::int64_t step,
                                     int driftSteps, const std::vector<std::string>& recoveryHashes,
                                     const AuditEvent& audit, Seconds now) {
    return withConnection(
        Access::Write, "complete the enrolment of user", pending.username,
        [&](SQLite::Database& db) {
            SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
            // The secret the code was checked against must still be the pending one: a begin
            // in between replaced it, an uninvite or the end of the invitation removed it.
            SQLite::Statement claim(
                db,
                "DELETE FROM pending_enrollments WHERE username = ?1 AND sealed_secret = ?2 "
                "AND expires_at > ?3 AND (locked_until IS NULL OR locked_until <= ?3)");
            bindText(claim, 1, pending.username);
            bindBlob(claim, 2, pending.sealedSecret);
            claim.bind(3, now);
            if (claim.exec() != 1) {
                return false;
            }
            // A new user is inserted; an enrolled one gets the new secret and starts over, unless
            // disabled or locked out meanwhile (the transaction then rolls back).
            SQLite::Statement upsert(
                db,
                "INSERT INTO users (username, sealed_secret, issuer, algorithm, digits, period, "
                "state, last_step, drift_steps, created_at, updated_at) "
                "VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'active', ?7, ?8, ?9, ?9) "
                "ON CONFLICT (username) DO UPDATE SET sealed_secret = excluded.sealed_secret, "
                "issuer = excluded.issuer, algorithm = excluded.algorithm, "
                "digits = excluded.digits, period = excluded.period, state = 'active', "
                "last_step = excluded.last_step, drift_steps = excluded.drift_steps, "
                "failures = 0, lockouts = 0, locked_until = NULL, grant_until = NULL, "
                "updated_at = excluded.updated_at "
                "WHERE users.state <> 'disabled' "
                "AND (users.locked_until IS NULL OR users.locked_until <= ?9)");
            bindSecretColumns(upsert, pending);
            upsert.bind(7, step);
            upsert.bind(8, driftSteps);
            upsert.bind(9, now);
            if (upsert.exec() != 1) {
                return false;
            }
            SQLite::Statement removeCodes(db, "DELETE FROM recovery_codes WHERE username = ?");
            bindText(removeCodes, 1, pending.username);
            removeCodes.exec();
            SQLite::Statement insert(
                db, "INSERT INTO recovery_codes (username, hash, created_at) VALUES (?, ?, ?)");
            for (const std::string& hash : recoveryHashes) {
                bindText(insert, 1, pending.username);
                bindText(insert, 2, hash);
                insert.bind(3, now);
                insert.exec();
                insert.reset();
            }
            SQLite::Statement endInvitation(db, "DELETE FROM invitations WHERE username = ?");
            bindText(endInvitation, 1, pending.username);
            endInvitation.exec();
            SqliteRows(db).insertAudit(audit);
            transaction.commit();
            return true;
        });
}

std::vector<AuditEvent> SqliteStore::listAudit(const AuditFilter& filter) {
    if (filter.limit <= 0) {
        return {};
    }
    // Only the conditions in use go into the query, so SQLite can use the (username, time) or
    // (time) index; "? IS NULL OR ..." would defeat both.
    std::string sql =
        "SELECT id, time, username, operation, resource, subresource, namespace, name, decision, "
        "reason, uid FROM audit_events";
    std::string_view joiner = " WHERE ";
    const auto condition = [&](const char* text) {
        sql += joiner;
        sql += text;
        joiner = " AND ";
    };
    if (filter.username) {
        condition("username = :username");
    }
    if (filter.since) {
        condition("time >= :since");
    }
    if (filter.until) {
        condition("time < :until");
    }
    sql += " ORDER BY time DESC, id DESC LIMIT :limit";
    return withConnection(Access::Read, "read the audit log", {}, [&](SQLite::Database& db) {
        SQLite::Statement query(db, sql);
        if (filter.username) {
            query.bind(":username", *filter.username);
        }
        if (filter.since) {
            query.bind(":since", *filter.since);
        }
        if (filter.until) {
            query.bind(":until", *filter.until);
        }
        query.bind(":limit", filter.limit);
        std::vector<AuditEvent> events;
        while (query.executeStep()) {
            AuditEvent event;
            event.id = query.getColumn(0).getInt64();
            event.time = query.getColumn(1).getInt64();
            event.username = query.getColumn(2).getString();
            event.operation = query.getColumn(3).getString();
            event.resource = query.getColumn(4).getString();
            event.subResource = query.getColumn(5).getString();
            event.nameSpace = query.getColumn(6).getString();
            event.name = query.getColumn(7).getString();
            event.decision = query.getColumn(8).getString();
            event.reason = query.getColumn(9).getString();
            event.uid = query.getColumn(10).getString();
            events.push_back(std::move(event));
        }
        return events;
    });
}

void SqliteStore::resealAll(
    const std::function<std::string(const std::string&, const std::string&)>& reseal,
    std::string_view newKeyFingerprint) {
    withConnection(Access::Write, "reseal the secrets", {}, [&](SQLite::Database& db) {
        // One transaction: when `reseal` throws (a secret that does not open), the transaction
        // rolls back and every row keeps the secret sealed under the old key.
        SQLite::Transaction transaction(db, SQLite::TransactionBehavior::IMMEDIATE);
        const auto resealTable = [&](const std::string& table) {
            std::vector<std::pair<std::string, std::string>> sealed;
            {
                SQLite::Statement read(
                    db, "SELECT username, sealed_secret FROM " + table + " ORDER BY username");
                while (read.executeStep()) {
                    sealed.emplace_back(read.getColumn(0).getString(),
                                        read.getColumn(1).getString());
                }
            }
            SQLite::Statement update(
                db, "UPDATE " + table + " SET sealed_secret = ? WHERE username = ?");
            for (const auto& [username, secret] : sealed) {
                bindBlob(update, 1, reseal(username, secret));
                bindText(update, 2, username);
                update.exec();
                update.reset();
            }
        };
        // Secrets waiting for their first code too: the new key must open them once confirmed.
        resealTable("pending_enrollments");
        resealTable("users");
        SQLite::Statement record(db,
                                 "INSERT INTO meta (key, value) VALUES (?, ?) "
                                 "ON CONFLICT (key) DO UPDATE SET value = excluded.value");
        record.bind(1, KeyFingerprintKey);
        bindText(record, 2, newKeyFingerprint);
        record.exec();
        transaction.commit();
    });
}

std::optional<std::string> SqliteStore::keyFingerprint() {
    return withConnection(Access::Read, "read the key fingerprint", {},
                          [&](SQLite::Database& db) -> std::optional<std::string> {
                              SQLite::Statement query(db, "SELECT value FROM meta WHERE key = ?");
                              query.bind(1, KeyFingerprintKey);
                              if (!query.executeStep()) {
                                  return std::nullopt;
                              }
                              return query.getColumn(0).getString();
                          });
}

void SqliteStore::setKeyFingerprintIfUnset(std::string_view fingerprint) {
    withConnection(Access::Write, "record the key fingerprint", {}, [&](SQLite::Database& db) {
        SQLite::Statement insert(
            db, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING");
        insert.bind(1, KeyFingerprintKey);
        bindText(insert, 2, fingerprint);
        insert.exec();
    });
}

int SqliteStore::countUsers(UserState state) {
    return withConnection(Access::Read, "count users", {}, [&](SQLite::Database& db) {
        SQLite::Statement query(db, "SELECT COUNT(*) FROM users WHERE state = ?");
        bindText(query, 1, toString(state));
        query.executeStep();
        return query.getColumn(0).getInt();
    });
}

int SqliteStore::countLocked(Seconds now) {
    return withConnection(Access::Read, "count locked users", {}, [&](SQLite::Database& db) {
        SQLite::Statement query(db, "SELECT COUNT(*) FROM users WHERE locked_until > ?");
        query.bind(1, now);
        query.executeStep();
        return query.getColumn(0).getInt();
    });
}

void SqliteStore::ping() {
    // Reads the file (unlike "SELECT 1"), so a database that went away is noticed.
    schemaVersion();
}

int SqliteStore::schemaVersion() {
    return withConnection(Access::Read, "read the schema version", {},
                          [&](SQLite::Database& db) { return readSchemaVersion(db); });
}

}  // namespace twostep::core
