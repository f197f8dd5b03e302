/// A closed-loop HTTPS load generator on one thread: N keep-alive TLS connections driven by epoll
/// and non-blocking OpenSSL, each sending its next request as soon as the previous answer is in.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "Scenario.hpp"

namespace twostep::bench {

struct EngineOptions {
    std::string host = "127.0.0.1";
    std::uint16_t port = 0;
    int connections = 32;
    std::chrono::milliseconds warmup{1000};     ///< answers in this time are not counted
    std::chrono::milliseconds duration{10000};  ///< the measured time after the warm-up
    std::string caFile;  ///< the server certificate must chain to it (empty: not verified)
    /// Connections the server closed (or refused) are opened again after this delay.
    std::chrono::milliseconds reconnectDelay{20};
    /// A request unanswered (or a connection not taken by the server) this long counts as timed
    /// out and its connection is closed (0: wait until the run ends).
    std::chrono::milliseconds responseTimeout{0};
    std::string acceptedLog;  ///< when set, "user,code" of every verified allow is appended here
    /// The server is the Node.js peer (../shared/peers/node-webhook), whose answers carry only
    /// `allowed` and a message: an allow is judged by `allowed` alone, a deny by its message.
    bool peer = false;
    /// Called when the measured time starts and when it ends (to sample the server's CPU).
    std::function<void()> onMeasureStart, onMeasureEnd;
};

/// What one run measured. Counts are of answers completed inside the measured time, except the
/// `total*` and error counts, which cover the whole run.
struct Results {
    double seconds = 0;           ///< length of the measured time (shorter when users ran out)
    std::uint64_t completed = 0;  ///< answers inside it
    std::vector<std::uint64_t> latencyNs;  ///< one per completed answer: send to full answer
    std::map<std::string, std::uint64_t> reasons;   ///< "allow/verified" -> count
    std::map<int, std::uint64_t> statuses;          ///< HTTP status -> count
    std::uint64_t unexpected = 0;        ///< answers the scenario did not expect (whole run)
    std::uint64_t unexpectedAllows = 0;  ///< of those, allows: never acceptable
    std::uint64_t totalAnswers = 0;
    std::uint64_t connectErrors = 0;   ///< connect() or the TLS handshake failed
    std::uint64_t closedEarly = 0;     ///< the server closed a connection with a request pending
    std::uint64_t timeouts = 0;        ///< requests (or handshakes) over responseTimeout
    std::uint64_t reconnects = 0;
    std::uint64_t inFlightAtEnd = 0;   ///< requests still unanswered when the run ended
    int connectionsNeverAnswered = 0;  ///< connections that got no answer in the whole run
    double cpuSeconds = 0;             ///< this process's CPU time in the measured time
    bool exhausted = false;            ///< the scenario ran out of users before the end
    /// The first unexpected answer's body, cut short (to tell what went wrong).
    std::string firstUnexpected;
};

/// The value at quantile q (0..1) of sorted `values`; 0 when empty.
std::uint64_t quantile(const std::vector<std::uint64_t>& sorted, double q);

/// Runs `scenario` against the server until the duration ends or the scenario runs out.
/// @throw std::runtime_error when the TLS context or epoll cannot be set up.
Results runLoad(const EngineOptions& options, Scenario& scenario);

}  // namespace twostep::bench
