/// The real oathtool (Debian package oathtool): an independent TOTP implementation to check ours.
#pragma once

#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "Subprocess.hpp"

namespace twostep::test {

/// How the key is passed to oathtool.
enum class OathtoolKey { Hex, Base32 };

/// The code `oathtool --totp=ALG -d DIGITS -s PERIODs --now @AT KEY` prints. Fails the test when
/// oathtool is not installed or refuses the arguments: the cross-check must never be skipped.
inline std::string oathtoolTotp(const std::string& key, OathtoolKey encoding,
                                std::string_view algorithm, int digits, int period,
                                std::int64_t at) {
    std::vector<std::string> argv = {
        "oathtool", "--totp=" + std::string(algorithm), "-d",    std::to_string(digits),
        "-s",       std::to_string(period) + "s",       "--now", "@" + std::to_string(at)};
    if (encoding == OathtoolKey::Base32) {
        argv.emplace_back("-b");
    }
    argv.push_back(key);
    const ProcessResult result = runProcess(argv);
    INFO("oathtool: " << result.error << " (install the Debian package oathtool)");
    REQUIRE(result.started);
    REQUIRE(result.exitCode == 0);
    std::string code = result.output;
    while (!code.empty() && (code.back() == '\n' || code.back() == '\r')) {
        code.pop_back();
    }
    REQUIRE(code.size() == static_cast<std::size_t>(digits));
    return code;
}

}  // namespace twostep::test
