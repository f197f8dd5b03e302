/// Many HTTPS client connections held open at once by one thread, as the API servers of a busy
/// cluster hold them: non-blocking sockets, OpenSSL and epoll, every connection really open
/// (handshake done, keep-alive), each able to send a request and time its answer.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace twostep::test {

/// Raises this process's soft limit on open files to at least `wanted` (the hard limit too when
/// allowed, as root). @throw std::runtime_error when it cannot.
inline void ensureFileLimit(rlim_t wanted) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        throw std::runtime_error("getrlimit failed");
    }
    if (limit.rlim_cur >= wanted) {
        return;
    }
    limit.rlim_cur = wanted;
    limit.rlim_max = std::max(limit.rlim_max, wanted);
    if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
        throw std::runtime_error("cannot raise the open file limit to " + std::to_string(wanted) +
                                 " (ulimit -n, or run as root): " + std::strerror(errno));
    }
}

class TlsClients {
public:
    using Clock = std::chrono::steady_clock;

    /// One connection's last exchange.
    struct Answer {
        int status = 0;             ///< 0: no complete answer
        std::string body;
        Clock::duration took{};     ///< from the request's first byte to the answer's last
        bool closed = false;        ///< the server closed the connection
    };

    /// Clients of 127.0.0.1:`port` that trust `caFile`.
    TlsClients(const std::string& caFile, std::uint16_t port)
        : context_(SSL_CTX_new(TLS_client_method())), port_(port), epoll_(::epoll_create1(0)) {
        if (!context_ || epoll_ < 0 ||
            SSL_CTX_load_verify_locations(context_.get(), caFile.c_str(), nullptr) != 1) {
            throw std::runtime_error("cannot set up the TLS clients");
        }
        SSL_CTX_set_verify(context_.get(), SSL_VERIFY_PEER, nullptr);
    }
    ~TlsClients() {
        connections_.clear();
        ::close(epoll_);
    }
    TlsClients(const TlsClients&) = delete;
    TlsClients& operator=(const TlsClients&) = delete;

    std::size_t size() const { return connections_.size(); }

    /// Opens `count` more connections and finishes their handshakes, at most `parallel` in
    /// progress at once; returns how many are up when all are or `timeout` passed.
    std::size_t open(std::size_t count, Clock::duration timeout, std::size_t parallel = 128) {
        const auto deadline = Clock::now() + timeout;
        const std::size_t first = connections_.size();
        std::size_t started = 0;
        while (Clock::now() < deadline) {
            std::size_t pending = 0;
            for (std::size_t i = first; i < connections_.size(); ++i) {
                pending += connections_[i]->state == State::Handshake ? 1U : 0U;
            }
            while (started < count && pending < parallel) {
                connections_.push_back(connect());
                ++started;
                ++pending;
            }
            if (pending == 0) {
                break;
            }
            wait(deadline);
        }
        std::size_t up = 0;
        for (std::size_t i = first; i < connections_.size(); ++i) {
            up += connections_[i]->state == State::Ready ? 1U : 0U;
        }
        return up;
    }

    /// Sends `request` on each of `which` (whose connections must be idle), without waiting.
    void send(const std::vector<std::size_t>& which, const std::string& request) {
        for (std::size_t i : which) {
            Connection& c = *connections_.at(i);
            c.answer = Answer{};
            if (c.state != State::Ready) {
                c.answer.closed = true;
                continue;
            }
            c.out = request;
            c.in.clear();
            c.sent = Clock::now();
            c.state = State::Exchange;
            step(c);
        }
    }

    /// Waits until each of `which` has its complete answer (or its connection failed), or
    /// `timeout` passed; returns the answers in the order of `which`.
    std::vector<Answer> await(const std::vector<std::size_t>& which, Clock::duration timeout) {
        const auto deadline = Clock::now() + timeout;
        const auto busy = [&] {
            return std::any_of(which.begin(), which.end(), [&](std::size_t i) {
                return connections_[i]->state == State::Exchange;
            });
        };
        while (busy() && Clock::now() < deadline) {
            wait(deadline);
        }
        std::vector<Answer> answers;
        for (std::size_t i : which) {
            answers.push_back(connections_[i]->answer);
        }
        return answers;
    }

    /// send() then await().
    std::vector<Answer> exchange(const std::vector<std::size_t>& which, const std::string& request,
                                 Clock::duration timeout) {
        send(which, request);
        return await(which, timeout);
    }

