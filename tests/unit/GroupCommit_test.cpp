// The group-commit queue on its own, with an apply function that records its batches instead of
// a database: who leads, what forms a batch, the bounds, and how a failure reaches every member.
#include "core/GroupCommit.hpp"

#include <algorithm>
#include <atomic>
#include <catch2/catch.hpp>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <span>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

using twostep::core::BatchLimits;
using twostep::core::Change;
using twostep::core::ChangeOutcome;
using twostep::core::CommitError;
using twostep::core::GroupCommit;
using twostep::core::QueuedChange;
using twostep::core::Settle;

namespace {

/// An apply function that records each batch's usernames and can hold the first batch until
/// told to let go, so that the changes submitted meanwhile queue up behind it.
class RecordingApply {
public:
    void operator()(std::span<QueuedChange* const> batch) {
        std::unique_lock lock(mutex_);
        std::vector<std::string> names;
        for (QueuedChange* member : batch) {
            names.push_back(member->change.username);
            member->outcome.applied = true;
        }
        batches_.push_back(names);
        changed_.notify_all();
        if (batches_.size() == 1) {
            changed_.wait(lock, [&] { return released_; });
        }
        if (failWith_ && batches_.size() > 1) {
            throw std::runtime_error(*failWith_);
        }
    }

    /// Waits until the first batch is being applied (so the writer's turn is taken).
    void awaitFirstBatch() {
        std::unique_lock lock(mutex_);
        REQUIRE(changed_.wait_for(lock, std::chrono::seconds(30),
                                  [&] { return !batches_.empty(); }));
    }
    void release() {
        const std::lock_guard lock(mutex_);
        released_ = true;
        changed_.notify_all();
    }
    void failLaterBatches(std::string message) {
        const std::lock_guard lock(mutex_);
        failWith_ = std::move(message);
    }
    std::vector<std::vector<std::string>> batches() {
        const std::lock_guard lock(mutex_);
        return batches_;
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<std::vector<std::string>> batches_;
    bool released_ = false;
    std::optional<std::string> failWith_;
};

/// Counts the changes waiting, as a store's metrics would.
class QueueWatcher final : public twostep::core::CommitObserver {
public:
    void changeQueued(std::size_t queued) noexcept override {
        const std::lock_guard lock(mutex_);
        most_ = std::max(most_, queued);
        changed_.notify_all();
    }
    void batchDone(std::size_t, std::size_t, bool) noexcept override {}
    /// Waits until at least `count` changes have waited at once.
    void awaitQueued(std::size_t count) {
        std::unique_lock lock(mutex_);
        REQUIRE(changed_.wait_for(lock, std::chrono::seconds(30), [&] { return most_ >= count; }));
    }

private:
    std::mutex mutex_;
    std::condition_variable changed_;
    std::size_t most_ = 0;
};

Change changeFor(const std::string& username, std::size_t nameBytes = 0) {
    Change change;
    change.kind = Change::Kind::AcceptStep;
    change.username = username + std::string(nameBytes, 'x');
    return change;
}

/// Holds the writer with a first change "first", then submits one change per name on threads of
/// their own once the first batch runs, waits until all of them queue, and lets go. Returns the
/// errors the followers saw ("" for none).
std::vector<std::string> queueBehindFirst(GroupCommit& commits, RecordingApply& apply,
                                          const std::vector<Change>& followers) {
    QueueWatcher watcher;
    commits.setObserver(&watcher);
    std::thread first([&] { commits.submit(changeFor("first"), Settle()); });
    apply.awaitFirstBatch();
    std::vector<std::string> errors(followers.size());
    std::vector<std::thread> threads;
    for (std::size_t i = 0; i < followers.size(); ++i) {
        threads.emplace_back([&, i] {
            // Catch2's assertions are not for other threads: the outcome goes into `errors`.
            try {
                if (!commits.submit(followers[i], Settle()).applied) {
                    errors[i] = "not applied";
                }
            } catch (const CommitError& e) {
                errors[i] = e.what();
            }
        });
    }
    watcher.awaitQueued(followers.size());
    apply.release();
    first.join();
    for (std::thread& thread : threads) {
        thread.join();
    }
    commits.setObserver(nullptr);
    return errors;
}

}  // namespace

TEST_CASE("a lone change is applied at once, by its own caller", "[groupcommit]") {
    std::thread::id appliedBy;
    GroupCommit commits(
        [&](std::span<QueuedChange* const> batch) {
            REQUIRE(batch.size() == 1);
            appliedBy = std::this_thread::get_id();
            batch.front()->outcome.applied = true;
        },
        BatchLimits{});
    CHECK(commits.submit(changeFor("alice"), Settle()).applied);
    CHECK(appliedBy == std::this_thread::get_id());
    CHECK(commits.submit(changeFor("bob"), Settle()).applied);
}

TEST_CASE("changes that arrive during a commit form the next batch, oldest first",
          "[groupcommit]") {
    RecordingApply apply;
    GroupCommit commits(std::ref(apply), BatchLimits{});
    std::vector<Change> followers;
    for (int i = 0; i < 10; ++i) {
        followers.push_back(changeFor("user" + std::to_string(i)));
    }
    const std::vector<std::string> errors = queueBehindFirst(commits, apply, followers);
    CHECK(errors == std::vector<std::string>(followers.size()));
    const auto batches = apply.batches();
    REQUIRE(batches.size() == 2);
    CHECK(batches[0] == std::vector<std::string>{"first"});
    CHECK(batches[1].size() == followers.size());
}

TEST_CASE("a batch holds at most maxChanges changes and maxBytes bytes", "[groupcommit]") {
    RecordingApply apply;
    SECTION("by count") {
        GroupCommit commits(std::ref(apply), BatchLimits{4, 1 << 20});
        const std::vector<Change> followers(10, changeFor("user"));
        queueBehindFirst(commits, apply, followers);
        const auto batches = apply.batches();
        REQUIRE(batches.size() == 4);  // first, then 4 + 4 + 2
        CHECK(batches[1].size() == 4);
        CHECK(batches[2].size() == 4);
        CHECK(batches[3].size() == 2);
    }
    SECTION("by bytes; a change larger than the bound goes alone") {
        const std::size_t each = changeFor("user", 1000).approximateBytes();
        GroupCommit commits(std::ref(apply), BatchLimits{64, 3 * each});
        std::vector<Change> followers(7, changeFor("user", 1000));
        followers.push_back(changeFor("huge", 10 * each));
        queueBehindFirst(commits, apply, followers);
        std::size_t changes = 0;
        for (const auto& batch : apply.batches()) {
            CAPTURE(batch.size());
            CHECK(batch.size() <= 3);
            changes += batch.size();
            if (batch.front().starts_with("huge")) {
                CHECK(batch.size() == 1);
            }
        }
        CHECK(changes == followers.size() + 1);
    }
}

TEST_CASE("a bound of zero changes still commits one at a time", "[groupcommit]") {
    std::size_t largest = 0;
    GroupCommit commits(
        [&](std::span<QueuedChange* const> batch) {
            largest = std::max(largest, batch.size());
            for (QueuedChange* member : batch) {
                member->outcome.applied = true;
            }
        },
        BatchLimits{0, 0});
    CHECK(commits.submit(changeFor("alice"), Settle()).applied);
    CHECK(commits.submit(changeFor("bob"), Settle()).applied);
    CHECK(largest == 1);
}

TEST_CASE("a batch that fails fails every member with the reason", "[groupcommit]") {
    RecordingApply apply;
    GroupCommit commits(std::ref(apply), BatchLimits{});
    apply.failLaterBatches("disk I/O error");
    const std::vector<Change> followers(6, changeFor("user"));
    const std::vector<std::string> errors = queueBehindFirst(commits, apply, followers);
    CHECK(errors == std::vector<std::string>(followers.size(), "disk I/O error"));
    CHECK(apply.batches().size() == 2);
}

TEST_CASE("many threads committing at once: every change applied exactly once",
          "[groupcommit]") {
    constexpr int Threads = 48;
    constexpr int PerThread = 200;
    std::atomic<int> applied{0};
    std::atomic<std::size_t> largest{0};
    std::atomic<int> inside{0};
    std::atomic<bool> overlapped{false};
    GroupCommit commits(
        [&](std::span<QueuedChange* const> batch) {
            // One writer at a time.
            if (++inside != 1) {
                overlapped = true;
            }
            for (QueuedChange* member : batch) {
                member->outcome.applied = true;
                ++applied;
            }
            std::size_t seen = largest.load();
            while (batch.size() > seen && !largest.compare_exchange_weak(seen, batch.size())) {
            }
            std::this_thread::sleep_for(std::chrono::microseconds(200));  // a commit's fsync
            --inside;
        },
        BatchLimits{16, 1 << 20});
    std::vector<std::thread> threads;
    std::atomic<int> answered{0};
    for (int t = 0; t < Threads; ++t) {
        threads.emplace_back([&, t] {
            for (int i = 0; i < PerThread; ++i) {
                if (commits.submit(changeFor("t" + std::to_string(t)), Settle()).applied) {
                    ++answered;
                }
            }
        });
    }
    for (std::thread& thread : threads) {
        thread.join();
    }
    CHECK_FALSE(overlapped);
    CHECK(applied == Threads * PerThread);
    CHECK(answered == Threads * PerThread);
    CHECK(largest > 1);
    CHECK(largest <= 16);
}
