/// Runs the real twostep-webhook binary for a test: its own process, stdout and stderr captured
/// by reader threads (so the pipes never fill), signals, and a bounded wait for its exit.
#pragma once

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace twostep::test {

using namespace std::chrono_literals;

/// The webhook (or any server) as a child process. Killed with SIGKILL if still running when
/// destroyed.
class ServerProcess {
public:
    /// Starts `argv[0]` (a path) with `argv` and the current environment plus `env`.
    explicit ServerProcess(const std::vector<std::string>& argv,
                           const std::map<std::string, std::string>& env = {}) {
        int out[2];
        int err[2];
        if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0) {
            throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
        }
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_adddup2(&actions, out[1], STDOUT_FILENO);
        posix_spawn_file_actions_adddup2(&actions, err[1], STDERR_FILENO);
        posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
        // The test process may have blocked signals; the server must start with a clean mask.
        posix_spawnattr_t attributes;
        posix_spawnattr_init(&attributes);
        sigset_t none;
        sigemptyset(&none);
        posix_spawnattr_setsigmask(&attributes, &none);
        posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETSIGMASK);

        std::vector<std::string> copies = argv;
        std::vector<char*> args;
        for (std::string& arg : copies) {
            args.push_back(arg.data());
        }
        args.push_back(nullptr);
        std::vector<std::string> envStrings;
        for (char** e = environ; *e != nullptr; ++e) {
            const std::string entry(*e);
            const std::string name = entry.substr(0, entry.find('='));
            if (name.rfind("TWOSTEP_", 0) != 0 && env.count(name) == 0) {
                envStrings.push_back(entry);  // TWOSTEP_* only from `env`: hermetic flags
            }
        }
        for (const auto& [name, value] : env) {
            envStrings.push_back(name + "=" + value);
        }
        std::vector<char*> envp;
        for (std::string& entry : envStrings) {
            envp.push_back(entry.data());
        }
        envp.push_back(nullptr);

        const int rc = posix_spawn(&pid_, args[0], &actions, &attributes, args.data(), envp.data());
        posix_spawn_file_actions_destroy(&actions);
        posix_spawnattr_destroy(&attributes);
        ::close(out[1]);
        ::close(err[1]);
        if (rc != 0) {
            ::close(out[0]);
            ::close(err[0]);
            throw std::runtime_error("cannot start " + argv[0] + ": " + std::strerror(rc));
        }
        outReader_ = std::thread([this, fd = out[0]] { collect(fd, out_); });
        errReader_ = std::thread([this, fd = err[0]] { collect(fd, err_); });
    }

    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    ~ServerProcess() {
        if (!exitStatus_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
            }
        }
        outReader_.join();
        errReader_.join();
    }

    pid_t pid() const { return pid_; }

    /// Everything the process wrote so far.
    std::string output() const {
        const std::lock_guard lock(mutex_);
        return out_;
    }
    std::string errors() const {
        const std::lock_guard lock(mutex_);
        return err_;
    }

    /// Waits until stdout contains `text`; false on timeout or when the process ended first.
    bool waitForOutput(const std::string& text, std::chrono::milliseconds timeout) {
        std::unique_lock lock(mutex_);
        return changed_.wait_for(lock, timeout, [&] {
            return out_.find(text) != std::string::npos || outClosed_;
        }) && out_.find(text) != std::string::npos;
    }

    /// The port from the "listening on HOST:PORT" log line. @throw std::runtime_error on timeout.
    std::uint16_t waitForPort(std::chrono::milliseconds timeout = 10s) {
        const std::string marker = "listening on ";
        if (!waitForOutput(marker, timeout)) {
            throw std::runtime_error("the webhook did not start listening; stdout:\n" + output() +
                                     "\nstderr:\n" + errors());
        }
        const std::string out = output();
        const std::size_t start = out.find(marker) + marker.size();
        const std::size_t end = out.find_first_of(" \"\n", start);
        const std::string address = out.substr(start, end - start);  // 127.0.0.1:PORT, [::1]:PORT
        return static_cast<std::uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    }

    void signal(int sig) const { ::kill(pid_, sig); }

    /// The exit code once the process ended within `timeout` (-1 when killed by a signal), or
    /// nullopt when it is still running.
    std::optional<int> waitExit(std::chrono::milliseconds timeout) {
        if (exitStatus_) {
            return decode(*exitStatus_);
        }
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            int status = 0;
            const pid_t done = ::waitpid(pid_, &status, WNOHANG);
            if (done == pid_) {
                exitStatus_ = status;
                // Let the readers take the last bytes: the pipes close when the process ends.
                std::unique_lock lock(mutex_);
                changed_.wait_for(lock, 2s, [this] { return outClosed_ && errClosed_; });
                return decode(status);
            }
            if (std::chrono::steady_clock::now() >= deadline) {
                return std::nullopt;
            }
            std::this_thread::sleep_for(10ms);
        }
    }

private:
    static int decode(int status) { return WIFEXITED(status) ? WEXITSTATUS(status) : -1; }

    void collect(int fd, std::string& into) {
        char buffer[4096];
        for (;;) {
            const ssize_t got = ::read(fd, buffer, sizeof buffer);
            if (got < 0 && errno == EINTR) {
                continue;
            }
            const std::lock_guard lock(mutex_);
            if (got <= 0) {
                (&into == &out_ ? outClosed_ : errClosed_) = true;
                changed_.notify_all();
                break;
            }
            into.append(buffer, static_cast<std::size_t>(got));
            changed_.notify_all();
        }
        ::close(fd);
    }

    pid_t pid_ = 0;
    std::optional<int> exitStatus_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::string out_;
    std::string err_;
    bool outClosed_ = false;
    bool errClosed_ = false;
    std::thread outReader_;
    std::thread errReader_;
};

}  // namespace twostep::test
