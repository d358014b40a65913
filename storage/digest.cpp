#include "storage/digest.hpp"

#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <unistd.h>
#include <utility>

namespace berth::storage {

namespace {

EVP_MD_CTX* evp(void* ctx) {
  return static_cast<EVP_MD_CTX*>(ctx);
}

// strerror's text, lowercased to sit inside a sentence.
std::string errno_text(int e) {
  std::string text = std::strerror(e);
  if (!text.empty() && text[0] >= 'A' && text[0] <= 'Z')
    text[0] = static_cast<char>(text[0] - 'A' + 'a');
  return text;
}

} // namespace

sha256::sha256() {
  auto* ctx = EVP_MD_CTX_new();
  if (ctx && EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr) != 1) {
    EVP_MD_CTX_free(ctx);
    ctx = nullptr;
  }
  ctx_ = ctx;
}

sha256::~sha256() {
  EVP_MD_CTX_free(evp(ctx_));
}

sha256::sha256(sha256&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)), hex_(std::move(other.hex_)) {
  // nop
}

sha256& sha256::operator=(sha256&& other) noexcept {
  if (this != &other) {
    EVP_MD_CTX_free(evp(ctx_));
    ctx_ = std::exchange(other.ctx_, nullptr);
    hex_ = std::move(other.hex_);
  }
  return *this;
}

void sha256::update(const void* data, size_t size) {
  if (ctx_ && hex_.empty() && size > 0)
    EVP_DigestUpdate(evp(ctx_), data, size);
}

std::string sha256::hex() {
  if (!hex_.empty() || !ctx_)
    return hex_;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  if (EVP_DigestFinal_ex(evp(ctx_), md, &len) != 1)
    return hex_;
  static constexpr char digits[] = "0123456789abcdef";
  hex_.reserve(len * 2);
  for (unsigned i = 0; i < len; ++i) {
    hex_ += digits[md[i] >> 4];
    hex_ += digits[md[i] & 0xf];
  }
  return hex_;
}

std::string sha256::digest() {
  return "sha256:" + hex();
}

bool sha256_file(const std::string& path, std::string& digest,
                 std::string& err) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    err = "hashing " + path + ": " + errno_text(errno);
    return false;
  }
  sha256 h;
  char buf[1 << 16];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      err = "hashing " + path + ": " + errno_text(errno);
      ::close(fd);
      return false;
    }
    if (n == 0)
      break;
    h.update(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  digest = h.digest();
  return true;
}

bool valid_digest(std::string_view digest) {
  constexpr std::string_view prefix = "sha256:";
  if (digest.size() != prefix.size() + 64 || !digest.starts_with(prefix))
    return false;
  for (char c : digest.substr(prefix.size()))
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
      return false;
  return true;
}

} // namespace berth::storage
