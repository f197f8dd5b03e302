#include "core/AdmissionReview.hpp"

#include <openssl/evp.h>
#include <simdjson.h>

#include <cstddef>
#include <nlohmann/json.hpp>
#include <type_traits>
#include <utility>

namespace twostep::core {
namespace {

namespace dom = simdjson::dom;

constexpr std::string_view AdmissionV1 = "admission.k8s.io/v1";
constexpr std::string_view AdmissionV1beta1 = "admission.k8s.io/v1beta1";
constexpr std::string_view LastAppliedAnnotation = "kubectl.kubernetes.io/last-applied-configuration";

/// Nesting bound for the review and for the JSON inside last-applied-configuration: a real
/// object is a few dozen levels deep, and the bound keeps recursion (ours, nlohmann's dump) small.
constexpr std::size_t MaxDepth = 512;
/// What a fresh parser allocates: a typical review is a few KiB.
constexpr std::size_t InitialCapacity = 64 * 1024;
/// Far above the HTTP layer's body limit (3 MiB): a safety net, not the limit itself.
constexpr std::size_t MaxCapacity = 64 * 1024 * 1024;
/// After a body this large the parser is dropped, so that a few huge reviews do not leave every
/// pool thread holding tens of MiB of tape.
constexpr std::size_t ShrinkAbove = 1024 * 1024;
/// How much of an unknown apiVersion is echoed in the error.
constexpr std::size_t MaxEchoed = 64;

/// One simdjson parser per thread, reused across requests (its buffers are the costly part).
class ThreadParser {
public:
    /// The parser with depth bound applied, or nullptr when memory could not be allocated.
    dom::parser* get() {
        if (!ready_) {
            if (parser_.allocate(InitialCapacity, MaxDepth) != simdjson::SUCCESS) {
                return nullptr;
            }
            ready_ = true;
        }
        return &parser_;
    }
    /// Frees the buffers; the next get() allocates small ones again.
    void reset() {
        parser_ = dom::parser(MaxCapacity);
        ready_ = false;
    }

private:
    dom::parser parser_{MaxCapacity};
    bool ready_ = false;
};

thread_local ThreadParser threadParser;

/// `text` cut to MaxEchoed bytes, with anything but printable ASCII replaced by '?', so that an
/// error message stays short and printable whatever the body held.
std::string printable(std::string_view text) {
    std::string out;
    for (char c : text.substr(0, MaxEchoed)) {
        out += (c >= 0x20 && c < 0x7f) ? c : '?';
    }
    if (text.size() > MaxEchoed) {
        out += "...";
    }
    return out;
}

/// The member `key`, or nullopt when it is absent or JSON null (Go's omitempty and explicit null
/// mean the same to the API server).
std::optional<dom::element> member(dom::object object, std::string_view key) {
    dom::element value;
    if (object.at_key(key).get(value) != simdjson::SUCCESS || value.is_null()) {
        return std::nullopt;
    }
    return value;
}

/// Reads the fields the policy needs from a parsed body; on bad input, fills error_ and the
/// read* helpers return false.
class Reader {
public:
    explicit Reader(const ReviewFields& fields) : fields_(fields) {}

    std::variant<ReviewRequest, ParseError> read(dom::element root) {
        ReviewRequest request;
        if (readReview(root, request)) {
            return request;
        }
        return std::move(error_);
    }

private:
    bool fail(std::string reason) {
        error_.reason = std::move(reason);
        return false;
    }

    /// An optional member of JSON type T (string_view, bool, dom::object): absent or null leaves
    /// `out` as it is; another type fails with "<path> must be <what>".
    template <typename T, typename Out>
    bool readMember(dom::object object, std::string_view key, std::string_view path,
                    std::string_view what, Out& out) {
        const auto value = member(object, key);
        if (!value) {
            return true;
        }
        T typed{};
        if (value->get(typed) != simdjson::SUCCESS) {
            return fail(std::string(path) + " must be " + std::string(what));
        }
        if constexpr (std::is_same_v<T, std::string_view>) {
            out = std::string(typed);
        } else {
            out = typed;
        }
        return true;
    }

