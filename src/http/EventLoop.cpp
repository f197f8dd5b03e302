#include "http/EventLoop.hpp"

#include <Poco/NObserver.h>
#include <Poco/Net/SocketReactor.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/StreamSocketImpl.h>
#include <pthread.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <utility>

namespace twostep::http {

/// POCO's reactor with the hooks the loop needs. POCO 1.11 calls onBusy() before it dispatches
/// a round of events and onTimeout() after a round without readable ones: both are moments
/// when no callback runs, so deferred objects die there and deadlines are checked there.
class EventLoop::Reactor final : public Poco::Net::SocketReactor {
public:
    Reactor(EventLoop& loop, const Poco::Timespan& timeout)
        : SocketReactor(timeout), loop_(loop) {}

protected:
    void onBusy() override { loop_.afterDispatch(); }
    // Not SocketReactor::onTimeout() nor onShutdown(): each notifies every socket's observers,
    // a cost proportional to the number of (mostly idle) connections, for nothing.
    void onTimeout() override { loop_.afterDispatch(); }
    void onIdle() override { loop_.afterDispatch(); }
    void onShutdown() override {}

private:
    EventLoop& loop_;
};

/// A socketpair that wakes the reactor for posted tasks: POCO 1.11's SocketReactor::wakeUp()
/// only interrupts its sleep when it has no sockets, not a poll in progress.
class EventLoop::Wakeup final : public EventLoop::Watcher {
public:
    explicit Wakeup(EventLoop& loop) : loop_(loop) {
        int fds[2];
        if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) {
            throw std::runtime_error(std::string("cannot create the event loop's wake-up "
                                                 "socket: ") +
                                     std::strerror(errno));
        }
        readEnd_ = Poco::Net::StreamSocket(new Poco::Net::StreamSocketImpl(fds[0]));
        writeFd_ = fds[1];
        registration_ = std::make_unique<Registration>(loop, readEnd_, *this);
        registration_->watch(true, false);
    }
    ~Wakeup() {
        registration_.reset();
        ::close(writeFd_);
    }
    Wakeup(const Wakeup&) = delete;
    Wakeup& operator=(const Wakeup&) = delete;

    /// Thread-safe. A full socket buffer already guarantees a wake-up, so EAGAIN is fine.
    void signal() noexcept {
        const char byte = 1;
        while (::write(writeFd_, &byte, 1) < 0 && errno == EINTR) {
        }
    }

    void onReadable() noexcept override {
        char drain[256];
        const int fd = readEnd_.impl()->sockfd();
        while (::read(fd, drain, sizeof drain) > 0) {
        }
        loop_.runPosted();
    }
    void onWritable() noexcept override {}

private:
    EventLoop& loop_;
    Poco::Net::StreamSocket readEnd_;
    int writeFd_ = -1;
    std::unique_ptr<Registration> registration_;
};

EventLoop::Registration::Registration(EventLoop& loop, const Poco::Net::Socket& socket,
                                      Watcher& watcher)
    : loop_(loop), socket_(socket), watcher_(watcher) {}

EventLoop::Registration::~Registration() {
    remove(readable_, writable_);
}

void EventLoop::Registration::watch(bool readable, bool writable) {
    if (readable == readable_ && writable == writable_) {
        return;
    }
    // POCO 1.11 sets a socket's poll mode when an observer is added but keeps it when one of
    // two is removed, so a dropped interest would go on firing: drop both, add back what is
    // wanted.
    remove(readable_, writable_);
    Reactor& reactor = *loop_.reactor_;
    if (readable) {
        reactor.addEventHandler(socket_, Poco::NObserver<Registration, Poco::Net::ReadableNotification>(
                                             *this, &Registration::readable));
        readable_ = true;
    }
    if (writable) {
        reactor.addEventHandler(socket_, Poco::NObserver<Registration, Poco::Net::WritableNotification>(
                                             *this, &Registration::writable));
        writable_ = true;
    }
}

void EventLoop::Registration::remove(bool readable, bool writable) {
    Reactor& reactor = *loop_.reactor_;
    try {
        if (writable) {
            reactor.removeEventHandler(
                socket_, Poco::NObserver<Registration, Poco::Net::WritableNotification>(
                             *this, &Registration::writable));
        }
        if (readable) {
            reactor.removeEventHandler(
                socket_, Poco::NObserver<Registration, Poco::Net::ReadableNotification>(
                             *this, &Registration::readable));
        }
    } catch (...) {
        // Only epoll_ctl(DEL) on a socket the kernel already dropped can fail: nothing to undo.
    }
    readable_ = readable_ && !readable;
    writable_ = writable_ && !writable;
}

void EventLoop::Registration::readable(
    const Poco::AutoPtr<Poco::Net::ReadableNotification>& /*notification*/) {
    watcher_.onReadable();
}

void EventLoop::Registration::writable(
    const Poco::AutoPtr<Poco::Net::WritableNotification>& /*notification*/) {
    watcher_.onWritable();
}

EventLoop::EventLoop(std::string name, std::chrono::milliseconds tick,
                     std::function<void(Clock::time_point)> onTick)
    : name_(std::move(name)),
      tick_(tick),
      onTick_(std::move(onTick)),
      reactor_(std::make_unique<Reactor>(
          *this, Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(tick.count()) * 1000))),
      wakeup_(std::make_unique<Wakeup>(*this)),
      nextTick_(Clock::now() + tick) {}

EventLoop::~EventLoop() {
    stop();
    deferred_.clear();
    wakeup_.reset();
}

void EventLoop::start() {
    thread_ = std::thread([this] {
        threadId_ = std::this_thread::get_id();
        pthread_setname_np(pthread_self(), name_.substr(0, 15).c_str());
        reactor_->run();
    });
}

void EventLoop::stop() {
    reactor_->stop();
    wakeup_->signal();
    if (thread_.joinable() && !inLoopThread()) {
        thread_.join();
    }
}

void EventLoop::post(Task task) {
    {
        const std::lock_guard lock(postedMutex_);
        posted_.push_back(std::move(task));
    }
    if (!wakePending_.exchange(true)) {
        wakeup_->signal();
    }
}

void EventLoop::deferDelete(std::unique_ptr<Deferred> object) {
    deferred_.push_back(std::move(object));
}

void EventLoop::runPosted() noexcept {
    // Cleared before the tasks are taken: a task posted after the swap signals again.
    wakePending_.store(false);
    std::vector<Task> tasks;
    {
        const std::lock_guard lock(postedMutex_);
        tasks.swap(posted_);
    }
    for (Task& task : tasks) {
        try {
            task();
        } catch (...) {
            // Tasks catch their own failures; one that does not must not end the loop.
        }
    }
}

void EventLoop::afterDispatch() {
    if (!deferred_.empty()) {
        std::vector<std::unique_ptr<Deferred>> dying;
        dying.swap(deferred_);
    }
    const Clock::time_point now = Clock::now();
    if (now >= nextTick_) {
        nextTick_ = now + tick_;
        try {
            onTick_(now);
        } catch (...) {
            // The tick checks deadlines and must go on next time.
        }
    }
}

}  // namespace twostep::http
