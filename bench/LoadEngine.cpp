#include "LoadEngine.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>

namespace twostep::bench {

namespace {

using SteadyClock = std::chrono::steady_clock;
using TimePoint = SteadyClock::time_point;

/// Answers larger than this are a protocol error (the webhook's are under 2 KiB).
constexpr std::size_t MaxAnswer = 1024 * 1024;
constexpr std::size_t MaxShownBody = 400;

struct SslCtxDeleter {
    void operator()(SSL_CTX* ctx) const noexcept { SSL_CTX_free(ctx); }
};

double cpuSecondsNow() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    const auto seconds = [](const timeval& t) {
        return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
    };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

std::string lowercase(std::string_view text) {
    std::string out(text);
    for (char& c : out) {
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return out;
}

/// A parsed HTTP/1.1 answer at the front of a buffer.
struct HttpAnswer {
    int status = 0;
    std::size_t size = 0;  ///< header and body bytes
    std::size_t bodyStart = 0;
    std::size_t bodyLength = 0;
    bool close = false;
};

/// nullopt while the answer is incomplete; status -1 when it is not HTTP.
std::optional<HttpAnswer> parseAnswer(const std::string& in) {
    const std::size_t end = in.find("\r\n\r\n");
    if (end == std::string::npos) {
        if (in.size() > MaxAnswer) {
            return HttpAnswer{-1, 0, 0, 0, true};
        }
        return std::nullopt;
    }
    HttpAnswer answer;
    if (in.size() < 12 || in.compare(0, 5, "HTTP/") != 0) {
        return HttpAnswer{-1, 0, 0, 0, true};
    }
    answer.status = std::atoi(in.c_str() + 9);
    const std::string head = lowercase(std::string_view(in).substr(0, end + 2));
    const std::size_t length = head.find("\r\ncontent-length:");
    if (length == std::string::npos) {
        return HttpAnswer{-1, 0, 0, 0, true};
    }
    answer.bodyLength = std::strtoull(head.c_str() + length + 17, nullptr, 10);
    answer.close = head.find("\r\nconnection: close") != std::string::npos;
    answer.bodyStart = end + 4;
    answer.size = answer.bodyStart + answer.bodyLength;
    if (answer.bodyLength > MaxAnswer) {
        return HttpAnswer{-1, 0, 0, 0, true};
    }
    if (in.size() < answer.size) {
        return std::nullopt;
    }
    return answer;
}

enum class State { Idle, Connecting, Handshaking, Writing, Reading, Waiting, Done };

struct Connection {
    int fd = -1;
    SSL* ssl = nullptr;
    State state = State::Idle;
    std::uint32_t events = 0;  ///< what epoll watches for
    std::optional<Request> request;
    std::size_t written = 0;
    std::string in;
    TimePoint sent;
    TimePoint retryAt;
    std::uint64_t answered = 0;
};

class Engine {
public:
    Engine(const EngineOptions& options, Scenario& scenario)
        : options_(options), scenario_(scenario), connections_(
                                                      static_cast<std::size_t>(
                                                          std::max(1, options.connections))) {
        ctx_.reset(SSL_CTX_new(TLS_client_method()));
        if (!ctx_) {
            throw std::runtime_error("cannot create a TLS client context");
        }
        SSL_CTX_set_min_proto_version(ctx_.get(), TLS1_2_VERSION);
        SSL_CTX_set_mode(ctx_.get(), SSL_MODE_ENABLE_PARTIAL_WRITE |
                                         SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
        if (!options_.caFile.empty()) {
            if (SSL_CTX_load_verify_locations(ctx_.get(), options_.caFile.c_str(), nullptr) != 1) {
                throw std::runtime_error("cannot read the CA file '" + options_.caFile + "'");
            }
            SSL_CTX_set_verify(ctx_.get(), SSL_VERIFY_PEER, nullptr);
        }
        epoll_ = epoll_create1(EPOLL_CLOEXEC);
        if (epoll_ < 0) {
            throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
        }
        if (options_.acceptedLog.size() > 0) {
            accepted_ = std::fopen(options_.acceptedLog.c_str(), "a");
            if (accepted_ == nullptr) {
                throw std::runtime_error("cannot open '" + options_.acceptedLog + "'");
            }
        }
        address_.sin_family = AF_INET;
        address_.sin_port = htons(options_.port);
        if (inet_pton(AF_INET, options_.host.c_str(), &address_.sin_addr) != 1) {
            throw std::runtime_error("--host must be an IPv4 address: " + options_.host);
        }
    }

    ~Engine() {
        for (Connection& c : connections_) {
            closeConnection(c);
        }
        if (accepted_ != nullptr) {
            std::fclose(accepted_);
        }
        ::close(epoll_);
    }
    Engine(const Engine&) = delete;
    Engine& operator=(const Engine&) = delete;

    Results run() {
        start_ = SteadyClock::now();
        measureStart_ = start_ + options_.warmup;
        end_ = measureStart_ + options_.duration;
        for (Connection& c : connections_) {
            open(c);
        }
        std::array<epoll_event, 256> ready{};
        bool measuring = false;
        double cpuStart = 0;
        TimePoint lastAnswer = start_;
        for (;;) {
            const int n = epoll_wait(epoll_, ready.data(), static_cast<int>(ready.size()), 1);
            const TimePoint now = SteadyClock::now();
            if (!measuring && now >= measureStart_) {
                measuring = true;
                cpuStart = cpuSecondsNow();
                if (options_.onMeasureStart) {
                    options_.onMeasureStart();
                }
            }
            if (now >= end_) {
                break;
            }
            for (int i = 0; i < n; ++i) {
                drive(connections_[ready[static_cast<std::size_t>(i)].data.u64]);
            }
            bool busy = false;
            for (Connection& c : connections_) {
                if (c.state == State::Waiting && now >= c.retryAt) {
                    open(c);
                }
                // Waiting for the answer, or for the server to take the connection at all
                // (accepted connections queue for a worker before their handshake).
                const bool waiting = c.state == State::Reading ||
                                     c.state == State::Connecting ||
                                     c.state == State::Handshaking;
                if (waiting && options_.responseTimeout.count() > 0 &&
                    now - c.sent > options_.responseTimeout) {
                    ++results_.timeouts;
                    restart(c, now);
                }
                busy = busy || (c.state != State::Done && c.state != State::Idle);
            }
            if (lastCompleted_ > lastAnswer) {
                lastAnswer = lastCompleted_;
            }
            if (!busy) {
                results_.exhausted = true;
                break;  // every connection ran out of requests
            }
        }
        const TimePoint stop = results_.exhausted ? lastAnswer : end_;
        if (!measuring) {
            cpuStart = cpuSecondsNow();
            if (options_.onMeasureStart) {
                options_.onMeasureStart();
            }
        }
        results_.cpuSeconds = cpuSecondsNow() - cpuStart;
        if (options_.onMeasureEnd) {
            options_.onMeasureEnd();
        }
        results_.seconds =
            std::max(0.0, std::chrono::duration<double>(stop - measureStart_).count());
        for (const Connection& c : connections_) {
            results_.inFlightAtEnd += c.state == State::Reading || c.state == State::Writing;
            results_.connectionsNeverAnswered += c.answered == 0;
        }
        std::sort(results_.latencyNs.begin(), results_.latencyNs.end());
        return std::move(results_);
    }

private:
    std::uint64_t indexOf(const Connection& c) const {
        return static_cast<std::uint64_t>(&c - connections_.data());
    }

    void watch(Connection& c, std::uint32_t events) {
        if (c.events == events) {
            return;
        }
        epoll_event event{};
        event.events = events;
        event.data.u64 = indexOf(c);
        epoll_ctl(epoll_, c.events == 0 ? EPOLL_CTL_ADD : EPOLL_CTL_MOD, c.fd, &event);
        c.events = events;
    }

    void closeConnection(Connection& c) {
        if (c.ssl != nullptr) {
            SSL_free(c.ssl);
            c.ssl = nullptr;
        }
        if (c.fd >= 0) {
            ::close(c.fd);  // also removes it from the epoll set
            c.fd = -1;
        }
        c.events = 0;
        c.in.clear();
    }

    /// Closes and opens again after the reconnect delay; the pending request is sent again.
    void restart(Connection& c, TimePoint now) {
        closeConnection(c);
        c.state = State::Waiting;
        c.retryAt = now + options_.reconnectDelay;
    }

    void open(Connection& c) {
        if (c.state == State::Waiting) {
            ++results_.reconnects;
        }
        c.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
            ++results_.connectErrors;
            restart(c, SteadyClock::now());
            return;
        }
        const int one = 1;
        setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        const int rc =
            ::connect(c.fd, reinterpret_cast<const sockaddr*>(&address_), sizeof address_);
        if (rc != 0 && errno != EINPROGRESS) {
            ++results_.connectErrors;
            restart(c, SteadyClock::now());
            return;
        }
        c.state = State::Connecting;
        c.sent = SteadyClock::now();
        watch(c, EPOLLOUT);
    }

    /// Runs the connection's state machine until it would block.
    void drive(Connection& c) {
        for (;;) {
            switch (c.state) {
            case State::Connecting: {
                int error = 0;
                socklen_t size = sizeof error;
                getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &error, &size);
                if (error != 0) {
                    ++results_.connectErrors;
                    restart(c, SteadyClock::now());
                    return;
                }
                c.ssl = SSL_new(ctx_.get());
                SSL_set_fd(c.ssl, c.fd);
                SSL_set_connect_state(c.ssl);
                c.state = State::Handshaking;
                break;
            }
            case State::Handshaking: {
                const int rc = SSL_do_handshake(c.ssl);
                if (rc == 1) {
                    if (!c.request) {
                        c.request = scenario_.next();
                    }
                    if (!c.request) {
                        c.state = State::Done;
                        closeConnection(c);
                        return;
                    }
                    c.written = 0;
                    c.sent = SteadyClock::now();
                    c.state = State::Writing;
                    break;
                }
                if (!wouldBlock(c, rc)) {
                    ++results_.connectErrors;
                    ERR_clear_error();
                    restart(c, SteadyClock::now());
                    return;
                }
                return;
            }
            case State::Writing: {
                const std::string& bytes = c.request->bytes;
                const int rc = SSL_write(c.ssl, bytes.data() + c.written,
                                         static_cast<int>(bytes.size() - c.written));
                if (rc > 0) {
                    c.written += static_cast<std::size_t>(rc);
                    if (c.written == bytes.size()) {
                        // The answer cannot be there yet: wait for epoll rather than spend a
                        // read() that finds nothing, so the generator stays cheaper than the
                        // server it measures.
                        c.state = State::Reading;
                        watch(c, EPOLLIN);
                        return;
                    }
                    break;
                }
                if (!wouldBlock(c, rc)) {
                    lost(c);
                }
                return;
            }
            case State::Reading: {
                std::array<char, 16 * 1024> buffer;
                const int rc = SSL_read(c.ssl, buffer.data(), static_cast<int>(buffer.size()));
                if (rc > 0) {
                    c.in.append(buffer.data(), static_cast<std::size_t>(rc));
                    if (!answer(c)) {
                        return;
                    }
                    break;
                }
                if (!wouldBlock(c, rc)) {
                    lost(c);
                }
                return;
            }
            case State::Idle:
            case State::Waiting:
            case State::Done: return;
            }
        }
    }

    /// True for WANT_READ/WANT_WRITE (and sets what to wait for); false for a real failure.
    bool wouldBlock(Connection& c, int rc) {
        switch (SSL_get_error(c.ssl, rc)) {
        case SSL_ERROR_WANT_READ: watch(c, EPOLLIN); return true;
        case SSL_ERROR_WANT_WRITE: watch(c, EPOLLOUT); return true;
        default: return false;
        }
    }

    /// The server closed the connection (or it broke) while a request was pending.
    void lost(Connection& c) {
        ERR_clear_error();
        ++results_.closedEarly;
        restart(c, SteadyClock::now());
    }

    /// Consumes a complete answer from c.in; false when the connection was closed or finished.
    bool answer(Connection& c) {
        const std::optional<HttpAnswer> parsed = parseAnswer(c.in);
        if (!parsed) {
            return true;  // keep reading
        }
        const TimePoint now = SteadyClock::now();
        if (parsed->status < 0) {
            ++results_.unexpected;
            lost(c);
            return false;
        }
        ++c.answered;
        ++results_.totalAnswers;
        const std::string_view body =
            std::string_view(c.in).substr(parsed->bodyStart, parsed->bodyLength);
        judge(c, parsed->status, body, now);
        c.in.erase(0, parsed->size);
        c.request = scenario_.next();
        if (parsed->close) {
            if (!c.request) {
                c.state = State::Done;
                closeConnection(c);
                return false;
            }
            restart(c, now);
            c.retryAt = now;  // an orderly close: open the next connection at once
            return false;
        }
        if (!c.request) {
            c.state = State::Done;
            closeConnection(c);
            return false;
        }
        c.written = 0;
        c.sent = now;
        c.state = State::Writing;  // written at once; EPOLLOUT only if the socket is full
        return true;
    }

    void judge(const Connection& c, int status, std::string_view body, TimePoint now) {
        const Request& request = *c.request;
        const bool counted = now >= measureStart_ && now < end_;
        const bool plain = request.expectedBody.has_value();
        const Answer answer = status != 200 || plain ? Answer{}
                              : options_.peer        ? readPeerAnswer(body)
                                                     : readAnswer(body);
        const std::string key = status != 200 || plain ? "http/" + std::to_string(status)
                                : answer.parsed
                                    ? (answer.allowed ? "allow/" : "deny/") + answer.reason
                                    : "unparsed";
        bool expected = plain && status == 200 && body == *request.expectedBody;
        for (const Expected& e : request.expected) {
            // The peer names no reason for an allow.
            expected = expected ||
                       (answer.parsed && e.allowed == answer.allowed &&
                        (e.reason == answer.reason || (options_.peer && answer.allowed)));
        }
        if (expected && answer.allowed && request.expectPatch && !answer.hasPatch) {
            expected = false;
        }
        if (!expected) {
            ++results_.unexpected;
            bool allowExpected = false;
            for (const Expected& e : request.expected) {
                allowExpected = allowExpected ||
                                (e.allowed && (e.reason == answer.reason || options_.peer));
            }
            if (answer.parsed && answer.allowed && !allowExpected) {
                ++results_.unexpectedAllows;
            }
            if (results_.firstUnexpected.empty()) {
                results_.firstUnexpected =
                    "HTTP " + std::to_string(status) + ": " +
                    std::string(body.substr(0, std::min(body.size(), MaxShownBody)));
            }
        }
        if (accepted_ != nullptr && answer.parsed && answer.allowed &&
            answer.reason == "verified") {
            std::fprintf(accepted_, "%s,%s\n", request.user.c_str(), request.code.c_str());
            std::fflush(accepted_);
        }
        if (counted) {
            ++results_.completed;
            ++results_.reasons[key];
            ++results_.statuses[status];
            results_.latencyNs.push_back(static_cast<std::uint64_t>(
                std::chrono::duration_cast<std::chrono::nanoseconds>(now - c.sent)
                    .count()));
            lastCompleted_ = now;
        }
    }

    const EngineOptions& options_;
    Scenario& scenario_;
    std::vector<Connection> connections_;
    std::unique_ptr<SSL_CTX, SslCtxDeleter> ctx_;
    int epoll_ = -1;
    std::FILE* accepted_ = nullptr;
    sockaddr_in address_{};
    TimePoint start_, measureStart_, end_, lastCompleted_;
    Results results_;
};

}  // namespace

std::uint64_t quantile(const std::vector<std::uint64_t>& sorted, double q) {
    if (sorted.empty()) {
        return 0;
    }
    // Nearest rank: the smallest value with at least q of the samples at or below it.
    const auto rank = static_cast<std::size_t>(std::ceil(q * static_cast<double>(sorted.size())));
    return sorted[std::min(sorted.size() - 1, rank == 0 ? 0 : rank - 1)];
}

Results runLoad(const EngineOptions& options, Scenario& scenario) {
    Engine engine(options, scenario);
    return engine.run();
}

}  // namespace twostep::bench
