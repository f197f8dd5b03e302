/// The HTTPS server: POCO's HTTPServer, except that every connection is registered with a
/// ConnectionWatchdog while it runs, so whole request headers get a deadline (POCO only bounds
/// each read).
#pragma once

#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/TCPServer.h>
#include <Poco/SharedPtr.h>

namespace Poco {
class ThreadPool;
namespace Net {
class ServerSocket;
}
}  // namespace Poco

namespace twostep::http {

class ConnectionWatchdog;
class HandlerFactory;

/// A TCPServer whose connections are POCO HTTPServerConnections registered with a watchdog
/// (what Poco::Net::HTTPServer is, with our connection factory instead of its own).
class HttpServer final : public Poco::Net::TCPServer {
public:
    /// `watchdog` must outlive every connection, i.e. the threads of `pool`.
    HttpServer(Poco::SharedPtr<HandlerFactory> handlers, ConnectionWatchdog& watchdog,
               Poco::ThreadPool& pool, const Poco::Net::ServerSocket& socket,
               Poco::Net::HTTPServerParams::Ptr params);

    /// HTTPServer::stopAll(): closes the listening socket, then lets each connection finish the
    /// request it serves (abortCurrent false) or aborts it (true), and ends idle ones.
    void stopAll(bool abortCurrent);

private:
    Poco::SharedPtr<HandlerFactory> handlers_;
};

}  // namespace twostep::http
