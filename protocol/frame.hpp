// Splits a byte stream into NUL-terminated varlink messages.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>
#include <vector>

namespace berth::varlink {

/// Bytes kept readable past the end of any message, as simdjson requires.
inline constexpr size_t frame_padding = 64;

/// Accumulates reads and hands out complete messages without copying. Every
/// message it returns is followed by at least `frame_padding` bytes that
/// belong to the buffer, so it can be parsed in place.
class frame_reader {
public:
  enum class status { message, incomplete, oversize };

  explicit frame_reader(size_t max_message = 16u << 20);

  /// Writable space for the next read: at least `hint` bytes (more while a
  /// long message is pending) unless the message size limit caps it.
  std::span<char> prepare(size_t hint = 4096);
  /// Accounts for `n` bytes read into the span from `prepare`.
  void commit(size_t n);

  /// Finds the next complete message. The view stays valid until the next
  /// `prepare` call. `oversize`: a message exceeds the limit.
  status next(std::string_view& msg);

  /// Bytes received but not yet returned as messages.
  size_t buffered() const { return end_ - begin_; }
  /// Takes the unparsed bytes out (for a connection that leaves varlink).
  std::vector<char> take_rest();

private:
  std::vector<char> buf_;
  size_t begin_ = 0; // first byte not yet returned
  size_t scan_ = 0;  // bytes before this are known to hold no NUL
  size_t end_ = 0;   // end of received data
  size_t max_;
};

} // namespace berth::varlink
