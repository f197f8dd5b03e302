#include "Csv.hpp"

namespace twostep::enroll {

std::vector<CsvRecord> parseCsv(std::string_view text) {
    std::vector<CsvRecord> records;
    std::size_t line = 1;
    std::size_t pos = 0;
    const std::size_t size = text.size();

    const auto atRecordEnd = [&](std::size_t at) {
        return at >= size || text[at] == '\n' || (text[at] == '\r' && at + 1 < size &&
                                                    text[at + 1] == '\n');
    };
    const auto skipRecordEnd = [&] {
        if (pos < size && text[pos] == '\r') {
            ++pos;
        }
        if (pos < size && text[pos] == '\n') {
            ++pos;
            ++line;
        }
    };

    while (pos < size) {
        CsvRecord record;
        record.line = line;
        bool anyQuoted = false;
        for (;;) {
            std::string field;
            if (pos < size && text[pos] == '"') {
                anyQuoted = true;
                const std::size_t openedOn = line;
                ++pos;
                for (;;) {
                    if (pos >= size) {
                        throw CsvError(openedOn, "a quoted field is not closed");
                    }
                    const char c = text[pos++];
                    if (c == '"') {
                        if (pos < size && text[pos] == '"') {
                            field += '"';
                            ++pos;
                            continue;
                        }
                        break;
                    }
                    if (c == '\n') {
                        ++line;
                    }
                    field += c;
                }
                if (!atRecordEnd(pos) && text[pos] != ',') {
                    throw CsvError(line, "unexpected text after a closing quote (a field is "
                                         "either quoted whole or not at all)");
                }
            } else {
                while (!atRecordEnd(pos) && text[pos] != ',') {
                    if (text[pos] == '"') {
                        throw CsvError(line, "a quote inside an unquoted field (quote the whole "
                                             "field and double the quote)");
                    }
                    field += text[pos++];
                }
            }
            record.fields.push_back(std::move(field));
            if (pos < size && text[pos] == ',') {
                ++pos;
                continue;
            }
            break;
        }
        skipRecordEnd();
        const bool blank = !anyQuoted && record.fields.size() == 1 &&
                           record.fields[0].find_first_not_of(" \t") == std::string::npos;
        if (!blank) {
            records.push_back(std::move(record));
        }
    }
    return records;
}

}  // namespace twostep::enroll
