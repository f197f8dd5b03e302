// ConnectionWatchdog over real sockets (socketpair): a connection past its deadline is shut down
// (its peer reads EOF), one whose headers are complete is left alone, and a finished request
// gives the connection the keep-alive timeout plus the header timeout.
#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "http/ConnectionWatchdog.hpp"

using twostep::http::ConnectionWatchdog;
using namespace std::chrono_literals;

namespace {

/// Both ends of a connected pair of UNIX stream sockets, closed on destruction.
class SocketPair {
public:
    SocketPair() {
        if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds_) != 0) {
            throw std::runtime_error("socketpair failed");
        }
    }
    ~SocketPair() {
        ::close(fds_[0]);
        ::close(fds_[1]);
    }
    SocketPair(const SocketPair&) = delete;
    SocketPair& operator=(const SocketPair&) = delete;

    int server() const { return fds_[0]; }

    /// Whether the client end reads EOF (the server end was shut down) within `limit`.
    bool clientSeesEof(std::chrono::milliseconds limit) const {
        pollfd ready{fds_[1], POLLIN, 0};
        if (::poll(&ready, 1, static_cast<int>(limit.count())) != 1) {
            return false;
        }
        char byte = 0;
        return ::recv(fds_[1], &byte, 1, MSG_DONTWAIT) == 0;
    }

private:
    int fds_[2] = {-1, -1};
};

/// The peers the watchdog reported as cut.
struct Cuts {
    std::mutex mutex;
    std::vector<std::string> peers;

    ConnectionWatchdog::CutCallback callback() {
        return [this](const std::string& peer) {
            const std::lock_guard lock(mutex);
            peers.push_back(peer);
        };
    }
    std::vector<std::string> get() {
        const std::lock_guard lock(mutex);
        return peers;
    }
};

}  // namespace

TEST_CASE("the watchdog cuts a connection without complete headers after the header timeout",
          "[watchdog]") {
    Cuts cuts;
    ConnectionWatchdog watchdog(300ms, 1000ms, cuts.callback(), 20ms);
    SocketPair pair;
    const auto start = std::chrono::steady_clock::now();
    const ConnectionWatchdog::Registration registration(watchdog, pair.server(), "10.0.0.1:4242");
    CHECK_FALSE(pair.clientSeesEof(200ms));
    REQUIRE(pair.clientSeesEof(1000ms));
    CHECK(std::chrono::steady_clock::now() - start >= 300ms);
    // The callback runs right after the cut, once.
    std::this_thread::sleep_for(100ms);
    CHECK(cuts.get() == std::vector<std::string>{"10.0.0.1:4242"});
}

TEST_CASE("the watchdog leaves a request whose headers are complete alone", "[watchdog]") {
    Cuts cuts;
    ConnectionWatchdog watchdog(200ms, 1000ms, cuts.callback(), 20ms);
    SocketPair pair;
    ConnectionWatchdog::Registration registration(watchdog, pair.server(), "peer");
    registration.headersComplete();
    CHECK_FALSE(pair.clientSeesEof(600ms));
    CHECK(cuts.get().empty());
}

TEST_CASE("after a request, the next headers are due within idle plus header timeout",
          "[watchdog]") {
    Cuts cuts;
    ConnectionWatchdog watchdog(200ms, 400ms, cuts.callback(), 20ms);
    SocketPair pair;
    ConnectionWatchdog::Registration registration(watchdog, pair.server(), "peer");
    registration.headersComplete();
    registration.requestDone();
    const auto start = std::chrono::steady_clock::now();
    CHECK_FALSE(pair.clientSeesEof(450ms));  // past the header timeout alone
    REQUIRE(pair.clientSeesEof(1000ms));
    CHECK(std::chrono::steady_clock::now() - start >= 600ms);
    std::this_thread::sleep_for(100ms);
    CHECK(cuts.get().size() == 1);
}

TEST_CASE("the current registration is the calling thread's, for the registration's lifetime",
          "[watchdog]") {
    ConnectionWatchdog watchdog(10s, 10s, {});
    SocketPair pair;
    CHECK(ConnectionWatchdog::current() == nullptr);
    {
        ConnectionWatchdog::Registration registration(watchdog, pair.server(), "peer");
        CHECK(ConnectionWatchdog::current() == &registration);
        std::atomic<bool> elsewhere{true};
        std::thread other([&] { elsewhere = ConnectionWatchdog::current() != nullptr; });
        other.join();
        CHECK_FALSE(elsewhere.load());
    }
    CHECK(ConnectionWatchdog::current() == nullptr);
    CHECK_FALSE(pair.clientSeesEof(0ms));  // unregistered connections are never cut
}
