#include "http/TlsContext.hpp"

#include <Poco/Exception.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

#include "http/ServerConfig.hpp"

namespace twostep::http {

namespace {

/// TLS 1.2 suites with forward secrecy and AEAD only (Mozilla "intermediate" without DHE);
/// TLS 1.3 suites are all AEAD.
constexpr const char* Tls12Ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
constexpr const char* Tls13Suites =
    "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256";
constexpr const char* Groups = "X25519:P-256:P-384";
constexpr unsigned char SessionIdContext[] = "twostep-webhook";

struct BioDeleter {
    void operator()(BIO* p) const noexcept { BIO_free(p); }
};
using BioPtr = std::unique_ptr<BIO, BioDeleter>;

/// Encrypted keys are not supported: refuse instead of prompting on a terminal.
int refusePassphrase(char* /*buf*/, int /*size*/, int /*rwflag*/, void* /*u*/) { return -1; }

/// The first queued OpenSSL error as text (no key material is ever in these), clearing the queue.
std::string openSslError() {
    const unsigned long code = ERR_peek_last_error();
    std::string text = "unknown error";
    if (code != 0) {
        char buffer[256];
        ERR_error_string_n(code, buffer, sizeof buffer);
        text = buffer;
    }
    ERR_clear_error();
    return text;
}

std::string readFile(const std::string& path, std::string_view what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw ConfigError("cannot read " + std::string(what) + " " + path + ": " +
                          std::strerror(errno));
    }
    std::ostringstream content;
    content << in.rdbuf();
    if (in.bad()) {
        throw ConfigError("cannot read " + std::string(what) + " " + path);
    }
    return std::move(content).str();
}

BioPtr memoryBio(const std::string& text) {
    BioPtr bio(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
    if (!bio) {
        throw ConfigError("out of memory reading PEM data");
    }
    return bio;
}

std::string serialHex(X509* certificate) {
    std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(
        ASN1_INTEGER_to_BN(X509_get_serialNumber(certificate), nullptr), &BN_free);
    if (!bn) {
        return "";
    }
    char* hex = BN_bn2hex(bn.get());
    if (hex == nullptr) {
        return "";
    }
    std::string out(hex);
    OPENSSL_free(hex);
    return out;
}

std::string subjectLine(X509* certificate) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || X509_NAME_print_ex(bio.get(), X509_get_subject_name(certificate), 0,
                                   XN_FLAG_RFC2253) < 0) {
        return "";
    }
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : "";
}

std::string notAfterText(X509* certificate) {
    BioPtr bio(BIO_new(BIO_s_mem()));
    if (!bio || ASN1_TIME_print(bio.get(), X509_get0_notAfter(certificate)) != 1) {
        return "";
    }
    char* data = nullptr;
    const long size = BIO_get_mem_data(bio.get(), &data);
    return size > 0 ? std::string(data, static_cast<std::size_t>(size)) : "";
}

std::array<std::uint8_t, 32> sha256Of(const std::string& a, const std::string& b) {
    std::array<std::uint8_t, 32> digest{};
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(),
                                                                &EVP_MD_CTX_free);
    unsigned int length = 0;
    if (!ctx || EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(ctx.get(), a.data(), a.size()) != 1 ||
        EVP_DigestUpdate(ctx.get(), "\0", 1) != 1 ||
        EVP_DigestUpdate(ctx.get(), b.data(), b.size()) != 1 ||
        EVP_DigestFinal_ex(ctx.get(), digest.data(), &length) != 1) {
        ERR_clear_error();
        throw ConfigError("cannot hash the certificate files");
    }
    return digest;
}

/// The SSL_SESSION ex_data slot that markVerifiedSession() sets; allocated once per process.
int verifiedSlot() {
    static const int slot = SSL_SESSION_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
    return slot;
}

/// What a verified session's slot points to; any other value (null) means "not verified".
constexpr char VerifiedMark = 'v';

/// At the end of each handshake, records on the session whether the client presented a
/// certificate and it verified; a resumed session keeps the mark of the handshake that made it.
void markVerifiedSession(const SSL* ssl, int where, int /*ret*/) {
    // A resumed session keeps the mark of the full handshake that made it, and may be shared
    // with other connections: it is never written here.
    if ((where & SSL_CB_HANDSHAKE_DONE) == 0 || SSL_session_reused(ssl) != 0) {
        return;
    }
    SSL_SESSION* session = SSL_get_session(ssl);
    const int slot = verifiedSlot();
    if (session == nullptr || slot < 0) {
        return;
    }
    // SSL_get_verify_result() is X509_V_OK also when no certificate was sent: check both.
    const bool verified =
        SSL_get0_peer_certificate(ssl) != nullptr && SSL_get_verify_result(ssl) == X509_V_OK;
    // The slot is only ever read as a pointer compared with &VerifiedMark, never written through.
    SSL_SESSION_set_ex_data(session, slot,
                            verified ? const_cast<char*>(&VerifiedMark) : nullptr);
}

