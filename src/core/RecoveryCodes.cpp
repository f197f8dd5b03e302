#include "core/RecoveryCodes.hpp"

#include <openssl/evp.h>

#include <array>
#include <memory>
#include <optional>

#include "core/Error.hpp"
#include "core/Hex.hpp"
#include "core/Secret.hpp"

namespace twostep::core {
namespace {

/// Crockford's base32 alphabet in lower case: no i, l, o or u, so nothing reads as another symbol.
constexpr std::string_view Alphabet = "0123456789abcdefghjkmnpqrstvwxyz";
constexpr std::size_t CodeBytes = 10;  // 80 bits
constexpr std::size_t CodeSymbols = CodeBytes * 8 / 5;
constexpr std::size_t GroupSize = 4;
constexpr std::size_t SaltBytes = 16;
constexpr std::size_t DigestBytes = 32;
constexpr int MaxCodes = 1000;

/// The code as 16 alphabet symbols: case, dashes and spaces are dropped, and the look-alikes
/// the alphabet leaves out are read as what the user meant (o as 0, i and l as 1).
std::optional<std::string> normalise(std::string_view text) {
    std::string out;
    for (const char raw : text) {
        if (raw == '-' || raw == ' ') {
            continue;
        }
        char c = raw;
        if (c >= 'A' && c <= 'Z') {
            c = static_cast<char>(c - 'A' + 'a');
        }
        if (c == 'o') {
            c = '0';
        } else if (c == 'i' || c == 'l') {
            c = '1';
        }
        if (Alphabet.find(c) == std::string_view::npos || out.size() == CodeSymbols) {
            return std::nullopt;
        }
        out.push_back(c);
    }
    if (out.size() != CodeSymbols) {
        return std::nullopt;
    }
    return out;
}

struct DigestContextDeleter {
    void operator()(EVP_MD_CTX* context) const { EVP_MD_CTX_free(context); }
};
using DigestContext = std::unique_ptr<EVP_MD_CTX, DigestContextDeleter>;

std::array<std::uint8_t, DigestBytes> saltedDigest(std::span<const std::uint8_t> salt,
                                                   std::string_view normalised) {
    std::array<std::uint8_t, DigestBytes> digest{};
    const DigestContext context(EVP_MD_CTX_new());
    unsigned int length = 0;
    if (!context || EVP_DigestInit_ex(context.get(), EVP_sha256(), nullptr) != 1 ||
        EVP_DigestUpdate(context.get(), salt.data(), salt.size()) != 1 ||
        EVP_DigestUpdate(context.get(), normalised.data(), normalised.size()) != 1 ||
        EVP_DigestFinal_ex(context.get(), digest.data(), &length) != 1 || length != DigestBytes) {
        throw Error("cannot hash a recovery code: openssl failure");
    }
    return digest;
}

}  // namespace

std::vector<std::string> generateRecoveryCodes(int count) {
    if (count < 0 || count > MaxCodes) {
        throw Error("cannot generate " + std::to_string(count) + " recovery codes: must be 0.." +
                    std::to_string(MaxCodes));
    }
    std::vector<std::string> codes;
    codes.reserve(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i) {
        const SecretBytes random = generateSecret(CodeBytes);
        std::string code;
        std::uint32_t buffer = 0;
        int bits = 0;
        for (const std::uint8_t byte : random.bytes()) {
            buffer = (buffer << 8) | byte;
            bits += 8;
            while (bits >= 5) {
                bits -= 5;
                if (!code.empty() && (code.size() + 1) % (GroupSize + 1) == 0) {
                    code.push_back('-');
                }
                code.push_back(Alphabet[(buffer >> bits) & 0x1f]);
            }
            buffer &= (1u << bits) - 1;
        }
        codes.push_back(std::move(code));
    }
    return codes;
}

bool looksLikeRecoveryCode(std::string_view text) {
    return normalise(text).has_value();
}

std::string hashRecoveryCode(std::string_view code) {
    const std::optional<std::string> normalised = normalise(code);
    if (!normalised) {
        throw Error("cannot hash a malformed recovery code");
    }
    const SecretBytes salt = generateSecret(SaltBytes);
    const auto digest = saltedDigest(salt.bytes(), *normalised);
    return hex::encode(salt.bytes()) + "$" + hex::encode(digest);
}

bool matchesRecoveryCode(std::string_view code, std::string_view storedHash) {
    const std::optional<std::string> normalised = normalise(code);
    const std::size_t dollar = storedHash.find('$');
    if (!normalised || dollar == std::string_view::npos) {
        return false;
    }
    const auto salt = hex::decode(storedHash.substr(0, dollar));
    const auto expected = hex::decode(storedHash.substr(dollar + 1));
    if (!salt || !expected || salt->size() != SaltBytes || expected->size() != DigestBytes) {
        return false;
    }
    const auto digest = saltedDigest(*salt, *normalised);
    return constantTimeEquals(digest, *expected);
}

}  // namespace twostep::core
