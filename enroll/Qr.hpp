/// QR codes for otpauth URIs (libqrencode) and their three renderings: terminal, PNG and SVG.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace twostep::enroll {

/// An encoded QR symbol (error correction level M, 8-bit mode): the module matrix copied out of
/// libqrencode's QRcode, which is freed at once. Immutable.
class QrCode {
public:
    /// Modules of light margin around the symbol, as ISO/IEC 18004 requires.
    static constexpr int QuietZone = 4;

    /// Encodes `text` in the smallest version that fits.
    /// @throw twostep::Error when libqrencode fails (text too long, or out of memory).
    static QrCode encode(std::string_view text);

    /// Modules per side, without the quiet zone.
    int size() const;
    /// Whether the module at column x, row y is dark; false outside the symbol (quiet zone).
    bool dark(int x, int y) const;

private:
    QrCode(int size, std::vector<bool> modules) : size_(size), modules_(std::move(modules)) {}
    int size_;
    std::vector<bool> modules_;  ///< row-major, true = dark
};

/// The symbol as UTF-8 half blocks (two module rows per text line) with the quiet zone, drawn
/// black on white with explicit ANSI colours so it scans on dark and light terminal themes alike.
std::string renderTerminal(const QrCode& code);

/// A 1-bit greyscale PNG, `scale` pixels per module, quiet zone included. Written without zlib:
/// the image data uses stored (uncompressed) deflate blocks, which every PNG decoder reads.
std::vector<std::uint8_t> renderPng(const QrCode& code, int scale = 8);

/// A standalone SVG: one unit per module (viewBox includes the quiet zone), a white background
/// and one `M x y h1v1h-1z` subpath per dark module.
std::string renderSvg(const QrCode& code, int pixelsPerModule = 8);

}  // namespace twostep::enroll
