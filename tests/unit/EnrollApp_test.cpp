// twostep-enroll in-process: every command, its output and its errors, against a real SQLite file
// in a temp dir and a FakeClock. oathtool (an independent TOTP) supplies the codes.
#include "EnrollApp.hpp"

#include <sys/stat.h>

#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "Oathtool.hpp"
#include "core/MasterKey.hpp"
#include "core/RecoveryCodes.hpp"
#include "core/Store.hpp"
#include "support/EnrollHarness.hpp"

using twostep::test::CliResult;
using twostep::test::EnrollCli;
using twostep::test::lineStartingWith;
using twostep::test::queryParam;
namespace fs = std::filesystem;

namespace {

/// A CLI with `init` done.
struct Initialised {
    EnrollCli cli;
    Initialised() {
        const CliResult r = cli.run({"init"});
        REQUIRE(r.code == 0);
    }
    /// Adds `user` (pending unless extra args say otherwise) and returns the URI it printed.
    std::string add(const std::string& user, std::vector<std::string> extra = {}) {
        std::vector<std::string> args = {"add", user, "--no-qr"};
        args.insert(args.end(), extra.begin(), extra.end());
        const CliResult r = cli.run(args);
        INFO(r.err);
        REQUIRE(r.code == 0);
        const std::string uri = lineStartingWith(r.out, "otpauth://");
        REQUIRE_FALSE(uri.empty());
        return uri;
    }
    /// The code oathtool computes for the URI's secret at the fake clock's time.
    std::string codeFor(const std::string& uri, twostep::core::Seconds offset = 0) {
        return twostep::test::oathtoolTotp(queryParam(uri, "secret"),
                                           twostep::test::OathtoolKey::Base32, "SHA1", 6, 30,
                                           cli.clock().now() + offset);
    }
    std::unique_ptr<twostep::core::Store> store() {
        return twostep::core::openStore(cli.db().string());
    }
    twostep::core::User user(const std::string& name) {
        auto found = store()->findUser(name);
        REQUIRE(found.has_value());
        return *found;
    }
};

unsigned modeOf(const fs::path& path) {
    struct stat st {};
    REQUIRE(::stat(path.c_str(), &st) == 0);
    return st.st_mode & 0777U;
}

/// The whitespace-separated words of the first line of `text` that starts with `prefix`.
std::vector<std::string> words(const std::string& text, const std::string& prefix) {
    std::istringstream line(lineStartingWith(text, prefix));
    std::vector<std::string> result;
    std::string word;
    while (line >> word) {
        result.push_back(word);
    }
    return result;
}

/// The lines after the first (the recovery codes), each checked for the code shape.
std::vector<std::string> codesIn(const std::string& out) {
    std::vector<std::string> codes;
    std::istringstream lines(out);
    std::string line;
    std::getline(lines, line);
    while (std::getline(lines, line)) {
        CHECK(twostep::core::looksLikeRecoveryCode(line));
        codes.push_back(line);
    }
    return codes;
}

nlohmann::json parseJson(const std::string& text) {
    INFO(text);
    const auto json = nlohmann::json::parse(text, nullptr, false);
    REQUIRE_FALSE(json.is_discarded());
    return json;
}

}  // namespace

TEST_CASE("help is available for the tool and every command", "[enroll][help]") {
    EnrollCli cli;
    const CliResult tool = cli.run({"--help"});
    CHECK(tool.code == 0);
    for (const char* command : {"init", "add", "import", "confirm", "list", "show", "disable",
                                "enable", "remove", "reset", "unlock", "revoke", "recovery-codes",
                                "audit", "rotate-key", "invite", "uninvite"}) {
        INFO(command);
        CHECK(tool.out.find(std::string("  ") + command + " ") != std::string::npos);
        const CliResult help = cli.run({"help", command});
        CHECK(help.code == 0);
        CHECK(help.out.rfind(std::string("usage: twostep-enroll ") + command, 0) == 0);
        const CliResult flag = cli.run({command, "--help"});
        CHECK(flag.code == 0);
        CHECK(flag.out == help.out);
    }
    CHECK(cli.run({"help"}).out == tool.out);
    CHECK(cli.run({"-h"}).out == tool.out);
    CHECK(cli.run({"--version"}).out.rfind("twostep-enroll ", 0) == 0);
}

TEST_CASE("usage mistakes exit 2 with a message on stderr", "[enroll][usage]") {
    EnrollCli cli;
    const CliResult none = cli.run({});
    CHECK(none.code == 2);
    CHECK(none.out.empty());
    CHECK(none.err.rfind("usage: twostep-enroll", 0) == 0);

    const auto usage = [&](const std::vector<std::string>& args, const std::string& message) {
        const CliResult r = cli.run(args);
        INFO(r.err);
        CHECK(r.code == 2);
        CHECK(r.out.empty());
        CHECK(r.err == message + "\n");
    };
    usage({"frobnicate"}, "error: unknown command 'frobnicate' (see `twostep-enroll --help`)");
    usage({"help", "frobnicate"},
          "error: unknown command 'frobnicate' (see `twostep-enroll --help`)");
    usage({"add"}, "error: `add` takes USER (see `twostep-enroll help add`)");
    usage({"add", "a", "b"}, "error: `add` takes USER (see `twostep-enroll help add`)");
    usage({"confirm", "alice"},
          "error: `confirm` takes USER CODE (see `twostep-enroll help confirm`)");
    usage({"list", "extra"}, "error: `list` takes no arguments (see `twostep-enroll help list`)");
    usage({"add", "alice", "--colour"},
          "error: unknown option '--colour' for `twostep-enroll add` (see `twostep-enroll help "
          "add`)");
    usage({"confirm", "alice", "123456", "--json"},
          "error: unknown option '--json' for `twostep-enroll confirm` (see `twostep-enroll help "
          "confirm`)");
    usage({"add", "alice", "--digits", "7"},
          "error: --digits must be 6 or 8, not '7' (see `twostep-enroll help add`)");
    usage({"add", "alice", "--period", "0"},
          "error: --period (seconds) must be a whole number from 1 to 3600, not '0' (see "
          "`twostep-enroll help add`)");
    usage({"add", "alice", "--algorithm", "md5"},
          "error: --algorithm must be SHA1, SHA256 or SHA512, not 'md5' (see `twostep-enroll "
          "help add`)");
    usage({"add", "alice", "--issuer="},
          "error: --issuer is empty (it names the account in the authenticator app) (see "
          "`twostep-enroll help add`)");
    usage({"add", "alice", "--secret", "not base32!"},
          "error: --secret: secret is not valid base32 (letters A-Z and digits 2-7) (see "
          "`twostep-enroll help add`)");
    usage({"add", "alice", "--secret", "JBSWY3DPEHPK3PXP"},
          "error: --secret: secret is too short (80 bits; at least 128 bits are needed) (see "
          "`twostep-enroll help add`)");
    usage({"add", " alice"},
          "error: username starts or ends with a space (see `twostep-enroll help add`)");
    usage({"add", "alice", "--png"},
          "error: option '--png' needs a value (--png FILE) (see `twostep-enroll help add`)");
    usage({"recovery-codes", "alice", "--count", "0"},
          "error: --count must be a whole number from 1 to 100, not '0' (see `twostep-enroll "
          "help recovery-codes`)");
    usage({"audit", "--since", "yesterday"},
          "error: --since must be an RFC 3339 time (2024-05-01T12:00:00Z) or a span back from "
          "now (30m, 1h, 7d), not 'yesterday' (see `twostep-enroll help audit`)");
    usage({"audit", "--since", "1h", "--until", "2h"},
          "error: --since is after --until: nothing can match (see `twostep-enroll help audit`)");
    usage({"rotate-key"},
          "error: rotate-key needs --new-master-key-file FILE (see `twostep-enroll help "
          "rotate-key`)");
    usage({"--db=", "list"}, "error: --db is empty (see `twostep-enroll help list`)");
}