    /// A string member into a std::string or std::optional<std::string>.
    template <typename Out>
    bool readString(dom::object object, std::string_view key, std::string_view path, Out& out) {
        return readMember<std::string_view>(object, key, path, "a string", out);
    }

    bool readObject(dom::object object, std::string_view key, std::string_view path,
                    std::optional<dom::object>& out) {
        return readMember<dom::object>(object, key, path, "an object", out);
    }

    /// Like readMember, but an absent or null member fails with `missing`.
    template <typename T, typename Out>
    bool readRequired(dom::object object, std::string_view key, std::string_view path,
                      std::string_view what, std::string_view missing, std::optional<Out>& out) {
        return readMember<T>(object, key, path, what, out) &&
               (out.has_value() || fail(std::string(missing)));
    }

    bool readReview(dom::element root, ReviewRequest& request) {
        dom::object review;
        std::string_view kind;
        if (root.get_object().get(review) != simdjson::SUCCESS ||
            !member(review, "kind").has_value() ||
            member(review, "kind")->get_string().get(kind) != simdjson::SUCCESS ||
            kind != "AdmissionReview") {
            return fail("body is not an AdmissionReview (kind must be AdmissionReview)");
        }
        if (!readApiVersion(review, request)) {
            return false;
        }
        std::optional<dom::object> object;
        return readRequired<dom::object>(review, "request", "request", "an object",
                                         "request is missing", object) &&
               readRequest(*object, request);
    }

    bool readApiVersion(dom::object review, ReviewRequest& request) {
        std::optional<std::string> apiVersion;
        if (!readRequired<std::string_view>(review, "apiVersion", "apiVersion", "a string",
                                            "apiVersion is missing", apiVersion)) {
            return false;
        }
        if (*apiVersion != AdmissionV1 && *apiVersion != AdmissionV1beta1) {
            return fail("unsupported apiVersion \"" + printable(*apiVersion) +
                        "\" (want admission.k8s.io/v1 or v1beta1)");
        }
        request.apiVersion = std::move(*apiVersion);
        return true;
    }

    bool readRequest(dom::object object, ReviewRequest& request) {
        if (!readString(object, "uid", "request.uid", request.uid)) {
            return false;
        }
        if (request.uid.empty()) {
            return fail("request.uid is missing");
        }
        error_.uid = request.uid;

        std::optional<dom::object> kind;
        std::optional<dom::object> resource;
        if (!readObject(object, "kind", "request.kind", kind) ||
            (kind && !readString(*kind, "kind", "request.kind.kind", request.kind)) ||
            !readObject(object, "resource", "request.resource", resource)) {
            return false;
        }
        // The scope rules switch on the resource (what the URL named), never on the kind.
        if (resource && (!readString(*resource, "group", "request.resource.group", request.group) ||
                         !readString(*resource, "version", "request.resource.version",
                                     request.version) ||
                         !readString(*resource, "resource", "request.resource.resource",
                                     request.resource))) {
            return false;
        }
        if (!readString(object, "subResource", "request.subResource", request.subResource) ||
            !readString(object, "namespace", "request.namespace", request.nameSpace) ||
            !readString(object, "name", "request.name", request.name) ||
            !readOperation(object, request) || !readUserInfo(object, request) ||
            !readDryRun(object, request)) {
            return false;
        }
        return readObjects(object, request);
    }

    bool readOperation(dom::object object, ReviewRequest& request) {
        if (!readString(object, "operation", "request.operation", request.operation)) {
            return false;
        }
        if (request.operation.empty()) {
            return fail("request.operation is missing");
        }
        // Only these reach admission; anything else is not a request from an API server, and
        // refusing it keeps the scope rules (which switch on the operation) exhaustive.
        const std::string& op = request.operation;
        if (op != "CREATE" && op != "UPDATE" && op != "DELETE" && op != "CONNECT") {
            return fail("request.operation must be CREATE, UPDATE, DELETE or CONNECT");
        }
        return true;
    }

