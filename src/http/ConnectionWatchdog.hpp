/// Deadlines for whole phases of an HTTP connection, which POCO only bounds per read: one thread
/// shuts down the socket of a connection that has not sent complete request headers in time, so
/// a client trickling a byte now and then cannot hold a worker thread (slowloris).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_set>

namespace twostep::http {

/// Watches registered connections and cuts (::shutdown(fd, SHUT_RDWR)) those past their
/// deadline; the worker's blocked read then fails and POCO ends the connection. Thread-safe.
class ConnectionWatchdog {
public:
    using Clock = std::chrono::steady_clock;
    /// Called on the watchdog thread, after the cut, with the peer address of the connection.
    using CutCallback = std::function<void(const std::string& peer)>;

    /// The deadline of one connection, registered for its lifetime. Create and destroy it on the
    /// connection's thread, while the socket is open (so its fd cannot be reused meanwhile).
    class Registration {
    public:
        /// Starts with a header deadline: the TLS handshake and the first request's headers.
        Registration(ConnectionWatchdog& watchdog, int fd, std::string peer);
        ~Registration();
        Registration(const Registration&) = delete;
        Registration& operator=(const Registration&) = delete;

        /// The request's headers are complete: no deadline until the request is answered (the
        /// body and the review have their own limits).
        void headersComplete();
        /// The request was answered: the next request's headers are due within the keep-alive
        /// timeout plus the header timeout.
        void requestDone();

    private:
        friend class ConnectionWatchdog;

        ConnectionWatchdog& watchdog_;
        int fd_;
        std::string peer_;
        std::optional<Clock::time_point> deadline_;  ///< guarded by watchdog_.mutex_
        Registration* previous_;                     ///< the thread's current() before this one
    };

    /// Starts the watchdog thread, which checks every `period`.
    ConnectionWatchdog(std::chrono::milliseconds headerTimeout,
                       std::chrono::milliseconds idleTimeout, CutCallback onCut,
                       std::chrono::milliseconds period = std::chrono::milliseconds(200));
    /// Stops and joins the thread. Every Registration must be gone by then.
    ~ConnectionWatchdog();
    ConnectionWatchdog(const ConnectionWatchdog&) = delete;
    ConnectionWatchdog& operator=(const ConnectionWatchdog&) = delete;

    /// The registration of the connection the calling thread serves, or nullptr.
    static Registration* current() noexcept;

private:
    void watch();

    const std::chrono::milliseconds headerTimeout_;
    const std::chrono::milliseconds idleTimeout_;
    const std::chrono::milliseconds period_;
    const CutCallback onCut_;
    std::mutex mutex_;
    std::condition_variable wake_;
    bool stopping_ = false;
    std::unordered_set<Registration*> connections_;
    std::thread thread_;  // last: starts after the members it uses exist
};

}  // namespace twostep::http
