// The varlink server's streams: backpressure for `more` replies and the
// duplex raw phase after an upgrade, against a server on its own loop.
#define BOOST_TEST_MODULE streams
#include <boost/test/unit_test.hpp>

#include "protocol/client.hpp"
#include "protocol/json_decode.hpp"
#include "protocol/server.hpp"

#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <future>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace rpc = berth::rpc;
namespace varlink = berth::varlink;
namespace json = berth::json;
namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

// Waits that guard against a hang only: they fail a test that would
// otherwise block forever, and say nothing about speed.
constexpr auto hang_guard = 60s;

// The most a socket's kernel buffer may hold for a sender without
// privileges: what a stalled client can have taken beyond the server's own
// backlog.
size_t kernel_slack() {
  size_t wmem_max = 4u << 20;
  if (FILE* f = std::fopen("/proc/sys/net/core/wmem_max", "r")) {
    unsigned long v = 0;
    if (std::fscanf(f, "%lu", &v) == 1)
      wmem_max = v;
    std::fclose(f);
  }
  return 2 * wmem_max;
}

// --- a test interface --------------------------------------------------------

// Stream(bytes, chunk, on_loop) streams `bytes` of payload in messages of
// `chunk` bytes; Echo() upgrades to a duplex phase that echoes upper case.
struct stream_in {
  int64_t bytes = 0;
  int64_t chunk = 0;
  bool on_loop = false;
};

rpc::call_ptr decode_stream(const simdjson::dom::element* params,
                            json::decode_error& err) {
  auto c = std::make_shared<rpc::typed_call<stream_in>>();
  if (!params)
    return c;
  for (auto [key, value] : params->get_object()) {
    auto e = simdjson::INCORRECT_TYPE;
    if (key == "bytes")
      e = value.get(c->in.bytes);
    else if (key == "chunk")
      e = value.get(c->in.chunk);
    else if (key == "on_loop")
      e = value.get(c->in.on_loop);
    if (e != simdjson::SUCCESS) {
      err.field = std::string{key};
      return nullptr;
    }
  }
  return c;
}

rpc::call_ptr decode_echo(const simdjson::dom::element*, json::decode_error&) {
  return std::make_shared<rpc::call>();
}

constexpr std::string_view test_description =
    "interface org.berth.streamtest\n"
    "method Echo() -> ()\n"
    "method Stream(bytes: int, chunk: int, on_loop: bool)"
    " -> (seq: int, data: string)\n";

// Sorted by name, as `interface_info::find` expects.
const std::array<rpc::method_info, 2> test_methods{{
  {"Echo", "org.berth.streamtest.Echo", 0, decode_echo},
  {"Stream", "org.berth.streamtest.Stream", 1, decode_stream},
}};

const rpc::interface_info test_iface{"org.berth.streamtest", test_description,
                                     test_methods};

// --- producers of `more` streams ---------------------------------------------

constexpr size_t stream_limit = 1u << 20;
constexpr size_t stream_low_water = 256u << 10;

// The payload of message `seq`: a pattern that shifts with the sequence, so
// that a lost, repeated or reordered message shows.
std::string payload(int64_t seq, size_t n) {
  std::string s(n, 'a');
  for (size_t i = 0; i < n; ++i)
    s[i] = char('a' + (size_t(seq) * 7 + i) % 26);
  return s;
}

std::string stream_message(int64_t seq, size_t n) {
  return "{\"seq\":" + std::to_string(seq) + ",\"data\":\"" + payload(seq, n) +
         "\"}";
}

// What the producers saw, read by the test thread.
struct stream_report {
  std::mutex mtx;
  std::condition_variable cv;
  size_t max_backlog = 0;
  size_t max_message = 0;
  size_t sent_bytes = 0;
  size_t waits = 0;
  bool waiting = false;
  bool done = false;
  bool cancelled = false;

  void sent(size_t backlog, size_t message) {
    std::lock_guard guard{mtx};
    max_backlog = std::max(max_backlog, backlog);
    max_message = std::max(max_message, message + 1);
    sent_bytes += message + 1;
  }
  void finish(bool was_cancelled) {
    std::lock_guard guard{mtx};
    done = true;
    cancelled = was_cancelled;
    cv.notify_all();
  }
  bool wait_done() {
    std::unique_lock guard{mtx};
    return cv.wait_for(guard, hang_guard, [this] { return done; });
  }
};