TEST_CASE("init creates the database and a private key, and never overwrites a key",
          "[enroll][init]") {
    EnrollCli cli;
    cli.env()["TWOSTEP_MASTER_KEY_FILE"] = (cli.dir() / "etc/twostep/master.key").string();
    const CliResult r = cli.run({"init"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    const fs::path key = cli.dir() / "etc/twostep/master.key";
    CHECK(modeOf(cli.db()) == 0600);
    CHECK(modeOf(key) == 0600);
    CHECK(modeOf(key.parent_path()) == 0700);
    const auto fingerprint = twostep::core::MasterKey::fromFile(key).fingerprint();
    CHECK(r.out.find("fingerprint " + fingerprint) != std::string::npos);
    CHECK(twostep::core::openStore(cli.db().string())->keyFingerprint() == fingerprint);

    std::ifstream before(key);
    const std::string keyText((std::istreambuf_iterator<char>(before)), {});
    const CliResult again = cli.run({"init"});
    CHECK(again.code == 1);
    CHECK(again.err == "error: master key file '" + key.string() +
                           "' already exists; init never overwrites a key (use it with "
                           "--master-key-file, or pass a new path)\n");
    std::ifstream after(key);
    CHECK(std::string((std::istreambuf_iterator<char>(after)), {}) == keyText);

    // A second key for the same database is refused: its secrets are sealed under the first.
    const CliResult other = cli.run({"init", "--master-key-file", (cli.dir() / "k2").string()});
    CHECK(other.code == 1);
    CHECK(other.err.find("is already initialised with another master key (fingerprint " +
                         fingerprint + ")") != std::string::npos);
    CHECK_FALSE(fs::exists(cli.dir() / "k2"));
}

TEST_CASE("commands refuse a missing, unreadable or foreign database", "[enroll][db]") {
    EnrollCli cli;
    const CliResult missing = cli.run({"list"});
    CHECK(missing.code == 1);
    CHECK(missing.err == "error: database '" + cli.db().string() +
                             "' does not exist (create it with `twostep-enroll init`, or pass "
                             "--db or TWOSTEP_DB)\n");
    {
        std::ofstream garbage(cli.db());
        garbage << "this is not a SQLite database, just some text that is long enough\n";
    }
    const CliResult bad = cli.run({"list"});
    CHECK(bad.code == 1);
    CHECK(bad.err.rfind("error: ", 0) == 0);
    CHECK(bad.err.find(cli.db().string()) != std::string::npos);
    CHECK(bad.err.find("not a database") != std::string::npos);

    const CliResult directory = cli.run({"show", "alice", "--db", cli.dir().path().string()});
    CHECK(directory.code == 1);
    CHECK(directory.err == "error: database '" + cli.dir().path().string() +
                               "' is a directory, not a database file (pass the file with "
                               "--db)\n");
}

TEST_CASE("the key must be private and the one the database is sealed with", "[enroll][key]") {
    Initialised t;
    fs::permissions(t.cli.key(), fs::perms::owner_read | fs::perms::owner_write |
                                     fs::perms::group_read | fs::perms::others_read);
    const CliResult loose = t.cli.run({"add", "alice", "--no-qr"});
    CHECK(loose.code == 1);
    CHECK(loose.err.find("master key file '" + t.cli.key().string() + "'") != std::string::npos);
    CHECK(loose.err.find("0644") != std::string::npos);
    CHECK(loose.err.find("chmod 600") != std::string::npos);
    CHECK_FALSE(t.store()->findUser("alice").has_value());
    fs::permissions(t.cli.key(), fs::perms::owner_read | fs::perms::owner_write);

    const fs::path other = t.cli.dir() / "other.key";
    twostep::core::MasterKey::generate().writeNewFile(other);
    const std::string expected = t.store()->keyFingerprint().value();
    const std::string otherFingerprint = twostep::core::MasterKey::fromFile(other).fingerprint();
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{"add", "alice", "--no-qr"},
          std::vector<std::string>{"import", "-"},
          std::vector<std::string>{"reset", "alice"},
          std::vector<std::string>{"confirm", "alice", "123456"},
          std::vector<std::string>{"rotate-key", "--new-master-key-file",
                                   (t.cli.dir() / "new.key").string()}}) {
        if (args[0] != "add") {
            t.add("alice");
        }
        std::vector<std::string> withKey = args;
        withKey.push_back("--master-key-file=" + other.string());
        const CliResult wrong = t.cli.run(withKey, "bob,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n");
        INFO(args[0]);
        CHECK(wrong.code == 1);
        CHECK(wrong.err == "error: master key file '" + other.string() +
                               "' is not the key this database is sealed with (key fingerprint " +
                               otherFingerprint + ", database expects " + expected +
                               "); pass the right --master-key-file or "
                               "TWOSTEP_MASTER_KEY_FILE\n");
        CHECK_FALSE(fs::exists(t.cli.dir() / "new.key"));
        t.cli.run({"remove", "alice"});
    }
    CHECK_FALSE(t.store()->findUser("bob").has_value());

    // Commands that touch no secret work without the key.
    t.add("carol");
    const CliResult list = t.cli.run({"list", "--master-key-file", "/nonexistent"});
    CHECK(list.code == 0);
}

