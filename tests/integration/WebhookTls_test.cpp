// TLS of the real twostep-webhook: protocol floor, certificate rotation under traffic (no failed
// handshake, the new certificate within seconds, bad files ignored), client certificates with
// --client-ca (checked in the handshake when presented, required by the review endpoints only).
#include <catch2/catch.hpp>

#include <Poco/Net/SSLException.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <mutex>
#include <set>
#include <thread>

#include "integration/WebhookHarness.hpp"

using twostep::test::HttpResult;
using twostep::test::reviewFor;
using twostep::test::Webhook;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

/// The serial of the certificate the server presents on a new connection.
std::string presentedSerial(const Webhook& webhook) {
    Poco::Net::HTTPSClientSession session("127.0.0.1", webhook.port(), webhook.clientContext());
    const HttpResult result = Webhook::exchange(session, "GET", "/healthz", "");
    if (result.status != 200) {
        throw std::runtime_error("healthz answered " + std::to_string(result.status));
    }
    return session.serverCertificate().serialNumber();
}

/// Replaces `to` with the bytes of `from` in place (same inode, like a plain rewrite).
void overwrite(const std::filesystem::path& to, const std::filesystem::path& from) {
    std::ifstream in(from, std::ios::binary);
    const std::string content{std::istreambuf_iterator<char>(in), {}};
    std::ofstream(to, std::ios::binary | std::ios::trunc) << content;
}

/// New connections in a loop, counting failures and the serials seen, until stopped.
class TrafficLoop {
public:
    explicit TrafficLoop(const Webhook& webhook)
        : thread_([this, &webhook] {
              while (!stop_.load()) {
                  try {
                      const std::string serial = presentedSerial(webhook);
                      const std::lock_guard lock(mutex_);
                      lastSerial_ = serial;
                      ++connections_;
                  } catch (const std::exception& e) {
                      const std::lock_guard lock(mutex_);
                      failures_.push_back(e.what());
                  }
              }
          }) {}
    ~TrafficLoop() { stop(); }

    void stop() {
        stop_ = true;
        if (thread_.joinable()) {
            thread_.join();
        }
    }
    std::string lastSerial() const {
        const std::lock_guard lock(mutex_);
        return lastSerial_;
    }
    int connections() const {
        const std::lock_guard lock(mutex_);
        return connections_;
    }
    std::vector<std::string> failures() const {
        const std::lock_guard lock(mutex_);
        return failures_;
    }

private:
    mutable std::mutex mutex_;
    std::string lastSerial_;
    int connections_ = 0;
    std::vector<std::string> failures_;
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

/// Waits until the loop has seen `serial` on a connection; false after `timeout`.
bool waitForSerial(const TrafficLoop& loop, const std::string& serial, Clock::duration timeout) {
    const auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (loop.lastSerial() == serial) {
            return true;
        }
        std::this_thread::sleep_for(50ms);
    }
    return false;
}

}  // namespace

TEST_CASE("only TLS 1.2 and 1.3 are offered", "[integration][tls]") {
    Webhook webhook;
    webhook.start();
    const auto attempt = [&](Poco::Net::Context::Protocols below) {
        Poco::Net::Context::Params params;
        params.caLocation = webhook.pki().pem("ca").string();
        params.verificationMode = Poco::Net::Context::VERIFY_STRICT;
        Poco::Net::Context::Ptr context =
            new Poco::Net::Context(Poco::Net::Context::TLS_CLIENT_USE, params);
        context->disableProtocols(below);
        return webhook.request("GET", "/healthz", "", context).status;
    };
    // TLS 1.3 only, then TLS 1.2 only: both served.
    CHECK(attempt(Poco::Net::Context::Protocols(Poco::Net::Context::PROTO_TLSV1 |
                                                Poco::Net::Context::PROTO_TLSV1_1 |
                                                Poco::Net::Context::PROTO_TLSV1_2)) == 200);
    CHECK(attempt(Poco::Net::Context::Protocols(Poco::Net::Context::PROTO_TLSV1 |
                                                Poco::Net::Context::PROTO_TLSV1_1 |
                                                Poco::Net::Context::PROTO_TLSV1_3)) == 200);
    // Only TLS 1.0/1.1 left: refused. (OpenSSL's default security level may already refuse
    // them on the client side; either way no connection is made.)
    CHECK_THROWS(attempt(Poco::Net::Context::Protocols(Poco::Net::Context::PROTO_TLSV1_2 |
                                                       Poco::Net::Context::PROTO_TLSV1_3)));
}

