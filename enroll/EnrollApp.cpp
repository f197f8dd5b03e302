#include "EnrollApp.hpp"

#include <algorithm>
#include <cstdlib>
#include <iostream>
#include <vector>

#include "Commands.hpp"
#include "CommandLine.hpp"

#ifndef TWOSTEP_VERSION
#define TWOSTEP_VERSION "unknown"
#endif

namespace twostep::enroll {

namespace {

/// One subcommand: its options, how many positionals it takes, its help and its handler.
struct Command {
    std::string_view name;
    std::string_view arguments;  ///< e.g. "USER CODE"
    std::size_t minArgs;
    std::size_t maxArgs;
    std::string_view summary;
    std::string_view description;
    std::vector<OptionSpec> options;
    int (*handler)(const Invocation&);
};

const std::vector<OptionSpec>& globalOptions() {
    static const std::vector<OptionSpec> options = {
        {"db", true, "URL",
         "database: a SQLite file (or sqlite:PATH) or postgresql://...; env TWOSTEP_DB, default "
         "/var/lib/twostep/twostep.db"},
        {"master-key-file", true, "FILE",
         "the key that seals secrets (only its owner may read it); env TWOSTEP_MASTER_KEY_FILE, "
         "default /etc/twostep/master.key"},
        {"help", false, {}, "show help (also -h, and `twostep-enroll help COMMAND`)"},
        {"version", false, {}, "print the version"},
    };
    return options;
}

const OptionSpec JsonOption{"json", false, {}, "print JSON (stable field names) instead of text"};
const OptionSpec NoQrOption{"no-qr", false, {}, "do not draw the QR code in the terminal"};
const OptionSpec PngOption{"png", true, "FILE",
                           "also write the QR code as a PNG image (mode 0600: it holds the secret)"};
const OptionSpec SvgOption{"svg", true, "FILE",
                           "also write the QR code as an SVG image (mode 0600: it holds the secret)"};
const OptionSpec IssuerOption{"issuer", true, "NAME",
                              "the issuer the authenticator app shows (default: twostep)"};

const std::vector<Command>& commands() {
    static const std::vector<Command> table = {
        {"init", "", 0, 0, "create the database and a new master key file",
         "Creates the database (applying the schema migrations) and a new random master key in\n"
         "--master-key-file with mode 0600, and records the key's fingerprint in the database.\n"
         "Never overwrites an existing key file, and refuses a database already initialised\n"
         "with another key. A new database file gets mode 0600 (chown it to the webhook's\n"
         "account); missing parent directories are created (the key's with mode 0700).",
         {},
         cmdInit},
        {"add", "USER", 1, 1, "enrol a user: new secret, otpauth URI and QR code",
         "Creates USER as pending with a fresh 160-bit secret from the CSPRNG (or --secret), and\n"
         "prints the otpauth URI on a line of its own, then its QR code. The user scans it into an\n"
         "authenticator app; `confirm USER CODE` then activates them. USER is the Kubernetes\n"
         "username exactly as the API server reports it (e.g. alice@example.com).",
         {IssuerOption,
          {"algorithm", true, "ALG", "SHA1 (default), SHA256 or SHA512"},
          {"digits", true, "N", "6 (default) or 8"},
          {"period", true, "SECONDS", "time step, 1..3600 (default 30)"},
          {"secret", true, "BASE32",
           "use this secret instead of a new one (at least 128 bits; visible in `ps` and shell "
           "history: prefer --secret-file)"},
          {"secret-file", true, "FILE", "read the base32 secret from FILE (- for stdin)"},
          {"active", false, {}, "skip confirmation: the user is active at once (for imports)"},
          {"force", false, {}, "replace an existing user (old secret, grant, codes are gone)"},
          NoQrOption,
          PngOption,
          SvgOption,
          JsonOption},
         cmdAdd},
        {"import", "FILE", 1, 1, "enrol many users from CSV, all or nothing",
         "Reads CSV rows username,secret[,algorithm,digits,period] from FILE (- for stdin); a\n"
         "first line starting with 'username' is a header, blank lines are skipped, fields may\n"
         "be quoted (RFC 4180), empty optional fields take the defaults (SHA1, 6, 30). Every\n"
         "user is enrolled as active in one transaction: if any row is bad, or a user exists\n"
         "already (or twice in the file), the error names the line and nothing is imported.",
         {IssuerOption},
         cmdImport},
        {"confirm", "USER CODE", 2, 2, "activate a pending user with a current code",
         "Checks CODE against USER's secret (the current time step, plus or minus one) and, if it\n"
         "matches, makes the user active and marks that step used, in one atomic update.",
         {},
         cmdConfirm},
        {"list", "", 0, 0, "list users (state, lock, grant, recovery codes) and invitations",
         "One line per user: state, TOTP parameters (algorithm/digits/period), until when a\n"
         "lockout or an open grant lasts (- when none), and recovery codes left. Then one line\n"
         "per open invitation: until when it lasts, who made it, and whether a new secret waits\n"
         "for its first code.",
         {JsonOption},
         cmdList},
        {"show", "USER", 1, 1, "show one user",
         "The details `list` shows, for one user, and their clock drift: how many time steps\n"
         "their device is off, as learned from their last verified code (the webhook centres the\n"
         "next check on it). Also an open invitation and a secret waiting to be confirmed.",
         {JsonOption},
         cmdShow},
        {"disable", "USER", 1, 1, "deny every protected request of a user",
         "Disables USER (and ends any open grant); their secret is kept, `enable` undoes it.",
         {},
         cmdDisable},
        {"enable", "USER", 1, 1, "re-activate a disabled user",
         "Makes a disabled user active again. A pending user becomes active only by `confirm`.",
         {},
         cmdEnable},
        {"remove", "USER", 1, 1, "delete a user (no confirmation prompt)",
         "Deletes USER with their secret, recovery codes and grant. It does not ask: scripts call\n"
         "it, and `add` re-enrols a user removed by mistake. The audit log keeps their history.",
         {},
         cmdRemove},
        {"reset", "USER", 1, 1, "new secret for a user; back to pending",
         "Replaces USER's secret with a new one and returns them to pending (ending any grant,\n"
         "lockout and recovery codes); prints the new URI and QR code like `add`.",
         {NoQrOption, PngOption, SvgOption, JsonOption},
         cmdReset},
        {"unlock", "USER", 1, 1, "clear a lockout",
         "Clears USER's failure count and lockout, so codes are checked again at once.",
         {},
         cmdUnlock},
        {"revoke", "USER", 1, 1, "end a user's open grant",
         "Ends USER's grant (opened by `kubectl twostep unlock` or --grant-ttl): their next\n"
         "protected request needs a code again.",
         {},
         cmdRevoke},
        {"recovery-codes", "USER", 1, 1, "print fresh single-use recovery codes",
         "Prints N new recovery codes once and stores only their hashes; they replace any earlier\n"
         "codes. Each works once, in place of a TOTP code (e.g. a lost phone).",
         {{"count", true, "N", "how many codes, 1..100 (default 10)"}},
         cmdRecoveryCodes},
        {"audit", "", 0, 0, "show recent decisions and admin actions, newest first",
         "Lists audit events: the webhook's decisions (never the code) and this tool's actions\n"
         "(operation enroll:ACTION, decision admin, OBJECT 'by' the local account). Times are\n"
         "RFC 3339 (2024-05-01T12:00:00Z) or a span back from now (30m, 1h, 7d).",
         {{"user", true, "USER", "only this user's events"},
          {"since", true, "TIME", "events at or after TIME"},
          {"until", true, "TIME", "events before TIME"},
          {"limit", true, "N", "at most N events (default 100)"},
          JsonOption},
         cmdAudit},
        {"invite", "USER", 1, 1, "let a user enroll themselves (kubectl twostep enroll)",
         "Opens a self-enrollment window for USER: with `kubectl twostep enroll` they get a new\n"
         "secret from the webhook, in the answer to their own request, so no admin sees it. For\n"
         "a new user, or an enrolled one with a new device (their current secret keeps working\n"
         "until they confirm the new one). Inviting again renews the window and discards a\n"
         "secret begun under the old one. Check who is asking before you invite: whoever holds\n"
         "USER's Kubernetes credentials can enroll during the window.",
         {{"ttl", true, "SPAN", "how long the invitation lasts, 1m..30d (default 24h)"}},
         cmdInvite},
        {"uninvite", "USER", 1, 1, "end an invitation",
         "Ends USER's open invitation; a secret they began and have not confirmed is discarded.",
         {},
         cmdUninvite},
        {"rotate-key", "", 0, 0, "re-seal every secret under a new master key",
         "Re-seals every secret under the key in --new-master-key-file, in one transaction, and\n"
         "records its fingerprint. When FILE does not exist a new key is created there (mode\n"
         "0600); an existing FILE must be a valid key file that only its owner may read (0600\n"
         "or 0400). If anything fails, nothing changes and the old key keeps working.\n"
         "Afterwards restart the webhook with the new key: the old key no longer opens the\n"
         "database.",
         {{"new-master-key-file", true, "FILE", "the new key (created when missing)"}},
         cmdRotateKey},
    };
    return table;
}

const Command* findCommand(std::string_view name) {
    const auto& table = commands();
    const auto it = std::find_if(table.begin(), table.end(),
                                 [&](const Command& c) { return c.name == name; });
    return it == table.end() ? nullptr : &*it;
}

std::string optionLine(const OptionSpec& option) {
    std::string left = "  --" + std::string(option.name);
    if (option.takesValue) {
        // Appended piecewise: GCC 12 at -O3 warns falsely (-Wrestrict) on " " + std::string.
        left.append(" ").append(option.valueName);
    }
    if (left.size() < 28) {
        left.append(28 - left.size(), ' ');
    } else {
        left += "\n" + std::string(28, ' ');
    }
    return left + std::string(option.help) + "\n";
}

void printToolHelp(std::ostream& out) {
    out << "usage: twostep-enroll [--db URL] [--master-key-file FILE] COMMAND [ARGS] [OPTIONS]\n"
           "\n"
           "Enrols Kubernetes users for twostep's TOTP two-step verification.\n"
           "\n"
           "commands:\n";
    for (const Command& command : commands()) {
        std::string left = "  " + std::string(command.name);
        left.append(left.size() < 18 ? 18 - left.size() : 1, ' ');
        out << left << command.summary << '\n';
    }
    out << "\nglobal options (before or after the command):\n";
    for (const OptionSpec& option : globalOptions()) {
        out << optionLine(option);
    }
    out << "\nexit status: 0 success, 1 error, 2 wrong usage.\n"
           "`twostep-enroll help COMMAND` (or COMMAND --help) describes a command.\n";
}

std::string usageLine(const Command& command) {
    std::string line = "usage: twostep-enroll " + std::string(command.name);
    if (!command.arguments.empty()) {
        line.append(" ").append(command.arguments);
    }
    if (!command.options.empty()) {
        line += " [OPTIONS]";
    }
    return line;
}

void printCommandHelp(std::ostream& out, const Command& command) {
    out << usageLine(command) << "\n\n" << command.description << "\n";
    if (!command.options.empty()) {
        out << "\noptions:\n";
        for (const OptionSpec& option : command.options) {
            out << optionLine(option);
        }
    }
    out << "\nglobal options: --db URL, --master-key-file FILE (see `twostep-enroll --help`)\n";
}

std::string resolve(const ParsedArgs& args, std::string_view option, const Environment& env,
                    std::string_view variable, std::string_view fallback) {
    if (auto value = args.value(option)) {
        if (value->empty()) {
            throw UsageError("--" + std::string(option) + " is empty");
        }
        return *value;
    }
    if (auto value = env.getenv(variable); value && !value->empty()) {
        return *value;
    }
    return std::string(fallback);
}

int dispatch(const std::vector<std::string>& args, const Environment& env, std::string& hint) {
    std::vector<std::string> rest;
    ParsedArgs global = parseArgs(args, globalOptions(), "twostep-enroll", true, &rest);
    if (global.has("version")) {
        env.out << "twostep-enroll " << TWOSTEP_VERSION << '\n';
        return ExitOk;
    }
    if (rest.empty()) {
        if (global.has("help")) {
            printToolHelp(env.out);
            return ExitOk;
        }
        printToolHelp(env.err);
        return ExitUsage;
    }
    if (rest[0] == "help") {
        if (rest.size() == 1) {
            printToolHelp(env.out);
            return ExitOk;
        }
        const Command* command = findCommand(rest[1]);
        if (command == nullptr || rest.size() > 2) {
            throw UsageError(rest.size() > 2 ? "help takes one command name"
                                             : "unknown command '" + rest[1] + "'");
        }
        printCommandHelp(env.out, *command);
        return ExitOk;
    }
    const Command* command = findCommand(rest[0]);
    if (command == nullptr) {
        throw UsageError("unknown command '" + rest[0] + "'");
    }
    hint = "twostep-enroll help " + std::string(command->name);
    if (global.has("help")) {
        printCommandHelp(env.out, *command);
        return ExitOk;
    }
    std::vector<OptionSpec> specs = command->options;
    specs.insert(specs.end(), globalOptions().begin(), globalOptions().end());
    ParsedArgs parsed = parseArgs(std::span(rest).subspan(1), specs,
                                  "`twostep-enroll " + std::string(command->name) + "`");
    if (parsed.has("help")) {
        printCommandHelp(env.out, *command);
        return ExitOk;
    }
    // Global options given before the command apply unless repeated after it.
    parsed.values.insert(global.values.begin(), global.values.end());
    const std::size_t count = parsed.positionals.size();
    if (count < command->minArgs || count > command->maxArgs) {
        const std::string what = command->arguments.empty()
                                     ? "takes no arguments"
                                     : "takes " + std::string(command->arguments);
        throw UsageError("`" + std::string(command->name) + "` " + what);
    }
    if (parsed.has("version")) {
        env.out << "twostep-enroll " << TWOSTEP_VERSION << '\n';
        return ExitOk;
    }
    Invocation inv{env, command->name, std::move(parsed), "", ""};
    inv.db = resolve(inv.args, "db", env, "TWOSTEP_DB", DefaultDb);
    inv.masterKeyFile = resolve(inv.args, "master-key-file", env, "TWOSTEP_MASTER_KEY_FILE",
                                DefaultMasterKeyFile);
    return command->handler(inv);
}

}  // namespace

int run(const std::vector<std::string>& args, const Environment& env) {
    std::string hint = "twostep-enroll --help";
    try {
        return dispatch(args, env, hint);
    } catch (const UsageError& e) {
        env.err << "error: " << e.what() << " (see `" << hint << "`)\n";
        return ExitUsage;
    } catch (const std::exception& e) {
        env.err << "error: " << e.what() << '\n';
        return ExitError;
    } catch (...) {
        env.err << "error: unexpected failure (this is a bug in twostep-enroll)\n";
        return ExitError;
    }
}

int run(int argc, char** argv, std::ostream& out, std::ostream& err) {
    std::vector<std::string> args;
    for (int i = 1; i < argc; ++i) {
        args.emplace_back(argv[i]);
    }
    const core::SystemClock clock;
    const Environment env{std::cin, out, err, clock,
                          [](std::string_view name) -> std::optional<std::string> {
                              const char* value = std::getenv(std::string(name).c_str());
                              if (value == nullptr) {
                                  return std::nullopt;
                              }
                              return std::string(value);
                          }};
    return run(args, env);
}

}  // namespace twostep::enroll
