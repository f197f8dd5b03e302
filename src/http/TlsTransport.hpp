/// TLS between a non-blocking socket and the HTTP codec (Envoy's "transport socket"): an SSL
/// object of the server's SSL_CTX over the connection's fd, driven by the event loop. Handshake,
/// reads and writes never block; each says whether the socket must become readable or writable
/// before it can go on.
#pragma once

#include <openssl/ssl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace twostep::http {

/// One connection's TLS. OpenSSL reads and writes the fd itself (its socket BIO): no copy of
/// the bytes through memory BIOs, and with read-ahead one read(2) takes a whole request. Read
/// and write buffers are released while empty, so an idle connection keeps only its session
/// state. Not thread-safe (one loop thread).
class TlsTransport {
public:
    /// What a call achieved.
    enum class Io {
        Done,       ///< finished (handshake), or some bytes moved and the socket has no more now
        WantRead,   ///< nothing more until the socket is readable
        WantWrite,  ///< nothing more until the socket is writable
        Closed,     ///< the peer ended the connection (close_notify or EOF)
        Failed,     ///< a TLS or socket error; the connection is unusable
    };

    /// @throw std::bad_alloc when OpenSSL cannot allocate the SSL object.
    TlsTransport(SSL_CTX* context, int fd);
    ~TlsTransport();
    TlsTransport(const TlsTransport&) = delete;
    TlsTransport& operator=(const TlsTransport&) = delete;

    /// Goes on with the server side of the handshake: Done once it is complete.
    Io handshake();
    bool established() const { return established_; }

    /// Appends decrypted bytes to `into`: Done when some arrived (at most `max`; the socket may
    /// hold more, and stays readable if so), WantRead when none, Closed, or Failed. Leaves no
    /// decrypted byte buffered inside OpenSSL unless `max` stopped it.
    Io read(std::string& into, std::size_t max);

    /// Encrypts and sends from the front of `data`; `sent` says how much went out. Done when all
    /// of it did, WantWrite when the socket took less.
    Io write(std::string_view data, std::size_t& sent);

    /// Sends close_notify when the connection is still sound; never waits for the peer's.
    void shutdown() noexcept;

    /// Whether the client presented a certificate that verified (see TlsContext).
    bool verifiedClient() const noexcept;

private:
    struct SslDeleter {
        void operator()(SSL* ssl) const noexcept { SSL_free(ssl); }
    };
    Io failure(int result);

    std::unique_ptr<SSL, SslDeleter> ssl_;
    bool established_ = false;
    bool broken_ = false;  ///< a fatal error: no close_notify may follow
};

}  // namespace twostep::http
