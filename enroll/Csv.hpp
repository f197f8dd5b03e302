/// RFC 4180 CSV records with the line each starts on, for error messages people can act on.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "core/Error.hpp"

namespace twostep::enroll {

/// A malformed CSV text; the message starts with "line N: ".
class CsvError : public Error {
public:
    CsvError(std::size_t line, const std::string& what)
        : Error("line " + std::to_string(line) + ": " + what), line_(line) {}
    std::size_t line() const { return line_; }

private:
    std::size_t line_;
};

struct CsvRecord {
    std::size_t line = 0;  ///< 1-based line the record starts on
    std::vector<std::string> fields;
};

/// Splits `text` into records: fields separated by commas, records by LF or CRLF, quoted fields
/// with "" for a quote (and line breaks allowed inside). Blank lines are skipped. Unquoted fields
/// are kept as written (no trimming); a line of only spaces counts as blank. @throw CsvError for an unclosed quote, text after a
/// closing quote, or a quote inside an unquoted field.
std::vector<CsvRecord> parseCsv(std::string_view text);

}  // namespace twostep::enroll
