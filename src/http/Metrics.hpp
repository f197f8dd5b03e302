/// Prometheus metrics of the webhook (prometheus-cpp registry, text exposition served on
/// GET /metrics). Label values come only from fixed sets, never from request data.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

#include "core/Clock.hpp"
#include "core/Decision.hpp"
#include "core/Policy.hpp"
#include "core/Store.hpp"

namespace prometheus {
class Counter;
class Gauge;
class Histogram;
class Registry;
}  // namespace prometheus

namespace twostep::http {

/// The result of one certificate reload attempt.
enum class ReloadResult { Success, Failure };

/// Every series is created up front, so the request path only touches atomics (counters) and a
/// histogram. Also the store's commit observer (twostep_store_batch_size). Thread-safe.
class Metrics final : public core::CommitObserver {
public:
    explicit Metrics(std::string_view version);
    ~Metrics() override;
    Metrics(const Metrics&) = delete;
    Metrics& operator=(const Metrics&) = delete;

    /// Counts one answered review: the decision (when there is one) and the review latency.
    void observeReview(core::Endpoint endpoint, const core::ReviewOutcome& outcome,
                       double seconds);
    /// Counts an answer other than 200 (codes outside the known set count as "other").
    void countHttpStatus(int status);
    void countCertificateReload(ReloadResult result);
    /// Counts a connection cut for not sending complete request headers in time.
    void countConnectionCut();
    /// Counts a connection closed at accept (--max-connections reached, no descriptor left).
    void countConnectionRefused();
    /// The open and idle connection gauges.
    void connectionOpened();
    void connectionClosed();
    void connectionsIdle(int delta);

    /// Nothing: the queue's length shows in the batch sizes.
    void changeQueued(std::size_t queued) noexcept override;
    /// Observes the size of a group commit's batch; counts it when it failed.
    void batchDone(std::size_t changes, std::size_t bytes, bool committed) noexcept override;

    /// Sets the user gauges from `store`. @throw StoreError when the store fails (the gauges keep
    /// their previous values).
    void refreshUserGauges(core::Store& store, core::Seconds now);
    /// The Prometheus text exposition of every metric.
    std::string renderText() const;

private:
    static constexpr std::size_t EndpointCount = 2;
    static constexpr std::size_t ReasonCount = static_cast<std::size_t>(core::Reason::InternalError) + 1;
    static constexpr std::array<int, 11> KnownStatuses{400, 403, 404, 405, 408, 411,
                                                       413, 431, 500, 503, 505};

    std::shared_ptr<prometheus::Registry> registry_;
    /// [endpoint][allowed][reason]
    std::array<std::array<std::array<prometheus::Counter*, ReasonCount>, 2>, EndpointCount>
        decisions_{};
    std::array<prometheus::Histogram*, EndpointCount> durations_{};
    std::array<prometheus::Counter*, KnownStatuses.size() + 1> statuses_{};
    std::array<prometheus::Counter*, 2> reloads_{};
    std::array<prometheus::Gauge*, 3> enrolled_{};  ///< pending, active, disabled
    prometheus::Gauge* locked_ = nullptr;
    prometheus::Counter* connectionsCut_ = nullptr;
    prometheus::Counter* connectionsRefused_ = nullptr;
    prometheus::Gauge* connectionsOpen_ = nullptr;
    prometheus::Gauge* connectionsIdle_ = nullptr;
    prometheus::Histogram* batchSizes_ = nullptr;
    prometheus::Counter* failedBatches_ = nullptr;
};

/// "validate" or "mutate".
std::string_view toString(core::Endpoint endpoint);

}  // namespace twostep::http