TEST_CASE("the certificate rotates under traffic without a failed handshake",
          "[integration][tls][rotation]") {
    Webhook webhook;
    const auto& pki = webhook.pki();
    pki.makeLeaf("server2", "ca", true);
    pki.makeLeaf("server3", "ca", true);
    // The server reads copies, so the test can rewrite them like a cert-manager Secret update.
    const auto liveCert = webhook.path("live.pem");
    const auto liveKey = webhook.path("live.key");
    std::filesystem::copy_file(pki.pem("server"), liveCert);
    std::filesystem::copy_file(pki.key("server"), liveKey);
    webhook.start({"--tls-cert=" + liveCert.string(), "--tls-key=" + liveKey.string(),
                   "--cert-reload-interval=200ms"});
    const std::string first = pki.serial("server");
    REQUIRE(presentedSerial(webhook) == first);

    TrafficLoop traffic(webhook);

    // A key that does not match the certificate: reported, the old pair stays in use.
    overwrite(liveCert, pki.pem("server2"));
    REQUIRE(webhook.server().waitForOutput("does not match the certificate", 5s));
    CHECK_THAT(webhook.server().output(), Catch::Contains("certificate reload failed"));
    std::this_thread::sleep_for(300ms);
    CHECK(presentedSerial(webhook) == first);

    // The matching key arrives: new connections get the new certificate within seconds.
    overwrite(liveKey, pki.key("server2"));
    CHECK(waitForSerial(traffic, pki.serial("server2"), 5s));

    // A half-written certificate file: ignored, then the complete file is picked up.
    const std::string full = [&] {
        std::ifstream in(pki.pem("server3"), std::ios::binary);
        return std::string{std::istreambuf_iterator<char>(in), {}};
    }();
    std::ofstream(liveCert, std::ios::binary | std::ios::trunc) << full.substr(0, full.size() / 2);
    std::this_thread::sleep_for(600ms);
    CHECK(presentedSerial(webhook) == pki.serial("server2"));
    overwrite(liveKey, pki.key("server3"));
    overwrite(liveCert, pki.pem("server3"));
    CHECK(waitForSerial(traffic, pki.serial("server3"), 5s));

    traffic.stop();
    CHECK(traffic.failures().empty());
    CHECK(traffic.connections() > 10);
    CHECK(webhook.metric("twostep_certificate_reloads_total{result=\"success\"}") == 2);
    CHECK(webhook.metric("twostep_certificate_reloads_total{result=\"failure\"}") >= 2);
}