void checkClientCa(const std::string& path) {
    const std::string pem = readFile(path, "client CA file");
    BioPtr bio = memoryBio(pem);
    X509Ptr first(PEM_read_bio_X509(bio.get(), nullptr, refusePassphrase, nullptr));
    ERR_clear_error();
    if (!first) {
        throw ConfigError("client CA file " + path + " holds no PEM certificate");
    }
}

}  // namespace

bool hasVerifiedClientCertificate(const SSL* ssl) noexcept {
    const SSL_SESSION* session = ssl != nullptr ? SSL_get_session(ssl) : nullptr;
    const int slot = verifiedSlot();
    return session != nullptr && slot >= 0 &&
           SSL_SESSION_get_ex_data(session, slot) == &VerifiedMark;
}

void OpenSslDeleter::operator()(X509* p) const noexcept { X509_free(p); }
void OpenSslDeleter::operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
void OpenSslDeleter::operator()(STACK_OF(X509)* p) const noexcept {
    sk_X509_pop_free(p, X509_free);
}

std::shared_ptr<const CertifiedKey> parseCertifiedKey(const std::string& certPem,
                                                      const std::string& keyPem,
                                                      const std::string& certFile,
                                                      const std::string& keyFile) {
    auto pair = std::make_shared<CertifiedKey>();
    ERR_clear_error();
    {
        BioPtr bio = memoryBio(certPem);
        pair->certificate.reset(PEM_read_bio_X509(bio.get(), nullptr, refusePassphrase, nullptr));
        if (!pair->certificate) {
            ERR_clear_error();
            throw ConfigError("certificate file " + certFile + " holds no PEM certificate");
        }
        pair->chain.reset(sk_X509_new_null());
        if (!pair->chain) {
            throw ConfigError("out of memory reading " + certFile);
        }
        while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, refusePassphrase, nullptr)) {
            if (sk_X509_push(pair->chain.get(), extra) == 0) {
                X509_free(extra);
                throw ConfigError("out of memory reading " + certFile);
            }
        }
        // The loop ends on "no start line" at the end of the data; anything else is damage.
        const unsigned long last = ERR_peek_last_error();
        if (last != 0 && ERR_GET_REASON(last) != PEM_R_NO_START_LINE) {
            throw ConfigError("certificate file " + certFile + " is damaged: " + openSslError());
        }
        ERR_clear_error();
    }
    {
        BioPtr bio = memoryBio(keyPem);
        pair->key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, refusePassphrase, nullptr));
        if (!pair->key) {
            ERR_clear_error();
            throw ConfigError("key file " + keyFile +
                              " holds no unencrypted PEM private key");
        }
    }
    if (X509_check_private_key(pair->certificate.get(), pair->key.get()) != 1) {
        ERR_clear_error();
        throw ConfigError("the private key in " + keyFile + " does not match the certificate in " +
                          certFile);
    }
    pair->serial = serialHex(pair->certificate.get());
    pair->subject = subjectLine(pair->certificate.get());
    pair->notAfter = notAfterText(pair->certificate.get());
    pair->contentHash = sha256Of(certPem, keyPem);
    return pair;
}

TlsContext::TlsContext(TlsSettings settings, ReloadListener listener)
    : settings_(std::move(settings)), listener_(std::move(listener)) {
    stamps_ = {stampOf(settings_.certFile), stampOf(settings_.keyFile)};
    current_.store(parseCertifiedKey(readFile(settings_.certFile, "certificate file"),
                                     readFile(settings_.keyFile, "key file"), settings_.certFile,
                                     settings_.keyFile));
    const bool verifyClients = !settings_.clientCaFile.empty();
    if (verifyClients) {
        checkClientCa(settings_.clientCaFile);
    }

    // No certificate in the params: every handshake gets one from selectCertificate().
    // With a client CA, a certificate is requested and checked but not required (RELAXED, not
    // STRICT): the kubelet's HTTPS probes have none, and AdmitHandler refuses /validate and
    // /mutate to connections without a verified one (hasVerifiedClientCertificate).
    Poco::Net::Context::Params params;
    params.caLocation = settings_.clientCaFile;
    params.verificationMode =
        verifyClients ? Poco::Net::Context::VERIFY_RELAXED : Poco::Net::Context::VERIFY_NONE;
    params.verificationDepth = 9;
    params.loadDefaultCAs = false;
    params.cipherList = Tls12Ciphers;
    params.ecdhCurve = Groups;
    try {
        context_ = new Poco::Net::Context(Poco::Net::Context::TLS_SERVER_USE, params);
        context_->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
        context_->preferServerCiphers();
        context_->disableStatelessSessionResumption();
        // POCO's "extended verification" matches the peer certificate against a host name: right
        // for clients, meaningless for a client certificate (the CA check is what counts).
        context_->enableExtendedCertificateVerification(false);
    } catch (const Poco::Exception& e) {
        throw ConfigError("cannot set up TLS: " + e.displayText());
    }
    SSL_CTX* ctx = context_->sslContext();
    if (SSL_CTX_set_ciphersuites(ctx, Tls13Suites) != 1 || SSL_CTX_set_num_tickets(ctx, 0) != 1 ||
        SSL_CTX_set_session_id_context(ctx, SessionIdContext, sizeof SessionIdContext - 1) != 1) {
        throw ConfigError("cannot set up TLS: " + openSslError());
    }
    if (verifyClients) {
        // Tell clients which CA we accept, so one holding several certificates picks the right one.
        STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(settings_.clientCaFile.c_str());
        if (names == nullptr) {
            throw ConfigError("cannot read client CA file " + settings_.clientCaFile + ": " +
                              openSslError());
        }
        SSL_CTX_set_client_CA_list(ctx, names);
        // OpenSSL's own verdict instead of POCO's callback, which hands a failure to a
        // process-wide InvalidCertificateHandler that could choose to ignore it: a certificate
        // that does not verify always ends the handshake.
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
        SSL_CTX_set_info_callback(ctx, &markVerifiedSession);
    }
    SSL_CTX_set_cert_cb(ctx, &TlsContext::selectCertificate, this);

    reloader_ = std::thread([this] { reloadLoop(); });
}

