// Replays every seed of tests/fuzz/corpus and every crash input kept in tests/fuzz/regressions
// through the fuzz target bodies, in the normal (and the sanitizer) build.
#include <catch2/catch.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz/FuzzTargets.hpp"

namespace {

std::vector<std::filesystem::path> inputsIn(const std::filesystem::path& dir) {
    std::vector<std::filesystem::path> files;
    if (std::filesystem::is_directory(dir)) {
        for (const auto& entry : std::filesystem::directory_iterator(dir)) {
            if (entry.is_regular_file()) {
                files.push_back(entry.path());
            }
        }
    }
    std::sort(files.begin(), files.end());
    return files;
}

std::string contentsOf(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("every fuzz seed and every crash found so far passes its target", "[fuzz]") {
    const auto& target = GENERATE(from_range(twostep::fuzz::targets().begin(),
                                             twostep::fuzz::targets().end()));
    const std::filesystem::path root(TWOSTEP_FUZZ_DIR);
    const auto seeds = inputsIn(root / "corpus" / std::string(target.name));
    const auto crashes = inputsIn(root / "regressions" / std::string(target.name));
    INFO("target " << target.name);
    // An empty or missing corpus would make this test pass without testing anything.
    REQUIRE(seeds.size() >= 3);
    for (const auto& file : seeds) {
        INFO("input " << file.string());
        CHECK_NOTHROW(target.run(contentsOf(file)));
    }
    for (const auto& file : crashes) {
        INFO("input " << file.string());
        CHECK_NOTHROW(target.run(contentsOf(file)));
    }
}

TEST_CASE("the review seeds reach the allow paths of the fuzz store", "[fuzz]") {
    // The fuzz store decides at a fixed time; these seeds carry codes valid then, so the fuzzer
    // starts from inputs that pass verification (and /mutate then sees the used code).
    using Reasons = std::vector<std::string>;
    const std::filesystem::path seeds = std::filesystem::path(TWOSTEP_FUZZ_DIR) / "corpus/review";
    const auto decide = [&](const char* name) {
        return twostep::fuzz::reviewDecisions(contentsOf(seeds / name));
    };
    CHECK(decide("alice-valid.json") == Reasons{"verified", "replayed"});
    CHECK(decide("erin-valid-8.json") == Reasons{"verified", "replayed"});
    CHECK(decide("alice-recovery.json") == Reasons{"recovery_code", "wrong_code"});
    CHECK(decide("alice-unlock.json") == Reasons{"unlocked", "replayed"});
    CHECK(decide("bob-pending.json") == Reasons{"pending", "pending"});
    CHECK(decide("0012-DELETE-configmaps-cm-ok.json") == Reasons{"not_enrolled", "not_enrolled"});
    // Self-enrolment: /validate refuses it, /mutate asks for an invitation the store has not.
    CHECK(decide("zed-enroll.json") == Reasons{"enroll_needs_mutate", "not_invited"});
    CHECK(decide("alice-enroll.json") == Reasons{"enroll_needs_mutate", "not_invited"});
    CHECK(decide("alice-enroll-confirm.json") == Reasons{"enroll_needs_mutate", "no_enrollment"});
}
