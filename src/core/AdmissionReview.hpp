/// The AdmissionReview model: the few fields the decision needs, read from the request body with
/// simdjson (no DOM of the whole review on the request path), and the response serialiser.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "core/Decision.hpp"

namespace twostep::core {

/// What to look for in the object while parsing.
struct ReviewFields {
    std::string tokenAnnotation = "twostep.dev/token";
    std::string enforceLabel = "twostep.dev/enforce";
};

/// The request part of an AdmissionReview (admission.k8s.io/v1 or v1beta1), reduced to what the
/// policy reads.
struct ReviewRequest {
    std::string apiVersion;  ///< echoed in the response
    std::string uid;
    std::string operation;  ///< CREATE, UPDATE, DELETE, CONNECT
    std::string group, version, resource, subResource, kind;
    std::string nameSpace, name;
    std::string username;
    std::vector<std::string> groups;
    bool dryRun = false;
    bool hasObject = false;     ///< object is present and not null
    bool hasOldObject = false;  ///< oldObject is present and not null
    /// The token annotation on the object, if present (its value must be a string).
    std::optional<std::string> token;
    /// kubectl.kubernetes.io/last-applied-configuration on the object, if present.
    std::optional<std::string> lastAppliedConfiguration;
    /// The enforcement label's value on oldObject (Namespaces: was it enforced before?).
    std::optional<std::string> enforceLabelOld;
    /// SelfSubjectAccessReview spec.nonResourceAttributes (unlock requests).
    std::optional<std::string> nonResourcePath, nonResourceVerb;
};

/// Why a body is not a usable AdmissionReview; answered with HTTP 400 (or 413) and `reason`.
struct ParseError {
    int httpStatus = 400;
    std::string reason;  ///< short, lowercase, e.g. "request.uid is missing"
    std::string uid;     ///< when the uid could be read before the error
};

/// Parses an AdmissionReview body. Never throws on bad input; bounds nesting depth and validates
/// UTF-8. Thread-safe (one parser per thread).
std::variant<ReviewRequest, ParseError> parseReview(std::string_view body,
                                                    const ReviewFields& fields);

/// A JSONPatch operation list as JSON text, e.g. `[{"op":"remove","path":"..."}]`.
using JsonPatch = std::string;

/// The patch /mutate returns on an allow: removes the token annotation and removes the token from
/// the JSON in last-applied-configuration. nullopt when there is nothing to strip.
std::optional<JsonPatch> buildStripPatch(const ReviewRequest& request,
                                         const ReviewFields& fields);

/// The AdmissionReview response body in the request's apiVersion, echoing its uid; carries
/// auditAnnotations {decision, reason}, status {code 403, message} on a deny, warnings, and the
/// base64 JSONPatch when given.
std::string buildResponse(const ReviewRequest& request, const Decision& decision,
                          const std::optional<JsonPatch>& patch);

}  // namespace twostep::core
