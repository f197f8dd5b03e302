/// Group commit: the changes of concurrent requests queue up, and one writer at a time applies
/// everything queued in one transaction and commits once (docs/architecture.md, "The write path").
#pragma once

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>

#include "core/Store.hpp"

namespace twostep::core {

/// How big one batch may grow. docs/architecture.md explains the defaults.
struct BatchLimits {
    /// The most changes in one transaction: bounds how long the writer holds the database (and
    /// so the wait of the changes queued behind it) whatever the number of waiting threads.
    std::size_t maxChanges = 64;
    /// The most bytes (Change::approximateBytes) in one transaction; a single larger change still
    /// commits, alone. Bounds the transaction's size when reviews carry absurdly long names.
    std::size_t maxBytes = 256 * 1024;
};

/// One change waiting for the writer: what it asks, and, once its batch ended, what it got.
struct QueuedChange {
    const Change& change;
    const Settle& settle;
    std::size_t bytes = 0;
    /// ConsumeRecoveryCode: the id of the stored code that matched, found before queuing (hashing
    /// every stored code is kept out of the writer's transaction); nullopt when none matched.
    std::optional<std::int64_t> recoveryCodeId;
    ChangeOutcome outcome;  ///< set by the batch's apply function
};

/// The queue and the writer's turn of one store. There is no writer thread: the first caller to
/// find no batch running leads (applies and commits the batch on its own thread, so a lone change
/// waits for nothing but its own commit); callers that arrive during a commit queue up, and when
/// the commit ends the oldest of them leads the next batch with everything queued by then. Each
/// caller is woken on its own condition variable, so no wake-up is wasted. Thread-safe.
class GroupCommit {
public:
    /// Applies a batch in one transaction and commits it, filling each member's outcome; throws
    /// to fail the whole batch (then nothing of it may be committed).
    using ApplyBatch = std::function<void(std::span<QueuedChange* const>)>;

    GroupCommit(ApplyBatch apply, BatchLimits limits);
    GroupCommit(const GroupCommit&) = delete;
    GroupCommit& operator=(const GroupCommit&) = delete;

    /// Queues `change`, waits until its batch has ended, and returns its outcome. @throw
    /// CommitError (the batch failed; its message says why) or whatever apply threw that is not
    /// a twostep::Error.
    ChangeOutcome submit(const Change& change, const Settle& settle,
                         std::optional<std::int64_t> recoveryCodeId = std::nullopt);

    void setObserver(CommitObserver* observer) { observer_ = observer; }
    const BatchLimits& limits() const { return limits_; }

private:
    struct Waiter;

    /// Leads one batch from the front of the queue (`self` is its oldest change), then passes
    /// the writer's turn on and wakes the batch. Never throws: a turn that is not passed on would
    /// leave every later caller waiting.
    void lead(const std::shared_ptr<Waiter>& self) noexcept;
    /// A batch's failure message, shared by its members (the preallocated one without memory).
    std::shared_ptr<const std::string> describeFailure(const char* reason) noexcept;

    const ApplyBatch apply_;
    const BatchLimits limits_;
    const std::shared_ptr<const std::string> outOfMemory_;
    CommitObserver* observer_ = nullptr;
    std::mutex mutex_;
    std::deque<std::shared_ptr<Waiter>> queue_;
    bool leading_ = false;  ///< a caller is applying a batch; invariant: false => queue_ empty
};

}  // namespace twostep::core
