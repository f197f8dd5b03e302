#include "core/MasterKey.hpp"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cctype>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <system_error>
#include <utility>
#include <vector>

#include "core/Error.hpp"
#include "core/Hex.hpp"

namespace twostep::core {
namespace {

constexpr std::uint8_t SealVersion = 0x01;
constexpr std::size_t NonceSize = 12;
constexpr std::size_t TagSize = 16;
/// A key file is 32 bytes or 44 characters of base64; anything much larger is not a key file.
constexpr std::size_t MaxKeyFileBytes = 1024;
constexpr std::string_view FingerprintLabel = "twostep key fingerprint v1";

/// A file descriptor closed on scope exit.
class FileDescriptor {
public:
    explicit FileDescriptor(int fd) : fd_(fd) {}
    FileDescriptor(const FileDescriptor&) = delete;
    FileDescriptor& operator=(const FileDescriptor&) = delete;
    ~FileDescriptor() {
        if (fd_ >= 0) {
            ::close(fd_);  // read-only use, or already fsync'ed and checked: nothing to report
        }
    }
    int get() const { return fd_; }
    /// Closes now and reports failure (a write may only fail at close on some filesystems).
    bool close() {
        const int fd = std::exchange(fd_, -1);
        return ::close(fd) == 0;
    }

private:
    int fd_;
};

/// Zeroes `bytes` (OPENSSL_cleanse cannot be optimised away).
void wipe(std::vector<std::uint8_t>& bytes) {
    if (!bytes.empty()) {
        OPENSSL_cleanse(bytes.data(), bytes.size());
    }
}

/// Bytes that are wiped when they go out of scope (the key file's contents).
class WipedBuffer {
public:
    WipedBuffer() = default;
    WipedBuffer(const WipedBuffer&) = delete;
    WipedBuffer& operator=(const WipedBuffer&) = delete;
    ~WipedBuffer() { wipe(bytes_); }
    std::vector<std::uint8_t>& bytes() { return bytes_; }

private:
    std::vector<std::uint8_t> bytes_;
};

struct CipherContextDeleter {
    void operator()(EVP_CIPHER_CTX* context) const { EVP_CIPHER_CTX_free(context); }
};
using CipherContext = std::unique_ptr<EVP_CIPHER_CTX, CipherContextDeleter>;

std::string quoted(const std::filesystem::path& path) {
    return "'" + path.string() + "'";
}

/// strerror text with a lowercase first letter, to match the style of our messages.
std::string describeErrno(int error) {
    std::string text = std::error_code(error, std::generic_category()).message();
    if (!text.empty()) {
        text[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(text[0])));
    }
    return text;
}

bool isSpace(std::uint8_t byte) {
    return byte == ' ' || byte == '\t' || byte == '\n' || byte == '\r' || byte == '\v' ||
           byte == '\f';
}

int base64Value(std::uint8_t c) {
    if (c >= 'A' && c <= 'Z') {
        return c - 'A';
    }
    if (c >= 'a' && c <= 'z') {
        return c - 'a' + 26;
    }
    if (c >= '0' && c <= '9') {
        return c - '0' + 52;
    }
    if (c == '+') {
        return 62;
    }
    if (c == '/') {
        return 63;
    }
    return -1;
}

/// Strict RFC 4648 base64 with padding (what `writeNewFile` and `openssl rand -base64` write).
/// OpenSSL's EVP_DecodeBlock is not used: it skips stray whitespace and pads the output.
std::optional<SecretBytes> decodeBase64(std::span<const std::uint8_t> text) {
    if (text.empty() || text.size() % 4 != 0) {
        return std::nullopt;
    }
    std::size_t padding = 0;
    if (text.back() == '=') {
        padding = text[text.size() - 2] == '=' ? 2 : 1;
    }
    std::vector<std::uint8_t> out;
    out.reserve(text.size() / 4 * 3);
    std::uint32_t buffer = 0;
    int bits = 0;
    for (std::size_t i = 0; i < text.size() - padding; ++i) {
        const int value = base64Value(text[i]);
        if (value < 0) {
            wipe(out);
            return std::nullopt;
        }
        buffer = (buffer << 6) | static_cast<std::uint32_t>(value);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out.push_back(static_cast<std::uint8_t>((buffer >> bits) & 0xff));
            buffer &= (1u << bits) - 1;
        }
    }
    // Leftover bits must be zero, or two texts would name the same key.
    if (buffer != 0) {
        wipe(out);
        return std::nullopt;
    }
    return SecretBytes(std::move(out));
}

std::string encodeBase64(std::span<const std::uint8_t> bytes) {
    std::string out(4 * ((bytes.size() + 2) / 3) + 1, '\0');
    const int written = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes.data(),
                                        static_cast<int>(bytes.size()));
    out.resize(static_cast<std::size_t>(written));
    return out;
}

