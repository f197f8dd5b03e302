/// twostep-webhook as a Poco::Util::ServerApplication: flags bound into the configuration, the
/// services built in dependency order, an HTTPS server until SIGTERM/SIGINT, a graceful stop.
#pragma once

#include <Poco/Util/ServerApplication.h>

#include <string>

#include "http/ServerConfig.hpp"

namespace twostep::http {

class WebhookServer final : public Poco::Util::ServerApplication {
public:
    WebhookServer();

    /// Parses the arguments and serves until SIGTERM or SIGINT. Returns EXIT_OK after a clean
    /// stop or --help, EXIT_USAGE for an unknown option or argument, EXIT_CONFIG when a value,
    /// the key, the database, the certificate or the listen address is unusable (with a one-line
    /// message on stderr), EXIT_SOFTWARE on a bug. Hides ServerApplication::run(argc, argv) to
    /// give usage errors their own exit code; --daemon is not offered (run it under a supervisor).
    int run(int argc, char** argv);

protected:
    using Poco::Util::ServerApplication::run;  // the no-argument run() that calls main()

    void defineOptions(Poco::Util::OptionSet& options) override;
    int main(const ArgVec& args) override;

private:
    void handleHelp(const std::string& name, const std::string& value);
    void handleVersion(const std::string& name, const std::string& value);

    bool infoRequested_ = false;  ///< --help or --version: print and exit 0
    ServerConfig config_;
};

}  // namespace twostep::http
