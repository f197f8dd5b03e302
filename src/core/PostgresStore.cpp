#include "core/PostgresStore.hpp"

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdlib>
#include <pqxx/pqxx>
#include <stdexcept>
#include <utility>

#include "core/ConnectionPool.hpp"
#include "core/Error.hpp"
#include "core/Hex.hpp"
#include "core/Migrations.hpp"
#include "core/StoreRows.hpp"

namespace twostep::core {

namespace {

/// True when an idle connection can no longer be used: closed, or its socket readable while no
/// query is running, which means the server closed it (restart, admin shutdown, idle timeout) or
/// sent something unsolicited. Either way a fresh connection is the safe choice.
bool looksDead(const pqxx::connection& connection) noexcept {
    if (!connection.is_open()) {
        return true;
    }
    pollfd socket{connection.sock(), POLLIN, 0};
    if (socket.fd < 0) {
        return true;
    }
    return ::poll(&socket, 1, 0) != 0;
}

}  // namespace

/// The pool of libpqxx connections (one thread at a time each). A connection that broke is closed
/// rather than returned, and an idle one the server closed is noticed before it is handed out, so
/// after a database restart the pool refills itself with fresh connections.
class PostgresConnectionPool : public ConnectionPool<pqxx::connection> {
public:
    PostgresConnectionPool(std::string conninfo, const PostgresOptions& options)
        : ConnectionPool(
              [conninfo = std::move(conninfo),
               timeout = std::to_string(std::max(0, options.statementTimeoutMs))] {
                  auto connection = std::make_unique<pqxx::connection>(conninfo);
                  // Every statement of the session is bounded: a stuck lock or a slow server
                  // becomes a StoreError (so a denial) instead of a hung admission request.
                  connection->set_variable("statement_timeout", timeout);
                  return connection;
              },
              [](pqxx::connection& connection) { return !looksDead(connection); }, options.poolSize,
              std::chrono::milliseconds(std::max(0, options.acquireTimeoutMs))) {}
};

namespace {

constexpr const char* KeyFingerprintKey = "key_fingerprint";
/// The advisory lock that serialises migrations across replicas ("twostep\x01" as a number).
constexpr std::int64_t MigrationLockKey = 0x74776f7374657001;

// --- Connection URLs ---

/// What PostgresStore needs from a URL: libpq's connection string without our own parameters, a
/// description for messages, and the password forms to keep out of every message.
struct ConnectTarget {
    std::string conninfo;
    std::string description;
    std::vector<std::string> secrets;
};

/// Percent-decoding, leaving malformed escapes as they are (only used to find secrets to redact).
std::string percentDecode(std::string_view text) {
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        const int high = i + 2 < text.size() ? hex::digitValue(text[i + 1]) : -1;
        const int low = i + 2 < text.size() ? hex::digitValue(text[i + 2]) : -1;
        if (text[i] == '%' && high >= 0 && low >= 0) {
            out += static_cast<char>(high * 16 + low);
            i += 2;
        } else {
            out += text[i];
        }
    }
    return out;
}

/// The position range of the password in a URL's user info, if it has one.
std::optional<std::pair<std::size_t, std::size_t>> userInfoPassword(std::string_view url) {
    const std::size_t scheme = url.find("://");
    if (scheme == std::string_view::npos) {
        return std::nullopt;
    }
    const std::size_t start = scheme + 3;
    const std::size_t authorityEnd = url.find_first_of("/?#", start);
    const std::string_view authority = url.substr(
        start, authorityEnd == std::string_view::npos ? authorityEnd : authorityEnd - start);
    const std::size_t at = authority.rfind('@');
    if (at == std::string_view::npos) {
        return std::nullopt;
    }
    const std::size_t colon = authority.substr(0, at).find(':');
    if (colon == std::string_view::npos) {
        return std::nullopt;
    }
    return std::pair{start + colon + 1, start + at};
}

/// Splits a URL query "a=1&b=2" (without the '?') into its parameters.
std::vector<std::pair<std::string, std::string>> splitQuery(std::string_view query) {
    std::vector<std::pair<std::string, std::string>> parameters;
    while (!query.empty()) {
        const std::size_t amp = query.find('&');
        const std::string_view item = query.substr(0, amp);
        const std::size_t eq = item.find('=');
        parameters.emplace_back(
            std::string(item.substr(0, eq)),
            eq == std::string_view::npos ? std::string() : std::string(item.substr(eq + 1)));
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    }
    return parameters;
}

/// Every form of the password a message might echo: as written in the URL and decoded.
std::vector<std::string> urlSecrets(std::string_view url) {
    std::vector<std::string> secrets;
    const auto add = [&](std::string_view raw) {
        if (!raw.empty()) {
            secrets.emplace_back(raw);
            secrets.push_back(percentDecode(raw));
        }
    };
    if (const auto range = userInfoPassword(url)) {
        add(url.substr(range->first, range->second - range->first));
    }
    if (const std::size_t mark = url.find('?'); mark != std::string_view::npos) {
        for (const auto& [key, value] : splitQuery(url.substr(mark + 1))) {
            if (key == "password") {
                add(value);
            }
        }
    }
    return secrets;
}

/// `text` with every occurrence of each secret replaced by "***".
std::string scrub(std::string text, const std::vector<std::string>& secrets) {
    for (const std::string& secret : secrets) {
        if (secret.empty()) {
            continue;
        }
        for (std::size_t at = text.find(secret); at != std::string::npos;
             at = text.find(secret, at + 3)) {
            text.replace(at, secret.size(), "***");
        }
    }
    return text;
}

/// The first line of a libpq or server message, without "ERROR:  " and trailing blanks: the
/// DETAIL lines that follow can quote a whole row (a sealed secret included), so they stay out.
std::string firstLine(std::string_view message) {
    message = message.substr(0, message.find('\n'));
    for (const std::string_view prefix : {"ERROR:  ", "FATAL:  "}) {
        if (message.starts_with(prefix)) {
            message.remove_prefix(prefix.size());
        }
    }
    while (!message.empty() && (message.back() == ' ' || message.back() == '\r')) {
        message.remove_suffix(1);
    }
    return std::string(message);
}

int parsePositive(std::string_view name, std::string_view value, int max) {
    int parsed = 0;
    const auto [end, error] = std::from_chars(value.data(), value.data() + value.size(), parsed);
    if (error != std::errc() || end != value.data() + value.size() || parsed < 1 || parsed > max) {
        throw StoreError("invalid " + std::string(name) + " '" + std::string(value) +
                         "' in the postgresql url; expected a whole number from 1 to " +
                         std::to_string(max));
    }
    return parsed;
}

/// Takes twostep's own parameters (pool_size, statement_timeout) out of a URL's query, since
/// libpq refuses parameters it does not know, and applies them to `options`.
std::string takeOwnParameters(const std::string& url, PostgresOptions& options) {
    const std::size_t mark = url.find('?');
    if (mark == std::string::npos || url.find("://") == std::string::npos) {
        return url;
    }
    const std::size_t fragment = url.find('#', mark);
    std::string kept;
    for (const auto& [key, value] : splitQuery(std::string_view(url).substr(
             mark + 1, fragment == std::string::npos ? std::string::npos : fragment - mark - 1))) {
        if (key == "pool_size") {
            options.poolSize = parsePositive(key, value, 1000);
        } else if (key == "statement_timeout") {
            options.statementTimeoutMs = parsePositive(key, value, 24 * 3600 * 1000);
        } else {
            kept += kept.empty() ? "" : "&";
            kept += key;
            kept += '=';
            kept += value;
        }
    }
    std::string stripped = url.substr(0, mark);
    if (!kept.empty()) {
        stripped += '?';
        stripped += kept;
    }
    return stripped;
}

/// A value quoted for libpq's keyword=value form.
std::string quoteConninfo(std::string_view value) {
    std::string quoted = "'";
    for (const char c : value) {
        if (c == '\'' || c == '\\') {
            quoted += '\\';
        }
        quoted += c;
    }
    quoted += '\'';
    return quoted;
}

ConnectTarget parseTarget(const std::string& url, PostgresOptions& options) {
    ConnectTarget target;
    target.secrets = urlSecrets(url);
    const std::string stripped = takeOwnParameters(url, options);

    char* rawError = nullptr;
    PQconninfoOption* parsed = PQconninfoParse(stripped.c_str(), &rawError);
    const std::unique_ptr<PQconninfoOption, decltype(&PQconninfoFree)> owner(parsed,
                                                                             &PQconninfoFree);
    if (parsed == nullptr) {
        const std::string reason = rawError != nullptr ? firstLine(rawError) : "out of memory";
        PQfreemem(rawError);
        throw StoreError("invalid postgresql url '" + redactPostgresUrl(url) +
                         "': " + scrub(reason, target.secrets));
    }

    std::string host;
    std::string port;
    std::string dbname;
    bool hasConnectTimeout = std::getenv("PGCONNECT_TIMEOUT") != nullptr;
    bool hasApplicationName = std::getenv("PGAPPNAME") != nullptr;
    for (const PQconninfoOption* option = parsed; option->keyword != nullptr; ++option) {
        if (option->val == nullptr) {
            continue;
        }
        const std::string_view keyword = option->keyword;
        const std::string_view value = option->val;
        if (keyword == "password") {
            target.secrets.emplace_back(value);
        } else if (keyword == "host") {
            host = value;
        } else if (keyword == "hostaddr" && host.empty()) {
            host = value;
        } else if (keyword == "port") {
            port = value;
        } else if (keyword == "dbname") {
            dbname = value;
        } else if (keyword == "connect_timeout") {
            hasConnectTimeout = true;
        } else if (keyword == "application_name") {
            hasApplicationName = true;
        }
        // Everything is passed on as given, sslmode and the other TLS settings included.
        target.conninfo += std::string(keyword) + "=" + quoteConninfo(value) + " ";
    }
    if (!hasConnectTimeout) {
        target.conninfo += "connect_timeout=" + std::to_string(options.connectTimeoutSeconds) + " ";
    }
    if (!hasApplicationName) {
        target.conninfo += "application_name=twostep ";
    }
    target.description = "postgresql://" + (host.empty() ? std::string("localhost") : host) +
                         (port.empty() ? "" : ":" + port) + "/" + dbname;
    return target;
}

// --- Schema ---

int readSchemaVersion(pqxx::transaction_base& tx) {
    // A catalog query, not to_regclass(): inside the migration transaction, after waiting for
    // the advisory lock, to_regclass() can answer from this session's stale catalog cache and
    // miss a table another replica has just created; a query sees every committed row.
    const pqxx::row exists = tx.exec1(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_tables "
        "WHERE schemaname = current_schema() AND tablename = 'schema_version')");
    if (!exists[0].as<bool>()) {
        return 0;
    }
    return tx.exec1("SELECT COALESCE(MAX(version), 0) FROM schema_version")[0].as<int>();
}

/// Applies the embedded migrations the database lacks, each in its own transaction together with
/// its schema_version row, under a transaction-level advisory lock: replicas that start together
/// take turns, and each re-reads the version once it holds the lock.
void migrate(pqxx::connection& connection, const std::string& description) {
    const std::span<const Migration> migrations = embeddedMigrations(SqlDialect::Postgresql);
    const int newest = newestVersion(migrations);
    int current = 0;
    {
        pqxx::read_transaction tx(connection);
        current = readSchemaVersion(tx);
    }
    refuseNewerSchema(current, newest);
    for (const Migration& migration : migrations) {
        if (migration.version <= current) {
            continue;
        }
        try {
            pqxx::work tx(connection);
            // A large migration may take longer than a request may; it is still bounded.
            tx.exec0("SET LOCAL statement_timeout = '5min'");
            tx.exec_params("SELECT pg_advisory_xact_lock($1)", MigrationLockKey);
            current = readSchemaVersion(tx);
            refuseNewerSchema(current, newest);
            if (migration.version <= current) {
                continue;  // another replica applied it while this one waited; tx rolls back
            }
            tx.exec0(std::string(migration.sql));
            tx.exec_params0(
                "INSERT INTO schema_version (version, name, applied_at) "
                "VALUES ($1, $2, EXTRACT(EPOCH FROM now())::bigint)",
                migration.version, std::string(migration.name));
            tx.commit();
            current = migration.version;
        } catch (const pqxx::failure& e) {
            throw StoreError("cannot apply migration " + std::string(migration.file) +
                             " to database '" + description + "': " + firstLine(e.what()));
        }
    }
}

// --- Rows ---

std::optional<std::int64_t> optionalInt64(const pqxx::field& field) {
    if (field.is_null()) {
        return std::nullopt;
    }
    return field.as<std::int64_t>();
}

/// Text that PostgreSQL cannot hold: libpq passes text parameters as C strings, so a NUL byte
/// would silently cut the value short ("alice\0x" would be read as "alice").
class UnstorableText : public std::runtime_error {
public:
    UnstorableText() : std::runtime_error("text with a NUL byte cannot be stored in PostgreSQL") {}
};

bool hasNul(std::string_view value) {
    return value.find('\0') != std::string_view::npos;
}

/// A text parameter. @throw UnstorableText for a value with a NUL byte.
std::string text(std::string_view value) {
    if (hasNul(value)) {
        throw UnstorableText();
    }
    return std::string(value);
}

std::string text(UserState state) {
    return std::string(toString(state));
}

pqxx::binarystring bytes(std::string_view value) {
    return pqxx::binarystring(value.data(), value.size());
}

constexpr const char* SelectUsers =
    "SELECT username, sealed_secret, issuer, algorithm, digits, period, state, last_step, "
    "failures, lockouts, locked_until, grant_until, created_at, updated_at, "
    "(SELECT COUNT(*) FROM recovery_codes AS r WHERE r.username = users.username), drift_steps "
    "FROM users";

User readUser(const pqxx::row& row) {
    User user;
    user.username = row[0].as<std::string>();
    user.sealedSecret = pqxx::binarystring(row[1]).str();
    user.issuer = row[2].as<std::string>();
    user.params.algorithm = rows::storedAlgorithm(user.username, row[3].as<std::string>());
    user.params.digits = row[4].as<int>();
    user.params.period = row[5].as<int>();
    user.state = rows::storedState(user.username, row[6].as<std::string>());
    user.lastStep = optionalInt64(row[7]);
    user.failures = row[8].as<int>();
    user.lockouts = row[9].as<int>();
    user.lockedUntil = optionalInt64(row[10]);
    user.grantUntil = optionalInt64(row[11]);
    user.createdAt = row[12].as<std::int64_t>();
    user.updatedAt = row[13].as<std::int64_t>();
    user.recoveryCodesLeft = row[14].as<int>();
    user.driftSteps = row[15].as<int>();
    return user;
}

constexpr const char* SelectInvitations =
    "SELECT username, invited_by, created_at, expires_at FROM invitations";

Invitation readInvitation(const pqxx::row& row) {
    return Invitation{row[0].as<std::string>(), row[1].as<std::string>(),
                      row[2].as<std::int64_t>(), row[3].as<std::int64_t>()};
}

PendingEnrollment readPendingEnrollment(const pqxx::row& row) {
    PendingEnrollment pending;
    pending.username = row[0].as<std::string>();
    pending.sealedSecret = pqxx::binarystring(row[1]).str();
    pending.issuer = row[2].as<std::string>();
    pending.params.algorithm = rows::storedAlgorithm(pending.username, row[3].as<std::string>());
    pending.params.digits = row[4].as<int>();
    pending.params.period = row[5].as<int>();
    pending.invited = row[6].as<bool>();
    pending.failures = row[7].as<int>();
    pending.lockouts = row[8].as<int>();
    pending.lockedUntil = optionalInt64(row[9]);
    pending.createdAt = row[10].as<std::int64_t>();
    pending.expiresAt = row[11].as<std::int64_t>();
    return pending;
}

/// Drops invitations and pending enrolments that have ended: they grant nothing any more.
/// Locks invitations before pending enrolments, as every transaction touching both does.
void purgeExpiredEnrollments(pqxx::transaction_base& tx, Seconds now) {
    tx.exec_params0("DELETE FROM invitations WHERE expires_at <= $1", now);
    tx.exec_params0("DELETE FROM pending_enrollments WHERE expires_at <= $1", now);
}

/// Inserts a fresh user unless the username exists; true when inserted.
bool insertUser(pqxx::transaction_base& tx, const NewUser& user, Seconds now) {
    const pqxx::result inserted = tx.exec_params(
        "INSERT INTO users (username, sealed_secret, issuer, algorithm, digits, period, state, "
        "created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) "
        "ON CONFLICT (username) DO NOTHING",
        text(user.username), bytes(user.sealedSecret), text(user.issuer),
        std::string(toString(user.params.algorithm)), user.params.digits, user.params.period,
        text(user.state), now);
    return inserted.affected_rows() == 1;
}

/// Runs a one-statement update bound as ($1 username, $2 now, $3... extra) in autocommit mode;
/// true when a row matched.
template <typename... Extra>
bool updateUser(pqxx::connection& connection, const char* sql, std::string_view username,
                Seconds now, const Extra&... extra) {
    pqxx::nontransaction tx(connection);
    return tx.exec_params(sql, text(username), now, extra...).affected_rows() == 1;
}

/// Whether a database error leaves the connection usable: statement errors (constraints, a
/// cancelled statement) do; connection failures and server shutdowns (SQLSTATE class 08, 57P)
/// do not, nor does anything unexpected.
bool connectionSurvives(const pqxx::sql_error& error) {
    const std::string& state = error.sqlstate();
    return !state.empty() && !state.starts_with("08") && !state.starts_with("57P");
}

}  // namespace

