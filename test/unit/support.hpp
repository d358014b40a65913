// Helpers shared by unit suites: preconditions that skip, a private
// temporary directory, and reading back what the code under test wrote.
// Include after <boost/test/unit_test.hpp>.
#pragma once

#include <boost/test/unit_test.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <sys/stat.h>

namespace berth::testing {

/// The answer of a test precondition: met, or "skipped: `why_not`".
inline boost::test_tools::assertion_result
precondition(bool met, const std::string& why_not) {
  boost::test_tools::assertion_result r{met};
  if (!r)
    r.message() << "skipped: " << why_not;
  return r;
}

/// A directory made by mkdtemp from `prefix` ("/tmp/berth-x-" makes
/// /tmp/berth-x-XXXXXX), removed with all its contents at the end.
class temp_dir {
public:
  explicit temp_dir(const std::string& prefix) {
    std::string tmpl = prefix + "XXXXXX";
    BOOST_TEST_REQUIRE(::mkdtemp(tmpl.data()) != nullptr);
    path = tmpl;
  }
  ~temp_dir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  std::filesystem::path path;
};

/// The whole content of the file at `p`; empty when it cannot be read.
inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in{p, std::ios::binary};
  return {std::istreambuf_iterator<char>{in}, {}};
}

inline struct stat lstat_of(const std::filesystem::path& p) {
  struct stat st {};
  BOOST_REQUIRE_MESSAGE(::lstat(p.c_str(), &st) == 0, "lstat " << p);
  return st;
}

/// `n` bytes that depend only on `seed`.
inline std::string random_bytes(size_t n, unsigned seed) {
  std::mt19937 gen{seed};
  std::string s(n, '\0');
  for (auto& c : s)
    c = static_cast<char>(gen());
  return s;
}

} // namespace berth::testing
