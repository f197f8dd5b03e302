// twostep-loadgen: the benchmark and fault-test load generator (docs/benchmarks.md).
//   users   --count N --out FILE [--prefix P]      CSV of users with fresh secrets, for import
//   run     --port P --scenario S --body FILE ...  closed-loop load, one result line
//   startup --log FILE [--cpu N] -- SERVER ARGS    exec to first 200 on /readyz, server kept
//   store   --db FILE|postgresql://... [--op valid|wrong|replay] [--max-batch N] [--sync ...]
//           the store's writes of one decision, without HTTP
//   idle    --port P --ca FILE --connections N ...  idle keep-alive connections: RSS, latency
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <sched.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fcntl.h>
#include <fstream>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "LoadEngine.hpp"
#include "Scenario.hpp"
#include "StoreBench.hpp"
#include "core/Base32.hpp"
#include "core/Secret.hpp"
#include "integration/TlsClients.hpp"

namespace {

using namespace twostep;
using SteadyClock = std::chrono::steady_clock;

constexpr int ExitOk = 0;
constexpr int ExitError = 1;
constexpr int ExitUnexpected = 2;
constexpr int ExitUnexpectedAllow = 3;

/// --name value pairs after the subcommand; "--" ends them and the rest is kept in `rest`.
struct Args {
    std::map<std::string, std::string> values;
    std::vector<std::string> rest;

    std::string get(const std::string& name, const std::string& fallback = "") const {
        const auto it = values.find(name);
        return it == values.end() ? fallback : it->second;
    }
    std::string need(const std::string& name) const {
        const auto it = values.find(name);
        if (it == values.end()) {
            throw std::runtime_error("missing --" + name);
        }
        return it->second;
    }
    long number(const std::string& name, long fallback) const {
        const auto it = values.find(name);
        if (it == values.end()) {
            return fallback;
        }
        char* end = nullptr;
        const long value = std::strtol(it->second.c_str(), &end, 10);
        if (end == it->second.c_str() || *end != '\0') {
            throw std::runtime_error("--" + name + " must be a number: " + it->second);
        }
        return value;
    }
    double real(const std::string& name, double fallback) const {
        const auto it = values.find(name);
        return it == values.end() ? fallback : std::stod(it->second);
    }
};

Args parseArgs(int argc, char** argv, int first) {
    Args args;
    for (int i = first; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--") {
            args.rest.assign(argv + i + 1, argv + argc);
            break;
        }
        if (!arg.starts_with("--") || i + 1 >= argc) {
            throw std::runtime_error("expected --name value, got '" + arg + "'");
        }
        args.values[arg.substr(2)] = argv[++i];
    }
    return args;
}

std::string readFile(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw std::runtime_error("cannot read '" + path + "'");
    }
    std::ostringstream text;
    text << in.rdbuf();
    return text.str();
}

/// utime + stime of a process in seconds, from /proc/PID/stat; -1 when it is gone.
double processCpuSeconds(long pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!std::getline(in, text)) {
        return -1;
    }
    // Fields after the command name (which may hold spaces) start after the last ')'.
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i) {
        if (i == 14 || i == 15) {
            ticks += std::stod(field);
        }
    }
    return ticks / static_cast<double>(sysconf(_SC_CLK_TCK));
}

/// A "VmHWM:   1234 kB" value of /proc/PID/status in KiB; -1 when unknown.
long processStatusKb(long pid, const std::string& key) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line)) {
        if (line.starts_with(key + ":")) {
            return std::strtol(line.c_str() + key.size() + 1, nullptr, 10);
        }
    }
    return -1;
}

int cmdUsers(const Args& args) {
    const long count = args.number("count", 0);
    if (count <= 0) {
        throw std::runtime_error("--count must be positive");
    }
    const std::string prefix = args.get("prefix", "bench-user-");
    std::ofstream out(args.need("out"));
    out << "username,secret\n";
    char name[64];
    for (long i = 0; i < count; ++i) {
        std::snprintf(name, sizeof name, "%s%06ld", prefix.c_str(), i);
        const core::SecretBytes secret = core::generateSecret();
        out << name << ',' << core::base32::encode(secret.bytes()) << '\n';
    }
    if (!out.flush()) {
        throw std::runtime_error("cannot write '" + args.need("out") + "'");
    }
    return ExitOk;
}

