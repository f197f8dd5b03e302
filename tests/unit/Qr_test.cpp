#include "Qr.hpp"

#include <catch2/catch.hpp>

#include <fstream>
#include <cstdio>
#include <sstream>
#include <set>
#include <string>
#include <utility>

#include "Subprocess.hpp"
#include "Zbarimg.hpp"
#include "core/Error.hpp"
#include "support/TempDir.hpp"

using twostep::enroll::QrCode;

namespace {

const std::string Uri =
    "otpauth://totp/twostep:alice%40example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP"
    "&issuer=twostep&algorithm=SHA1&digits=6&period=30";

void writeFile(const std::filesystem::path& path, const std::string& data) {
    std::ofstream out(path, std::ios::binary);
    out << data;
}

/// The dark modules (symbol coordinates) according to the code itself.
std::set<std::pair<int, int>> darkModules(const QrCode& code) {
    std::set<std::pair<int, int>> dark;
    for (int y = 0; y < code.size(); ++y) {
        for (int x = 0; x < code.size(); ++x) {
            if (code.dark(x, y)) {
                dark.emplace(x, y);
            }
        }
    }
    return dark;
}


}  // namespace

TEST_CASE("a QR code has a valid version size and a quiet zone outside it", "[qr]") {
    const QrCode code = QrCode::encode(Uri);
    CHECK(code.size() >= 21);
    CHECK((code.size() - 21) % 4 == 0);
    // Finder pattern corners are dark; everything outside the symbol reads as light.
    CHECK(code.dark(0, 0));
    CHECK(code.dark(code.size() - 1, 0));
    CHECK(code.dark(0, code.size() - 1));
    CHECK_FALSE(code.dark(-1, 0));
    CHECK_FALSE(code.dark(code.size(), 0));
    CHECK_FALSE(code.dark(0, -4));
}

TEST_CASE("encoding refuses text a QR code cannot carry", "[qr]") {
    CHECK_THROWS_WITH(QrCode::encode(std::string("abc\0def", 7)),
                      "cannot encode a QR code: the text contains a NUL byte");
    CHECK_THROWS_WITH(QrCode::encode(std::string(5000, 'a')),
                      "cannot encode a QR code: the URI is too long (5000 bytes); use a shorter "
                      "issuer or username");
}

TEST_CASE("the terminal rendering holds every module, two rows per line, black on white",
          "[qr]") {
    const QrCode code = QrCode::encode(Uri);
    const std::string text = twostep::enroll::renderTerminal(code);
    const int side = code.size() + 2 * QrCode::QuietZone;
    const std::string start = "\x1b[30;47m";
    const std::string end = "\x1b[0m";

    std::vector<std::string> lines;
    std::size_t pos = 0;
    while (pos < text.size()) {
        const std::size_t newline = text.find('\n', pos);
        REQUIRE(newline != std::string::npos);
        lines.push_back(text.substr(pos, newline - pos));
        pos = newline + 1;
    }
    REQUIRE(lines.size() == static_cast<std::size_t>((side + 1) / 2));

    std::set<std::pair<int, int>> seen;
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string& line = lines[i];
        REQUIRE(line.rfind(start, 0) == 0);
        REQUIRE(line.size() >= start.size() + end.size());
        REQUIRE(line.substr(line.size() - end.size()) == end);
        const std::string body = line.substr(start.size(), line.size() - start.size() - end.size());
        int column = 0;
        for (std::size_t b = 0; b < body.size(); ++column) {
            bool top = false;
            bool bottom = false;
            if (body[b] == ' ') {
                ++b;
            } else {
                const std::string glyph = body.substr(b, 3);
                b += 3;
                top = glyph == "\u2588" || glyph == "\u2580";
                bottom = glyph == "\u2588" || glyph == "\u2584";
                REQUIRE((top || bottom));
            }
            const int x = column - QrCode::QuietZone;
            const int y = static_cast<int>(i) * 2 - QrCode::QuietZone;
            if (top) {
                seen.emplace(x, y);
            }
            if (bottom) {
                seen.emplace(x, y + 1);
            }
        }
        CHECK(column == side);
    }
    CHECK(seen == darkModules(code));
}

