// The pool that runs the store's blocking work: every task runs once, on a worker thread that
// does not preempt the event loop submitting it, and a throwing task costs no thread.
#include <catch2/catch.hpp>
#include <sched.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <set>
#include <thread>

#include "http/WorkerPool.hpp"

using twostep::http::WorkerPool;

TEST_CASE("WorkerPool runs every task on its own threads, under SCHED_BATCH") {
    std::mutex mutex;
    std::set<std::thread::id> threads;
    std::atomic<int> batch{0};
    std::atomic<int> ran{0};
    {
        WorkerPool pool("test-worker", 3);
        for (int i = 0; i < 200; ++i) {
            pool.submit([&] {
                {
                    const std::lock_guard lock(mutex);
                    threads.insert(std::this_thread::get_id());
                }
                if (sched_getscheduler(0) == SCHED_BATCH) {
                    ++batch;
                }
                ++ran;
            });
        }
    }  // the destructor runs what is still queued, then joins
    CHECK(ran == 200);
    // A woken worker must not preempt the loop that woke it (docs/architecture.md).
    CHECK(batch == 200);
    CHECK(threads.count(std::this_thread::get_id()) == 0);
    CHECK(threads.size() <= 3);
}

TEST_CASE("WorkerPool survives a task that throws") {
    std::atomic<int> ran{0};
    {
        WorkerPool pool("test-worker", 1);
        pool.submit([] { throw std::runtime_error("boom"); });
        pool.submit([&] { ++ran; });
    }
    CHECK(ran == 1);
}
