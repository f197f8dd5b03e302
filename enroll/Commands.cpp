#include "Commands.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <istream>
#include <iterator>
#include <memory>
#include <nlohmann/json.hpp>
#include <ostream>
#include <unordered_set>

#include "Import.hpp"
#include "Qr.hpp"
#include "TimeText.hpp"
#include "core/Base32.hpp"
#include "core/Error.hpp"
#include "core/MasterKey.hpp"
#include "core/OtpauthUri.hpp"
#include "core/PostgresStore.hpp"
#include "core/RecoveryCodes.hpp"
#include "core/Store.hpp"

namespace twostep::enroll {

namespace {

namespace fs = std::filesystem;
using Json = nlohmann::ordered_json;
using core::Seconds;

constexpr std::string_view DefaultIssuer = "twostep";

// ---- paths, files and the store ------------------------------------------------------------

bool startsWith(std::string_view text, std::string_view prefix) {
    return text.substr(0, prefix.size()) == prefix;
}

/// The file behind a SQLite --db value, or nullopt for other stores (PostgreSQL, :memory:).
std::optional<std::string> sqliteFile(std::string_view url) {
    if (startsWith(url, "postgresql://") || startsWith(url, "postgres://") || url == ":memory:") {
        return std::nullopt;
    }
    if (startsWith(url, "sqlite:")) {
        url.remove_prefix(7);
    }
    return std::string(url);
}

/// Quotes `text` for a POSIX shell when it needs it, so printed commands can be pasted.
std::string shellQuote(std::string_view text) {
    const bool plain = !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        return (std::isalnum(static_cast<unsigned char>(c)) != 0) ||
               std::string_view("@%+=:,./_-").find(c) != std::string_view::npos;
    });
    if (plain) {
        return std::string(text);
    }
    std::string out = "'";
    for (const char c : text) {
        out += c == '\'' ? std::string("'\\''") : std::string(1, c);
    }
    return out + "'";
}

std::string notEnrolled(std::string_view username) {
    return "user '" + std::string(username) + "' is not enrolled (see `twostep-enroll list`)";
}

std::unique_ptr<core::Store> openExistingStore(const Invocation& inv) {
    if (const auto file = sqliteFile(inv.db)) {
        std::error_code ec;
        const fs::file_status status = fs::status(*file, ec);
        if (!fs::exists(status)) {
            throw Error("database '" + *file +
                        "' does not exist (create it with `twostep-enroll init`, or pass --db or "
                        "TWOSTEP_DB)");
        }
        if (fs::is_directory(status)) {
            throw Error("database '" + *file +
                        "' is a directory, not a database file (pass the file with --db)");
        }
    }
    return core::openStore(inv.db);
}

/// Loads the master key and checks it is the one the database's secrets are sealed with.
core::Sealer sealerFor(const Invocation& inv, core::Store& store) {
    core::MasterKey key = core::MasterKey::fromFile(inv.masterKeyFile);
    const std::string fingerprint = key.fingerprint();
    std::optional<std::string> recorded = store.keyFingerprint();
    if (!recorded) {
        // A database the webhook created before `init` ran: adopt this key.
        store.setKeyFingerprintIfUnset(fingerprint);
        recorded = store.keyFingerprint();
    }
    if (recorded && *recorded != fingerprint) {
        throw KeyError("master key file '" + inv.masterKeyFile +
                       "' is not the key this database is sealed with (key fingerprint " +
                       fingerprint + ", database expects " + *recorded +
                       "); pass the right --master-key-file or TWOSTEP_MASTER_KEY_FILE");
    }
    return core::Sealer(std::move(key));
}

/// Closes a file descriptor; errors on close are reported by the writer before it gets here.
struct FdCloser {
    int fd;
    ~FdCloser() {
        if (fd >= 0) {
            ::close(fd);
        }
    }
};

/// Writes a file only its owner can read: the QR images carry the secret.
void writePrivateFile(const std::string& path, std::string_view data) {
    const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC,
                          S_IRUSR | S_IWUSR);
    if (fd < 0) {
        throw Error("cannot write '" + path + "': " + std::strerror(errno));
    }
    FdCloser closer{fd};
    if (::fchmod(fd, S_IRUSR | S_IWUSR) != 0) {
        throw Error("cannot make '" + path + "' private (mode 0600): " + std::strerror(errno));
    }
    std::size_t done = 0;
    while (done < data.size()) {
        const ssize_t n = ::write(fd, data.data() + done, data.size() - done);
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw Error("cannot write '" + path + "': " + std::strerror(errno));
        }
        done += static_cast<std::size_t>(n);
    }
    closer.fd = -1;
    if (::close(fd) != 0) {
        throw Error("cannot write '" + path + "': " + std::strerror(errno));
    }
}

std::string readAll(std::istream& in, const std::string& name) {
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) {
        throw Error("cannot read '" + name + "'");
    }
    return text;
}

