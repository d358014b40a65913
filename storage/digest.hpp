// Content digests: SHA-256 over memory and files, and digest strings as the
// OCI image spec writes them ("sha256:<64 lowercase hex>").
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace berth::storage {

/// An incremental SHA-256 (OpenSSL EVP). Feed it with `update`; the first
/// call to `hex` or `digest` finishes it, later calls return the same value
/// and further updates are ignored.
class sha256 {
public:
  sha256();
  ~sha256();
  sha256(sha256&& other) noexcept;
  sha256& operator=(sha256&& other) noexcept;
  sha256(const sha256&) = delete;
  sha256& operator=(const sha256&) = delete;

  void update(const void* data, size_t size);

  /// The 64 lowercase hex digits.
  std::string hex();

  /// "sha256:<hex>".
  std::string digest();

private:
  void* ctx_ = nullptr; ///< EVP_MD_CTX, kept out of this header
  std::string hex_;     ///< set once finished
};

/// Hashes the file at `path` into `digest` ("sha256:<hex>"); false with
/// `err` naming the file and the errno text on failure.
bool sha256_file(const std::string& path, std::string& digest,
                 std::string& err);

/// True for "sha256:" followed by exactly 64 lowercase hex digits.
bool valid_digest(std::string_view digest);

} // namespace berth::storage
