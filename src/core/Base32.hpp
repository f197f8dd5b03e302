/// RFC 4648 base32, the encoding of TOTP secrets in otpauth URIs and authenticator apps.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace twostep::core::base32 {

/// Upper-case RFC 4648 base32 without padding (what authenticator apps expect in a URI).
std::string encode(std::span<const std::uint8_t> bytes);

/// Decodes base32: accepts lower case, missing padding, and spaces or dashes between groups
/// (as people copy secrets); refuses any other character, misplaced padding, or trailing bits
/// that are not zero. Returns nullopt on bad input.
std::optional<std::vector<std::uint8_t>> decode(std::string_view text);

}  // namespace twostep::core::base32
