#include "http/ServerConfig.hpp"

#include <Poco/Util/AbstractConfiguration.h>
#include <Poco/Util/Option.h>
#include <Poco/Util/OptionCallback.h>
#include <Poco/Util/OptionSet.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>

namespace twostep::http {

namespace {

using std::chrono::milliseconds;
using namespace std::chrono_literals;

/// One flag: its name (also `twostep.<name>` and TWOSTEP_<NAME>), argument and help text.
struct FlagSpec {
    std::string_view name;
    std::string_view argument;  ///< empty: takes no argument
    std::string_view help;
    bool repeatable = false;
};

constexpr std::array Flags{
    FlagSpec{"listen", "ADDR", "address to listen on, host:port or [v6]:port (default 0.0.0.0:8443)"},
    FlagSpec{"tls-cert", "FILE", "PEM certificate (and chain) to serve; reloaded when it changes (required)"},
    FlagSpec{"tls-key", "FILE", "PEM private key of --tls-cert; reloaded with it (required)"},
    FlagSpec{"client-ca", "FILE", "PEM CA bundle: /validate and /mutate answer 403 to clients without a certificate it signed"},
    FlagSpec{"db", "URL", "database: SQLite path, sqlite:PATH or postgresql://... (default /var/lib/twostep/twostep.db)"},
    FlagSpec{"master-key-file", "FILE", "key that seals the TOTP secrets (default /etc/twostep/master.key)"},
    FlagSpec{"annotation", "KEY", "annotation that carries the code (default twostep.dev/token)"},
    FlagSpec{"window", "N", "time steps accepted either side of now, 0..10 (default 1)"},
    FlagSpec{"exempt-user", "GLOB", "user exempt from codes (repeatable; added to the defaults)", true},
    FlagSpec{"exempt-group", "GLOB", "group exempt from codes (repeatable; added to the defaults)", true},
    FlagSpec{"no-default-exemptions", "", "drop the default exemptions (system:serviceaccount:*, system:node:*, system:kube-*, system:apiserver, group system:nodes)"},
    FlagSpec{"unenrolled", "deny|allow", "what happens to users who are not enrolled (default deny)"},
    FlagSpec{"grant-ttl", "DURATION", "after a verified change, allow the user's changes for this long without a code (default 0: none)"},
    FlagSpec{"grant-max-ttl", "DURATION", "longest grant an unlock may open (default 15m)"},
    FlagSpec{"self-enroll", "invite|open|off", "who may enroll themselves with `kubectl twostep enroll`: invited users, also anyone not enrolled yet, or nobody (default invite)"},
    FlagSpec{"self-enroll-group", "GLOB", "with --self-enroll=open, only members of a matching group enroll without an invitation (repeatable)", true},
    FlagSpec{"self-enroll-ttl", "DURATION", "with --self-enroll=open, how long a new secret waits for its first code (default 1h)"},
    FlagSpec{"issuer", "NAME", "the issuer authenticator apps show for self-enrolled users (default twostep)"},
    FlagSpec{"lockout-failures", "N", "consecutive failures that lock a user out (default 5)"},
    FlagSpec{"lockout-base", "DURATION", "first lockout length, doubling with each further one (default 1m)"},
    FlagSpec{"lockout-max", "DURATION", "longest lockout (default 1h)"},
    FlagSpec{"log-format", "json|text", "format of the log lines on stdout (default json)"},
    FlagSpec{"log-level", "debug|info|warn|error", "least severe log lines written (default info; exempt, not_protected and dry_run decisions are debug)"},
    FlagSpec{"max-body", "SIZE", "largest request body, e.g. 3MiB (default 3MiB)"},
    FlagSpec{"threads", "N", "worker threads for the work that uses the database: reviews that need the store, /readyz, /metrics (default 32); connections never take one"},
    FlagSpec{"event-loops", "N", "threads that serve connections: TLS, HTTP, keep-alive and decisions without the database (default: one per CPU the process may use)"},
    FlagSpec{"max-connections", "N", "open connections at most; a new one beyond is closed at once, logged and counted (default 10000)"},
    FlagSpec{"idle-timeout", "DURATION", "close keep-alive connections idle this long (default 60s)"},
    FlagSpec{"read-timeout", "DURATION", "limit for a whole request body, for silence before a request's headers are complete, and for a client to take its answer (default 10s)"},
    FlagSpec{"header-timeout", "DURATION", "limit for a connection's TLS handshake and first request headers, and for each later request's headers from its first byte (default 10s)"},
    FlagSpec{"cert-reload-interval", "DURATION", "how often to check the certificate files for changes (default 10s)"},
};

std::string configKey(std::string_view flag) {
    return std::string(ConfigPrefix) + std::string(flag);
}

std::string envName(std::string_view flag) {
    std::string name = "TWOSTEP_";
    for (char c : flag) {
        name += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    }
    return name;
}

/// Appends each occurrence of a repeatable flag as `twostep.<flag>[N]`.
class AppendToConfig final : public Poco::Util::AbstractOptionCallback {
public:
    AppendToConfig(Poco::Util::AbstractConfiguration& config, std::string key)
        : config_(config), key_(std::move(key)) {}

