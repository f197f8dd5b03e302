/// The bounded pool of threads that run work which may block on the database (reviews that
/// need the store, /readyz, /metrics), so that no event loop ever waits for it.
#pragma once

#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace twostep::http {

/// A fixed number of threads taking tasks in arrival order. Thread-safe.
class WorkerPool {
public:
    using Task = std::function<void()>;

    /// Starts `threads` threads (at least one), named `name`.
    WorkerPool(std::string name, int threads);
    /// Runs the tasks already queued, then joins the threads.
    ~WorkerPool();
    WorkerPool(const WorkerPool&) = delete;
    WorkerPool& operator=(const WorkerPool&) = delete;

    /// Queues `task`; it runs on a worker thread. The queue is bounded by its callers (each
    /// connection has at most one task queued or running). Must not throw from the task.
    void submit(Task task);
    /// Tasks queued and not started yet.
    std::size_t queued() const;

private:
    void work();

    mutable std::mutex mutex_;
    std::condition_variable ready_;
    std::deque<Task> tasks_;
    bool stopping_ = false;
    std::vector<std::thread> threads_;
};

}  // namespace twostep::http
