// The request framing of the event-driven server: heads through POCO's reader, bodies by
// Content-Length or chunked, in any number of pieces, and the smuggling shapes refused with 400.
#include "http/RequestParser.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <string_view>
#include <vector>

using twostep::http::BodyFraming;
using twostep::http::RequestParser;
using State = RequestParser::State;
using namespace std::string_literals;

namespace {

constexpr std::size_t Limit = 1024;

/// One parsed request, or the refusal that ended the stream.
struct Parsed {
    std::string method, uri, body;
    BodyFraming framing = BodyFraming::None;
    bool keepAlive = false;
    bool expectsContinue = false;
    int refusal = 0;
    std::string reason;
    bool operator==(const Parsed&) const = default;
};

}  // namespace

namespace Catch {
template <>
struct StringMaker<Parsed> {
    static std::string convert(const Parsed& p) {
        if (p.refusal != 0) {
            return std::to_string(p.refusal) + " " + p.reason;
        }
        return p.method + " " + p.uri + " body[" + std::to_string(p.body.size()) + "]";
    }
};
}  // namespace Catch

namespace {

/// Everything `stream` holds, fed `piece` bytes at a time (0: all at once); a request still
/// incomplete at the end is left out.
std::vector<Parsed> parseAll(std::string_view stream, std::size_t piece = 0) {
    RequestParser parser(Limit);
    std::vector<Parsed> out;
    std::string pending;
    std::size_t offset = 0;
    while (true) {
        switch (parser.state()) {
        case State::HeadDone:
            parser.readBody();
            continue;
        case State::Done: {
            Parsed p;
            p.method = parser.head().getMethod();
            p.uri = parser.head().getURI();
            p.body = parser.body();
            p.framing = parser.framing();
            p.keepAlive = parser.keepAlive();
            p.expectsContinue = parser.expectsContinue();
            out.push_back(std::move(p));
            parser.reset();
            continue;
        }
        case State::Failed: {
            Parsed p;
            p.refusal = parser.refusal().status;
            p.reason = parser.refusal().reason;
            out.push_back(std::move(p));
            return out;
        }
        case State::Head:
        case State::Body: break;
        }
        if (pending.empty()) {
            if (offset >= stream.size()) {
                return out;
            }
            const std::size_t n = piece == 0 ? stream.size() : piece;
            pending = std::string(stream.substr(offset, n));
            offset += pending.size();
        }
        pending.erase(0, parser.parse(pending));
        if (parser.state() == State::Head || parser.state() == State::Body) {
            REQUIRE(pending.empty());  // more is needed, and everything was taken
        }
    }
}

/// The refusal of `stream` (0 when it parses), the same in every piece size.
Parsed refusalOf(std::string_view stream) {
    const std::vector<Parsed> whole = parseAll(stream);
    REQUIRE_FALSE(whole.empty());
    for (std::size_t piece : {std::size_t{1}, std::size_t{2}, std::size_t{7}}) {
        CHECK(parseAll(stream, piece) == whole);
    }
    return whole.back();
}

const std::string Post = "POST /validate?timeout=5s HTTP/1.1\r\nHost: x\r\n";

}  // namespace

TEST_CASE("requests parse the same whole and in pieces of any size", "[http][parser]") {
    const std::string stream =
        "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n" + Post +
        "Content-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"kind\":1}\n" + Post +
        "Transfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n0a\r\n0123456789\r\n0\r\n"
        "Trailer-Field: x\r\n\r\n"
        "GET /metrics HTTP/1.0\r\n\r\n";
    const std::vector<Parsed> whole = parseAll(stream);
    REQUIRE(whole.size() == 4);
    CHECK(whole[0].method == "GET");
    CHECK(whole[0].uri == "/healthz");
    CHECK(whole[0].keepAlive);
    CHECK(whole[1].uri == "/validate?timeout=5s");
    CHECK(whole[1].framing == BodyFraming::Length);
    CHECK(whole[1].body == "{\"kind\":1}\n");
    CHECK(whole[2].framing == BodyFraming::Chunked);
    CHECK(whole[2].body == "abcd0123456789");
    CHECK_FALSE(whole[3].keepAlive);  // HTTP/1.0 without keep-alive
    for (std::size_t piece = 1; piece < 40; ++piece) {
        INFO("pieces of " << piece);
        CHECK(parseAll(stream, piece) == whole);
    }
}

TEST_CASE("heads: blank lines before, keep-alive and 100-continue", "[http][parser]") {
    const auto one = [](const std::string& stream) {
        const auto all = parseAll(stream);
        REQUIRE(all.size() == 1);
        return all.front();
    };
    CHECK(one("\r\nGET / HTTP/1.1\r\n\r\n").method == "GET");
    CHECK_FALSE(one("GET / HTTP/1.1\r\nConnection: close\r\n\r\n").keepAlive);
    CHECK(one("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").keepAlive);
    CHECK(one(Post + "Expect: 100-continue\r\nContent-Length: 2\r\n\r\n{}").expectsContinue);
    // No body, nothing to continue.
    CHECK_FALSE(one(Post + "Expect: 100-continue\r\nContent-Length: 0\r\n\r\n").expectsContinue);
    // The same length twice is one length.
    CHECK(one(Post + "Content-Length: 2\r\nContent-Length: 2\r\n\r\n{}").body == "{}");
    // Field names are case-insensitive.
    CHECK(one(Post + "transfer-encoding: Chunked\r\n\r\n1\r\na\r\n0\r\n\r\n").body == "a");
}

