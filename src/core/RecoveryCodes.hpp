/// Single-use recovery codes: generated from the CSPRNG, shown once, stored as salted hashes.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace twostep::core {

/// Codes look like "k7qm-2xvd-9fhw-c3tp" (80 bits, base32 alphabet without look-alikes), so they
/// can never be mistaken for a TOTP code.
std::vector<std::string> generateRecoveryCodes(int count);

/// True when `text` has the shape of a recovery code (case and dashes are forgiven).
bool looksLikeRecoveryCode(std::string_view text);

/// "salt$hash": hex salt and SHA-256(salt || normalised code). Codes carry 80 bits of entropy,
/// so a fast salted hash is enough (no password stretching needed).
std::string hashRecoveryCode(std::string_view code);

/// Whether `code` matches a stored hash; constant time in the hash comparison.
bool matchesRecoveryCode(std::string_view code, std::string_view storedHash);

}  // namespace twostep::core
