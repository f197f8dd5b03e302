/// UTF-8 validation for names that come from outside (otpauth labels, imported usernames).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace twostep::core::utf8 {

/// Whether `text` is well-formed UTF-8: no stray continuation bytes, truncated sequences,
/// overlong forms, surrogates or values past U+10FFFF.
inline bool isValid(std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        const auto lead = static_cast<unsigned char>(text[i]);
        std::size_t length = 0;
        std::uint32_t point = 0;
        if (lead < 0x80) {
            ++i;
            continue;
        }
        if (lead >= 0xc2 && lead <= 0xdf) {
            length = 2;
            point = lead & 0x1fu;
        } else if (lead >= 0xe0 && lead <= 0xef) {
            length = 3;
            point = lead & 0x0fu;
        } else if (lead >= 0xf0 && lead <= 0xf4) {
            length = 4;
            point = lead & 0x07u;
        } else {
            return false;
        }
        if (i + length > text.size()) {
            return false;
        }
        for (std::size_t k = 1; k < length; ++k) {
            const auto next = static_cast<unsigned char>(text[i + k]);
            if ((next & 0xc0) != 0x80) {
                return false;
            }
            point = (point << 6) | (next & 0x3fu);
        }
        const bool overlong = (length == 3 && point < 0x800) || (length == 4 && point < 0x10000);
        if (overlong || (point >= 0xd800 && point <= 0xdfff) || point > 0x10ffff) {
            return false;
        }
        i += length;
    }
    return true;
}

}  // namespace twostep::core::utf8
