// One libFuzzer binary per target; CMake names the target function in TWOSTEP_FUZZ_TARGET.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "fuzz/FuzzTargets.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        twostep::fuzz::TWOSTEP_FUZZ_TARGET(
            std::string_view(reinterpret_cast<const char*>(data), size));
    } catch (const twostep::fuzz::FuzzFailure& e) {
        // A broken property is a crash for libFuzzer: it saves the input as crash-<sha1>.
        std::fprintf(stderr, "property violated: %s\n", e.what());
        std::abort();
    }
    // Any other exception escapes on purpose: libFuzzer reports it as a crash too.
    return 0;
}
