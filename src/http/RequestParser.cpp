#include "http/RequestParser.hpp"

#include <Poco/Exception.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <cctype>
#include <istream>
#include <streambuf>

#include "core/Hex.hpp"

namespace twostep::http {

namespace {

/// RFC 9110 tchar: the characters of a method or field name (a table: this runs per byte of
/// every head).
constexpr std::array<bool, 256> TokenChars = [] {
    std::array<bool, 256> table{};
    for (int c = '0'; c <= '9'; ++c) {
        table[static_cast<std::size_t>(c)] = true;
    }
    for (int c = 'a'; c <= 'z'; ++c) {
        table[static_cast<std::size_t>(c)] = true;
        table[static_cast<std::size_t>(c - 'a' + 'A')] = true;
    }
    for (const char c : std::string_view("!#$%&'*+-.^_`|~")) {
        table[static_cast<unsigned char>(c)] = true;
    }
    return table;
}();

bool isTokenChar(char c) {
    return TokenChars[static_cast<unsigned char>(c)];
}

bool isToken(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), isTokenChar);
}

/// A control character other than HTAB (never allowed in field values or chunk extensions).
inline bool isForbiddenControl(char c) {
    const auto u = static_cast<unsigned char>(c);
    return (u < 0x20 && c != '\t') || u == 0x7f;
}

std::string lowercaseFirst(std::string text) {
    if (!text.empty()) {
        text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
    }
    return text;
}

bool equalsIgnoringCase(std::string_view a, std::string_view b) {
    return a.size() == b.size() &&
           std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return std::tolower(static_cast<unsigned char>(x)) ==
                      std::tolower(static_cast<unsigned char>(y));
           });
}

std::string_view trimmed(std::string_view text) {
    const std::size_t first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    return text.substr(first, text.find_last_not_of(" \t") - first + 1);
}

/// What a lenient reading would take differently from a strict one, and the framing fields as
/// sent (POCO decodes RFC 2047 words in values: "=?UTF-8?Q?chunked?=" would become "chunked").
struct HeadScan {
    std::string_view problem;  ///< empty when the head is well-formed
    std::vector<std::string_view> lengths;  ///< Content-Length values, trimmed
    std::vector<std::string_view> codings;  ///< Transfer-Encoding values, trimmed
};

/// Checks `head` (which ends with the blank line) for bare CR or LF, NUL and other controls,
/// folded lines and field names that are not tokens (a space before the colon), and collects
/// the framing fields.
HeadScan scanHead(std::string_view head) {
    HeadScan scan;
    std::size_t lineStart = 0;
    bool requestLine = true;
    while (lineStart < head.size()) {
        const std::size_t crlf = head.find("\r\n", lineStart);
        assert(crlf != std::string_view::npos && "the head ends with CRLF CRLF");
        const std::string_view line = head.substr(lineStart, crlf - lineStart);
        lineStart = crlf + 2;
        for (const char c : line) {  // one pass: this runs over every byte of every head
            if (isForbiddenControl(c)) {
                scan.problem = c == '\r' || c == '\n' ? "a bare CR or LF in the request head"
                                                      : "a control character in the request head";
                return scan;
            }
        }
        if (line.empty()) {
            break;  // the blank line that ends the head
        }
        if (requestLine) {
            requestLine = false;
            continue;
        }
        if (line.front() == ' ' || line.front() == '\t') {
            scan.problem = "a folded header line";
            return scan;
        }
        const std::size_t colon = line.find(':');
        const std::string_view name = line.substr(0, colon);
        if (colon == std::string_view::npos || !isToken(name)) {
            scan.problem = "a malformed header field name";
            return scan;
        }
        const std::string_view value = trimmed(line.substr(colon + 1));
        if (equalsIgnoringCase(name, "Content-Length")) {
            scan.lengths.push_back(value);
        } else if (equalsIgnoringCase(name, "Transfer-Encoding")) {
            scan.codings.push_back(value);
        }
    }
    return scan;
}

