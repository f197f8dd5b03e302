#include "http/HttpServer.hpp"

#include <Poco/Net/SocketAddress.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <future>
#include <string>
#include <utility>

#include "http/Log.hpp"
#include "http/Metrics.hpp"
#include "http/Router.hpp"

namespace twostep::http {

namespace {

/// Connections accepted per readiness of the listening socket, so a flood of new connections
/// cannot keep loop 0 from its own connections for long.
constexpr int AcceptBatch = 64;

}  // namespace

/// Accepts on loop 0 and hands each connection to the next loop in turn; beyond
/// --max-connections a connection is closed at once, logged and counted.
class HttpServer::Acceptor final : private EventLoop::Watcher {
public:
    Acceptor(HttpServer& server, EventLoop& loop)
        : server_(server), registration_(loop, server.socket_, *this) {
        registration_.watch(true, false);
        // The classic EMFILE defence: a spare descriptor, given up to accept and close a
        // connection when the process has no other, so the listening socket does not stay
        // readable forever.
        spare_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
    }
    ~Acceptor() {
        if (spare_ >= 0) {
            ::close(spare_);
        }
    }
    Acceptor(const Acceptor&) = delete;
    Acceptor& operator=(const Acceptor&) = delete;

private:
    void onReadable() noexcept override {
        const int listening = static_cast<int>(server_.socket_.impl()->sockfd());
        for (int i = 0; i < AcceptBatch; ++i) {
            sockaddr_storage address{};
            socklen_t length = sizeof address;
            const int fd = ::accept4(listening, reinterpret_cast<sockaddr*>(&address), &length,
                                     SOCK_NONBLOCK | SOCK_CLOEXEC);
            if (fd < 0) {
                if (errno == EINTR || errno == ECONNABORTED) {
                    continue;
                }
                if ((errno == EMFILE || errno == ENFILE) && spare_ >= 0) {
                    ::close(spare_);
                    const int dropped = ::accept4(listening, nullptr, nullptr, SOCK_CLOEXEC);
                    if (dropped >= 0) {
                        ::close(dropped);
                        refuse("the process has no file descriptor left (raise the limit, see "
                               "docs/operations.md)");
                    }
                    spare_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
                    continue;
                }
                return;  // EAGAIN: none left; anything else: retried on the next readiness
            }
            if (server_.open_.load() >= server_.settings_.maxConnections) {
                ::close(fd);
                refuse("--max-connections (" + std::to_string(server_.settings_.maxConnections) +
                       ") are open");
                continue;
            }
            ++server_.open_;
            const int on = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
            std::string peer = "unknown";
            std::string host = "unknown";
            try {
                const Poco::Net::SocketAddress from(reinterpret_cast<const sockaddr*>(&address),
                                                    length);
                peer = from.toString();
                host = from.host().toString();
            } catch (...) {
                // An address family POCO does not know: logged as unknown.
            }
            auto& managers = server_.managers_;
            managers[next_++ % managers.size()]->adopt(fd, std::move(peer), std::move(host));
        }
    }
    void onWritable() noexcept override {}

    /// Counts every refused connection; logs the first one, then at most one line a second with
    /// the number refused meanwhile (a flood must not flood the log too).
    void refuse(const std::string& why) noexcept {
        try {
            server_.metrics_.countConnectionRefused();
            ++unlogged_;
            const auto now = EventLoop::Clock::now();
            if (now - lastLog_ < std::chrono::seconds(1)) {
                return;
            }
            server_.log_.warn("connection refused: " + why,
                              {{"refused", static_cast<std::int64_t>(unlogged_)}});
            lastLog_ = now;
            unlogged_ = 0;
        } catch (...) {
            // Counting and logging are best effort; the connection is closed either way.
        }
    }

    HttpServer& server_;
    EventLoop::Registration registration_;
    int spare_ = -1;
    std::size_t next_ = 0;
    std::size_t unlogged_ = 0;
    EventLoop::Clock::time_point lastLog_{};
};

int availableCpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof set, &set) != 0) {
        return 1;
    }
    const int count = CPU_COUNT(&set);
    return count > 0 ? count : 1;
}

HttpServer::HttpServer(const Router& router, Metrics& metrics, Log& log,
                       Poco::Net::Context::Ptr tls, Poco::Net::ServerSocket socket,
                       Settings settings)
    : tls_(std::move(tls)),
      socket_(std::move(socket)),
      settings_(settings),
      log_(log),
      metrics_(metrics),
      workers_(std::make_unique<WorkerPool>("twostep-worker", settings.workers)) {
    socket_.setBlocking(false);
    context_ = std::make_unique<ServerContext>(ServerContext{
        router, metrics, log, tls_->sslContext(), settings.connection, *workers_,
        bufferedBodies_, [this] { connectionClosed(); }});
    const int loops = settings.eventLoops < 1 ? 1 : settings.eventLoops;
    for (int i = 0; i < loops; ++i) {
        managers_.push_back(
            std::make_unique<ConnectionManager>(*context_, "twostep-loop-" + std::to_string(i)));
    }
}

HttpServer::~HttpServer() {
    if (acceptor_) {
        std::promise<void> removed;
        managers_.front()->loop().post([this, &removed] {
            acceptor_.reset();
            removed.set_value();
        });
        removed.get_future().wait();
    }
    // Loops first: then no connection hands new work to the pool; the pool's last answers are
    // posted to loops that no longer run, and are dropped with them.
    for (auto& manager : managers_) {
        manager->loop().stop();
    }
    workers_.reset();
    managers_.clear();
}

void HttpServer::start() {
    std::promise<void> started;
    managers_.front()->loop().post([this, &started] {
        acceptor_ = std::make_unique<Acceptor>(*this, managers_.front()->loop());
        started.set_value();
    });
    started.get_future().wait();
}

void HttpServer::stop() {
    std::promise<void> stopped;
    managers_.front()->loop().post([this, &stopped] {
        acceptor_.reset();  // unregisters before the socket closes
        try {
            socket_.close();
        } catch (...) {
            // Nothing listens either way.
        }
        stopped.set_value();
    });
    stopped.get_future().wait();
    for (auto& manager : managers_) {
        manager->drain();
    }
    std::unique_lock lock(closedMutex_);
    allClosed_.wait(lock, [this] { return open_.load() == 0; });
}

void HttpServer::connectionClosed() {
    const std::lock_guard lock(closedMutex_);
    if (--open_ == 0) {
        allClosed_.notify_all();
    }
}

}  // namespace twostep::http
