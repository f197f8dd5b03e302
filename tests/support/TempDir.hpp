/// A fresh temporary directory per test, removed with everything in it when the test ends.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <string>
#include <system_error>

namespace twostep::test {

/// Creates a private directory (mode 0700, mkdtemp) under the system temp dir. Move-only.
class TempDir {
public:
    /// @throw std::runtime_error when the directory cannot be created.
    explicit TempDir(std::string_view prefix = "twostep-test") {
        std::string pattern =
            (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
        if (::mkdtemp(pattern.data()) == nullptr) {
            throw std::runtime_error("cannot create a temporary directory from '" + pattern +
                                     "': " + std::strerror(errno));
        }
        path_ = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    TempDir(TempDir&& other) noexcept : path_(std::move(other.path_)) { other.path_.clear(); }
    TempDir& operator=(TempDir&&) = delete;

    ~TempDir() {
        // Best effort: a leftover temp dir must not fail (or abort) the test run.
        if (!path_.empty()) {
            std::error_code ignored;
            std::filesystem::remove_all(path_, ignored);
        }
    }

    const std::filesystem::path& path() const { return path_; }
    /// A path inside the directory.
    std::filesystem::path operator/(const std::filesystem::path& name) const {
        return path_ / name;
    }

private:
    std::filesystem::path path_;
};

}  // namespace twostep::test
