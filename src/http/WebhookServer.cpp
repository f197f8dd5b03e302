#include "http/WebhookServer.hpp"

#include <Poco/Exception.h>
#include <Poco/Net/HTTPServerParams.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Net/SecureServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <Poco/ThreadPool.h>
#include <Poco/Util/HelpFormatter.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionCallback.h>
#include <Poco/Util/OptionException.h>
#include <Poco/Util/OptionSet.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "core/Clock.hpp"
#include "core/Error.hpp"
#include "core/MasterKey.hpp"
#include "core/Policy.hpp"
#include "core/Store.hpp"
#include "http/ConnectionWatchdog.hpp"
#include "http/HandlerFactory.hpp"
#include "http/HttpServer.hpp"
#include "http/Log.hpp"
#include "http/Metrics.hpp"
#include "http/TlsContext.hpp"

#ifndef TWOSTEP_VERSION
#define TWOSTEP_VERSION "unknown"
#endif

namespace twostep::http {

namespace {

constexpr const char* Program = "twostep-webhook";

/// One line on stderr: how start-up failures and usage errors are reported.
void complain(const std::string& message) {
    std::cerr << Program << ": " << message << std::endl;
}

std::string lowercaseFirst(std::string text) {
    if (!text.empty()) {
        text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
    }
    return text;
}

/// Blocks the termination signals in the calling thread before any other thread exists, so every
/// thread inherits the mask and only waitForTerminationRequest()'s sigwait() receives them (a
/// worker thread taking SIGTERM would otherwise kill the process without a graceful stop).
void blockTerminationSignals() {
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGQUIT);
    sigaddset(&signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &signals, nullptr);
}

Poco::Timespan timespanOf(std::chrono::milliseconds d) {
    return Poco::Timespan(static_cast<Poco::Timespan::TimeDiff>(d.count()) * 1000);
}

/// Ends the process if a graceful stop outlasts `limit`: POCO waits for the request each
/// connection is reading; the watchdog bounds request headers by --header-timeout, and this
/// bounds the whole stop in case that is set longer than the stop may take.
class StopDeadline {
public:
    StopDeadline(std::chrono::milliseconds limit, Log& log)
        : thread_([this, limit, &log] {
              std::unique_lock lock(mutex_);
              if (!finished_.wait_for(lock, limit, [this] { return done_; })) {
                  log.error("stopping took longer than " + std::to_string(limit.count()) +
                            " ms; exiting without waiting for the remaining connections");
                  std::_Exit(Poco::Util::Application::EXIT_SOFTWARE);
              }
          }) {}
    ~StopDeadline() {
        {
            const std::lock_guard lock(mutex_);
            done_ = true;
        }
        finished_.notify_all();
        thread_.join();
    }
    StopDeadline(const StopDeadline&) = delete;
    StopDeadline& operator=(const StopDeadline&) = delete;

private:
    std::mutex mutex_;
    std::condition_variable finished_;
    bool done_ = false;
    std::thread thread_;  // last: starts after the members it uses exist
};

/// Initialises POCO's SSL library for the lifetime of the object.
struct SslLibrary {
    SslLibrary() { Poco::Net::initializeSSL(); }
    ~SslLibrary() { Poco::Net::uninitializeSSL(); }
    SslLibrary(const SslLibrary&) = delete;
    SslLibrary& operator=(const SslLibrary&) = delete;
};

}  // namespace

WebhookServer::WebhookServer() {
    setUnixOptions(true);
}

int WebhookServer::run(int argc, char** argv) {
    blockTerminationSignals();
    try {
        init(argc, argv);
    } catch (const Poco::Util::OptionException& e) {
        complain(lowercaseFirst(e.displayText()) + " (see --help)");
        return EXIT_USAGE;
    } catch (const Poco::Exception& e) {
        complain(lowercaseFirst(e.displayText()));
        return EXIT_CONFIG;
    } catch (const Error& e) {
        complain(e.what());
        return EXIT_CONFIG;
    }
    if (infoRequested_) {
        return EXIT_OK;
    }
    try {
        config_ = ServerConfig::from(config());
    } catch (const Error& e) {
        complain(e.what());
        return EXIT_CONFIG;
    }
    return run();  // initialize(), main(), uninitialize(); main() reports its own failures
}