std::string redactPostgresUrl(std::string_view url) {
    std::string redacted(url);
    if (const auto range = userInfoPassword(redacted)) {
        redacted.replace(range->first, range->second - range->first, "***");
    }
    // Every password=VALUE in the query; everything else stays exactly as written.
    constexpr std::string_view Key = "password=";
    std::size_t item = redacted.find('?');
    while (item != std::string::npos) {
        ++item;
        const std::size_t end = std::min(redacted.find('&', item), redacted.find('#', item));
        if (std::string_view(redacted).substr(item).starts_with(Key)) {
            const std::size_t value = item + Key.size();
            redacted.replace(value, (end == std::string::npos ? redacted.size() : end) - value,
                             "***");
        }
        const std::size_t next = redacted.find('&', item);
        item = next < redacted.find('#', item) ? next : std::string::npos;
    }
    return redacted;
}

template <typename Fn>
auto PostgresStore::withConnection(std::string_view action, std::string_view subject, Fn&& fn) {
    const auto fail = [&](std::string_view reason) {
        std::string message = "cannot ";
        message += action;
        if (!subject.empty()) {
            message += " '";
            for (const char c : subject) {
                message += c == '\0' ? std::string("\\0") : std::string(1, c);
            }
            message += "'";
        }
        message += " in database '" + description_ + "': ";
        message += reason;
        return StoreError(scrub(std::move(message), secrets_));
    };
    try {
        PostgresConnectionPool::Lease lease = pool_->acquire();
        try {
            return fn(lease.connection());
        } catch (const pqxx::sql_error& e) {
            if (!connectionSurvives(e)) {
                lease.markBroken();
            }
            throw;
        } catch (const pqxx::failure&) {
            // broken_connection, in_doubt_error and the like: this connection is done.
            lease.markBroken();
            throw;
        }
    } catch (const pqxx::pqxx_exception& e) {
        throw fail(firstLine(e.base().what()));
    } catch (const PoolTimeout& e) {
        throw fail(e.what());
    } catch (const UnstorableText& e) {
        throw fail(e.what());
    }
}

