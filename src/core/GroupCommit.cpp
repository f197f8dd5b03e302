#include "core/GroupCommit.hpp"

#include <algorithm>
#include <cassert>
#include <new>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace twostep::core {

/// A caller waiting in the queue. Shared between the caller and the leader of its batch, so the
/// leader may still be waking it when the caller has already returned.
struct GroupCommit::Waiter {
    enum class State { Queued, Leading, Done };

    explicit Waiter(QueuedChange queued) : change(std::move(queued)) {}

    /// Sets the state and wakes the caller.
    void wake(State next) {
        {
            const std::lock_guard lock(mutex);
            state = next;
        }
        woken.notify_one();
    }

    QueuedChange change;
    /// Why the batch failed (then `change.outcome` is unset); shared by the batch, so failing a
    /// member allocates nothing.
    std::shared_ptr<const std::string> error;
    std::mutex mutex;
    std::condition_variable woken;
    State state = State::Queued;
};

namespace {

/// `limits` with room for at least one change in a batch.
BatchLimits atLeastOne(BatchLimits limits) {
    limits.maxChanges = std::max<std::size_t>(1, limits.maxChanges);
    return limits;
}

}  // namespace

GroupCommit::GroupCommit(ApplyBatch apply, BatchLimits limits)
    : apply_(std::move(apply)),
      limits_(atLeastOne(limits)),
      outOfMemory_(std::make_shared<const std::string>(
          "out of memory while committing a batch of changes")) {}

ChangeOutcome GroupCommit::submit(const Change& change, const Settle& settle,
                                  std::optional<std::int64_t> recoveryCodeId) {
    auto self = std::make_shared<Waiter>(
        QueuedChange{change, settle, change.approximateBytes(), recoveryCodeId, {}});
    bool leadNow = false;
    std::size_t queued = 0;
    {
        const std::lock_guard lock(mutex_);
        queue_.push_back(self);
        queued = queue_.size();
        // Nobody is committing: lead at once, so an idle store adds no wait to a lone change.
        leadNow = !leading_;
        leading_ = true;
    }
    if (observer_ != nullptr) {
        observer_->changeQueued(queued);
    }
    if (!leadNow) {
        std::unique_lock lock(self->mutex);
        self->woken.wait(lock, [&] { return self->state != Waiter::State::Queued; });
    }
    if (self->state != Waiter::State::Done) {
        lead(self);
    }
    if (self->error) {
        throw CommitError(*self->error);
    }
    return std::move(self->change.outcome);
}

void GroupCommit::lead(const std::shared_ptr<Waiter>& self) noexcept {
    std::vector<std::shared_ptr<Waiter>> batch;
    std::vector<QueuedChange*> members;
    std::shared_ptr<const std::string> error;
    try {
        // Allocated before the queue is touched: taking the batch cannot fail halfway.
        batch.reserve(limits_.maxChanges);
        members.reserve(limits_.maxChanges);
    } catch (const std::bad_alloc&) {
        error = outOfMemory_;
    }
    std::size_t bytes = 0;
    {
        const std::lock_guard lock(mutex_);
        assert(!queue_.empty() && queue_.front() == self && "the leader is the oldest change");
        // Everything that queued while the previous batch committed, oldest first, up to the
        // bounds; the first change always goes, however big. Without memory only this one, to
        // fail it and pass the writer's turn on.
        while (!queue_.empty() && batch.size() < limits_.maxChanges &&
               (batch.empty() || bytes + queue_.front()->change.bytes <= limits_.maxBytes)) {
            if (error) {
                queue_.pop_front();
                break;
            }
            bytes += queue_.front()->change.bytes;
            members.push_back(&queue_.front()->change);
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
        }
    }
    if (!error) {
        try {
            apply_(members);
        } catch (const std::exception& e) {
            error = describeFailure(e.what());
        } catch (...) {
            error = describeFailure("unknown error while committing a batch of changes");
        }
        if (observer_ != nullptr) {
            observer_->batchDone(batch.size(), bytes, !error);
        }
    }
    // Hand the writer's turn to the oldest change that queued meanwhile before waking this
    // batch, so the next commit starts as early as possible.
    std::shared_ptr<Waiter> next;
    {
        const std::lock_guard lock(mutex_);
        if (queue_.empty()) {
            leading_ = false;
        } else {
            next = queue_.front();
        }
    }
    if (next) {
        next->wake(Waiter::State::Leading);
    }
    for (const auto& waiter : batch) {
        if (error) {
            // A failed batch fails every member: none of it was committed.
            waiter->error = error;
        }
        if (waiter != self) {
            waiter->wake(Waiter::State::Done);
        }
    }
    self->error = error;
    self->state = Waiter::State::Done;
}

std::shared_ptr<const std::string> GroupCommit::describeFailure(const char* reason) noexcept {
    try {
        return std::make_shared<const std::string>(reason);
    } catch (...) {
        return outOfMemory_;
    }
}

}  // namespace twostep::core
