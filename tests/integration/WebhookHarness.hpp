/// The integration-test fixture: a temp dir with certificates made by the openssl CLI, a master
/// key and database made through the core API, enrolled users with known secrets, the real
/// twostep-webhook binary on 127.0.0.1:0, and an HTTPS client (Poco) that trusts the test CA.
#pragma once

#include <Poco/Crypto/X509Certificate.h>
#include <Poco/Net/Context.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Net/HTTPSClientSession.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Net/X509Certificate.h>

#include <cctype>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/Clock.hpp"
#include "core/MasterKey.hpp"
#include "core/RecoveryCodes.hpp"
#include "core/Secret.hpp"
#include "core/Store.hpp"
#include "core/Totp.hpp"
#include "integration/ServerProcess.hpp"
#include "support/Fixtures.hpp"
#include "support/TempDir.hpp"
#include "unit/Subprocess.hpp"

namespace twostep::test {

/// Poco's SSL library, initialised once for the test binary.
struct SslLibrary {
    SslLibrary() { Poco::Net::initializeSSL(); }
    ~SslLibrary() { Poco::Net::uninitializeSSL(); }
};
inline const SslLibrary sslLibrary;

/// Certificates made with the real openssl CLI (P-256 keys, 2-day validity, random serials).
class Pki {
public:
    explicit Pki(std::filesystem::path dir) : dir_(std::move(dir)) {}

    std::filesystem::path pem(const std::string& name) const { return dir_ / (name + ".pem"); }
    std::filesystem::path key(const std::string& name) const { return dir_ / (name + ".key"); }

    /// A self-signed CA: NAME.pem, NAME.key.
    void makeCa(const std::string& name) const {
        run({"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key(name).string(), "-out", pem(name).string(), "-days", "2",
             "-subj", "/CN=" + name, "-set_serial", randomSerial()});
    }

    /// A certificate signed by `ca`: for a server (SAN IP:127.0.0.1 and DNS:localhost) or a
    /// client (clientAuth). Writes NAME.pem and NAME.key.
    void makeLeaf(const std::string& name, const std::string& ca, bool server) const {
        const auto csr = dir_ / (name + ".csr");
        const auto ext = dir_ / (name + ".ext");
        std::ofstream(ext) << (server ? "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
                                        "extendedKeyUsage=serverAuth\n"
                                      : "extendedKeyUsage=clientAuth\n");
        run({"openssl", "req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
             "-nodes", "-keyout", key(name).string(), "-out", csr.string(), "-subj",
             "/CN=" + name});
        run({"openssl", "x509", "-req", "-in", csr.string(), "-CA", pem(ca).string(), "-CAkey",
             key(ca).string(), "-set_serial", randomSerial(), "-days", "2", "-extfile",
             ext.string(), "-out", pem(name).string()});
    }

    /// The serial number as Poco prints it, for comparing with what a server presented.
    std::string serial(const std::string& name) const {
        return Poco::Crypto::X509Certificate(pem(name).string()).serialNumber();
    }

private:
    static void run(const std::vector<std::string>& argv) {
        const ProcessResult result = runProcess(argv);
        if (!result.started || result.exitCode != 0) {
            throw std::runtime_error("openssl failed: " + argv[1] + " " + argv[2]);
        }
    }

    static std::string randomSerial() {
        std::random_device random;
        std::uniform_int_distribution<std::uint32_t> digits;
        char buffer[32];
        std::snprintf(buffer, sizeof buffer, "0x%08x%08x", digits(random) | 0x10000000u,
                      digits(random));
        return buffer;
    }

    std::filesystem::path dir_;
};

/// What one HTTPS exchange returned.
struct HttpResult {
    int status = 0;
    std::string body;
    std::string contentType;
    std::string allow;
    std::string connection;

