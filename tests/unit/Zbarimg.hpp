/// The real zbarimg (Debian package zbar-tools): an independent QR decoder to check our images.
#pragma once

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include "Subprocess.hpp"

namespace twostep::test {

/// The text of the QR code in `image`, as `zbarimg --raw -q` prints it (without the final
/// newline). Fails the test when zbarimg is missing or finds no code: never skipped.
inline std::string zbarimgDecode(const std::filesystem::path& image) {
    const ProcessResult result = runProcess({"zbarimg", "--raw", "-q", image.string()});
    INFO("zbarimg: " << result.error << " (install the Debian package zbar-tools)");
    REQUIRE(result.started);
    REQUIRE(result.exitCode == 0);
    std::string text = result.output;
    while (!text.empty() && text.back() == '\n') {
        text.pop_back();
    }
    return text;
}

}  // namespace twostep::test