template <typename... Extra>
bool PostgresStore::updateUserRow(std::string_view action, const char* sql,
                                  std::string_view username, Seconds now, const Extra&... extra) {
    if (hasNul(username)) {
        return false;  // no stored name holds a NUL byte (see text())
    }
    return withConnection(action, username, [&](pqxx::connection& connection) {
        return updateUser(connection, sql, username, now, extra...);
    });
}

namespace {

/// A bigint parameter that may be NULL, in the text form libpq sends (see optional()).
class OptionalParameter {
public:
    explicit OptionalParameter(std::optional<std::int64_t> value)
        : text_(value ? std::to_string(*value) : std::string()), null_(!value) {}
    /// nullptr binds NULL.
    const char* get() const { return null_ ? nullptr : text_.c_str(); }

private:
    std::string text_;
    bool null_;
};

/// The statements of applyChange (StoreRows.hpp) inside the batch's transaction. A row read for
/// a read-modify-write is locked (FOR UPDATE) until the batch commits; the audit rows are kept
/// and written by flush() in one statement, to save round trips.
class PostgresRows {
public:
    explicit PostgresRows(pqxx::work& tx) : tx_(tx) {}

    bool claimStep(std::string_view username, std::int64_t step, UserState requiredState,
                   Seconds now, std::optional<Seconds> grantUntil, std::optional<int> driftSteps) {
        // The replay compare-and-set in one statement. A concurrent claim (another replica's
        // batch) with the same step waits for this row lock and then re-checks the WHERE clause
        // against the committed row (READ COMMITTED), so exactly one changes the row. Opening
        // extends a grant, never shortens it; the drift moves only with a claim.
        const OptionalParameter grant(grantUntil);
        const OptionalParameter drift(driftSteps);
        return tx_.exec_params("UPDATE users SET last_step = $3, failures = 0, lockouts = 0, "
                               "locked_until = NULL, updated_at = $2, grant_until = CASE WHEN "
                               "$5::bigint IS NULL THEN grant_until ELSE "
                               "GREATEST(COALESCE(grant_until, $5::bigint), $5::bigint) END, "
                               "drift_steps = COALESCE($6::integer, drift_steps) "
                               "WHERE username = $1 AND state = $4 "
                               "AND (last_step IS NULL OR last_step < $3) "
                               "AND (locked_until IS NULL OR locked_until <= $2)",
                               text(username), now, step, text(requiredState), grant.get(),
                               drift.get())
                   .affected_rows() == 1;
    }

