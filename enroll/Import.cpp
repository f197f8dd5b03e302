#include "Import.hpp"

#include <algorithm>
#include <cctype>
#include <unordered_map>

#include "Csv.hpp"
#include "core/Base32.hpp"
#include "core/Utf8.hpp"

namespace twostep::enroll {

namespace {

std::string_view trim(std::string_view text) {
    const std::size_t first = text.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
        return {};
    }
    const std::size_t last = text.find_last_not_of(" \t");
    return text.substr(first, last - first + 1);
}

}  // namespace

std::optional<std::string> usernameProblem(std::string_view username) {
    if (username.empty()) {
        return "username is empty";
    }
    if (username.size() > 256) {
        return "username is longer than 256 bytes";
    }
    if (!core::utf8::isValid(username)) {
        return "username is not valid UTF-8";
    }
    for (const char c : username) {
        const auto u = static_cast<unsigned char>(c);
        if (u < 0x20 || u == 0x7f) {
            return "username contains a control character";
        }
    }
    if (username.front() == ' ' || username.back() == ' ') {
        return "username starts or ends with a space";
    }
    return std::nullopt;
}

std::optional<std::string> secretProblem(std::string_view base32, core::SecretBytes& out) {
    if (trim(base32).empty()) {
        return "secret is empty";
    }
    auto decoded = core::base32::decode(base32);
    if (!decoded) {
        return "secret is not valid base32 (letters A-Z and digits 2-7)";
    }
    if (decoded->size() < core::MinSecretBytes) {
        const std::size_t bits = decoded->size() * 8;
        core::SecretBytes wipe(std::move(*decoded));
        return "secret is too short (" + std::to_string(bits) + " bits; at least " +
               std::to_string(core::MinSecretBytes * 8) + " bits are needed)";
    }
    out = core::SecretBytes(std::move(*decoded));
    return std::nullopt;
}

std::vector<ImportRow> parseImport(std::string_view text) {
    std::vector<CsvRecord> records = parseCsv(text);
    std::vector<ImportRow> rows;
    rows.reserve(records.size());
    std::unordered_map<std::string, std::size_t> firstLine;
    firstLine.reserve(records.size());

    for (std::size_t r = 0; r < records.size(); ++r) {
        CsvRecord& record = records[r];
        const std::size_t line = record.line;
        if (r == 0 && !record.fields.empty()) {
            std::string first(trim(record.fields[0]));
            for (char& c : first) {
                c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            }
            if (first == "username") {
                continue;
            }
        }
        const std::size_t count = record.fields.size();
        if (count < 2 || count > 5) {
            throw CsvError(line, "expected 2 to 5 fields (username,secret[,algorithm,digits,"
                                 "period]), found " +
                                     std::to_string(count));
        }
        ImportRow row;
        row.line = line;
        row.username = std::string(trim(record.fields[0]));
        if (auto problem = usernameProblem(row.username)) {
            throw CsvError(line, *problem);
        }
        const auto [it, inserted] = firstLine.emplace(row.username, line);
        if (!inserted) {
            throw CsvError(line, "user '" + row.username + "' appears twice (first on line " +
                                     std::to_string(it->second) + ")");
        }
        if (auto problem = secretProblem(record.fields[1], row.secret)) {
            throw CsvError(line, *problem);
        }
        // Wipe the secret text from the parsed record as soon as it is decoded.
        std::fill(record.fields[1].begin(), record.fields[1].end(), '\0');

        if (count > 2 && !trim(record.fields[2]).empty()) {
            const std::string_view text2 = trim(record.fields[2]);
            const auto algorithm = core::parseAlgorithm(text2);
            if (!algorithm) {
                throw CsvError(line, "algorithm '" + std::string(text2) +
                                         "' is not SHA1, SHA256 or SHA512");
            }
            row.params.algorithm = *algorithm;
        }
        if (count > 3 && !trim(record.fields[3]).empty()) {
            const std::string_view digits = trim(record.fields[3]);
            if (digits != "6" && digits != "8") {
                throw CsvError(line, "digits must be 6 or 8, not '" + std::string(digits) + "'");
            }
            row.params.digits = digits[0] - '0';
        }
        if (count > 4 && !trim(record.fields[4]).empty()) {
            const std::string_view period = trim(record.fields[4]);
            int value = 0;
            bool ok = period.size() <= 4;
            for (const char c : period) {
                ok = ok && c >= '0' && c <= '9';
                value = value * 10 + (c - '0');
            }
            if (!ok || value < 1 || value > 3600) {
                throw CsvError(line, "period must be 1 to 3600 seconds, not '" +
                                         std::string(period) + "'");
            }
            row.params.period = value;
        }
        rows.push_back(std::move(row));
    }
    if (rows.empty()) {
        throw Error("the file holds no users to import (expected rows of "
                    "username,secret[,algorithm,digits,period])");
    }
    return rows;
}

}  // namespace twostep::enroll
