/// The master key that seals TOTP secrets at rest (AES-256-GCM), read from a file.
#pragma once

#include <array>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "core/Secret.hpp"

namespace twostep::core {

/// A 256-bit key, wiped on destruction. Move-only.
class MasterKey {
public:
    static constexpr std::size_t Size = 32;

    /// Reads a key file holding 32 raw bytes or their base64 (surrounding whitespace ignored).
    /// @throw KeyError when the file is missing or unreadable, is readable or writable by group or
    /// others, or does not hold exactly 32 bytes; the message names the file, never the key.
    static MasterKey fromFile(const std::filesystem::path& path);

    /// A fresh random key from the CSPRNG.
    static MasterKey generate();

    /// Writes the key as base64 to a new file with mode 0600.
    /// @throw KeyError when the file already exists (a key is never overwritten) or cannot be
    /// written.
    void writeNewFile(const std::filesystem::path& path) const;

    /// A short public identifier of the key (hex of a keyed hash); lets the store refuse a
    /// database sealed under a different key before any secret is touched.
    std::string fingerprint() const;

    std::span<const std::uint8_t> bytes() const { return key_.bytes(); }

private:
    explicit MasterKey(SecretBytes key) : key_(std::move(key)) {}
    SecretBytes key_;
};

/// Seals and opens secrets with AES-256-GCM. The username is the associated data, so a sealed
/// secret copied into another user's row does not open. Thread-safe (no mutable state).
class Sealer {
public:
    explicit Sealer(MasterKey key) : key_(std::move(key)) {}

    /// Format: version byte 0x01 | 12-byte random nonce | ciphertext | 16-byte tag.
    std::string seal(const SecretBytes& secret, std::string_view username) const;

    /// @throw KeyError("cannot open the secret of user 'U': wrong master key or tampered data")
    /// when authentication fails; never returns garbage.
    SecretBytes open(std::string_view sealed, std::string_view username) const;

    const MasterKey& key() const { return key_; }

private:
    MasterKey key_;
};

}  // namespace twostep::core