int cmdRun(const Args& args) {
    const auto kind = bench::parseScenario(args.need("scenario"));
    if (!kind) {
        throw std::runtime_error("unknown --scenario " + args.need("scenario") +
                                 " (exempt, wrong, valid, replay, mutate, locked, recheck, healthz)");
    }
    bench::EngineOptions engine;
    engine.host = args.get("host", "127.0.0.1");
    engine.port = static_cast<std::uint16_t>(args.number("port", 0));
    engine.connections = static_cast<int>(args.number("connections", 32));
    engine.warmup = std::chrono::milliseconds(static_cast<long>(args.real("warmup", 1) * 1000));
    engine.duration =
        std::chrono::milliseconds(static_cast<long>(args.real("duration", 10) * 1000));
    engine.caFile = args.get("ca");
    engine.responseTimeout = std::chrono::milliseconds(args.number("response-timeout-ms", 0));
    engine.reconnectDelay = std::chrono::milliseconds(args.number("reconnect-delay-ms", 20));
    engine.acceptedLog = args.get("accepted-log");
    engine.peer = args.get("server", "twostep") == "peer";

    bench::ScenarioOptions options;
    options.kind = *kind;
    options.path = args.get("path");
    options.hostHeader = engine.host + ":" + std::to_string(engine.port);
    options.userOffset = static_cast<std::size_t>(args.number("user-offset", 0));
    if (!args.get("codes").empty()) {
        std::istringstream lines(readFile(args.get("codes")));
        std::string line;
        while (std::getline(lines, line)) {
            const std::size_t comma = line.find(',');
            if (comma != std::string::npos) {
                options.codes.emplace_back(line.substr(0, comma), line.substr(comma + 1));
            }
        }
    }
    std::vector<bench::BenchUser> users;
    if (!args.get("users").empty()) {
        users = bench::readUsers(args.get("users"));
    }
    const long maxUsers = args.number("max-users", 0);
    if (maxUsers > 0 && users.size() > options.userOffset + static_cast<std::size_t>(maxUsers)) {
        users.resize(options.userOffset + static_cast<std::size_t>(maxUsers));
    }
    const core::SystemClock clock;
    bench::Scenario scenario(options, readFile(args.need("body")), std::move(users), clock);

    const long serverPid = args.number("server-pid", 0);
    double serverCpu = 0;
    engine.onMeasureStart = [&] {
        if (serverPid > 0) {
            serverCpu = -processCpuSeconds(serverPid);
        }
    };
    engine.onMeasureEnd = [&] {
        if (serverPid > 0) {
            serverCpu += processCpuSeconds(serverPid);
        }
    };
    const bench::Results r = bench::runLoad(engine, scenario);

    const auto us = [&](double q) { return bench::quantile(r.latencyNs, q) / 1000; };
    const double seconds = r.seconds > 0 ? r.seconds : 1;
    std::ostringstream line;
    line.setf(std::ios::fixed);
    line.precision(2);
    line << "scenario=" << bench::toString(*kind) << " connections=" << engine.connections
         << " seconds=" << r.seconds << " requests=" << r.completed << " rps="
         << static_cast<long>(static_cast<double>(r.completed) / seconds) << " p50_us=" << us(0.5)
         << " p90_us=" << us(0.9) << " p99_us=" << us(0.99) << " p999_us=" << us(0.999)
         << " max_us=" << (r.latencyNs.empty() ? 0 : r.latencyNs.back() / 1000);
    if (serverPid > 0) {
        line << " server_cpu=" << serverCpu / seconds
             << " server_hwm_kb=" << processStatusKb(serverPid, "VmHWM")
             << " server_rss_kb=" << processStatusKb(serverPid, "VmRSS");
    }
    line << " loadgen_cpu=" << r.cpuSeconds / seconds << " answers=" << r.totalAnswers
         << " unexpected=" << r.unexpected << " unexpected_allows=" << r.unexpectedAllows
         << " connect_errors=" << r.connectErrors << " closed_early=" << r.closedEarly
         << " timeouts=" << r.timeouts << " reconnects=" << r.reconnects
         << " in_flight_at_end=" << r.inFlightAtEnd
         << " never_answered=" << r.connectionsNeverAnswered
         << " exhausted=" << (r.exhausted ? 1 : 0) << " reasons=";
    const char* separator = "";
    for (const auto& [reason, count] : r.reasons) {
        line << separator << reason << ':' << count;
        separator = ",";
    }
    std::cout << line.str() << std::endl;
    if (!r.firstUnexpected.empty()) {
        std::cerr << "first unexpected answer: " << r.firstUnexpected << std::endl;
    }
    if (r.unexpectedAllows > 0) {
        return ExitUnexpectedAllow;
    }
    return r.unexpected > 0 ? ExitUnexpected : ExitOk;
}