    void invoke(const std::string& /*name*/, const std::string& value) const override {
        for (int i = 0;; ++i) {
            const std::string key = key_ + "[" + std::to_string(i) + "]";
            if (!config_.hasProperty(key)) {
                config_.setString(key, value);
                return;
            }
        }
    }

    Poco::Util::AbstractOptionCallback* clone() const override {
        return new AppendToConfig(config_, key_);
    }

private:
    Poco::Util::AbstractConfiguration& config_;
    std::string key_;
};

/// A raw value and where it came from ("--window" or "TWOSTEP_WINDOW"), for error messages.
struct RawValue {
    std::string text;
    std::string source;
};

/// Quotes a user-supplied value for an error message, cut short when long.
std::string quote(std::string_view text) {
    constexpr std::size_t MaxShown = 80;
    std::string out = "'";
    out += text.substr(0, MaxShown);
    if (text.size() > MaxShown) {
        out += "...";
    }
    return out + "'";
}

[[noreturn]] void fail(const RawValue& value, std::string_view problem) {
    throw ConfigError("invalid " + value.source + " " + quote(value.text) + ": " +
                      std::string(problem));
}

class Reader {
public:
    explicit Reader(const Poco::Util::AbstractConfiguration& config) : config_(config) {}

    std::optional<RawValue> get(std::string_view flag) const {
        const std::string key = configKey(flag);
        if (config_.hasProperty(key)) {
            return RawValue{config_.getString(key), "--" + std::string(flag)};
        }
        const std::string env = envName(flag);
        if (config_.hasProperty("system.env." + env)) {
            return RawValue{config_.getString("system.env." + env), env};
        }
        return std::nullopt;
    }

