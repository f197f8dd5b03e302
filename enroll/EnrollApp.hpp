/// twostep-enroll, the admin CLI: enrols users (secrets, QR codes, recovery codes), manages their
/// state, reads the audit log and rotates the master key. main() only hands over to run().
#pragma once

#include <functional>
#include <iosfwd>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/Clock.hpp"

namespace twostep::enroll {

/// Exit statuses scripts can rely on (design §4).
inline constexpr int ExitOk = 0;
inline constexpr int ExitError = 1;  ///< the command failed (unknown user, wrong key, ...)
inline constexpr int ExitUsage = 2;  ///< the command line is wrong

/// Defaults shared with the webhook.
inline constexpr std::string_view DefaultDb = "/var/lib/twostep/twostep.db";
inline constexpr std::string_view DefaultMasterKeyFile = "/etc/twostep/master.key";

/// What a run reads and writes, injected so tests drive the CLI in-process.
struct Environment {
    std::istream& in;    ///< `import -` reads it
    std::ostream& out;   ///< results
    std::ostream& err;   ///< "error: ..." lines
    const core::Clock& clock;
    /// Looks up an environment variable (TWOSTEP_DB, TWOSTEP_MASTER_KEY_FILE, SUDO_USER).
    std::function<std::optional<std::string>(std::string_view)> getenv;
};

/// Runs one command; `args` excludes the program name. Never throws: every failure becomes a
/// lowercase "error: ..." line on `env.err` and ExitError or ExitUsage.
int run(const std::vector<std::string>& args, const Environment& env);

/// The process entry: std::cin, the process environment and the system clock.
int run(int argc, char** argv, std::ostream& out, std::ostream& err);

}  // namespace twostep::enroll