/// GET `path` over a fresh TLS connection; the HTTP status, or 0 when there was no answer.
int httpsGetStatus(SSL_CTX* ctx, std::uint16_t port, const std::string& path) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int status = 0;
    if (::connect(fd, reinterpret_cast<const sockaddr*>(&address), sizeof address) == 0) {
        SSL* ssl = SSL_new(ctx);
        SSL_set_fd(ssl, fd);
        const std::string request =
            "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
        char buffer[64] = {};
        if (SSL_connect(ssl) == 1 &&
            SSL_write(ssl, request.data(), static_cast<int>(request.size())) > 0 &&
            SSL_read(ssl, buffer, sizeof buffer - 1) >= 12) {
            status = std::atoi(buffer + 9);
        }
        SSL_free(ssl);
    }
    ::close(fd);
    return status;
}

/// The port from the server's "listening on 127.0.0.1:PORT" log line, or 0.
std::uint16_t portFromLog(const std::string& path) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
        const std::size_t at = line.find("listening on ");
        if (at == std::string::npos) {
            continue;
        }
        const std::size_t colon = line.find(':', at);
        if (colon != std::string::npos) {
            return static_cast<std::uint16_t>(std::atoi(line.c_str() + colon + 1));
        }
    }
    return 0;
}

int cmdStartup(const Args& args) {
    if (args.rest.empty()) {
        throw std::runtime_error("startup needs -- SERVER ARGS...");
    }
    const std::string log = args.need("log");
    const long cpu = args.number("cpu", -1);
    const double timeout = args.real("timeout", 10);
    std::unique_ptr<SSL_CTX, decltype(&SSL_CTX_free)> ctx(SSL_CTX_new(TLS_client_method()),
                                                          &SSL_CTX_free);
    if (!args.get("ca").empty()) {
        SSL_CTX_load_verify_locations(ctx.get(), args.get("ca").c_str(), nullptr);
        SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
    }
    std::vector<char*> argv;
    for (const std::string& a : args.rest) {
        argv.push_back(const_cast<char*>(a.c_str()));
    }
    argv.push_back(nullptr);

    // Truncated here, before the fork: reading an older server's "listening on" line from the
    // same file would name the wrong port.
    const int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (out < 0) {
        throw std::runtime_error("cannot write '" + log + "'");
    }
    const auto started = SteadyClock::now();
    const pid_t pid = fork();
    if (pid < 0) {
        throw std::runtime_error("fork failed");
    }
    if (pid == 0) {
        if (cpu >= 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(static_cast<std::size_t>(cpu), &set);
            sched_setaffinity(0, sizeof set, &set);
        }
        dup2(out, STDOUT_FILENO);
        dup2(out, STDERR_FILENO);
        setsid();  // not killed with the shell that ran us
        execv(argv[0], argv.data());
        _exit(127);
    }
    ::close(out);
    std::uint16_t port = 0;
    int polls = 0;
    for (;;) {
        int status = 0;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            std::cerr << "the server exited before it was ready; see " << log << std::endl;
            return ExitError;
        }
        if (port == 0) {
            port = portFromLog(log);
        }
        if (port != 0) {
            ++polls;
            if (httpsGetStatus(ctx.get(), port, "/readyz") == 200) {
                break;
            }
        }
        if (std::chrono::duration<double>(SteadyClock::now() - started).count() > timeout) {
            kill(pid, SIGKILL);
            std::cerr << "the server was not ready after " << timeout << " s" << std::endl;
            return ExitError;
        }
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    const double ms =
        std::chrono::duration<double, std::milli>(SteadyClock::now() - started).count();
    std::cout << "pid=" << pid << " port=" << port << " ready_ms=" << ms
              << " readyz_polls=" << polls << std::endl;
    return ExitOk;
}