std::string readFileOrStdin(const Invocation& inv, const std::string& path) {
    if (path == "-") {
        return readAll(inv.env.in, "standard input");
    }
    std::error_code ec;
    if (fs::is_directory(path, ec)) {
        throw Error("cannot read '" + path + "': it is a directory");
    }
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        throw Error("cannot read '" + path + "': " + std::strerror(errno));
    }
    return readAll(file, path);
}

/// Who ran the command, for the audit log: the sudo caller when there is one.
std::string actor(const Invocation& inv) {
    if (const auto sudoUser = inv.env.getenv("SUDO_USER"); sudoUser && !sudoUser->empty()) {
        return *sudoUser;
    }
    const uid_t uid = ::geteuid();
    passwd entry{};
    passwd* found = nullptr;
    std::vector<char> buffer(4096);
    if (::getpwuid_r(uid, &entry, buffer.data(), buffer.size(), &found) == 0 && found != nullptr) {
        return found->pw_name;
    }
    return "uid " + std::to_string(uid);
}

/// Admin actions go to the same audit log as the webhook's decisions: operation "enroll:ACTION",
/// decision "admin", reason "admin_action", and the local account in `name`.
void recordAdmin(const Invocation& inv, core::Store& store, std::string_view action,
                 std::string_view username, Seconds now) {
    core::AuditEvent event;
    event.time = now;
    event.username = std::string(username);
    event.operation = "enroll:" + std::string(action);
    event.name = actor(inv);
    event.decision = "admin";
    event.reason = "admin_action";
    store.appendAudit(event);
}

core::User requireUser(core::Store& store, std::string_view username) {
    auto user = store.findUser(username);
    if (!user) {
        throw Error(notEnrolled(username));
    }
    return std::move(*user);
}

// ---- output --------------------------------------------------------------------------------

/// Pretty JSON; bytes that are not UTF-8 (which no checked input holds) become U+FFFD instead of
/// failing the whole listing.
void printJson(std::ostream& out, const Json& json) {
    out << json.dump(2, ' ', false, Json::error_handler_t::replace) << '\n';
}

Json timeOrNull(bool present, const std::optional<Seconds>& time) {
    if (!present || !time) {
        return nullptr;
    }
    return formatTime(*time);
}

Json userJson(const core::User& user, Seconds now) {
    Json j;
    j["username"] = user.username;
    j["state"] = core::toString(user.state);
    j["issuer"] = user.issuer;
    j["algorithm"] = core::toString(user.params.algorithm);
    j["digits"] = user.params.digits;
    j["period"] = user.params.period;
    j["failures"] = user.failures;
    j["locked"] = user.isLocked(now);
    j["locked_until"] = timeOrNull(user.isLocked(now), user.lockedUntil);
    j["grant_open"] = user.hasGrant(now);
    j["grant_until"] = timeOrNull(user.hasGrant(now), user.grantUntil);
    j["recovery_codes_left"] = user.recoveryCodesLeft;
    j["drift_steps"] = user.driftSteps;
    j["created_at"] = formatTime(user.createdAt);
    j["updated_at"] = formatTime(user.updatedAt);
    return j;
}

std::string totpSummary(const core::TotpParams& params) {
    return std::string(core::toString(params.algorithm)) + "/" + std::to_string(params.digits) +
           "/" + std::to_string(params.period) + "s";
}

/// Display width: counts UTF-8 code points, which is right for the text this tool prints.
std::size_t displayWidth(std::string_view text) {
    return static_cast<std::size_t>(std::count_if(text.begin(), text.end(), [](char c) {
        return (static_cast<unsigned char>(c) & 0xc0U) != 0x80U;
    }));
}

void printTable(std::ostream& out, const std::vector<std::vector<std::string>>& rows) {
    std::vector<std::size_t> widths;
    for (const auto& row : rows) {
        widths.resize(std::max(widths.size(), row.size()), 0);
        for (std::size_t i = 0; i < row.size(); ++i) {
            widths[i] = std::max(widths[i], displayWidth(row[i]));
        }
    }
    for (const auto& row : rows) {
        std::string line;
        for (std::size_t i = 0; i < row.size(); ++i) {
            line += row[i];
            if (i + 1 < row.size()) {
                line.append(widths[i] - displayWidth(row[i]) + 2, ' ');
            }
        }
        out << line << '\n';
    }
}

std::string orDash(bool present, const std::optional<Seconds>& time) {
    return present && time ? formatTime(*time) : "-";
}

/// "0", "+1 step (+30s)", "-2 steps (-60s)": how far the user's device clock is off, as learned
/// from their last verified code.
std::string driftText(int steps, int period) {
    if (steps == 0) {
        return "0";
    }
    const std::string sign = steps > 0 ? "+" : "-";
    const int magnitude = steps > 0 ? steps : -steps;
    return sign + std::to_string(magnitude) + (magnitude == 1 ? " step (" : " steps (") + sign +
           std::to_string(magnitude * period) + "s)";
}

