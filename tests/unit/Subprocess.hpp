/// Runs a real program (oathtool, openssl, ...) for a test and captures its standard output.
#pragma once

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

extern char** environ;

namespace twostep::test {

struct ProcessResult {
    bool started = false;  ///< false when the program could not be run at all (not installed)
    std::string error;     ///< why it could not be started
    int exitCode = -1;     ///< the exit status, or -1 when killed by a signal
    std::string output;    ///< everything written to standard output
};

/// Runs argv[0] (looked up in PATH) with no shell, waits for it and returns its output.
inline ProcessResult runProcess(const std::vector<std::string>& argv) {
    ProcessResult result;
    int pipeFds[2];
    if (::pipe(pipeFds) != 0) {
        result.error = std::error_code(errno, std::generic_category()).message();
        return result;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, pipeFds[1], STDOUT_FILENO);
    posix_spawn_file_actions_addclose(&actions, pipeFds[0]);
    posix_spawn_file_actions_addclose(&actions, pipeFds[1]);

    std::vector<std::string> copies = argv;
    std::vector<char*> args;
    for (std::string& arg : copies) {
        args.push_back(arg.data());
    }
    args.push_back(nullptr);

    pid_t pid = 0;
    const int rc = posix_spawnp(&pid, args[0], &actions, nullptr, args.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipeFds[1]);
    if (rc != 0) {
        ::close(pipeFds[0]);
        result.error = std::error_code(rc, std::generic_category()).message();
        return result;
    }
    result.started = true;
    char buffer[4096];
    for (;;) {
        const ssize_t got = ::read(pipeFds[0], buffer, sizeof buffer);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got <= 0) {
            break;
        }
        result.output.append(buffer, static_cast<std::size_t>(got));
    }
    ::close(pipeFds[0]);
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    result.exitCode = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return result;
}

}  // namespace twostep::test
