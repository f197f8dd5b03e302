/// Drives twostep-enroll in tests: in-process through enroll::run (injected streams, clock and
/// environment), or as the real binary with its own stdin, stdout, stderr and environment.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "EnrollApp.hpp"
#include "core/Clock.hpp"
#include "support/TempDir.hpp"

extern char** environ;

namespace twostep::test {

/// What one CLI run produced.
struct CliResult {
    int code = -1;
    std::string out;
    std::string err;
};

/// A database and key file in a fresh temp dir, and an in-process CLI pointed at them through
/// TWOSTEP_DB and TWOSTEP_MASTER_KEY_FILE.
class EnrollCli {
public:
    explicit EnrollCli(core::Seconds start = 1'700'000'000)
        : dir_("twostep-enroll"), clock_(start) {
        env_["TWOSTEP_DB"] = db().string();
        env_["TWOSTEP_MASTER_KEY_FILE"] = key().string();
    }

    std::filesystem::path db() const { return dir_ / "twostep.db"; }
    std::filesystem::path key() const { return dir_ / "master.key"; }
    const TempDir& dir() const { return dir_; }
    core::FakeClock& clock() { return clock_; }
    std::map<std::string, std::string>& env() { return env_; }

    /// Runs `twostep-enroll ARGS` in-process with `input` as standard input.
    CliResult run(const std::vector<std::string>& args, const std::string& input = "") {
        std::istringstream in(input);
        std::ostringstream out;
        std::ostringstream err;
        const enroll::Environment env{
            in, out, err, clock_, [this](std::string_view name) -> std::optional<std::string> {
                const auto it = env_.find(std::string(name));
                if (it == env_.end()) {
                    return std::nullopt;
                }
                return it->second;
            }};
        CliResult result;
        result.code = enroll::run(args, env);
        result.out = out.str();
        result.err = err.str();
        return result;
    }

private:
    TempDir dir_;
    core::FakeClock clock_;
    std::map<std::string, std::string> env_;
};

/// Runs a program (no shell) with `input` on stdin and `env` added to (or replacing entries of)
/// this process's environment; captures stdout and stderr through files in `scratch`.
inline CliResult runProgram(const std::vector<std::string>& argv, const std::string& input,
                            const std::map<std::string, std::string>& env,
                            const std::filesystem::path& scratch) {
    const auto inPath = scratch / ".stdin";
    const auto outPath = scratch / ".stdout";
    const auto errPath = scratch / ".stderr";
    {
        std::ofstream in(inPath, std::ios::binary | std::ios::trunc);
        in << input;
    }
    std::vector<std::string> envStrings;
    for (char** e = environ; *e != nullptr; ++e) {
        const std::string entry(*e);
        if (env.count(entry.substr(0, entry.find('='))) == 0) {
            envStrings.push_back(entry);
        }
    }
    for (const auto& [name, value] : env) {
        envStrings.push_back(name + "=" + value);
    }
    std::vector<char*> envp;
    for (auto& entry : envStrings) {
        envp.push_back(entry.data());
    }
    envp.push_back(nullptr);
    std::vector<std::string> argCopies = argv;
    std::vector<char*> args;
    for (auto& arg : argCopies) {
        args.push_back(arg.data());
    }
    args.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, inPath.c_str(), O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, outPath.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, errPath.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), envp.data());
    posix_spawn_file_actions_destroy(&actions);
    if (rc != 0) {
        throw std::runtime_error("cannot run " + argv[0] + ": " + std::strerror(rc));
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    const auto slurp = [](const std::filesystem::path& path) {
        std::ifstream file(path, std::ios::binary);
        return std::string(std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>());
    };
    CliResult result;
    result.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    result.out = slurp(outPath);
    result.err = slurp(errPath);
    return result;
}

/// The first line of `text` that starts with `prefix` (e.g. the otpauth URI in add's output).
inline std::string lineStartingWith(const std::string& text, const std::string& prefix) {
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.rfind(prefix, 0) == 0) {
            return line;
        }
    }
    return {};
}

/// The value of query parameter `name` in a URI ("" when absent).
inline std::string queryParam(const std::string& uri, const std::string& name) {
    const std::size_t query = uri.find('?');
    if (query == std::string::npos) {
        return {};
    }
    std::istringstream params(uri.substr(query + 1));
    std::string pair;
    while (std::getline(params, pair, '&')) {
        if (pair.rfind(name + "=", 0) == 0) {
            return pair.substr(name.size() + 1);
        }
    }
    return {};
}

}  // namespace twostep::test