    /// Repeated flags; when there are none, the comma-separated environment variable.
    std::vector<RawValue> list(std::string_view flag) const {
        std::vector<RawValue> values;
        const std::string key = configKey(flag);
        for (int i = 0;; ++i) {
            const std::string indexed = key + "[" + std::to_string(i) + "]";
            if (!config_.hasProperty(indexed)) {
                break;
            }
            values.push_back({config_.getString(indexed), "--" + std::string(flag)});
        }
        if (!values.empty()) {
            return values;
        }
        const std::string env = envName(flag);
        if (!config_.hasProperty("system.env." + env)) {
            return values;
        }
        const std::string all = config_.getString("system.env." + env);
        std::size_t start = 0;
        while (start <= all.size()) {
            const std::size_t comma = std::min(all.find(',', start), all.size());
            values.push_back({all.substr(start, comma - start), env});
            start = comma + 1;
        }
        return values;
    }

private:
    const Poco::Util::AbstractConfiguration& config_;
};

std::optional<std::int64_t> toInteger(std::string_view text) {
    std::int64_t value = 0;
    const char* end = text.data() + text.size();
    const auto [ptr, ec] = std::from_chars(text.data(), end, value);
    if (text.empty() || ec != std::errc() || ptr != end) {
        return std::nullopt;
    }
    return value;
}

int intIn(const RawValue& value, int low, int high) {
    const auto n = toInteger(value.text);
    if (!n || *n < low || *n > high) {
        fail(value, "must be an integer from " + std::to_string(low) + " to " +
                        std::to_string(high));
    }
    return static_cast<int>(*n);
}

std::string describe(milliseconds d) {
    if (d.count() % 1000 != 0) {
        return std::to_string(d.count()) + "ms";
    }
    return std::to_string(d.count() / 1000) + "s";
}

milliseconds durationIn(const RawValue& value, milliseconds low, milliseconds high) {
    const milliseconds d = parseDuration(value.source, value.text);
    if (d < low || d > high) {
        fail(value, "must be from " + describe(low) + " to " + describe(high));
    }
    return d;
}

core::Seconds secondsIn(const RawValue& value, milliseconds low, milliseconds high) {
    const milliseconds d = durationIn(value, low, high);
    if (d.count() % 1000 != 0) {
        fail(value, "must be a whole number of seconds");
    }
    return d.count() / 1000;
}

std::string nonEmpty(const RawValue& value) {
    if (value.text.empty()) {
        fail(value, "must not be empty");
    }
    return value.text;
}

bool isAnnotationKey(std::string_view key) {
    // Kubernetes annotation keys: an optional DNS-subdomain prefix and '/', then a name of at most
    // 63 characters [A-Za-z0-9._-] starting and ending alphanumeric.
    const std::size_t slash = key.find('/');
    const std::string_view prefix = slash == std::string_view::npos ? "" : key.substr(0, slash);
    const std::string_view name = slash == std::string_view::npos ? key : key.substr(slash + 1);
    const auto alnum = [](char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; };
    const auto nameChar = [&](char c) { return alnum(c) || c == '-' || c == '_' || c == '.'; };
    const auto prefixChar = [&](char c) { return alnum(c) || c == '-' || c == '.'; };
    if (name.empty() || name.size() > 63 || !alnum(name.front()) || !alnum(name.back()) ||
        !std::all_of(name.begin(), name.end(), nameChar)) {
        return false;
    }
    if (slash == std::string_view::npos) {
        return true;
    }
    return !prefix.empty() && prefix.size() <= 253 &&
           std::all_of(prefix.begin(), prefix.end(), prefixChar);
}

bool truthy(const RawValue& value) {
    if (value.source.starts_with("--")) {
        return true;  // a flag without argument: present means on
    }
    std::string lower = value.text;
    std::transform(lower.begin(), lower.end(), lower.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    if (lower == "1" || lower == "true" || lower == "yes") {
        return true;
    }
    if (lower.empty() || lower == "0" || lower == "false" || lower == "no") {
        return false;
    }
    fail(value, "must be true or false");
}

}  // namespace

milliseconds parseDuration(std::string_view name, std::string_view text) {
    const RawValue raw{std::string(text), std::string(name)};
    if (text.empty()) {
        fail(raw, "expected a duration like 90s, 15m, 1h or a number of seconds");
    }
    if (const auto plain = toInteger(text)) {
        if (*plain < 0 || *plain > 365LL * 24 * 3600) {
            fail(raw, "expected a duration like 90s, 15m, 1h or a number of seconds");
        }
        return std::chrono::seconds(*plain);
    }
    constexpr std::int64_t MaxMs = 365LL * 24 * 3600 * 1000;
    std::int64_t total = 0;
    std::size_t i = 0;
    while (i < text.size()) {
        std::size_t digits = i;
        while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
            ++digits;
        }
        const auto number = toInteger(text.substr(i, digits - i));
        std::size_t unitEnd = digits;
        while (unitEnd < text.size() && std::isalpha(static_cast<unsigned char>(text[unitEnd]))) {
            ++unitEnd;
        }
        const std::string_view unit = text.substr(digits, unitEnd - digits);
        std::int64_t scale = 0;
        if (unit == "ms") {
            scale = 1;
        } else if (unit == "s") {
            scale = 1000;
        } else if (unit == "m") {
            scale = 60'000;
        } else if (unit == "h") {
            scale = 3'600'000;
        }
        if (!number || scale == 0 || *number > MaxMs / scale || total + *number * scale > MaxMs) {
            fail(raw, "expected a duration like 90s, 15m, 1h or a number of seconds");
        }
        total += *number * scale;
        i = unitEnd;
    }
    return milliseconds(total);
}

ListenAddress parseListen(std::string_view name, std::string_view text) {
    const RawValue raw{std::string(text), std::string(name)};
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) {
        fail(raw, "expected host:port or [v6]:port");
    }
    std::string_view host = text.substr(0, colon);
    const std::string_view portText = text.substr(colon + 1);
    if (host.starts_with('[')) {
        if (!host.ends_with(']') || host.size() < 3) {
            fail(raw, "expected host:port or [v6]:port");
        }
        host = host.substr(1, host.size() - 2);
    } else if (host.find(':') != std::string_view::npos) {
        fail(raw, "an IPv6 address needs brackets, e.g. [::]:8443");
    }
    const auto port = toInteger(portText);
    if (host.empty() || !port || *port < 0 || *port > 65535) {
        fail(raw, "expected host:port or [v6]:port with a port from 0 to 65535");
    }
    return ListenAddress{std::string(host), static_cast<std::uint16_t>(*port)};
}

