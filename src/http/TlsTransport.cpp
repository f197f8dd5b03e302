#include "http/TlsTransport.hpp"

#include <openssl/err.h>

#include <algorithm>
#include <climits>
#include <new>

#include "http/TlsContext.hpp"

namespace twostep::http {

namespace {

/// Bytes asked of SSL_read at once: a full TLS record.
constexpr std::size_t ReadStep = 16 * 1024;

}  // namespace

TlsTransport::TlsTransport(SSL_CTX* context, int fd) : ssl_(SSL_new(context)) {
    if (!ssl_ || SSL_set_fd(ssl_.get(), fd) != 1) {
        ERR_clear_error();
        throw std::bad_alloc();
    }
    SSL_set_accept_state(ssl_.get());
    // Partial writes with a buffer that may move: an answer is written from a std::string that
    // can grow between retries. Released buffers: an idle connection holds no 16 KiB records.
    SSL_set_mode(ssl_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                                 SSL_MODE_RELEASE_BUFFERS);
    SSL_set_read_ahead(ssl_.get(), 1);
    // Renegotiation would let a client make the server redo expensive work mid-connection. An
    // EOF without close_notify is a plain close: HTTP framing, not TLS, says whether a request
    // is complete.
    SSL_set_options(ssl_.get(), SSL_OP_NO_RENEGOTIATION | SSL_OP_IGNORE_UNEXPECTED_EOF);
}

TlsTransport::~TlsTransport() = default;

TlsTransport::Io TlsTransport::failure(int result) {
    const int error = SSL_get_error(ssl_.get(), result);
    switch (error) {
    case SSL_ERROR_WANT_READ: return Io::WantRead;
    case SSL_ERROR_WANT_WRITE: return Io::WantWrite;
    case SSL_ERROR_ZERO_RETURN: ERR_clear_error(); return Io::Closed;
    case SSL_ERROR_SYSCALL:
        // A reset, or an EOF in the middle of a record: the peer is gone.
        broken_ = true;
        ERR_clear_error();
        return Io::Closed;
    default:
        broken_ = true;
        ERR_clear_error();
        return Io::Failed;
    }
}

TlsTransport::Io TlsTransport::handshake() {
    if (established_) {
        return Io::Done;
    }
    ERR_clear_error();
    const int result = SSL_do_handshake(ssl_.get());
    if (result == 1) {
        established_ = true;
        return Io::Done;
    }
    const Io io = failure(result);
    // A client that gives up during the handshake is not "closed" mid-conversation.
    return io == Io::Closed ? Io::Failed : io;
}

TlsTransport::Io TlsTransport::read(std::string& into, std::size_t max) {
    // Decrypted into one buffer per thread and appended from there: `into` grows by what
    // arrived, never by a zero-filled record's worth.
    thread_local char scratch[ReadStep];
    std::size_t appended = 0;
    while (appended < max) {
        const std::size_t step = std::min(ReadStep, max - appended);
        ERR_clear_error();
        const int got = SSL_read(ssl_.get(), scratch, static_cast<int>(step));
        if (got <= 0) {
            return failure(got);
        }
        into.append(scratch, static_cast<std::size_t>(got));
        appended += static_cast<std::size_t>(got);
        if (SSL_has_pending(ssl_.get()) == 0) {
            // Nothing buffered in TLS: whatever else is on the way makes the socket readable
            // again (the loop polls level-triggered), so no read(2) is spent on EAGAIN here.
            return Io::Done;
        }
    }
    return Io::Done;
}

TlsTransport::Io TlsTransport::write(std::string_view data, std::size_t& sent) {
    sent = 0;
    while (sent < data.size()) {
        const std::size_t step = std::min<std::size_t>(data.size() - sent, INT_MAX);
        ERR_clear_error();
        const int wrote = SSL_write(ssl_.get(), data.data() + sent, static_cast<int>(step));
        if (wrote <= 0) {
            return failure(wrote);
        }
        sent += static_cast<std::size_t>(wrote);
    }
    return Io::Done;
}

void TlsTransport::shutdown() noexcept {
    if (!established_ || broken_) {
        return;  // SSL_shutdown must not follow a fatal error
    }
    ERR_clear_error();
    SSL_shutdown(ssl_.get());  // sends close_notify; the answer is not waited for
    ERR_clear_error();
}

bool TlsTransport::verifiedClient() const noexcept {
    return established_ && hasVerifiedClientCertificate(ssl_.get());
}

}  // namespace twostep::http