    bool readUserInfo(dom::object object, ReviewRequest& request) {
        std::optional<dom::object> userInfo;
        if (!readRequired<dom::object>(object, "userInfo", "request.userInfo", "an object",
                                       "request.userInfo.username is missing", userInfo) ||
            !readString(*userInfo, "username", "request.userInfo.username", request.username)) {
            return false;
        }
        if (request.username.empty()) {
            return fail("request.userInfo.username is missing");
        }
        const auto groups = member(*userInfo, "groups");
        if (!groups) {
            return true;
        }
        dom::array array;
        if (groups->get_array().get(array) != simdjson::SUCCESS) {
            return fail("request.userInfo.groups must be an array of strings");
        }
        for (dom::element group : array) {
            std::string_view name;
            if (group.get_string().get(name) != simdjson::SUCCESS) {
                return fail("request.userInfo.groups must be an array of strings");
            }
            request.groups.emplace_back(name);
        }
        return true;
    }

    bool readDryRun(dom::object object, ReviewRequest& request) {
        return readMember<bool>(object, "dryRun", "request.dryRun", "a boolean", request.dryRun);
    }

    bool readObjects(dom::object object, ReviewRequest& request) {
        std::optional<dom::object> newObject;
        std::optional<dom::object> oldObject;
        if (!readObject(object, "object", "request.object", newObject) ||
            !readObject(object, "oldObject", "request.oldObject", oldObject)) {
            return false;
        }
        request.hasObject = newObject.has_value();
        request.hasOldObject = oldObject.has_value();
        // The token is on the new object; whether a Namespace was enforced, on the old one
        // (turning enforcement on is free, so the new object's label never decides).
        if (newObject && !readMetadata(*newObject, "request.object", nullptr, &request)) {
            return false;
        }
        if (oldObject &&
            !readMetadata(*oldObject, "request.oldObject", &request.enforceLabelOld, nullptr)) {
            return false;
        }
        if (newObject && request.group == "authorization.k8s.io" &&
            request.resource == "selfsubjectaccessreviews") {
            return readNonResourceAttributes(*newObject, request);
        }
        return true;
    }

    /// Reads, when given, the enforcement label into `label` and the token and last-applied
    /// annotations into `annotated`.
    bool readMetadata(dom::object object, const std::string& path,
                      std::optional<std::string>* label, ReviewRequest* annotated) {
        std::optional<dom::object> metadata;
        std::optional<dom::object> labels;
        std::optional<dom::object> annotations;
        const std::string metadataPath = path + ".metadata";
        if (!readObject(object, "metadata", metadataPath, metadata)) {
            return false;
        }
        if (!metadata) {
            return true;  // e.g. the PodExecOptions of a CONNECT
        }
        if (label != nullptr &&
            (!readObject(*metadata, "labels", metadataPath + ".labels", labels) ||
             (labels && !readString(*labels, fields_.enforceLabel,
                                    "label " + fields_.enforceLabel, *label)))) {
            return false;
        }
        if (annotated == nullptr) {
            return true;
        }
        return readObject(*metadata, "annotations", metadataPath + ".annotations", annotations) &&
               (!annotations ||
                (readString(*annotations, fields_.tokenAnnotation,
                            "annotation " + fields_.tokenAnnotation, annotated->token) &&
                 readString(*annotations, LastAppliedAnnotation,
                            "annotation " + std::string(LastAppliedAnnotation),
                            annotated->lastAppliedConfiguration)));
    }

