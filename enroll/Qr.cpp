#include "Qr.hpp"

#include <qrencode.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <memory>
#include <string>

#include "core/Error.hpp"

namespace twostep::enroll {

namespace {

struct QrDeleter {
    void operator()(QRcode* code) const noexcept { QRcode_free(code); }
};

}  // namespace

QrCode QrCode::encode(std::string_view text) {
    // QRcode_encodeString reads a C string: an embedded NUL would silently truncate the URI.
    if (text.find('\0') != std::string_view::npos) {
        throw Error("cannot encode a QR code: the text contains a NUL byte");
    }
    const std::string copy(text);
    errno = 0;
    const std::unique_ptr<QRcode, QrDeleter> code(
        QRcode_encodeString(copy.c_str(), 0, QR_ECLEVEL_M, QR_MODE_8, 1));
    if (!code) {
        const int error = errno;
        if (error == ERANGE) {
            throw Error("cannot encode a QR code: the URI is too long (" +
                        std::to_string(text.size()) + " bytes); use a shorter issuer or username");
        }
        throw Error(std::string("cannot encode a QR code: ") + std::strerror(error));
    }
    const auto count = static_cast<std::size_t>(code->width) * static_cast<std::size_t>(code->width);
    std::vector<bool> modules(count);
    for (std::size_t i = 0; i < count; ++i) {
        // Bit 0 of each byte is the module colour (1 = dark); the other bits are metadata.
        modules[i] = (code->data[i] & 1U) != 0;
    }
    return QrCode(code->width, std::move(modules));
}

int QrCode::size() const { return size_; }

bool QrCode::dark(int x, int y) const {
    if (x < 0 || y < 0 || x >= size_ || y >= size_) {
        return false;
    }
    return modules_[static_cast<std::size_t>(y) * static_cast<std::size_t>(size_) +
                    static_cast<std::size_t>(x)];
}

std::string renderTerminal(const QrCode& code) {
    // Explicit black on white: without it the symbol comes out inverted on dark themes, which
    // many authenticator apps cannot scan. The colours are reset before each newline so the
    // background never bleeds into the rest of the line.
    static constexpr std::string_view Start = "\x1b[30;47m";
    static constexpr std::string_view End = "\x1b[0m";
    const int first = -QrCode::QuietZone;
    const int last = code.size() + QrCode::QuietZone;  // exclusive
    std::string out;
    for (int y = first; y < last; y += 2) {
        out += Start;
        for (int x = first; x < last; ++x) {
            const bool top = code.dark(x, y);
            // Past the last row is quiet zone as well, so light.
            const bool bottom = y + 1 < last && code.dark(x, y + 1);
            if (top && bottom) {
                out += "\u2588";  // █
            } else if (top) {
                out += "\u2580";  // ▀
            } else if (bottom) {
                out += "\u2584";  // ▄
            } else {
                out += ' ';
            }
        }
        out += End;
        out += '\n';
    }
    return out;
}

namespace {

std::uint32_t crc32(const std::uint8_t* data, std::size_t size, std::uint32_t crc = 0) {
    static const std::array<std::uint32_t, 256> Table = [] {
        std::array<std::uint32_t, 256> table{};
        for (std::uint32_t n = 0; n < 256; ++n) {
            std::uint32_t c = n;
            for (int k = 0; k < 8; ++k) {
                c = (c & 1U) != 0 ? 0xedb88320U ^ (c >> 1) : c >> 1;
            }
            table[n] = c;
        }
        return table;
    }();
    crc = ~crc;
    for (std::size_t i = 0; i < size; ++i) {
        crc = Table[(crc ^ data[i]) & 0xffU] ^ (crc >> 8);
    }
    return ~crc;
}

std::uint32_t adler32(const std::vector<std::uint8_t>& data) {
    std::uint32_t a = 1;
    std::uint32_t b = 0;
    for (const std::uint8_t byte : data) {
        a = (a + byte) % 65521U;
        b = (b + a) % 65521U;
    }
    return (b << 16) | a;
}

void putBigEndian32(std::vector<std::uint8_t>& out, std::uint32_t value) {
    out.push_back(static_cast<std::uint8_t>(value >> 24));
    out.push_back(static_cast<std::uint8_t>(value >> 16));
    out.push_back(static_cast<std::uint8_t>(value >> 8));
    out.push_back(static_cast<std::uint8_t>(value));
}

void putChunk(std::vector<std::uint8_t>& png, std::string_view type,
              const std::vector<std::uint8_t>& data) {
    putBigEndian32(png, static_cast<std::uint32_t>(data.size()));
    const std::size_t typeAt = png.size();
    png.insert(png.end(), type.begin(), type.end());
    png.insert(png.end(), data.begin(), data.end());
    putBigEndian32(png, crc32(png.data() + typeAt, png.size() - typeAt));
}

/// A zlib stream (RFC 1950) of stored deflate blocks (RFC 1951 §3.2.4): no compression needed.
std::vector<std::uint8_t> zlibStored(const std::vector<std::uint8_t>& raw) {
    std::vector<std::uint8_t> out = {0x78, 0x01};  // deflate, 32K window; (0x7801 % 31) == 0
    constexpr std::size_t MaxBlock = 65535;
    std::size_t offset = 0;
    do {
        const std::size_t length = std::min(MaxBlock, raw.size() - offset);
        const bool final = offset + length == raw.size();
        out.push_back(final ? 1 : 0);  // BFINAL, BTYPE=00 (stored)
        const auto len = static_cast<std::uint16_t>(length);
        const auto nlen = static_cast<std::uint16_t>(~len);
        out.push_back(static_cast<std::uint8_t>(len & 0xffU));
        out.push_back(static_cast<std::uint8_t>(len >> 8));
        out.push_back(static_cast<std::uint8_t>(nlen & 0xffU));
        out.push_back(static_cast<std::uint8_t>(nlen >> 8));
        out.insert(out.end(), raw.begin() + static_cast<std::ptrdiff_t>(offset),
                   raw.begin() + static_cast<std::ptrdiff_t>(offset + length));
        offset += length;
    } while (offset < raw.size());
    putBigEndian32(out, adler32(raw));
    return out;
}

}  // namespace

std::vector<std::uint8_t> renderPng(const QrCode& code, int scale) {
    if (scale < 1 || scale > 64) {
        throw Error("png scale must be 1..64 pixels per module, not " + std::to_string(scale));
    }
    const int modules = code.size() + 2 * QrCode::QuietZone;
    const auto side = static_cast<std::uint32_t>(modules * scale);
    const std::size_t rowBytes = (side + 7) / 8;

    // Scanlines: filter type 0, then 1-bit pixels, most significant bit first; 1 is white.
    std::vector<std::uint8_t> raw;
    raw.reserve((rowBytes + 1) * side);
    for (std::uint32_t py = 0; py < side; ++py) {
        raw.push_back(0);
        const std::size_t rowStart = raw.size();
        raw.resize(rowStart + rowBytes, 0);
        const int y = static_cast<int>(py) / scale - QrCode::QuietZone;
        for (std::uint32_t px = 0; px < side; ++px) {
            const int x = static_cast<int>(px) / scale - QrCode::QuietZone;
            if (!code.dark(x, y)) {
                raw[rowStart + px / 8] |= static_cast<std::uint8_t>(0x80U >> (px % 8));
            }
        }
    }

    std::vector<std::uint8_t> png = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    std::vector<std::uint8_t> header;
    putBigEndian32(header, side);
    putBigEndian32(header, side);
    header.insert(header.end(), {1, 0, 0, 0, 0});  // bit depth 1, greyscale, deflate, no interlace
    putChunk(png, "IHDR", header);
    putChunk(png, "IDAT", zlibStored(raw));
    putChunk(png, "IEND", {});
    return png;
}

std::string renderSvg(const QrCode& code, int pixelsPerModule) {
    const int modules = code.size() + 2 * QrCode::QuietZone;
    const std::string side = std::to_string(modules);
    const std::string pixels = std::to_string(modules * pixelsPerModule);
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" +
                      pixels + "\" height=\"" + pixels + "\" viewBox=\"0 0 " + side + " " + side +
                      "\" shape-rendering=\"crispEdges\">\n"
                      "<rect width=\"" +
                      side + "\" height=\"" + side + "\" fill=\"#ffffff\"/>\n<path fill=\"#000000\" d=\"";
    for (int y = 0; y < code.size(); ++y) {
        for (int x = 0; x < code.size(); ++x) {
            if (code.dark(x, y)) {
                out += 'M' + std::to_string(x + QrCode::QuietZone) + ' ' +
                       std::to_string(y + QrCode::QuietZone) + "h1v1h-1z";
            }
        }
    }
    out += "\"/>\n</svg>\n";
    return out;
}

}  // namespace twostep::enroll
