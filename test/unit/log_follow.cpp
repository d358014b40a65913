// The log hub: following files through io_uring and inotify.
#define BOOST_TEST_MODULE log_follow
#include <boost/test/unit_test.hpp>

#include "runtime/log_follow.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <unistd.h>

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using berth::runtime::log_hub;

namespace {

/// Collects what a follower delivers; can refuse to take more.
struct collector : berth::runtime::log_sink {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<std::string> lines;
  bool ended = false;
  std::string error;
  size_t pause_after = SIZE_MAX; ///< refuse more once this many arrived
  int calls = 0;

  bool on_lines(std::vector<std::string>&& in) override {
    std::lock_guard lock{mu};
    ++calls;
    for (auto& l : in)
      lines.push_back(std::move(l));
    cv.notify_all();
    return lines.size() < pause_after;
  }
  void on_end(const std::string& e) override {
    std::lock_guard lock{mu};
    ended = true;
    error = e;
    cv.notify_all();
  }
  bool wait_for(size_t n, std::chrono::milliseconds t = 5s) {
    std::unique_lock lock{mu};
    return cv.wait_for(lock, t, [&] { return lines.size() >= n; });
  }
  bool wait_end(std::chrono::milliseconds t = 5s) {
    std::unique_lock lock{mu};
    return cv.wait_for(lock, t, [&] { return ended; });
  }
};

struct fixture {
  fs::path dir;
  log_hub hub;
  fixture() {
    char tmpl[] = "/tmp/berth-logfollow-XXXXXX";
    dir = mkdtemp(tmpl);
    std::string err;
    BOOST_REQUIRE_MESSAGE(hub.start(err), err);
  }
  ~fixture() {
    hub.stop();
    fs::remove_all(dir);
  }
  std::string file(const char* name) { return (dir / name).string(); }
};

void append(const std::string& path, const std::string& text) {
  std::ofstream out{path, std::ios::app | std::ios::binary};
  out << text;
}

} // namespace

BOOST_FIXTURE_TEST_CASE(reads_a_whole_file_without_follow, fixture) {
  auto path = file("a.log");
  std::string big;
  for (int i = 0; i < 100000; ++i)
    big += "line " + std::to_string(i) + "\n";
  append(path, big + "tail without newline");
  auto c = std::make_shared<collector>();
  hub.add(path, false, c);
  BOOST_REQUIRE(c->wait_end());
  BOOST_TEST(c->error.empty());
  BOOST_REQUIRE_EQUAL(c->lines.size(), 100001u);
  BOOST_TEST(c->lines[0] == "line 0\n");
  BOOST_TEST(c->lines[99999] == "line 99999\n");
  BOOST_TEST(c->lines.back() == "tail without newline");
  // Delivered in chunks, not line by line.
  BOOST_TEST(c->calls < 100);
  BOOST_TEST(hub.followers() == 0u);
}

BOOST_FIXTURE_TEST_CASE(follows_appends_and_joins_partial_lines, fixture) {
  auto path = file("b.log");
  append(path, "first\n");
  auto c = std::make_shared<collector>();
  auto id = hub.add(path, true, c);
  BOOST_REQUIRE(c->wait_for(1));
  append(path, "sec");
  std::this_thread::sleep_for(50ms);
  BOOST_TEST(c->lines.size() == 1u); // a partial line waits for its end
  append(path, "ond\nthird\n");
  BOOST_REQUIRE(c->wait_for(3));
  BOOST_TEST(c->lines[1] == "second\n");
  BOOST_TEST(c->lines[2] == "third\n");
  append(path, "last, unfinished");
  hub.finish(id);
  BOOST_REQUIRE(c->wait_end());
  BOOST_REQUIRE_EQUAL(c->lines.size(), 4u);
  BOOST_TEST(c->lines[3] == "last, unfinished");
}