    bool readNonResourceAttributes(dom::object object, ReviewRequest& request) {
        std::optional<dom::object> spec;
        std::optional<dom::object> attributes;
        if (!readObject(object, "spec", "request.object.spec", spec) ||
            (spec && !readObject(*spec, "nonResourceAttributes",
                                 "request.object.spec.nonResourceAttributes", attributes))) {
            return false;
        }
        if (!attributes) {
            return true;
        }
        return readString(*attributes, "path", "request.object.spec.nonResourceAttributes.path",
                          request.nonResourcePath) &&
               readString(*attributes, "verb", "request.object.spec.nonResourceAttributes.verb",
                          request.nonResourceVerb);
    }

    const ReviewFields& fields_;
    ParseError error_;
};

ParseError parseFailure(simdjson::error_code error) {
    switch (error) {
    case simdjson::DEPTH_ERROR:
        return {400, "body is not valid JSON (nested deeper than 512 levels)", {}};
    case simdjson::UTF8_ERROR:
        return {400, "body is not valid JSON (invalid UTF-8)", {}};
    case simdjson::CAPACITY:
        return {413, "body is too large", {}};
    case simdjson::MEMALLOC:
        return {503, "out of memory while parsing the body", {}};
    default:
        return {400, "body is not valid JSON", {}};
    }
}

std::variant<ReviewRequest, ParseError> parseWith(dom::parser& parser, std::string_view body,
                                                  const ReviewFields& fields) {
    // realloc_if_needed: the parser copies the body into its own padded buffer, which it keeps
    // and reuses, so the caller's buffer needs no SIMDJSON_PADDING.
    dom::element root;
    const auto error = parser.parse(body.data(), body.size(), true).get(root);
    if (error != simdjson::SUCCESS) {
        return parseFailure(error);
    }
    return Reader(fields).read(root);
}

/// RFC 6901: '~' becomes "~0" and '/' becomes "~1".
std::string escapePointer(std::string_view token) {
    std::string out;
    for (char c : token) {
        if (c == '~') {
            out += "~0";
        } else if (c == '/') {
            out += "~1";
        } else {
            out += c;
        }
    }
    return out;
}

/// The last-applied JSON without the token annotation; nullopt when it does not hold the token
/// or is not JSON we can rewrite safely (then it is left alone).
std::optional<std::string> stripLastApplied(const std::string& lastApplied,
                                            const std::string& tokenAnnotation) {
    // This JSON is inside a string of the review, so the review's depth bound did not apply to
    // it: measure it here, because nlohmann's dump() recurses.
    bool tooDeep = false;
    const nlohmann::json::parser_callback_t measure =
        [&tooDeep](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
            if (depth > static_cast<int>(MaxDepth)) {
                tooDeep = true;
            }
            return true;
        };
    nlohmann::json config = nlohmann::json::parse(lastApplied, measure, false);
    if (config.is_discarded() || tooDeep || !config.is_object()) {
        return std::nullopt;
    }
    const auto metadata = config.find("metadata");
    if (metadata == config.end() || !metadata->is_object()) {
        return std::nullopt;
    }
    const auto annotations = metadata->find("annotations");
    if (annotations == metadata->end() || !annotations->is_object() ||
        annotations->erase(tokenAnnotation) == 0) {
        return std::nullopt;
    }
    std::string stripped = config.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    // kubectl writes the annotation with a trailing newline: keep the text otherwise as it was.
    if (!lastApplied.empty() && lastApplied.back() == '\n') {
        stripped += '\n';
    }
    return stripped;
}

/// Appends `text` as a JSON string exactly as nlohmann's dump() does: short escapes for the quote,
/// the backslash, \b, \f, \n, \r and \t, \u00xx for other control characters, UTF-8 as it is.
/// Text that is not valid UTF-8 (a message could quote a name cut mid-character) goes through
/// nlohmann, which writes U+FFFD for the bad bytes instead of throwing.
void appendJsonString(std::string& out, std::string_view text) {
    if (!simdjson::validate_utf8(text)) {
        out += nlohmann::json(text).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        return;
    }
    out += '"';
    std::size_t copied = 0;
    for (std::size_t i = 0; i < text.size(); ++i) {
        const auto c = static_cast<unsigned char>(text[i]);
        if (c >= 0x20 && c != '"' && c != '\\') {
            continue;
        }
        out.append(text.substr(copied, i - copied));
        copied = i + 1;
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default: {
            static constexpr char Hex[] = "0123456789abcdef";
            out += "\\u00";
            out += Hex[c >> 4];
            out += Hex[c & 0x0f];
        }
        }
    }
    out.append(text.substr(copied));
    out += '"';
}

std::string base64(std::string_view data) {
    std::string out(4 * ((data.size() + 2) / 3) + 1, '\0');
    const int written =
        EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                        reinterpret_cast<const unsigned char*>(data.data()),
                        static_cast<int>(data.size()));
    out.resize(static_cast<std::size_t>(written));
    return out;
}

}  // namespace

