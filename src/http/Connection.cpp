#include "http/Connection.hpp"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <utility>

#include "http/ConnectionManager.hpp"
#include "http/Log.hpp"
#include "http/Metrics.hpp"

namespace twostep::http {

namespace {

/// Decrypted bytes taken from the socket between two parses: bounds a connection's input
/// buffer (a body is copied out as it is parsed).
constexpr std::size_t ReadBurst = 64 * 1024;
/// Lingering close after an unread body (as nginx's lingering_close): at most this long...
constexpr auto MaxLinger = std::chrono::seconds(2);
/// ...and no longer than this after the client's last bytes.
constexpr auto LingerPause = std::chrono::milliseconds(500);

constexpr std::string_view Continue = "HTTP/1.1 100 Continue\r\n\r\n";

}  // namespace

Connection::Connection(ConnectionManager& manager, std::uint64_t id,
                       Poco::Net::StreamSocket socket, std::string peer, std::string peerHost)
    : manager_(manager),
      id_(id),
      socket_(std::move(socket)),
      peer_(std::move(peer)),
      peerHost_(std::move(peerHost)),
      transport_(manager.context().tls, static_cast<int>(socket_.impl()->sockfd())),
      parser_(manager.context().settings.maxBody) {
    const Clock::time_point now = Clock::now();
    headDeadline_ = now + manager_.context().settings.headerTimeout;
    lastRead_ = now;
}

Connection::~Connection() {
    registration_.reset();  // before the socket closes
}

void Connection::start() {
    registration_.emplace(manager_.loop(), socket_, static_cast<EventLoop::Watcher&>(*this));
    handshake();
}

void Connection::setPhase(Phase phase) {
    if (phase == phase_) {
        return;
    }
    const bool wasIdle = phase_ == Phase::Idle;
    phase_ = phase;
    if (phase == Phase::Idle) {
        idleSince_ = Clock::now();
        manager_.becameIdle(*this);
    } else if (wasIdle) {
        manager_.becameActive(*this);
    }
}

void Connection::onReadable() noexcept {
    try {
        switch (phase_) {
        case Phase::Handshake: handshake(); return;
        case Phase::Head:
        case Phase::Body:
        case Phase::Idle: pump(); return;
        case Phase::Writing: flush(); return;  // TLS wanted to read before it could write
        case Phase::Lingering: linger(); return;
        case Phase::Processing:
        case Phase::Closed: return;
        }
    } catch (...) {
        close(false);  // allocation failed: nothing sensible is left to do for this client
    }
}

void Connection::onWritable() noexcept {
    try {
        if (phase_ == Phase::Handshake) {
            handshake();
        } else if (phase_ == Phase::Writing) {
            flush();
        }
    } catch (...) {
        close(false);
    }
}

void Connection::handshake() {
    lastRead_ = Clock::now();
    switch (transport_.handshake()) {
    case TlsTransport::Io::Done:
        // The first request's head is due by the deadline set at accept.
        setPhase(Phase::Head);
        registration_->watch(true, false);
        pump();  // the client may have sent its request with the handshake's last flight
        return;
    case TlsTransport::Io::WantRead: registration_->watch(true, false); return;
    case TlsTransport::Io::WantWrite: registration_->watch(false, true); return;
    case TlsTransport::Io::Closed:
    case TlsTransport::Io::Failed: close(false); return;
    }
}

void Connection::pump() {
    // An answer sent from inside this loop comes back here through afterWrite(): the loop goes
    // on with the next request instead of recursing into a new one per pipelined request.
    pumping_ = true;
    const struct Done {
        bool& flag;
        ~Done() { flag = false; }
    } done{pumping_};
    for (;;) {
        const std::size_t before = in_.size();
        const TlsTransport::Io io = transport_.read(in_, ReadBurst);
        if (in_.size() != before) {
            lastRead_ = Clock::now();
        }
        process();
        if (phase_ != Phase::Head && phase_ != Phase::Body && phase_ != Phase::Idle) {
            return;  // answering (reading resumes after the answer), or closed
        }
        switch (io) {
        case TlsTransport::Io::Done:
            if (phase_ == Phase::Idle) {
                // Every request so far is answered: more bytes, if any, make the socket
                // readable again.
                return;
            }
            continue;  // in the middle of a request: its next bytes may be there already
        case TlsTransport::Io::WantRead: return;
        case TlsTransport::Io::WantWrite:  // renegotiation, which is refused
        case TlsTransport::Io::Closed:     // the client hung up, mid-request or between them
        case TlsTransport::Io::Failed: close(false); return;
        }
    }
}

void Connection::process() {
    while (phase_ == Phase::Head || phase_ == Phase::Body || phase_ == Phase::Idle) {
        const std::size_t used = parser_.parse(std::string_view(in_).substr(inPos_));
        inPos_ += used;
        if (inPos_ == in_.size()) {
            in_.clear();
            inPos_ = 0;
        }
        if (phase_ == Phase::Idle && parser_.started()) {
            headDeadline_ = Clock::now() + manager_.context().settings.headerTimeout;
            lastRead_ = Clock::now();
            setPhase(Phase::Head);
        }
        if (phase_ == Phase::Body && !chargeBody()) {
            releaseBody();
            keepAlive_ = false;
            Response busy = manager_.context().router.refuse(
                503, "too many request bodies in flight; retry", peerHost_, endpoint_);
            busy.linger = true;  // the rest of the body is unread
            send(std::move(busy));
            return;
        }
        switch (parser_.state()) {
        case RequestParser::State::Head:
        case RequestParser::State::Body: return;  // more bytes needed
        case RequestParser::State::HeadDone: headComplete(); break;
        case RequestParser::State::Done: bodyComplete(); break;
        case RequestParser::State::Failed: {
            releaseBody();
            const Refusal& refusal = parser_.refusal();
            keepAlive_ = false;
            send(manager_.context().router.refuse(refusal.status, refusal.reason, peerHost_,
                                                  endpoint_));
            return;
        }
        }
    }
}

void Connection::headComplete() {
    keepAlive_ = parser_.keepAlive();
    const RequestHead head{parser_.head(),
                           peerHost_,
                           parser_.hasBody(),
                           parser_.framing() == BodyFraming::Length,
                           parser_.contentLength(),
                           transport_.verifiedClient()};
    Route route = manager_.context().router.route(head);
    if (route.reply) {
        dispatch(std::move(*route.reply));
        return;
    }
    endpoint_ = route.review;
    if (parser_.expectsContinue() && inPos_ == in_.size()) {
        // The client waits for this before it sends the body.
        std::size_t sent = 0;
        out_.assign(Continue);
        if (transport_.write(out_, sent) != TlsTransport::Io::Done) {
            // Rare (a full socket buffer on a fresh request): the client sends the body after
            // its own timeout anyway, and the answer goes out after this.
            outPos_ = sent;
        } else {
            out_.clear();
        }
    }
    bodyDeadline_ = Clock::now() + manager_.context().settings.readTimeout;
    setPhase(Phase::Body);
    parser_.readBody();
}

bool Connection::chargeBody() {
    const std::size_t size = parser_.body().size();
    if (size <= bodyCharged_) {
        return true;
    }
    const std::size_t growth = size - bodyCharged_;
    bodyCharged_ = size;
    const std::size_t total = manager_.context().bufferedBodies.fetch_add(growth) + growth;
    return total <= manager_.context().settings.maxBufferedBodies;
}

void Connection::releaseBody() {
    if (bodyCharged_ > 0) {
        manager_.context().bufferedBodies.fetch_sub(bodyCharged_);
        bodyCharged_ = 0;
    }
}

void Connection::bodyComplete() {
    releaseBody();
    if (!endpoint_) {
        // Requests answered from their head never read a body; nothing else reaches Done.
        close(false);
        return;
    }
    dispatch(manager_.context().router.review(*endpoint_, std::move(parser_.body())));
}

void Connection::dispatch(Reply reply) {
    setPhase(Phase::Processing);
    if (auto* response = std::get_if<Response>(&reply)) {
        send(std::move(*response));
        return;
    }
    // Nothing is read meanwhile: answers go out in order, and the next request waits in the
    // socket (or the input buffer).
    registration_->watch(false, false);
    manager_.submit(*this, std::get<BlockingWork>(std::move(reply)));
}

void Connection::complete(Response response) {
    if (phase_ != Phase::Processing) {
        return;
    }
    send(std::move(response));
}

void Connection::send(Response response) {
    if (response.status != 200) {
        manager_.context().metrics.countHttpStatus(response.status);
    }
    const bool closing = response.close || response.linger || !keepAlive_ || draining_;
    after_ = response.linger ? After::Linger : (closing ? After::Close : After::KeepAlive);
    appendSerialized(out_, response, closing);
    setPhase(Phase::Writing);
    writeDeadline_ = Clock::now() + manager_.context().settings.readTimeout;
    flush();
}

void Connection::flush() {
    std::size_t sent = 0;
    const TlsTransport::Io io = transport_.write(std::string_view(out_).substr(outPos_), sent);
    outPos_ += sent;
    switch (io) {
    case TlsTransport::Io::Done:
        out_.clear();
        outPos_ = 0;
        afterWrite();
        return;
    case TlsTransport::Io::WantWrite: registration_->watch(false, true); return;
    case TlsTransport::Io::WantRead: registration_->watch(true, false); return;
    case TlsTransport::Io::Closed:
    case TlsTransport::Io::Failed: close(false); return;
    }
}

void Connection::afterWrite() {
    switch (after_) {
    case After::Close: close(true); return;
    case After::Linger:
        transport_.shutdown();
        ::shutdown(static_cast<int>(socket_.impl()->sockfd()), SHUT_WR);
        lingerStart_ = Clock::now();
        lastRead_ = lingerStart_;
        setPhase(Phase::Lingering);
        registration_->watch(true, false);
        linger();
        return;
    case After::KeepAlive:
        parser_.reset();
        endpoint_.reset();
        std::string().swap(out_);  // an idle connection keeps no buffers
        if (in_.empty()) {
            std::string().swap(in_);
        }
        setPhase(Phase::Idle);
        registration_->watch(true, false);
        if (!pumping_) {
            // A pipelined request may already wait in the input buffer, or in OpenSSL's.
            pump();
        }
        return;
    }
}

void Connection::linger() {
    // The answer is out and the TLS session is over: the raw bytes still arriving are read and
    // dropped without decrypting them.
    char scratch[16 * 1024];
    const int fd = static_cast<int>(socket_.impl()->sockfd());
    for (;;) {
        const ssize_t got = ::read(fd, scratch, sizeof scratch);
        if (got > 0) {
            lastRead_ = Clock::now();
            continue;
        }
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        }
        close(false);  // EOF or an error: the client is done
        return;
    }
}

