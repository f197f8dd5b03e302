/// The otpauth:// provisioning URI (Google Authenticator's Key Uri Format) that QR codes carry.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/Secret.hpp"
#include "core/Totp.hpp"

namespace twostep::core {

struct OtpauthAccount {
    std::string issuer;   ///< e.g. "twostep" or the cluster name
    std::string account;  ///< the Kubernetes username
    std::string secretBase32;
    TotpParams params;
};

/// otpauth://totp/Issuer:account?secret=...&issuer=...&algorithm=...&digits=...&period=...
/// Issuer and account are percent-encoded (RFC 3986 unreserved characters kept).
std::string buildOtpauthUri(const OtpauthAccount& account);

/// Parses a URI built as above (or by another tool); nullopt when it is not a valid totp URI.
std::optional<OtpauthAccount> parseOtpauthUri(std::string_view uri);

}  // namespace twostep::core
