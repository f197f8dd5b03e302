/// `twostep-loadgen store`: what the writes of one decision cost in the store, without HTTP, with
/// and without group commit (docs/benchmarks.md, "The store alone").
#pragma once

#include <cstddef>
#include <string>

#include "core/SqliteStore.hpp"

namespace twostep::bench {

struct StoreBenchOptions {
    /// A SQLite file (removed first) or a postgresql:// URL (users get a fresh prefix per run).
    std::string db;
    core::SqliteOptions::Synchronous synchronous = core::SqliteOptions::Synchronous::Full;
    int threads = 8;  ///< concurrent callers, as the webhook's worker threads
    double seconds = 5;
    int users = 10000;
    /// The group commit's bound on changes per transaction; 1 commits every change alone.
    std::size_t maxBatch = 64;
    /// valid: a fresh step claimed with its audit row (each user's next step); wrong: a failure
    /// counted with its audit row; replay: a step already used, refused, with its audit row.
    std::string op = "valid";
};

/// Commits one decision's change (with its audit row) from `threads` threads for `seconds` and
/// prints one result line. @throw twostep::Error when the store fails.
void runStoreBench(const StoreBenchOptions& options);

}  // namespace twostep::bench