BOOST_FIXTURE_TEST_CASE(waits_for_a_file_that_does_not_exist_yet, fixture) {
  auto path = file("later.log");
  auto c = std::make_shared<collector>();
  auto id = hub.add(path, true, c);
  std::this_thread::sleep_for(50ms);
  append(path, "hello\n");
  BOOST_REQUIRE(c->wait_for(1));
  BOOST_TEST(c->lines[0] == "hello\n");
  hub.finish(id);
  BOOST_REQUIRE(c->wait_end());
  // Without follow a missing file is an empty log.
  auto d = std::make_shared<collector>();
  hub.add(file("never.log"), false, d);
  BOOST_REQUIRE(d->wait_end());
  BOOST_TEST(d->lines.empty());
  BOOST_TEST(d->error.empty());
}

BOOST_FIXTURE_TEST_CASE(starts_over_after_truncation, fixture) {
  auto path = file("rot.log");
  append(path, "old 1\nold 2\n");
  auto c = std::make_shared<collector>();
  auto id = hub.add(path, true, c);
  BOOST_REQUIRE(c->wait_for(2));
  { std::ofstream trunc{path, std::ios::trunc}; }
  append(path, "new\n");
  BOOST_REQUIRE(c->wait_for(3));
  BOOST_TEST(c->lines[2] == "new\n");
  hub.finish(id);
  BOOST_REQUIRE(c->wait_end());
}

BOOST_FIXTURE_TEST_CASE(a_paused_follower_resumes_where_it_stopped, fixture) {
  auto path = file("p.log");
  std::string text;
  for (int i = 0; i < 50000; ++i)
    text += std::to_string(i) + "\n";
  append(path, text);
  auto c = std::make_shared<collector>();
  c->pause_after = 10;
  auto id = hub.add(path, false, c);
  BOOST_REQUIRE(c->wait_for(10));
  std::this_thread::sleep_for(50ms);
  size_t held = c->lines.size();
  BOOST_TEST(held < 50000u); // it stopped reading
  {
    std::lock_guard lock{c->mu};
    c->pause_after = SIZE_MAX;
  }
  hub.resume(id);
  BOOST_REQUIRE(c->wait_end());
  BOOST_REQUIRE_EQUAL(c->lines.size(), 50000u);
  for (int i = 0; i < 50000; i += 997)
    BOOST_TEST(c->lines[size_t(i)] == std::to_string(i) + "\n");
}

BOOST_FIXTURE_TEST_CASE(fifty_followers_each_get_every_line, fixture) {
  auto path = file("many.log");
  std::vector<std::shared_ptr<collector>> cs;
  std::vector<log_hub::id> ids;
  for (int i = 0; i < 50; ++i) {
    cs.push_back(std::make_shared<collector>());
    ids.push_back(hub.add(path, true, cs.back()));
  }
  for (int i = 0; i < 200; ++i)
    append(path, "l" + std::to_string(i) + "\n");
  for (auto id : ids)
    hub.finish(id);
  for (auto& c : cs) {
    BOOST_REQUIRE(c->wait_end());
    BOOST_REQUIRE_EQUAL(c->lines.size(), 200u);
    for (int i = 0; i < 200; ++i)
      BOOST_TEST(c->lines[size_t(i)] == "l" + std::to_string(i) + "\n");
  }
  BOOST_TEST(hub.followers() == 0u);
}

BOOST_FIXTURE_TEST_CASE(cancel_frees_the_follower_and_its_descriptors, fixture) {
  auto path = file("c.log");
  append(path, "x\n");
  auto fds = [] {
    size_t n = 0;
    for ([[maybe_unused]] auto& e : fs::directory_iterator("/proc/self/fd"))
      ++n;
    return n;
  };
  auto before = fds();
  std::vector<log_hub::id> ids;
  std::vector<std::shared_ptr<collector>> cs;
  for (int i = 0; i < 20; ++i) {
    cs.push_back(std::make_shared<collector>());
    ids.push_back(hub.add(path, true, cs.back()));
  }
  for (auto& c : cs)
    BOOST_REQUIRE(c->wait_for(1));
  BOOST_TEST(hub.followers() == 20u);
  for (auto id : ids)
    hub.cancel(id);
  for (int i = 0; i < 100 && hub.followers() > 0; ++i)
    std::this_thread::sleep_for(10ms);
  BOOST_TEST(hub.followers() == 0u);
  BOOST_TEST(fds() == before);
  append(path, "after\n");
  std::this_thread::sleep_for(50ms);
  for (auto& c : cs)
    BOOST_TEST(c->lines.size() == 1u);
}
