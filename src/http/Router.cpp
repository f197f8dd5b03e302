#include "http/HandlerFactory.hpp"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>

#include <array>
#include <exception>
#include <memory>
#include <ostream>
#include <string>

#include "core/Clock.hpp"
#include "core/Store.hpp"
#include "http/AdmitHandler.hpp"
#include "http/ConnectionWatchdog.hpp"
#include "http/Log.hpp"
#include "http/Metrics.hpp"

namespace twostep::http {

namespace {

constexpr std::string_view TextPlain = "text/plain; charset=utf-8";

/// These handlers never read a request body; one left on the connection would be parsed as the
/// next request, so such a connection is closed after the answer.
void closeIfBodyUnread(const Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) {
    if (request.getChunkedTransferEncoding() || request.getContentLength64() > 0) {
        response.setKeepAlive(false);
    }
}

/// A fixed answer: 404, 405 (with Allow), /healthz.
class FixedHandler final : public Poco::Net::HTTPRequestHandler {
public:
    FixedHandler(Metrics& metrics, int status, std::string body, std::string allow = "")
        : metrics_(metrics), status_(status), body_(std::move(body)), allow_(std::move(allow)) {}

    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override {
        try {
            closeIfBodyUnread(request, response);
            if (!allow_.empty()) {
                response.set("Allow", allow_);
            }
        } catch (...) {
            // Only allocation can fail here; the answer below still goes out.
        }
        sendResponse(response, metrics_, status_, TextPlain, body_);
    }

private:
    Metrics& metrics_;
    int status_;
    std::string body_;
    std::string allow_;
};

/// GET /readyz: 200 when the database answers and a certificate is loaded, else 503 and why.
class ReadyHandler final : public Poco::Net::HTTPRequestHandler {
public:
    explicit ReadyHandler(const ServerServices& services) : services_(services) {}

    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override {
        std::string problem;
        try {
            closeIfBodyUnread(request, response);
            services_.store.ping();
        } catch (const std::exception& e) {
            problem = std::string("database not usable: ") + e.what();
        } catch (...) {
            problem = "database not usable";
        }
        if (problem.empty() && !services_.certificateLoaded()) {
            problem = "no certificate loaded";
        }
        if (problem.empty()) {
            sendResponse(response, services_.metrics, 200, TextPlain, "ok\n");
            return;
        }
        services_.log.warn("not ready", {{"reason", problem}});
        sendResponse(response, services_.metrics, 503, TextPlain, problem + "\n");
    }

private:
    const ServerServices& services_;
};

/// GET /metrics: the Prometheus text format, user gauges refreshed from the store first.
class MetricsHandler final : public Poco::Net::HTTPRequestHandler {
public:
    explicit MetricsHandler(const ServerServices& services) : services_(services) {}

    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override {
        try {
            closeIfBodyUnread(request, response);
            services_.metrics.refreshUserGauges(services_.store, services_.clock.now());
        } catch (const std::exception& e) {
            // Serve the other metrics anyway; the gauges keep their last values.
            services_.log.warn("cannot refresh user gauges", {{"error", e.what()}});
        } catch (...) {
            services_.log.warn("cannot refresh user gauges");
        }
        try {
            sendResponse(response, services_.metrics, 200, "text/plain; version=0.0.4",
                         services_.metrics.renderText());
        } catch (...) {
            sendResponse(response, services_.metrics, 500, TextPlain, "cannot render metrics\n");
        }
    }

private:
    const ServerServices& services_;
};

/// Tells the connection's watchdog registration when the request is done: POCO deletes the
/// handler once the answer is sent, before it waits for the next request on the connection.
class WatchedHandler final : public Poco::Net::HTTPRequestHandler {
public:
    WatchedHandler(std::unique_ptr<Poco::Net::HTTPRequestHandler> handler,
                   ConnectionWatchdog::Registration& connection)
        : handler_(std::move(handler)), connection_(connection) {}
    ~WatchedHandler() override { connection_.requestDone(); }
    WatchedHandler(const WatchedHandler&) = delete;
    WatchedHandler& operator=(const WatchedHandler&) = delete;

    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override {
        handler_->handleRequest(request, response);
    }

private:
    std::unique_ptr<Poco::Net::HTTPRequestHandler> handler_;
    ConnectionWatchdog::Registration& connection_;
};

enum class Route { Validate, Mutate, Healthz, Readyz, Metrics };

struct RouteSpec {
    std::string_view path;
    Route route;
    std::string_view method;
};

constexpr std::array Routes{
    RouteSpec{"/validate", Route::Validate, "POST"},
    RouteSpec{"/mutate", Route::Mutate, "POST"},
    RouteSpec{"/healthz", Route::Healthz, "GET"},
    RouteSpec{"/readyz", Route::Readyz, "GET"},
    RouteSpec{"/metrics", Route::Metrics, "GET"},
};

}  // namespace

std::string_view pathOf(std::string_view uri) {
    return uri.substr(0, uri.find_first_of("?#"));
}

void sendResponse(Poco::Net::HTTPServerResponse& response, Metrics& metrics, int status,
                  std::string_view contentType, std::string_view body) noexcept {
    try {
        if (status != 200) {
            metrics.countHttpStatus(status);
        }
        response.setStatusAndReason(static_cast<Poco::Net::HTTPResponse::HTTPStatus>(status));
        response.setContentType(std::string(contentType));
        if (status == 200) {
            // Header and body leave in one TLS record and one write when the response object
            // dies, right after the handler returns (send() below writes twice): this is every
            // review's answer: one write and ~6% of the instructions less (docs/benchmarks.md).
            response.sendBuffer(body.data(), body.size());
            return;
        }
        response.setContentLength64(static_cast<Poco::Int64>(body.size()));
        // Not sendBuffer(): its header stream is only flushed when the response object dies,
        // and a 413 must reach the client before the handler lingers on the connection.
        std::ostream& out = response.send();
        out.write(body.data(), static_cast<std::streamsize>(body.size()));
        out.flush();
    } catch (...) {
        // The client went away or the socket failed; there is nobody left to answer.
    }
}

Poco::Net::HTTPRequestHandler* HandlerFactory::createRequestHandler(
    const Poco::Net::HTTPServerRequest& request) {
    ConnectionWatchdog::Registration* connection = ConnectionWatchdog::current();
    if (connection == nullptr) {
        return route(request);
    }
    connection->headersComplete();
    return new WatchedHandler(std::unique_ptr<Poco::Net::HTTPRequestHandler>(route(request)),
                              *connection);
}

Poco::Net::HTTPRequestHandler* HandlerFactory::route(const Poco::Net::HTTPServerRequest& request) {
    const std::string_view path = pathOf(request.getURI());
    for (const RouteSpec& spec : Routes) {
        if (spec.path != path) {
            continue;
        }
        if (request.getMethod() != spec.method) {
            return new FixedHandler(services_.metrics, 405,
                                    std::string(path) + " only accepts " +
                                        std::string(spec.method) + "\n",
                                    std::string(spec.method));
        }
        switch (spec.route) {
        case Route::Validate: return new AdmitHandler(services_, core::Endpoint::Validate);
        case Route::Mutate: return new AdmitHandler(services_, core::Endpoint::Mutate);
        case Route::Healthz: return new FixedHandler(services_.metrics, 200, "ok\n");
        case Route::Readyz: return new ReadyHandler(services_);
        case Route::Metrics: return new MetricsHandler(services_);
        }
    }
    return new FixedHandler(services_.metrics, 404, "no such endpoint\n");
}

}  // namespace twostep::http