    bool confirmStep(std::string_view username, std::int64_t step, Seconds now) {
        return tx_.exec_params("UPDATE users SET state = 'active', last_step = $3, failures = 0, "
                               "lockouts = 0, locked_until = NULL, updated_at = $2 "
                               "WHERE username = $1 AND state = 'pending' "
                               "AND (last_step IS NULL OR last_step < $3)",
                               text(username), now, step)
                   .affected_rows() == 1;
    }

    std::optional<rows::FailureState> failureState(std::string_view username) {
        const pqxx::result read = tx_.exec_params(
            "SELECT failures, lockouts, locked_until FROM users WHERE username = $1 FOR UPDATE",
            text(username));
        if (read.empty()) {
            return std::nullopt;
        }
        return rows::FailureState{read[0][0].as<int>(), read[0][1].as<int>(),
                                  optionalInt64(read[0][2])};
    }

    void storeFailure(std::string_view username, Seconds now, const rows::FailureRow& row) {
        const OptionalParameter lockedUntil(row.outcome.lockedUntil);
        tx_.exec_params0(
            "UPDATE users SET failures = $3, lockouts = $4, "
            "locked_until = COALESCE($5::bigint, locked_until), updated_at = $2 "
            "WHERE username = $1",
            text(username), now, row.outcome.failures, row.lockouts, lockedUntil.get());
    }

    std::optional<User> user(std::string_view username) {
        const pqxx::result rows =
            tx_.exec_params(std::string(SelectUsers) + " WHERE username = $1", text(username));
        if (rows.empty()) {
            return std::nullopt;
        }
        return readUser(rows[0]);
    }

    bool deleteRecoveryCode(std::string_view username, std::int64_t id) {
        return tx_.exec_params("DELETE FROM recovery_codes WHERE id = $1 AND username = $2", id,
                               text(username))
                   .affected_rows() == 1;
    }

    void clearFailures(std::string_view username, Seconds now) {
        tx_.exec_params0("UPDATE users SET failures = 0, lockouts = 0, locked_until = NULL, "
                         "updated_at = $2 WHERE username = $1",
                         text(username), now);
    }

    bool openGrant(std::string_view username, Seconds until, Seconds now) {
        // Opening extends, never shortens: two overlapping unlocks keep the later end.
        return tx_.exec_params(
                      "UPDATE users SET grant_until = GREATEST(COALESCE(grant_until, $3), $3), "
                      "updated_at = $2 WHERE username = $1",
                      text(username), now, until)
                   .affected_rows() == 1;
    }

    void insertAudit(const AuditEvent& event) { audit_.push_back(event); }

