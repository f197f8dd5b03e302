/// The one exception base of twostep; every error the library throws derives from it.
#pragma once

#include <stdexcept>
#include <string>

namespace twostep {

/// A failure of the environment or configuration (file, database, key); messages are lowercase,
/// carry context, and never contain a secret or a code.
class Error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

/// The master key is missing, malformed, too open, or not the key the data was sealed with.
class KeyError : public Error {
public:
    using Error::Error;
};

/// The database cannot be opened, migrated, or used.
class StoreError : public Error {
public:
    using Error::Error;
};

}  // namespace twostep
