/// The recorded AdmissionReview requests of tests/data, and small helpers to vary them.
#pragma once

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

namespace twostep::test {

/// The fixture file names (e.g. "0004-CREATE-deployments-demo-ok.json"), sorted.
inline std::vector<std::string> fixtureNames() {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(TWOSTEP_FIXTURES_DIR)) {
        if (entry.path().extension() == ".json") {
            names.push_back(entry.path().filename().string());
        }
    }
    std::sort(names.begin(), names.end());
    return names;
}

/// The body of the fixture whose name starts with `prefix` (e.g. "0004").
/// @throw std::runtime_error when none or several match.
inline std::string readFixture(const std::string& prefix) {
    std::optional<std::string> found;
    for (const std::string& name : fixtureNames()) {
        if (name.rfind(prefix, 0) == 0) {
            if (found) {
                throw std::runtime_error("several fixtures start with '" + prefix + "'");
            }
            found = name;
        }
    }
    if (!found) {
        throw std::runtime_error("no fixture starts with '" + prefix + "'");
    }
    std::ifstream in(std::filesystem::path(TWOSTEP_FIXTURES_DIR) / *found, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

/// The fixture as JSON, to change a field before serialising it again.
inline nlohmann::json fixtureJson(const std::string& prefix) {
    return nlohmann::json::parse(readFixture(prefix));
}

/// Standard base64 (with padding) back to bytes; throws on anything else.
inline std::string base64Decode(const std::string& text) {
    constexpr std::string_view Alphabet =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if (text.size() % 4 != 0) {
        throw std::runtime_error("base64 length is not a multiple of 4");
    }
    std::string out;
    unsigned bits = 0;
    int count = 0;
    for (char c : text) {
        if (c == '=') {
            break;
        }
        const auto value = Alphabet.find(c);
        if (value == std::string_view::npos) {
            throw std::runtime_error("not a base64 character");
        }
        bits = (bits << 6) | static_cast<unsigned>(value);
        count += 6;
        if (count >= 8) {
            count -= 8;
            out += static_cast<char>((bits >> count) & 0xFFu);
        }
    }
    return out;
}

}  // namespace twostep::test