    nlohmann::json json() const { return nlohmann::json::parse(body); }
    /// response.allowed, response.auditAnnotations.reason etc. of an AdmissionReview answer.
    bool allowed() const { return json().at("response").at("allowed").get<bool>(); }
    std::string reason() const {
        return json().at("response").at("auditAnnotations").at("reason").get<std::string>();
    }
    std::string message() const {
        const auto response = json().at("response");
        return response.contains("status") ? response.at("status").value("message", "") : "";
    }
};

/// Whether `number` stands alone in `text` (not inside a longer run of letters or digits), so a
/// 6-digit code is not "found" inside a hex serial or a uid.
inline bool containsNumber(const std::string& text, const std::string& number) {
    const auto word = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    for (auto at = text.find(number); at != std::string::npos; at = text.find(number, at + 1)) {
        const bool before = at > 0 && word(text[at - 1]);
        const bool after = at + number.size() < text.size() && word(text[at + number.size()]);
        if (!before && !after) {
            return true;
        }
    }
    return false;
}

/// A review body from tests/data with the user and (optionally) the token replaced.
inline std::string reviewFor(const std::string& fixture, const std::string& user,
                             const std::optional<std::string>& token = std::nullopt) {
    nlohmann::json review = fixtureJson(fixture);
    auto& request = review.at("request");
    request.at("userInfo")["username"] = user;
    if (token) {
        auto& metadata = request.at("object").at("metadata");
        auto& annotations = metadata["annotations"];
        const std::string previous = annotations.value("twostep.dev/token", "");
        annotations["twostep.dev/token"] = *token;
        // kubectl copies the annotation into last-applied-configuration: keep the two in step.
        const char* lastApplied = "kubectl.kubernetes.io/last-applied-configuration";
        if (annotations.contains(lastApplied) && !previous.empty()) {
            std::string text = annotations.at(lastApplied).get<std::string>();
            for (auto at = text.find(previous); at != std::string::npos;
                 at = text.find(previous, at + token->size())) {
                text.replace(at, previous.size(), *token);
            }
            annotations[lastApplied] = text;
        }
    }
    return review.dump();
}

/// A webhook under test: files first (certificates, key, database, users), then start().
class Webhook {
public:
    /// With `db` (e.g. a postgresql:// URL), the webhook and the test's store use that database
    /// instead of a SQLite file in the test's directory.
    explicit Webhook(std::string db = {})
        : dir_("twostep-webhook"),
          pki_(dir_.path()),
          db_(db.empty() ? dbFile().string() : std::move(db)) {
        pki_.makeCa("ca");
        pki_.makeLeaf("server", "ca", true);
        core::MasterKey::generate().writeNewFile(keyFile());
        sealer_ = std::make_unique<core::Sealer>(core::MasterKey::fromFile(keyFile()));
        store_ = core::openStore(db_);
        store_->setKeyFingerprintIfUnset(sealer_->key().fingerprint());
    }

    std::filesystem::path dbFile() const { return dir_ / "twostep.db"; }
    std::filesystem::path keyFile() const { return dir_ / "master.key"; }
    std::filesystem::path path(const std::string& name) const { return dir_ / name; }
    const Pki& pki() const { return pki_; }
    core::Store& store() { return *store_; }

    /// Enrols `user` with a fresh random secret (SHA1, 6 digits, 30 s).
    void enroll(const std::string& user, core::UserState state = core::UserState::Active) {
        core::SecretBytes secret = core::generateSecret();
        core::NewUser row;
        row.username = user;
        row.sealedSecret = sealer_->seal(secret, user);
        row.issuer = "twostep-test";
        row.state = state;
        if (!store_->addUser(row, now(), false)) {
            throw std::runtime_error("user " + user + " exists");
        }
        secrets_.insert_or_assign(user, std::move(secret));
    }

    /// The user's current TOTP code.
    std::string code(const std::string& user) const {
        return core::generateTotp(secrets_.at(user), core::TotpParams{}, now());
    }

    /// Gives `user` fresh recovery codes and returns them.
    std::vector<std::string> recoveryCodes(const std::string& user, int count = 2) {
        std::vector<std::string> codes = core::generateRecoveryCodes(count);
        std::vector<std::string> hashes;
        for (const std::string& c : codes) {
            hashes.push_back(core::hashRecoveryCode(c));
        }
        if (!store_->replaceRecoveryCodes(user, hashes, now())) {
            throw std::runtime_error("no user " + user);
        }
        return codes;
    }

