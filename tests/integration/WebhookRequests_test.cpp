// Bad requests (issue 3 point 3) against the real twostep-webhook: wrong method and path, bodies
// that are not AdmissionReviews, oversized and deeply nested bodies, slow and idle clients. None
// is ever allowed, and the server keeps serving other clients through all of it.
#include <catch2/catch.hpp>

#include <Poco/Net/NetException.h>
#include <Poco/Net/SecureStreamSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/Net/StreamSocket.h>

#include <chrono>
#include <string_view>
#include <thread>

#include "integration/WebhookHarness.hpp"

using twostep::test::HttpResult;
using twostep::test::Webhook;
using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

namespace {

/// Reads until the peer closes the connection, `limit` passes or (when given) `until` arrived;
/// returns what arrived and whether the peer closed (EOF or reset) within the limit.
struct Drained {
    std::string data;
    bool closed = false;
    Clock::duration after{};
};

Drained drain(Poco::Net::StreamSocket& socket, Clock::duration limit,
             std::string_view until = {}) {
    Drained result;
    const auto start = Clock::now();
    socket.setReceiveTimeout(Poco::Timespan(0, 200'000));
    char buffer[4096];
    while (Clock::now() - start < limit) {
        try {
            const int got = socket.receiveBytes(buffer, sizeof buffer);
            if (got <= 0) {
                result.closed = true;
                break;
            }
            result.data.append(buffer, static_cast<std::size_t>(got));
            if (!until.empty() && result.data.find(until) != std::string::npos) {
                break;
            }
        } catch (const Poco::TimeoutException&) {
            continue;
        } catch (const Poco::Exception&) {
            result.closed = true;  // reset, or TLS shut down under us
            break;
        }
    }
    result.after = Clock::now() - start;
    return result;
}

}  // namespace

TEST_CASE("wrong methods get 405 with Allow, unknown paths 404", "[integration][requests]") {
    Webhook webhook;
    webhook.start();
    const auto before405 = webhook.metric("twostep_http_requests_total{code=\"405\"}");

    const HttpResult getValidate = webhook.get("/validate?timeout=5s");
    CHECK(getValidate.status == 405);
    CHECK(getValidate.allow == "POST");
    CHECK(getValidate.contentType.rfind("text/plain", 0) == 0);

    const HttpResult postHealth = webhook.post("/healthz", "{}");
    CHECK(postHealth.status == 405);
    CHECK(postHealth.allow == "GET");
    CHECK(webhook.request("PUT", "/mutate").status == 405);
    CHECK(webhook.metric("twostep_http_requests_total{code=\"405\"}") == before405 + 3);

    for (const char* path : {"/", "/nope", "/validate/", "/validatex", "/Validate", "/metrics/x"}) {
        INFO(path);
        CHECK(webhook.post(path, "{}").status == 404);
        CHECK(webhook.get(path).status == 404);
    }
    CHECK(webhook.get("/healthz").body == "ok\n");
}

TEST_CASE("bodies that are not usable AdmissionReviews get 400 with a short reason",
          "[integration][requests]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.start();
    const nlohmann::json good = twostep::test::fixtureJson("0004");

    const auto expect400 = [&](const std::string& body, const std::string& reason) {
        INFO(body.substr(0, 200));
        const HttpResult result = webhook.post("/validate", body);
        CHECK(result.status == 400);
        CHECK(result.contentType.rfind("text/plain", 0) == 0);
        CHECK_THAT(result.body, Catch::StartsWith("bad request: ") && Catch::Contains(reason));
    };
    expect400("not json", "not valid JSON");
    expect400("", "body is empty");
    expect400(R"({"kind":"Pod","apiVersion":"v1"})", "not an AdmissionReview");
    expect400("[1,2,3]", "not an AdmissionReview");

    nlohmann::json noRequest = good;
    noRequest.erase("request");
    expect400(noRequest.dump(), "request is missing");

    nlohmann::json noUid = good;
    noUid["request"].erase("uid");
    expect400(noUid.dump(), "request.uid is missing");

    nlohmann::json numericToken = good;
    numericToken["request"]["object"]["metadata"]["annotations"]["twostep.dev/token"] = 123456;
    expect400(numericToken.dump(), "must be a string");

    nlohmann::json noUser = good;
    noUser["request"]["userInfo"].erase("username");
    expect400(noUser.dump(), "request.userInfo.username is missing");

    // A 200,000-deep nesting is refused by the parser, not by a stack overflow.
    expect400(std::string(200'000, '['), "");
    CHECK(webhook.get("/healthz").status == 200);
    // The same bodies on /mutate are refused the same way.
    CHECK(webhook.post("/mutate", noUid.dump()).status == 400);
}

TEST_CASE("a body over --max-body gets 413 without being read", "[integration][requests]") {
    Webhook webhook;
    webhook.start();
    constexpr std::size_t FourMiB = 4 * 1024 * 1024;

    SECTION("declared by Content-Length: refused before the body arrives") {
        Poco::Net::HTTPSClientSession session("127.0.0.1", webhook.port(),
                                              webhook.clientContext());
        session.setTimeout(Poco::Timespan(10, 0));
        Poco::Net::HTTPRequest request("POST", "/validate", Poco::Net::HTTPMessage::HTTP_1_1);
        request.setContentType("application/json");
        request.setContentLength64(FourMiB);
        const auto start = Clock::now();
        std::ostream& out = session.sendRequest(request);
        out << std::string(64 * 1024, '[');  // a sliver of the promised 4 MiB, then wait
        out.flush();
        Poco::Net::HTTPResponse response;
        std::istream& in = session.receiveResponse(response);
        const std::string body{std::istreambuf_iterator<char>(in), {}};
        CHECK(Clock::now() - start < 3s);
        CHECK(response.getStatus() == Poco::Net::HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE);
        CHECK(body == "request body larger than 3145728 bytes\n");
        CHECK_FALSE(response.getKeepAlive());
    }

    SECTION("chunked: refused once more than the limit has arrived") {
        Poco::Net::HTTPSClientSession session("127.0.0.1", webhook.port(),
                                              webhook.clientContext());
        session.setTimeout(Poco::Timespan(10, 0));
        Poco::Net::HTTPRequest request("POST", "/validate", Poco::Net::HTTPMessage::HTTP_1_1);
        request.setContentType("application/json");
        request.setChunkedTransferEncoding(true);
        std::ostream& out = session.sendRequest(request);
        const std::string piece(64 * 1024, ' ');
        for (std::size_t sent = 0; sent < 3 * 1024 * 1024 + piece.size(); sent += piece.size()) {
            out << piece;
        }
        out.flush();
        Poco::Net::HTTPResponse response;
        std::istream& in = session.receiveResponse(response);
        const std::string body{std::istreambuf_iterator<char>(in), {}};
        CHECK(response.getStatus() == Poco::Net::HTTPResponse::HTTP_REQUEST_ENTITY_TOO_LARGE);
        CHECK_FALSE(response.getKeepAlive());
    }

    CHECK(webhook.get("/healthz").status == 200);
    CHECK(webhook.metric("twostep_http_requests_total{code=\"413\"}") == 1);
}

TEST_CASE("the --max-body flag sets the limit", "[integration][requests]") {
    Webhook webhook;
    webhook.enroll("alice");
    webhook.start({"--max-body=2KiB"});
    const std::string review = twostep::test::readFixture("0001");
    REQUIRE(review.size() > 2048);
    const HttpResult refused = webhook.post("/validate", review);
    CHECK(refused.status == 413);
    CHECK(refused.body == "request body larger than 2048 bytes\n");
    CHECK(webhook.post("/validate", R"({"kind":"AdmissionReview"})").status == 400);
}

TEST_CASE("slow and idle clients are cut off by --read-timeout while others are served",
          "[integration][requests]") {
    Webhook webhook;
    webhook.start({"--read-timeout=1s", "--threads=4"});
    const Poco::Net::SocketAddress address("127.0.0.1", webhook.port());

    // A TCP connection that never starts TLS.
    Poco::Net::StreamSocket idle(address);
    // A TLS connection that stops in the middle of its headers.
    Poco::Net::SecureStreamSocket partialHeaders(address, webhook.clientContext());
    const std::string head = "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    partialHeaders.sendBytes(head.data(), static_cast<int>(head.size()));
    // A request whose body stalls after a few bytes.
    Poco::Net::SecureStreamSocket stalledBody(address, webhook.clientContext());
    const std::string partial =
        "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        "Content-Length: 1000\r\n\r\n{\"kind\":";
    stalledBody.sendBytes(partial.data(), static_cast<int>(partial.size()));

    // Meanwhile other clients are served promptly.
    std::thread others([&] {
        for (int i = 0; i < 10; ++i) {
            CHECK(webhook.get("/healthz").status == 200);
            std::this_thread::sleep_for(100ms);
        }
    });

    const Drained idleEnd = drain(idle, 5s);
    CHECK(idleEnd.closed);
    CHECK(idleEnd.after < 4s);
    const Drained headersEnd = drain(partialHeaders, 5s);
    CHECK(headersEnd.closed);
    const Drained bodyEnd = drain(stalledBody, 5s);
    CHECK(bodyEnd.closed);
    // The stalled body gets an answer first; it is never reviewed, let alone allowed.
    CHECK_THAT(bodyEnd.data, Catch::StartsWith("HTTP/1.1 408") &&
                                 Catch::Contains("timed out reading the request body"));
    others.join();
    CHECK(webhook.get("/healthz").status == 200);
    CHECK(webhook.server().output().find("\"decision\"") == std::string::npos);
}

TEST_CASE("a client trickling its headers is cut after --header-timeout, an idle keep-alive "
          "connection only after --idle-timeout",
          "[integration][requests]") {
    Webhook webhook;
    webhook.start({"--read-timeout=1s", "--header-timeout=2s", "--idle-timeout=5s",
                   "--threads=4"});
    const Poco::Net::SocketAddress address("127.0.0.1", webhook.port());

    // A keep-alive client: one request, answered, then the connection stays open and idle.
    Poco::Net::SecureStreamSocket keepAlive(address, webhook.clientContext());
    const std::string get = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    keepAlive.sendBytes(get.data(), static_cast<int>(get.size()));
    const Drained first = drain(keepAlive, 5s, "\r\n\r\nok\n");
    REQUIRE_THAT(first.data, Catch::StartsWith("HTTP/1.1 200"));
    REQUIRE_FALSE(first.closed);

    // A client that sends one header byte every 300 ms: never idle for a read timeout, never done.
    std::thread others([&] {
        std::this_thread::sleep_for(500ms);
        for (int i = 0; i < 5; ++i) {  // served on other connections meanwhile
            CHECK(webhook.get("/healthz").status == 200);
            std::this_thread::sleep_for(200ms);
        }
    });
    const auto start = Clock::now();
    Poco::Net::SecureStreamSocket trickle(address, webhook.clientContext());
    const std::string head = "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    trickle.sendBytes(head.data(), static_cast<int>(head.size()));
    bool cut = false;
    while (!cut && Clock::now() - start < 8s) {
        try {
            trickle.sendBytes("a", 1);
            cut = drain(trickle, 300ms).closed;
        } catch (const Poco::Exception&) {
            cut = true;  // the write failed: the server shut the connection down
        }
    }
    const auto trickled = Clock::now() - start;
    others.join();
    CHECK(cut);
    CHECK(trickled > 1500ms);
    CHECK(trickled < 4s);
    CHECK(webhook.server().waitForOutput("connection cut: no complete request headers", 5s));
    CHECK_THAT(webhook.server().output(), Catch::Contains("\"client\":\"127.0.0.1:"));

    // The keep-alive connection, idle for longer than the header timeout, is still served...
    const Drained idle = drain(keepAlive, 500ms);
    REQUIRE_FALSE(idle.closed);
    keepAlive.sendBytes(get.data(), static_cast<int>(get.size()));
    const Drained second = drain(keepAlive, 5s, "\r\n\r\nok\n");
    CHECK_THAT(second.data, Catch::StartsWith("HTTP/1.1 200"));
    REQUIRE_FALSE(second.closed);
    // ...and closed by POCO after --idle-timeout, not by the watchdog before.
    const Drained end = drain(keepAlive, 9s);
    CHECK(end.closed);
    CHECK(end.after > 4500ms);
    CHECK(end.after < 7s);
    CHECK(webhook.metric("twostep_connections_cut_total") == 1);
}
