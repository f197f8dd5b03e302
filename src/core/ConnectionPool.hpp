/// A bounded pool of database connections that each serve one thread at a time (RAII leases).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace twostep::core {

/// Every connection stayed busy for the whole acquire timeout.
class PoolTimeout : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// Opens connections on demand up to `maxConnections`; callers beyond that wait for one to come
/// back, for at most the acquire timeout. A connection comes back to the pool only when the lease
/// did not mark it broken and `reusable` still accepts it, and an idle one is checked again before
/// it is handed out, so dead connections are replaced by fresh ones. Thread-safe.
template <typename Connection>
class ConnectionPool {
public:
    /// Opens a connection; may throw (nothing is counted then).
    using Opener = std::function<std::unique_ptr<Connection>()>;
    /// Whether a connection may be (re)used; must not throw. May also repair it (roll back).
    using Check = std::function<bool(Connection&)>;

    ConnectionPool(Opener opener, Check reusable, int maxConnections,
                   std::chrono::milliseconds acquireTimeout)
        : opener_(std::move(opener)),
          reusable_(std::move(reusable)),
          max_(maxConnections < 1 ? 1 : maxConnections),
          acquireTimeout_(acquireTimeout) {
        // Reserved up front so that release() never allocates and so never throws.
        idle_.reserve(static_cast<std::size_t>(max_));
    }
    ConnectionPool(const ConnectionPool&) = delete;
    ConnectionPool& operator=(const ConnectionPool&) = delete;

    /// A checked-out connection, returned to the pool when the lease ends.
    class Lease {
    public:
        Lease(ConnectionPool& pool, std::unique_ptr<Connection> connection)
            : pool_(pool), connection_(std::move(connection)) {}
        Lease(const Lease&) = delete;
        Lease& operator=(const Lease&) = delete;
        ~Lease() { pool_.release(std::move(connection_), broken_); }

        Connection& connection() { return *connection_; }
        /// The connection failed in a way that leaves it unusable: close it instead.
        void markBroken() { broken_ = true; }

    private:
        ConnectionPool& pool_;
        std::unique_ptr<Connection> connection_;
        bool broken_ = false;
    };

    /// The most connections open at once.
    int maxConnections() const { return max_; }

    /// A free connection: an idle one that is still reusable, or a new one while below the
    /// maximum. @throw PoolTimeout after the acquire timeout; whatever the opener throws.
    Lease acquire() {
        std::vector<std::unique_ptr<Connection>> dead;  // closed after the lock is released
        std::unique_lock lock(mutex_);
        const auto deadline = std::chrono::steady_clock::now() + acquireTimeout_;
        for (;;) {
            if (!freed_.wait_until(lock, deadline,
                                   [this] { return !idle_.empty() || open_ < max_; })) {
                throw PoolTimeout("all " + std::to_string(max_) +
                                  " database connections are busy (waited " +
                                  std::to_string(acquireTimeout_.count()) + " ms)");
            }
            while (!idle_.empty()) {
                std::unique_ptr<Connection> connection = std::move(idle_.back());
                idle_.pop_back();
                if (reusable_(*connection)) {
                    return Lease(*this, std::move(connection));
                }
                dead.push_back(std::move(connection));
                --open_;
            }
            if (open_ < max_) {
                break;
            }
        }
        ++open_;
        lock.unlock();
        try {
            return Lease(*this, opener_());
        } catch (...) {
            lock.lock();
            --open_;
            freed_.notify_one();
            throw;
        }
    }

private:
    void release(std::unique_ptr<Connection> connection, bool broken) noexcept {
        const bool keep = !broken && reusable_(*connection);
        std::unique_ptr<Connection> closing;
        {
            const std::lock_guard lock(mutex_);
            if (!keep) {
                closing = std::move(connection);
                --open_;
            } else {
                idle_.push_back(std::move(connection));
            }
        }
        freed_.notify_one();
        // `closing` is destroyed here, outside the lock; connection destructors do not throw.
    }

    const Opener opener_;
    const Check reusable_;
    const int max_;
    const std::chrono::milliseconds acquireTimeout_;
    std::mutex mutex_;
    std::condition_variable freed_;
    std::vector<std::unique_ptr<Connection>> idle_;
    int open_ = 0;
};

}  // namespace twostep::core
