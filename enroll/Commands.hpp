/// The subcommands of twostep-enroll, one function each; EnrollApp parses and dispatches.
#pragma once

#include <string>
#include <string_view>

#include "CommandLine.hpp"
#include "EnrollApp.hpp"

namespace twostep::enroll {

/// One parsed command line, with the global settings resolved (flag, then environment, then
/// default).
struct Invocation {
    const Environment& env;
    std::string_view command;
    ParsedArgs args;
    std::string db;
    std::string masterKeyFile;

    /// The i-th positional argument (the dispatcher has checked the count).
    const std::string& arg(std::size_t i) const { return args.positionals.at(i); }
};

/// Each returns the exit status, or throws UsageError (exit 2) or another exception (exit 1).
int cmdInit(const Invocation& inv);
int cmdAdd(const Invocation& inv);
int cmdImport(const Invocation& inv);
int cmdConfirm(const Invocation& inv);
int cmdList(const Invocation& inv);
int cmdShow(const Invocation& inv);
int cmdDisable(const Invocation& inv);
int cmdEnable(const Invocation& inv);
int cmdRemove(const Invocation& inv);
int cmdReset(const Invocation& inv);
int cmdUnlock(const Invocation& inv);
int cmdRevoke(const Invocation& inv);
int cmdRecoveryCodes(const Invocation& inv);
int cmdAudit(const Invocation& inv);
int cmdRotateKey(const Invocation& inv);
int cmdInvite(const Invocation& inv);
int cmdUninvite(const Invocation& inv);

}  // namespace twostep::enroll