/// The open invitation and the enrolment waiting for a code, as list and show print them.
struct SelfEnrollment {
    std::optional<core::Invitation> invitation;  ///< open ones only
    std::optional<core::PendingEnrollment> pending;  ///< open ones only

    static SelfEnrollment of(core::Store& store, std::string_view username, Seconds now) {
        SelfEnrollment state;
        if (auto invitation = store.findInvitation(username); invitation && invitation->isOpen(now)) {
            state.invitation = std::move(invitation);
        }
        if (auto pending = store.findPendingEnrollment(username); pending && pending->isOpen(now)) {
            state.pending = std::move(pending);
        }
        return state;
    }

    std::string invitationText() const {
        if (!invitation) {
            return "-";
        }
        return "open until " + formatTime(invitation->expiresAt) +
               (invitation->invitedBy.empty() ? "" : " (by " + invitation->invitedBy + ")");
    }

    std::string pendingText() const {
        if (!pending) {
            return "-";
        }
        return "waits for its first code until " + formatTime(pending->expiresAt);
    }

    Json json() const {
        Json j;
        j["invitation"] = invitation ? Json{{"expires_at", formatTime(invitation->expiresAt)},
                                            {"invited_by", invitation->invitedBy},
                                            {"created_at", formatTime(invitation->createdAt)}}
                                     : Json(nullptr);
        j["pending_enrollment"] = pending ? Json{{"expires_at", formatTime(pending->expiresAt)},
                                                 {"created_at", formatTime(pending->createdAt)},
                                                 {"invited", pending->invited}}
                                          : Json(nullptr);
        return j;
    }
};

// ---- provisioning (add, reset) -------------------------------------------------------------

/// What add and reset print: the URI, the QR code and the next step; or JSON.
struct Provisioned {
    std::string username;
    std::string issuer;
    core::TotpParams params;
    core::UserState state = core::UserState::Pending;
    bool replaced = false;
};

/// Writes the --png/--svg files; removes them again if the enrolment does not complete.
class QrFiles {
public:
    QrFiles(const Invocation& inv, const QrCode& code) {
        if (const auto png = inv.args.value("png")) {
            const std::vector<std::uint8_t> bytes = renderPng(code);
            write(*png, std::string_view(reinterpret_cast<const char*>(bytes.data()),
                                         bytes.size()));
        }
        if (const auto svg = inv.args.value("svg")) {
            write(*svg, renderSvg(code));
        }
    }
    QrFiles(const QrFiles&) = delete;
    QrFiles& operator=(const QrFiles&) = delete;
    ~QrFiles() {
        if (committed_) {
            return;
        }
        for (const auto& path : written_) {
            std::error_code ignored;  // best effort: the error that got us here is reported
            fs::remove(path, ignored);
        }
    }
    void commit() { committed_ = true; }
    const std::vector<std::string>& written() const { return written_; }

private:
    void write(const std::string& path, std::string_view data) {
        writePrivateFile(path, data);
        written_.push_back(path);
    }
    std::vector<std::string> written_;
    bool committed_ = false;
};

void checkImagePaths(const Invocation& inv) {
    for (const char* option : {"png", "svg"}) {
        if (const auto path = inv.args.value(option); path && path->empty()) {
            throw UsageError(std::string("--") + option + " needs a file name");
        }
    }
    const auto png = inv.args.value("png");
    const auto svg = inv.args.value("svg");
    if (png && svg && *png == *svg) {
        throw UsageError("--png and --svg name the same file '" + *png + "'");
    }
}

void printProvisioned(const Invocation& inv, const Provisioned& p, const std::string& uri,
                      const QrCode& code, const std::vector<std::string>& files) {
    std::ostream& out = inv.env.out;
    if (inv.args.has("json")) {
        Json j;
        j["username"] = p.username;
        j["issuer"] = p.issuer;
        j["state"] = core::toString(p.state);
        j["algorithm"] = core::toString(p.params.algorithm);
        j["digits"] = p.params.digits;
        j["period"] = p.params.period;
        j["uri"] = uri;
        j["replaced"] = p.replaced;
        j["files"] = files;
        printJson(out, j);
        return;
    }
    out << uri << '\n';
    if (!inv.args.has("no-qr")) {
        out << renderTerminal(code);
    }
    for (const auto& file : files) {
        out << "wrote the QR code to '" << file
            << "' (it holds the secret: delete it once scanned)\n";
    }
    if (p.state == core::UserState::Active) {
        out << "user '" << p.username
            << "' is active: codes from the authenticator app are accepted now\n";
        return;
    }
    out << "scan it with an authenticator app, then run: twostep-enroll confirm "
        << shellQuote(p.username) << " CODE\n";
}

core::TotpParams paramsFromOptions(const Invocation& inv) {
    core::TotpParams params;
    if (const auto text = inv.args.value("algorithm")) {
        const auto algorithm = core::parseAlgorithm(*text);
        if (!algorithm) {
            throw UsageError("--algorithm must be SHA1, SHA256 or SHA512, not '" + *text + "'");
        }
        params.algorithm = *algorithm;
    }
    if (const auto text = inv.args.value("digits")) {
        if (*text != "6" && *text != "8") {
            throw UsageError("--digits must be 6 or 8, not '" + *text + "'");
        }
        params.digits = (*text)[0] - '0';
    }
    if (const auto text = inv.args.value("period")) {
        params.period = parseIntOption(*text, "--period (seconds)", 1, 3600);
    }
    return params;
}

