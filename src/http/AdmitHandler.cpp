#include "http/AdmitHandler.hpp"

#include <chrono>
#include <exception>
#include <utility>

#include "http/Log.hpp"
#include "http/Metrics.hpp"

namespace twostep::http {

namespace {

using Clock = std::chrono::steady_clock;

Response internalError() noexcept {
    Response response;
    response.status = 500;
    response.close = true;
    try {
        response.body = "internal error, see the server log\n";
    } catch (...) {
        // The status alone still fails closed.
    }
    return response;
}

}  // namespace

std::optional<Response> AdmitHandler::checkHead(const RequestHead& request) const noexcept {
    const ServerServices& services = *services_;
    // With --client-ca the handshake lets clients without a certificate in (the kubelet's probes
    // need /healthz and /readyz); reviews are for the API server's certificate only.
    if (services.requireClientCertificate && !request.verifiedClient) {
        return refuseRequest(services, 403,
                             "a client certificate signed by the --client-ca CA is required for /" +
                                 std::string(toString(endpoint_)),
                             request.client, endpoint_);
    }
    if (!request.hasBody && !request.lengthKnown) {
        return refuseRequest(services, 411,
                             "a request body needs Content-Length or chunked encoding",
                             request.client, endpoint_);
    }
    if (request.lengthKnown && request.contentLength > services.maxBody) {
        // Refused before reading a byte of it.
        return refuseRequest(services, 413,
                             "request body larger than " + std::to_string(services.maxBody) +
                                 " bytes",
                             request.client, endpoint_);
    }
    return std::nullopt;
}

Reply AdmitHandler::review(std::string body) const noexcept {
    try {
        const auto start = Clock::now();
        auto started = services_->reviewer.start(body, endpoint_);
        if (auto* outcome = std::get_if<core::ReviewOutcome>(&started)) {
            return answer(std::move(*outcome),
                          std::chrono::duration<double>(Clock::now() - start).count());
        }
        // The store decides the rest: on a worker, where blocking on it holds up no connection.
        return BlockingWork([handler = *this, request = std::get<core::ReviewRequest>(
                                                  std::move(started)),
                             start]() noexcept {
            return handler.answer(handler.services_->reviewer.finish(request, handler.endpoint_),
                                  std::chrono::duration<double>(Clock::now() - start).count());
        });
    } catch (...) {
        return internalError();
    }
}

Response AdmitHandler::answer(core::ReviewOutcome outcome, double seconds) const noexcept {
    const ServerServices& services = *services_;
    try {
        services.metrics.observeReview(endpoint_, outcome, seconds);
        if (outcome.record && outcome.decision) {
            services.log.decision(toString(endpoint_), outcome.decision->reason, *outcome.record,
                                  seconds * 1000.0, outcome.error);
        } else if (!outcome.error.empty()) {
            services.log.error("request failed", {{"endpoint", toString(endpoint_)},
                                                  {"status", std::int64_t{outcome.httpStatus}},
                                                  {"error", outcome.error}});
        } else if (outcome.httpStatus != 200) {
            services.log.warn("request refused", {{"endpoint", toString(endpoint_)},
                                                  {"status", std::int64_t{outcome.httpStatus}},
                                                  {"reason", outcome.body}});
        }
        Response response;
        response.status = outcome.httpStatus;
        if (outcome.httpStatus == 200) {
            response.contentType = "application/json";
        }
        response.body = std::move(outcome.body);
        return response;
    } catch (...) {
        return internalError();
    }
}

}  // namespace twostep::http
