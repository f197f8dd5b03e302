/// `twostep-loadgen store`: what one accepted code costs in SqliteStore, without HTTP, for
/// PRAGMA synchronous FULL against NORMAL (docs/benchmarks.md, durability).
#pragma once

#include <map>
#include <string>

namespace twostep::bench {

struct StoreBenchOptions {
    std::string path;          ///< a fresh database file (removed first)
    bool synchronousFull = true;
    int threads = 8;           ///< concurrent callers, as the webhook's worker threads
    double seconds = 5;
    int users = 10000;
};

/// Runs acceptStep + appendAudit (the two writes of an accepted code) from `threads` threads
/// for `seconds` and prints one result line. @throw twostep::Error when the store fails.
void runStoreBench(const StoreBenchOptions& options);

}  // namespace twostep::bench