/// One std::istream per thread, pointed at each head in turn for POCO's parser: constructing a
/// stream per request (its ios_base and locale) cost as much as parsing a short head.
class HeadStream {
public:
    std::istream& over(std::string& bytes) {
        buffer_.point(bytes);
        stream_.clear();
        return stream_;
    }

private:
    struct Buffer final : std::streambuf {
        void point(std::string& bytes) {
            setg(bytes.data(), bytes.data(), bytes.data() + bytes.size());
        }
    };
    Buffer buffer_;
    std::istream stream_{&buffer_};
};

thread_local HeadStream headStream;

std::string tooLarge(std::size_t limit) {
    return "request body larger than " + std::to_string(limit) + " bytes";
}

}  // namespace

RequestParser::RequestParser(std::size_t maxBody) : maxBody_(maxBody) {}

std::size_t RequestParser::parse(std::string_view data) {
    switch (state_) {
    case State::Head: return parseHead(data);
    case State::Body: return parseBody(data);
    case State::HeadDone:
    case State::Done:
    case State::Failed: return 0;
    }
    return 0;
}

bool RequestParser::hasBody() const {
    return framing_ == BodyFraming::Chunked ||
           (framing_ == BodyFraming::Length && contentLength_ > 0);
}

bool RequestParser::expectsContinue() const {
    return hasBody() && head_.getExpectContinue();
}

bool RequestParser::keepAlive() const {
    return head_.getKeepAlive();
}

void RequestParser::readBody() {
    assert(state_ == State::HeadDone && "readBody() follows the head");
    switch (framing_) {
    case BodyFraming::None: state_ = State::Done; return;
    case BodyFraming::Length:
        if (contentLength_ > maxBody_) {
            fail(413, tooLarge(maxBody_));
            return;
        }
        remaining_ = contentLength_;
        // Not reserved whole: a client announcing the limit and sending nothing costs nothing.
        body_.reserve(static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, 64 * 1024)));
        state_ = remaining_ == 0 ? State::Done : State::Body;
        return;
    case BodyFraming::Chunked: state_ = State::Body; return;
    }
}

void RequestParser::reset() {
    state_ = State::Head;
    started_ = false;
    blankBytes_ = 0;
    headBytes_.clear();
    if (headBytes_.capacity() > 8 * 1024) {
        headBytes_.shrink_to_fit();  // a large head once is no reason to keep its buffer
    }
    head_.clear();  // fields; HTTPRequest::read sets method, URI and version anew
    framing_ = BodyFraming::None;
    contentLength_ = 0;
    body_.clear();
    body_.shrink_to_fit();  // an idle connection keeps no body buffer
    remaining_ = 0;
    chunk_ = Chunk::Size;
    lineBytes_ = 0;
    sizeDigits_ = 0;
    refusal_ = Refusal{};
}

void RequestParser::fail(int status, std::string reason) {
    state_ = State::Failed;
    refusal_ = Refusal{status, std::move(reason)};
}

std::size_t RequestParser::parseHead(std::string_view data) {
    std::size_t used = 0;
    if (!started_) {
        // RFC 9112 §2.2: a server SHOULD ignore at least one empty line before a request line.
        constexpr std::size_t MaxBlank = 8;
        while (used < data.size() && (data[used] == '\r' || data[used] == '\n')) {
            if (++blankBytes_ > MaxBlank) {
                fail(400, "too many blank lines before the request line");
                return used;
            }
            ++used;
        }
        if (used == data.size()) {
            return used;
        }
        started_ = true;
    }
    const std::size_t before = headBytes_.size();
    const std::size_t take = std::min(MaxHeadBytes - before, data.size() - used);
    headBytes_.append(data.substr(used, take));
    const std::size_t end = headBytes_.find("\r\n\r\n", before >= 3 ? before - 3 : 0);
    // A bare LF would never end the head with CRLF CRLF: refuse it now, not at the timeout.
    const std::size_t scanned = end == std::string::npos ? headBytes_.size() : end + 4;
    for (std::size_t at = headBytes_.find('\n', before); at < scanned;
         at = headBytes_.find('\n', at + 1)) {
        if (at == 0 || headBytes_[at - 1] != '\r') {
            fail(400, "malformed request head: a bare CR or LF in the request head");
            return used + take;
        }
    }
    if (end == std::string::npos) {
        if (headBytes_.size() >= MaxHeadBytes) {
            fail(431, "request head larger than " + std::to_string(MaxHeadBytes) + " bytes");
        }
        return used + take;
    }
    const std::size_t past = headBytes_.size() - (end + 4);  // bytes of what follows the head
    headBytes_.resize(end + 4);
    acceptHead();
    return used + take - past;
}