// A producer on a thread of its own: sends while the backlog is under the
// limit, then sleeps until the connection drains to the low water mark.
void produce_on_thread(rpc::call_ptr c, stream_in in, stream_report& r) {
  int64_t seq = 0;
  int64_t left = in.bytes;
  while (left > 0 && !c->cancelled()) {
    while (left > 0 && c->backlog() < stream_limit) {
      auto n = size_t(std::min(left, in.chunk));
      auto msg = stream_message(seq++, n);
      c->reply_json(msg, true);
      r.sent(c->backlog(), msg.size());
      left -= int64_t(n);
    }
    if (left == 0)
      break;
    {
      std::lock_guard guard{r.mtx};
      r.waiting = true;
      r.waits++;
      r.cv.notify_all();
    }
    c->when_writable(stream_low_water, [&r] {
      std::lock_guard guard{r.mtx};
      r.waiting = false;
      r.cv.notify_all();
    });
    std::unique_lock guard{r.mtx};
    r.cv.wait(guard, [&r] { return !r.waiting; });
  }
  bool cancelled = c->cancelled();
  c->reply_json(stream_message(seq, 0));
  r.finish(cancelled);
}

// The same producer driven by callbacks on the I/O thread: each wake-up
// sends at once, from inside the callback.
struct loop_producer : std::enable_shared_from_this<loop_producer> {
  rpc::call_ptr c;
  stream_in in;
  stream_report* r;
  int64_t seq = 0;
  int64_t left = 0;

  void pump() {
    while (left > 0 && !c->cancelled() && c->backlog() < stream_limit) {
      auto n = size_t(std::min(left, in.chunk));
      auto msg = stream_message(seq++, n);
      c->reply_json(msg, true);
      r->sent(c->backlog(), msg.size());
      left -= int64_t(n);
    }
    if (left > 0 && !c->cancelled()) {
      {
        std::lock_guard guard{r->mtx};
        r->waits++;
      }
      c->when_writable(stream_low_water,
                       [self = shared_from_this()] { self->pump(); });
      return;
    }
    bool cancelled = c->cancelled();
    c->reply_json(stream_message(seq, 0));
    r->finish(cancelled);
  }
};

// --- the duplex peer ---------------------------------------------------------

constexpr size_t echo_limit = 512u << 10;
constexpr size_t echo_low_water = 128u << 10;

// What an Echo peer saw, read by the test thread.
struct echo_report {
  std::mutex mtx;
  std::condition_variable cv;
  std::vector<std::string> events; // "ready", "eof", "hangup"
  size_t max_backlog = 0;
  size_t max_chunk = 0;
  size_t received = 0;
  size_t pauses = 0;
  bool data_before_ready = false;

  void event(std::string e) {
    std::lock_guard guard{mtx};
    events.push_back(std::move(e));
    cv.notify_all();
  }
  bool wait_event(const std::string& e) {
    std::unique_lock guard{mtx};
    return cv.wait_for(guard, hang_guard, [&] {
      return std::find(events.begin(), events.end(), e) != events.end();
    });
  }
  std::vector<std::string> seen() {
    std::lock_guard guard{mtx};
    return events;
  }
};

