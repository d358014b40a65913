// frame_reader: splitting a byte stream into NUL-terminated messages.
#define BOOST_TEST_MODULE frame
#include <boost/test/unit_test.hpp>

#include "protocol/frame.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cstring>
#include <random>
#include <string>
#include <vector>

using berth::varlink::frame_padding;
using berth::varlink::frame_reader;
using status = frame_reader::status;
using namespace std::string_literals;

namespace {

// What the reader handed out: messages, then the status that stopped it.
struct drained {
  std::vector<std::string> messages;
  status last = status::incomplete;
};

// Checks that the `frame_padding` bytes after a message can be read: under
// AddressSanitizer a buffer without them fails here.
void touch_padding(std::string_view msg) {
  volatile char sink = 0;
  for (size_t i = 0; i < frame_padding; ++i)
    sink = sink ^ msg.data()[msg.size() + i];
  (void)sink;
}

// Takes every complete message out of `r`, checking the padding of each
// against the end of the span that the last `prepare` handed out.
drained drain(frame_reader& r, std::span<char> last_span = {}) {
  drained d;
  std::string_view msg;
  for (;;) {
    d.last = r.next(msg);
    if (d.last != status::message)
      return d;
    touch_padding(msg);
    if (!last_span.empty()) {
      auto msg_end = reinterpret_cast<uintptr_t>(msg.data() + msg.size());
      auto span_end =
          reinterpret_cast<uintptr_t>(last_span.data() + last_span.size());
      BOOST_TEST(msg_end + frame_padding <= span_end + frame_padding);
    }
    d.messages.emplace_back(msg);
  }
}

// Feeds `bytes` in reads of at most `chunk` bytes, draining after each.
drained feed(frame_reader& r, std::string_view bytes, size_t chunk = 1 << 20) {
  drained all;
  while (!bytes.empty()) {
    auto span = r.prepare(std::min(chunk, bytes.size()));
    BOOST_REQUIRE(!span.empty());
    size_t n = std::min({span.size(), chunk, bytes.size()});
    std::memcpy(span.data(), bytes.data(), n);
    r.commit(n);
    bytes.remove_prefix(n);
    auto d = drain(r, span);
    all.messages.insert(all.messages.end(), d.messages.begin(),
                        d.messages.end());
    all.last = d.last;
    if (d.last == status::oversize)
      return all;
  }
  return all;
}

std::vector<std::string> strings(std::initializer_list<const char*> l) {
  return {l.begin(), l.end()};
}

} // namespace

