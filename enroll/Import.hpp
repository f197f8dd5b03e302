/// The `import` file: CSV rows username,secret[,algorithm,digits,period], checked row by row so
/// the first bad row is reported with its line number before anything is written.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/Secret.hpp"
#include "core/Totp.hpp"

namespace twostep::enroll {

/// One checked row.
struct ImportRow {
    std::size_t line = 0;
    std::string username;
    core::SecretBytes secret;
    core::TotpParams params;
};

/// What is wrong with a username ("username is empty", ...), or nullopt when it is acceptable:
/// 1..256 bytes of valid UTF-8, no control characters, no surrounding whitespace.
std::optional<std::string> usernameProblem(std::string_view username);

/// What is wrong with a base32 TOTP secret given by an admin, or nullopt; on success `out` holds
/// the decoded bytes. Never mentions the secret itself.
std::optional<std::string> secretProblem(std::string_view base32, core::SecretBytes& out);

/// Parses and checks the whole file: a first line starting with "username" is a header; fields
/// are trimmed; empty optional fields take the defaults (SHA1, 6, 30). Usernames must be unique
/// within the file. @throw CsvError ("line N: ...") for the first bad row; twostep::Error when
/// the file holds no rows.
std::vector<ImportRow> parseImport(std::string_view text);

}  // namespace twostep::enroll
