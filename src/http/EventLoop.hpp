/// One event loop thread of the server: POCO's SocketReactor over non-blocking sockets, with
/// what a server needs around it: tasks posted from other threads, a periodic tick for
/// deadlines, and deletion deferred until no callback of the object can still be running
/// (Envoy's Dispatcher::deferredDelete).
#pragma once

#include <Poco/AutoPtr.h>
#include <Poco/Net/Socket.h>
#include <Poco/Net/SocketNotification.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace twostep::http {

class EventLoop {
public:
    using Clock = std::chrono::steady_clock;
    using Task = std::function<void()>;

    /// Called on the loop thread when a watched socket is ready. Must not throw.
    class Watcher {
    public:
        virtual void onReadable() noexcept = 0;
        virtual void onWritable() noexcept = 0;

    protected:
        ~Watcher() = default;
    };

    /// What deferDelete() takes.
    class Deferred {
    public:
        virtual ~Deferred() = default;
    };

    /// A socket's registration with the loop, for the registration's lifetime. Loop thread only.
    class Registration {
    public:
        Registration(EventLoop& loop, const Poco::Net::Socket& socket, Watcher& watcher);
        /// Stops watching. Call before the socket closes.
        ~Registration();
        Registration(const Registration&) = delete;
        Registration& operator=(const Registration&) = delete;

        /// Which readiness to report (none: the socket stays registered but silent).
        void watch(bool readable, bool writable);

    private:
        void readable(const Poco::AutoPtr<Poco::Net::ReadableNotification>&);
        void writable(const Poco::AutoPtr<Poco::Net::WritableNotification>&);
        void remove(bool readable, bool writable);

        EventLoop& loop_;
        Poco::Net::Socket socket_;
        Watcher& watcher_;
        bool readable_ = false;
        bool writable_ = false;
    };

    /// `onTick` runs on the loop thread about every `tick` (later while callbacks keep it busy).
    EventLoop(std::string name, std::chrono::milliseconds tick,
              std::function<void(Clock::time_point)> onTick);
    /// Stops and joins the thread; deletes what is still deferred.
    ~EventLoop();
    EventLoop(const EventLoop&) = delete;
    EventLoop& operator=(const EventLoop&) = delete;

    /// Starts the loop's thread.
    void start();
    /// Makes the thread return soon and joins it. Thread-safe; idempotent.
    void stop();

    /// Runs `task` on the loop thread, after the tasks posted before it. Thread-safe.
    void post(Task task);
    /// Deletes `object` once the current callback has returned. Loop thread only.
    void deferDelete(std::unique_ptr<Deferred> object);
    bool inLoopThread() const { return std::this_thread::get_id() == threadId_.load(); }

private:
    class Reactor;
    class Wakeup;
    void afterDispatch();
    void runPosted() noexcept;

    const std::string name_;
    const std::chrono::milliseconds tick_;
    const std::function<void(Clock::time_point)> onTick_;
    std::unique_ptr<Reactor> reactor_;
    std::unique_ptr<Wakeup> wakeup_;
    std::mutex postedMutex_;
    std::vector<Task> posted_;
    std::atomic<bool> wakePending_{false};
    std::vector<std::unique_ptr<Deferred>> deferred_;
    Clock::time_point nextTick_;
    std::atomic<std::thread::id> threadId_{};
    std::thread thread_;
};

}  // namespace twostep::http
