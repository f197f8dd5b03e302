/// One client connection of the event-driven server: TLS (TlsTransport) under an HTTP/1.1 codec
/// (RequestParser) on an event loop. Requests on a connection are answered one at a time, in
/// order (pipelined ones wait in the input buffer); every phase has its deadline.
#pragma once

#include <Poco/Net/StreamSocket.h>

#include <chrono>
#include <cstdint>
#include <list>
#include <memory>
#include <optional>
#include <string>

#include "core/Policy.hpp"
#include "http/EventLoop.hpp"
#include "http/RequestParser.hpp"
#include "http/Router.hpp"
#include "http/TlsTransport.hpp"

namespace twostep::http {

class ConnectionManager;

/// Owned by its loop's ConnectionManager, deleted through EventLoop::deferDelete, so a callback
/// may close its own connection. Loop thread only.
class Connection final : public EventLoop::Deferred, private EventLoop::Watcher {
public:
    using Clock = EventLoop::Clock;

    enum class Phase {
        Handshake,   ///< TLS handshake (the first request's head deadline already runs)
        Head,        ///< waiting for or reading a request's head
        Body,        ///< reading a request's body
        Processing,  ///< the request is being answered (inline or on a worker)
        Writing,     ///< the answer waits for the socket to take it
        Idle,        ///< keep-alive between requests, no byte of the next one yet
        Lingering,   ///< answered and closing: reading away what the client still sends
        Closed,
    };

    /// Takes `socket` (non-blocking) and starts the handshake. `peer` is "host:port".
    Connection(ConnectionManager& manager, std::uint64_t id, Poco::Net::StreamSocket socket,
               std::string peer, std::string peerHost);
    ~Connection() override;
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void start();

    std::uint64_t id() const { return id_; }
    Phase phase() const { return phase_; }
    Clock::time_point idleSince() const { return idleSince_; }

    /// Acts on a deadline that passed by `now` (from the manager's tick; not for Idle).
    void checkDeadlines(Clock::time_point now);
    /// The manager's idle timeout: closes an Idle connection.
    void expireIdle();
    /// The answer of work that ran on a worker.
    void complete(Response response);
    /// The server is stopping: closes the connection now when no request is in flight, else
    /// right after the current request's answer.
    void drain();

    /// The manager's bookkeeping: where the connection sits in its lists.
    std::list<std::unique_ptr<Connection>>::iterator where;

private:
    enum class After { KeepAlive, Close, Linger };

    void onReadable() noexcept override;
    void onWritable() noexcept override;

    void handshake();
    /// Reads what the socket has and parses it, until a request needs answering.
    void pump();
    void process();
    void headComplete();
    void bodyComplete();
    void dispatch(Reply reply);
    void send(Response response);
    void flush();
    void afterWrite();
    void linger();
    /// Counts the body's growth in the server's budget; false when the budget is spent.
    bool chargeBody();
    void releaseBody();
    /// Closes for not sending complete request headers in time (logged and counted).
    void cut(std::string_view why);
    void close(bool notifyPeer);
    void setPhase(Phase phase);

    ConnectionManager& manager_;
    const std::uint64_t id_;
    Poco::Net::StreamSocket socket_;
    const std::string peer_;
    const std::string peerHost_;
    TlsTransport transport_;
    std::optional<EventLoop::Registration> registration_;
    RequestParser parser_;
    Phase phase_ = Phase::Handshake;

    std::string in_;          ///< decrypted bytes not parsed yet start at inPos_
    std::size_t inPos_ = 0;
    std::string out_;         ///< encrypted-to-be bytes not written yet start at outPos_
    std::size_t outPos_ = 0;
    After after_ = After::KeepAlive;
    bool keepAlive_ = true;
    bool draining_ = false;
    bool pumping_ = false;  ///< inside pump()
    std::optional<core::Endpoint> endpoint_;
    std::size_t bodyCharged_ = 0;  ///< body bytes counted in ServerContext::bufferedBodies

    Clock::time_point headDeadline_;  ///< handshake and request head
    Clock::time_point lastRead_;      ///< silence while a head is due is bounded too
    Clock::time_point bodyDeadline_;
    Clock::time_point writeDeadline_;
    Clock::time_point lingerStart_;
    Clock::time_point idleSince_;
};

}  // namespace twostep::http