// Echoes in upper case with backpressure of its own: past `echo_limit`
// queued it stops reading until the client catches up. A '!' in the input
// makes it close the channel after echoing; a half-close is answered with
// "BYE" and a close.
class echo_peer : public rpc::raw_peer,
                  public std::enable_shared_from_this<echo_peer> {
public:
  explicit echo_peer(std::shared_ptr<echo_report> r) : r_(*r), keep_(r) {
  }

  void ready(std::shared_ptr<rpc::raw_channel> ch) {
    ch_ = std::move(ch);
    r_.event("ready");
  }

  void on_data(std::string_view bytes) override {
    if (!ch_) {
      std::lock_guard guard{r_.mtx};
      r_.data_before_ready = true;
      return;
    }
    std::string up(bytes);
    for (auto& ch : up)
      ch = char(std::toupper(static_cast<unsigned char>(ch)));
    size_t after = ch_->write(std::move(up));
    {
      std::lock_guard guard{r_.mtx};
      r_.max_backlog = std::max(r_.max_backlog, after);
      r_.max_chunk = std::max(r_.max_chunk, bytes.size());
      r_.received += bytes.size();
    }
    if (bytes.find('!') != std::string_view::npos) {
      ch_->close();
      return;
    }
    if (after > echo_limit && !paused_) {
      paused_ = true;
      {
        std::lock_guard guard{r_.mtx};
        r_.pauses++;
      }
      ch_->pause_reading(true);
      ch_->when_writable(echo_low_water, [self = shared_from_this()] {
        self->paused_ = false;
        self->ch_->pause_reading(false);
      });
    }
  }

  void on_client_closed(bool hangup) override {
    r_.event(hangup ? "hangup" : "eof");
    if (!hangup && ch_) {
      ch_->write("BYE");
      ch_->close();
    }
  }

private:
  echo_report& r_;
  std::shared_ptr<echo_report> keep_;
  std::shared_ptr<rpc::raw_channel> ch_;
  bool paused_ = false;
};

// --- the server under test ---------------------------------------------------

// A varlink server with the test interface on a loop thread of its own.
class test_server {
public:
  test_server() {
    auto base = fs::temp_directory_path() / "berth-unit-streams-XXXXXX";
    std::string tmpl = base.string();
    BOOST_TEST_REQUIRE(mkdtemp(tmpl.data()) != nullptr);
    dir_ = tmpl;
    addr_ = *varlink::address::parse("unix:" + (dir_ / "sock").string());
    std::promise<std::string> started;
    auto result = started.get_future();
    loop_thread_ = std::thread([this, &started] { run(started); });
    auto err = result.get();
    BOOST_TEST_REQUIRE(err.empty(), err);
  }

