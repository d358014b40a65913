// Small kernel files (/proc, cgroupfs) read whole, and their text split into
// lines and blank-separated words, for the stats sampler and the process
// listing.
#pragma once

#include <cerrno>
#include <fcntl.h>
#include <string>
#include <string_view>
#include <unistd.h>

namespace berth::runtime {

/// Reads the rest of `fd` into `buf`, reusing its capacity (no allocation
/// once it has grown), then closes `fd`. False with errno set and `buf`
/// empty when a read fails.
inline bool read_and_close(int fd, std::string& buf) {
  if (buf.capacity() < 4096)
    buf.reserve(4096);
  size_t used = 0;
  for (;;) {
    buf.resize(buf.capacity());
    ssize_t n = ::read(fd, buf.data() + used, buf.size() - used);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      int e = errno;
      ::close(fd);
      errno = e;
      buf.clear();
      return false;
    }
    if (n == 0)
      break;
    used += static_cast<size_t>(n);
    if (used == buf.size())
      buf.reserve(buf.size() * 2);
  }
  buf.resize(used);
  ::close(fd);
  return true;
}

/// The whole file at `path` into `buf` as read_and_close reads it; false
/// with errno set when it cannot be opened or read.
inline bool read_text_file(const char* path, std::string& buf) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  return fd >= 0 && read_and_close(fd, buf);
}

inline bool read_text_file(const std::string& path, std::string& buf) {
  return read_text_file(path.c_str(), buf);
}

inline bool is_blank(char c) {
  return c == ' ' || c == '\t' || c == '\n';
}

inline std::string_view skip_blanks(std::string_view s) {
  while (!s.empty() && is_blank(s.front()))
    s.remove_prefix(1);
  return s;
}

/// Splits off the next line of `text` (without its newline).
inline std::string_view next_line(std::string_view& text) {
  size_t eol = text.find('\n');
  std::string_view line = text.substr(0, eol);
  text.remove_prefix(eol == std::string_view::npos ? text.size() : eol + 1);
  return line;
}

/// Splits off the next word of `s`; blanks, tabs and newlines separate
/// words.
inline std::string_view next_word(std::string_view& s) {
  s = skip_blanks(s);
  size_t end = 0;
  while (end < s.size() && !is_blank(s[end]))
    ++end;
  std::string_view word = s.substr(0, end);
  s.remove_prefix(end);
  return word;
}

} // namespace berth::runtime