    /// Whether the server closed connection `i`: reads what is pending, and waits up to `within`
    /// for the close to arrive (a server closes after its last answer, which may come first).
    bool closedByServer(std::size_t i, Clock::duration within = Clock::duration::zero()) {
        Connection& c = *connections_.at(i);
        const auto deadline = Clock::now() + within;
        for (;;) {
            if (c.state == State::Ready) {
                char byte = 0;
                ERR_clear_error();
                const int got = SSL_read(c.ssl.get(), &byte, 1);
                const int error = got <= 0 ? SSL_get_error(c.ssl.get(), got) : SSL_ERROR_NONE;
                if (got > 0 || (error != SSL_ERROR_WANT_READ && error != SSL_ERROR_WANT_WRITE)) {
                    c.state = State::Failed;
                }
            }
            const auto left = deadline - Clock::now();
            if (c.state != State::Ready || left <= Clock::duration::zero()) {
                return c.state == State::Failed;
            }
            pollfd readable{c.fd, POLLIN, 0};
            ::poll(&readable, 1,
                   static_cast<int>(
                       std::chrono::duration_cast<std::chrono::milliseconds>(left).count()) +
                       1);
        }
    }

private:
    enum class State { Handshake, Ready, Exchange, Failed };

    struct SslDeleter {
        void operator()(SSL* p) const { SSL_free(p); }
        void operator()(SSL_CTX* p) const { SSL_CTX_free(p); }
    };

    struct Connection {
        int fd = -1;
        std::unique_ptr<SSL, SslDeleter> ssl;
        State state = State::Handshake;
        std::string out;
        std::string in;
        Clock::time_point sent;
        Answer answer;
        ~Connection() {
            if (fd >= 0) {
                ::close(fd);
            }
        }
    };

    std::unique_ptr<Connection> connect() {
        auto c = std::make_unique<Connection>();
        c->fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c->fd < 0) {
            throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
        }
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(port_);
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        if (::connect(c->fd, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 &&
            errno != EINPROGRESS) {
            c->state = State::Failed;
            return c;
        }
        c->ssl.reset(SSL_new(context_.get()));
        SSL_set_fd(c->ssl.get(), c->fd);
        SSL_set_connect_state(c->ssl.get());
        SSL_set1_host(c->ssl.get(), "127.0.0.1");
        epoll_event event{};
        event.events = EPOLLIN | EPOLLOUT | EPOLLET;
        event.data.ptr = c.get();
        ::epoll_ctl(epoll_, EPOLL_CTL_ADD, c->fd, &event);
        return c;
    }

    void wait(Clock::time_point deadline) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
            deadline - Clock::now());
        epoll_event events[256];
        const int n = ::epoll_wait(epoll_, events, 256,
                                   static_cast<int>(std::clamp<long>(left.count(), 0, 100)));
        for (int i = 0; i < n; ++i) {
            step(*static_cast<Connection*>(events[i].data.ptr));
        }
    }

    /// Drives a connection as far as it goes without blocking (edge-triggered: to EAGAIN).
    void step(Connection& c) {
        if (c.state == State::Handshake) {
            ERR_clear_error();
            const int result = SSL_do_handshake(c.ssl.get());
            if (result == 1) {
                c.state = State::Ready;
            } else if (const int e = SSL_get_error(c.ssl.get(), result);
                       e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                c.state = State::Failed;
            }
            return;
        }
        if (c.state != State::Exchange) {
            return;
        }
        while (!c.out.empty()) {
            ERR_clear_error();
            const int wrote = SSL_write(c.ssl.get(), c.out.data(), static_cast<int>(c.out.size()));
            if (wrote <= 0) {
                if (SSL_get_error(c.ssl.get(), wrote) != SSL_ERROR_WANT_WRITE) {
                    fail(c);
                }
                return;
            }
            c.out.erase(0, static_cast<std::size_t>(wrote));
        }
        char buffer[16384];
        for (;;) {
            ERR_clear_error();
            const int got = SSL_read(c.ssl.get(), buffer, sizeof buffer);
            if (got <= 0) {
                const int e = SSL_get_error(c.ssl.get(), got);
                if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                    fail(c);
                }
                return;
            }
            c.in.append(buffer, static_cast<std::size_t>(got));
            if (complete(c)) {
                c.state = State::Ready;
                return;
            }
        }
    }

    void fail(Connection& c) {
        c.answer.closed = true;
        complete(c);  // an answer that arrived before the close still counts
        c.state = State::Failed;
    }

    /// Whether `c.in` holds a whole answer (Content-Length framed); fills c.answer if so.
    static bool complete(Connection& c) {
        const std::size_t end = c.in.find("\r\n\r\n");
        if (end == std::string::npos || c.in.size() < 12) {
            return false;
        }
        std::string head = c.in.substr(0, end);
        std::transform(head.begin(), head.end(), head.begin(),
                       [](unsigned char ch) { return static_cast<char>(std::tolower(ch)); });
        const std::size_t at = head.find("\r\ncontent-length:");
        if (at == std::string::npos) {
            return false;
        }
        const std::size_t length = std::stoul(head.substr(at + 17));
        if (c.in.size() < end + 4 + length) {
            return false;
        }
        c.answer.status = std::stoi(c.in.substr(9, 3));
        c.answer.body = c.in.substr(end + 4, length);
        c.answer.took = Clock::now() - c.sent;
        c.in.erase(0, end + 4 + length);
        return true;
    }

    std::unique_ptr<SSL_CTX, SslDeleter> context_;
    std::uint16_t port_;
    int epoll_;
    std::vector<std::unique_ptr<Connection>> connections_;
};

}  // namespace twostep::test
