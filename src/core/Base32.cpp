#include "core/Base32.hpp"

#include <array>
#include <cstddef>

namespace twostep::core::base32 {
namespace {

constexpr std::string_view Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// The value of a base32 digit (either case), or -1.
int digitValue(char c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a';
    }
    if (c >= '2' && c <= '7') {
        return c - '2' + 26;
    }
    return -1;
}

bool isSeparator(char c) {
    return c == ' ' || c == '-';
}

/// Padding that RFC 4648 §6 requires after a final quantum of `remainder` digits; -1 when no
/// whole number of bytes ends there (1, 3 or 6 digits), so such input can never be valid.
int paddingFor(std::size_t remainder) {
    static constexpr std::array<int, 8> Padding = {0, -1, 6, -1, 4, 3, -1, 1};
    return Padding[remainder];
}

}  // namespace

std::string encode(std::span<const std::uint8_t> bytes) {
    std::string out;
    out.reserve((bytes.size() * 8 + 4) / 5);
    std::uint32_t buffer = 0;
    int bits = 0;
    for (const std::uint8_t byte : bytes) {
        buffer = (buffer << 8) | byte;
        bits += 8;
        while (bits >= 5) {
            bits -= 5;
            out.push_back(Alphabet[(buffer >> bits) & 0x1f]);
        }
        buffer &= (1u << bits) - 1;  // keep only the bits not yet written
    }
    if (bits > 0) {
        out.push_back(Alphabet[(buffer << (5 - bits)) & 0x1f]);
    }
    return out;
}

std::optional<std::vector<std::uint8_t>> decode(std::string_view text) {
    // First pass validates and counts, so the secret is not copied into a scratch string.
    std::size_t digitCount = 0;
    std::size_t padding = 0;
    for (const char c : text) {
        // People copy secrets in groups ("JBSW Y3DP" or "jbsw-y3dp"): separators carry nothing.
        if (isSeparator(c)) {
            continue;
        }
        if (c == '=') {
            ++padding;
            continue;
        }
        // A digit after padding means the padding was in the middle.
        if (padding > 0 || digitValue(c) < 0) {
            return std::nullopt;
        }
        ++digitCount;
    }

    const int expectedPadding = paddingFor(digitCount % 8);
    if (expectedPadding < 0) {
        return std::nullopt;
    }
    // Padding is optional, but when present it must be exactly what RFC 4648 writes.
    if (padding != 0 && padding != static_cast<std::size_t>(expectedPadding)) {
        return std::nullopt;
    }

    std::vector<std::uint8_t> out;
    out.reserve(digitCount * 5 / 8);
    std::uint32_t buffer = 0;
    int bits = 0;
    for (const char c : text) {
        const int value = digitValue(c);
        if (value < 0) {
            continue;  // a separator or the padding, both checked above
        }
        buffer = (buffer << 5) | static_cast<std::uint32_t>(value);
        bits += 5;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<std::uint8_t>((buffer >> bits) & 0xff));
            buffer &= (1u << bits) - 1;
        }
    }
    // Non-zero leftover bits would let two different strings decode to the same secret.
    if (buffer != 0) {
        return std::nullopt;
    }
    return out;
}

}  // namespace twostep::core::base32