/// Reads at most MaxKeyFileBytes + 1 bytes, so an oversized file is noticed without reading it all.
void readKeyFile(int fd, const std::filesystem::path& path, std::vector<std::uint8_t>& out) {
    out.resize(MaxKeyFileBytes + 1);
    std::size_t filled = 0;
    while (filled < out.size()) {
        const ssize_t got = ::read(fd, out.data() + filled, out.size() - filled);
        if (got < 0 && errno == EINTR) {
            continue;
        }
        if (got < 0) {
            throw KeyError("cannot read master key file " + quoted(path) + ": " +
                           describeErrno(errno));
        }
        if (got == 0) {
            break;
        }
        filled += static_cast<std::size_t>(got);
    }
    out.resize(filled);
}

[[noreturn]] void throwSealFailure(std::string_view username) {
    throw Error("cannot seal the secret of user '" + std::string(username) + "': openssl failure");
}

/// Removes the half-written key file (it would later fail to load) and reports why.
[[noreturn]] void throwWriteFailure(const std::filesystem::path& path, std::string_view what,
                                    int error) {
    ::unlink(path.c_str());
    throw KeyError("cannot " + std::string(what) + " master key file " + quoted(path) + ": " +
                   describeErrno(error));
}

[[noreturn]] void throwOpenFailure(std::string_view username) {
    throw KeyError("cannot open the secret of user '" + std::string(username) +
                   "': wrong master key or tampered data");
}

}  // namespace

MasterKey MasterKey::fromFile(const std::filesystem::path& path) {
    // Symlinks are followed on purpose: Kubernetes mounts Secret files through them.
    const FileDescriptor fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) {
        const int error = errno;
        if (error == ENOENT) {
            throw KeyError("master key file " + quoted(path) + " does not exist");
        }
        throw KeyError("cannot open master key file " + quoted(path) + ": " + describeErrno(error));
    }
    // fstat on the open descriptor: the mode checked is the mode of the file read.
    struct stat info {};
    if (::fstat(fd.get(), &info) != 0) {
        throw KeyError("cannot stat master key file " + quoted(path) + ": " + describeErrno(errno));
    }
    if (!S_ISREG(info.st_mode)) {
        throw KeyError("master key file " + quoted(path) + " is not a regular file");
    }
    if ((info.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(info.st_mode & 07777));
        throw KeyError("master key file " + quoted(path) + " is accessible by group or others " +
                       "(mode " + mode + "); run chmod 600 " + quoted(path));
    }

    WipedBuffer content;
    readKeyFile(fd.get(), path, content.bytes());
    if (content.bytes().size() > MaxKeyFileBytes) {
        throw KeyError("master key file " + quoted(path) + " is too large to hold a key");
    }
    std::span<const std::uint8_t> data = content.bytes();
    // Exactly 32 bytes is a raw key, used as is: random bytes may well look like whitespace.
    if (data.size() == Size) {
        return MasterKey(SecretBytes(std::vector<std::uint8_t>(data.begin(), data.end())));
    }
    while (!data.empty() && isSpace(data.front())) {
        data = data.subspan(1);
    }
    while (!data.empty() && isSpace(data.back())) {
        data = data.subspan(0, data.size() - 1);
    }
    if (data.empty()) {
        throw KeyError("master key file " + quoted(path) + " is empty");
    }
    std::optional<SecretBytes> decoded = decodeBase64(data);
    if (!decoded) {
        throw KeyError("master key file " + quoted(path) + " holds neither 32 raw bytes nor " +
                       "their base64 (found " + std::to_string(content.bytes().size()) + " bytes)");
    }
    if (decoded->size() != Size) {
        throw KeyError("master key file " + quoted(path) + " holds a " +
                       std::to_string(decoded->size()) + "-byte key in base64; expected 32 bytes");
    }
    return MasterKey(std::move(*decoded));
}

MasterKey MasterKey::generate() {
    return MasterKey(generateSecret(Size));
}

