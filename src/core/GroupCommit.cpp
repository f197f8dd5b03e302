#include "core/GroupCommit.hpp"

#include <cassert>
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
    std::optional<std::string> error;  ///< why the batch failed (then `change.outcome` is unset)
    std::mutex mutex;
    std::condition_variable woken;
    State state = State::Queued;
};

GroupCommit::GroupCommit(ApplyBatch apply, BatchLimits limits)
    : apply_(std::move(apply)), limits_(limits) {
    assert(limits_.maxChanges >= 1 && "a batch holds at least one change");
}

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

void GroupCommit::lead(const std::shared_ptr<Waiter>& self) {
    std::vector<std::shared_ptr<Waiter>> batch;
    {
        const std::lock_guard lock(mutex_);
        assert(!queue_.empty() && queue_.front() == self && "the leader is the oldest change");
        std::size_t bytes = 0;
        // Everything that queued while the previous batch committed, oldest first, up to the
        // bounds; the first change always goes, however big.
        while (!queue_.empty() && batch.size() < limits_.maxChanges &&
               (batch.empty() || bytes + queue_.front()->change.bytes <= limits_.maxBytes)) {
            bytes += queue_.front()->change.bytes;
            batch.push_back(std::move(queue_.front()));
            queue_.pop_front();
        }
    }
    std::vector<QueuedChange*> members;
    members.reserve(batch.size());
    std::size_t bytes = 0;
    for (const auto& waiter : batch) {
        members.push_back(&waiter->change);
        bytes += waiter->change.bytes;
    }
    std::optional<std::string> error;
    try {
        apply_(members);
    } catch (const std::exception& e) {
        error = e.what();
    } catch (...) {
        error = "unknown error while committing a batch of changes";
    }
    if (observer_ != nullptr) {
        observer_->batchDone(batch.size(), bytes, !error);
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
            waiter->change.outcome = ChangeOutcome{};
        }
        if (waiter != self) {
            waiter->wake(Waiter::State::Done);
        }
    }
    self->state = Waiter::State::Done;
}

}  // namespace twostep::core
