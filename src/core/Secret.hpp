/// TOTP secrets in memory: generated from OpenSSL's CSPRNG, wiped when freed, compared in constant
/// time.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

namespace twostep::core {

/// Raw secret bytes that are zeroed (OPENSSL_cleanse) on destruction. Move-only.
class SecretBytes {
public:
    SecretBytes() = default;
    explicit SecretBytes(std::vector<std::uint8_t> bytes) : bytes_(std::move(bytes)) {}
    SecretBytes(const SecretBytes&) = delete;
    SecretBytes& operator=(const SecretBytes&) = delete;
    SecretBytes(SecretBytes&& other) noexcept;
    SecretBytes& operator=(SecretBytes&& other) noexcept;
    ~SecretBytes();

    std::span<const std::uint8_t> bytes() const { return bytes_; }
    std::size_t size() const { return bytes_.size(); }
    bool empty() const { return bytes_.empty(); }

private:
    void wipe() noexcept;
    std::vector<std::uint8_t> bytes_;
};

/// Default secret size: 160 bits, the HMAC-SHA1 block RFC 4226 recommends.
inline constexpr std::size_t DefaultSecretBytes = 20;
/// Smallest secret accepted on import: RFC 4226 §4 requires at least 128 bits.
inline constexpr std::size_t MinSecretBytes = 16;

/// A fresh random secret from OpenSSL's CSPRNG. @throw twostep::Error if the CSPRNG fails.
SecretBytes generateSecret(std::size_t bytes = DefaultSecretBytes);

/// Constant-time equality (CRYPTO_memcmp); the length is not secret.
bool constantTimeEquals(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b);
/// Constant-time equality of two strings; the length is not secret.
bool constantTimeEquals(std::string_view a, std::string_view b);

}  // namespace twostep::core
