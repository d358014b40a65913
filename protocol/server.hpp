// A varlink server on a libuv loop: listeners, one session per connection,
// framing, call decoding and org.varlink.service. Interfaces are plugged in
// with an executor that runs each decoded call wherever it likes; replies
// may come back from any thread.
#pragma once

#include "protocol/address.hpp"
#include "protocol/rpc.hpp"

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace berth::varlink {

struct server_config {
  std::vector<address> addresses;
  /// Listening sockets handed over by socket activation.
  std::vector<int> activated_fds;
  unsigned socket_mode = 0600;
  /// Exit after this long with no connection and no call (0: never).
  std::chrono::milliseconds idle_timeout{0};
  size_t max_message = 16u << 20;
  size_t max_depth = 256;
  /// How long a shutdown waits for calls in flight.
  std::chrono::milliseconds drain_timeout{10000};
  // org.varlink.service.GetInfo
  std::string vendor, product, version, url;
};

/// Counters, read on the loop thread.
struct server_stats {
  size_t connections = 0;
  size_t calls_in_flight = 0;
  uint64_t calls_total = 0;
};

class session;
class reply_queue;
class link;
struct raw_phase;

class server {
public:
  /// Runs a decoded call; called on the loop thread.
  using executor = std::function<void(const rpc::call_ptr&)>;

  server(uv_loop_t* loop, server_config cfg);
  ~server();
  server(const server&) = delete;
  server& operator=(const server&) = delete;

  /// Serves `iface` through `exec`. Methods the executor does not answer
  /// must still get a reply (`not_implemented`).
  /// Methods named in `streams_only` answer ExpectedMore without `more`;
  /// with `keep_parameters` each call also carries its raw parameters.
  void add_interface(const rpc::interface_info& iface, executor exec,
                     std::vector<std::string_view> streams_only = {},
                     bool keep_parameters = false);

  /// Opens every listener; false with `err` set if one fails (then none is
  /// left open). Sets SIGPIPE to be ignored in the whole process, so that a
  /// client hanging up makes writes fail with EPIPE.
  bool start(std::string& err);

  /// Stops accepting, lets calls in flight finish (cancelling streams),
  /// closes connections and removes socket files. `done` runs on the loop
  /// once everything is closed.
  void shutdown(std::function<void()> done);

  /// Runs when the idle timeout expires (set before `start`).
  std::function<void()> on_idle;

  server_stats stats() const;
  const server_config& config() const { return cfg_; }

private:
  friend class session;
  friend class reply_queue;
  friend class link;
  struct listener;
  struct binding;
  struct parse_state;
  class builtin_service;

  binding* find_binding(std::string_view name);
  void on_connection(listener& l);
  void deliver(uint64_t session, std::string msg, bool final,
               std::shared_ptr<raw_phase> raw);
  void drain_replies();
  session* find_session(uint64_t id);
  void session_closed(uint64_t id);
  void call_finished();
  void update_idle_timer();
  void maybe_finish_shutdown();
  void close_listeners();

  uv_loop_t* loop_;
  server_config cfg_;
  std::vector<std::unique_ptr<listener>> listeners_;
  std::vector<binding> ifaces_;
  std::unordered_map<uint64_t, std::unique_ptr<session>> sessions_;
  uint64_t next_session_ = 1;
  std::shared_ptr<reply_queue> replies_;
  uv_async_t* async_ = nullptr;
  uv_timer_t* idle_timer_ = nullptr;
  uv_timer_t* drain_timer_ = nullptr;
  size_t in_flight_ = 0;
  uint64_t calls_total_ = 0;
  bool stopping_ = false;
  std::function<void()> stopped_;
  std::unique_ptr<parse_state> parse_;
  std::unique_ptr<builtin_service> builtin_;
};

} // namespace berth::varlink
