#include "http/Router.hpp"

#include <Poco/DateTimeFormat.h>
#include <Poco/DateTimeFormatter.h>
#include <Poco/Net/HTTPRequest.h>
#include <Poco/Net/HTTPResponse.h>
#include <Poco/Timestamp.h>

#include <array>
#include <ctime>
#include <exception>
#include <string>

#include "core/Clock.hpp"
#include "core/Store.hpp"
#include "http/AdmitHandler.hpp"
#include "http/Log.hpp"
#include "http/Metrics.hpp"

namespace twostep::http {

namespace {

enum class Target { Validate, Mutate, Healthz, Readyz, Metrics };

struct RouteSpec {
    std::string_view path;
    Target target;
    std::string_view method;
};

constexpr std::array Routes{
    RouteSpec{"/validate", Target::Validate, "POST"},
    RouteSpec{"/mutate", Target::Mutate, "POST"},
    RouteSpec{"/healthz", Target::Healthz, "GET"},
    RouteSpec{"/readyz", Target::Readyz, "GET"},
    RouteSpec{"/metrics", Target::Metrics, "GET"},
};

Response text(int status, std::string body) {
    Response response;
    response.status = status;
    response.body = std::move(body);
    return response;
}

/// GET /readyz: 200 when the database answers and a certificate is loaded, else 503 and why.
Response ready(const ServerServices& services) noexcept {
    std::string problem;
    try {
        services.store.ping();
    } catch (const std::exception& e) {
        problem = std::string("database not usable: ") + e.what();
    } catch (...) {
        problem = "database not usable";
    }
    try {
        if (problem.empty() && !services.certificateLoaded()) {
            problem = "no certificate loaded";
        }
        if (problem.empty()) {
            return text(200, "ok\n");
        }
        services.log.warn("not ready", {{"reason", problem}});
        return text(503, problem + "\n");
    } catch (...) {
        return text(503, "not ready\n");
    }
}

/// GET /metrics: the Prometheus text format, user gauges refreshed from the store first.
Response metrics(const ServerServices& services) noexcept {
    try {
        services.metrics.refreshUserGauges(services.store, services.clock.now());
    } catch (const std::exception& e) {
        // Serve the other metrics anyway; the gauges keep their last values.
        services.log.warn("cannot refresh user gauges", {{"error", e.what()}});
    } catch (...) {
        services.log.warn("cannot refresh user gauges");
    }
    try {
        Response response;
        response.contentType = "text/plain; version=0.0.4";
        response.body = services.metrics.renderText();
        return response;
    } catch (...) {
        return text(500, "cannot render metrics\n");
    }
}

/// The Date header's value, formatted once a second per thread.
const std::string& httpDate() {
    thread_local std::time_t second = 0;
    thread_local std::string formatted;
    const std::time_t now = std::time(nullptr);
    if (now != second) {
        second = now;
        formatted = Poco::DateTimeFormatter::format(Poco::Timestamp::fromEpochTime(now),
                                                    Poco::DateTimeFormat::HTTP_FORMAT);
    }
    return formatted;
}

}  // namespace

std::string_view pathOf(std::string_view uri) {
    return uri.substr(0, uri.find_first_of("?#"));
}

Route Router::route(const RequestHead& request) const noexcept {
    try {
        const std::string_view path = pathOf(request.head.getURI());
        Route route;
        for (const RouteSpec& spec : Routes) {
            if (spec.path != path) {
                continue;
            }
            if (request.head.getMethod() != spec.method) {
                Response refused = text(405, std::string(path) + " only accepts " +
                                                 std::string(spec.method) + "\n");
                refused.allow = std::string(spec.method);
                route.reply = std::move(refused);
                break;
            }
            switch (spec.target) {
            case Target::Validate:
            case Target::Mutate: {
                const core::Endpoint endpoint = spec.target == Target::Mutate
                                                    ? core::Endpoint::Mutate
                                                    : core::Endpoint::Validate;
                if (auto refused = AdmitHandler(services_, endpoint).checkHead(request)) {
                    route.reply = std::move(*refused);
                } else {
                    route.review = endpoint;
                }
                return route;
            }
            case Target::Healthz: route.reply = text(200, "ok\n"); break;
            case Target::Readyz:
                route.reply = BlockingWork([&services = services_] { return ready(services); });
                break;
            case Target::Metrics:
                route.reply = BlockingWork([&services = services_] { return metrics(services); });
                break;
            }
            break;
        }
        if (!route.reply) {
            route.reply = text(404, "no such endpoint\n");
        }
        // These handlers never read a body; one left on the connection would be parsed as the
        // next request, so such a connection is closed after the answer.
        if (request.hasBody) {
            if (auto* response = std::get_if<Response>(&*route.reply)) {
                response->close = true;
            } else {
                auto work = std::get<BlockingWork>(std::move(*route.reply));
                route.reply = BlockingWork([work = std::move(work)] {
                    Response answered = work();
                    answered.close = true;
                    return answered;
                });
            }
        }
        return route;
    } catch (...) {
        // Only allocation can fail here.
        Route route;
        route.reply = Response{500, TextPlain, "internal error, see the server log\n", {}, true};
        return route;
    }
}

Reply Router::review(core::Endpoint endpoint, std::string body) const noexcept {
    return AdmitHandler(services_, endpoint).review(std::move(body));
}

Response Router::refuse(int status, std::string reason, std::string_view client,
                        std::optional<core::Endpoint> endpoint) const noexcept {
    return refuseRequest(services_, status, std::move(reason), client, endpoint);
}

Response refuseRequest(const ServerServices& services, int status, std::string reason,
                       std::string_view client, std::optional<core::Endpoint> endpoint) noexcept {
    Response response;
    response.status = status;
    response.close = true;
    // The rest of the body is unread: closing at once would make the kernel answer what keeps
    // arriving with a reset, which can destroy the answer before the client reads it.
    response.linger = status == 413 || status == 403;
    try {
        if (endpoint) {
            services.log.warn("request refused", {{"endpoint", toString(*endpoint)},
                                                  {"status", std::int64_t{status}},
                                                  {"reason", reason},
                                                  {"client", client}});
        } else {
            services.log.warn("request refused", {{"status", std::int64_t{status}},
                                                  {"reason", reason},
                                                  {"client", client}});
        }
        response.body = std::move(reason) + "\n";
    } catch (...) {
        // Out of memory for the text: the status alone still says it.
    }
    return response;
}

void appendSerialized(std::string& out, const Response& response, bool close) {
    const std::string& reason = Poco::Net::HTTPResponse::getReasonForStatus(
        static_cast<Poco::Net::HTTPResponse::HTTPStatus>(response.status));
    out.reserve(out.size() + 192 + response.body.size());
    out += "HTTP/1.1 ";
    out += std::to_string(response.status);
    out += ' ';
    out += reason;
    out += "\r\nDate: ";
    out += httpDate();
    out += "\r\nContent-Type: ";
    out += response.contentType;
    out += "\r\nContent-Length: ";
    out += std::to_string(response.body.size());
    if (!response.allow.empty()) {
        out += "\r\nAllow: ";
        out += response.allow;
    }
    if (close) {
        out += "\r\nConnection: Close";  // POCO's spelling, which clients and tests know
    }
    out += "\r\n\r\n";
    out += response.body;
}

}  // namespace twostep::http