/// idle --port P --ca FILE --connections N [--server-pid PID] [--rounds R] [--hold S]
/// Warms the server with one answered connection and notes its RSS, opens N keep-alive
/// connections that each get one answer and then stay idle (as the API server leaves them),
/// notes the RSS again, then R times times a new connection (handshake and /healthz) and a
/// request on the oldest idle one. Exit 2 when a connection could not be opened or answered.
int cmdIdle(const Args& args) {
    using test::TlsClients;
    const auto count = static_cast<std::size_t>(args.number("connections", 2000));
    const long rounds = args.number("rounds", 5);
    const long serverPid = args.number("server-pid", 0);
    test::ensureFileLimit(static_cast<rlim_t>(count) + 256);
    TlsClients clients(args.need("ca"), static_cast<std::uint16_t>(args.number("port", 0)));
    const std::string healthz = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    const auto ok = [](const std::vector<TlsClients::Answer>& answers) {
        return std::all_of(answers.begin(), answers.end(),
                           [](const TlsClients::Answer& a) { return a.status == 200; });
    };
    const auto range = [](std::size_t first, std::size_t last) {
        std::vector<std::size_t> indices;
        for (std::size_t i = first; i < last; ++i) {
            indices.push_back(i);
        }
        return indices;
    };
    if (clients.open(1, std::chrono::seconds(10)) != 1 ||
        !ok(clients.exchange({0}, healthz, std::chrono::seconds(10)))) {
        throw std::runtime_error("the server did not answer a first connection");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const long before = serverPid > 0 ? processStatusKb(serverPid, "VmRSS") : -1;
    const auto start = SteadyClock::now();
    const std::size_t opened = clients.open(count, std::chrono::seconds(120));
    const auto answered = clients.exchange(range(1, clients.size()), healthz,
                                           std::chrono::seconds(60));
    const double setupSeconds = std::chrono::duration<double>(SteadyClock::now() - start).count();
    std::this_thread::sleep_for(std::chrono::milliseconds(300));
    const long after = serverPid > 0 ? processStatusKb(serverPid, "VmRSS") : -1;

    std::vector<double> fresh;
    std::vector<double> oldest;
    bool allAnswered = opened == count && ok(answered);
    for (long round = 0; round < rounds; ++round) {
        const auto t0 = SteadyClock::now();
        const bool up = clients.open(1, std::chrono::seconds(5)) == 1;
        const auto answer = clients.exchange({clients.size() - 1}, healthz, std::chrono::seconds(5));
        fresh.push_back(std::chrono::duration<double, std::milli>(SteadyClock::now() - t0).count());
        const auto old = clients.exchange({static_cast<std::size_t>(round) + 1}, healthz,
                                          std::chrono::seconds(5));
        oldest.push_back(std::chrono::duration<double, std::milli>(old.front().took).count());
        allAnswered = allAnswered && up && ok(answer) && ok(old);
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    const auto maxOf = [](const std::vector<double>& v) {
        return v.empty() ? 0.0 : *std::max_element(v.begin(), v.end());
    };
    std::this_thread::sleep_for(std::chrono::seconds(args.number("hold", 0)));
    std::ostringstream line;
    line.setf(std::ios::fixed);
    line.precision(2);
    line << "idle_connections=" << count << " opened=" << opened << " setup_s=" << setupSeconds
         << " new_max_ms=" << maxOf(fresh) << " oldest_max_ms=" << maxOf(oldest);
    if (serverPid > 0) {
        line << " server_rss_before_kb=" << before << " server_rss_after_kb=" << after
             << " per_idle_kb="
             << static_cast<double>(after - before) / static_cast<double>(count)
             << " server_threads=" << processStatusKb(serverPid, "Threads");
    }
    line << " all_answered=" << (allAnswered ? 1 : 0);
    std::cout << line.str() << std::endl;
    return allAnswered ? ExitOk : ExitUnexpected;
}

int cmdStore(const Args& args) {
    bench::StoreBenchOptions options;
    options.db = args.need("db");
    const std::string sync = args.get("sync", "full");
    if (sync == "full") {
        options.synchronous = core::SqliteOptions::Synchronous::Full;
    } else if (sync == "normal") {
        options.synchronous = core::SqliteOptions::Synchronous::Normal;
    } else if (sync == "durable-state") {
        options.synchronous = core::SqliteOptions::Synchronous::DurableState;
    } else {
        throw std::runtime_error("--sync must be full, normal or durable-state");
    }
    options.threads = static_cast<int>(args.number("threads", 8));
    options.seconds = args.real("seconds", 5);
    options.users = static_cast<int>(args.number("users", 10000));
    options.maxBatch = static_cast<std::size_t>(std::max(1L, args.number("max-batch", 64)));
    options.op = args.get("op", "valid");
    bench::runStoreBench(options);
    return ExitOk;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string usage =
        "usage: twostep-loadgen users|run|startup|store|idle --name value ... (see "
        "docs/benchmarks.md)";
    if (argc < 2) {
        std::cerr << usage << std::endl;
        return ExitError;
    }
    std::signal(SIGPIPE, SIG_IGN);
    const std::string command = argv[1];
    try {
        const Args args = parseArgs(argc, argv, 2);
        if (command == "users") {
            return cmdUsers(args);
        }
        if (command == "run") {
            return cmdRun(args);
        }
        if (command == "startup") {
            return cmdStartup(args);
        }
        if (command == "store") {
            return cmdStore(args);
        }
        if (command == "idle") {
            return cmdIdle(args);
        }
        std::cerr << usage << std::endl;
        return ExitError;
    } catch (const std::exception& e) {
        std::cerr << "twostep-loadgen: " << e.what() << std::endl;
        return ExitError;
    }
}