    /// Writes the kept audit rows, many to a statement (PostgreSQL takes at most 65,535
    /// parameters in one).
    void flush() {
        constexpr std::size_t RowsPerStatement = 1000;
        constexpr int Columns = 10;
        for (std::size_t first = 0; first < audit_.size(); first += RowsPerStatement) {
            const std::size_t end = std::min(audit_.size(), first + RowsPerStatement);
            std::string sql =
                "INSERT INTO audit_events (time, username, operation, resource, subresource, "
                "namespace, name, decision, reason, uid) VALUES ";
            std::vector<std::string> parameters;
            parameters.reserve((end - first) * Columns);
            for (std::size_t i = first; i < end; ++i) {
                const AuditEvent& event = audit_[i];
                const std::size_t base = parameters.size();
                sql += i == first ? "(" : ", (";
                for (int column = 1; column <= Columns; ++column) {
                    sql += "$" + std::to_string(base + static_cast<std::size_t>(column));
                    sql += column == 1 ? "::bigint" : "";
                    sql += column == Columns ? ")" : ", ";
                }
                parameters.push_back(std::to_string(event.time));
                for (const std::string* field :
                     {&event.username, &event.operation, &event.resource, &event.subResource,
                      &event.nameSpace, &event.name, &event.decision, &event.reason,
                      &event.uid}) {
                    parameters.push_back(text(*field));
                }
            }
            tx_.exec_params0(sql, pqxx::prepare::make_dynamic_params(parameters));
        }
        audit_.clear();
    }

private:
    pqxx::work& tx_;
    std::vector<AuditEvent> audit_;  ///< the batch's audit rows, not written yet
};

}  // namespace

PostgresStore::PostgresStore(const std::string& url, PostgresOptions options) : options_(options) {
    ConnectTarget target = parseTarget(url, options_);
    description_ = std::move(target.description);
    secrets_ = std::move(target.secrets);
    pool_ = std::make_unique<PostgresConnectionPool>(std::move(target.conninfo), options_);
    writes_ = std::make_unique<GroupCommit>(
        [this](std::span<QueuedChange* const> batch) { applyBatch(batch); }, options_.batch);
    try {
        PostgresConnectionPool::Lease lease = pool_->acquire();
        migrate(lease.connection(), description_);
    } catch (const StoreError& e) {
        throw StoreError(scrub(e.what(), secrets_));
    } catch (const pqxx::pqxx_exception& e) {
        throw StoreError(
            scrub("cannot open database '" + description_ + "': " + firstLine(e.base().what()),
                  secrets_));
    } catch (const PoolTimeout& e) {
        throw StoreError("cannot open database '" + description_ + "': " + e.what());
    }
}

void PostgresStore::applyBatch(std::span<QueuedChange* const> batch) {
    // Every batch takes the row locks of its users in username order (a stable sort keeps each
    // user's changes in arrival order; changes of different users commute), so the batches of
    // two replicas never wait for each other in a cycle.
    std::vector<QueuedChange*> ordered(batch.begin(), batch.end());
    std::stable_sort(ordered.begin(), ordered.end(), [](const QueuedChange* a, const QueuedChange* b) {
        return a->change.username < b->change.username;
    });
    const rows::BatchAction what = rows::describeBatch(batch);
    withConnection(what.action, what.subject, [&](pqxx::connection& connection) {
        // One transaction for the whole batch: a failure anywhere rolls all of it back, and
        // every member is refused.
        pqxx::work tx(connection);
        PostgresRows rows(tx);
        for (QueuedChange* member : ordered) {
            member->outcome = rows::applyChange(rows, *member);
        }
        rows.flush();
        tx.commit();
    });
}

std::optional<std::int64_t> PostgresStore::matchRecoveryCode(std::string_view username,
                                                             std::string_view code) {
    return withConnection(
        "read the recovery codes of user", username,
        [&](pqxx::connection& connection) -> std::optional<std::int64_t> {
            pqxx::nontransaction read(connection);
            const pqxx::result codes = read.exec_params(
                "SELECT id, hash FROM recovery_codes WHERE username = $1 ORDER BY id",
                text(username));
            rows::RecoveryCodeMatch match(code);
            for (const pqxx::row& row : codes) {
                match.check(row[0].as<std::int64_t>(), row[1].as<std::string>());
            }
            return match.id();
        });
}

ChangeOutcome PostgresStore::commit(const Change& change, const Settle& settle) {
    // Text PostgreSQL cannot hold fails this change alone, here, rather than its whole batch.
    if (change.audit) {
        const AuditEvent& audit = *change.audit;
        for (const std::string* field :
             {&audit.username, &audit.operation, &audit.resource, &audit.subResource,
              &audit.nameSpace, &audit.name, &audit.decision, &audit.reason, &audit.uid}) {
            if (hasNul(*field)) {
                throw StoreError("cannot append to the audit log in database '" + description_ +
                                 "': " + UnstorableText().what());
            }
        }
    }
    if (hasNul(change.username)) {
        // No stored name holds a NUL byte (see text()): the change finds no user and writes
        // nothing (it has no audit row, or the check above refused it).
        ChangeOutcome outcome;
        if (change.kind == Change::Kind::RecordFailure ||
            (change.kind == Change::Kind::ConsumeRecoveryCode && change.countFailureIfRefused)) {
            outcome.failure = rows::unknownUserFailure();
        }
        if (settle) {
            settle(outcome);
        }
        return outcome;
    }
    std::optional<std::int64_t> recoveryCodeId;
    if (change.kind == Change::Kind::ConsumeRecoveryCode) {
        recoveryCodeId = matchRecoveryCode(change.username, change.recoveryCode);
    }
    return writes_->submit(change, settle, recoveryCodeId);
}

void PostgresStore::setCommitObserver(CommitObserver* observer) {
    writes_->setObserver(observer);
}

// Closing a connection never throws: libpqxx's connection destructor swallows errors.
PostgresStore::~PostgresStore() = default;

std::optional<User> PostgresStore::findUser(std::string_view username) {
    if (hasNul(username)) {
        return std::nullopt;  // no stored name holds a NUL byte (see text())
    }
    return withConnection(
        "read user", username, [&](pqxx::connection& connection) -> std::optional<User> {
            pqxx::nontransaction tx(connection);
            const pqxx::result rows =
                tx.exec_params(std::string(SelectUsers) + " WHERE username = $1", text(username));
            if (rows.empty()) {
                return std::nullopt;
            }
            return readUser(rows[0]);
        });
}

std::vector<User> PostgresStore::listUsers() {
    return withConnection("list users", {}, [&](pqxx::connection& connection) {
        pqxx::nontransaction tx(connection);
        std::vector<User> users;
        for (const pqxx::row& row : tx.exec(std::string(SelectUsers) + " ORDER BY username")) {
            users.push_back(readUser(row));
        }
        return users;
    });
}

bool PostgresStore::addUser(const NewUser& user, Seconds now, bool replace) {
    return withConnection("add user", user.username, [&](pqxx::connection& connection) {
        pqxx::work tx(connection);
        if (replace) {
            // A replaced user starts over: the cascade also drops its recovery codes.
            tx.exec_params0("DELETE FROM users WHERE username = $1", user.username);
        }
        if (!insertUser(tx, user, now)) {
            return false;
        }
        tx.commit();
        return true;
    });
}