std::size_t parseSize(std::string_view name, std::string_view text) {
    const RawValue raw{std::string(text), std::string(name)};
    std::size_t digits = 0;
    while (digits < text.size() && text[digits] >= '0' && text[digits] <= '9') {
        ++digits;
    }
    const auto number = toInteger(text.substr(0, digits));
    const std::string_view unit = text.substr(digits);
    std::int64_t scale = 0;
    if (unit.empty() || unit == "B") {
        scale = 1;
    } else if (unit == "KiB" || unit == "k" || unit == "K") {
        scale = 1024;
    } else if (unit == "MiB" || unit == "M") {
        scale = 1024 * 1024;
    } else if (unit == "GiB" || unit == "G") {
        scale = 1024 * 1024 * 1024;
    }
    if (!number || scale == 0 || *number > std::numeric_limits<std::int64_t>::max() / scale) {
        fail(raw, "expected a size like 3MiB, 512KiB or a number of bytes");
    }
    return static_cast<std::size_t>(*number * scale);
}

void defineServerOptions(Poco::Util::OptionSet& options,
                         Poco::Util::AbstractConfiguration& config) {
    for (const FlagSpec& flag : Flags) {
        Poco::Util::Option option(std::string(flag.name), "", std::string(flag.help));
        // Every flag may be repeated: lists collect, single values take the last (as Go's flag
        // package does, so a manifest patch that appends a flag overrides the base).
        option.required(false).repeatable(true);
        if (!flag.argument.empty()) {
            option.argument(std::string(flag.argument));
        }
        if (flag.repeatable) {
            option.callback(AppendToConfig(config, configKey(flag.name)));
        } else {
            option.binding(configKey(flag.name));
        }
        options.addOption(option);
    }
}

