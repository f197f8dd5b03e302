// Connections of the real twostep-webhook (issue 11): many keep-alive connections sending at the
// same instant, thousands held idle, --max-connections, pipelining, 100-continue and smuggling
// shapes on the wire. A connection must never wait for a thread.
#include <catch2/catch.hpp>

#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>

#include <chrono>
#include <thread>
#include <numeric>
#include <string>
#include <vector>

#include "integration/TlsClients.hpp"
#include "integration/WebhookHarness.hpp"

using twostep::test::reviewFor;
using twostep::test::TlsClients;
using twostep::test::Webhook;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

std::string post(const std::string& target, const std::string& body) {
    return "POST " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

const std::string Healthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";

std::vector<std::size_t> range(std::size_t first, std::size_t last) {
    std::vector<std::size_t> indices(last - first);
    std::iota(indices.begin(), indices.end(), first);
    return indices;
}

/// Reads from `socket` until `until` arrived (everything until the server closes when empty),
/// for at most 5 s.
std::string readUntil(Poco::Net::StreamSocket& socket, const std::string& until) {
    std::string data;
    socket.setReceiveTimeout(Poco::Timespan(0, 200'000));
    const auto deadline = Clock::now() + 5s;
    char buffer[4096];
    while (Clock::now() < deadline &&
           (until.empty() || data.find(until) == std::string::npos)) {
        try {
            const int got = socket.receiveBytes(buffer, sizeof buffer);
            if (got <= 0) {
                break;
            }
            data.append(buffer, static_cast<std::size_t>(got));
        } catch (const Poco::TimeoutException&) {
            continue;
        } catch (const Poco::Exception&) {
            break;  // reset, or TLS shut down
        }
    }
    return data;
}

/// Sends `bytes` on a new TLS connection and returns what came back (see readUntil).
std::string rawExchange(const Webhook& webhook, const std::string& bytes,
                        const std::string& until) {
    Poco::Net::SecureStreamSocket socket(Poco::Net::SocketAddress("127.0.0.1", webhook.port()),
                                         webhook.clientContext());
    socket.sendBytes(bytes.data(), static_cast<int>(bytes.size()));
    return readUntil(socket, until);
}

double seconds(Clock::duration d) {
    return std::chrono::duration<double>(d).count();
}

}  // namespace

TEST_CASE("256 keep-alive connections each sending a review at once are all answered within 5 s",
          "[integration][connections]") {
    constexpr std::size_t Clients = 256;
    twostep::test::ensureFileLimit(4096);
    Webhook webhook;
    webhook.start();
    TlsClients clients(webhook.pki().pem("ca").string(), webhook.port());

    const auto start = Clock::now();
    REQUIRE(clients.open(Clients, 5s) == Clients);
    // Half need no database (exempt), half go through a worker (a user who is not enrolled).
    const std::vector<std::size_t> exempt = range(0, Clients / 2);
    const std::vector<std::size_t> stored = range(Clients / 2, Clients);
    clients.send(exempt,
                 post("/validate?timeout=5s", reviewFor("0001", "system:serviceaccount:a:b")));
    clients.send(stored, post("/mutate?timeout=5s", reviewFor("0001", "nobody")));
    const auto exemptAnswers = clients.await(exempt, 10s);
    const auto storedAnswers = clients.await(stored, 10s);
    const auto took = Clock::now() - start;
    INFO("connecting, handshakes and answers took " << seconds(took) << " s");

    const auto count = [](const std::vector<TlsClients::Answer>& answers, const char* reason) {
        int n = 0;
        for (const TlsClients::Answer& answer : answers) {
            n += answer.status == 200 && !answer.closed &&
                         answer.body.find(std::string("\"reason\":\"") + reason + "\"") !=
                             std::string::npos
                     ? 1
                     : 0;
        }
        return n;
    };
    CHECK(count(exemptAnswers, "exempt") == static_cast<int>(exempt.size()));
    CHECK(count(storedAnswers, "not_enrolled") == static_cast<int>(stored.size()));
    CHECK(took < 5s);
    // All kept open, as the API server keeps them.
    int open = 0;
    for (std::size_t i = 0; i < Clients; ++i) {
        open += clients.closedByServer(i) ? 0 : 1;
    }
    CHECK(open == static_cast<int>(Clients));
    CHECK(webhook.metric("twostep_connections_open") >= Clients);
    CHECK(webhook.metric("twostep_connections_idle") >= Clients);
}

TEST_CASE("with 2,000 idle keep-alive connections open, a new connection and the oldest idle one "
          "are each answered within 1 s",
          "[integration][connections]") {
    constexpr std::size_t Idle = 2000;
    twostep::test::ensureFileLimit(3 * Idle);  // the server inherits it, and raises its own too
    Webhook webhook;
    webhook.start();
    TlsClients clients(webhook.pki().pem("ca").string(), webhook.port());
    REQUIRE(clients.open(Idle, 20s) == Idle);
    // Each had one answer, as the API server's connections had before they went idle.
    const std::vector<std::size_t> all = range(0, Idle);
    const auto first = clients.exchange(all, Healthz, 20s);
    REQUIRE(std::all_of(first.begin(), first.end(),
                        [](const TlsClients::Answer& a) { return a.status == 200; }));
    CHECK(webhook.metric("twostep_connections_idle") >= Idle);

    // A new connection: handshake and answer within 1 s.
    const auto start = Clock::now();
    REQUIRE(clients.open(1, 1s) == 1);
    const auto fresh = clients.exchange({Idle}, post("/validate", reviewFor("0001", "nobody")), 1s);
    const auto newTook = Clock::now() - start;
    INFO("new connection answered after " << seconds(newTook) << " s");
    CHECK(fresh.front().status == 200);
    CHECK(newTook < 1s);

    // The oldest idle connection.
    const auto oldest = clients.exchange({0}, post("/validate", reviewFor("0001", "nobody")), 1s);
    INFO("oldest idle connection answered after " << seconds(oldest.front().took) << " s");
    CHECK(oldest.front().status == 200);
    CHECK(oldest.front().took < 1s);
    CHECK_FALSE(clients.closedByServer(Idle / 2));
}

TEST_CASE("beyond --max-connections a new connection is closed at once, logged and counted",
          "[integration][connections]") {
    Webhook webhook;
    webhook.start({"--max-connections=4"});
    TlsClients clients(webhook.pki().pem("ca").string(), webhook.port());
    REQUIRE(clients.open(4, 5s) == 4);
    const auto start = Clock::now();
    CHECK(clients.open(1, 5s) == 0);  // closed before its handshake finished
    CHECK(Clock::now() - start < 2s);  // at once, not left waiting
    REQUIRE(webhook.server().waitForOutput("connection refused: --max-connections (4) are open",
                                           5s));
    // The open ones are served; once one closes, a new connection is accepted again.
    CHECK(clients.exchange({0}, Healthz, 5s).front().status == 200);
    clients.exchange({1}, "GET /healthz HTTP/1.1\r\nConnection: close\r\n\r\n", 5s);
    CHECK(clients.closedByServer(1, 5s));  // its close may follow the answer
    std::this_thread::sleep_for(200ms);  // the server notices the close
    const auto metric = [&] {
        // A scrape needs a connection of its own: one place is free now.
        return webhook.metric("twostep_connections_refused_total");
    };
    CHECK(metric() == 1);
}

TEST_CASE("pipelined requests are answered in order on one connection",
          "[integration][connections]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.start();
    // An inline answer, a worker's answer, inline again, sent in one write: the worker's answer
    // must not be overtaken.
    const std::string pipelined =
        post("/validate", reviewFor("0001", "system:serviceaccount:a:b")) +
        post("/validate", reviewFor("0001", "alice")) + Healthz + "GET /nope HTTP/1.1\r\n\r\n";
    const std::string wire = rawExchange(webhook, pipelined, "no such endpoint\n");
    const auto exempt = wire.find("\"reason\":\"exempt\"");
    const auto missing = wire.find("\"reason\":\"missing_code\"");
    const auto ok = wire.find("\r\n\r\nok\n");
    const auto notFound = wire.find("HTTP/1.1 404");
    CHECK(exempt != std::string::npos);
    CHECK(missing != std::string::npos);
    CHECK(ok != std::string::npos);
    CHECK(notFound != std::string::npos);
    CHECK(exempt < missing);
    CHECK(missing < ok);
    CHECK(ok < notFound);
}

TEST_CASE("Expect: 100-continue is answered before the body is sent", "[integration][connections]") {
    Webhook webhook;
    webhook.start();
    const std::string body = reviewFor("0001", "system:serviceaccount:a:b");
    Poco::Net::SecureStreamSocket socket(Poco::Net::SocketAddress("127.0.0.1", webhook.port()),
                                         webhook.clientContext());
    const std::string head = "POST /validate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                             "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
    socket.sendBytes(head.data(), static_cast<int>(head.size()));
    CHECK(readUntil(socket, "\r\n\r\n") == "HTTP/1.1 100 Continue\r\n\r\n");
    socket.sendBytes(body.data(), static_cast<int>(body.size()));
    CHECK_THAT(readUntil(socket, "\"uid\""), Catch::StartsWith("HTTP/1.1 200 OK\r\n"));

    // A body over the limit is refused instead, before it is sent.
    const std::string big = "POST /validate HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\n"
                            "Content-Length: 99999999\r\n\r\n";
    CHECK_THAT(rawExchange(webhook, big, "bytes\n"), Catch::StartsWith("HTTP/1.1 413"));
}

TEST_CASE("request smuggling shapes are refused with 400 and the connection closed",
          "[integration][connections]") {
    Webhook webhook;
    webhook.start();
    const std::string body = reviewFor("0001", "system:serviceaccount:a:b");
    const std::string length = std::to_string(body.size());
    for (const std::string& framing :
         {"Content-Length: " + length + "\r\nTransfer-Encoding: chunked\r\n",
          "Content-Length: " + length + "\r\nContent-Length: 5\r\n",
          std::string("Content-Length: abc\r\n"), std::string("Transfer-Encoding: gzip, chunked\r\n"),
          "Transfer-Encoding : chunked\r\nContent-Length: " + length + "\r\n"}) {
        INFO(framing);
        const std::string request = "POST /validate HTTP/1.1\r\nHost: x\r\n" + framing + "\r\n" +
                                    body + Healthz;
        const std::string wire = rawExchange(webhook, request, "");
        CHECK_THAT(wire, Catch::StartsWith("HTTP/1.1 400 Bad Request\r\n"));
        CHECK_THAT(wire, Catch::Contains("Connection: Close"));
        // The bytes after the refused head are never taken for a request of their own.
        CHECK(wire.find("HTTP/1.1 200") == std::string::npos);
    }
    CHECK(webhook.metric("twostep_http_requests_total{code=\"400\"}") == 5);
}

TEST_CASE("bodies in flight are bounded in memory: beyond the budget a body gets 503",
          "[integration][connections]") {
    // The budget is 32 x --max-body: 32 KiB here. 40 clients each send 900 bytes of a promised
    // 1,000 and stall, 36,000 bytes in all: the ones past the budget are refused at once.
    Webhook webhook;
    webhook.start({"--max-body=1KiB"});
    TlsClients clients(webhook.pki().pem("ca").string(), webhook.port());
    REQUIRE(clients.open(40, 5s) == 40);
    const std::string stalled = "POST /validate HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" +
                                std::string(900, ' ');
    const std::vector<std::size_t> all = range(0, 40);
    const auto answers = clients.exchange(all, stalled, 2s);
    int refused = 0;
    int pending = 0;
    for (const TlsClients::Answer& answer : answers) {
        if (answer.status == 503) {
            ++refused;
            CHECK(answer.body == "too many request bodies in flight; retry\n");
        } else if (answer.status == 0 && !answer.closed) {
            ++pending;
        }
    }
    CHECK(refused >= 3);  // 36,000 - 32,768 bytes over: at least 3 bodies of 900
    CHECK(refused + pending == 40);
    CHECK(webhook.metric("twostep_http_requests_total{code=\"503\"}") == refused);
}