std::variant<ReviewRequest, ParseError> parseReview(std::string_view body,
                                                    const ReviewFields& fields) {
    if (body.empty()) {
        return ParseError{400, "body is empty", {}};
    }
    if (body.size() > MaxCapacity) {
        return ParseError{413, "body is too large", {}};
    }
    dom::parser* parser = threadParser.get();
    if (parser == nullptr) {
        return ParseError{503, "out of memory while parsing the body", {}};
    }
    auto result = parseWith(*parser, body, fields);
    // The request's strings are copies, so the parser's buffers may go now.
    if (body.size() > ShrinkAbove) {
        threadParser.reset();
    }
    return result;
}

std::optional<JsonPatch> buildStripPatch(const ReviewRequest& request,
                                         const ReviewFields& fields) {
    nlohmann::json operations = nlohmann::json::array();
    if (request.token) {
        operations.push_back(
            {{"op", "remove"},
             {"path", "/metadata/annotations/" + escapePointer(fields.tokenAnnotation)}});
    }
    if (request.lastAppliedConfiguration) {
        if (auto stripped =
                stripLastApplied(*request.lastAppliedConfiguration, fields.tokenAnnotation)) {
            operations.push_back(
                {{"op", "replace"},
                 {"path", "/metadata/annotations/" + escapePointer(LastAppliedAnnotation)},
                 {"value", std::move(*stripped)}});
        }
    }
    if (operations.empty()) {
        return std::nullopt;
    }
    return operations.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string buildResponse(const ReviewRequest& request, const Decision& decision,
                          const std::optional<JsonPatch>& patch) {
    // Written by hand rather than through an nlohmann DOM: this runs for every request, and the
    // DOM cost as much as parsing the whole review (docs/benchmarks.md). The text is what
    // nlohmann's dump() wrote: keys in sorted order, the same escapes, no spaces.
    std::string out;
    out.reserve(256 + decision.message.size() + (patch ? patch->size() * 4 / 3 : 0));
    out += "{\"apiVersion\":";
    appendJsonString(out, request.apiVersion);
    out += ",\"kind\":\"AdmissionReview\",\"response\":{\"allowed\":";
    out += decision.allowed ? "true" : "false";
    out += ",\"auditAnnotations\":{\"decision\":";
    out += decision.allowed ? "\"allow\"" : "\"deny\"";
    out += ",\"reason\":";
    appendJsonString(out, toString(decision.reason));
    out += '}';
    if (patch) {
        out += ",\"patch\":\"";
        out += base64(*patch);
        out += "\",\"patchType\":\"JSONPatch\"";
    }
    if (!decision.allowed) {
        out += ",\"status\":{\"code\":403,\"message\":";
        appendJsonString(out, decision.message);
        out += ",\"reason\":\"Forbidden\"}";
    }
    out += ",\"uid\":";
    appendJsonString(out, request.uid);
    if (!decision.warnings.empty()) {
        out += ",\"warnings\":[";
        for (std::size_t i = 0; i < decision.warnings.size(); ++i) {
            if (i > 0) {
                out += ',';
            }
            appendJsonString(out, decision.warnings[i]);
        }
        out += ']';
    }
    out += "}}";
    return out;
}

}  // namespace twostep::core
