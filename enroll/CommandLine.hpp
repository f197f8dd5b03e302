/// A small long-option parser for a subcommand CLI: `--name`, `--name=value`, `--name value`,
/// positionals anywhere, and `--` to end options.
#pragma once

#include <map>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace twostep::enroll {

/// A mistake on the command line; the CLI reports it and exits with status 2.
class UsageError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// One long option a command accepts.
struct OptionSpec {
    std::string_view name;  ///< without the leading dashes, e.g. "digits"
    bool takesValue = false;
    std::string_view valueName = {};  ///< for help, e.g. "N"
    std::string_view help = {};
};

/// What the parser found. Later occurrences of an option override earlier ones.
struct ParsedArgs {
    std::map<std::string, std::string, std::less<>> values;
    std::set<std::string, std::less<>> flags;
    std::vector<std::string> positionals;

    bool has(std::string_view name) const;
    std::optional<std::string> value(std::string_view name) const;
};

/// Parses `args` against `specs`. With `stopAtPositional`, parsing stops at the first positional
/// (which is kept, with everything after it, in `rest`). `context` names the command in errors.
/// @throw UsageError for an unknown option, a missing value, or a value given to a flag.
ParsedArgs parseArgs(std::span<const std::string> args, std::span<const OptionSpec> specs,
                     std::string_view context, bool stopAtPositional = false,
                     std::vector<std::string>* rest = nullptr);

/// Parses a decimal integer in [min, max] for option `what`. @throw UsageError otherwise.
int parseIntOption(std::string_view text, std::string_view what, int min, int max);

}  // namespace twostep::enroll