std::string issuerFromOptions(const Invocation& inv) {
    const std::string issuer = inv.args.value("issuer").value_or(std::string(DefaultIssuer));
    if (issuer.empty()) {
        throw UsageError("--issuer is empty (it names the account in the authenticator app)");
    }
    if (auto problem = usernameProblem(issuer)) {
        // The same rules fit: printable UTF-8, no surrounding spaces.
        throw UsageError("--issuer is not usable: " + problem->substr(problem->find(' ') + 1));
    }
    return issuer;
}

core::SecretBytes secretFromOptions(const Invocation& inv) {
    const auto inline_ = inv.args.value("secret");
    const auto file = inv.args.value("secret-file");
    if (inline_ && file) {
        throw UsageError("give either --secret or --secret-file, not both");
    }
    if (!inline_ && !file) {
        return core::generateSecret();
    }
    std::string text = inline_ ? *inline_ : readFileOrStdin(inv, *file);
    // A file usually ends with a newline; base32 decoding forgives spaces but not line breaks.
    while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) {
        text.pop_back();
    }
    core::SecretBytes secret;
    const auto problem = secretProblem(text, secret);
    std::fill(text.begin(), text.end(), '\0');
    if (problem) {
        throw UsageError((inline_ ? "--secret: " : "--secret-file: ") + *problem);
    }
    return secret;
}

}  // namespace

// ---- commands ------------------------------------------------------------------------------

int cmdInit(const Invocation& inv) {
    const fs::path keyPath = inv.masterKeyFile;
    std::error_code ec;
    if (fs::exists(fs::symlink_status(keyPath, ec))) {
        throw KeyError("master key file '" + inv.masterKeyFile +
                       "' already exists; init never overwrites a key (use it with "
                       "--master-key-file, or pass a new path)");
    }
    const auto file = sqliteFile(inv.db);
    bool created = false;
    if (file) {
        const fs::path dbPath = *file;
        created = !fs::exists(dbPath, ec);
        if (dbPath.has_parent_path() && !fs::exists(dbPath.parent_path(), ec)) {
            fs::create_directories(dbPath.parent_path());
        }
    }
    std::unique_ptr<core::Store> store = core::openStore(inv.db);
    if (created) {
        // Sealed secrets, lockouts and the audit log: for the owner (the webhook's account) only.
        fs::permissions(*file, fs::perms::owner_read | fs::perms::owner_write);
    }
    if (const auto recorded = store->keyFingerprint()) {
        throw KeyError("database '" + core::redactPostgresUrl(inv.db) +
                       "' is already initialised with another master key (fingerprint " +
                       *recorded + "); use that key with --master-key-file, or pass a new --db");
    }
    const core::MasterKey key = core::MasterKey::generate();
    if (keyPath.has_parent_path() && !fs::exists(keyPath.parent_path(), ec)) {
        fs::create_directories(keyPath.parent_path());
        fs::permissions(keyPath.parent_path(), fs::perms::owner_all);
    }
    key.writeNewFile(keyPath);
    store->setKeyFingerprintIfUnset(key.fingerprint());
    recordAdmin(inv, *store, "init", "", inv.env.clock.now());

    std::ostream& out = inv.env.out;
    // A postgresql:// URL may hold the password: never print it.
    out << (created ? "created database '" : "initialised database '")
        << core::redactPostgresUrl(inv.db) << "'\n";
    out << "created master key '" << inv.masterKeyFile << "' (mode 0600, fingerprint "
        << key.fingerprint() << ")\n";
    out << "back the key up somewhere safe: without it no secret in the database can be opened\n";
    return ExitOk;
}

int cmdAdd(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    if (auto problem = usernameProblem(username)) {
        throw UsageError(*problem);
    }
    const core::TotpParams params = paramsFromOptions(inv);
    const std::string issuer = issuerFromOptions(inv);
    checkImagePaths(inv);
    const bool force = inv.args.has("force");
    const core::SecretBytes secret = secretFromOptions(inv);

    auto store = openExistingStore(inv);
    const core::Sealer sealer = sealerFor(inv, *store);
    const Seconds now = inv.env.clock.now();
    const auto existing = store->findUser(username);
    if (existing && !force) {
        throw Error("user '" + username + "' is already enrolled (" +
                    std::string(core::toString(existing->state)) +
                    "); pass --force to replace them, or run `twostep-enroll reset " +
                    shellQuote(username) + "` for a new secret");
    }

    Provisioned p{username, issuer, params,
                  inv.args.has("active") ? core::UserState::Active : core::UserState::Pending,
                  existing.has_value()};
    const std::string uri = core::buildOtpauthUri(
        core::OtpauthAccount{issuer, username, core::base32::encode(secret.bytes()), params});
    const QrCode code = QrCode::encode(uri);
    QrFiles files(inv, code);
    const core::NewUser user{username, sealer.seal(secret, username), issuer, params, p.state};
    if (!store->addUser(user, now, force)) {
        throw Error("user '" + username +
                    "' was enrolled by someone else meanwhile; pass --force to replace them");
    }
    files.commit();
    recordAdmin(inv, *store, force && existing ? "replace" : "add", username, now);
    printProvisioned(inv, p, uri, code, files.written());
    return ExitOk;
}

