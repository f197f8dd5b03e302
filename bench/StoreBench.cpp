#include "StoreBench.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string_view>
#include <thread>
#include <vector>

#include "LoadEngine.hpp"
#include "core/PostgresStore.hpp"

namespace twostep::bench {
namespace {

/// Counts the store's transactions and the changes in them.
class BatchCounter final : public core::CommitObserver {
public:
    void changeQueued(std::size_t) noexcept override {}
    void batchDone(std::size_t size, std::size_t, bool) noexcept override {
        ++batches;
        changes += size;
    }
    std::atomic<std::uint64_t> batches{0};
    std::atomic<std::uint64_t> changes{0};
};

std::unique_ptr<core::Store> openBenchStore(const StoreBenchOptions& options) {
    if (options.db.starts_with("postgresql://") || options.db.starts_with("postgres://")) {
        core::PostgresOptions postgres;
        postgres.batch.maxChanges = options.maxBatch;
        postgres.poolSize = std::max(16, options.threads + 1);
        return std::make_unique<core::PostgresStore>(options.db, postgres);
    }
    for (const char* suffix : {"", "-wal", "-shm"}) {
        std::filesystem::remove(options.db + suffix);
    }
    core::SqliteOptions sqlite;
    sqlite.synchronous = options.synchronous;
    sqlite.batch.maxChanges = options.maxBatch;
    return std::make_unique<core::SqliteStore>(options.db, sqlite);
}

std::string_view syncName(core::SqliteOptions::Synchronous synchronous) {
    switch (synchronous) {
        case core::SqliteOptions::Synchronous::Full:
            return "full";
        case core::SqliteOptions::Synchronous::Normal:
            return "normal";
        case core::SqliteOptions::Synchronous::DurableState:
            return "durable-state";
    }
    return "?";
}

}  // namespace

void runStoreBench(const StoreBenchOptions& options) {
    if (options.op != "valid" && options.op != "wrong" && options.op != "replay") {
        throw std::runtime_error("--op must be valid, wrong or replay");
    }
    const std::unique_ptr<core::Store> store = openBenchStore(options);
    const core::Seconds now = core::SystemClock().now();
    std::vector<core::NewUser> users;
    char name[48];
    const long run = static_cast<long>(getpid());
    for (int i = 0; i < options.users; ++i) {
        std::snprintf(name, sizeof name, "store-%ld-%06d", run, i);
        // Claims never open the secret: any blob will do.
        users.push_back(core::NewUser{name, std::string(45, 'x'), "bench", {},
                                      core::UserState::Active});
    }
    store->importUsers(users, now);
    BatchCounter counter;
    store->setCommitObserver(&counter);

    using SteadyClock = std::chrono::steady_clock;
    const auto end = SteadyClock::now() + std::chrono::duration<double>(options.seconds);
    std::atomic<std::uint64_t> next{0};
    std::atomic<std::uint64_t> applied{0};
    std::mutex merge;
    std::vector<std::uint64_t> latencies;
    std::vector<std::thread> workers;
    const auto count = static_cast<std::uint64_t>(options.users);
    const core::Change::Kind kind =
        options.op == "wrong" ? core::Change::Kind::RecordFailure : core::Change::Kind::AcceptStep;
    for (int t = 0; t < options.threads; ++t) {
        workers.emplace_back([&] {
            std::vector<std::uint64_t> mine;
            core::Change change;
            change.kind = kind;
            change.now = now;
            // Never locks: the bench measures the writes, not the lockout.
            change.lockout.maxFailures = std::numeric_limits<int>::max();
            core::AuditEvent audit;
            audit.time = now;
            audit.operation = "CREATE";
            audit.resource = "apps/v1/deployments";
            audit.nameSpace = "shop";
            audit.name = "checkout";
            const core::Settle settle = [](const core::ChangeOutcome& outcome) {
                return std::optional<core::Verdict>(
                    core::Verdict{outcome.applied, outcome.applied ? "verified" : "replayed"});
            };
            while (SteadyClock::now() < end) {
                const std::uint64_t op = next.fetch_add(1);
                change.username = users[op % count].username;
                // valid: each pass over the users is one time step later, so every step is new;
                // replay: the same step every pass, so only the first pass applies.
                change.step = static_cast<std::int64_t>(
                    60'000'000 + (options.op == "valid" ? op / count : 0));
                audit.username = change.username;
                audit.uid = "6b1f3c2e-0d4a-4c8e-9f00-" + std::to_string(op);
                change.audit = audit;
                const auto start = SteadyClock::now();
                if (store->commit(change, settle).applied) {
                    ++applied;
                }
                mine.push_back(static_cast<std::uint64_t>(
                    std::chrono::duration_cast<std::chrono::nanoseconds>(SteadyClock::now() -
                                                                         start)
                        .count()));
            }
            const std::lock_guard lock(merge);
            latencies.insert(latencies.end(), mine.begin(), mine.end());
        });
    }
    for (std::thread& worker : workers) {
        worker.join();
    }
    store->setCommitObserver(nullptr);
    std::sort(latencies.begin(), latencies.end());
    const auto us = [&](double q) { return quantile(latencies, q) / 1000; };
    const bool postgres = options.db.find("://") != std::string::npos;
    std::cout << "store=" << (postgres ? "postgresql" : "sqlite")
              << " synchronous=" << (postgres ? "-" : syncName(options.synchronous))
              << " op=" << options.op << " threads=" << options.threads
              << " max_batch=" << options.maxBatch << " decisions=" << latencies.size()
              << " per_second="
              << static_cast<long>(static_cast<double>(latencies.size()) / options.seconds)
              << " p50_us=" << us(0.5) << " p99_us=" << us(0.99) << " p999_us=" << us(0.999)
              << " transactions=" << counter.batches.load() << " mean_batch="
              << (counter.batches == 0 ? 0.0
                                       : static_cast<double>(counter.changes) /
                                             static_cast<double>(counter.batches))
              << " applied=" << applied.load() << std::endl;
}

}  // namespace twostep::bench
