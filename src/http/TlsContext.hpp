/// The server's TLS context: TLS 1.2/1.3 only, modern ciphers, optional client-certificate
/// verification, and certificate rotation without restart or failed handshakes.
#pragma once

#include <Poco/Net/Context.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "http/Metrics.hpp"

namespace twostep::http {

/// Owners of the OpenSSL objects, released with their own free functions.
struct OpenSslDeleter {
    void operator()(X509* p) const noexcept;
    void operator()(EVP_PKEY* p) const noexcept;
    void operator()(STACK_OF(X509)* p) const noexcept;
};
using X509Ptr = std::unique_ptr<X509, OpenSslDeleter>;
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, OpenSslDeleter>;
using X509StackPtr = std::unique_ptr<STACK_OF(X509), OpenSslDeleter>;

/// A certificate, its chain and the private key that matches it; immutable once built.
struct CertifiedKey {
    X509Ptr certificate;
    X509StackPtr chain;  ///< intermediates after the leaf in the certificate file (may be empty)
    EvpPkeyPtr key;
    std::string serial;    ///< hex
    std::string subject;   ///< one line, e.g. "CN=twostep"
    std::string notAfter;  ///< e.g. "Jan  1 00:00:00 2030 GMT"
    std::array<std::uint8_t, 32> contentHash{};  ///< SHA-256 of both files' bytes
};

/// Parses a PEM certificate (plus chain) and private key and checks that they belong together.
/// @throw ConfigError naming the file and what is wrong (never key material).
std::shared_ptr<const CertifiedKey> parseCertifiedKey(const std::string& certPem,
                                                      const std::string& keyPem,
                                                      const std::string& certFile,
                                                      const std::string& keyFile);

/// Whether the client of the connection `ssl` presented a certificate that verified against the
/// TlsContext's client CA (false without a client CA, a certificate, or a finished handshake).
bool hasVerifiedClientCertificate(const SSL* ssl) noexcept;

struct TlsSettings {
    std::string certFile;
    std::string keyFile;
    /// Empty: no client certificate requested. Else requested and verified when presented, but
    /// not required by the handshake (see hasVerifiedClientCertificate).
    std::string clientCaFile;
    std::chrono::milliseconds reloadInterval{10'000};
};

/// Owns the Poco::Net::Context for the server socket. Each handshake takes its certificate from
/// an atomically swapped CertifiedKey through SSL_CTX_set_cert_cb, so a reload never mutates the
/// SSL_CTX under a live handshake. A background thread re-reads the files every interval and
/// swaps in a new pair only when it parses and the key matches; otherwise the old pair stays.
class TlsContext {
public:
    /// Called after each reload attempt of changed files (from the reloader thread).
    using ReloadListener =
        std::function<void(ReloadResult, const std::string& detail, const CertifiedKey* loaded)>;

    /// Loads the pair and the client CA and starts the reloader.
    /// @throw ConfigError when a file is missing, unreadable, malformed or mismatched.
    TlsContext(TlsSettings settings, ReloadListener listener);
    /// Stops the reloader. The server using context() must be stopped first.
    ~TlsContext();
    TlsContext(const TlsContext&) = delete;
    TlsContext& operator=(const TlsContext&) = delete;

    Poco::Net::Context::Ptr context() const { return context_; }
    /// The pair new handshakes get. Thread-safe.
    std::shared_ptr<const CertifiedKey> current() const { return current_.load(); }
    bool hasCertificate() const { return current_.load() != nullptr; }

    /// Checks the files once (the reloader calls this every interval); true when a new pair was
    /// installed. Never throws.
    bool reloadIfChanged() noexcept;

private:
    struct FileStamp {
        std::int64_t mtimeNs = 0;
        std::int64_t size = -1;
        std::uint64_t inode = 0;
        bool operator==(const FileStamp&) const = default;
    };
    static FileStamp stampOf(const std::string& path) noexcept;
    static int selectCertificate(SSL* ssl, void* self) noexcept;
    void reloadLoop();

    TlsSettings settings_;
    ReloadListener listener_;
    Poco::Net::Context::Ptr context_;
    std::atomic<std::shared_ptr<const CertifiedKey>> current_;

    // Reloader state: only the reloader thread (or a direct reloadIfChanged caller) touches these.
    std::mutex reloadMutex_;
    std::array<FileStamp, 2> stamps_{};
    std::array<std::uint8_t, 32> failedHash_{};
    bool lastFailed_ = false;

    std::mutex stopMutex_;
    std::condition_variable stopSignal_;
    bool stopping_ = false;
    std::thread reloader_;
};

}  // namespace twostep::http
