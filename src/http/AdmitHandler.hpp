/// POST /validate and /mutate: checks of the head (client certificate, length), then the review:
/// core::Reviewer::start() on the event loop (parsing, and the decisions that need no database),
/// finish() on a worker thread. No decision logic lives here.
#pragma once

#include <optional>
#include <string>

#include "core/Policy.hpp"
#include "http/Router.hpp"

namespace twostep::http {

/// A small value (copied into the work it hands to a worker). Never throws: a failure becomes an
/// HTTP 500 text answer, never an allow.
class AdmitHandler {
public:
    AdmitHandler(const ServerServices& services, core::Endpoint endpoint)
        : services_(&services), endpoint_(endpoint) {}

    /// An answer without reading the body (403 without a verified client certificate under
    /// --client-ca, 411 without a length, 413 over --max-body), or nullopt to read it.
    std::optional<Response> checkHead(const RequestHead& request) const noexcept;
    /// The answer to a complete body, or the work that makes it when it needs the database.
    Reply review(std::string body) const noexcept;

private:
    /// Counts, logs and answers one outcome; `seconds` is the time since the body was complete.
    Response answer(core::ReviewOutcome outcome, double seconds) const noexcept;

    const ServerServices* services_;
    core::Endpoint endpoint_;
};

}  // namespace twostep::http