void MasterKey::writeNewFile(const std::filesystem::path& path) const {
    // O_EXCL: a key is never overwritten, since every secret sealed under it would be lost.
    // O_NOFOLLOW: a planted symlink must not redirect the new key somewhere else.
    FileDescriptor fd(
        ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (fd.get() < 0) {
        const int error = errno;
        if (error == EEXIST) {
            throw KeyError("master key file " + quoted(path) +
                           " already exists; refusing to overwrite it");
        }
        throw KeyError("cannot create master key file " + quoted(path) + ": " +
                       describeErrno(error));
    }
    // The umask may have removed bits from 0600; the owner needs exactly read and write.
    if (::fchmod(fd.get(), 0600) != 0) {
        throwWriteFailure(path, "set the mode of", errno);
    }
    std::string text = encodeBase64(bytes()) + "\n";
    std::size_t written = 0;
    while (written < text.size()) {
        const ssize_t put = ::write(fd.get(), text.data() + written, text.size() - written);
        if (put < 0 && errno == EINTR) {
            continue;
        }
        if (put < 0) {
            const int error = errno;
            OPENSSL_cleanse(text.data(), text.size());
            throwWriteFailure(path, "write", error);
        }
        written += static_cast<std::size_t>(put);
    }
    OPENSSL_cleanse(text.data(), text.size());
    if (::fsync(fd.get()) != 0) {
        throwWriteFailure(path, "sync", errno);
    }
    if (!fd.close()) {
        throwWriteFailure(path, "close", errno);
    }
}

std::string MasterKey::fingerprint() const {
    std::array<std::uint8_t, EVP_MAX_MD_SIZE> digest{};
    unsigned int length = 0;
    if (HMAC(EVP_sha256(), bytes().data(), static_cast<int>(bytes().size()),
             reinterpret_cast<const unsigned char*>(FingerprintLabel.data()),
             FingerprintLabel.size(), digest.data(), &length) == nullptr) {
        throw Error("cannot compute the master key fingerprint: openssl failure");
    }
    // 64 bits identify a key among the few an operator has; they reveal nothing about it.
    return hex::encode(std::span<const std::uint8_t>(digest.data(), 8));
}

std::string Sealer::seal(const SecretBytes& secret, std::string_view username) const {
    if (secret.size() > static_cast<std::size_t>(INT_MAX / 2) ||
        username.size() > static_cast<std::size_t>(INT_MAX)) {
        throwSealFailure(username);
    }
    std::string sealed(1 + NonceSize + secret.size() + TagSize, '\0');
    auto* out = reinterpret_cast<unsigned char*>(sealed.data());
    out[0] = SealVersion;
    unsigned char* nonce = out + 1;
    unsigned char* cipherText = nonce + NonceSize;
    unsigned char* tag = cipherText + secret.size();
    // A random 96-bit nonce per seal: GCM stays safe for far more seals than a cluster has users.
    if (RAND_bytes(nonce, static_cast<int>(NonceSize)) != 1) {
        throwSealFailure(username);
    }

    const CipherContext context(EVP_CIPHER_CTX_new());
    int length = 0;
    if (!context ||
        EVP_EncryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, key_.bytes().data(), nonce) !=
            1 ||
        EVP_EncryptUpdate(context.get(), nullptr, &length,
                          reinterpret_cast<const unsigned char*>(username.data()),
                          static_cast<int>(username.size())) != 1 ||
        EVP_EncryptUpdate(context.get(), cipherText, &length, secret.bytes().data(),
                          static_cast<int>(secret.size())) != 1 ||
        EVP_EncryptFinal_ex(context.get(), cipherText + length, &length) != 1 ||
        EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(TagSize), tag) !=
            1) {
        throwSealFailure(username);
    }
    return sealed;
}

SecretBytes Sealer::open(std::string_view sealed, std::string_view username) const {
    if (sealed.size() < 1 + NonceSize + TagSize ||
        static_cast<std::uint8_t>(sealed[0]) != SealVersion ||
        sealed.size() > static_cast<std::size_t>(INT_MAX / 2) ||
        username.size() > static_cast<std::size_t>(INT_MAX)) {
        throwOpenFailure(username);
    }
    const auto* in = reinterpret_cast<const unsigned char*>(sealed.data());
    const unsigned char* nonce = in + 1;
    const unsigned char* cipherText = nonce + NonceSize;
    const std::size_t cipherSize = sealed.size() - 1 - NonceSize - TagSize;
    const unsigned char* tag = cipherText + cipherSize;

    // The tag buffer must be writable for EVP_CIPHER_CTX_ctrl.
    std::array<unsigned char, TagSize> expectedTag{};
    std::memcpy(expectedTag.data(), tag, TagSize);

    WipedBuffer plain;  // wiped on every path, including a failed authentication
    plain.bytes().resize(cipherSize);
    unsigned char* out = plain.bytes().data();

    const CipherContext context(EVP_CIPHER_CTX_new());
    int length = 0;
    if (!context ||
        EVP_DecryptInit_ex(context.get(), EVP_aes_256_gcm(), nullptr, key_.bytes().data(), nonce) !=
            1 ||
        EVP_DecryptUpdate(context.get(), nullptr, &length,
                          reinterpret_cast<const unsigned char*>(username.data()),
                          static_cast<int>(username.size())) != 1 ||
        EVP_DecryptUpdate(context.get(), out, &length, cipherText, static_cast<int>(cipherSize)) !=
            1 ||
        EVP_CIPHER_CTX_ctrl(context.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(TagSize),
                            expectedTag.data()) != 1 ||
        EVP_DecryptFinal_ex(context.get(), out + length, &length) != 1) {
        throwOpenFailure(username);
    }
    return SecretBytes(std::move(plain.bytes()));
}

}  // namespace twostep::core