TEST_CASE("the PNG is a real image that zbarimg decodes back to the text", "[qr][zbar]") {
    const twostep::test::TempDir dir;
    const QrCode code = QrCode::encode(Uri);

    const auto png = twostep::enroll::renderPng(code, 8);
    REQUIRE(png.size() > 33);
    CHECK(std::string(png.begin(), png.begin() + 8) == "\x89PNG\r\n\x1a\n");
    // IHDR: width and height are the symbol plus the quiet zone, 8 pixels per module.
    const auto be32 = [&](std::size_t at) {
        return (std::uint32_t{png[at]} << 24) | (std::uint32_t{png[at + 1]} << 16) |
               (std::uint32_t{png[at + 2]} << 8) | std::uint32_t{png[at + 3]};
    };
    const auto side = static_cast<std::uint32_t>((code.size() + 8) * 8);
    CHECK(std::string(png.begin() + 12, png.begin() + 16) == "IHDR");
    CHECK(be32(16) == side);
    CHECK(be32(20) == side);

    writeFile(dir / "small.png", std::string(png.begin(), png.end()));
    CHECK(twostep::test::zbarimgDecode(dir / "small.png") == Uri);

    // A large scale needs several stored deflate blocks (each at most 65535 bytes).
    const auto big = twostep::enroll::renderPng(code, 24);
    CHECK(big.size() > 2 * 65535);
    writeFile(dir / "big.png", std::string(big.begin(), big.end()));
    CHECK(twostep::test::zbarimgDecode(dir / "big.png") == Uri);

    CHECK_THROWS_WITH(twostep::enroll::renderPng(code, 0),
                      "png scale must be 1..64 pixels per module, not 0");
}

TEST_CASE("the SVG is well-formed XML with one square per dark module", "[qr][svg]") {
    const twostep::test::TempDir dir;
    const QrCode code = QrCode::encode(Uri);
    const std::string svg = twostep::enroll::renderSvg(code);
    writeFile(dir / "code.svg", svg);

    // A real XML parser checks well-formedness and reads the geometry back.
    const std::string script =
        "import sys, xml.etree.ElementTree as E\n"
        "root = E.parse(sys.argv[1]).getroot()\n"
        "ns = '{http://www.w3.org/2000/svg}'\n"
        "assert root.tag == ns + 'svg', root.tag\n"
        "print(root.get('viewBox'))\n"
        "print(root.find(ns + 'path').get('d'))\n";
    const auto result = twostep::test::runProcess(
        {"python3", "-c", script, (dir / "code.svg").string()});
    REQUIRE(result.started);
    REQUIRE(result.exitCode == 0);
    const std::size_t newline = result.output.find('\n');
    const std::string viewBox = result.output.substr(0, newline);
    const std::string path = result.output.substr(newline + 1);
    const std::string side = std::to_string(code.size() + 8);
    CHECK(viewBox == "0 0 " + side + " " + side);

    // Each dark module is one subpath "Mx yh1v1h-1z".
    std::set<std::pair<int, int>> drawn;
    std::size_t squares = 0;
    std::istringstream subpaths(path);
    std::string subpath;
    while (std::getline(subpaths, subpath, 'M')) {
        if (subpath.empty() || subpath == "\n") {
            continue;
        }
        int x = -1;
        int y = -1;
        char tail[16] = {};
        REQUIRE(std::sscanf(subpath.c_str(), "%d %d%15s", &x, &y, tail) == 3);
        CHECK(std::string(tail) == "h1v1h-1z");
        drawn.emplace(x - QrCode::QuietZone, y - QrCode::QuietZone);
        ++squares;
    }
    const auto expected = darkModules(code);
    CHECK(squares == expected.size());
    CHECK(drawn == expected);
}
