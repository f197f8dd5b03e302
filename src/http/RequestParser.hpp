/// HTTP/1.1 request framing for the event-driven server: the head (request line and header
/// fields) is buffered whole and read by Poco::Net::HTTPRequest::read with POCO's limits; the body
/// is framed here, incrementally (Content-Length or chunked), so that a request may arrive in any
/// number of pieces and the connection never blocks on it.
#pragma once

#include <Poco/Net/HTTPRequest.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace twostep::http {

/// Why a request is refused: the HTTP status to answer and a short lowercase reason.
struct Refusal {
    int status = 400;
    std::string reason;
};

/// How the body of a request is delimited.
enum class BodyFraming { None, Length, Chunked };

/// Parses one request at a time from the bytes of a connection. Stricter than POCO alone where
/// a lenient reading lets two parsers disagree on where a request ends (request smuggling):
/// both Content-Length and Transfer-Encoding, Content-Lengths that differ or are not plain
/// digits, a transfer coding other than a single "chunked", folded header lines, bare CR or LF,
/// and malformed chunk framing are refused with 400. Not thread-safe (one per connection).
class RequestParser {
public:
    enum class State {
        Head,      ///< reading the request line and header fields
        HeadDone,  ///< head() is ready: readBody() goes on, or the connection is dropped
        Body,      ///< reading the body
        Done,      ///< head() and body() are complete
        Failed,    ///< refusal() says why; the rest of the connection cannot be parsed
    };

    /// The largest head (request line and fields, blank line included); more is a 431.
    static constexpr std::size_t MaxHeadBytes = 64 * 1024;
    /// The longest chunk-size line (extensions included) and the most trailer bytes.
    static constexpr std::size_t MaxChunkLine = 4096;
    static constexpr std::size_t MaxTrailerBytes = 8192;

    /// `maxBody`: the largest body readBody() accepts (a larger one fails with 413).
    explicit RequestParser(std::size_t maxBody);

    /// Consumes bytes from the front of `data`, returns how many. Stops at HeadDone, Done and
    /// Failed and consumes nothing more in those states.
    std::size_t parse(std::string_view data);

    State state() const { return state_; }
    /// Whether any byte of the current request arrived (blank lines before it do not count).
    bool started() const { return started_; }

    /// The request line and fields, from HeadDone on.
    const Poco::Net::HTTPRequest& head() const { return head_; }
    BodyFraming framing() const { return framing_; }
    /// The declared length (BodyFraming::Length), else 0.
    std::uint64_t contentLength() const { return contentLength_; }
    /// Whether a body is announced (a Content-Length above 0, or chunked).
    bool hasBody() const;
    /// "Expect: 100-continue" with a body to come.
    bool expectsContinue() const;
    /// HTTP/1.1 without "Connection: close", or HTTP/1.0 with "Connection: keep-alive".
    bool keepAlive() const;

    /// Goes on from HeadDone to the body (to Done when there is none, to Failed with 413 when
    /// the declared length is over the limit).
    void readBody();
    /// The body, complete in state Done (the caller may move it out).
    std::string& body() { return body_; }

    /// Why the request was refused (state Failed).
    const Refusal& refusal() const { return refusal_; }

    /// Ready for the next request on the same connection.
    void reset();

private:
    enum class Chunk { Size, Extension, SizeLf, Data, DataCr, DataLf, TrailerStart, Trailer,
                       TrailerLf, EndLf };

    std::size_t parseHead(std::string_view data);
    std::size_t parseBody(std::string_view data);
    std::size_t parseChunked(std::string_view data);
    /// Checks the head and sets the framing; false (and Failed) when it is refused.
    bool acceptHead();
    bool appendBody(std::string_view bytes);
    void fail(int status, std::string reason);

    std::size_t maxBody_;
    State state_ = State::Head;
    bool started_ = false;
    std::size_t blankBytes_ = 0;  ///< CR and LF skipped before the request line
    std::string headBytes_;
    Poco::Net::HTTPRequest head_;
    BodyFraming framing_ = BodyFraming::None;
    std::uint64_t contentLength_ = 0;
    std::string body_;
    std::uint64_t remaining_ = 0;  ///< of the body (Length) or of the chunk (Chunked)
    Chunk chunk_ = Chunk::Size;
    std::size_t lineBytes_ = 0;  ///< of the chunk-size line, or of all trailers
    int sizeDigits_ = 0;
    Refusal refusal_;
};

}  // namespace twostep::http
