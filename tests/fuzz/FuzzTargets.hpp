/// The bodies of the fuzz targets: each feeds one input to a parser of untrusted text and checks
/// properties that must hold for every input. Shared by the libFuzzer binaries (clang) and by
/// the Catch2 test that replays the corpora and every crash found (any compiler).
#pragma once

#include <span>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace twostep::fuzz {

/// A property did not hold: a bug the fuzzer found (the message says which property).
class FuzzFailure : public std::logic_error {
public:
    using std::logic_error::logic_error;
};

/// core::parseReview, then Reviewer::review on /validate and /mutate against a fresh in-memory
/// store with known users: never an allow the policy does not explain, always a well-formed
/// answer that echoes the uid. @throw FuzzFailure.
void reviewTarget(std::string_view input);

/// What reviewTarget decided: the reason ids of the /validate and the /mutate answer, in that
/// order (empty when the body does not parse), after the same checks. @throw FuzzFailure.
std::vector<std::string> reviewDecisions(std::string_view input);

/// buildStripPatch with `input` as kubectl.kubernetes.io/last-applied-configuration: the patch
/// is a JSON array, and a rewritten last-applied no longer holds the token annotation.
/// @throw FuzzFailure.
void stripPatchTarget(std::string_view input);

/// base32::decode, and encode/decode round trips of what it accepts. @throw FuzzFailure.
void base32Target(std::string_view input);

/// parseOtpauthUri, and a build/parse round trip of what it accepts. @throw FuzzFailure.
void otpauthTarget(std::string_view input);

/// http::RequestParser on a connection's bytes (the first byte picks how the rest is cut into
/// pieces): the same requests and refusal whole, in pieces and byte by byte; bodies within the
/// limit and of their Content-Length; only HTTP/1.0 and 1.1; refusals 400/413/431/505 with a
/// reason; an accepted request written plainly parses to the same request. @throw FuzzFailure.
void httpRequestTarget(std::string_view input);

/// One target by name, as the corpus directories are named.
struct Target {
    std::string_view name;
    void (*run)(std::string_view input);
};

/// review, strip_patch, base32, otpauth, http_request.
std::span<const Target> targets();

}  // namespace twostep::fuzz
