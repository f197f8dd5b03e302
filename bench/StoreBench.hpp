/// `twostep-loadgen store`: what one accepted code costs in SqliteStore, without HTTP, for each
/// SqliteOptions::Synchronous (docs/benchmarks.md, durability).
#pragma once

#include <string>

#include "core/SqliteStore.hpp"

namespace twostep::bench {

struct StoreBenchOptions {
    std::string path;          ///< a fresh database file (removed first)
    core::SqliteOptions::Synchronous synchronous = core::SqliteOptions::Synchronous::Full;
    int threads = 8;           ///< concurrent callers, as the webhook's worker threads
    double seconds = 5;
    int users = 10000;
};

/// Runs acceptStep + appendAudit (the two writes of an accepted code) from `threads` threads
/// for `seconds` and prints one result line. @throw twostep::Error when the store fails.
void runStoreBench(const StoreBenchOptions& options);

}  // namespace twostep::bench
