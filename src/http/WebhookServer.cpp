#include "http/WebhookServer.hpp"

#include <Poco/Exception.h>
#include <Poco/Net/NetSSL.h>
#include <Poco/Net/ServerSocket.h>
#include <Poco/Net/SocketAddress.h>
#include <sys/resource.h>
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
#include "http/HttpServer.hpp"
#include "http/Log.hpp"
#include "http/Metrics.hpp"
#include "http/Router.hpp"
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

/// Ends the process if a graceful stop outlasts `limit`: the stop waits for the request each
/// connection is in the middle of, and this bounds it against clients that stall on purpose.
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

/// Raises the soft limit on open files to the hard limit: each connection is a descriptor, and
/// the default soft limit (often 1024) would refuse connections long before --max-connections.
void raiseFileLimit(Log& log, std::size_t maxConnections) {
    rlimit limit{};
    if (::getrlimit(RLIMIT_NOFILE, &limit) != 0) {
        return;
    }
    const rlim_t before = limit.rlim_cur;
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) {
            limit.rlim_cur = before;
        }
    }
    // Descriptors besides the connections: the listening socket, the database, the loops'
    // epoll and wake-up sockets, the certificate files while reloading, the log.
    constexpr rlim_t Reserve = 64;
    const bool enough = limit.rlim_cur == RLIM_INFINITY ||
                        limit.rlim_cur >= static_cast<rlim_t>(maxConnections) + Reserve;
    const std::initializer_list<LogField> fields{
        {"before", static_cast<std::int64_t>(before)},
        {"now", static_cast<std::int64_t>(limit.rlim_cur)},
        {"max_connections", static_cast<std::int64_t>(maxConnections)}};
    if (!enough) {
        log.warn("the open file limit is below --max-connections: connections beyond it are "
                 "refused early (raise the hard limit, see docs/operations.md)",
                 fields);
    } else if (limit.rlim_cur != before) {
        log.info("open file limit raised to the hard limit", fields);
    }
}

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
        "or plain seconds. Exit codes: 0 stopped cleanly, 64 usage error, 70 a graceful stop "
        "that outlasted its bound, 78 configuration error.");
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
                                  !config_.clientCa.empty()};

    raiseFileLimit(log, static_cast<std::size_t>(config_.maxConnections));

    Poco::Net::ServerSocket socket;
    const std::string wanted = config_.listen.host + ":" + std::to_string(config_.listen.port);
    try {
        const Poco::Net::SocketAddress address(config_.listen.host, config_.listen.port);
        // reusePort stays off: a second server on the same port must fail, not share it.
        if (address.family() == Poco::Net::SocketAddress::IPv6) {
            socket.bind6(address, true, false, false);  // dual-stack on [::]
        } else {
            socket.bind(address, true, false);
        }
        socket.listen(1024);
    } catch (const Poco::Exception& e) {
        complain("cannot listen on " + wanted + ": " + lowercaseFirst(e.displayText()));
        return EXIT_CONFIG;
    }

    // Connections live on event loops and never wait for a thread; --threads workers run what
    // may block on the database (docs/architecture.md, "Connections").
    const Router router(services);
    HttpServer::Settings settings;
    settings.connection = ConnectionSettings{config_.headerTimeout, config_.readTimeout,
                                             config_.idleTimeout, config_.maxBody,
                                             32 * config_.maxBody};
    settings.eventLoops = config_.eventLoops > 0 ? config_.eventLoops : availableCpus();
    settings.workers = config_.threads;
    settings.maxConnections = static_cast<std::size_t>(config_.maxConnections);
    const std::string listening = socket.address().toString();
    HttpServer server(router, metrics, log, tls->context(), socket, settings);
    server.start();
    log.info("listening on " + listening,
             {{"address", listening},
              {"event_loops", std::int64_t{settings.eventLoops}},
              {"threads", std::int64_t{settings.workers}},
              {"max_connections", std::int64_t{config_.maxConnections}}});

    waitForTerminationRequest();

    log.info("stopping: finishing requests in flight",
             {{"connections", static_cast<std::int64_t>(server.openConnections())}});
    {
        // A request in flight needs at most about two read timeouts (the rest of its head while
        // the client keeps sending, then its body) plus its review; past that a client is
        // stalling on purpose.
        const StopDeadline deadline(2 * config_.readTimeout + std::chrono::seconds(2), log);
        // Stops accepting, closes idle connections, answers the requests in flight (closing
        // their connections after the answer), and returns once no connection is left.
        server.stop();
    }
    log.info("stopped");
    return EXIT_OK;
}

}  // namespace twostep::http