int cmdReset(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    checkImagePaths(inv);
    auto store = openExistingStore(inv);
    const core::Sealer sealer = sealerFor(inv, *store);
    const core::User user = requireUser(*store, username);
    const Seconds now = inv.env.clock.now();

    const core::SecretBytes secret = core::generateSecret();
    const std::string uri = core::buildOtpauthUri(core::OtpauthAccount{
        user.issuer, username, core::base32::encode(secret.bytes()), user.params});
    const QrCode code = QrCode::encode(uri);
    QrFiles files(inv, code);
    if (!store->resetSecret(username, sealer.seal(secret, username), now)) {
        throw Error(notEnrolled(username));
    }
    files.commit();
    recordAdmin(inv, *store, "reset", username, now);
    printProvisioned(inv, Provisioned{username, user.issuer, user.params,
                                      core::UserState::Pending, true},
                     uri, code, files.written());
    return ExitOk;
}

int cmdImport(const Invocation& inv) {
    const std::string& path = inv.arg(0);
    const std::string issuer = issuerFromOptions(inv);
    std::string text = readFileOrStdin(inv, path);
    const std::string source = path == "-" ? std::string("standard input") : path;

    auto store = openExistingStore(inv);
    const core::Sealer sealer = sealerFor(inv, *store);
    std::vector<ImportRow> rows;
    try {
        rows = parseImport(text);
    } catch (const Error& e) {
        std::fill(text.begin(), text.end(), '\0');
        throw Error(source + ": " + e.what() + "; nothing was imported");
    }
    std::fill(text.begin(), text.end(), '\0');

    std::unordered_set<std::string> enrolled;
    for (const core::User& user : store->listUsers()) {
        enrolled.insert(user.username);
    }
    std::vector<core::NewUser> users;
    users.reserve(rows.size());
    for (const ImportRow& row : rows) {
        if (enrolled.count(row.username) != 0) {
            throw Error(source + ": line " + std::to_string(row.line) + ": user '" +
                        row.username +
                        "' is already enrolled (leave the line out, or remove the user first); "
                        "nothing was imported");
        }
        users.push_back(core::NewUser{row.username, sealer.seal(row.secret, row.username), issuer,
                                      row.params, core::UserState::Active});
    }
    const Seconds now = inv.env.clock.now();
    try {
        store->importUsers(users, now);
    } catch (const StoreError& e) {
        throw StoreError(std::string(e.what()) + "; nothing was imported");
    }
    recordAdmin(inv, *store, "import", "", now);
    inv.env.out << "imported " << users.size() << (users.size() == 1 ? " user" : " users")
                << " as active from '" << source << "'\n";
    return ExitOk;
}

int cmdConfirm(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    const std::string& code = inv.arg(1);
    auto store = openExistingStore(inv);
    const core::Sealer sealer = sealerFor(inv, *store);
    const core::User user = requireUser(*store, username);
    if (user.state != core::UserState::Pending) {
        throw Error("user '" + username + "' is " + std::string(core::toString(user.state)) +
                    ", not pending; confirm only activates a new or reset enrolment");
    }
    const Seconds now = inv.env.clock.now();
    const core::SecretBytes secret = sealer.open(user.sealedSecret, username);
    const core::TotpResult result = core::verifyTotp(secret, code, user.params, now, 1);
    if (result.check == core::CodeCheck::Malformed) {
        throw Error("the code must be " + std::to_string(user.params.digits) +
                    " digits (the number the authenticator app shows for '" + username + "')");
    }
    if (result.check != core::CodeCheck::Matched) {
        throw Error("the code does not match for user '" + username +
                    "' (check that the phone's clock is right and give the code shown now)");
    }
    if (!store->confirmWithStep(username, result.step, now)) {
        throw Error("the code for user '" + username +
                    "' was already used, or the user is no longer pending; wait for the next "
                    "code and try again");
    }
    recordAdmin(inv, *store, "confirm", username, now);
    inv.env.out << "user '" << username << "' is confirmed and active\n";
    return ExitOk;
}