void Connection::checkDeadlines(Clock::time_point now) {
    const ConnectionSettings& settings = manager_.context().settings;
    switch (phase_) {
    case Phase::Handshake:
    case Phase::Head:
        if (now >= headDeadline_) {
            cut("no complete request headers within the header timeout");
        } else if (now - lastRead_ >= settings.readTimeout) {
            cut("no complete request headers, and silent for the read timeout");
        }
        return;
    case Phase::Body:
        if (now >= bodyDeadline_) {
            keepAlive_ = false;
            send(manager_.context().router.refuse(408, "timed out reading the request body",
                                                  peerHost_, endpoint_));
        }
        return;
    case Phase::Writing:
        if (now >= writeDeadline_) {
            close(false);  // the client does not take its answer
        }
        return;
    case Phase::Lingering:
        if (now - lingerStart_ >= MaxLinger || now - lastRead_ >= LingerPause) {
            close(false);
        }
        return;
    case Phase::Processing:
    case Phase::Idle:
    case Phase::Closed: return;
    }
}

void Connection::cut(std::string_view why) {
    ServerContext& context = manager_.context();
    context.metrics.countConnectionCut();
    context.log.warn("connection cut: " + std::string(why), {{"client", peer_}});
    close(false);
}

void Connection::expireIdle() {
    if (phase_ == Phase::Idle) {
        close(true);
    }
}

void Connection::drain() {
    draining_ = true;
    const bool inFlight = phase_ == Phase::Body || phase_ == Phase::Processing ||
                          phase_ == Phase::Writing || phase_ == Phase::Lingering ||
                          (phase_ == Phase::Head && parser_.started());
    if (!inFlight) {
        close(true);
    }
}

void Connection::close(bool notifyPeer) {
    if (phase_ == Phase::Closed) {
        return;
    }
    if (notifyPeer) {
        transport_.shutdown();
    }
    releaseBody();
    registration_.reset();  // before the socket closes
    setPhase(Phase::Closed);
    try {
        socket_.close();
    } catch (...) {
        // close(2) failing leaves nothing to retry.
    }
    manager_.closed(*this);
}

}  // namespace twostep::http
