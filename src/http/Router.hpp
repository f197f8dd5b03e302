/// Routing: POST /validate and /mutate to AdmitHandler, GET /healthz, /readyz and /metrics, 405
/// with an Allow header for a known path with the wrong method, 404 for everything else.
#pragma once

#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace Poco::Net {
class HTTPServerResponse;
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
    std::chrono::milliseconds readTimeout{0};
    /// --client-ca is set: /validate and /mutate answer 403 without a verified client certificate.
    bool requireClientCertificate = false;
};

/// Returns a handler for every request (never nullptr, which POCO would answer with 501).
class HandlerFactory final : public Poco::Net::HTTPRequestHandlerFactory {
public:
    /// `services` must outlive the HttpServer that owns this factory.
    explicit HandlerFactory(const ServerServices& services) : services_(services) {}

    /// Also tells the calling connection's watchdog registration (if any) that the request's
    /// headers are complete, and that the request is done when the returned handler is deleted.
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest& request) override;

    /// What HTTPServer::stopAll() tells its connections after closing the listening socket:
    /// each finishes its request in flight (or aborts it when `abortCurrent`), then closes.
    void stopConnections(bool abortCurrent) { serverStopped(this, abortCurrent); }

private:
    Poco::Net::HTTPRequestHandler* route(const Poco::Net::HTTPServerRequest& request);

    const ServerServices& services_;
};

/// The path part of a request target: "/validate?timeout=5s" -> "/validate".
std::string_view pathOf(std::string_view uri);

/// Sends a complete response (Content-Length set, flushed) and counts non-200 answers.
/// Never throws: a client that went away is not an error worth more than the log line POCO skips.
void sendResponse(Poco::Net::HTTPServerResponse& response, Metrics& metrics, int status,
                  std::string_view contentType, std::string_view body) noexcept;

}  // namespace twostep::http