void WebhookServer::defineOptions(Poco::Util::OptionSet& options) {
    // Application's, not ServerApplication's: no --daemon/--pidfile/--umask for a container.
    Poco::Util::Application::defineOptions(options);
    options.addOption(Poco::Util::Option("help", "h", "print this help and exit")
                          .required(false)
                          .repeatable(false)
                          .callback(Poco::Util::OptionCallback<WebhookServer>(
                              this, &WebhookServer::handleHelp)));
    options.addOption(Poco::Util::Option("version", "", "print the version and exit")
                          .required(false)
                          .repeatable(false)
                          .callback(Poco::Util::OptionCallback<WebhookServer>(
                              this, &WebhookServer::handleVersion)));
    defineServerOptions(options, config());
}

void WebhookServer::handleHelp(const std::string& /*name*/, const std::string& /*value*/) {
    Poco::Util::HelpFormatter help(options());
    help.setCommand(Program);
    help.setUsage("[OPTIONS]");
    help.setHeader(
        "Kubernetes admission webhook that requires a valid, unused TOTP code (annotation "
        "twostep.dev/token) on protected changes. Serves POST /validate, POST /mutate, "
        "GET /healthz, GET /readyz and GET /metrics over HTTPS.");
    help.setFooter(
        "Every option can also be set in the environment as TWOSTEP_<OPTION> (e.g. TWOSTEP_DB, "
        "TWOSTEP_MASTER_KEY_FILE, TWOSTEP_TLS_CERT); repeatable options take a comma-separated "
        "list there, and flags win over the environment. A repeated option's last value wins, "
        "except for the repeatable lists. Durations: 90s, 15m, 1h, 1h30m, 250ms "
        "or plain seconds. Exit codes: 0 stopped cleanly, 64 usage error, 78 configuration "
        "error.");
    help.setUnixStyle(true);
    help.setWidth(100);
    help.format(std::cout);
    infoRequested_ = true;
    stopOptionsProcessing();
}

void WebhookServer::handleVersion(const std::string& /*name*/, const std::string& /*value*/) {
    std::cout << Program << " " << TWOSTEP_VERSION << std::endl;
    infoRequested_ = true;
    stopOptionsProcessing();
}