BOOST_AUTO_TEST_CASE(one_message) {
  frame_reader r;
  auto d = feed(r, "{\"method\":\"a.b.C\"}\0"s);
  BOOST_TEST(d.messages == strings({"{\"method\":\"a.b.C\"}"}),
             boost::test_tools::per_element());
  BOOST_TEST((d.last == status::incomplete));
  BOOST_TEST(r.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(next_before_any_read_is_incomplete) {
  frame_reader r;
  std::string_view msg;
  BOOST_TEST((r.next(msg) == status::incomplete));
  BOOST_TEST(r.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(many_messages_in_one_read) {
  frame_reader r;
  auto d = feed(r, "a\0bb\0ccc\0dd"s);
  BOOST_TEST(d.messages == strings({"a", "bb", "ccc"}),
             boost::test_tools::per_element());
  BOOST_TEST((d.last == status::incomplete));
  BOOST_TEST(r.buffered() == 2u);
  auto d2 = feed(r, "d\0"s);
  BOOST_TEST(d2.messages == strings({"ddd"}),
             boost::test_tools::per_element());
  BOOST_TEST(r.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(message_split_byte_by_byte) {
  frame_reader r;
  auto text = "{\"method\":\"io.podman.GetVersion\"}\0{}\0\0[1,2]\0"s;
  auto d = feed(r, text, 1);
  BOOST_TEST(d.messages ==
                 strings({"{\"method\":\"io.podman.GetVersion\"}", "{}", "",
                          "[1,2]"}),
             boost::test_tools::per_element());
  BOOST_TEST(r.buffered() == 0u);
}

BOOST_AUTO_TEST_CASE(prepare_gives_at_least_the_hint) {
  frame_reader r;
  BOOST_TEST(r.prepare(16384).size() >= 16384u);
  BOOST_TEST(r.prepare(1).size() >= 1u);
  BOOST_TEST(r.prepare(0).size() >= 1u);
  frame_reader small{100};
  auto span = small.prepare(16384);
  BOOST_TEST(span.size() >= 1u);
  BOOST_TEST(span.size() <= 101u);
}

BOOST_AUTO_TEST_CASE(empty_messages) {
  frame_reader r;
  auto d = feed(r, "\0"s);
  BOOST_TEST(d.messages.size() == 1u);
  BOOST_TEST(d.messages.at(0).empty());
  d = feed(r, "\0\0x\0"s);
  BOOST_TEST(d.messages == strings({"", "", "x"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(message_at_the_size_limit) {
  frame_reader r{100};
  auto d = feed(r, std::string(100, 'x') + '\0' + "y" + '\0');
  BOOST_TEST(d.messages.size() == 2u);
  BOOST_TEST(d.messages.at(0) == std::string(100, 'x'));
  BOOST_TEST(d.messages.at(1) == "y");
  BOOST_TEST((d.last == status::incomplete));
}

BOOST_AUTO_TEST_CASE(message_one_byte_over_the_limit) {
  frame_reader r{100};
  auto d = feed(r, std::string(101, 'x') + '\0');
  BOOST_TEST(d.messages.empty());
  BOOST_TEST((d.last == status::oversize));
}

BOOST_AUTO_TEST_CASE(message_over_the_limit_in_small_reads) {
  frame_reader r{100};
  auto d = feed(r, std::string(101, 'x') + '\0', 7);
  BOOST_TEST(d.messages.empty());
  BOOST_TEST((d.last == status::oversize));
}

BOOST_AUTO_TEST_CASE(oversize_without_a_nul) {
  frame_reader r{100};
  auto d = feed(r, std::string(100, 'x'));
  BOOST_TEST((d.last == status::incomplete));
  d = feed(r, "x");
  BOOST_TEST((d.last == status::oversize));
  // Whatever the caller reads, the verdict stays.
  std::string_view msg;
  BOOST_TEST((r.next(msg) == status::oversize));
}

BOOST_AUTO_TEST_CASE(oversize_after_good_messages) {
  frame_reader r{100};
  auto d = feed(r, "a\0b\0"s + std::string(150, 'z'), 13);
  BOOST_TEST(d.messages == strings({"a", "b"}),
             boost::test_tools::per_element());
  BOOST_TEST((d.last == status::oversize));
}

BOOST_AUTO_TEST_CASE(limit_applies_per_message_not_per_read) {
  // Two messages of 60 bytes: together more than the limit of 100.
  frame_reader r{100};
  auto one = std::string(60, 'a') + '\0';
  auto d = feed(r, one + one + one);
  BOOST_TEST(d.messages.size() == 3u);
  for (auto& m : d.messages)
    BOOST_TEST(m == std::string(60, 'a'));
  BOOST_TEST((d.last == status::incomplete));
}

BOOST_AUTO_TEST_CASE(messages_parse_in_place) {
  // simdjson reads up to its padding past the end: frame_padding covers it.
  static_assert(frame_padding >= simdjson::SIMDJSON_PADDING);
  frame_reader r;
  simdjson::dom::parser parser;
  auto text = "{\"method\":\"io.podman.Ping\"}\0[1,2,3]\0\"s\"\0"s;
  for (size_t chunk : {size_t(1), size_t(5), text.size()}) {
    frame_reader reader;
    size_t parsed = 0;
    std::string_view rest = text;
    while (!rest.empty()) {
      auto span = reader.prepare(chunk);
      size_t n = std::min({span.size(), chunk, rest.size()});
      std::memcpy(span.data(), rest.data(), n);
      reader.commit(n);
      rest.remove_prefix(n);
      std::string_view msg;
      while (reader.next(msg) == status::message) {
        auto doc = parser.parse(msg.data(), msg.size(), false);
        BOOST_TEST(doc.error() == simdjson::SUCCESS);
        ++parsed;
      }
    }
    BOOST_TEST(parsed == 3u);
  }
}

BOOST_AUTO_TEST_CASE(take_rest_returns_unparsed_bytes) {
  frame_reader r;
  auto d = feed(r, "one\0two\0upgraded bytes\x01\x02"s);
  BOOST_TEST(d.messages == strings({"one", "two"}),
             boost::test_tools::per_element());
  auto rest = r.take_rest();
  BOOST_TEST(std::string(rest.begin(), rest.end()) ==
             "upgraded bytes\x01\x02");
  BOOST_TEST(r.buffered() == 0u);
  BOOST_TEST(r.take_rest().empty());
  // The reader stays usable.
  d = feed(r, "three\0"s);
  BOOST_TEST(d.messages == strings({"three"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(take_rest_keeps_bytes_after_a_nul) {
  frame_reader r;
  auto span = r.prepare(16);
  std::memcpy(span.data(), "a\0b\0c", 5);
  r.commit(5);
  std::string_view msg;
  BOOST_TEST((r.next(msg) == status::message));
  BOOST_TEST(msg == "a");
  // "b\0c" is unreturned: a connection leaving varlink keeps all of it.
  auto rest = r.take_rest();
  BOOST_TEST(std::string(rest.begin(), rest.end()) == "b\0c"s);
}

BOOST_AUTO_TEST_CASE(buffer_shrinks_after_a_big_message) {
  frame_reader r;
  auto big = std::string(3u << 20, 'b');
  auto d = feed(r, big + '\0' + "abc", 64 * 1024);
  BOOST_REQUIRE(d.messages.size() == 1u);
  BOOST_TEST((d.messages[0] == big));
  BOOST_TEST(r.buffered() == 3u);
  // The partial message survives the buffer being given back.
  d = feed(r, "def\0small\0"s);
  BOOST_TEST(d.messages == strings({"abcdef", "small"}),
             boost::test_tools::per_element());
  // Drained: the next read no longer gets megabytes of room.
  BOOST_TEST(r.prepare(16).size() < (1u << 20));
  d = feed(r, "after\0"s, 2);
  BOOST_TEST(d.messages == strings({"after"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(big_messages_back_to_back) {
  frame_reader r;
  std::string text;
  std::vector<std::string> want;
  for (size_t n : {size_t(70000), size_t(10), size_t(1u << 20), size_t(0),
                   size_t(5000), size_t(200000)}) {
    want.push_back(std::string(n, char('a' + n % 26)));
    text += want.back() + '\0';
  }
  for (size_t chunk : {size_t(4096), size_t(65536), size_t(1u << 22)}) {
    frame_reader reader;
    auto d = feed(reader, text, chunk);
    BOOST_TEST(d.messages == want, boost::test_tools::per_element());
    BOOST_TEST(reader.buffered() == 0u);
  }
}

BOOST_AUTO_TEST_CASE(random_splits) {
  std::mt19937 rng{20240611};
  for (int round = 0; round < 200; ++round) {
    size_t max = round % 2 ? 300 : 16u << 20;
    std::vector<std::string> want;
    std::string text;
    auto count = rng() % 20;
    for (size_t i = 0; i < count; ++i) {
      std::string m(rng() % 301, '\0');
      for (auto& c : m)
        c = char(1 + rng() % 255);
      want.push_back(m);
      text += m + '\0';
    }
    frame_reader r{max};
    drained all;
    std::string_view rest = text;
    while (!rest.empty()) {
      size_t chunk = 1 + rng() % 400;
      auto d = feed(r, rest.substr(0, chunk), 1 + rng() % 50);
      rest.remove_prefix(std::min(chunk, rest.size()));
      BOOST_REQUIRE((d.last != status::oversize));
      all.messages.insert(all.messages.end(), d.messages.begin(),
                          d.messages.end());
    }
    BOOST_TEST(all.messages == want, boost::test_tools::per_element());
    BOOST_TEST(r.buffered() == 0u);
  }
}
