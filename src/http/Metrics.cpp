#include "http/Metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "core/Store.hpp"

namespace twostep::http {

std::string_view toString(core::Endpoint endpoint) {
    return endpoint == core::Endpoint::Mutate ? "mutate" : "validate";
}

Metrics::Metrics(std::string_view version) : registry_(std::make_shared<prometheus::Registry>()) {
    auto& requests = prometheus::BuildCounter()
                         .Name("twostep_admission_requests_total")
                         .Help("Admission reviews answered with a decision, by endpoint, "
                               "decision and reason.")
                         .Register(*registry_);
    auto& durations = prometheus::BuildHistogram()
                          .Name("twostep_admission_review_duration_seconds")
                          .Help("Time to review one AdmissionReview body (parse, decide, record).")
                          .Register(*registry_);
    const prometheus::Histogram::BucketBoundaries buckets{
        0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0};
    for (std::size_t e = 0; e < EndpointCount; ++e) {
        const std::string endpoint(toString(static_cast<core::Endpoint>(e)));
        durations_[e] = &durations.Add({{"endpoint", endpoint}}, buckets);
        for (std::size_t allowed = 0; allowed < 2; ++allowed) {
            for (std::size_t r = 0; r < ReasonCount; ++r) {
                decisions_[e][allowed][r] = &requests.Add(
                    {{"endpoint", endpoint},
                     {"decision", allowed == 1 ? "allow" : "deny"},
                     {"reason", std::string(core::toString(static_cast<core::Reason>(r)))}});
            }
        }
    }

    auto& statuses = prometheus::BuildCounter()
                         .Name("twostep_http_requests_total")
                         .Help("HTTP answers other than 200, by status code.")
                         .Register(*registry_);
    for (std::size_t i = 0; i < KnownStatuses.size(); ++i) {
        statuses_[i] = &statuses.Add({{"code", std::to_string(KnownStatuses[i])}});
    }
    statuses_.back() = &statuses.Add({{"code", "other"}});

    auto& reloads = prometheus::BuildCounter()
                        .Name("twostep_certificate_reloads_total")
                        .Help("Certificate reload attempts after the files changed, by result.")
                        .Register(*registry_);
    reloads_[0] = &reloads.Add({{"result", "success"}});
    reloads_[1] = &reloads.Add({{"result", "failure"}});

    auto& cut = prometheus::BuildCounter()
                    .Name("twostep_connections_cut_total")
                    .Help("Connections cut for not sending their request headers in time.")
                    .Register(*registry_);
    connectionsCut_ = &cut.Add({});
    connectionsRefused_ = &prometheus::BuildCounter()
                               .Name("twostep_connections_refused_total")
                               .Help("Connections closed at accept: --max-connections were "
                                     "open, or no file descriptor was left.")
                               .Register(*registry_)
                               .Add({});
    connectionsOpen_ = &prometheus::BuildGauge()
                            .Name("twostep_connections_open")
                            .Help("Client connections open now.")
                            .Register(*registry_)
                            .Add({});
    connectionsIdle_ = &prometheus::BuildGauge()
                            .Name("twostep_connections_idle")
                            .Help("Open keep-alive connections waiting for their next request.")
                            .Register(*registry_)
                            .Add({});

    // Batch sizes from 1 (a lone change: no wait) to the default bound of 64 and beyond.
    batchSizes_ = &prometheus::BuildHistogram()
                       .Name("twostep_store_batch_size")
                       .Help("Changes committed together in one store transaction (group "
                             "commit), failed batches included.")
                       .Register(*registry_)
                       .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 4, 8, 16, 32, 64, 128});
    failedBatches_ = &prometheus::BuildCounter()
                          .Name("twostep_store_batch_failures_total")
                          .Help("Store batches whose transaction failed; every request in them "
                                "was refused.")
                          .Register(*registry_)
                          .Add({});

    auto& enrolled = prometheus::BuildGauge()
                         .Name("twostep_enrolled_users")
                         .Help("Enrolled users by state, read from the store at scrape time.")
                         .Register(*registry_);
    enrolled_[0] = &enrolled.Add({{"state", "pending"}});
    enrolled_[1] = &enrolled.Add({{"state", "active"}});
    enrolled_[2] = &enrolled.Add({{"state", "disabled"}});
    locked_ = &prometheus::BuildGauge()
                   .Name("twostep_locked_users")
                   .Help("Users locked out now, read from the store at scrape time.")
                   .Register(*registry_)
                   .Add({});
    prometheus::BuildGauge()
        .Name("twostep_build_info")
        .Help("Always 1; the version label says which build is running.")
        .Register(*registry_)
        .Add({{"version", std::string(version)}})
        .Set(1);
}

Metrics::~Metrics() = default;

void Metrics::observeReview(core::Endpoint endpoint, const core::ReviewOutcome& outcome,
                            double seconds) {
    const auto e = static_cast<std::size_t>(endpoint) % EndpointCount;
    durations_[e]->Observe(seconds);
    if (!outcome.decision) {
        return;
    }
    const auto r = static_cast<std::size_t>(outcome.decision->reason);
    if (r < ReasonCount) {
        decisions_[e][outcome.decision->allowed ? 1 : 0][r]->Increment();
    }
}

void Metrics::countHttpStatus(int status) {
    for (std::size_t i = 0; i < KnownStatuses.size(); ++i) {
        if (KnownStatuses[i] == status) {
            statuses_[i]->Increment();
            return;
        }
    }
    statuses_.back()->Increment();
}

void Metrics::countCertificateReload(ReloadResult result) {
    reloads_[result == ReloadResult::Success ? 0 : 1]->Increment();
}

void Metrics::countConnectionCut() {
    connectionsCut_->Increment();
}

void Metrics::countConnectionRefused() {
    connectionsRefused_->Increment();
}

void Metrics::connectionOpened() {
    connectionsOpen_->Increment();
}

void Metrics::connectionClosed() {
    connectionsOpen_->Decrement();
}

void Metrics::connectionsIdle(int delta) {
    connectionsIdle_->Increment(delta);
}

void Metrics::changeQueued(std::size_t) noexcept {}

void Metrics::batchDone(std::size_t changes, std::size_t, bool committed) noexcept {
    try {
        batchSizes_->Observe(static_cast<double>(changes));
        if (!committed) {
            failedBatches_->Increment();
        }
    } catch (...) {  // NOLINT(bugprone-empty-catch)
        // prometheus-cpp's Observe takes a mutex; a metric is never worth failing a commit for.
    }
}

void Metrics::refreshUserGauges(core::Store& store, core::Seconds now) {
    const core::UserState states[] = {core::UserState::Pending, core::UserState::Active,
                                      core::UserState::Disabled};
    for (std::size_t i = 0; i < enrolled_.size(); ++i) {
        enrolled_[i]->Set(store.countUsers(states[i]));
    }
    locked_->Set(store.countLocked(now));
}

std::string Metrics::renderText() const {
    return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace twostep::http