TlsContext::~TlsContext() {
    {
        const std::lock_guard lock(stopMutex_);
        stopping_ = true;
    }
    stopSignal_.notify_all();
    if (reloader_.joinable()) {
        reloader_.join();
    }
    // A handshake started after this point gets no certificate instead of a dangling pointer.
    SSL_CTX_set_cert_cb(context_->sslContext(), nullptr, nullptr);
}

int TlsContext::selectCertificate(SSL* ssl, void* self) noexcept {
    const std::shared_ptr<const CertifiedKey> pair =
        static_cast<const TlsContext*>(self)->current_.load();
    if (!pair) {
        return 0;
    }
    // Each call takes its own references; the SSL keeps them after `pair` is released.
    if (SSL_use_certificate(ssl, pair->certificate.get()) != 1 ||
        SSL_use_PrivateKey(ssl, pair->key.get()) != 1 ||
        SSL_set1_chain(ssl, pair->chain.get()) != 1) {
        return 0;
    }
    return 1;
}

TlsContext::FileStamp TlsContext::stampOf(const std::string& path) noexcept {
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0) {
        return FileStamp{};
    }
    return FileStamp{static_cast<std::int64_t>(st.st_mtim.tv_sec) * 1'000'000'000 +
                         st.st_mtim.tv_nsec,
                     static_cast<std::int64_t>(st.st_size), static_cast<std::uint64_t>(st.st_ino)};
}

bool TlsContext::reloadIfChanged() noexcept {
    try {
        const std::lock_guard lock(reloadMutex_);
        const std::array<FileStamp, 2> stamps{stampOf(settings_.certFile),
                                              stampOf(settings_.keyFile)};
        // Unchanged files are not even read; after a failure keep reading, as a writer may still
        // be finishing within the same timestamp.
        if (stamps == stamps_ && !lastFailed_) {
            return false;
        }
        stamps_ = stamps;
        std::string certPem;
        std::string keyPem;
        try {
            certPem = readFile(settings_.certFile, "certificate file");
            keyPem = readFile(settings_.keyFile, "key file");
        } catch (const ConfigError& e) {
            if (!lastFailed_) {
                listener_(ReloadResult::Failure, e.what(), nullptr);
            }
            lastFailed_ = true;
            failedHash_ = {};
            return false;
        }
        const auto hash = sha256Of(certPem, keyPem);
        const auto installed = current_.load();
        if (installed && installed->contentHash == hash) {
            lastFailed_ = false;  // rewritten with the same content, or put back after a bad write
            return false;
        }
        if (lastFailed_ && hash == failedHash_) {
            return false;  // already reported
        }
        try {
            auto pair = parseCertifiedKey(certPem, keyPem, settings_.certFile, settings_.keyFile);
            current_.store(pair);
            lastFailed_ = false;
            listener_(ReloadResult::Success, "", pair.get());
            return true;
        } catch (const ConfigError& e) {
            lastFailed_ = true;
            failedHash_ = hash;
            listener_(ReloadResult::Failure, e.what(), nullptr);
            return false;
        }
    } catch (...) {
        // The reloader must survive anything (e.g. a listener that throws); the old pair stays.
        return false;
    }
}

void TlsContext::reloadLoop() {
    std::unique_lock lock(stopMutex_);
    while (!stopSignal_.wait_for(lock, settings_.reloadInterval, [this] { return stopping_; })) {
        lock.unlock();
        reloadIfChanged();
        lock.lock();
    }
}

}  // namespace twostep::http
