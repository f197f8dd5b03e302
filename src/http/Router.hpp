/// Routing: POST /validate and /mutate to AdmitHandler, GET /healthz, /readyz and /metrics, 405
/// with an Allow header for a known path with the wrong method, 404 for everything else. The
/// connection layer asks what to do once a request's head is in and once its body is; work that
/// may block on the database comes back as a BlockingWork to run on a worker thread.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

#include "core/Policy.hpp"

namespace Poco::Net {
class HTTPRequest;
}

namespace twostep::core {
class Clock;
class Reviewer;
class Store;
}  // namespace twostep::core

namespace twostep::http {

class Log;
class Metrics;

/// The long-lived services the handlers use, owned by WebhookServer; all thread-safe.
struct ServerServices {
    const core::Reviewer& reviewer;
    core::Store& store;
    const core::Clock& clock;
    Metrics& metrics;
    Log& log;
    std::function<bool()> certificateLoaded;
    std::size_t maxBody = 0;
    /// --client-ca is set: /validate and /mutate answer 403 without a verified client certificate.
    bool requireClientCertificate = false;
};

inline constexpr std::string_view TextPlain = "text/plain; charset=utf-8";

/// One HTTP answer; the connection writes head and body with one write.
struct Response {
    int status = 200;
    std::string_view contentType = TextPlain;  ///< a static string
    std::string body;
    std::string allow;     ///< the Allow header of a 405
    bool close = false;    ///< close the connection after the answer
    bool linger = false;   ///< close, after reading away what the client still sends (413, 403)
};

/// Work that may block on the database: runs on a worker thread, and its Response is sent by
/// the connection's loop. Must not throw.
using BlockingWork = std::function<Response()>;

/// An answer, or the work that makes it.
using Reply = std::variant<Response, BlockingWork>;

/// A request as the router sees it once its head is in.
struct RequestHead {
    const Poco::Net::HTTPRequest& head;
    std::string_view client;      ///< the peer's IP address, for log lines
    bool hasBody = false;         ///< a body is announced (Content-Length > 0, or chunked)
    bool lengthKnown = false;     ///< by Content-Length (else chunked, or no body)
    std::uint64_t contentLength = 0;
    bool verifiedClient = false;  ///< a client certificate that verified against --client-ca
};

/// What to do with a request whose head is in.
struct Route {
    std::optional<Reply> reply;             ///< answer now, without reading the body
    std::optional<core::Endpoint> review;   ///< else read the body and call Router::review()
};

/// Decides every request (never throws). Thread-safe: stateless over the services.
class Router {
public:
    /// `services` must outlive the router.
    explicit Router(const ServerServices& services) : services_(services) {}

    Route route(const RequestHead& request) const noexcept;
    /// The body of a request route() sent to `endpoint` is complete.
    Reply review(core::Endpoint endpoint, std::string body) const noexcept;
    /// The answer to a request the connection refuses (malformed, too large, too slow), logged
    /// and always closing the connection; `endpoint` when the head was routed to one.
    Response refuse(int status, std::string reason, std::string_view client,
                    std::optional<core::Endpoint> endpoint) const noexcept;

private:
    const ServerServices& services_;
};

/// A refusal: logged ("request refused", at warn) and answered as text on a connection that
/// then closes (after a lingering read for 413 and 403, whose body was not read).
Response refuseRequest(const ServerServices& services, int status, std::string reason,
                       std::string_view client, std::optional<core::Endpoint> endpoint) noexcept;

/// The path part of a request target: "/validate?timeout=5s" -> "/validate".
std::string_view pathOf(std::string_view uri);

/// Appends the bytes of `response` on the wire to `out`: status line, Date, Content-Type,
/// Content-Length, Allow, Connection: Close when `close`, then the body.
void appendSerialized(std::string& out, const Response& response, bool close);

}  // namespace twostep::http