ServerConfig ServerConfig::from(const Poco::Util::AbstractConfiguration& config) {
    const Reader in(config);
    ServerConfig out;

    if (auto v = in.get("listen")) {
        out.listen = parseListen(v->source, v->text);
    }
    const auto cert = in.get("tls-cert");
    const auto key = in.get("tls-key");
    if (!cert || !key) {
        throw ConfigError(std::string("missing ") + (cert ? "--tls-key" : "--tls-cert") +
                          " (or TWOSTEP_" + (cert ? "TLS_KEY" : "TLS_CERT") +
                          "): the webhook serves HTTPS only");
    }
    out.tlsCert = nonEmpty(*cert);
    out.tlsKey = nonEmpty(*key);
    if (auto v = in.get("client-ca")) {
        out.clientCa = nonEmpty(*v);
    }
    if (auto v = in.get("db")) {
        out.db = nonEmpty(*v);
    }
    if (auto v = in.get("master-key-file")) {
        out.masterKeyFile = nonEmpty(*v);
    }

    core::PolicyConfig& policy = out.policy;
    if (auto v = in.get("annotation")) {
        if (!isAnnotationKey(v->text)) {
            fail(*v, "not an annotation key like twostep.dev/token");
        }
        policy.fields.tokenAnnotation = v->text;
    }
    if (auto v = in.get("window")) {
        policy.window = intIn(*v, 0, 10);
    }
    if (auto v = in.get("no-default-exemptions"); v && truthy(*v)) {
        policy.exemptUsers.clear();
        policy.exemptGroups.clear();
    }
    for (const RawValue& v : in.list("exempt-user")) {
        policy.exemptUsers.push_back(nonEmpty(v));
    }
    for (const RawValue& v : in.list("exempt-group")) {
        policy.exemptGroups.push_back(nonEmpty(v));
    }
    if (auto v = in.get("unenrolled")) {
        if (v->text == "deny") {
            policy.unenrolled = core::UnenrolledPolicy::Deny;
        } else if (v->text == "allow") {
            policy.unenrolled = core::UnenrolledPolicy::Allow;
        } else {
            fail(*v, "must be deny or allow");
        }
    }
    if (auto v = in.get("grant-ttl")) {
        policy.grantTtl = secondsIn(*v, 0s, 24h);
    }
    if (auto v = in.get("grant-max-ttl")) {
        policy.grantMaxTtl = secondsIn(*v, 1s, 24h);
    }
    if (auto v = in.get("self-enroll")) {
        if (v->text == "invite") {
            policy.selfEnroll.mode = core::SelfEnrollMode::Invite;
        } else if (v->text == "open") {
            policy.selfEnroll.mode = core::SelfEnrollMode::Open;
        } else if (v->text == "off") {
            policy.selfEnroll.mode = core::SelfEnrollMode::Off;
        } else {
            fail(*v, "must be invite, open or off");
        }
    }
    for (const RawValue& v : in.list("self-enroll-group")) {
        policy.selfEnroll.openGroups.push_back(nonEmpty(v));
    }
    if (!policy.selfEnroll.openGroups.empty() &&
        policy.selfEnroll.mode != core::SelfEnrollMode::Open) {
        throw ConfigError("--self-enroll-group applies only with --self-enroll=open");
    }
    if (auto v = in.get("self-enroll-ttl")) {
        policy.selfEnroll.openTtl = secondsIn(*v, 1min, 24h);
    }
    if (auto v = in.get("issuer")) {
        policy.selfEnroll.issuer = nonEmpty(*v);
    }
    if (auto v = in.get("lockout-failures")) {
        policy.lockout.maxFailures = intIn(*v, 1, 1000);
    }
    if (auto v = in.get("lockout-base")) {
        policy.lockout.baseLockSeconds = secondsIn(*v, 1s, 24h);
    }
    if (auto v = in.get("lockout-max")) {
        policy.lockout.maxLockSeconds = secondsIn(*v, 1s, 24h * 30);
    }
    if (policy.lockout.maxLockSeconds < policy.lockout.baseLockSeconds) {
        throw ConfigError("invalid lockout settings: --lockout-max (" +
                          std::to_string(policy.lockout.maxLockSeconds) +
                          "s) is shorter than --lockout-base (" +
                          std::to_string(policy.lockout.baseLockSeconds) + "s)");
    }

    if (auto v = in.get("log-format")) {
        if (v->text == "json") {
            out.logFormat = LogFormat::Json;
        } else if (v->text == "text") {
            out.logFormat = LogFormat::Text;
        } else {
            fail(*v, "must be json or text");
        }
    }
    if (auto v = in.get("log-level")) {
        if (v->text == "debug") {
            out.logLevel = LogLevel::Debug;
        } else if (v->text == "info") {
            out.logLevel = LogLevel::Info;
        } else if (v->text == "warn") {
            out.logLevel = LogLevel::Warn;
        } else if (v->text == "error") {
            out.logLevel = LogLevel::Error;
        } else {
            fail(*v, "must be debug, info, warn or error");
        }
    }
    if (auto v = in.get("max-body")) {
        out.maxBody = parseSize(v->source, v->text);
        if (out.maxBody < 1024 || out.maxBody > 64 * 1024 * 1024) {
            fail(*v, "must be from 1KiB to 64MiB");
        }
    }
    if (auto v = in.get("threads")) {
        out.threads = intIn(*v, 1, 1024);
    }
    if (auto v = in.get("event-loops")) {
        out.eventLoops = intIn(*v, 1, 256);
    }
    if (auto v = in.get("max-connections")) {
        out.maxConnections = intIn(*v, 1, 1'000'000);
    }
    if (auto v = in.get("idle-timeout")) {
        out.idleTimeout = durationIn(*v, 1s, 1h);
    }
    if (auto v = in.get("read-timeout")) {
        out.readTimeout = durationIn(*v, 100ms, 10min);
    }
    if (auto v = in.get("header-timeout")) {
        out.headerTimeout = durationIn(*v, 100ms, 10min);
    }
    if (auto v = in.get("cert-reload-interval")) {
        out.certReloadInterval = durationIn(*v, 100ms, 24h);
    }
    return out;
}

}  // namespace twostep::http
