#include "protocol/frame.hpp"

#include <algorithm>
#include <cstring>

namespace berth::varlink {

namespace {

constexpr size_t small_buffer = 4096;

} // namespace

frame_reader::frame_reader(size_t max_message) : max_(max_message) {
}

std::span<char> frame_reader::prepare(size_t hint) {
  // Drop what was consumed; give large buffers back once they drain.
  if (begin_ > 0) {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    scan_ -= begin_;
    begin_ = 0;
  }
  if (buf_.size() > 4 * small_buffer + frame_padding && end_ < small_buffer) {
    std::vector<char> smaller(small_buffer + frame_padding);
    std::memcpy(smaller.data(), buf_.data(), end_);
    buf_.swap(smaller);
  }
  // A long message doubles the space; one byte past the limit lets `next`
  // see that a message is too long.
  size_t room = std::max(hint, end_);
  room = std::min(room, max_ + 1 - std::min(end_, max_ + 1));
  room = std::max<size_t>(room, 1);
  size_t need = end_ + room + frame_padding;
  if (buf_.size() < need)
    buf_.resize(need);
  return {buf_.data() + end_, buf_.size() - frame_padding - end_};
}

void frame_reader::commit(size_t n) {
  end_ += n;
}

frame_reader::status frame_reader::next(std::string_view& msg) {
  if (scan_ == end_)
    return end_ - begin_ > max_ ? status::oversize : status::incomplete;
  auto* first = buf_.data() + scan_;
  auto* nul = static_cast<char*>(std::memchr(first, 0, end_ - scan_));
  if (nul == nullptr) {
    scan_ = end_;
    return end_ - begin_ > max_ ? status::oversize : status::incomplete;
  }
  size_t len = nul - (buf_.data() + begin_);
  if (len > max_)
    return status::oversize;
  msg = {buf_.data() + begin_, len};
  begin_ += len + 1;
  scan_ = begin_;
  return status::message;
}

std::vector<char> frame_reader::take_rest() {
  std::vector<char> rest(buf_.begin() + begin_, buf_.begin() + end_);
  begin_ = scan_ = end_ = 0;
  return rest;
}

} // namespace berth::varlink
