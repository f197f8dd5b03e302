#include "core/Totp.hpp"

#include <liboath/oath.h>
#include <openssl/crypto.h>

#include <array>
#include <cctype>
#include <ctime>
#include <limits>
#include <mutex>
#include <string>

#include "core/Error.hpp"

namespace twostep::core {
namespace {

/// Times beyond this would overflow step arithmetic; they are far past any real clock.
constexpr Seconds MaxTime = std::numeric_limits<Seconds>::max() / 2;

/// liboath must be initialised once per process before use; oath_init is not thread-safe.
void ensureOathInitialised() {
    static std::once_flag once;
    std::call_once(once, [] {
        const int rc = oath_init();
        if (rc != OATH_OK) {
            throw Error(std::string("cannot initialise liboath: ") + oath_strerror(rc));
        }
    });
}

int oathFlags(Algorithm algorithm) {
    switch (algorithm) {
        case Algorithm::Sha1:
            return 0;
        case Algorithm::Sha256:
            return OATH_TOTP_HMAC_SHA256;
        case Algorithm::Sha512:
            return OATH_TOTP_HMAC_SHA512;
    }
    throw Error("unknown totp algorithm");
}

void checkInputs(const SecretBytes& secret, const TotpParams& params, Seconds at) {
    if (!isValid(params)) {
        throw Error("invalid totp parameters: digits must be 6 or 8 and the period 1..3600 s");
    }
    if (secret.empty()) {
        throw Error("cannot compute a totp code with an empty secret");
    }
    if (at < 0 || at > MaxTime) {
        throw Error("cannot compute a totp code for time " + std::to_string(at));
    }
}

/// Room for the longest code liboath writes (8 digits) and its NUL; wiped when done.
class CodeBuffer {
public:
    CodeBuffer() = default;
    CodeBuffer(const CodeBuffer&) = delete;
    CodeBuffer& operator=(const CodeBuffer&) = delete;
    ~CodeBuffer() { OPENSSL_cleanse(text_.data(), text_.size()); }
    char* data() { return text_.data(); }
    std::string_view view(int digits) const {
        return {text_.data(), static_cast<std::size_t>(digits)};
    }

private:
    std::array<char, 16> text_{};
};

/// The code of time step `step`; inputs already checked.
void generateForStep(const SecretBytes& secret, const TotpParams& params, std::int64_t step,
                     CodeBuffer& out) {
    ensureOathInitialised();
    const int rc = oath_totp_generate2(
        reinterpret_cast<const char*>(secret.bytes().data()), secret.size(),
        static_cast<std::time_t>(step * params.period), static_cast<unsigned>(params.period), 0,
        static_cast<unsigned>(params.digits), oathFlags(params.algorithm), out.data());
    if (rc != OATH_OK) {
        throw Error(std::string("cannot compute a totp code: ") + oath_strerror(rc));
    }
}

}  // namespace

std::string_view toString(Algorithm algorithm) {
    switch (algorithm) {
        case Algorithm::Sha1:
            return "SHA1";
        case Algorithm::Sha256:
            return "SHA256";
        case Algorithm::Sha512:
            return "SHA512";
    }
    return "unknown";
}

std::optional<Algorithm> parseAlgorithm(std::string_view text) {
    std::string upper;
    for (const char c : text) {
        upper.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
    }
    // "SHA-256" and "SHA_256" are common spellings of the same name.
    if (upper.size() > 4 && upper.starts_with("SHA") && (upper[3] == '-' || upper[3] == '_')) {
        upper.erase(3, 1);
    }
    if (upper == "SHA1") {
        return Algorithm::Sha1;
    }
    if (upper == "SHA256") {
        return Algorithm::Sha256;
    }
    if (upper == "SHA512") {
        return Algorithm::Sha512;
    }
    return std::nullopt;
}

bool isValid(const TotpParams& params) {
    const bool knownAlgorithm = params.algorithm == Algorithm::Sha1 ||
                                params.algorithm == Algorithm::Sha256 ||
                                params.algorithm == Algorithm::Sha512;
    return knownAlgorithm && (params.digits == 6 || params.digits == 8) && params.period >= 1 &&
           params.period <= 3600;
}

bool isWellFormedCode(std::string_view code, int digits) {
    if (digits <= 0 || code.size() != static_cast<std::size_t>(digits)) {
        return false;
    }
    // Byte-wise: a non-ASCII digit (Arabic-Indic, fullwidth) is a multi-byte sequence and fails.
    for (const char c : code) {
        if (c < '0' || c > '9') {
            return false;
        }
    }
    return true;
}

TotpResult verifyTotp(const SecretBytes& secret, std::string_view code, const TotpParams& params,
                      Seconds now, int window) {
    checkInputs(secret, params, now);
    if (window < 0 || window > MaxWindow) {
        throw Error("invalid totp window " + std::to_string(window) + ": must be 0.." +
                    std::to_string(MaxWindow));
    }
    // Checked against the enrolled digits, not the code's own length: an 8-digit user must not
    // be able to pass with a 6-digit code (a 100x easier guess). No HMAC is spent on bad input.
    if (!isWellFormedCode(code, params.digits)) {
        return {CodeCheck::Malformed, 0};
    }

    // Own loop over oath_totp_generate2 rather than oath_totp_validate4_callback: liboath
    // stops at the first match in the order 0, -1, +1, ..., while the newest matching step must
    // be reported (replay protection refuses any step not newer than the last one accepted).
    // Every step is computed and compared, so the time taken does not depend on the match.
    const std::int64_t current = timeStep(now, params.period);
    TotpResult result{CodeCheck::NoMatch, 0};
    CodeBuffer generated;
    for (std::int64_t step = current + window; step >= current - window; --step) {
        if (step < 0) {
            break;  // no code exists before the epoch
        }
        generateForStep(secret, params, step, generated);
        if (constantTimeEquals(generated.view(params.digits), code) &&
            result.check != CodeCheck::Matched) {
            result = {CodeCheck::Matched, step};
        }
    }
    return result;
}

std::string generateTotp(const SecretBytes& secret, const TotpParams& params, Seconds at) {
    checkInputs(secret, params, at);
    CodeBuffer generated;
    generateForStep(secret, params, timeStep(at, params.period), generated);
    return std::string(generated.view(params.digits));
}

}  // namespace twostep::core