int cmdList(const Invocation& inv) {
    auto store = openExistingStore(inv);
    std::vector<core::User> users = store->listUsers();
    std::sort(users.begin(), users.end(),
              [](const core::User& a, const core::User& b) { return a.username < b.username; });
    const Seconds now = inv.env.clock.now();
    std::vector<core::Invitation> invitations = store->listInvitations();
    std::erase_if(invitations, [&](const core::Invitation& i) { return !i.isOpen(now); });
    if (inv.args.has("json")) {
        Json list = Json::array();
        for (const auto& user : users) {
            list.push_back(userJson(user, now));
        }
        Json invited = Json::array();
        for (const auto& invitation : invitations) {
            const SelfEnrollment state = SelfEnrollment::of(*store, invitation.username, now);
            Json j{{"username", invitation.username}};
            j.update(state.json());
            invited.push_back(std::move(j));
        }
        printJson(inv.env.out, Json{{"users", list}, {"invitations", invited}});
        return ExitOk;
    }
    if (users.empty() && invitations.empty()) {
        inv.env.err << "no users are enrolled (add one with `twostep-enroll add USER`, or invite "
                       "one with `twostep-enroll invite USER`)\n";
        return ExitOk;
    }
    if (!users.empty()) {
        std::vector<std::vector<std::string>> rows = {
            {"USER", "STATE", "TOTP", "LOCKED UNTIL", "GRANT UNTIL", "RECOVERY CODES"}};
        for (const auto& user : users) {
            rows.push_back({user.username, std::string(core::toString(user.state)),
                            totpSummary(user.params),
                            orDash(user.isLocked(now), user.lockedUntil),
                            orDash(user.hasGrant(now), user.grantUntil),
                            std::to_string(user.recoveryCodesLeft)});
        }
        printTable(inv.env.out, rows);
    }
    if (!invitations.empty()) {
        if (!users.empty()) {
            inv.env.out << '\n';
        }
        std::vector<std::vector<std::string>> rows = {
            {"INVITED", "UNTIL", "BY", "NEW SECRET"}};
        for (const auto& invitation : invitations) {
            const SelfEnrollment state = SelfEnrollment::of(*store, invitation.username, now);
            rows.push_back({invitation.username, formatTime(invitation.expiresAt),
                            invitation.invitedBy.empty() ? "-" : invitation.invitedBy,
                            state.pending ? "waiting for its first code" : "-"});
        }
        printTable(inv.env.out, rows);
    }
    return ExitOk;
}

int cmdShow(const Invocation& inv) {
    auto store = openExistingStore(inv);
    const std::string& username = inv.arg(0);
    const Seconds now = inv.env.clock.now();
    const std::optional<core::User> user = store->findUser(username);
    const SelfEnrollment self = SelfEnrollment::of(*store, username, now);
    if (!user && !self.invitation && !self.pending) {
        throw Error(notEnrolled(username));
    }
    if (inv.args.has("json")) {
        Json j = user ? userJson(*user, now) : Json{{"username", username}, {"state", nullptr}};
        j.update(self.json());
        printJson(inv.env.out, j);
        return ExitOk;
    }
    if (!user) {
        printTable(inv.env.out, {{"user:", username},
                                 {"state:", "not enrolled"},
                                 {"invitation:", self.invitationText()},
                                 {"new secret:", self.pendingText()}});
        return ExitOk;
    }
    printTable(inv.env.out,
               {{"user:", user->username},
                {"state:", std::string(core::toString(user->state))},
                {"issuer:", user->issuer},
                {"algorithm:", std::string(core::toString(user->params.algorithm))},
                {"digits:", std::to_string(user->params.digits)},
                {"period:", std::to_string(user->params.period) + "s"},
                {"clock drift:", driftText(user->driftSteps, user->params.period)},
                {"failures:", std::to_string(user->failures)},
                {"locked until:", orDash(user->isLocked(now), user->lockedUntil)},
                {"grant until:", orDash(user->hasGrant(now), user->grantUntil)},
                {"recovery codes:", std::to_string(user->recoveryCodesLeft) + " left"},
                {"invitation:", self.invitationText()},
                {"new secret:", self.pendingText()},
                {"created:", formatTime(user->createdAt)},
                {"updated:", formatTime(user->updatedAt)}});
    return ExitOk;
}

int cmdDisable(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    auto store = openExistingStore(inv);
    const core::User user = requireUser(*store, username);
    if (user.state == core::UserState::Disabled) {
        inv.env.out << "user '" << username << "' is already disabled\n";
        return ExitOk;
    }
    const Seconds now = inv.env.clock.now();
    if (!store->setState(username, core::UserState::Disabled, now)) {
        throw Error(notEnrolled(username));
    }
    recordAdmin(inv, *store, "disable", username, now);
    inv.env.out << "user '" << username
                << "' is disabled: every protected request of theirs is denied (any open grant "
                   "ended)\n";
    return ExitOk;
}