    static core::Seconds now() { return core::SystemClock().now(); }

    /// The usual flags: loopback port 0, the test files, JSON logs; `extra` appended.
    std::vector<std::string> arguments(const std::vector<std::string>& extra = {}) const {
        std::vector<std::string> args{TWOSTEP_WEBHOOK_BINARY,
                                      "--listen=127.0.0.1:0",
                                      "--tls-cert=" + pki_.pem("server").string(),
                                      "--tls-key=" + pki_.key("server").string(),
                                      "--db=" + db_,
                                      "--master-key-file=" + keyFile().string(),
                                      "--log-format=json"};
        args.insert(args.end(), extra.begin(), extra.end());
        return args;
    }

    /// Starts the server and waits for its port.
    void start(const std::vector<std::string>& extra = {}) {
        server_ = std::make_unique<ServerProcess>(arguments(extra));
        port_ = server_->waitForPort();
    }

    ServerProcess& server() { return *server_; }
    std::uint16_t port() const { return port_; }

    /// A client context trusting the test CA (or `ca`), presenting `clientCert` when given.
    Poco::Net::Context::Ptr clientContext(const std::string& clientCert = "",
                                          const std::string& ca = "ca") const {
        Poco::Net::Context::Params params;
        params.caLocation = pki_.pem(ca).string();
        params.verificationMode = Poco::Net::Context::VERIFY_STRICT;
        params.loadDefaultCAs = false;
        if (!clientCert.empty()) {
            params.certificateFile = pki_.pem(clientCert).string();
            params.privateKeyFile = pki_.key(clientCert).string();
        }
        Poco::Net::Context::Ptr context =
            new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, params);
        context->requireMinimumProtocol(Poco::Net::Context::PROTO_TLSV1_2);
        return context;
    }

    /// One request on a new connection.
    HttpResult request(const std::string& method, const std::string& target,
                       const std::string& body = "",
                       Poco::Net::Context::Ptr context = nullptr) const {
        Poco::Net::HTTPSClientSession session("127.0.0.1", port_,
                                              context ? context : clientContext());
        return exchange(session, method, target, body);
    }

    HttpResult post(const std::string& target, const std::string& body) const {
        return request("POST", target, body);
    }
    HttpResult get(const std::string& target) const { return request("GET", target); }

    /// One request on an existing session (keep-alive).
    static HttpResult exchange(Poco::Net::HTTPSClientSession& session, const std::string& method,
                               const std::string& target, const std::string& body) {
        session.setTimeout(Poco::Timespan(10, 0));
        Poco::Net::HTTPRequest request(method, target, Poco::Net::HTTPMessage::HTTP_1_1);
        if (method == "POST") {
            request.setContentType("application/json");
            request.setContentLength(static_cast<std::streamsize>(body.size()));
        }
        session.sendRequest(request) << body;
        Poco::Net::HTTPResponse response;
        std::istream& in = session.receiveResponse(response);
        HttpResult result;
        result.status = static_cast<int>(response.getStatus());
        result.body.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
        result.contentType = response.getContentType();
        result.allow = response.get("Allow", "");
        result.connection = response.get("Connection", "");
        return result;
    }

    /// The value of one sample line of /metrics, e.g.
    /// `twostep_http_requests_total{code="404"}`; 0 when absent.
    double metric(const std::string& series) const {
        const std::string text = get("/metrics").body;
        const std::size_t at = text.find("\n" + series + " ");
        if (at == std::string::npos) {
            return 0;
        }
        return std::stod(text.substr(at + series.size() + 2));
    }

private:
    TempDir dir_;
    Pki pki_;
    std::string db_;
    std::unique_ptr<core::Sealer> sealer_;
    std::unique_ptr<core::Store> store_;
    std::map<std::string, core::SecretBytes> secrets_;
    std::unique_ptr<ServerProcess> server_;
    std::uint16_t port_ = 0;
};

}  // namespace twostep::test
