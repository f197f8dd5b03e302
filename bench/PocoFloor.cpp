// twostep-poco-floor: the floor the event-driven front end replaced (docs/benchmarks.md), built
// in the same run: POCO 1.11's HTTPServer over a SecureServerSocket with twostep's own TLS
// context, a thread per connection (as the webhook had before issue 11), answering
// GET /healthz and /readyz with "ok\n" and nothing else. No review, no log line.
//   twostep-poco-floor --listen=127.0.0.1:0 --tls-cert=FILE --tls-key=FILE [--threads=32]
#include <Poco/Net/HTTPRequestHandler.h>
#include <Poco/Net/HTTPRequestHandlerFactory.h>
#include <Poco/Net/HTTPServer.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/HTTPServerRequest.h>
#include <Poco/Net/HTTPServerResponse.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>

#include <chrono>
#include <csignal>
#include <iostream>
#include <map>
#include <string>

#include "http/ServerConfig.hpp"
#include "http/TlsContext.hpp"

namespace {

class Ok final : public Poco::Net::HTTPRequestHandler {
public:
    explicit Ok(bool found) : found_(found) {}
    void handleRequest(Poco::Net::HTTPServerRequest& /*request*/,
                       Poco::Net::HTTPServerResponse& response) override {
        response.setContentType("text/plain; charset=utf-8");
        if (!found_) {
            response.setStatusAndReason(Poco::Net::HTTPResponse::HTTP_NOT_FOUND);
        }
        // One write for head and body, as the old webhook's 200 answers.
        response.sendBuffer(found_ ? "ok\n" : "no\n", 3);
    }

private:
    bool found_;
};

class Factory final : public Poco::Net::HTTPRequestHandlerFactory {
public:
    Poco::Net::HTTPRequestHandler* createRequestHandler(
        const Poco::Net::HTTPServerRequest& request) override {
        const std::string& uri = request.getURI();
        return new Ok(uri == "/healthz" || uri == "/readyz");
    }
};

}  // namespace

int main(int argc, char** argv) {
    std::map<std::string, std::string> flags{{"listen", "127.0.0.1:0"}, {"threads", "32"}};
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const std::size_t equals = arg.find('=');
        if (!arg.starts_with("--") || equals == std::string::npos) {
            std::cerr << "usage: twostep-poco-floor --listen=ADDR --tls-cert=FILE --tls-key=FILE "
                         "[--threads=N]"
                      << std::endl;
            return 64;
        }
        flags[arg.substr(2, equals - 2)] = arg.substr(equals + 1);
    }
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);

    Poco::Net::initializeSSL();
    {
        twostep::http::TlsContext tls(
            // Reloads are not what is measured: the files are checked once an hour.
            twostep::http::TlsSettings{flags["tls-cert"], flags["tls-key"], "",
                                       std::chrono::hours(1)},
            [](twostep::http::ReloadResult, const std::string&,
               const twostep::http::CertifiedKey*) {});
        const twostep::http::ListenAddress listen =
            twostep::http::parseListen("--listen", flags["listen"]);
        Poco::Net::SecureServerSocket socket(tls.context());
        socket.bind(Poco::Net::SocketAddress(listen.host, listen.port), true, false);
        socket.listen(1024);
        const int threads = std::stoi(flags["threads"]);
        Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
        params->setKeepAlive(true);
        params->setMaxKeepAliveRequests(0);
        params->setMaxThreads(threads);
        params->setMaxQueued(64);
        Poco::ThreadPool pool("floor", 2, threads);
        Poco::Net::HTTPServer server(new Factory, pool, socket, params);
        server.start();
        std::cout << "listening on " << socket.address().toString() << std::endl;
        int received = 0;
        sigwait(&signals, &received);
        server.stopAll(true);
        pool.joinAll();
    }
    Poco::Net::uninitializeSSL();
    return 0;
}
