#include "CommandLine.hpp"

#include <algorithm>
#include <charconv>

namespace twostep::enroll {

bool ParsedArgs::has(std::string_view name) const {
    return flags.find(name) != flags.end() || values.find(name) != values.end();
}

std::optional<std::string> ParsedArgs::value(std::string_view name) const {
    const auto it = values.find(name);
    if (it == values.end()) {
        return std::nullopt;
    }
    return it->second;
}

ParsedArgs parseArgs(std::span<const std::string> args, std::span<const OptionSpec> specs,
                     std::string_view context, bool stopAtPositional,
                     std::vector<std::string>* rest) {
    ParsedArgs parsed;
    bool optionsEnded = false;
    for (std::size_t i = 0; i < args.size(); ++i) {
        const std::string& arg = args[i];
        const bool isOption = !optionsEnded && arg.size() > 1 && arg[0] == '-';
        if (!isOption) {
            if (stopAtPositional) {
                if (rest != nullptr) {
                    rest->assign(args.begin() + static_cast<std::ptrdiff_t>(i), args.end());
                }
                return parsed;
            }
            parsed.positionals.push_back(arg);
            continue;
        }
        if (arg == "--") {
            optionsEnded = true;
            continue;
        }
        if (arg == "-h") {
            parsed.flags.insert("help");
            continue;
        }
        if (arg.rfind("--", 0) != 0) {
            throw UsageError("unknown option '" + arg + "' for " + std::string(context) +
                             " (options are long, like --help)");
        }
        const std::size_t equals = arg.find('=');
        const std::string name = arg.substr(2, equals == std::string::npos ? std::string::npos
                                                                           : equals - 2);
        const auto spec = std::find_if(specs.begin(), specs.end(),
                                       [&](const OptionSpec& s) { return s.name == name; });
        if (spec == specs.end()) {
            throw UsageError("unknown option '--" + name + "' for " + std::string(context));
        }
        if (!spec->takesValue) {
            if (equals != std::string::npos) {
                throw UsageError("option '--" + name + "' takes no value");
            }
            parsed.flags.insert(name);
            continue;
        }
        if (equals != std::string::npos) {
            parsed.values[name] = arg.substr(equals + 1);
            continue;
        }
        if (i + 1 >= args.size()) {
            throw UsageError("option '--" + name + "' needs a value (--" + name + " " +
                             std::string(spec->valueName.empty() ? "VALUE" : spec->valueName) +
                             ")");
        }
        parsed.values[name] = args[++i];
    }
    if (stopAtPositional && rest != nullptr) {
        rest->clear();
    }
    return parsed;
}

int parseIntOption(std::string_view text, std::string_view what, int min, int max) {
    int value = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end || value < min || value > max) {
        throw UsageError(std::string(what) + " must be a whole number from " +
                         std::to_string(min) + " to " + std::to_string(max) + ", not '" +
                         std::string(text) + "'");
    }
    return value;
}

}  // namespace twostep::enroll