  ~test_server() {
    uv_async_send(&stop_);
    loop_thread_.join();
    for (auto& t : producers_)
      t.join();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  stream_report stream;
  // Outlives the server: peers may hear of its end after it is gone.
  std::shared_ptr<echo_report> echo_ptr = std::make_shared<echo_report>();
  echo_report& echo = *echo_ptr;

  varlink::client connect() {
    varlink::client c;
    std::string err;
    BOOST_TEST_REQUIRE(c.connect(addr_, err), err);
    // A server that stops answering fails the test instead of hanging it.
    timeval tv{std::chrono::seconds{hang_guard}.count(), 0};
    setsockopt(c.fd(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(c.fd(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    return c;
  }

private:
  void run(std::promise<std::string>& started) {
    uv_loop_t loop;
    uv_loop_init(&loop);
    varlink::server_config cfg;
    cfg.addresses.push_back(addr_);
    cfg.vendor = "berth";
    {
      varlink::server srv{&loop, cfg};
      srv.add_interface(
          test_iface, [this](const rpc::call_ptr& c) { invoke(c); },
          {"Stream"});
      std::string err;
      if (!srv.start(err)) {
        uv_loop_close(&loop);
        started.set_value(err);
        return;
      }
      uv_async_init(&loop, &stop_, [](uv_async_t* a) {
        static_cast<varlink::server*>(a->data)->shutdown([a] {
          uv_close(reinterpret_cast<uv_handle_t*>(a), nullptr);
        });
      });
      stop_.data = &srv;
      started.set_value({});
      uv_run(&loop, UV_RUN_DEFAULT);
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    uv_loop_close(&loop);
  }

  // Runs on the loop thread.
  void invoke(const rpc::call_ptr& c) {
    if (c->method().name == "Echo") {
      auto peer = std::make_shared<echo_peer>(echo_ptr);
      c->reply_upgraded_duplex(
          "{}", peer,
          [peer](std::shared_ptr<rpc::raw_channel> ch) { peer->ready(ch); });
      return;
    }
    auto& in = static_cast<rpc::typed_call<stream_in>&>(*c).in;
    if (in.chunk <= 0 || in.bytes < 0) {
      c->fail_json("org.varlink.service.InvalidParameter",
                   "{\"parameter\":\"chunk\"}");
      return;
    }
    if (in.on_loop) {
      auto p = std::make_shared<loop_producer>();
      p->c = c;
      p->in = in;
      p->r = &stream;
      p->left = in.bytes;
      p->pump();
      return;
    }
    producers_.emplace_back(
        [this, c, in] { produce_on_thread(c, in, stream); });
  }

  fs::path dir_;
  varlink::address addr_;
  uv_async_t stop_;
  std::thread loop_thread_;
  std::vector<std::thread> producers_; // touched on the loop thread only
};

// --- client helpers ----------------------------------------------------------

std::string stream_params(int64_t bytes, int64_t chunk, bool on_loop) {
  return "{\"bytes\":" + std::to_string(bytes) +
         ",\"chunk\":" + std::to_string(chunk) +
         ",\"on_loop\":" + (on_loop ? "true" : "false") + "}";
}

// Reads a whole stream, checking each message; returns the payload bytes.
int64_t read_stream(varlink::client& cl, int64_t chunk) {
  int64_t seq = 0;
  int64_t bytes = 0;
  varlink::reply r;
  std::string err;
  for (;;) {
    BOOST_TEST_REQUIRE(cl.receive(r, err), err);
    BOOST_TEST_REQUIRE(r.error.empty(), r.error);
    if (!r.continues) {
      BOOST_TEST(r.parameters == stream_message(seq, 0));
      return bytes;
    }
    auto n = r.parameters.size() - stream_message(seq, 0).size();
    BOOST_TEST_REQUIRE(n <= size_t(chunk));
    BOOST_TEST_REQUIRE(r.parameters == stream_message(seq, n),
                       "message " << seq << " differs");
    bytes += int64_t(n);
    seq++;
  }
}

// Sends an Echo call with `upgrade` and, in the same write, `pipelined`.
void start_echo(varlink::client& cl, std::string_view pipelined = {}) {
  std::string msg =
      "{\"method\":\"org.berth.streamtest.Echo\",\"upgrade\":true}";
  msg += '\0';
  msg += pipelined;
  BOOST_TEST_REQUIRE(cl.write_raw(msg));
  varlink::reply r;
  std::string err;
  BOOST_TEST_REQUIRE(cl.receive(r, err), err);
  BOOST_TEST_REQUIRE(r.error.empty(), r.error);
  BOOST_TEST(!r.continues);
}

// Reads raw bytes until the server closes the connection (a byte at a
// time: the client may hold some already).
std::string read_to_eof(varlink::client& cl) {
  std::string out, byte;
  while (cl.read_raw(1, byte))
    out += byte;
  return out;
}

// A round trip on a fresh connection: varlink still answers.
// Reads as many raw bytes as `want` has and checks they are `want`.
void expect_raw(varlink::client& cl, const std::string& want) {
  std::string got;
  BOOST_TEST_REQUIRE(cl.read_raw(want.size(), got));
  BOOST_TEST(got == want);
}

// What the echo peer sends back for `text`.
std::string echoed(std::string text) {
  for (auto& ch : text)
    ch = char(std::toupper(static_cast<unsigned char>(ch)));
  return text;
}

// Sends `text` to the echo peer and checks what comes back.
void echo_round_trip(varlink::client& cl, const std::string& text) {
  BOOST_TEST_REQUIRE(cl.write_raw(text));
  expect_raw(cl, echoed(text));
}

void check_other_connection(test_server& srv) {
  auto cl = srv.connect();
  BOOST_TEST_REQUIRE(cl.send("org.varlink.service.GetInfo", {}));
  varlink::reply r;
  std::string err;
  BOOST_TEST_REQUIRE(cl.receive(r, err), err);
  BOOST_TEST(r.error.empty());
  BOOST_TEST(r.parameters.find("org.berth.streamtest") != std::string::npos);
}

} // namespace

// --- backpressure ------------------------------------------------------------

BOOST_AUTO_TEST_CASE(a_stalled_reader_bounds_the_backlog_of_a_thread) {
  test_server srv;
  auto cl = srv.connect();
  constexpr int64_t total = 200ll << 20;
  constexpr int64_t chunk = 64 << 10;
  BOOST_TEST_REQUIRE(cl.send("org.berth.streamtest.Stream",
                             stream_params(total, chunk, false),
                             {.more = true}));
  // The client reads nothing for two seconds: the producer must wait, and
  // all it sent is in the backlog or in the socket's kernel buffer.
  std::this_thread::sleep_for(2s);
  {
    std::lock_guard guard{srv.stream.mtx};
    BOOST_TEST(srv.stream.waits > 0u);
    BOOST_TEST(!srv.stream.done);
    BOOST_TEST(srv.stream.sent_bytes <
               stream_limit + srv.stream.max_message + kernel_slack());
  }
  BOOST_TEST(read_stream(cl, chunk) == total);
  BOOST_TEST_REQUIRE(srv.stream.wait_done());
  std::lock_guard guard{srv.stream.mtx};
  BOOST_TEST(!srv.stream.cancelled);
  BOOST_TEST(srv.stream.max_backlog <
             stream_limit + srv.stream.max_message + 1);
  BOOST_TEST(srv.stream.max_backlog >= stream_limit);
}

BOOST_AUTO_TEST_CASE(a_producer_on_the_loop_can_send_from_its_callback) {
  test_server srv;
  auto cl = srv.connect();
  constexpr int64_t total = 48ll << 20;
  constexpr int64_t chunk = 100000;
  BOOST_TEST_REQUIRE(cl.send("org.berth.streamtest.Stream",
                             stream_params(total, chunk, true),
                             {.more = true}));
  std::this_thread::sleep_for(1s);
  check_other_connection(srv);
  {
    std::lock_guard guard{srv.stream.mtx};
    BOOST_TEST(srv.stream.sent_bytes <
               stream_limit + srv.stream.max_message + kernel_slack());
  }
  BOOST_TEST(read_stream(cl, chunk) == total);
  BOOST_TEST_REQUIRE(srv.stream.wait_done());
  std::lock_guard guard{srv.stream.mtx};
  BOOST_TEST(srv.stream.waits > 0u);
  BOOST_TEST(srv.stream.max_backlog <
             stream_limit + srv.stream.max_message + 1);
}

BOOST_AUTO_TEST_CASE(a_hang_up_wakes_a_waiting_producer) {
  test_server srv;
  {
    auto cl = srv.connect();
    BOOST_TEST_REQUIRE(cl.send("org.berth.streamtest.Stream",
                               stream_params(1ll << 40, 64 << 10, false),
                               {.more = true}));
    std::unique_lock guard{srv.stream.mtx};
    BOOST_TEST_REQUIRE(srv.stream.cv.wait_for(
        guard, hang_guard, [&] { return srv.stream.waiting; }));
  }
  BOOST_TEST_REQUIRE(srv.stream.wait_done());
  std::lock_guard guard{srv.stream.mtx};
  BOOST_TEST(srv.stream.cancelled);
}

BOOST_AUTO_TEST_CASE(later_calls_wait_for_the_stream_and_then_run) {
  test_server srv;
  auto cl = srv.connect();
  // Both calls in one write: the second waits for the first to end.
  BOOST_TEST_REQUIRE(cl.send("org.berth.streamtest.Stream",
                             stream_params(8 << 20, 32 << 10, false),
                             {.more = true}));
  BOOST_TEST_REQUIRE(cl.send("org.varlink.service.GetInfo", {}));
  BOOST_TEST(read_stream(cl, 32 << 10) == 8 << 20);
  varlink::reply r;
  std::string err;
  BOOST_TEST_REQUIRE(cl.receive(r, err), err);
  BOOST_TEST(r.error.empty());
  BOOST_TEST(!r.continues);
}

// --- duplex upgrade ----------------------------------------------------------

BOOST_AUTO_TEST_CASE(pipelined_bytes_reach_the_peer_first) {
  test_server srv;
  auto cl = srv.connect();
  start_echo(cl, "hello, ");
  expect_raw(cl, "HELLO, ");
  echo_round_trip(cl, "world");
  auto events = srv.echo.seen();
  BOOST_TEST_REQUIRE(!events.empty());
  BOOST_TEST(events.front() == "ready");
  std::lock_guard guard{srv.echo.mtx};
  BOOST_TEST(!srv.echo.data_before_ready);
}

BOOST_AUTO_TEST_CASE(a_slow_reader_bounds_the_backlog_of_a_duplex_peer) {
  test_server srv;
  auto cl = srv.connect();
  start_echo(cl);
  constexpr size_t total = 64u << 20;
  std::string input(total, 'x');
  for (size_t i = 0; i < total; ++i)
    input[i] = char('a' + (i * 31 + i / 4093) % 26);
  std::atomic<bool> written{false};
  std::thread writer([&] { written = cl.write_raw(input); });
  // While this reader sleeps, the peer stops reading once its backlog is
  // full, and other connections are served as usual.
  std::this_thread::sleep_for(1s);
  {
    std::lock_guard guard{srv.echo.mtx};
    BOOST_TEST(srv.echo.pauses > 0u);
    BOOST_TEST(srv.echo.received <
               echo_limit + srv.echo.max_chunk + kernel_slack());
  }
  check_other_connection(srv);
  {
    auto other = srv.connect();
    start_echo(other, "other");
    expect_raw(other, "OTHER");
  }
  std::string got;
  BOOST_TEST_REQUIRE(cl.read_raw(total, got));
  writer.join();
  BOOST_TEST(written.load());
  BOOST_TEST((got == echoed(input)));
  std::lock_guard guard{srv.echo.mtx};
  BOOST_TEST(srv.echo.pauses > 0u);
  BOOST_TEST(srv.echo.max_backlog <= echo_limit + srv.echo.max_chunk);
}

BOOST_AUTO_TEST_CASE(a_half_close_lets_the_peer_finish) {
  test_server srv;
  auto cl = srv.connect();
  start_echo(cl);
  echo_round_trip(cl, "abc");
  BOOST_TEST_REQUIRE(::shutdown(cl.fd(), SHUT_WR) == 0);
  BOOST_TEST(read_to_eof(cl) == "BYE");
  auto events = srv.echo.seen();
  BOOST_TEST((events == std::vector<std::string>{"ready", "eof"}));
}

BOOST_AUTO_TEST_CASE(the_peer_closes_after_flushing) {
  test_server srv;
  auto cl = srv.connect();
  start_echo(cl, "last words!");
  BOOST_TEST(read_to_eof(cl) == "LAST WORDS!");
  // The peer closed: it hears nothing of the connection's end.
  check_other_connection(srv);
  auto events = srv.echo.seen();
  BOOST_TEST((events == std::vector<std::string>{"ready"}));
}

BOOST_AUTO_TEST_CASE(a_hang_up_reaches_the_peer) {
  test_server srv;
  {
    auto cl = srv.connect();
    start_echo(cl);
    echo_round_trip(cl, "x");
  }
  BOOST_TEST_REQUIRE(srv.echo.wait_event("hangup"));
  auto events = srv.echo.seen();
  BOOST_TEST((events == std::vector<std::string>{"ready", "hangup"}));
  check_other_connection(srv);
}

BOOST_AUTO_TEST_CASE(without_upgrade_the_connection_stays_varlink) {
  test_server srv;
  auto cl = srv.connect();
  BOOST_TEST_REQUIRE(cl.send("org.berth.streamtest.Echo", {}));
  BOOST_TEST_REQUIRE(cl.send("org.varlink.service.GetInfo", {}));
  varlink::reply r;
  std::string err;
  BOOST_TEST_REQUIRE(cl.receive(r, err), err);
  BOOST_TEST(r.parameters == "{}");
  BOOST_TEST_REQUIRE(cl.receive(r, err), err);
  BOOST_TEST(r.parameters.find("org.berth.streamtest") != std::string::npos);
  BOOST_TEST_REQUIRE(srv.echo.wait_event("hangup"));
  auto events = srv.echo.seen();
  BOOST_TEST((events == std::vector<std::string>{"hangup"}));
}

BOOST_AUTO_TEST_CASE(a_shutdown_ends_the_duplex_phase) {
  auto srv = std::make_unique<test_server>();
  auto report = srv->echo_ptr;
  auto cl = srv->connect();
  start_echo(cl, "a");
  expect_raw(cl, "A");
  srv.reset();
  BOOST_TEST(read_to_eof(cl).empty());
  auto events = report->seen();
  BOOST_TEST((events == std::vector<std::string>{"ready", "hangup"}));
}
