#include "core/Secret.hpp"

// The failing-generator test installs a RAND_METHOD, an API OpenSSL 3 keeps but deprecates.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/rand.h>

#include <catch2/catch.hpp>

#include <set>
#include <string>
#include <vector>

#include "core/Error.hpp"

using namespace twostep::core;

namespace {

int failingBytes(unsigned char* /*buffer*/, int /*count*/) {
    return 0;
}
int failingStatus() {
    return 0;
}

/// Makes RAND_bytes fail for the scope's duration, then restores OpenSSL's own generator.
class FailingRandom {
public:
    FailingRandom()
        : method_{nullptr, failingBytes, nullptr, nullptr, failingBytes, failingStatus} {
        REQUIRE(RAND_set_rand_method(&method_) == 1);
    }
    FailingRandom(const FailingRandom&) = delete;
    FailingRandom& operator=(const FailingRandom&) = delete;
    ~FailingRandom() { RAND_set_rand_method(nullptr); }

private:
    RAND_METHOD method_;
};

}  // namespace

TEST_CASE("generated secrets have the requested size and differ", "[secret]") {
    const auto size = GENERATE(as<std::size_t>{}, 1, 16, 20, 32, 64);
    const SecretBytes a = generateSecret(size);
    const SecretBytes b = generateSecret(size);
    CHECK(a.size() == size);
    CHECK(b.size() == size);
    if (size >= 16) {
        CHECK_FALSE(constantTimeEquals(a.bytes(), b.bytes()));
    }
}

TEST_CASE("the default secret is 160 bits", "[secret]") {
    CHECK(DefaultSecretBytes == 20);
    CHECK(generateSecret().size() == 20);
}

TEST_CASE("generated secrets are not all the same bytes", "[secret]") {
    // 1000 secrets of 20 bytes: the chance that any byte value never occurs is negligible, while a
    // generator stuck on a constant or a short cycle fails at once.
    std::set<std::uint8_t> seen;
    std::set<std::vector<std::uint8_t>> secrets;
    for (int i = 0; i < 1000; ++i) {
        const SecretBytes secret = generateSecret();
        seen.insert(secret.bytes().begin(), secret.bytes().end());
        secrets.emplace(secret.bytes().begin(), secret.bytes().end());
    }
    CHECK(seen.size() == 256);
    CHECK(secrets.size() == 1000);
}

TEST_CASE("a zero-byte secret is refused", "[secret]") {
    CHECK_THROWS_MATCHES(generateSecret(0), twostep::Error,
                         Catch::Message("cannot generate a secret of 0 bytes"));
}

TEST_CASE("a failing random generator is an error, not a weak secret", "[secret]") {
    const FailingRandom failing;
    CHECK_THROWS_MATCHES(
        generateSecret(20), twostep::Error,
        Catch::Message("cannot generate a secret: the openssl random generator failed"));
}

TEST_CASE("moving a secret leaves the source empty", "[secret]") {
    SecretBytes a(std::vector<std::uint8_t>{1, 2, 3});
    SecretBytes b(std::move(a));
    CHECK(a.empty());  // NOLINT(bugprone-use-after-move): the moved-from state is the contract
    CHECK(b.size() == 3);
    SecretBytes c(std::vector<std::uint8_t>{9});
    c = std::move(b);
    CHECK(b.empty());  // NOLINT(bugprone-use-after-move)
    REQUIRE(c.size() == 3);
    CHECK(c.bytes()[0] == 1);
    CHECK(c.bytes()[2] == 3);
}

TEST_CASE("constant-time comparison of bytes", "[secret]") {
    const std::vector<std::uint8_t> a{1, 2, 3, 4};
    const std::vector<std::uint8_t> same{1, 2, 3, 4};
    const std::vector<std::uint8_t> lastDiffers{1, 2, 3, 5};
    const std::vector<std::uint8_t> firstDiffers{0, 2, 3, 4};
    const std::vector<std::uint8_t> shorter{1, 2, 3};
    const std::vector<std::uint8_t> empty;
    CHECK(constantTimeEquals(a, same));
    CHECK_FALSE(constantTimeEquals(a, lastDiffers));
    CHECK_FALSE(constantTimeEquals(a, firstDiffers));
    CHECK_FALSE(constantTimeEquals(a, shorter));
    CHECK_FALSE(constantTimeEquals(shorter, a));
    CHECK_FALSE(constantTimeEquals(a, empty));
    CHECK(constantTimeEquals(empty, empty));
}

TEST_CASE("constant-time comparison of strings", "[secret]") {
    using namespace std::string_view_literals;
    CHECK(constantTimeEquals("123456"sv, "123456"sv));
    CHECK_FALSE(constantTimeEquals("123456"sv, "123457"sv));
    CHECK_FALSE(constantTimeEquals("123456"sv, "12345"sv));
    CHECK_FALSE(constantTimeEquals("12345678"sv, "123456"sv));
    CHECK_FALSE(constantTimeEquals(""sv, "1"sv));
    CHECK(constantTimeEquals(""sv, ""sv));
    // Embedded NULs count: this is not strcmp.
    CHECK_FALSE(constantTimeEquals("12\0004"sv, "12\0005"sv));
}