bool RequestParser::acceptHead() {
    const HeadScan scan = scanHead(headBytes_);
    if (!scan.problem.empty()) {
        fail(400, "malformed request head: " + std::string(scan.problem));
        return false;
    }
    try {
        // POCO's limits apply: method, URI and version length, 100 fields, 256-byte names and
        // 8 KiB values.
        head_.read(headStream.over(headBytes_));
    } catch (const Poco::Exception& e) {
        fail(400, "malformed request head: " +
                      lowercaseFirst(e.message().empty() ? e.what() : e.message()));
        return false;
    }

    const std::string& version = head_.getVersion();
    if (version != Poco::Net::HTTPMessage::HTTP_1_1 &&
        version != Poco::Net::HTTPMessage::HTTP_1_0) {
        if (version.rfind("HTTP/", 0) == 0) {
            fail(505, "only HTTP/1.1 and HTTP/1.0 are served");
        } else {
            fail(400, "malformed request head: no HTTP version");
        }
        return false;
    }
    if (!isToken(head_.getMethod())) {
        fail(400, "malformed request head: the method is not a token");
        return false;
    }

    // Framing from the fields as sent, never from POCO's decoded values.
    const std::vector<std::string_view>& lengths = scan.lengths;
    const std::vector<std::string_view>& codings = scan.codings;
    if (!lengths.empty() && !codings.empty()) {
        fail(400, "both Content-Length and Transfer-Encoding: the body's length is ambiguous");
        return false;
    }
    if (!codings.empty()) {
        if (version == Poco::Net::HTTPMessage::HTTP_1_0) {
            fail(400, "Transfer-Encoding in an HTTP/1.0 request");
            return false;
        }
        if (codings.size() != 1 || !equalsIgnoringCase(codings.front(), "chunked")) {
            fail(400, "unsupported Transfer-Encoding: only a single \"chunked\" is accepted");
            return false;
        }
        framing_ = BodyFraming::Chunked;
    }
    for (const std::string_view text : lengths) {
        // 1*DIGIT and nothing else (no sign, no list); 19 digits always fit in 64 bits.
        if (text.empty() || text.size() > 19 ||
            !std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
            fail(400, "malformed Content-Length");
            return false;
        }
        std::uint64_t value = 0;
        for (const char digit : text) {
            value = value * 10 + static_cast<std::uint64_t>(digit - '0');
        }
        if (framing_ == BodyFraming::Length && value != contentLength_) {
            fail(400, "Content-Lengths that differ: the body's length is ambiguous");
            return false;
        }
        framing_ = BodyFraming::Length;
        contentLength_ = value;
    }
    headBytes_.clear();
    state_ = State::HeadDone;
    return true;
}

std::size_t RequestParser::parseBody(std::string_view data) {
    if (framing_ == BodyFraming::Chunked) {
        return parseChunked(data);
    }
    const auto take = static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size()));
    body_.append(data.data(), take);
    remaining_ -= take;
    if (remaining_ == 0) {
        state_ = State::Done;
    }
    return take;
}