int cmdEnable(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    auto store = openExistingStore(inv);
    const core::User user = requireUser(*store, username);
    if (user.state == core::UserState::Active) {
        inv.env.out << "user '" << username << "' is already active\n";
        return ExitOk;
    }
    if (user.state == core::UserState::Pending) {
        throw Error("user '" + username +
                    "' is pending: they become active by confirming a code (`twostep-enroll "
                    "confirm " +
                    shellQuote(username) + " CODE`), not by enable");
    }
    const Seconds now = inv.env.clock.now();
    if (!store->setState(username, core::UserState::Active, now)) {
        throw Error(notEnrolled(username));
    }
    recordAdmin(inv, *store, "enable", username, now);
    inv.env.out << "user '" << username << "' is active again\n";
    return ExitOk;
}

int cmdRemove(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    auto store = openExistingStore(inv);
    if (!store->removeUser(username)) {
        throw Error(notEnrolled(username));
    }
    recordAdmin(inv, *store, "remove", username, inv.env.clock.now());
    inv.env.out << "user '" << username
                << "' removed (secret, recovery codes and grant are gone)\n";
    return ExitOk;
}

int cmdUnlock(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    auto store = openExistingStore(inv);
    const core::User user = requireUser(*store, username);
    const Seconds now = inv.env.clock.now();
    if (!store->unlock(username, now)) {
        throw Error(notEnrolled(username));
    }
    recordAdmin(inv, *store, "unlock", username, now);
    if (user.isLocked(now)) {
        inv.env.out << "user '" << username << "' is unlocked (was locked until "
                    << formatTime(*user.lockedUntil) << "); failures reset\n";
    } else {
        inv.env.out << "user '" << username << "' was not locked; failures reset to 0\n";
    }
    return ExitOk;
}

int cmdRevoke(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    auto store = openExistingStore(inv);
    const core::User user = requireUser(*store, username);
    const Seconds now = inv.env.clock.now();
    if (!store->revokeGrant(username, now)) {
        throw Error(notEnrolled(username));
    }
    recordAdmin(inv, *store, "revoke", username, now);
    if (user.hasGrant(now)) {
        inv.env.out << "ended the grant of user '" << username << "' (it was open until "
                    << formatTime(*user.grantUntil) << ")\n";
    } else {
        inv.env.out << "user '" << username << "' had no open grant\n";
    }
    return ExitOk;
}

int cmdRecoveryCodes(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    int count = 10;
    if (const auto text = inv.args.value("count")) {
        count = parseIntOption(*text, "--count", 1, 100);
    }
    auto store = openExistingStore(inv);
    requireUser(*store, username);
    const std::vector<std::string> codes = core::generateRecoveryCodes(count);
    std::vector<std::string> hashes;
    hashes.reserve(codes.size());
    for (const auto& code : codes) {
        hashes.push_back(core::hashRecoveryCode(code));
    }
    const Seconds now = inv.env.clock.now();
    if (!store->replaceRecoveryCodes(username, hashes, now)) {
        throw Error(notEnrolled(username));
    }
    recordAdmin(inv, *store, "recovery-codes", username, now);
    std::ostream& out = inv.env.out;
    out << count << " recovery codes for user '" << username
        << "'; each works once in place of a TOTP code. They replace any earlier codes and are "
           "not shown again:\n";
    for (const auto& code : codes) {
        out << code << '\n';
    }
    return ExitOk;
}

int cmdAudit(const Invocation& inv) {
    core::AuditFilter filter;
    const Seconds now = inv.env.clock.now();
    filter.username = inv.args.value("user");
    for (const char* option : {"since", "until"}) {
        const auto text = inv.args.value(option);
        if (!text) {
            continue;
        }
        const auto time = parseTimeSpec(*text, now);
        if (!time) {
            throw UsageError(std::string("--") + option + " must be an RFC 3339 time (" +
                             "2024-05-01T12:00:00Z) or a span back from now (30m, 1h, 7d), not '" +
                             *text + "'");
        }
        (std::string_view(option) == "since" ? filter.since : filter.until) = *time;
    }
    if (filter.since && filter.until && *filter.since > *filter.until) {
        throw UsageError("--since is after --until: nothing can match");
    }
    if (const auto text = inv.args.value("limit")) {
        filter.limit = parseIntOption(*text, "--limit", 1, 1000000);
    }
    auto store = openExistingStore(inv);
    const std::vector<core::AuditEvent> events = store->listAudit(filter);
    if (inv.args.has("json")) {
        Json list = Json::array();
        for (const auto& e : events) {
            list.push_back(Json{{"id", e.id},
                                {"time", formatTime(e.time)},
                                {"username", e.username},
                                {"operation", e.operation},
                                {"resource", e.resource},
                                {"sub_resource", e.subResource},
                                {"namespace", e.nameSpace},
                                {"name", e.name},
                                {"decision", e.decision},
                                {"reason", e.reason},
                                {"uid", e.uid}});
        }
        printJson(inv.env.out, Json{{"events", list}});
        return ExitOk;
    }
    if (events.empty()) {
        inv.env.err << "no audit events match\n";
        return ExitOk;
    }
    std::vector<std::vector<std::string>> rows = {
        {"TIME", "USER", "OPERATION", "OBJECT", "DECISION", "REASON"}};
    for (const auto& e : events) {
        std::string object;
        if (startsWith(e.operation, "enroll:")) {
            object = "by " + e.name;
        } else {
            object = e.resource + (e.subResource.empty() ? "" : "/" + e.subResource);
            const std::string where = e.nameSpace.empty() ? e.name : e.nameSpace + "/" + e.name;
            if (!where.empty()) {
                object += " " + where;
            }
        }
        rows.push_back({formatTime(e.time), e.username.empty() ? "-" : e.username, e.operation,
                        object.empty() ? "-" : object, e.decision, e.reason});
    }
    printTable(inv.env.out, rows);
    return ExitOk;
}

