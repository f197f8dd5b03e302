/// A user row for store tests: binary sealed secret (with a NUL byte), non-default parameters.
#pragma once

#include <string>

#include "core/Store.hpp"

namespace twostep::test {

/// A NewUser named `name` whose fields all differ from the defaults, so a store that drops or
/// mixes up a column is caught.
inline core::NewUser newUser(const std::string& name,
                             core::UserState state = core::UserState::Active) {
    core::NewUser user;
    user.username = name;
    user.sealedSecret = std::string("\x01sealed\0bytes of ", 17) + name;
    user.issuer = "twostep";
    user.params.algorithm = core::Algorithm::Sha256;
    user.params.digits = 8;
    user.params.period = 60;
    user.state = state;
    return user;
}

}  // namespace twostep::test