void PostgresStore::importUsers(const std::vector<NewUser>& users, Seconds now) {
    withConnection("import users", {}, [&](pqxx::connection& connection) {
        pqxx::work tx(connection);
        for (const NewUser& user : users) {
            if (!insertUser(tx, user, now)) {
                // The transaction rolls back: an import is all or nothing.
                throw rows::importClash(user.username);
            }
        }
        tx.commit();
    });
}

bool PostgresStore::removeUser(std::string_view username) {
    if (hasNul(username)) {
        return false;  // no stored name holds a NUL byte (see text())
    }
    return withConnection("remove user", username, [&](pqxx::connection& connection) {
        // Recovery codes go with the user (ON DELETE CASCADE); the audit log stays.
        pqxx::nontransaction tx(connection);
        return tx.exec_params("DELETE FROM users WHERE username = $1", text(username))
                   .affected_rows() == 1;
    });
}

bool PostgresStore::setState(std::string_view username, UserState state, Seconds now) {
    return updateUserRow("set the state of user",
                         "UPDATE users SET state = $3, updated_at = $2, "
                         "grant_until = CASE WHEN $3 = 'disabled' THEN NULL ELSE grant_until END "
                         "WHERE username = $1",
                         username, now, text(state));
}

bool PostgresStore::resetSecret(std::string_view username, std::string_view sealedSecret,
                                Seconds now) {
    if (hasNul(username)) {
        return false;  // no stored name holds a NUL byte (see text())
    }
    return withConnection("reset the secret of user", username, [&](pqxx::connection& connection) {
        pqxx::work tx(connection);
        const pqxx::result updated = tx.exec_params(
            "UPDATE users SET sealed_secret = $3, state = 'pending', last_step = NULL, "
            "failures = 0, lockouts = 0, locked_until = NULL, grant_until = NULL, "
            "drift_steps = 0, updated_at = $2 WHERE username = $1",
            text(username), now, bytes(sealedSecret));
        if (updated.affected_rows() != 1) {
            return false;
        }
        // Codes made for the old secret's owner must not survive a reset.
        tx.exec_params0("DELETE FROM recovery_codes WHERE username = $1", text(username));
        tx.commit();
        return true;
    });
}

bool PostgresStore::unlock(std::string_view username, Seconds now) {
    return updateUserRow("unlock user",
                         "UPDATE users SET failures = 0, lockouts = 0, locked_until = NULL, "
                         "updated_at = $2 WHERE username = $1",
                         username, now);
}

bool PostgresStore::revokeGrant(std::string_view username, Seconds now) {
    return updateUserRow("revoke the grant of user",
                         "UPDATE users SET grant_until = NULL, updated_at = $2 WHERE username = $1",
                         username, now);
}

bool PostgresStore::replaceRecoveryCodes(std::string_view username,
                                         const std::vector<std::string>& hashes, Seconds now) {
    if (hasNul(username)) {
        return false;  // no stored name holds a NUL byte (see text())
    }
    return withConnection(
        "replace the recovery codes of user", username, [&](pqxx::connection& connection) {
            // The user's row is locked first, as in every transaction that touches both tables,
            // so two of them never wait for each other's locks.
            pqxx::work tx(connection);
            const pqxx::result updated = tx.exec_params(
                "UPDATE users SET updated_at = $2 WHERE username = $1", text(username), now);
            if (updated.affected_rows() != 1) {
                return false;
            }
            tx.exec_params0("DELETE FROM recovery_codes WHERE username = $1", text(username));
            for (const std::string& hash : hashes) {
                tx.exec_params0(
                    "INSERT INTO recovery_codes (username, hash, created_at) VALUES ($1, $2, $3)",
                    text(username), text(hash), now);
            }
            tx.commit();
            return true;
        });
}

// Every transaction that touches several of these tables locks rows in one order: invitations,
// pending_enrollments, users, recovery_codes; so two of them never wait for each other. They run
// outside the group commit (see Store.hpp): self-enrolment is rare.

void PostgresStore::putInvitation(const Invitation& invitation, Seconds now) {
    withConnection("invite user", invitation.username, [&](pqxx::connection& connection) {
        pqxx::work tx(connection);
        purgeExpiredEnrollments(tx, now);
        tx.exec_params0(
            "INSERT INTO invitations (username, invited_by, created_at, expires_at) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT (username) DO UPDATE SET "
            "invited_by = excluded.invited_by, created_at = excluded.created_at, "
            "expires_at = excluded.expires_at",
            text(invitation.username), text(invitation.invitedBy), invitation.createdAt,
            invitation.expiresAt);
        // A new invitation starts the enrolment over: a secret begun under the old one goes.
        tx.exec_params0("DELETE FROM pending_enrollments WHERE username = $1 AND invited",
                        text(invitation.username));
        tx.commit();
    });
}

std::optional<Invitation> PostgresStore::findInvitation(std::string_view username) {
    if (hasNul(username)) {
        return std::nullopt;  // no stored name holds a NUL byte (see text())
    }
    return withConnection(
        "read the invitation of user", username,
        [&](pqxx::connection& connection) -> std::optional<Invitation> {
            pqxx::nontransaction tx(connection);
            const pqxx::result rows = tx.exec_params(
                std::string(SelectInvitations) + " WHERE username = $1", text(username));
            if (rows.empty()) {
                return std::nullopt;
            }
            return readInvitation(rows[0]);
        });
}

std::vector<Invitation> PostgresStore::listInvitations() {
    return withConnection("list invitations", {}, [&](pqxx::connection& connection) {
        pqxx::nontransaction tx(connection);
        std::vector<Invitation> invitations;
        for (const pqxx::row& row :
             tx.exec(std::string(SelectInvitations) + " ORDER BY username")) {
            invitations.push_back(readInvitation(row));
        }
        return invitations;
    });
}

bool PostgresStore::removeInvitation(std::string_view username) {
    if (hasNul(username)) {
        return false;  // no stored name holds a NUL byte (see text())
    }
    return withConnection(
        "remove the invitation of user", username, [&](pqxx::connection& connection) {
            pqxx::work tx(connection);
            const bool removed =
                tx.exec_params("DELETE FROM invitations WHERE username = $1", text(username))
                    .affected_rows() == 1;
            tx.exec_params0("DELETE FROM pending_enrollments WHERE username = $1 AND invited",
                            text(username));
            tx.commit();
            return removed;
        });
}