TEST_CASE("with --client-ca reviews need a certificate from that CA, probes and scrapes do not",
          "[integration][tls][mtls]") {
    Webhook webhook;
    const auto& pki = webhook.pki();
    pki.makeLeaf("apiserver", "ca", false);
    pki.makeLeaf("server-only", "ca", true);  // the right CA, but no clientAuth usage
    pki.makeCa("other-ca");
    pki.makeLeaf("intruder", "other-ca", false);
    webhook.enroll("alice");
    webhook.start({"--client-ca=" + pki.pem("ca").string()});
    const auto withoutCertificate = webhook.clientContext();
    const auto apiserver = webhook.clientContext("apiserver");

    SECTION("a client without a certificate: /healthz, /readyz and /metrics, but no reviews") {
        // What the kubelet's httpGet probes and a Prometheus without a client certificate do.
        CHECK(webhook.request("GET", "/healthz", "", withoutCertificate).status == 200);
        CHECK(webhook.request("GET", "/readyz", "", withoutCertificate).status == 200);
        CHECK(webhook.request("GET", "/metrics", "", withoutCertificate).status == 200);
        for (const std::string endpoint : {"/validate", "/mutate"}) {
            const std::string body = reviewFor("0004", "alice", webhook.code("alice"));
            const HttpResult refused =
                webhook.request("POST", endpoint + "?timeout=5s", body, withoutCertificate);
            CHECK(refused.status == 403);
            CHECK(refused.contentType == "text/plain; charset=utf-8");
            CHECK(refused.body == "a client certificate signed by the --client-ca CA is required "
                                  "for " + endpoint + "\n");
            CHECK(refused.connection == "Close");  // POCO's spelling
        }
        CHECK(webhook.metric("twostep_http_requests_total{code=\"403\"}") == 2);
        // Refused before any review: no decision counted, and the user's code is still unused.
        CHECK(webhook.metric("twostep_admission_requests_total{endpoint=\"validate\","
                             "decision=\"allow\",reason=\"verified\"}") == 0);
        const HttpResult allowed = webhook.request(
            "POST", "/validate", reviewFor("0004", "alice", webhook.code("alice")), apiserver);
        CHECK(allowed.status == 200);
        CHECK(allowed.allowed());
        REQUIRE(webhook.server().waitForOutput("\"status\":403", 5s));
        const std::string log = webhook.server().output();
        CHECK_THAT(log, Catch::Contains("request refused"));
        CHECK_THAT(log, Catch::Contains("\"client\":\"127.0.0.1\""));
    }

    SECTION("a certificate from that CA: reviews as before, on every request of a connection") {
        Poco::Net::HTTPSClientSession session("127.0.0.1", webhook.port(), apiserver);
        const HttpResult verified = Webhook::exchange(
            session, "POST", "/validate?timeout=5s",
            reviewFor("0004", "alice", webhook.code("alice")));
        CHECK(verified.status == 200);
        CHECK(verified.allowed());
        CHECK(verified.reason() == "verified");
        // The same connection (keep-alive) stays admitted for the next review.
        const HttpResult denied =
            Webhook::exchange(session, "POST", "/mutate", reviewFor("0001", "bob"));
        CHECK(denied.status == 200);
        CHECK_FALSE(denied.allowed());
        CHECK(Webhook::exchange(session, "GET", "/healthz", "").status == 200);
        CHECK(webhook.metric("twostep_http_requests_total{code=\"403\"}") == 0);
    }

    SECTION("a certificate that does not verify ends the handshake, on every path") {
        for (const std::string name : {"intruder", "server-only"}) {
            INFO("client certificate " << name);
            const auto context = webhook.clientContext(name);
            CHECK_THROWS(webhook.request("GET", "/healthz", "", context));
            CHECK_THROWS(webhook.request("POST", "/validate", reviewFor("0001", "alice"), context));
        }
        // Refused clients do not stop the server.
        CHECK(webhook.request("POST", "/validate", reviewFor("0001", "bob"), apiserver).status ==
              200);
        CHECK(webhook.request("GET", "/healthz", "", withoutCertificate).status == 200);
    }
}

TEST_CASE("without --client-ca no client certificate is asked for or needed",
          "[integration][tls][mtls]") {
    Webhook webhook;
    webhook.pki().makeCa("other-ca");
    webhook.pki().makeLeaf("stranger", "other-ca", false);
    webhook.start();
    // No certificate request, so the stranger's certificate is never sent nor checked.
    CHECK(webhook.request("POST", "/validate", reviewFor("0001", "bob"),
                          webhook.clientContext("stranger"))
              .status == 200);
    CHECK(webhook.request("POST", "/validate", reviewFor("0001", "bob")).status == 200);
}
