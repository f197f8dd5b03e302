#include "http/ConnectionWatchdog.hpp"

#include <sys/socket.h>

#include <utility>
#include <vector>

namespace twostep::http {

namespace {

thread_local ConnectionWatchdog::Registration* currentRegistration = nullptr;

}  // namespace

ConnectionWatchdog::Registration::Registration(ConnectionWatchdog& watchdog, int fd,
                                               std::string peer)
    : watchdog_(watchdog), fd_(fd), peer_(std::move(peer)), previous_(currentRegistration) {
    {
        const std::lock_guard lock(watchdog_.mutex_);
        deadline_ = Clock::now() + watchdog_.headerTimeout_;
        watchdog_.connections_.insert(this);
    }
    currentRegistration = this;
}

ConnectionWatchdog::Registration::~Registration() {
    currentRegistration = previous_;
    const std::lock_guard lock(watchdog_.mutex_);
    watchdog_.connections_.erase(this);
}

void ConnectionWatchdog::Registration::headersComplete() {
    const std::lock_guard lock(watchdog_.mutex_);
    deadline_.reset();
}

void ConnectionWatchdog::Registration::requestDone() {
    const std::lock_guard lock(watchdog_.mutex_);
    deadline_ = Clock::now() + watchdog_.idleTimeout_ + watchdog_.headerTimeout_;
}

ConnectionWatchdog::ConnectionWatchdog(std::chrono::milliseconds headerTimeout,
                                       std::chrono::milliseconds idleTimeout, CutCallback onCut,
                                       std::chrono::milliseconds period)
    : headerTimeout_(headerTimeout),
      idleTimeout_(idleTimeout),
      period_(period),
      onCut_(std::move(onCut)),
      thread_([this] { watch(); }) {}

ConnectionWatchdog::~ConnectionWatchdog() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_all();
    thread_.join();
}

ConnectionWatchdog::Registration* ConnectionWatchdog::current() noexcept {
    return currentRegistration;
}

void ConnectionWatchdog::watch() {
    std::unique_lock lock(mutex_);
    while (!wake_.wait_for(lock, period_, [this] { return stopping_; })) {
        std::vector<std::string> cut;
        const Clock::time_point now = Clock::now();
        for (Registration* connection : connections_) {
            if (!connection->deadline_ || *connection->deadline_ > now) {
                continue;
            }
            // Under the lock, so the connection is still registered and its fd still open.
            // Not SSL_shutdown (SecureStreamSocket::shutdown): that would race the SSL_read on
            // the worker thread; a plain shutdown only makes that read fail.
            ::shutdown(connection->fd_, SHUT_RDWR);
            connection->deadline_.reset();  // cut once
            cut.push_back(connection->peer_);
        }
        if (cut.empty() || !onCut_) {
            continue;
        }
        lock.unlock();
        for (const std::string& peer : cut) {
            try {
                onCut_(peer);
            } catch (...) {
                // Logging or counting failed; the connection is cut all the same.
            }
        }
        lock.lock();
    }
}

}  // namespace twostep::http
