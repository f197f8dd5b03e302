#include "core/Base32.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <tuple>
#include <vector>

using namespace twostep::core;

namespace {

std::vector<std::uint8_t> bytesOf(std::string_view text) {
    return {text.begin(), text.end()};
}

}  // namespace

TEST_CASE("base32 encodes the RFC 4648 section 10 vectors without padding", "[base32]") {
    const auto [plain, encoded] = GENERATE(table<std::string, std::string>({
        {"", ""},
        {"f", "MY"},
        {"fo", "MZXQ"},
        {"foo", "MZXW6"},
        {"foob", "MZXW6YQ"},
        {"fooba", "MZXW6YTB"},
        {"foobar", "MZXW6YTBOI"},
    }));
    CAPTURE(plain);
    CHECK(base32::encode(bytesOf(plain)) == encoded);
    const auto decoded = base32::decode(encoded);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == bytesOf(plain));
}

TEST_CASE("base32 decodes the RFC 4648 section 10 vectors with their padding", "[base32]") {
    const auto [plain, padded] = GENERATE(table<std::string, std::string>({
        {"f", "MY======"},
        {"fo", "MZXQ===="},
        {"foo", "MZXW6==="},
        {"foob", "MZXW6YQ="},
        {"fooba", "MZXW6YTB"},
        {"foobar", "MZXW6YTBOI======"},
    }));
    CAPTURE(padded);
    const auto decoded = base32::decode(padded);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == bytesOf(plain));
}

TEST_CASE("base32 decoding forgives lower case and group separators", "[base32]") {
    const auto text =
        GENERATE(as<std::string>{}, "mzxw6ytboi", "MzXw6YtBoI", "MZXW 6YTB OI", "mzxw-6ytb-oi",
                 " mzxw6ytboi ", "mzxw6ytboi======", "MZXW 6YTB OI== ====");
    CAPTURE(text);
    const auto decoded = base32::decode(text);
    REQUIRE(decoded.has_value());
    CHECK(*decoded == bytesOf("foobar"));
}

TEST_CASE("base32 decoding refuses garbage", "[base32]") {
    const auto text = GENERATE(as<std::string>{},
                               "MZXW6YTBO1",         // '1' is not in the alphabet
                               "MZXW6YTBO0",         // nor is '0'
                               "MZXW6YTBO8",         // nor '8'
                               "MZXW6YTB!I",         // punctuation
                               "MZXW6YTB\tOI",       // a tab is not a separator
                               "MZXW6YTB\nOI",       // nor a newline
                               "MZXW6YTB_OI",        // nor an underscore
                               "MZ=XW6YTBOI",        // padding in the middle
                               "MY=====",            // too little padding
                               "MY=======",          // too much padding
                               "MZXW6YTB=",          // padding after a full block
                               "=",                  // padding alone
                               "M",                  // 1 digit: no whole byte
                               "MZX",                // 3 digits mod 8
                               "MZXW6Y",             // 6 digits mod 8
                               "MZXW6YTBM",          // 9 = 1 mod 8
                               "MZ",                 // "f" is MY: Z leaves non-zero bits
                               "MZXR",               // "fo" is MZXQ: trailing bit set
                               "MZXW6YTBOJ",         // "foobar" is ...OI: trailing bit set
                               "MZXW6YTBOI\xC3\xA9"  // non-ASCII
    );
    CAPTURE(text);
    CHECK_FALSE(base32::decode(text).has_value());
}

TEST_CASE("base32 round-trips every byte value and length", "[base32]") {
    std::vector<std::uint8_t> bytes;
    for (int i = 0; i < 300; ++i) {
        bytes.push_back(static_cast<std::uint8_t>((i * 151 + 7) % 256));
        const std::string encoded = base32::encode(bytes);
        CHECK(encoded.size() == (bytes.size() * 8 + 4) / 5);
        const auto decoded = base32::decode(encoded);
        REQUIRE(decoded.has_value());
        REQUIRE(*decoded == bytes);
    }
}

TEST_CASE("base32 decodes the well-known authenticator example secret", "[base32]") {
    // "JBSWY3DPEHPK3PXP" is the example secret of the Key Uri Format page:
    // "Hello!\xDE\xAD\xBE\xEF".
    const auto decoded = base32::decode("JBSWY3DPEHPK3PXP");
    REQUIRE(decoded.has_value());
    CHECK(*decoded ==
          std::vector<std::uint8_t>{'H', 'e', 'l', 'l', 'o', '!', 0xDE, 0xAD, 0xBE, 0xEF});
}