bool PostgresStore::beginEnrollment(const PendingEnrollment& pending, Seconds now) {
    return withConnection(
        "begin the enrolment of user", pending.username, [&](pqxx::connection& connection) {
            pqxx::work tx(connection);
            purgeExpiredEnrollments(tx, now);
            // An invited enrolment ends with its invitation: the row is locked (FOR UPDATE), so
            // an uninvite waits until this enrolment is stored, and then discards it.
            std::optional<Seconds> expiresAt = pending.expiresAt;
            if (pending.invited) {
                const pqxx::result invitation = tx.exec_params(
                    "SELECT expires_at FROM invitations WHERE username = $1 AND expires_at > $2 "
                    "FOR UPDATE",
                    text(pending.username), now);
                expiresAt = invitation.empty()
                                ? std::nullopt
                                : std::optional(invitation[0][0].as<std::int64_t>());
            }
            if (!expiresAt) {
                return false;
            }
            // A second begin replaces the secret; the failure counters stay, so beginning again
            // does not wipe out a lockout.
            tx.exec_params0(
                "INSERT INTO pending_enrollments (username, sealed_secret, issuer, algorithm, "
                "digits, period, invited, created_at, expires_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (username) DO UPDATE SET "
                "sealed_secret = excluded.sealed_secret, issuer = excluded.issuer, "
                "algorithm = excluded.algorithm, digits = excluded.digits, "
                "period = excluded.period, invited = excluded.invited, "
                "created_at = excluded.created_at, expires_at = excluded.expires_at",
                text(pending.username), bytes(pending.sealedSecret), text(pending.issuer),
                std::string(toString(pending.params.algorithm)), pending.params.digits,
                pending.params.period, pending.invited, now, *expiresAt);
            tx.commit();
            return true;
        });
}

std::optional<PendingEnrollment> PostgresStore::findPendingEnrollment(std::string_view username) {
    if (hasNul(username)) {
        return std::nullopt;  // no stored name holds a NUL byte (see text())
    }
    return withConnection(
        "read the pending enrolment of user", username,
        [&](pqxx::connection& connection) -> std::optional<PendingEnrollment> {
            pqxx::nontransaction tx(connection);
            const pqxx::result rows = tx.exec_params(
                "SELECT username, sealed_secret, issuer, algorithm, digits, period, invited, "
                "failures, lockouts, locked_until, created_at, expires_at "
                "FROM pending_enrollments WHERE username = $1",
                text(username));
            if (rows.empty()) {
                return std::nullopt;
            }
            return readPendingEnrollment(rows[0]);
        });
}

namespace {

/// A pending enrolment's failure counters, for rows::recordFailure: a wrong confirmation code
/// counts there as a wrong code counts on a user. The row stays locked until the commit.
class PostgresPendingFailures {
public:
    explicit PostgresPendingFailures(pqxx::work& tx) : tx_(tx) {}

    std::optional<rows::FailureState> failureState(std::string_view username) {
        const pqxx::result read = tx_.exec_params(
            "SELECT failures, lockouts, locked_until FROM pending_enrollments "
            "WHERE username = $1 FOR UPDATE",
            text(username));
        if (read.empty()) {
            return std::nullopt;
        }
        return rows::FailureState{read[0][0].as<int>(), read[0][1].as<int>(),
                                  optionalInt64(read[0][2])};
    }

    void storeFailure(std::string_view username, Seconds /*now*/, const rows::FailureRow& row) {
        const OptionalParameter lockedUntil(row.outcome.lockedUntil);
        tx_.exec_params0("UPDATE pending_enrollments SET failures = $2, lockouts = $3, "
                         "locked_until = COALESCE($4::bigint, locked_until) WHERE username = $1",
                         text(username), row.outcome.failures, row.lockouts, lockedUntil.get());
    }

private:
    pqxx::work& tx_;
};

}  // namespace

FailureOutcome PostgresStore::recordEnrollmentFailure(std::string_view username,
                                                      const LockoutPolicy& policy, Seconds now) {
    if (hasNul(username)) {
        return rows::unknownUserFailure();  // no stored name holds a NUL byte (see text())
    }
    return withConnection(
        "record an enrolment failure for user", username, [&](pqxx::connection& connection) {
            pqxx::work tx(connection);
            PostgresPendingFailures pending(tx);
            const FailureOutcome outcome = rows::recordFailure(pending, username, policy, now);
            tx.commit();
            return outcome;
        });
}

bool PostgresStore::completeEnrollment(const PendingEnrollment& pending, std::int64_t step,
                                       int driftSteps,
                                       const std::vector<std::string>& recoveryHashes,
                                       const AuditEvent& audit, Seconds now) {
    if (hasNul(pending.username)) {
        return false;  // no stored name holds a NUL byte (see text())
    }
    return withConnection(
        "complete the enrolment of user", pending.username, [&](pqxx::connection& connection) {
            pqxx::work tx(connection);
            const std::string username = text(pending.username);
            tx.exec_params("SELECT 1 FROM invitations WHERE username = $1 FOR UPDATE", username);
            // The secret the code was checked against must still be the pending one: a begin
            // in between replaced it, an uninvite or the end of the invitation removed it.
            const pqxx::result claimed = tx.exec_params(
                "DELETE FROM pending_enrollments WHERE username = $1 AND sealed_secret = $2 "
                "AND expires_at > $3 AND (locked_until IS NULL OR locked_until <= $3)",
                username, bytes(pending.sealedSecret), now);
            if (claimed.affected_rows() != 1) {
                return false;
            }
            // A new user is inserted; an enrolled one gets the new secret and starts over, unless
            // disabled or locked out meanwhile (the transaction then rolls back).
            const pqxx::result stored = tx.exec_params(
                "INSERT INTO users (username, sealed_secret, issuer, algorithm, digits, period, "
                "state, last_step, drift_steps, created_at, updated_at) "
                "VALUES ($1, $2, $3, $4, $5, $6, 'active', $7, $8, $9, $9) "
                "ON CONFLICT (username) DO UPDATE SET sealed_secret = excluded.sealed_secret, "
                "issuer = excluded.issuer, algorithm = excluded.algorithm, "
                "digits = excluded.digits, period = excluded.period, state = 'active', "
                "last_step = excluded.last_step, drift_steps = excluded.drift_steps, "
                "failures = 0, lockouts = 0, locked_until = NULL, grant_until = NULL, "
                "updated_at = excluded.updated_at "
                "WHERE users.state <> 'disabled' "
                "AND (users.locked_until IS NULL OR users.locked_until <= $9)",
                username, bytes(pending.sealedSecret), text(pending.issuer),
                std::string(toString(pending.params.algorithm)), pending.params.digits,
                pending.params.period, step, driftSteps, now);
            if (stored.affected_rows() != 1) {
                return false;
            }
            tx.exec_params0("DELETE FROM recovery_codes WHERE username = $1", username);
            for (const std::string& hash : recoveryHashes) {
                tx.exec_params0(
                    "INSERT INTO recovery_codes (username, hash, created_at) VALUES ($1, $2, $3)",
                    username, text(hash), now);
            }
            tx.exec_params0("DELETE FROM invitations WHERE username = $1", username);
            PostgresRows rows(tx);
            rows.insertAudit(audit);
            rows.flush();
            tx.commit();
            return true;
        });
}

