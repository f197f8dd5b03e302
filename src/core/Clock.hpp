/// Time as a dependency: core code never reads the wall clock itself, so tests inject a FakeClock.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace twostep::core {

/// Seconds since the Unix epoch: TOTP, lockouts and grants all work in whole seconds.
using Seconds = std::int64_t;

/// A source of the current time. Implementations are thread-safe.
class Clock {
public:
    virtual ~Clock() = default;
    /// The current Unix time in seconds.
    virtual Seconds now() const = 0;
};

/// The system's real-time clock.
class SystemClock final : public Clock {
public:
    Seconds now() const override {
        return std::chrono::duration_cast<std::chrono::seconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }
};

/// A clock that only moves when told to; thread-safe.
class FakeClock final : public Clock {
public:
    explicit FakeClock(Seconds start) : now_(start) {}
    Seconds now() const override { return now_.load(); }
    void set(Seconds t) { now_.store(t); }
    void advance(Seconds by) { now_.fetch_add(by); }

private:
    std::atomic<Seconds> now_;
};

}  // namespace twostep::core
