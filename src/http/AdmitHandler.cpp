#include "http/AdmitHandler.hpp"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerRequestImpl.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Timespan.h>
#include <Poco/Net/HTTPServerResponse.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <exception>
#include <istream>

#include "http/Log.hpp"
#include "http/Metrics.hpp"
#include "http/TlsContext.hpp"

namespace twostep::http {

namespace {

using Clock = std::chrono::steady_clock;

constexpr std::string_view TextPlain = "text/plain; charset=utf-8";
constexpr std::size_t ReadChunk = 64 * 1024;

/// Reads up to `want` bytes into `into` at `offset`, chunk by chunk, until done, the stream
/// ends, or the deadline passes. Returns the bytes read.
std::size_t readInto(std::istream& in, std::string& into, std::size_t offset, std::size_t want,
                     Clock::time_point deadline) {
    std::size_t got = 0;
    while (got < want && in.good() && Clock::now() < deadline) {
        const std::size_t chunk = std::min(ReadChunk, want - got);
        in.read(into.data() + offset + got, static_cast<std::streamsize>(chunk));
        got += static_cast<std::size_t>(in.gcount());
    }
    return got;
}

/// After an early 413 the client may still be sending its body. Closing with unread data makes
/// the kernel answer with a reset, which can destroy the 413 before the client reads it; so, like
/// nginx's lingering close, read and throw away what keeps arriving, bounded in time and bytes.
void discardRest(Poco::Net::HTTPServerRequest& request) {
    constexpr auto MaxLinger = std::chrono::seconds(2);
    constexpr std::size_t MaxDiscard = 64 * 1024 * 1024;
    if (auto* impl = dynamic_cast<Poco::Net::HTTPServerRequestImpl*>(&request)) {
        impl->socket().setReceiveTimeout(Poco::Timespan(0, 500'000));  // a pause ends it
    }
    std::istream& in = request.stream();
    const auto deadline = Clock::now() + MaxLinger;
    std::array<char, 16 * 1024> scratch;
    std::size_t discarded = 0;
    while (in.good() && discarded < MaxDiscard && Clock::now() < deadline) {
        in.read(scratch.data(), static_cast<std::streamsize>(scratch.size()));
        discarded += static_cast<std::size_t>(in.gcount());
    }
}

}  // namespace

void AdmitHandler::handleRequest(Poco::Net::HTTPServerRequest& request,
                                 Poco::Net::HTTPServerResponse& response) {
    std::string error;
    try {
        serve(request, response);
        return;
    } catch (const Poco::Exception& e) {
        error = e.displayText();
    } catch (const std::exception& e) {
        error = e.what();
    } catch (...) {
        error = "unknown exception";
    }
    // POCO 1.11 sends nothing when a non-Poco exception escapes, so answer here: a failure is
    // never an allow, and the API server applies its failurePolicy to a 500.
    try {
        services_.log.error("request failed", {{"endpoint", toString(endpoint_)}, {"error", error}});
        if (!response.sent()) {
            response.setKeepAlive(false);
            sendResponse(response, services_.metrics, 500, TextPlain,
                         "internal error, see the server log\n");
        }
    } catch (...) {
        // Nothing more can be done for this connection; POCO closes it.
    }
}

void AdmitHandler::refuseRequest(Poco::Net::HTTPServerRequest& request,
                                 Poco::Net::HTTPServerResponse& response, int status,
                                 const std::string& reason) {
    // The rest of the body is not read, so the connection cannot be reused.
    response.setKeepAlive(false);
    sendResponse(response, services_.metrics, status, TextPlain, reason + "\n");
    if (status == 413 || status == 403) {
        discardRest(request);
    }
    services_.log.warn("request refused", {{"endpoint", toString(endpoint_)},
                                           {"status", std::int64_t{status}},
                                           {"reason", reason},
                                           {"client", request.clientAddress().host().toString()}});
}

std::optional<std::string> AdmitHandler::readBody(Poco::Net::HTTPServerRequest& request,
                                                  Poco::Net::HTTPServerResponse& response) {
    const std::size_t limit = services_.maxBody;
    const auto deadline = Clock::now() + services_.readTimeout;
    const auto refuse = [&](int status, const std::string& reason) {
        refuseRequest(request, response, status, reason);
        return std::nullopt;
    };
    const std::string tooLarge = "request body larger than " + std::to_string(limit) + " bytes";

    std::istream& in = request.stream();
    std::string body;
    if (request.getChunkedTransferEncoding()) {
        // No length up front: read at most one byte more than allowed to tell "too large".
        std::size_t got = 0;
        while (got <= limit && in.good() && Clock::now() < deadline) {
            const std::size_t want = std::min(ReadChunk, limit + 1 - got);
            body.resize(got + want);
            got += readInto(in, body, got, want, deadline);
        }
        body.resize(std::min(got, body.size()));
        if (got > limit) {
            return refuse(413, tooLarge);
        }
        if (in.bad() || (!in.eof() && Clock::now() >= deadline)) {
            return refuse(408, "timed out reading the request body");
        }
        return body;
    }
    if (!request.hasContentLength()) {
        return refuse(411, "a request body needs Content-Length or chunked encoding");
    }
    const Poco::Int64 declared = request.getContentLength64();
    if (declared < 0 || static_cast<std::uint64_t>(declared) > limit) {
        return refuse(413, tooLarge);  // refused before reading a byte of it
    }
    const auto size = static_cast<std::size_t>(declared);
    body.resize(size);
    const std::size_t got = readInto(in, body, 0, size, deadline);
    if (got == size) {
        return body;
    }
    if (in.bad() || Clock::now() >= deadline) {
        return refuse(408, "timed out reading the request body");
    }
    return refuse(400, "request body shorter than its Content-Length");
}

void AdmitHandler::serve(Poco::Net::HTTPServerRequest& request,
                         Poco::Net::HTTPServerResponse& response) {
    // With --client-ca the handshake lets clients without a certificate in (the kubelet's probes
    // need /healthz and /readyz); reviews are for the API server's certificate only.
    if (services_.requireClientCertificate && !hasVerifiedClientCertificate(request)) {
        refuseRequest(request, response, 403,
                      "a client certificate signed by the --client-ca CA is required for /" +
                          std::string(toString(endpoint_)));
        return;
    }
    const std::optional<std::string> body = readBody(request, response);
    if (!body) {
        return;
    }
    const auto start = Clock::now();
    const core::ReviewOutcome outcome = services_.reviewer.review(*body, endpoint_);
    const std::chrono::duration<double> took = Clock::now() - start;

    services_.metrics.observeReview(endpoint_, outcome, took.count());
    if (outcome.record && outcome.decision) {
        services_.log.decision(toString(endpoint_), outcome.decision->reason, *outcome.record,
                               took.count() * 1000.0, outcome.error);
    } else if (!outcome.error.empty()) {
        services_.log.error("request failed", {{"endpoint", toString(endpoint_)},
                                               {"status", std::int64_t{outcome.httpStatus}},
                                               {"error", outcome.error}});
    } else if (outcome.httpStatus != 200) {
        services_.log.warn("request refused", {{"endpoint", toString(endpoint_)},
                                               {"status", std::int64_t{outcome.httpStatus}},
                                               {"reason", outcome.body}});
    }
    const bool ok = outcome.httpStatus == 200;
    sendResponse(response, services_.metrics, outcome.httpStatus,
                 ok ? std::string_view("application/json") : TextPlain, outcome.body);
}

}  // namespace twostep::http
