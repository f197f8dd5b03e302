/// RFC 6238 TOTP on liboath: verification that reports the matched time step, and generation.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/Clock.hpp"
#include "core/Secret.hpp"

namespace twostep::core {

enum class Algorithm { Sha1, Sha256, Sha512 };

/// "SHA1", "SHA256", "SHA512" (the otpauth spelling).
std::string_view toString(Algorithm algorithm);
/// Parses "SHA1"/"sha1"/"SHA-1" and the like; nullopt for anything else.
std::optional<Algorithm> parseAlgorithm(std::string_view text);

/// How a user's codes are made; defaults are what every authenticator app supports.
struct TotpParams {
    Algorithm algorithm = Algorithm::Sha1;
    int digits = 6;   ///< 6 or 8
    int period = 30;  ///< seconds, 1..3600
    bool operator==(const TotpParams&) const = default;
};

/// True when digits is 6 or 8 and period is in 1..3600.
bool isValid(const TotpParams& params);

/// The outcome of checking a submitted code.
enum class CodeCheck {
    Matched,      ///< the code is valid for `step`
    NoMatch,      ///< well-formed, but no step in the window has this code
    Malformed,    ///< empty, wrong length for the user's digits, or not ASCII digits: no HMAC done
};

struct TotpResult {
    CodeCheck check = CodeCheck::Malformed;
    std::int64_t step = 0;  ///< the matched time step (unix time / period) when Matched
};

/// The widest window verifyTotp accepts: ±10 steps (5 minutes at 30 s) is already generous.
inline constexpr int MaxWindow = 10;

/// The furthest a user's remembered clock drift may move the window (steps either way): enough
/// for a phone a minute or two off, never a way to accept codes from long ago.
inline constexpr int MaxDriftSteps = 3;

/// True when `code` is exactly `digits` ASCII digits.
bool isWellFormedCode(std::string_view code, int digits);

/// Checks `code` against the steps now-window..now+window. A code of any length other than
/// params.digits is Malformed before any HMAC is computed. When several steps match (a 1-in-10^d
/// collision), the newest is reported. Compares in constant time. Thread-safe.
/// @throw twostep::Error when params are invalid, window is outside 0..MaxWindow, the secret is
/// empty, or now is negative (bad stored data or configuration, not bad input).
TotpResult verifyTotp(const SecretBytes& secret, std::string_view code, const TotpParams& params,
                      Seconds now, int window);

/// The code for time `at` (for tests, the demo and confirmation tooling).
/// @throw twostep::Error on invalid params, an empty secret or a negative time.
std::string generateTotp(const SecretBytes& secret, const TotpParams& params, Seconds at);

/// The time step that `at` falls in.
inline std::int64_t timeStep(Seconds at, int period) { return at / period; }

}  // namespace twostep::core
