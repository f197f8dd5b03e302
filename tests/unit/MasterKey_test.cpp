#include "core/MasterKey.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "core/Base32.hpp"
#include "core/Error.hpp"
#include "support/TempDir.hpp"

using namespace twostep::core;
using twostep::test::TempDir;
namespace fs = std::filesystem;

namespace {

void writeFile(const fs::path& path, std::string_view content, fs::perms mode) {
    {
        std::ofstream out(path, std::ios::binary | std::ios::trunc);
        out.write(content.data(), static_cast<std::streamsize>(content.size()));
        REQUIRE(out.good());
    }
    fs::permissions(path, mode);
}

std::string readFile(const fs::path& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

bool sameBytes(std::span<const std::uint8_t> bytes, std::string_view expected) {
    return std::equal(bytes.begin(), bytes.end(), expected.begin(), expected.end(),
                      [](std::uint8_t a, char b) { return a == static_cast<std::uint8_t>(b); });
}

std::string quoted(const fs::path& path) {
    return "'" + path.string() + "'";
}

std::string rawKey(std::uint8_t first) {
    std::string key;
    for (int i = 0; i < 32; ++i) {
        key.push_back(static_cast<char>(first + i));
    }
    return key;
}

// base64 of the bytes 0x00..0x1f, as `openssl base64` writes it.
constexpr std::string_view KeyZeroToThirtyOneBase64 =
    "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

constexpr auto OwnerOnly = fs::perms::owner_read | fs::perms::owner_write;

bool contains(std::string_view haystack, std::span<const std::uint8_t> needle) {
    const auto* begin = reinterpret_cast<const std::uint8_t*>(haystack.data());
    return std::search(begin, begin + haystack.size(), needle.begin(), needle.end()) !=
           begin + haystack.size();
}

std::string sealedOpenError(const Sealer& sealer, std::string_view sealed,
                            std::string_view username) {
    try {
        (void)sealer.open(sealed, username);
    } catch (const twostep::KeyError& error) {
        return error.what();
    }
    FAIL("open did not throw KeyError");
    return {};
}

}  // namespace

TEST_CASE("a key file of 32 raw bytes is used as is", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    writeFile(path, rawKey(0), OwnerOnly);
    const MasterKey key = MasterKey::fromFile(path);
    CHECK(sameBytes(key.bytes(), rawKey(0)));
}

TEST_CASE("a raw key whose bytes look like whitespace is not trimmed", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    std::string key(32, ' ');
    key[0] = '\n';
    key[31] = '\t';
    writeFile(path, key, OwnerOnly);
    const MasterKey loaded = MasterKey::fromFile(path);
    CHECK(sameBytes(loaded.bytes(), key));
}

TEST_CASE("a key file in base64 is decoded, surrounding whitespace ignored", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    const auto text = GENERATE(as<std::string>{}, std::string(KeyZeroToThirtyOneBase64),
                               std::string(KeyZeroToThirtyOneBase64) + "\n",
                               "  " + std::string(KeyZeroToThirtyOneBase64) + "\r\n\n");
    writeFile(path, text, OwnerOnly);
    const MasterKey key = MasterKey::fromFile(path);
    CHECK(sameBytes(key.bytes(), rawKey(0)));
}

TEST_CASE("a key file readable by owner only (0400) is accepted", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    writeFile(path, rawKey(7), fs::perms::owner_read);
    CHECK(MasterKey::fromFile(path).bytes().size() == 32);
}

TEST_CASE("a key file open to group or others is refused with a chmod hint", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    const auto [mode, shown] = GENERATE(table<fs::perms, std::string>({
        {OwnerOnly | fs::perms::group_read | fs::perms::others_read, "0644"},
        {OwnerOnly | fs::perms::group_read, "0640"},
        {OwnerOnly | fs::perms::others_read, "0604"},
        {OwnerOnly | fs::perms::group_write, "0620"},
        {OwnerOnly | fs::perms::others_exec, "0601"},
    }));
    writeFile(path, rawKey(0), mode);
    CHECK_THROWS_MATCHES(MasterKey::fromFile(path), twostep::KeyError,
                         Catch::Message("master key file " + quoted(path) +
                                        " is accessible by group or others (mode " + shown +
                                        "); run chmod 600 " + quoted(path)));
}

TEST_CASE("a missing key file is a clear error", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "missing";
    CHECK_THROWS_MATCHES(MasterKey::fromFile(path), twostep::KeyError,
                         Catch::Message("master key file " + quoted(path) + " does not exist"));
}

TEST_CASE("a directory is not a key file", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "sub";
    fs::create_directory(path);
    CHECK_THROWS_MATCHES(
        MasterKey::fromFile(path), twostep::KeyError,
        Catch::Message("master key file " + quoted(path) + " is not a regular file"));
}

TEST_CASE("a key file behind a symlink is followed, as Kubernetes mounts Secrets", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    writeFile(dir / "real", rawKey(3), OwnerOnly);
    fs::create_symlink(dir / "real", dir / "link");
    const MasterKey key = MasterKey::fromFile(dir / "link");
    CHECK(sameBytes(key.bytes(), rawKey(3)));
}

TEST_CASE("key files of the wrong size or encoding are refused", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    // The table is built once while each run gets a new TempDir: "@" stands for the path.
    const std::string p = "@";
    const std::string shortRaw = std::string("\x00\x01\x02\xff", 4) + std::string(12, '\x80');
    const auto [content, message] = GENERATE_COPY(table<std::string, std::string>({
        {"", "master key file " + p + " is empty"},
        {" \n\t\n", "master key file " + p + " is empty"},
        {shortRaw,
         "master key file " + p + " holds neither 32 raw bytes nor their base64 (found 16 bytes)"},
        {std::string(33, '\x01'), "master key file " + p +
                                      " holds neither 32 raw bytes nor their base64 (found 33 "
                                      "bytes)"},
        // base64 of 16 bytes: a 128-bit key is too short for AES-256.
        {"AAECAwQFBgcICQoLDA0ODw==\n",
         "master key file " + p + " holds a 16-byte key in base64; expected 32 bytes"},
        // base64 of 48 bytes: too long.
        {std::string(64, 'A') + "\n",
         "master key file " + p + " holds a 48-byte key in base64; expected 32 bytes"},
        // 32-byte base64 without its padding, with a bad character, or with bits left over.
        {"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8\n",
         "master key file " + p + " holds neither 32 raw bytes nor their base64 (found 44 bytes)"},
        {"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh!=\n",
         "master key file " + p + " holds neither 32 raw bytes nor their base64 (found 45 bytes)"},
        {"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh9=\n",
         "master key file " + p + " holds neither 32 raw bytes nor their base64 (found 45 bytes)"},
        {"AAECAwQFBgcICQoL DA0ODxAREhMUFRYXGBkaGxwdHh8=\n",
         "master key file " + p + " holds neither 32 raw bytes nor their base64 (found 46 bytes)"},
        {std::string(5000, 'A'), "master key file " + p + " is too large to hold a key"},
    }));
    CAPTURE(content.size());
    writeFile(path, content, OwnerOnly);
    std::string expected = message;
    expected.replace(expected.find('@'), 1, quoted(path));
    CHECK_THROWS_MATCHES(MasterKey::fromFile(path), twostep::KeyError, Catch::Message(expected));
}

TEST_CASE("writeNewFile creates a 0600 base64 file that loads back", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    const MasterKey key = MasterKey::generate();
    // Even a permissive umask must not widen the file's mode.
    const mode_t previous = ::umask(0);
    key.writeNewFile(path);
    ::umask(previous);

    struct stat info {};
    REQUIRE(::stat(path.c_str(), &info) == 0);
    CHECK((info.st_mode & 07777) == 0600);
    const std::string text = readFile(path);
    REQUIRE(text.size() == 45);
    CHECK(text.back() == '\n');
    CHECK(text[43] == '=');

    const MasterKey loaded = MasterKey::fromFile(path);
    CHECK(std::equal(loaded.bytes().begin(), loaded.bytes().end(), key.bytes().begin(),
                     key.bytes().end()));
    CHECK(loaded.fingerprint() == key.fingerprint());
}

TEST_CASE("writeNewFile with a restrictive umask still gives the owner read and write",
          "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    const mode_t previous = ::umask(0277);
    MasterKey::generate().writeNewFile(path);
    ::umask(previous);
    struct stat info {};
    REQUIRE(::stat(path.c_str(), &info) == 0);
    CHECK((info.st_mode & 07777) == 0600);
}

TEST_CASE("writeNewFile never overwrites an existing file", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    writeFile(path, "precious", OwnerOnly);
    CHECK_THROWS_MATCHES(MasterKey::generate().writeNewFile(path), twostep::KeyError,
                         Catch::Message("master key file " + quoted(path) +
                                        " already exists; refusing to overwrite it"));
    CHECK(readFile(path) == "precious");
}

TEST_CASE("writeNewFile does not follow a planted symlink", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path target = dir / "elsewhere";
    const fs::path path = dir / "key";
    fs::create_symlink(target, path);
    CHECK_THROWS_AS(MasterKey::generate().writeNewFile(path), twostep::KeyError);
    CHECK_FALSE(fs::exists(target));
}

TEST_CASE("writeNewFile into a missing directory is a clear error", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "no-such-dir" / "key";
    CHECK_THROWS_MATCHES(MasterKey::generate().writeNewFile(path), twostep::KeyError,
                         Catch::Message("cannot create master key file " + quoted(path) +
                                        ": no such file or directory"));
}

TEST_CASE("the fingerprint is a keyed hash, stable per key", "[masterkey]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    writeFile(path, rawKey(0), OwnerOnly);
    // HMAC-SHA256(0x00..0x1f, "twostep key fingerprint v1"), first 64 bits, computed with
    // `openssl dgst -sha256 -mac HMAC -macopt hexkey:000102...1f`.
    CHECK(MasterKey::fromFile(path).fingerprint() == "5db6f0285b58d387");

    const MasterKey a = MasterKey::generate();
    const MasterKey b = MasterKey::generate();
    CHECK(a.fingerprint().size() == 16);
    CHECK(a.fingerprint() == a.fingerprint());
    CHECK(a.fingerprint() != b.fingerprint());
    CHECK_FALSE(std::equal(a.bytes().begin(), a.bytes().end(), b.bytes().begin(), b.bytes().end()));
}

TEST_CASE("sealed secrets open again under the same key and username", "[sealer]") {
    const Sealer sealer(MasterKey::generate());
    const auto size = GENERATE(as<std::size_t>{}, 1, 20, 33, 64);
    const SecretBytes secret = generateSecret(size);
    const std::string sealed = sealer.seal(secret, "alice");
    REQUIRE(sealed.size() == 1 + 12 + size + 16);
    CHECK(sealed[0] == '\x01');
    const SecretBytes opened = sealer.open(sealed, "alice");
    CHECK(constantTimeEquals(opened.bytes(), secret.bytes()));
}

TEST_CASE("sealing twice gives different blobs (fresh nonce)", "[sealer]") {
    const Sealer sealer(MasterKey::generate());
    const SecretBytes secret = generateSecret();
    CHECK(sealer.seal(secret, "alice") != sealer.seal(secret, "alice"));
}

TEST_CASE("a secret sealed under one key file opens after reloading that file", "[sealer]") {
    const TempDir dir("twostep-masterkey");
    const fs::path path = dir / "key";
    MasterKey::generate().writeNewFile(path);
    const SecretBytes secret = generateSecret();
    const std::string sealed = Sealer(MasterKey::fromFile(path)).seal(secret, "alice");
    const SecretBytes opened = Sealer(MasterKey::fromFile(path)).open(sealed, "alice");
    CHECK(constantTimeEquals(opened.bytes(), secret.bytes()));
}

TEST_CASE("the sealed blob does not contain the secret", "[sealer]") {
    const Sealer sealer(MasterKey::generate());
    const SecretBytes secret = generateSecret();
    const std::string sealed = sealer.seal(secret, "alice");
    CHECK_FALSE(contains(sealed, secret.bytes()));
    CHECK_FALSE(contains(sealed, secret.bytes().subspan(0, 8)));
    CHECK(sealed.find(base32::encode(secret.bytes())) == std::string::npos);
}

TEST_CASE("a wrong master key is a clear error, not garbage", "[sealer]") {
    const SecretBytes secret = generateSecret();
    const std::string sealed = Sealer(MasterKey::generate()).seal(secret, "alice");
    const std::string message = sealedOpenError(Sealer(MasterKey::generate()), sealed, "alice");
    CHECK(message == "cannot open the secret of user 'alice': wrong master key or tampered data");
    CHECK_FALSE(contains(message, secret.bytes()));
    CHECK(message.find(base32::encode(secret.bytes())) == std::string::npos);
}

TEST_CASE("a sealed secret copied to another user does not open", "[sealer]") {
    const Sealer sealer(MasterKey::generate());
    const std::string sealed = sealer.seal(generateSecret(), "alice");
    CHECK(sealedOpenError(sealer, sealed, "bob") ==
          "cannot open the secret of user 'bob': wrong master key or tampered data");
    CHECK(sealedOpenError(sealer, sealed, "alice ") ==
          "cannot open the secret of user 'alice ': wrong master key or tampered data");
    CHECK(sealedOpenError(sealer, sealed, "") ==
          "cannot open the secret of user '': wrong master key or tampered data");
}

TEST_CASE("any flipped bit in a sealed secret is detected", "[sealer]") {
    const Sealer sealer(MasterKey::generate());
    const std::string sealed = sealer.seal(generateSecret(), "alice");
    for (std::size_t i = 0; i < sealed.size(); ++i) {
        for (int bit = 0; bit < 8; ++bit) {
            std::string tampered = sealed;
            tampered[i] = static_cast<char>(tampered[i] ^ (1 << bit));
            CAPTURE(i, bit);
            CHECK(sealedOpenError(sealer, tampered, "alice") ==
                  "cannot open the secret of user 'alice': wrong master key or tampered data");
        }
    }
}

TEST_CASE("truncated, extended or foreign blobs are refused", "[sealer]") {
    const Sealer sealer(MasterKey::generate());
    const std::string sealed = sealer.seal(generateSecret(), "alice");
    const std::string expected =
        "cannot open the secret of user 'alice': wrong master key or tampered data";
    for (std::size_t length = 0; length < sealed.size(); ++length) {
        CAPTURE(length);
        CHECK(sealedOpenError(sealer, sealed.substr(0, length), "alice") == expected);
    }
    CHECK(sealedOpenError(sealer, sealed + '\0', "alice") == expected);
    std::string otherVersion = sealed;
    otherVersion[0] = '\x02';
    CHECK(sealedOpenError(sealer, otherVersion, "alice") == expected);
}

TEST_CASE("an empty secret seals and opens (the length is not special)", "[sealer]") {
    const Sealer sealer(MasterKey::generate());
    const std::string sealed = sealer.seal(SecretBytes(), "alice");
    CHECK(sealed.size() == 29);
    CHECK(sealer.open(sealed, "alice").empty());
    CHECK(sealedOpenError(sealer, sealed, "bob") ==
          "cannot open the secret of user 'bob': wrong master key or tampered data");
}
