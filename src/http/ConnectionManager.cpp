#include "http/ConnectionManager.hpp"

#include <Poco/Net/StreamSocketImpl.h>
#include <unistd.h>

#include <utility>

#include "http/Connection.hpp"
#include "http/Log.hpp"
#include "http/Metrics.hpp"
#include "http/WorkerPool.hpp"

namespace twostep::http {

namespace {

/// How often deadlines are checked: a timeout fires at most this late.
constexpr std::chrono::milliseconds Tick{100};

}  // namespace

ConnectionManager::ConnectionManager(ServerContext& context, std::string name)
    : context_(context), loop_(std::move(name), Tick, [this](Clock::time_point now) { tick(now); }) {
    loop_.start();
}

ConnectionManager::~ConnectionManager() {
    loop_.stop();
    // The loop's thread is gone; connections still open (only when a stop ran out of time) are
    // dropped from here.
    active_.clear();
    idle_.clear();
}

void ConnectionManager::adopt(int fd, std::string peer, std::string peerHost) {
    loop_.post([this, fd, peer = std::move(peer), peerHost = std::move(peerHost)]() mutable {
        // The socket owns the fd from here, whatever happens next.
        Poco::Net::StreamSocket socket(new Poco::Net::StreamSocketImpl(fd));
        if (draining_) {
            context_.connectionClosed();
            return;  // accepted just before the stop: closed unanswered, like a full backlog
        }
        try {
            auto connection = std::make_unique<Connection>(*this, nextId_++, std::move(socket),
                                                           std::move(peer), std::move(peerHost));
            Connection& started = *connection;
            active_.push_back(std::move(connection));
            started.where = std::prev(active_.end());
            context_.metrics.connectionOpened();
            started.start();
        } catch (const std::exception& e) {
            context_.log.error("cannot set up a connection", {{"error", e.what()}});
            context_.connectionClosed();
        }
    });
}

void ConnectionManager::drain() {
    loop_.post([this] {
        draining_ = true;
        // Each drain() may close (and unlink) its connection: walk copies of the lists.
        std::vector<Connection*> all;
        for (auto* list : {&idle_, &active_}) {
            for (auto& connection : *list) {
                all.push_back(connection.get());
            }
        }
        for (Connection* connection : all) {
            connection->drain();
        }
    });
}

void ConnectionManager::becameIdle(Connection& connection) {
    idle_.splice(idle_.end(), active_, connection.where);  // newest idle last
    context_.metrics.connectionsIdle(+1);
}

void ConnectionManager::becameActive(Connection& connection) {
    active_.splice(active_.end(), idle_, connection.where);
    context_.metrics.connectionsIdle(-1);
}

void ConnectionManager::closed(Connection& connection) {
    waiting_.erase(connection.id());
    std::unique_ptr<Connection> owned = std::move(*connection.where);
    active_.erase(connection.where);
    loop_.deferDelete(std::move(owned));
    context_.metrics.connectionClosed();
    context_.connectionClosed();
}

void ConnectionManager::submit(Connection& connection, BlockingWork work) {
    const std::uint64_t id = connection.id();
    waiting_.emplace(id, &connection);
    context_.workers.submit([this, id, work = std::move(work)] {
        Response response = work();
        loop_.post([this, id, response = std::move(response)]() mutable {
            const auto found = waiting_.find(id);
            if (found == waiting_.end()) {
                return;  // closed meanwhile
            }
            Connection* waiting = found->second;
            waiting_.erase(found);
            waiting->complete(std::move(response));
        });
    });
}

void ConnectionManager::tick(Clock::time_point now) {
    const auto idleTimeout = context_.settings.idleTimeout;
    while (!idle_.empty() && now - idle_.front()->idleSince() >= idleTimeout) {
        idle_.front()->expireIdle();  // unlinks it
    }
    // checkDeadlines() may close its connection, which unlinks it: step past it first.
    for (auto it = active_.begin(); it != active_.end();) {
        Connection& connection = **it;
        ++it;
        connection.checkDeadlines(now);
    }
}

}  // namespace twostep::http
