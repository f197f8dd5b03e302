/// The webhook's settings (design §4): flags bound into the POCO configuration, with TWOSTEP_*
/// environment variables as fallback, parsed and range-checked in one place.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/Error.hpp"
#include "core/Policy.hpp"

namespace Poco::Util {
class AbstractConfiguration;
class OptionSet;
}  // namespace Poco::Util

namespace twostep::http {

/// A flag or environment value that is not acceptable; the message names the flag and the value.
class ConfigError : public Error {
public:
    using Error::Error;
};

enum class LogFormat { Json, Text };

/// Severity of a log line, least severe first: a Log writes lines at or above its level.
enum class LogLevel { Debug, Info, Warn, Error };

/// Where to listen: an IP literal or host name (IPv6 without brackets) and a port (0: any).
struct ListenAddress {
    std::string host = "0.0.0.0";
    std::uint16_t port = 8443;
};

/// Everything the server needs to start. Defaults are the documented ones.
struct ServerConfig {
    ListenAddress listen;
    std::string tlsCert;
    std::string tlsKey;
    std::string clientCa;  ///< empty: no client certificate requested
    std::string db = "/var/lib/twostep/twostep.db";
    std::string masterKeyFile = "/etc/twostep/master.key";
    core::PolicyConfig policy;
    LogFormat logFormat = LogFormat::Json;
    LogLevel logLevel = LogLevel::Info;
    std::size_t maxBody = 3 * 1024 * 1024;
    int threads = 32;         ///< workers for database work
    int eventLoops = 0;       ///< 0: one per CPU in the process's affinity mask
    int maxConnections = 10'000;
    std::chrono::milliseconds idleTimeout{60'000};
    std::chrono::milliseconds readTimeout{10'000};
    std::chrono::milliseconds headerTimeout{10'000};
    std::chrono::milliseconds certReloadInterval{10'000};

    /// Reads `twostep.<flag>` keys (set by the option bindings) and falls back to
    /// `system.env.TWOSTEP_<FLAG>`. @throw ConfigError naming the flag (or variable) and value.
    static ServerConfig from(const Poco::Util::AbstractConfiguration& config);
};

/// The configuration key prefix the flags are bound under.
inline constexpr std::string_view ConfigPrefix = "twostep.";

/// Adds every flag of ServerConfig to `options`, bound into the configuration under
/// `twostep.<flag>` (repeatable flags under `twostep.<flag>[N]`).
void defineServerOptions(Poco::Util::OptionSet& options,
                         Poco::Util::AbstractConfiguration& config);

/// "90s", "15m", "1h", "1h30m", "250ms" or plain seconds ("30"). @throw ConfigError when malformed;
/// `name` is the flag named in the message.
std::chrono::milliseconds parseDuration(std::string_view name, std::string_view text);

/// "host:port", "[v6]:port". @throw ConfigError when malformed.
ListenAddress parseListen(std::string_view name, std::string_view text);

/// Bytes, with an optional KiB/MiB/GiB (or k/M/G, powers of 1024) suffix. @throw ConfigError.
std::size_t parseSize(std::string_view name, std::string_view text);

}  // namespace twostep::http
