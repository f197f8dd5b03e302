#include "http/HttpServer.hpp"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPServerConnection.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/StreamSocket.h>
#include <Poco/Net/TCPServerConnectionFactory.h>
#include <Poco/ThreadPool.h>

#include <string>
#include <utility>

#include "http/ConnectionWatchdog.hpp"
#include "http/HandlerFactory.hpp"

namespace twostep::http {

namespace {

/// POCO's HTTP connection, registered with the watchdog for as long as it runs: the
/// registration ends before POCO closes the socket, so a watched fd is always this one.
class WatchedConnection final : public Poco::Net::HTTPServerConnection {
public:
    WatchedConnection(const Poco::Net::StreamSocket& socket,
                      Poco::Net::HTTPServerParams::Ptr params,
                      Poco::Net::HTTPRequestHandlerFactory::Ptr handlers,
                      ConnectionWatchdog& watchdog)
        : HTTPServerConnection(socket, std::move(params), std::move(handlers)),
          watchdog_(watchdog) {}

    void run() override {
        const ConnectionWatchdog::Registration registration(
            watchdog_, static_cast<int>(socket().impl()->sockfd()), peer());
        HTTPServerConnection::run();
    }

private:
    std::string peer() {
        try {
            return socket().peerAddress().toString();
        } catch (const Poco::Exception&) {
            return "unknown";  // already disconnected
        }
    }

    ConnectionWatchdog& watchdog_;
};

class WatchedConnectionFactory final : public Poco::Net::TCPServerConnectionFactory {
public:
    WatchedConnectionFactory(Poco::Net::HTTPServerParams::Ptr params,
                             Poco::Net::HTTPRequestHandlerFactory::Ptr handlers,
                             ConnectionWatchdog& watchdog)
        : params_(std::move(params)), handlers_(std::move(handlers)), watchdog_(watchdog) {}

    Poco::Net::TCPServerConnection* createConnection(
        const Poco::Net::StreamSocket& socket) override {
        return new WatchedConnection(socket, params_, handlers_, watchdog_);
    }

private:
    Poco::Net::HTTPServerParams::Ptr params_;
    Poco::Net::HTTPRequestHandlerFactory::Ptr handlers_;
    ConnectionWatchdog& watchdog_;
};

}  // namespace

HttpServer::HttpServer(Poco::SharedPtr<HandlerFactory> handlers, ConnectionWatchdog& watchdog,
                       Poco::ThreadPool& pool, const Poco::Net::ServerSocket& socket,
                       Poco::Net::HTTPServerParams::Ptr params)
    : TCPServer(new WatchedConnectionFactory(params, handlers, watchdog), pool, socket, params),
      handlers_(std::move(handlers)) {}

void HttpServer::stopAll(bool abortCurrent) {
    stop();
    handlers_->stopConnections(abortCurrent);
}

}  // namespace twostep::http