std::vector<AuditEvent> PostgresStore::listAudit(const AuditFilter& filter) {
    if (filter.limit <= 0 || (filter.username && hasNul(*filter.username))) {
        return {};  // no stored name holds a NUL byte (see text())
    }
    // Only the conditions in use go into the query, so the (username, time) or (time) index
    // applies; "$1 IS NULL OR ..." would defeat both.
    std::string sql =
        "SELECT id, time, username, operation, resource, subresource, namespace, name, decision, "
        "reason, uid FROM audit_events";
    std::vector<std::string> parameters;
    std::string_view joiner = " WHERE ";
    const auto condition = [&](const char* column, const char* op, std::string value) {
        parameters.push_back(std::move(value));
        sql += joiner;
        sql += column;
        sql += op;
        sql += "$" + std::to_string(parameters.size());
        joiner = " AND ";
    };
    if (filter.username) {
        condition("username", " = ", *filter.username);
    }
    if (filter.since) {
        condition("time", " >= ", std::to_string(*filter.since));
    }
    if (filter.until) {
        condition("time", " < ", std::to_string(*filter.until));
    }
    parameters.push_back(std::to_string(filter.limit));
    sql += " ORDER BY time DESC, id DESC LIMIT $" + std::to_string(parameters.size());
    return withConnection("read the audit log", {}, [&](pqxx::connection& connection) {
        pqxx::nontransaction tx(connection);
        std::vector<AuditEvent> events;
        for (const pqxx::row& row :
             tx.exec_params(sql, pqxx::prepare::make_dynamic_params(parameters))) {
            AuditEvent event;
            event.id = row[0].as<std::int64_t>();
            event.time = row[1].as<std::int64_t>();
            event.username = row[2].as<std::string>();
            event.operation = row[3].as<std::string>();
            event.resource = row[4].as<std::string>();
            event.subResource = row[5].as<std::string>();
            event.nameSpace = row[6].as<std::string>();
            event.name = row[7].as<std::string>();
            event.decision = row[8].as<std::string>();
            event.reason = row[9].as<std::string>();
            event.uid = row[10].as<std::string>();
            events.push_back(std::move(event));
        }
        return events;
    });
}

void PostgresStore::resealAll(
    const std::function<std::string(const std::string&, const std::string&)>& reseal,
    std::string_view newKeyFingerprint) {
    withConnection("reseal the secrets", {}, [&](pqxx::connection& connection) {
        // One transaction: when `reseal` throws (a secret that does not open), it rolls back and
        // every row keeps the secret sealed under the old key. FOR UPDATE keeps other writers
        // (another replica enrolling or resetting) from changing a secret underneath; pending
        // enrolments are locked before users, the order every transaction keeps.
        pqxx::work tx(connection);
        const auto resealTable = [&](const std::string& table) {
            std::vector<std::pair<std::string, std::string>> sealed;
            for (const pqxx::row& row : tx.exec("SELECT username, sealed_secret FROM " + table +
                                                " ORDER BY username FOR UPDATE")) {
                sealed.emplace_back(row[0].as<std::string>(), pqxx::binarystring(row[1]).str());
            }
            for (const auto& [username, secret] : sealed) {
                tx.exec_params0("UPDATE " + table + " SET sealed_secret = $1 WHERE username = $2",
                                bytes(reseal(username, secret)), username);
            }
        };
        // Secrets waiting for their first code too: the new key must open them once confirmed.
        resealTable("pending_enrollments");
        resealTable("users");
        tx.exec_params0(
            "INSERT INTO meta (key, value) VALUES ($1, $2) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            std::string(KeyFingerprintKey), text(newKeyFingerprint));
        tx.commit();
    });
}

std::optional<std::string> PostgresStore::keyFingerprint() {
    return withConnection("read the key fingerprint", {},
                          [&](pqxx::connection& connection) -> std::optional<std::string> {
                              pqxx::nontransaction tx(connection);
                              const pqxx::result rows =
                                  tx.exec_params("SELECT value FROM meta WHERE key = $1",
                                                 std::string(KeyFingerprintKey));
                              if (rows.empty()) {
                                  return std::nullopt;
                              }
                              return rows[0][0].as<std::string>();
                          });
}

void PostgresStore::setKeyFingerprintIfUnset(std::string_view fingerprint) {
    withConnection("record the key fingerprint", {}, [&](pqxx::connection& connection) {
        pqxx::nontransaction tx(connection);
        tx.exec_params0(
            "INSERT INTO meta (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
            std::string(KeyFingerprintKey), text(fingerprint));
    });
}

int PostgresStore::countUsers(UserState state) {
    return withConnection("count users", {}, [&](pqxx::connection& connection) {
        pqxx::nontransaction tx(connection);
        return tx.exec_params1("SELECT COUNT(*) FROM users WHERE state = $1", text(state))[0]
            .as<int>();
    });
}

int PostgresStore::countLocked(Seconds now) {
    return withConnection("count locked users", {}, [&](pqxx::connection& connection) {
        pqxx::nontransaction tx(connection);
        return tx.exec_params1("SELECT COUNT(*) FROM users WHERE locked_until > $1", now)[0]
            .as<int>();
    });
}

void PostgresStore::ping() {
    // Reads a table (unlike "SELECT 1"), so a database whose schema went away is noticed too.
    schemaVersion();
}

int PostgresStore::schemaVersion() {
    return withConnection("read the schema version", {}, [&](pqxx::connection& connection) {
        pqxx::nontransaction tx(connection);
        return readSchemaVersion(tx);
    });
}

}  // namespace twostep::core
