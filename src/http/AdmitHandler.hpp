/// POST /validate and /mutate: bounded body read, core::Reviewer::review, response. No decision
/// logic lives here.
#pragma once

#include <Poco/Net/HTTPRequestHandler.h>

#include <optional>
#include <string>

#include "core/Policy.hpp"
#include "http/HandlerFactory.hpp"

namespace twostep::http {

/// One per request. Nothing escapes handleRequest: a failure becomes an HTTP 500 text answer,
/// never an allow.
class AdmitHandler final : public Poco::Net::HTTPRequestHandler {
public:
    AdmitHandler(const ServerServices& services, core::Endpoint endpoint)
        : services_(services), endpoint_(endpoint) {}

    void handleRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response) override;

private:
    /// The body, or nullopt after an error answer (413, 408, 400, 411) was sent.
    std::optional<std::string> readBody(Poco::Net::HTTPServerRequest& request,
                                        Poco::Net::HTTPServerResponse& response);
    void serve(Poco::Net::HTTPServerRequest& request, Poco::Net::HTTPServerResponse& response);
    /// Sends `status` with `reason` as a text answer on a connection that then closes, and logs it.
    void refuseRequest(Poco::Net::HTTPServerRequest& request,
                       Poco::Net::HTTPServerResponse& response, int status,
                       const std::string& reason);

    const ServerServices& services_;
    core::Endpoint endpoint_;
};

}  // namespace twostep::http