std::size_t RequestParser::parseChunked(std::string_view data) {
    std::size_t i = 0;
    while (i < data.size() && state_ == State::Body) {
        const char c = data[i];
        switch (chunk_) {
        case Chunk::Size:
        case Chunk::Extension:
        case Chunk::SizeLf:
            if (++lineBytes_ > MaxChunkLine) {
                fail(400, "malformed chunked body: chunk-size line too long");
                continue;
            }
            break;
        case Chunk::TrailerStart:
        case Chunk::Trailer:
        case Chunk::TrailerLf:
        case Chunk::EndLf:
            if (++lineBytes_ > MaxTrailerBytes) {
                fail(400, "malformed chunked body: trailer fields too long");
                continue;
            }
            break;
        case Chunk::Data:
        case Chunk::DataCr:
        case Chunk::DataLf: break;
        }
        switch (chunk_) {
        case Chunk::Size:
            if (const int digit = core::hex::digitValue(c); digit >= 0) {
                remaining_ = remaining_ * 16 + static_cast<std::uint64_t>(digit);
                ++sizeDigits_;
                // Checked per digit, so the size never overflows: maxBody is far below 2^60.
                if (remaining_ > maxBody_ - body_.size()) {
                    fail(413, tooLarge(maxBody_));
                    continue;
                }
                ++i;
            } else if (sizeDigits_ > 0 && (c == ';' || c == ' ' || c == '\t')) {
                chunk_ = Chunk::Extension;
                ++i;
            } else if (sizeDigits_ > 0 && c == '\r') {
                chunk_ = Chunk::SizeLf;
                ++i;
            } else {
                fail(400, "malformed chunked body: bad chunk size");
            }
            break;
        case Chunk::Extension:
            if (c == '\r') {
                chunk_ = Chunk::SizeLf;
                ++i;
            } else if (isForbiddenControl(c)) {
                fail(400, "malformed chunked body: bad chunk extension");
            } else {
                ++i;
            }
            break;
        case Chunk::SizeLf:
            if (c != '\n') {
                fail(400, "malformed chunked body: chunk-size line without CRLF");
                continue;
            }
            ++i;
            lineBytes_ = 0;
            chunk_ = remaining_ == 0 ? Chunk::TrailerStart : Chunk::Data;
            break;
        case Chunk::Data: {
            const auto take =
                static_cast<std::size_t>(std::min<std::uint64_t>(remaining_, data.size() - i));
            body_.append(data.data() + i, take);
            remaining_ -= take;
            i += take;
            if (remaining_ == 0) {
                chunk_ = Chunk::DataCr;
            }
            break;
        }
        case Chunk::DataCr:
        case Chunk::DataLf:
            if (c != (chunk_ == Chunk::DataCr ? '\r' : '\n')) {
                fail(400, "malformed chunked body: chunk data not followed by CRLF");
                continue;
            }
            ++i;
            if (chunk_ == Chunk::DataCr) {
                chunk_ = Chunk::DataLf;
            } else {
                chunk_ = Chunk::Size;
                sizeDigits_ = 0;
            }
            break;
        case Chunk::TrailerStart:
            if (c == '\r') {
                chunk_ = Chunk::EndLf;
                ++i;
            } else {
                chunk_ = Chunk::Trailer;  // a trailer field: read and ignored
            }
            break;
        case Chunk::Trailer:
            if (c == '\r') {
                chunk_ = Chunk::TrailerLf;
                ++i;
            } else if (c == '\n' || isForbiddenControl(c)) {
                fail(400, "malformed chunked body: bad trailer field");
            } else {
                ++i;
            }
            break;
        case Chunk::TrailerLf:
        case Chunk::EndLf:
            if (c != '\n') {
                fail(400, "malformed chunked body: trailer without CRLF");
                continue;
            }
            ++i;
            if (chunk_ == Chunk::EndLf) {
                state_ = State::Done;
            } else {
                chunk_ = Chunk::TrailerStart;
            }
            break;
        }
    }
    return i;
}

}  // namespace twostep::http
