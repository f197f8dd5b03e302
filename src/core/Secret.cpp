#include "core/Secret.hpp"

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include <climits>
#include <string>
#include <utility>

#include "core/Error.hpp"

namespace twostep::core {

SecretBytes::SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) {
    other.wipe();
}

SecretBytes& SecretBytes::operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
        wipe();
        bytes_ = std::move(other.bytes_);
        other.wipe();
    }
    return *this;
}

SecretBytes::~SecretBytes() {
    wipe();
}

void SecretBytes::wipe() noexcept {
    if (!bytes_.empty()) {
        OPENSSL_cleanse(bytes_.data(), bytes_.size());
    }
    bytes_.clear();
}

SecretBytes generateSecret(std::size_t bytes) {
    if (bytes == 0 || bytes > static_cast<std::size_t>(INT_MAX)) {
        throw Error("cannot generate a secret of " + std::to_string(bytes) + " bytes");
    }
    std::vector<std::uint8_t> buffer(bytes);
    if (RAND_bytes(buffer.data(), static_cast<int>(bytes)) != 1) {
        OPENSSL_cleanse(buffer.data(), buffer.size());  // may hold part of a secret
        throw Error("cannot generate a secret: the openssl random generator failed");
    }
    return SecretBytes(std::move(buffer));
}

bool constantTimeEquals(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
    if (a.size() != b.size()) {
        return false;
    }
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

bool constantTimeEquals(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) {
        return false;
    }
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace twostep::core
