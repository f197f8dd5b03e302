/// The connections of one event loop: created from accepted sockets, kept in an idle list (in
/// the order they became idle, so the idle timeout only looks at its front) and an active list
/// (swept every tick for the other deadlines), handed to the worker pool for blocking work, and
/// drained on a graceful stop.
#pragma once

#include <openssl/ssl.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <string>
#include <unordered_map>

#include "http/EventLoop.hpp"
#include "http/Router.hpp"

namespace twostep::http {

class Connection;
class Log;
class Metrics;
class WorkerPool;

/// Limits every connection of a server shares.
struct ConnectionSettings {
    /// From accept (and from a request's first byte) until its head is complete.
    std::chrono::milliseconds headerTimeout{10'000};
    /// Longest silence before a head is complete; longest time for a whole body; longest wait
    /// for a client to take an answer.
    std::chrono::milliseconds readTimeout{10'000};
    /// A keep-alive connection with no request for this long is closed.
    std::chrono::milliseconds idleTimeout{60'000};
    std::size_t maxBody = 3 * 1024 * 1024;
    /// Bytes of request bodies being received, all connections together, before the next body
    /// byte is refused with 503: connections cost no thread, so this bounds their memory.
    std::size_t maxBufferedBodies = 32 * maxBody;
};

/// What the connections of all loops share; owned by HttpServer, outlives the managers.
struct ServerContext {
    const Router& router;
    Metrics& metrics;
    Log& log;
    SSL_CTX* tls;
    ConnectionSettings settings;
    WorkerPool& workers;
    /// Body bytes received and not yet handed to a review, all loops together.
    std::atomic<std::size_t>& bufferedBodies;
    /// Called on a loop thread each time a connection of any loop closes.
    std::function<void()> connectionClosed;
};

class ConnectionManager {
public:
    using Clock = EventLoop::Clock;

    /// Starts the loop's thread.
    ConnectionManager(ServerContext& context, std::string name);
    /// Stops the loop; connections still open are closed.
    ~ConnectionManager();
    ConnectionManager(const ConnectionManager&) = delete;
    ConnectionManager& operator=(const ConnectionManager&) = delete;

    /// Takes an accepted socket (any thread): the connection starts on the loop.
    void adopt(int fd, std::string peer, std::string peerHost);
    /// Closes idle connections now and every other one after its answer (any thread).
    void drain();

    EventLoop& loop() { return loop_; }
    ServerContext& context() { return context_; }

    // For Connection (loop thread):
    void becameIdle(Connection& connection);
    void becameActive(Connection& connection);
    /// Unlinks a closed connection and defers its deletion.
    void closed(Connection& connection);
    /// Runs `work` on a worker; the answer comes back through Connection::complete().
    void submit(Connection& connection, BlockingWork work);

private:
    void tick(Clock::time_point now);

    ServerContext& context_;
    std::list<std::unique_ptr<Connection>> active_;
    std::list<std::unique_ptr<Connection>> idle_;  ///< oldest idle first
    std::unordered_map<std::uint64_t, Connection*> waiting_;  ///< on a worker's answer
    std::uint64_t nextId_ = 1;
    bool draining_ = false;
    EventLoop loop_;  // last: its thread starts after the members it uses exist
};

}  // namespace twostep::http
