#include "StoreBench.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <mutex>
#include <string_view>
#include <thread>
#include <vector>

#include "LoadEngine.hpp"

namespace twostep::bench {

void runStoreBench(const StoreBenchOptions& options) {
    for (const char* suffix : {"", "-wal", "-shm"}) {
        std::filesystem::remove(options.path + suffix);
    }
    core::SqliteOptions sqlite;
    sqlite.synchronous = options.synchronous;
    core::SqliteStore store(options.path, sqlite);
    const core::Seconds now = core::SystemClock().now();
    std::vector<core::NewUser> users;
    char name[32];
    for (int i = 0; i < options.users; ++i) {
        std::snprintf(name, sizeof name, "store-user-%06d", i);
        // acceptStep never opens the secret: any blob will do.
        users.push_back(core::NewUser{name, std::string(45, 'x'), "bench", {},
                                      core::UserState::Active});
    }
    store.importUsers(users, now);

    using SteadyClock = std::chrono::steady_clock;
    const auto end = SteadyClock::now() + std::chrono::duration<double>(options.seconds);
    std::atomic<std::uint64_t> next{0};
    std::atomic<std::uint64_t> refused{0};
    std::mutex merge;
    std::vector<std::uint64_t> latencies;
    std::vector<std::thread> workers;
    const auto count = static_cast<std::uint64_t>(options.users);
    for (int t = 0; t < options.threads; ++t) {
        workers.emplace_back([&] {
            std::vector<std::uint64_t> mine;
            while (SteadyClock::now() < end) {
                const std::uint64_t op = next.fetch_add(1);
                const core::NewUser& user = users[op % count];
                // Each pass over the users is one time step later, so every step is new.
                const auto step = static_cast<std::int64_t>(60'000'000 + op / count);
                const auto start = SteadyClock::now();
                if (!store.acceptStep(user.username, step, core::UserState::Active, now)) {
                    ++refused;
                }
                core::AuditEvent event;
                event.time = now;
                event.username = user.username;
                event.operation = "CREATE";
                event.resource = "apps/v1/deployments";
                event.nameSpace = "shop";
                event.name = "checkout";
                event.decision = "allow";
                event.reason = "verified";
                event.uid = "6b1f3c2e-0d4a-4c8e-9f00-" + std::to_string(op);
                store.appendAudit(event);
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
    std::sort(latencies.begin(), latencies.end());
    const auto us = [&](double q) { return quantile(latencies, q) / 1000; };
    const auto mode = [&]() -> std::string_view {
        switch (options.synchronous) {
        case core::SqliteOptions::Synchronous::Full: return "full";
        case core::SqliteOptions::Synchronous::Normal: return "normal";
        case core::SqliteOptions::Synchronous::DurableState: return "durable-state";
        }
        return "?";
    };
    std::cout << "synchronous=" << mode()
              << " threads=" << options.threads << " accepted_codes=" << latencies.size()
              << " per_second=" << static_cast<long>(static_cast<double>(latencies.size()) /
                                                     options.seconds)
              << " p50_us=" << us(0.5) << " p99_us=" << us(0.99) << " p999_us=" << us(0.999)
              << " refused=" << refused.load() << std::endl;
}

}  // namespace twostep::bench