TEST_CASE("the head stops where the body starts; the body is read only when asked",
          "[http][parser]") {
    RequestParser parser(Limit);
    const std::string stream = Post + "Content-Length: 5\r\n\r\nhello";
    const std::size_t used = parser.parse(stream);
    REQUIRE(parser.state() == State::HeadDone);
    CHECK(used == stream.size() - 5);
    CHECK(parser.hasBody());
    CHECK(parser.contentLength() == 5);
    CHECK(parser.parse("hello") == 0);  // not before readBody()
    parser.readBody();
    CHECK(parser.parse("hello, and the next request") == 5);
    CHECK(parser.state() == State::Done);
    CHECK(parser.body() == "hello");
}

TEST_CASE("request smuggling shapes are refused with 400", "[http][parser]") {
    const auto status = [](const std::string& stream) { return refusalOf(stream).refusal; };
    CHECK(status(Post + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n") == 400);
    CHECK(status(Post + "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n") == 400);
    CHECK(status(Post + "Content-Length: 3\r\nContent-Length: 4\r\n\r\n") == 400);
    for (const char* length : {"abc", "+3", "-1", "0x10", "3,3", "3 3", "", "99999999999999999999"}) {
        INFO("Content-Length: " << length);
        CHECK(status(Post + "Content-Length: " + length + "\r\n\r\n") == 400);
    }
    for (const char* coding : {"gzip, chunked", "chunked, gzip", "identity", "chunked, chunked",
                               "xchunked", "=?UTF-8?Q?chunked?="}) {
        INFO("Transfer-Encoding: " << coding);
        CHECK(status(Post + "Transfer-Encoding: " + coding + "\r\n\r\n") == 400);
    }
    CHECK(status(Post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n") ==
          400);
    CHECK(status("POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n") == 400);
    // What a lenient reader takes for another field, or for none.
    CHECK(status(Post + "Transfer-Encoding : chunked\r\n\r\n") == 400);
    CHECK(status(Post + "X-A: 1\r\n Transfer-Encoding: chunked\r\n\r\n") == 400);
    CHECK(status(Post + "Content-Length: 2\nX: y\r\n\r\n{}") == 400);
    CHECK(status(Post + "Content-Length: 2\rX: y\r\n\r\n{}") == 400);
    CHECK(status(Post + "X: a\0b\r\n\r\n"s) == 400);
    CHECK(status(Post + "no colon here\r\n\r\n") == 400);
    CHECK_THAT(refusalOf(Post + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n").reason,
               Catch::Contains("both Content-Length and Transfer-Encoding"));
}

TEST_CASE("malformed chunked bodies are refused, oversized ones with 413", "[http][parser]") {
    const std::string chunked = Post + "Transfer-Encoding: chunked\r\n\r\n";
    const auto status = [&](const std::string& body) { return refusalOf(chunked + body).refusal; };
    CHECK(status("x\r\n") == 400);                  // not hex
    CHECK(status(";a\r\n") == 400);                 // no size before the extension
    CHECK(status("3\r\nabcX\r\n") == 400);          // data longer than its size
    CHECK(status("3\nabc\r\n") == 400);             // bare LF after the size
    CHECK(status("3\r\nabc\r\n0\r\nbad\nx\r\n") == 400);  // bare LF in a trailer
    CHECK(status("1;" + std::string(5000, 'e') + "\r\n") == 400);
    CHECK(status("0\r\n" + std::string(9000, 't') + "\r\n\r\n") == 400);
    const Parsed big = refusalOf(chunked + "401\r\n");  // 1025 > the 1024 limit
    CHECK(big.refusal == 413);
    CHECK(big.reason == "request body larger than 1024 bytes");
    // Within the limit chunk by chunk, over it together.
    CHECK(status("200\r\n" + std::string(512, 'a') + "\r\n201\r\n") == 413);
    CHECK(status("ffffffffffffffffffffffff\r\n") == 413);  // never overflows
    CHECK(refusalOf(chunked + "400\r\n" + std::string(1024, 'a') + "\r\n0\r\n\r\n").body.size() ==
          1024);
}

TEST_CASE("heads are bounded by POCO's limits and ours", "[http][parser]") {
    CHECK(refusalOf("GET / HTTP/1.1\r\nX: " + std::string(70 * 1024, 'a') + "\r\n\r\n").refusal ==
          431);
    std::string many = "GET / HTTP/1.1\r\n";
    for (int i = 0; i < 101; ++i) {
        many += "X-" + std::to_string(i) + ": v\r\n";
    }
    const Parsed tooMany = refusalOf(many + "\r\n");
    CHECK(tooMany.refusal == 400);
    CHECK_THAT(tooMany.reason, Catch::Contains("too many header fields"));
    CHECK(refusalOf("GET / HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n").refusal == 400);
    CHECK(refusalOf("GET /" + std::string(17000, 'a') + " HTTP/1.1\r\n\r\n").refusal == 400);
    CHECK(refusalOf("GET / HTTP/2.0\r\n\r\n").refusal == 505);
    CHECK(refusalOf("GET / FOO\r\n\r\n").refusal == 400);
    CHECK(refusalOf("GE(T / HTTP/1.1\r\n\r\n").refusal == 400);
    CHECK(refusalOf("\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n").refusal == 400);
    const Parsed declared = refusalOf(Post + "Content-Length: 1025\r\n\r\n");
    CHECK(declared.refusal == 413);  // refused by readBody() before a byte of it
}
