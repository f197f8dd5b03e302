/// The HTTPS front end: a listening socket, event loops that own the connections (handshakes,
/// heads, bodies, keep-alive and answers never wait for a thread), and a bounded worker pool for
/// the work that may block on the database. Replaces POCO's HTTPServer, whose thread per
/// connection let idle keep-alive connections starve new ones (docs/architecture.md).
#pragma once

#include <Poco/Net/Context.h>
#include <Poco/Net/ServerSocket.h>

#include <atomic>
#include <condition_variable>
#include <cstddef>
#include <memory>
#include <mutex>
#include <optional>
#include <vector>

#include "http/ConnectionManager.hpp"
#include "http/EventLoop.hpp"
#include "http/WorkerPool.hpp"

namespace twostep::http {

class Log;
class Metrics;
class Router;

class HttpServer {
public:
    struct Settings {
        ConnectionSettings connection;
        int eventLoops = 1;
        int workers = 32;                     ///< threads for blocking work (--threads)
        std::size_t maxConnections = 10'000;  ///< beyond it new connections are closed at once
    };

    /// `router`, `metrics`, `log` and `tls` must outlive the server. `socket` is bound and
    /// listening; the server makes it non-blocking and closes it on stop().
    HttpServer(const Router& router, Metrics& metrics, Log& log, Poco::Net::Context::Ptr tls,
               Poco::Net::ServerSocket socket, Settings settings);
    /// Stops without waiting for connections (stop() first for a graceful stop).
    ~HttpServer();
    HttpServer(const HttpServer&) = delete;
    HttpServer& operator=(const HttpServer&) = delete;

    /// Starts accepting.
    void start();
    /// Graceful stop: closes the listening socket, closes idle connections, lets every request
    /// in flight be answered (then closes its connection), and returns when none is left. Has no
    /// time bound of its own (WebhookServer bounds it).
    void stop();

    /// Connections open now (accepted and not closed).
    std::size_t openConnections() const { return open_.load(); }

private:
    class Acceptor;
    void connectionClosed();

    Poco::Net::Context::Ptr tls_;
    Poco::Net::ServerSocket socket_;
    Settings settings_;
    Log& log_;
    Metrics& metrics_;
    std::atomic<std::size_t> open_{0};
    std::atomic<std::size_t> bufferedBodies_{0};
    std::mutex closedMutex_;
    std::condition_variable allClosed_;
    std::unique_ptr<ServerContext> context_;
    std::vector<std::unique_ptr<ConnectionManager>> managers_;
    // After the managers: destroyed first, so no worker posts to a loop that is gone.
    std::unique_ptr<WorkerPool> workers_;
    std::unique_ptr<Acceptor> acceptor_;
};

/// The CPUs this process may run on (its affinity mask; at least 1): the default number of
/// event loops.
int availableCpus();

}  // namespace twostep::http