TEST_CASE("add prints the URI on its own line, the QR code and the next step", "[enroll][add]") {
    Initialised t;
    const CliResult r = t.cli.run({"add", "alice@example.com"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    const std::string uri = lineStartingWith(r.out, "otpauth://");
    CHECK(r.out.rfind(uri + "\n\x1b[30;47m", 0) == 0);
    CHECK(uri.rfind("otpauth://totp/twostep:alice%40example.com?secret=", 0) == 0);
    CHECK(queryParam(uri, "issuer") == "twostep");
    CHECK(queryParam(uri, "algorithm") == "SHA1");
    CHECK(queryParam(uri, "digits") == "6");
    CHECK(queryParam(uri, "period") == "30");
    CHECK(queryParam(uri, "secret").size() == 32);  // 160 bits
    CHECK(r.out.find("\u2580") != std::string::npos);
    CHECK(r.out.find("scan it with an authenticator app, then run: twostep-enroll confirm "
                     "alice@example.com CODE\n") != std::string::npos);
    // The secret never reaches the database unsealed.
    const auto user = t.user("alice@example.com");
    CHECK(user.state == twostep::core::UserState::Pending);
    CHECK(user.sealedSecret.find(queryParam(uri, "secret")) == std::string::npos);

    // Two adds of the same secret-less run differ: secrets come from the CSPRNG.
    CHECK(queryParam(t.add("bob"), "secret") != queryParam(uri, "secret"));
}

TEST_CASE("add takes parameters, an imported secret, --active and --json", "[enroll][add]") {
    Initialised t;
    const CliResult r = t.cli.run({"add", "alice", "--issuer", "prod cluster", "--algorithm",
                                   "sha256", "--digits=8", "--period", "60", "--secret",
                                   "jbsw y3dp ehpk 3pxp jbsw y3dp ehpk 3pxp", "--active",
                                   "--json"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    const auto json = parseJson(r.out);
    CHECK(json.at("username") == "alice");
    CHECK(json.at("issuer") == "prod cluster");
    CHECK(json.at("state") == "active");
    CHECK(json.at("algorithm") == "SHA256");
    CHECK(json.at("digits") == 8);
    CHECK(json.at("period") == 60);
    CHECK(json.at("replaced") == false);
    CHECK(json.at("files") == nlohmann::json::array());
    const std::string uri = json.at("uri");
    CHECK(queryParam(uri, "secret") == "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP");
    CHECK(uri.rfind("otpauth://totp/prod%20cluster:alice?", 0) == 0);
    const auto user = t.user("alice");
    CHECK(user.state == twostep::core::UserState::Active);
    CHECK(user.params == twostep::core::TotpParams{twostep::core::Algorithm::Sha256, 8, 60});
    CHECK(user.issuer == "prod cluster");

    // The secret can come from stdin instead of the command line.
    const CliResult fromStdin =
        t.cli.run({"add", "bob", "--secret-file", "-", "--no-qr"},
                  "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n");
    INFO(fromStdin.err);
    REQUIRE(fromStdin.code == 0);
    CHECK(queryParam(lineStartingWith(fromStdin.out, "otpauth://"), "secret") ==
          "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ");
    CHECK(fromStdin.out.find('\x1b') == std::string::npos);
    const CliResult both = t.cli.run({"add", "carol", "--secret-file", "-", "--secret", "x"});
    CHECK(both.code == 2);
}

TEST_CASE("adding an existing user is an error unless --force", "[enroll][add]") {
    Initialised t;
    const std::string first = t.add("alice");
    const CliResult again = t.cli.run({"add", "alice", "--no-qr"});
    CHECK(again.code == 1);
    CHECK(again.out.empty());
    CHECK(again.err == "error: user 'alice' is already enrolled (pending); pass --force to "
                       "replace them, or run `twostep-enroll reset alice` for a new secret\n");
    const std::string sealed = t.user("alice").sealedSecret;

    t.store()->openGrant("alice", t.cli.clock().now() + 600, t.cli.clock().now());
    const CliResult forced = t.cli.run({"add", "alice", "--force", "--no-qr", "--json"});
    REQUIRE(forced.code == 0);
    const auto json = parseJson(forced.out);
    CHECK(json.at("replaced") == true);
    CHECK(queryParam(json.at("uri"), "secret") != queryParam(first, "secret"));
    const auto user = t.user("alice");
    CHECK(user.sealedSecret != sealed);
    CHECK_FALSE(user.hasGrant(t.cli.clock().now()));
}

TEST_CASE("add writes private PNG and SVG files", "[enroll][add]") {
    Initialised t;
    const fs::path png = t.cli.dir() / "alice.png";
    const fs::path svg = t.cli.dir() / "alice.svg";
    const CliResult r =
        t.cli.run({"add", "alice", "--no-qr", "--png", png.string(), "--svg", svg.string()});
    REQUIRE(r.code == 0);
    CHECK(modeOf(png) == 0600);
    CHECK(modeOf(svg) == 0600);
    CHECK(fs::file_size(png) > 100);
    CHECK(r.out.find("wrote the QR code to '" + png.string() +
                     "' (it holds the secret: delete it once scanned)") != std::string::npos);

    // An unwritable image path fails before anything is enrolled.
    const CliResult bad =
        t.cli.run({"add", "bob", "--png", (t.cli.dir() / "no/such/dir/x.png").string()});
    CHECK(bad.code == 1);
    CHECK(bad.err.find("cannot write '") != std::string::npos);
    CHECK_FALSE(t.store()->findUser("bob").has_value());
    CHECK(t.cli.run({"add", "bob", "--png", "x", "--svg", "x"}).code == 2);
}

TEST_CASE("confirm activates a pending user only with a current, unused code",
          "[enroll][confirm]") {
    Initialised t;
    const std::string uri = t.add("alice");

    const CliResult unknown = t.cli.run({"confirm", "bob", "123456"});
    CHECK(unknown.code == 1);
    CHECK(unknown.err == "error: user 'bob' is not enrolled (see `twostep-enroll list`)\n");

    const std::string code = t.codeFor(uri);
    const std::string wrongCode = code == "000000" ? "000001" : "000000";
    const CliResult wrong = t.cli.run({"confirm", "alice", wrongCode});
    CHECK(wrong.code == 1);
    CHECK(wrong.err == "error: the code does not match for user 'alice' (check that the phone's "
                       "clock is right and give the code shown now)\n");
    CHECK(t.user("alice").state == twostep::core::UserState::Pending);

    const CliResult malformed = t.cli.run({"confirm", "alice", "12345"});
    CHECK(malformed.code == 1);
    CHECK(malformed.err == "error: the code must be 6 digits (the number the authenticator app "
                           "shows for 'alice')\n");

    // A code two steps old is outside the window of one.
    const CliResult old = t.cli.run({"confirm", "alice", t.codeFor(uri, -60)});
    CHECK(old.code == 1);

    const CliResult ok = t.cli.run({"confirm", "alice", code});
    INFO(ok.err);
    CHECK(ok.code == 0);
    CHECK(ok.out == "user 'alice' is confirmed and active\n");
    const auto user = t.user("alice");
    CHECK(user.state == twostep::core::UserState::Active);
    CHECK(user.lastStep == t.cli.clock().now() / 30);

    const CliResult again = t.cli.run({"confirm", "alice", code});
    CHECK(again.code == 1);
    CHECK(again.err == "error: user 'alice' is active, not pending; confirm only activates a new "
                       "or reset enrolment\n");
}

TEST_CASE("confirm refuses a step already used", "[enroll][confirm]") {
    Initialised t;
    const std::string uri = t.add("alice");
    const std::int64_t step = t.cli.clock().now() / 30;
    // The user's last accepted step is the current one (e.g. set by a racing confirm).
    REQUIRE(t.store()->acceptStep("alice", step, twostep::core::UserState::Pending,
                                  t.cli.clock().now()));
    const CliResult replay = t.cli.run({"confirm", "alice", t.codeFor(uri)});
    CHECK(replay.code == 1);
    CHECK(replay.err == "error: the code for user 'alice' was already used, or the user is no "
                        "longer pending; wait for the next code and try again\n");
    t.cli.clock().advance(30);
    CHECK(t.cli.run({"confirm", "alice", t.codeFor(uri)}).code == 0);
}

TEST_CASE("list and show report state, locks, grants and recovery codes", "[enroll][list]") {
    Initialised t;
    const CliResult empty = t.cli.run({"list"});
    CHECK(empty.code == 0);
    CHECK(empty.out.empty());
    CHECK(empty.err == "no users are enrolled (add one with `twostep-enroll add USER`, or invite "
                       "one with `twostep-enroll invite USER`)\n");
    CHECK(parseJson(t.cli.run({"list", "--json"}).out) ==
          nlohmann::json{{"users", nlohmann::json::array()},
                         {"invitations", nlohmann::json::array()}});

    t.add("alice", {"--active"});
    t.add("bob", {"--digits", "8", "--algorithm", "SHA512"});
    const auto now = t.cli.clock().now();
    auto store = t.store();
    store->openGrant("alice", now + 600, now);
    const twostep::core::LockoutPolicy policy;
    for (int i = 0; i < policy.maxFailures; ++i) {
        store->recordFailure("bob", policy, now);
    }
    REQUIRE(t.cli.run({"recovery-codes", "alice", "--count", "4"}).code == 0);

    const CliResult list = t.cli.run({"list"});
    REQUIRE(list.code == 0);
    CHECK(list.out ==
          "USER   STATE    TOTP          LOCKED UNTIL          GRANT UNTIL           RECOVERY "
          "CODES\n"
          "alice  active   SHA1/6/30s    -                     2023-11-14T22:23:20Z  4\n"
          "bob    pending  SHA512/8/30s  2023-11-14T22:14:20Z  -                     0\n");

    const auto json = parseJson(t.cli.run({"list", "--json"}).out);
    REQUIRE(json.at("users").size() == 2);
    const auto& alice = json.at("users").at(0);
    CHECK(alice.at("username") == "alice");
    CHECK(alice.at("grant_open") == true);
    CHECK(alice.at("grant_until") == "2023-11-14T22:23:20Z");
    CHECK(alice.at("locked") == false);
    CHECK(alice.at("locked_until") == nullptr);
    CHECK(alice.at("recovery_codes_left") == 4);
    const auto& bob = json.at("users").at(1);
    CHECK(bob.at("state") == "pending");
    CHECK(bob.at("locked") == true);
    CHECK(bob.at("locked_until") == "2023-11-14T22:14:20Z");
    CHECK(bob.at("failures").is_number_integer());
    CHECK(bob.at("digits") == 8);
    CHECK(bob.at("algorithm") == "SHA512");
    CHECK(json.dump().find("secret") == std::string::npos);

    auto shown = parseJson(t.cli.run({"show", "bob", "--json"}).out);
    CHECK(shown.at("invitation") == nullptr);
    CHECK(shown.at("pending_enrollment") == nullptr);
    shown.erase("invitation");
    shown.erase("pending_enrollment");
    CHECK(shown == bob);
    const CliResult show = t.cli.run({"show", "alice"});
    CHECK(show.code == 0);
    CHECK(show.out.find("grant until:     2023-11-14T22:23:20Z\n") != std::string::npos);
    CHECK(show.out.find("recovery codes:  4 left\n") != std::string::npos);
    CHECK(t.cli.run({"show", "nobody"}).err ==
          "error: user 'nobody' is not enrolled (see `twostep-enroll list`)\n");

    // Expired locks and grants are shown as none.
    t.cli.clock().advance(3600);
    const auto later = parseJson(t.cli.run({"list", "--json"}).out);
    CHECK(later.at("users").at(0).at("grant_open") == false);
    CHECK(later.at("users").at(1).at("locked") == false);
}

TEST_CASE("unlock clears a lockout and revoke ends a grant", "[enroll][grant]") {
    Initialised t;
    t.add("alice", {"--active"});
    const auto now = t.cli.clock().now();
    const twostep::core::LockoutPolicy policy;
    for (int i = 0; i < policy.maxFailures; ++i) {
        t.store()->recordFailure("alice", policy, now);
    }
    REQUIRE(t.user("alice").isLocked(now));
    const CliResult unlock = t.cli.run({"unlock", "alice"});
    CHECK(unlock.code == 0);
    CHECK(unlock.out == "user 'alice' is unlocked (was locked until 2023-11-14T22:14:20Z); "
                        "failures reset\n");
    CHECK_FALSE(t.user("alice").isLocked(now));
    CHECK(t.user("alice").failures == 0);
    CHECK(t.cli.run({"unlock", "alice"}).out ==
          "user 'alice' was not locked; failures reset to 0\n");

    t.store()->openGrant("alice", now + 900, now);
    const CliResult revoke = t.cli.run({"revoke", "alice"});
    CHECK(revoke.code == 0);
    CHECK(revoke.out == "ended the grant of user 'alice' (it was open until "
                        "2023-11-14T22:28:20Z)\n");
    CHECK_FALSE(t.user("alice").hasGrant(now));
    CHECK(t.cli.run({"revoke", "alice"}).out == "user 'alice' had no open grant\n");

    for (const char* command : {"unlock", "revoke"}) {
        const CliResult unknown = t.cli.run({command, "bob"});
        CHECK(unknown.code == 1);
        CHECK(unknown.err == "error: user 'bob' is not enrolled (see `twostep-enroll list`)\n");
    }
}

TEST_CASE("disable, enable and remove change a user's state", "[enroll][state]") {
    Initialised t;
    t.add("alice", {"--active"});
    t.add("pending-pat");
    const auto now = t.cli.clock().now();
    t.store()->openGrant("alice", now + 900, now);

    const CliResult disable = t.cli.run({"disable", "alice"});
    CHECK(disable.code == 0);
    CHECK(t.user("alice").state == twostep::core::UserState::Disabled);
    CHECK_FALSE(t.user("alice").hasGrant(now));
    CHECK(t.cli.run({"disable", "alice"}).out == "user 'alice' is already disabled\n");

    CHECK(t.cli.run({"enable", "alice"}).out == "user 'alice' is active again\n");
    CHECK(t.user("alice").state == twostep::core::UserState::Active);
    CHECK(t.cli.run({"enable", "alice"}).out == "user 'alice' is already active\n");

    const CliResult pending = t.cli.run({"enable", "pending-pat"});
    CHECK(pending.code == 1);
    CHECK(pending.err == "error: user 'pending-pat' is pending: they become active by confirming "
                         "a code (`twostep-enroll confirm pending-pat CODE`), not by enable\n");
    CHECK(t.user("pending-pat").state == twostep::core::UserState::Pending);

    const CliResult remove = t.cli.run({"remove", "alice"});
    CHECK(remove.code == 0);
    CHECK(remove.out == "user 'alice' removed (secret, recovery codes and grant are gone)\n");
    CHECK_FALSE(t.store()->findUser("alice").has_value());
    for (const char* command : {"disable", "enable", "remove", "reset", "recovery-codes"}) {
        const CliResult unknown = t.cli.run({command, "alice"});
        INFO(command);
        CHECK(unknown.code == 1);
        CHECK(unknown.err == "error: user 'alice' is not enrolled (see `twostep-enroll list`)\n");
    }
}

TEST_CASE("reset issues a new secret and returns the user to pending", "[enroll][reset]") {
    Initialised t;
    const std::string first = t.add("alice", {"--digits", "8"});
    REQUIRE(t.cli.run({"recovery-codes", "alice"}).code == 0);
    const fs::path png = t.cli.dir() / "reset.png";
    const CliResult r = t.cli.run({"reset", "alice", "--png", png.string()});
    INFO(r.err);
    REQUIRE(r.code == 0);
    const std::string uri = lineStartingWith(r.out, "otpauth://");
    CHECK(queryParam(uri, "secret") != queryParam(first, "secret"));
    CHECK(queryParam(uri, "digits") == "8");
    CHECK(r.out.find("\x1b[30;47m") != std::string::npos);
    CHECK(r.out.find("then run: twostep-enroll confirm alice CODE") != std::string::npos);
    CHECK(fs::exists(png));
    const auto user = t.user("alice");
    CHECK(user.state == twostep::core::UserState::Pending);
    CHECK(user.recoveryCodesLeft == 0);

    const auto json = parseJson(t.cli.run({"reset", "alice", "--json"}).out);
    CHECK(json.at("state") == "pending");
    CHECK(json.at("replaced") == true);
}

TEST_CASE("recovery codes are printed once and stored hashed", "[enroll][recovery]") {
    Initialised t;
    t.add("alice", {"--active"});
    const CliResult r = t.cli.run({"recovery-codes", "alice"});
    REQUIRE(r.code == 0);
    CHECK(r.out.rfind("10 recovery codes for user 'alice'; each works once in place of a TOTP "
                      "code. They replace any earlier codes and are not shown again:\n",
                      0) == 0);
    const std::vector<std::string> codes = codesIn(r.out);
    REQUIRE(codes.size() == 10);
    CHECK(std::set<std::string>(codes.begin(), codes.end()).size() == 10);
    CHECK(t.user("alice").recoveryCodesLeft == 10);

    const CliResult fresh = t.cli.run({"recovery-codes", "alice", "--count=3"});
    REQUIRE(fresh.code == 0);
    CHECK(t.user("alice").recoveryCodesLeft == 3);
    const auto now = t.cli.clock().now();
    // The old codes are gone; a new one works exactly once.
    CHECK_FALSE(t.store()->consumeRecoveryCode("alice", codes[0], now));
    const std::vector<std::string> newCodes = codesIn(fresh.out);
    REQUIRE(newCodes.size() == 3);
    const std::string& newCode = newCodes[1];
    CHECK(t.store()->consumeRecoveryCode("alice", newCode, now));
    CHECK_FALSE(t.store()->consumeRecoveryCode("alice", newCode, now));
}

TEST_CASE("audit lists admin actions and decisions, filtered", "[enroll][audit]") {
    Initialised t;
    t.add("alice");
    t.cli.clock().advance(3600);
    t.add("bob");
    twostep::core::AuditEvent decision;
    decision.time = t.cli.clock().now();
    decision.username = "bob";
    decision.operation = "CREATE";
    decision.resource = "apps/v1/deployments";
    decision.nameSpace = "demo";
    decision.name = "web";
    decision.decision = "deny";
    decision.reason = "wrong_code";
    decision.uid = "705ab4f5-6393-11e8-b7cc-42010a800002";
    t.store()->appendAudit(decision);
    t.cli.env()["SUDO_USER"] = "admin-ann";
    REQUIRE(t.cli.run({"disable", "alice"}).code == 0);

    const CliResult all = t.cli.run({"audit"});
    REQUIRE(all.code == 0);
    CHECK(all.out.find("TIME ") == 0);
    CHECK(words(all.out, "2023-11-14T23:13:20Z  bob  ") ==
          std::vector<std::string>{"2023-11-14T23:13:20Z", "bob", "CREATE", "apps/v1/deployments",
                                   "demo/web", "deny", "wrong_code"});
    CHECK(all.out.find("enroll:disable  by admin-ann") != std::string::npos);

    const auto json = parseJson(t.cli.run({"audit", "--json"}).out);
    const auto& events = json.at("events");
    // init, add alice, add bob, the decision, disable; newest first.
    REQUIRE(events.size() == 5);
    CHECK(events.at(0).at("operation") == "enroll:disable");
    CHECK(events.at(0).at("decision") == "admin");
    CHECK(events.at(0).at("reason") == "admin_action");
    CHECK(events.at(0).at("name") == "admin-ann");
    const auto& denied = events.at(1);
    CHECK(denied.at("username") == "bob");
    CHECK(denied.at("operation") == "CREATE");
    CHECK(denied.at("resource") == "apps/v1/deployments");
    CHECK(denied.at("sub_resource") == "");
    CHECK(denied.at("namespace") == "demo");
    CHECK(denied.at("name") == "web");
    CHECK(denied.at("decision") == "deny");
    CHECK(denied.at("reason") == "wrong_code");
    CHECK(denied.at("uid") == "705ab4f5-6393-11e8-b7cc-42010a800002");
    CHECK(denied.at("time") == "2023-11-14T23:13:20Z");
    CHECK(denied.at("id").is_number_integer());
    CHECK(events.at(4).at("operation") == "enroll:init");

    const auto count = [&](std::vector<std::string> args) {
        args.insert(args.begin(), "audit");
        args.push_back("--json");
        const CliResult r = t.cli.run(args);
        INFO(r.err);
        REQUIRE(r.code == 0);
        return parseJson(r.out).at("events").size();
    };
    CHECK(count({"--user", "bob"}) == 2);
    CHECK(count({"--user", "nobody"}) == 0);
    CHECK(count({"--since", "30m"}) == 3);
    CHECK(count({"--until", "30m"}) == 2);
    CHECK(count({"--since", "2023-11-14T23:13:20Z", "--until", "2023-11-14T23:13:21Z"}) == 3);
    CHECK(count({"--since", "2023-11-14T23:00:00Z", "--until", "2023-11-14T23:13:20Z"}) == 0);
    CHECK(count({"--until", "2023-11-14"}) == 0);
    CHECK(count({"--limit", "2"}) == 2);

    const CliResult none = t.cli.run({"audit", "--user", "nobody"});
    CHECK(none.code == 0);
    CHECK(none.out.empty());
    CHECK(none.err == "no audit events match\n");
}

TEST_CASE("import enrols every row as active, from a file or stdin", "[enroll][import]") {
    Initialised t;
    const fs::path csv = t.cli.dir() / "users.csv";
    {
        std::ofstream out(csv);
        out << "username,secret,algorithm,digits,period\n"
               "alice,JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP\n"
               "\"bob, ops\",GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ,SHA256,8,60\n";
    }
    const CliResult r = t.cli.run({"import", csv.string(), "--issuer", "prod"});
    INFO(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.out == "imported 2 users as active from '" + csv.string() + "'\n");
    const auto bob = t.user("bob, ops");
    CHECK(bob.state == twostep::core::UserState::Active);
    CHECK(bob.issuer == "prod");
    CHECK(bob.params == twostep::core::TotpParams{twostep::core::Algorithm::Sha256, 8, 60});

    // The imported secret is the one in the file: oathtool's code for it verifies.
    const twostep::core::Sealer sealer(twostep::core::MasterKey::fromFile(t.cli.key()));
    const auto secret = sealer.open(t.user("alice").sealedSecret, "alice");
    const std::string code = twostep::test::oathtoolTotp(
        "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP", twostep::test::OathtoolKey::Base32, "SHA1", 6, 30,
        t.cli.clock().now());
    CHECK(twostep::core::verifyTotp(secret, code, {}, t.cli.clock().now(), 0).check ==
          twostep::core::CodeCheck::Matched);

    const CliResult fromStdin = t.cli.run({"import", "-"}, "carol,GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ\n");
    CHECK(fromStdin.code == 0);
    CHECK(fromStdin.out == "imported 1 user as active from 'standard input'\n");
    CHECK(t.user("carol").state == twostep::core::UserState::Active);
}

TEST_CASE("import is all or nothing and names the first bad line", "[enroll][import]") {
    Initialised t;
    t.add("alice");
    const auto usersBefore = t.store()->listUsers().size();
    const std::string good = "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ";
    const auto fails = [&](const std::string& csv, const std::string& message) {
        const CliResult r = t.cli.run({"import", "-"}, csv);
        INFO(csv);
        CHECK(r.code == 1);
        CHECK(r.err == message);
        CHECK(t.store()->listUsers().size() == usersBefore);
    };
    fails("u1," + good + "\nu2," + good + "\nu3,not-base32!\n",
          "error: standard input: line 3: secret is not valid base32 (letters A-Z and digits "
          "2-7); nothing was imported\n");
    fails("u1," + good + "\nu2," + good + "\nu1," + good + "\n",
          "error: standard input: line 3: user 'u1' appears twice (first on line 1); nothing "
          "was imported\n");
    fails("u1," + good + "\nalice," + good + "\n",
          "error: standard input: line 2: user 'alice' is already enrolled (leave the line out, "
          "or remove the user first); nothing was imported\n");
    fails("", "error: standard input: the file holds no users to import (expected rows of "
              "username,secret[,algorithm,digits,period]); nothing was imported\n");

    const CliResult missing = t.cli.run({"import", (t.cli.dir() / "nope.csv").string()});
    CHECK(missing.code == 1);
    CHECK(missing.err == "error: cannot read '" + (t.cli.dir() / "nope.csv").string() +
                             "': No such file or directory\n");
    CHECK(t.cli.run({"import"}).code == 2);
}

TEST_CASE("rotate-key re-seals every secret under a new key", "[enroll][rotate]") {
    Initialised t;
    const std::string uri = t.add("alice");
    t.add("bob", {"--active"});
    const fs::path newKey = t.cli.dir() / "keys/new.key";
    fs::create_directories(newKey.parent_path());
    const CliResult r = t.cli.run({"rotate-key", "--new-master-key-file", newKey.string()});
    INFO(r.err);
    REQUIRE(r.code == 0);
    const std::string fingerprint = twostep::core::MasterKey::fromFile(newKey).fingerprint();
    CHECK(modeOf(newKey) == 0600);
    CHECK(r.out.rfind("re-sealed 2 secrets under the new key created in '" + newKey.string() +
                          "' (fingerprint " + fingerprint + ")\n",
                      0) == 0);
    CHECK(t.store()->keyFingerprint() == fingerprint);

    // The old key is now refused; the new one opens the secrets (confirm works).
    const CliResult old = t.cli.run({"confirm", "alice", t.codeFor(uri)});
    CHECK(old.code == 1);
    CHECK(old.err.find("is not the key this database is sealed with") != std::string::npos);
    t.cli.env()["TWOSTEP_MASTER_KEY_FILE"] = newKey.string();
    const CliResult confirmed = t.cli.run({"confirm", "alice", t.codeFor(uri)});
    INFO(confirmed.err);
    CHECK(confirmed.code == 0);

    // Rotating to the current key is refused.
    const CliResult same = t.cli.run({"rotate-key", "--new-master-key-file", newKey.string()});
    CHECK(same.code == 1);
    CHECK(same.err == "error: '" + newKey.string() +
                          "' holds the current master key; rotate-key needs a different key "
                          "(give a path that does not exist yet and a new key is made there)\n");
}

TEST_CASE("rotate-key accepts a prepared key file but not a loose one", "[enroll][rotate]") {
    Initialised t;
    t.add("alice");
    const fs::path prepared = t.cli.dir() / "prepared.key";
    twostep::core::MasterKey::generate().writeNewFile(prepared);
    fs::permissions(prepared, fs::perms::group_read, fs::perm_options::add);
    const CliResult loose = t.cli.run({"rotate-key", "--new-master-key-file", prepared.string()});
    CHECK(loose.code == 1);
    CHECK(loose.err.find("0640") != std::string::npos);
    fs::permissions(prepared, fs::perms::group_read, fs::perm_options::remove);
    const CliResult ok = t.cli.run({"rotate-key", "--new-master-key-file", prepared.string()});
    INFO(ok.err);
    CHECK(ok.code == 0);
    CHECK(ok.out.rfind("re-sealed 1 secret under the key in '" + prepared.string(), 0) == 0);
}

TEST_CASE("a failed rotate-key changes nothing and the old key still works", "[enroll][rotate]") {
    Initialised t;
    const std::string uri = t.add("alice");
    t.add("bob", {"--active"});
    const auto before = t.user("alice").sealedSecret;
    const auto fingerprint = t.store()->keyFingerprint();
    // A row that no key opens (tampered data) makes the re-seal fail midway.
    twostep::core::NewUser broken{"mallory", std::string("\x01garbage-not-a-sealed-secret"),
                                  "twostep", {}, twostep::core::UserState::Active};
    REQUIRE(t.store()->addUser(broken, t.cli.clock().now(), false));

    const fs::path newKey = t.cli.dir() / "new.key";
    const CliResult r = t.cli.run({"rotate-key", "--new-master-key-file", newKey.string()});
    CHECK(r.code == 1);
    CHECK(r.err.rfind("error: key rotation failed and nothing was changed (the old key still "
                      "opens every secret): ",
                      0) == 0);
    CHECK(r.err.find("mallory") != std::string::npos);
    CHECK_FALSE(fs::exists(newKey));
    CHECK(t.store()->keyFingerprint() == fingerprint);
    CHECK(t.user("alice").sealedSecret == before);
    const CliResult confirmed = t.cli.run({"confirm", "alice", t.codeFor(uri)});
    INFO(confirmed.err);
    CHECK(confirmed.code == 0);
}

TEST_CASE("global options work before or after the command and beat the environment",
          "[enroll][usage]") {
    Initialised t;
    t.add("alice");
    EnrollCli other;
    REQUIRE(other.run({"init"}).code == 0);
    // `other` points at its own database through the environment; flags redirect it.
    const auto users = [&](std::vector<std::string> args) {
        const CliResult r = other.run(args);
        INFO(r.err);
        REQUIRE(r.code == 0);
        return parseJson(r.out).at("users").size();
    };
    CHECK(users({"list", "--json"}) == 0);
    CHECK(users({"--db", t.cli.db().string(), "list", "--json"}) == 1);
    CHECK(users({"list", "--json", "--db=" + t.cli.db().string()}) == 1);
    CHECK(users({"list", "--json", "--db", "sqlite:" + t.cli.db().string()}) == 1);
}

TEST_CASE("invite, list, show and uninvite self-enrolment windows", "[enroll][invite]") {
    Initialised t;
    const auto now = t.cli.clock().now();  // 2023-11-14T22:13:20Z
    const CliResult invited = t.cli.run({"invite", "carol"});
    INFO(invited.err);
    REQUIRE(invited.code == 0);
    CHECK(invited.out ==
          "invited user 'carol' to enroll until 2023-11-15T22:13:20Z\n"
          "they run `kubectl twostep enroll` as themselves: the webhook gives the new secret to "
          "them alone (you never see it)\n");
    const auto invitation = t.store()->findInvitation("carol");
    REQUIRE(invitation);
    CHECK(invitation->expiresAt == now + 86400);
    CHECK_FALSE(invitation->invitedBy.empty());

    // An enrolled user keeps their secret until they confirm a new one; --ttl sets the window.
    t.add("alice", {"--active"});
    const CliResult again = t.cli.run({"invite", "alice", "--ttl", "30m"});
    REQUIRE(again.code == 0);
    CHECK(again.out.find("until 2023-11-14T22:43:20Z\n") != std::string::npos);
    CHECK(again.out.find("their current secret keeps working until they confirm the new one\n") !=
          std::string::npos);

    // A secret alice began waits for its first code: list and show say so.
    twostep::core::PendingEnrollment pending;
    pending.username = "alice";
    pending.sealedSecret = "sealed";
    pending.issuer = "twostep";
    pending.invited = true;
    REQUIRE(t.store()->beginEnrollment(pending, now));
    const CliResult list = t.cli.run({"list"});
    REQUIRE(list.code == 0);
    CHECK(list.out.find("\n\n"
                        "INVITED  UNTIL                 BY") != std::string::npos);
    CHECK(list.out.find("alice    2023-11-14T22:43:20Z") != std::string::npos);
    CHECK(list.out.find("waiting for its first code\n") != std::string::npos);
    CHECK(list.out.find("carol    2023-11-15T22:13:20Z") != std::string::npos);
    const auto json = parseJson(t.cli.run({"list", "--json"}).out);
    REQUIRE(json.at("invitations").size() == 2);
    CHECK(json.at("invitations").at(0).at("username") == "alice");
    CHECK(json.at("invitations").at(0).at("pending_enrollment").at("expires_at") ==
          "2023-11-14T22:43:20Z");
    CHECK(json.at("invitations").at(1).at("pending_enrollment") == nullptr);
    CHECK(json.dump().find("sealed") == std::string::npos);

    const CliResult show = t.cli.run({"show", "alice"});
    CHECK(show.out.find("clock drift:     0\n") != std::string::npos);
    CHECK(show.out.find("invitation:      open until 2023-11-14T22:43:20Z (by ") !=
          std::string::npos);
    CHECK(show.out.find("new secret:      waits for its first code until 2023-11-14T22:43:20Z\n") !=
          std::string::npos);
    // An invited user who is not enrolled yet can be shown too.
    const CliResult carol = t.cli.run({"show", "carol"});
    REQUIRE(carol.code == 0);
    CHECK(carol.out.find("state:       not enrolled\n") != std::string::npos);
    const auto carolJson = parseJson(t.cli.run({"show", "carol", "--json"}).out);
    CHECK(carolJson.at("state") == nullptr);
    CHECK(carolJson.at("invitation").at("expires_at") == "2023-11-15T22:13:20Z");

    // uninvite ends it and discards the pending secret.
    const CliResult ended = t.cli.run({"uninvite", "alice"});
    REQUIRE(ended.code == 0);
    CHECK(ended.out == "ended the invitation of user 'alice' (a secret they began and did not "
                       "confirm is discarded)\n");
    CHECK_FALSE(t.store()->findPendingEnrollment("alice"));
    CHECK(t.store()->findUser("alice"));  // the user and their secret stay
    const CliResult none = t.cli.run({"uninvite", "alice"});
    CHECK(none.code == 1);
    CHECK(none.err == "error: user 'alice' has no open invitation (see `twostep-enroll list`)\n");

    // Expired invitations are not listed.
    t.cli.clock().advance(86400);
    CHECK(parseJson(t.cli.run({"list", "--json"}).out).at("invitations").empty());

    // Every step is in the audit log.
    const auto audit = parseJson(t.cli.run({"audit", "--json"}).out).at("events");
    std::multiset<std::string> operations;
    for (const auto& event : audit) {
        operations.insert(event.at("operation").get<std::string>());
    }
    CHECK(operations.count("enroll:invite") == 2);
    CHECK(operations.count("enroll:uninvite") == 1);
}

TEST_CASE("invite refuses bad input", "[enroll][invite]") {
    Initialised t;
    const CliResult ttl = t.cli.run({"invite", "carol", "--ttl", "90d"});
    CHECK(ttl.code == 2);
    CHECK(ttl.err.find("--ttl must be a span from 1m to 30d, like 30m, 24h or 7d, not '90d'") !=
          std::string::npos);
    CHECK(t.cli.run({"invite", "carol", "--ttl", "10s"}).code == 2);
    CHECK(t.cli.run({"invite", " carol"}).code == 2);
    t.add("dave", {"--active"});
    REQUIRE(t.cli.run({"disable", "dave"}).code == 0);
    const CliResult disabled = t.cli.run({"invite", "dave"});
    CHECK(disabled.code == 1);
    CHECK(disabled.err == "error: user 'dave' is disabled; enable them first (`twostep-enroll "
                          "enable dave`) if they are to enroll a new device\n");
    CHECK_FALSE(t.store()->findInvitation("dave"));
}

TEST_CASE("show prints the clock drift the webhook learned", "[enroll][drift]") {
    Initialised t;
    t.add("alice", {"--active"});
    const auto now = t.cli.clock().now();
    REQUIRE(t.store()->acceptStep("alice", now / 30 + 2, twostep::core::UserState::Active, now,
                                  2));
    CHECK(t.cli.run({"show", "alice"}).out.find("clock drift:     +2 steps (+60s)\n") !=
          std::string::npos);
    CHECK(parseJson(t.cli.run({"show", "alice", "--json"}).out).at("drift_steps") == 2);
    REQUIRE(t.store()->acceptStep("alice", now / 30 + 3, twostep::core::UserState::Active, now,
                                  -1));
    CHECK(t.cli.run({"show", "alice"}).out.find("clock drift:     -1 step (-30s)\n") !=
          std::string::npos);
    // A reset starts over.
    REQUIRE(t.cli.run({"reset", "alice", "--no-qr"}).code == 0);
    CHECK(t.cli.run({"show", "alice"}).out.find("clock drift:     0\n") != std::string::npos);
}