int WebhookServer::main(const ArgVec& args) {
    if (!args.empty()) {
        complain("unexpected argument '" + args.front() + "' (see --help)");
        return EXIT_USAGE;
    }
    Log log(config_.logFormat, stdout, config_.logLevel);
    SslLibrary ssl;

    // Built in dependency order and destroyed in reverse: the HTTP server stops first, the store
    // closes last.
    std::unique_ptr<core::Store> store;
    try {
        store = core::openStore(config_.db);
    } catch (const Error& e) {
        complain(e.what());
        return EXIT_CONFIG;
    }

    std::optional<core::Sealer> sealer;
    try {
        core::MasterKey key = core::MasterKey::fromFile(config_.masterKeyFile);
        const std::string fingerprint = key.fingerprint();
        const std::optional<std::string> recorded = store->keyFingerprint();
        if (recorded && *recorded != fingerprint) {
            complain("the master key in " + config_.masterKeyFile +
                     " is not the key this database was sealed with");
            return EXIT_CONFIG;
        }
        if (!recorded) {
            store->setKeyFingerprintIfUnset(fingerprint);
        }
        sealer.emplace(std::move(key));
    } catch (const Error& e) {
        complain(e.what());
        return EXIT_CONFIG;
    }

    const core::SystemClock clock;
    const core::Reviewer reviewer(*store, *sealer, clock, config_.policy);
    Metrics metrics(TWOSTEP_VERSION);
    // Before any request: the store reports each group commit's size (twostep_store_batch_size).
    store->setCommitObserver(&metrics);

    std::unique_ptr<TlsContext> tls;
    try {
        tls = std::make_unique<TlsContext>(
            TlsSettings{config_.tlsCert, config_.tlsKey, config_.clientCa,
                        config_.certReloadInterval},
            [&log, &metrics](ReloadResult result, const std::string& detail,
                             const CertifiedKey* loaded) {
                metrics.countCertificateReload(result);
                if (result == ReloadResult::Success && loaded != nullptr) {
                    log.info("certificate reloaded", {{"serial", loaded->serial},
                                                      {"subject", loaded->subject},
                                                      {"not_after", loaded->notAfter}});
                    return;
                }
                log.warn("certificate reload failed, keeping the current one",
                         {{"error", detail}});
            });
    } catch (const Error& e) {
        complain(e.what());
        return EXIT_CONFIG;
    }
    const auto loaded = tls->current();
    log.info("certificate loaded", {{"serial", loaded->serial},
                                    {"subject", loaded->subject},
                                    {"not_after", loaded->notAfter}});

    const ServerServices services{reviewer,
                                  *store,
                                  clock,
                                  metrics,
                                  log,
                                  [&tls] { return tls->hasCertificate(); },
                                  config_.maxBody,
                                  config_.readTimeout,
                                  !config_.clientCa.empty()};

    Poco::Net::SecureServerSocket socket(tls->context());
    const std::string wanted = config_.listen.host + ":" + std::to_string(config_.listen.port);
    try {
        const Poco::Net::SocketAddress address(config_.listen.host, config_.listen.port);
        // reusePort stays off: a second server on the same port must fail, not share it.
        if (address.family() == Poco::Net::SocketAddress::IPv6) {
            socket.bind6(address, true, false, false);  // dual-stack on [::]
        } else {
            socket.bind(address, true, false);
        }
        socket.listen(128);
    } catch (const Poco::Exception& e) {
        complain("cannot listen on " + wanted + ": " + lowercaseFirst(e.displayText()));
        return EXIT_CONFIG;
    }

    // POCO holds one worker thread per open connection (keep-alive included) for as long as it
    // stays open: --threads bounds concurrent connections, --queue the accepted ones waiting for
    // a thread (more are closed), --idle-timeout frees threads held by idle keep-alive clients,
    // and the watchdog those of clients that send their headers too slowly (--header-timeout;
    // POCO's --read-timeout only bounds each read). Declared before the pool: it outlives every
    // connection.
    ConnectionWatchdog watchdog(
        config_.headerTimeout, config_.idleTimeout, [&log, &metrics](const std::string& peer) {
            metrics.countConnectionCut();
            log.warn("connection cut: no complete request headers within the header timeout",
                     {{"client", peer}});
        });
    Poco::Net::HTTPServerParams::Ptr params = new Poco::Net::HTTPServerParams;
    params->setKeepAlive(true);
    params->setMaxKeepAliveRequests(0);  // unlimited, like the API server's own clients expect
    params->setKeepAliveTimeout(timespanOf(config_.idleTimeout));
    params->setTimeout(timespanOf(config_.readTimeout));
    params->setMaxThreads(config_.threads);
    params->setMaxQueued(config_.queue);
    params->setSoftwareVersion("");  // no Server header
    Poco::ThreadPool pool("twostep-http", 2, config_.threads);
    HttpServer server(new HandlerFactory(services), watchdog, pool, socket, params);
    server.start();
    log.info("listening on " + socket.address().toString(),
             {{"address", socket.address().toString()}});

    waitForTerminationRequest();

    log.info("stopping: finishing requests in flight");
    {
        // A request in flight needs at most about two read timeouts (headers, then the body's
        // own deadline) plus its review; past that a client is stalling on purpose.
        const StopDeadline deadline(2 * config_.readTimeout + std::chrono::seconds(2), log);
        // Closes the listening socket, lets each connection finish the request it is serving,
        // then shuts idle keep-alive connections down.
        server.stopAll(false);
        pool.joinAll();
    }
    log.info("stopped");
    return EXIT_OK;
}

}  // namespace twostep::http
