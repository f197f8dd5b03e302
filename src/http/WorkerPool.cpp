#include "http/WorkerPool.hpp"

#include <pthread.h>
#include <sched.h>

#include <utility>

namespace twostep::http {

WorkerPool::WorkerPool(std::string name, int threads) {
    const int count = threads < 1 ? 1 : threads;
    threads_.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        threads_.emplace_back([this, name] {
            pthread_setname_np(pthread_self(), name.substr(0, 15).c_str());
            // SCHED_BATCH: a worker woken by a submit does not preempt the event loop that
            // submitted it, so the loop finishes its round of ready connections (and submits
            // the rest of the round) before the workers run. Allowed without privileges.
            const sched_param normal{};
            pthread_setschedparam(pthread_self(), SCHED_BATCH, &normal);
            work();
        });
    }
}

WorkerPool::~WorkerPool() {
    {
        const std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    ready_.notify_all();
    for (std::thread& thread : threads_) {
        thread.join();
    }
}

void WorkerPool::submit(Task task) {
    {
        const std::lock_guard lock(mutex_);
        tasks_.push_back(std::move(task));
    }
    ready_.notify_one();
}

std::size_t WorkerPool::queued() const {
    const std::lock_guard lock(mutex_);
    return tasks_.size();
}

void WorkerPool::work() {
    std::unique_lock lock(mutex_);
    for (;;) {
        ready_.wait(lock, [this] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) {
            return;  // stopping, and nothing left to run
        }
        Task task = std::move(tasks_.front());
        tasks_.pop_front();
        lock.unlock();
        try {
            task();
        } catch (...) {
            // Tasks answer their own failures; one that throws must not take the thread down.
        }
        task = nullptr;  // its captures die outside the lock
        lock.lock();
    }
}

}  // namespace twostep::http