int cmdInvite(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    if (auto problem = usernameProblem(username)) {
        throw UsageError(*problem);
    }
    Seconds ttl = 24 * 3600;
    if (const auto text = inv.args.value("ttl")) {
        const auto parsed = parseDuration(*text);
        if (!parsed || *parsed < 60 || *parsed > 30 * 24 * 3600) {
            throw UsageError("--ttl must be a span from 1m to 30d, like 30m, 24h or 7d, not '" +
                             *text + "'");
        }
        ttl = *parsed;
    }
    auto store = openExistingStore(inv);
    const std::optional<core::User> user = store->findUser(username);
    if (user && user->state == core::UserState::Disabled) {
        throw Error("user '" + username +
                    "' is disabled; enable them first (`twostep-enroll enable " +
                    shellQuote(username) + "`) if they are to enroll a new device");
    }
    const Seconds now = inv.env.clock.now();
    const bool renewed = store->findInvitation(username).has_value();
    store->putInvitation(core::Invitation{username, actor(inv), now, now + ttl}, now);
    recordAdmin(inv, *store, "invite", username, now);
    std::ostream& out = inv.env.out;
    out << (renewed ? "renewed the invitation of user '" : "invited user '") << username
        << "' to enroll until " << formatTime(now + ttl) << '\n';
    out << "they run `kubectl twostep enroll` as themselves: the webhook gives the new secret to "
           "them alone (you never see it)\n";
    if (user) {
        out << "their current secret keeps working until they confirm the new one\n";
    }
    if (renewed) {
        out << "a secret begun under the earlier invitation was discarded: they run `kubectl "
               "twostep enroll` again\n";
    }
    return ExitOk;
}

int cmdUninvite(const Invocation& inv) {
    const std::string& username = inv.arg(0);
    auto store = openExistingStore(inv);
    const Seconds now = inv.env.clock.now();
    const std::optional<core::Invitation> invitation = store->findInvitation(username);
    if (!store->removeInvitation(username) || !invitation || !invitation->isOpen(now)) {
        throw Error("user '" + username + "' has no open invitation (see `twostep-enroll list`)");
    }
    recordAdmin(inv, *store, "uninvite", username, now);
    inv.env.out << "ended the invitation of user '" << username
                << "' (a secret they began and did not confirm is discarded)\n";
    return ExitOk;
}

int cmdRotateKey(const Invocation& inv) {
    const auto newPath = inv.args.value("new-master-key-file");
    if (!newPath || newPath->empty()) {
        throw UsageError("rotate-key needs --new-master-key-file FILE");
    }
    auto store = openExistingStore(inv);
    const core::Sealer oldSealer = sealerFor(inv, *store);

    std::error_code ec;
    const bool generate = !fs::exists(fs::symlink_status(*newPath, ec));
    core::MasterKey newKey =
        generate ? core::MasterKey::generate() : core::MasterKey::fromFile(*newPath);
    const std::string newFingerprint = newKey.fingerprint();
    if (newFingerprint == oldSealer.key().fingerprint()) {
        throw KeyError("'" + *newPath +
                       "' holds the current master key; rotate-key needs a different key (give "
                       "a path that does not exist yet and a new key is made there)");
    }
    if (generate) {
        newKey.writeNewFile(*newPath);
    }
    const core::Sealer newSealer(std::move(newKey));
    std::size_t count = 0;
    try {
        store->resealAll(
            [&](const std::string& username, const std::string& sealed) {
                const core::SecretBytes secret = oldSealer.open(sealed, username);
                ++count;
                return newSealer.seal(secret, username);
            },
            newFingerprint);
    } catch (const std::exception& e) {
        if (generate) {
            fs::remove(*newPath, ec);  // nothing was sealed with it; do not leave it around
        }
        throw Error(std::string("key rotation failed and nothing was changed (the old key still "
                                "opens every secret): ") +
                    e.what());
    }
    recordAdmin(inv, *store, "rotate-key", "", inv.env.clock.now());
    std::ostream& out = inv.env.out;
    out << "re-sealed " << count << (count == 1 ? " secret" : " secrets") << " under "
        << (generate ? "the new key created in '" : "the key in '") << *newPath
        << "' (fingerprint " << newFingerprint << ")\n";
    out << "now point the webhook's --master-key-file at it and restart the webhook: the old key "
           "no longer opens this database\n";
    return ExitOk;
}

}  // namespace twostep::enroll
