#include "protocol/server.hpp"

#include "protocol/frame.hpp"
#include "protocol/gen/org_varlink_service.hpp"
#include "protocol/json_decode.hpp"
#include "protocol/log.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <mutex>
#include <thread>

namespace berth::varlink {

namespace {

// Past this much unsent reply data a session dispatches no further call,
// and past this much unparsed input it stops reading.
constexpr size_t out_high_water = 4u << 20;
constexpr size_t in_high_water = 1u << 20;

std::shared_ptr<spdlog::logger> log() {
  static auto l = logger("varlink");
  return l;
}

std::string error_reply(std::string_view name, std::string_view key,
                        std::string_view value) {
  std::string s = "{\"error\":" + json::quote(name) + ",\"parameters\":{";
  if (!key.empty())
    s += json::quote(key) + ":" + json::quote(value);
  s += "}}";
  return s;
}

} // namespace

// --- replies from any thread --------------------------------------------------

/// What follows a final reply on an upgraded connection: a file transfer
/// (SendFile, ReceiveFile) or a duplex phase handed to a peer (Attach).
struct raw_phase {
  std::shared_ptr<const rpc::raw_transfer> file;
  std::shared_ptr<rpc::raw_peer> peer;
  rpc::raw_ready ready;
};

/// Replies travel from handler threads to the loop through this queue; the
/// loop is woken by `uv_async_send`, and wake-ups coalesce. Tasks (raw
/// channel operations, writability checks, calls into raw peers) always
/// wait for the loop's next turn, so that no callback runs inside a call
/// its owner made.
class reply_queue {
public:
  struct item {
    uint64_t session;
    std::string msg;
    bool final;
    std::shared_ptr<raw_phase> raw;
  };
  using task = std::function<void(server&)>;

  reply_queue(server* srv, uv_async_t* async)
    : srv_(srv), async_(async), loop_thread_(std::this_thread::get_id()) {
  }

  void push(uint64_t session, std::string msg, bool final,
            std::shared_ptr<raw_phase> raw) {
    if (std::this_thread::get_id() == loop_thread_) {
      if (srv_)
        srv_->deliver(session, std::move(msg), final, std::move(raw));
      return;
    }
    std::lock_guard guard{mtx_};
    if (!async_)
      return;
    items_.push_back({session, std::move(msg), final, std::move(raw)});
    uv_async_send(async_);
  }

  /// Queues `t` for the loop; false, leaving `t` untouched, once the server
  /// is gone.
  bool post(task&& t) {
    std::lock_guard guard{mtx_};
    if (!async_)
      return false;
    tasks_.push_back(std::move(t));
    uv_async_send(async_);
    return true;
  }

  /// Runs `t` at once on the loop thread, else queues it like `post`.
  bool run_or_post(task&& t) {
    if (std::this_thread::get_id() != loop_thread_)
      return post(std::move(t));
    if (!srv_)
      return false;
    t(*srv_);
    return true;
  }

  std::pair<std::vector<item>, std::vector<task>> take() {
    std::pair<std::vector<item>, std::vector<task>> out;
    std::lock_guard guard{mtx_};
    out.first.swap(items_);
    out.second.swap(tasks_);
    return out;
  }

  /// After this, replies are dropped: the server is gone. Returns the tasks
  /// still queued.
  std::vector<task> detach() {
    std::lock_guard guard{mtx_};
    async_ = nullptr;
    srv_ = nullptr;
    return std::move(tasks_);
  }

private:
  std::mutex mtx_;
  std::vector<item> items_;
  std::vector<task> tasks_;
  server* srv_;
  uv_async_t* async_;
  std::thread::id loop_thread_;
};

namespace {

// Runs `f` on the loop's next turn, or here if the server is gone.
void on_loop(reply_queue& q, std::function<void()> f) {
  reply_queue::task t = [f](server&) { f(); };
  if (!q.post(std::move(t)))
    f();
}

void tell_peer_gone(reply_queue& q, std::shared_ptr<rpc::raw_peer> peer) {
  on_loop(q, [peer] { peer->on_client_closed(true); });
}

} // namespace

/// The responder of one connection and, after a duplex upgrade, its raw
/// channel. It counts the bytes queued for the socket (the backlog) and
/// holds the producers waiting for that to fall.
class link : public rpc::responder,
             public rpc::raw_channel,
             public std::enable_shared_from_this<link> {
public:
  link(std::shared_ptr<reply_queue> q, uint64_t id)
    : queue_(std::move(q)), id_(id) {
  }

  void deliver(std::string message, bool final,
               std::shared_ptr<const rpc::raw_transfer> raw) override {
    queued(message.empty() ? 0 : message.size() + 1);
    std::shared_ptr<raw_phase> phase;
    if (raw)
      phase = std::make_shared<raw_phase>(raw_phase{std::move(raw), {}, {}});
    queue_->push(id_, std::move(message), final, std::move(phase));
  }

  void deliver_duplex(std::string message, std::shared_ptr<rpc::raw_peer> peer,
                      rpc::raw_ready ready) override {
    queued(message.size() + 1);
    auto phase = std::make_shared<raw_phase>(
        raw_phase{{}, std::move(peer), std::move(ready)});
    queue_->push(id_, std::move(message), true, std::move(phase));
  }

  bool closed() const override { return closed_.load(); }

  size_t backlog() const override {
    return closed_.load() ? 0 : backlog_.load();
  }

  void when_writable(size_t low_water, std::function<void()> f) override {
    std::unique_lock guard{mtx_};
    if (closed_) {
      guard.unlock();
      on_loop(*queue_, std::move(f));
      return;
    }
    waiters_.push_back({low_water, std::move(f)});
    has_waiters_ = true;
    guard.unlock();
    schedule_check();
  }

  size_t write(std::string bytes) override;
  void pause_reading(bool paused) override;
  void close() override;

  /// `n` more bytes wait for the socket; returns the backlog.
  size_t queued(size_t n) { return backlog_ += n; }

  /// `n` bytes left the backlog: written, or dropped.
  void settled(size_t n) {
    backlog_ -= n;
    if (has_waiters_)
      schedule_check();
  }

  /// The connection is gone: every waiter runs.
  void mark_closed() {
    {
      std::lock_guard guard{mtx_};
      if (closed_)
        return;
      closed_ = true;
    }
    schedule_check();
  }

private:
  struct waiter {
    size_t low_water;
    std::function<void()> f;
  };

  // One check at a time is queued, however many writes complete.
  void schedule_check() {
    if (check_queued_.exchange(true))
      return;
    reply_queue::task t = [self = shared_from_this()](server&) {
      self->check_queued_ = false;
      self->run_due();
    };
    if (!queue_->post(std::move(t))) {
      check_queued_ = false;
      run_due();
    }
  }

  // Runs the waiters whose low water the backlog has reached, outside the
  // lock: they may write again at once.
  void run_due() {
    std::vector<waiter> due;
    {
      std::lock_guard guard{mtx_};
      size_t now = backlog();
      auto rest = std::stable_partition(
          waiters_.begin(), waiters_.end(),
          [now](const waiter& w) { return w.low_water < now; });
      std::move(rest, waiters_.end(), std::back_inserter(due));
      waiters_.erase(rest, waiters_.end());
      has_waiters_ = !waiters_.empty();
    }
    for (auto& w : due)
      w.f();
  }

  std::shared_ptr<reply_queue> queue_;
  uint64_t id_;
  std::atomic<bool> closed_{false};
  std::atomic<size_t> backlog_{0};
  std::atomic<bool> has_waiters_{false};
  std::atomic<bool> check_queued_{false};
  mutable std::mutex mtx_;
  std::vector<waiter> waiters_;
};

struct server::listener {
  server* srv;
  address addr;
  bool is_unix = true;
  bool owns_file = false; // a socket file we created and remove on exit
  ino_t inode = 0;
  uv_stream_t* handle = nullptr;
};

struct server::binding {
  const rpc::interface_info* iface;
  executor exec;
  std::vector<std::string_view> streams_only;
  bool keep_parameters = false;
};

struct server::parse_state {
  simdjson::dom::parser parser;
};

/// org.varlink.service, answered on the loop thread.
class server::builtin_service : public vsvc::service {
public:
  explicit builtin_service(server& s) : srv_(s) {
  }

  void GetInfo(const rpc::call_ptr& c, const vsvc::GetInfo_in&) override {
    vsvc::GetInfo_out out;
    auto& cfg = srv_.cfg_;
    out.vendor = cfg.vendor;
    out.product = cfg.product;
    out.version = cfg.version;
    out.url = cfg.url;
    for (auto& b : srv_.ifaces_)
      out.interfaces.emplace_back(b.iface->name);
    c->reply(out);
  }

  void GetInterfaceDescription(
      const rpc::call_ptr& c,
      const vsvc::GetInterfaceDescription_in& in) override {
    // Descriptions never change: encode each once.
    auto it = encoded_.find(in.interface_);
    if (it == encoded_.end()) {
      auto* b = srv_.find_binding(in.interface_);
      if (!b) {
        c->fail(vsvc::InterfaceNotFound{in.interface_});
        return;
      }
      json::writer w;
      encode(w, vsvc::GetInterfaceDescription_out{
                    std::string{b->iface->description}});
      it = encoded_.emplace(in.interface_, w.take()).first;
    }
    c->reply_json(it->second);
  }

private:
  server& srv_;
  std::unordered_map<std::string, std::string> encoded_;
};

// --- sessions -------------------------------------------------------------------

/// One connection: reads calls, runs them one at a time in order, writes
/// their replies in order. After a duplex upgrade it relays raw bytes
/// between the client and a peer until either side ends it.
class session {
public:
  session(server& srv, uint64_t id, uv_stream_t* h)
    : srv_(srv),
      id_(id),
      h_(h),
      in_(srv.cfg_.max_message),
      link_(std::make_shared<link>(srv.replies_, id)) {
    h_->data = this;
  }

  ~session() {
    if (raw_fd_ >= 0) {
      ::close(raw_fd_);
      // An upload cut short is of no use to anyone.
      if (raw_.dir == rpc::raw_transfer::direction::to_file)
        ::unlink(raw_.path.c_str());
    }
    // Normally `close` did this already; not when the server is destroyed
    // without a shutdown.
    link_->mark_closed();
    if (peer_ && !peer_gone_ && !owner_closed_)
      peer_->on_client_closed(true);
    delete reinterpret_cast<uv_any_handle*>(h_);
  }

  uint64_t id() const { return id_; }
  bool busy() const { return busy_; }

  void start() {
    uv_read_start(h_, on_alloc, on_read);
    reading_ = true;
  }

  /// A reply for the call in flight (an empty final one: the handler gave
  /// up without replying, so the connection is closed).
  void on_reply(std::string msg, bool final, std::shared_ptr<raw_phase> raw) {
    if (!busy_) {
      log()->warn("dropping a reply with no call in flight");
      if (raw && raw->peer)
        tell_peer_gone(*srv_.replies_, raw->peer);
      return;
    }
    bool dropped = msg.empty();
    if (!current_flags_.oneway && !dropped && !closing_)
      append_output(std::move(msg));
    else if (!dropped)
      link_->settled(msg.size() + 1);
    if (!final) {
      flush();
      return;
    }
    busy_ = false;
    current_.reset();
    srv_.call_finished();
    if (dropped) {
      log()->error("closing connection {}: a call ended without a reply",
                   id_);
      close();
      return;
    }
    if (raw && raw->peer)
      return start_duplex(*raw);
    if (raw && raw->file && !closing_)
      return start_raw(*raw->file);
    process();
  }

  /// Finishes the call in flight, then closes (server shutdown).
  void drain() {
    if (duplex_ != duplex_state::none) {
      close();
      return;
    }
    draining_ = true;
    if (auto c = current_.lock(); c && current_flags_.more)
      c->cancel();
    process();
  }

  /// Closes at once; the call in flight is cancelled.
  void close() {
    if (closing_)
      return;
    closing_ = true;
    link_->mark_closed();
    if (auto c = current_.lock())
      c->cancel();
    if (peer_ && !peer_gone_) {
      peer_gone_ = true;
      if (!owner_closed_)
        tell_peer_gone(*srv_.replies_, peer_);
    }
    uv_close(reinterpret_cast<uv_handle_t*>(h_), [](uv_handle_t* h) {
      auto* self = static_cast<session*>(h->data);
      self->srv_.session_closed(self->id_);
    });
  }

  // The raw channel's operations, on the loop thread in the order the owner
  // made them.

  void duplex_write(std::string bytes) {
    if (closing_ || owner_closed_ || duplex_ != duplex_state::open) {
      link_->settled(bytes.size());
      return;
    }
    if (out_.empty())
      out_ = std::move(bytes);
    else
      out_ += bytes;
    flush();
  }

  void duplex_pause(bool paused) {
    peer_paused_ = paused;
    if (duplex_ == duplex_state::open && !owner_closed_)
      set_reading(!paused);
  }

  void duplex_close() {
    if (closing_ || duplex_ == duplex_state::none)
      return;
    owner_closed_ = true;
    set_reading(false);
    close_after_flush_ = true;
    flush();
    maybe_close();
  }

private:
  enum class duplex_state { none, upgrading, open };

  struct write_req {
    uv_write_t req;
    std::string data;
  };

  // libuv suggests 64 KiB a read; a small buffer keeps idle connections
  // cheap, and it grows while a long message arrives.
  static void on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
    auto* self = static_cast<session*>(h->data);
    if (self->duplex_ == duplex_state::open) {
      *buf = uv_buf_init(self->raw_in_.data(), self->raw_in_.size());
      return;
    }
    auto span = self->in_.prepare();
    *buf = uv_buf_init(span.data(), span.size());
  }

  static void on_read(uv_stream_t* h, ssize_t n, const uv_buf_t*) {
    auto* self = static_cast<session*>(h->data);
    if (n > 0 && self->duplex_ == duplex_state::open) {
      self->peer_->on_data({self->raw_in_.data(), size_t(n)});
    } else if (n > 0) {
      self->in_.commit(size_t(n));
      if (self->receiving_raw())
        self->receive_raw();
      else
        self->process();
    } else if (n == UV_EOF) {
      self->on_eof();
    } else if (n < 0) {
      self->close();
    }
  }

  // A peer that hung up entirely is gone; one that only shut down its
  // sending side still gets the replies to what it sent.
  void on_eof() {
    if (receiving_raw()) {
      log()->warn("connection {}: hung up {} bytes short of a transfer", id_,
                  raw_left_);
      close();
      return;
    }
    uv_os_fd_t fd;
    uv_fileno(reinterpret_cast<uv_handle_t*>(h_), &fd);
    pollfd p{fd, POLLOUT, 0};
    if (poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR))) {
      close();
      return;
    }
    // In a duplex phase EOF is only a half-close: replies may still flow.
    if (duplex_ != duplex_state::none) {
      eof_ = true;
      set_reading(false);
      if (duplex_ == duplex_state::open && !owner_closed_)
        peer_->on_client_closed(false);
      return;
    }
    // TCP shows a hang-up only on the next write: a client that stops
    // sending during a stream has gone.
    if (h_->type == UV_TCP && busy_ && current_flags_.more) {
      close();
      return;
    }
    eof_ = true;
    set_reading(false);
    process();
  }

  void set_reading(bool on) {
    if (on == reading_ || closing_ || (on && eof_))
      return;
    reading_ = on;
    if (on)
      uv_read_start(h_, on_alloc, on_read);
    else
      uv_read_stop(h_);
  }

  // Runs queued calls in order while none is in flight.
  void process() {
    if (processing_ || closing_ || raw_fd_ >= 0 ||
        duplex_ != duplex_state::none)
      return;
    processing_ = true;
    bool exhausted = false;
    while (!busy_ && !draining_ && !closing_ && !poisoned_ &&
           duplex_ == duplex_state::none && out_.size() < out_high_water) {
      std::string_view msg;
      auto st = in_.next(msg);
      if (st == frame_reader::status::incomplete) {
        exhausted = true;
        break;
      }
      if (st == frame_reader::status::oversize) {
        log()->warn("closing connection {}: message over {} bytes", id_,
                    srv_.cfg_.max_message);
        poison();
        break;
      }
      dispatch(msg);
    }
    processing_ = false;
    if (closing_ || duplex_ != duplex_state::none)
      return;
    flush();
    bool idle = !busy_;
    // After EOF a partial message can never complete.
    if (idle && (draining_ || poisoned_ || (eof_ && exhausted))) {
      close_after_flush_ = true;
      maybe_close();
      return;
    }
    // While calls wait (one in flight, or replies piling up unread), stop
    // reading once a megabyte is buffered; an idle connection may take a
    // whole message up to the size limit.
    bool waiting = !idle || out_.size() >= out_high_water;
    set_reading(!waiting || in_.buffered() < in_high_water);
  }

  void reply_now(std::string msg, bool oneway) {
    if (oneway)
      return;
    link_->queued(msg.size() + 1);
    append_output(std::move(msg));
  }

  void append_output(std::string msg) {
    if (out_.empty()) {
      out_ = std::move(msg);
    } else {
      out_ += msg;
    }
    out_ += '\0';
  }

  // A bad message ends the connection once the replies to the calls
  // before it are out.
  void poison() {
    poisoned_ = true;
    close_after_flush_ = true;
    set_reading(false);
  }

  void dispatch(std::string_view msg) {
    auto& parser = srv_.parse_->parser;
    simdjson::dom::element doc;
    auto err = parser.parse(msg.data(), msg.size(), false).get(doc);
    std::string tamed;
    if (err == simdjson::NUMBER_ERROR) {
      // Numbers no field can hold become strings, so that decoding names
      // the field in InvalidParameter instead of the connection closing.
      tamed = json::tame_numbers(msg);
      tamed.append(frame_padding, '\0');
      err = parser.parse(tamed.data(), tamed.size() - frame_padding, false)
                .get(doc);
    }
    simdjson::dom::object call;
    if (err || doc.get(call) != simdjson::SUCCESS) {
      log()->warn("closing connection {}: {}", id_,
                  err ? simdjson::error_message(err)
                      : "message is not a JSON object");
      poison();
      return;
    }
    rpc::call_flags flags;
    std::string_view method;
    const simdjson::dom::element* params = nullptr;
    simdjson::dom::element params_el;
    std::string_view bad_key;
    for (auto [key, value] : call) {
      if (key == "method") {
        if (value.get(method) != simdjson::SUCCESS)
          bad_key = "method";
      } else if (key == "parameters") {
        params_el = value;
        params = value.is_null() ? nullptr : &params_el;
      } else if (key == "more" || key == "oneway" || key == "upgrade") {
        bool b = false;
        if (!value.is_null() && value.get(b) != simdjson::SUCCESS)
          bad_key = key;
        (key == "more" ? flags.more
                       : key == "oneway" ? flags.oneway : flags.upgrade) = b;
      }
      // Other header keys are vendor extensions: ignored.
    }
    auto dot = method.rfind('.');
    if (bad_key.empty() && (method.empty() || dot == std::string_view::npos))
      bad_key = "method";
    if (!bad_key.empty()) {
      reply_now(error_reply("org.varlink.service.InvalidParameter",
                            "parameter", bad_key),
                flags.oneway);
      return;
    }
    auto iface_name = method.substr(0, dot);
    auto bare = method.substr(dot + 1);
    auto* b = srv_.find_binding(iface_name);
    if (!b) {
      reply_now(error_reply("org.varlink.service.InterfaceNotFound",
                            "interface", iface_name),
                flags.oneway);
      return;
    }
    auto* m = b->iface->find(bare);
    if (!m) {
      reply_now(error_reply("org.varlink.service.MethodNotFound", "method",
                            bare),
                flags.oneway);
      return;
    }
    json::decode_error derr;
    auto c = m->decode(params, derr);
    if (!c) {
      reply_now(error_reply("org.varlink.service.InvalidParameter",
                            "parameter", derr.field),
                flags.oneway);
      return;
    }
    if (!flags.more && std::find(b->streams_only.begin(), b->streams_only.end(),
                                 bare) != b->streams_only.end()) {
      reply_now(error_reply("org.varlink.service.ExpectedMore", {}, {}),
                flags.oneway);
      return;
    }
    if (b->keep_parameters && params)
      c->keep_raw_parameters(simdjson::minify(*params));
    c->bind(m, flags, link_);
    current_ = c;
    current_flags_ = flags;
    busy_ = true;
    srv_.in_flight_++;
    srv_.calls_total_++;
    b->exec(c);
  }

  void flush() {
    if (writing_ || out_.empty() || closing_)
      return;
    // Most replies fit the socket buffer: try the cheap path first.
    uv_buf_t buf = uv_buf_init(out_.data(), out_.size());
    int n = uv_try_write(h_, &buf, 1);
    if (n > 0)
      link_->settled(size_t(n));
    if (n == int(out_.size())) {
      clear_output();
      maybe_open_duplex();
      maybe_close();
      return;
    }
    if (n < 0 && n != UV_EAGAIN) {
      close();
      return;
    }
    auto* w = new write_req;
    if (n > 0)
      w->data = out_.substr(size_t(n));
    else
      w->data = std::move(out_);
    clear_output();
    w->req.data = this;
    buf = uv_buf_init(w->data.data(), w->data.size());
    writing_ = true;
    uv_write(&w->req, h_, &buf, 1, [](uv_write_t* req, int status) {
      auto* w = reinterpret_cast<write_req*>(req);
      auto* self = static_cast<session*>(req->data);
      size_t written = w->data.size();
      delete w;
      if (status == UV_ECANCELED)
        return; // closing; the session may be gone already
      self->writing_ = false;
      if (status < 0) {
        self->close();
        return;
      }
      self->link_->settled(written);
      self->flush();
      if (self->duplex_ != duplex_state::none) {
        self->maybe_open_duplex();
        self->maybe_close();
      } else if (self->raw_fd_ >= 0 && !self->receiving_raw()) {
        self->send_raw();
      } else {
        self->process();
      }
    });
  }

  // The connection leaves varlink for a raw transfer (SendFile and
  // ReceiveFile); `finish_raw` brings it back.
  bool receiving_raw() const {
    return raw_fd_ >= 0 && raw_.dir == rpc::raw_transfer::direction::to_file;
  }

  void start_raw(const rpc::raw_transfer& t) {
    flush();
    raw_ = t;
    raw_left_ = t.length;
    bool to_file = t.dir == rpc::raw_transfer::direction::to_file;
    raw_fd_ = ::open(t.path.c_str(),
                     to_file ? O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC
                             : O_RDONLY | O_CLOEXEC,
                     0600);
    if (raw_fd_ < 0) {
      log()->error("connection {}: opening {}: {}", id_, t.path,
                   std::strerror(errno));
      close();
      return;
    }
    if (to_file) {
      set_reading(true);
      receive_raw();
    } else {
      send_raw();
    }
  }

  // Moves received bytes into the file; what follows the transfer stays
  // buffered as the next varlink messages.
  void receive_raw() {
    auto bytes = in_.take_rest();
    size_t take = std::min<uint64_t>(raw_left_, bytes.size());
    if (take > 0 && !write_all(raw_fd_, bytes.data(), take)) {
      log()->error("connection {}: writing {}: {}", id_, raw_.path,
                   std::strerror(errno));
      close();
      return;
    }
    raw_left_ -= take;
    if (bytes.size() > take) {
      auto span = in_.prepare(bytes.size() - take);
      std::memcpy(span.data(), bytes.data() + take, bytes.size() - take);
      in_.commit(bytes.size() - take);
    }
    if (raw_left_ == 0) {
      link_->queued(raw_.ack.size());
      out_ += raw_.ack;
      finish_raw();
    }
  }

  // Sends the file a chunk at a time, each once the previous one is out.
  void send_raw() {
    constexpr size_t chunk = 256u << 10;
    while (!writing_ && out_.empty() && !closing_ && raw_fd_ >= 0) {
      std::string buf(std::min<uint64_t>(chunk, raw_left_), '\0');
      ssize_t n = buf.empty() ? 0 : ::read(raw_fd_, buf.data(), buf.size());
      if (n < 0 || (n == 0 && raw_left_ > 0)) {
        log()->error("connection {}: reading {}: {}", id_, raw_.path,
                     n < 0 ? std::strerror(errno) : "file shrank");
        close();
        return;
      }
      raw_left_ -= uint64_t(n);
      buf.resize(size_t(n));
      link_->queued(buf.size());
      out_ = std::move(buf);
      if (raw_left_ == 0)
        return finish_raw();
      flush();
    }
  }

  void finish_raw() {
    ::close(raw_fd_);
    raw_fd_ = -1;
    if (raw_.remove_after)
      ::unlink(raw_.path.c_str());
    process();
  }

  // A duplex upgrade: once the reply is out, the owner gets the channel,
  // then the bytes the client pipelined, then everything it sends.
  void start_duplex(raw_phase& phase) {
    if (closing_ || draining_ || !current_flags_.upgrade) {
      tell_peer_gone(*srv_.replies_, std::move(phase.peer));
      process();
      return;
    }
    peer_ = std::move(phase.peer);
    ready_ = std::move(phase.ready);
    duplex_ = duplex_state::upgrading;
    set_reading(false);
    flush();
    maybe_open_duplex();
  }

  void maybe_open_duplex() {
    if (duplex_ != duplex_state::upgrading || writing_ || !out_.empty() ||
        closing_)
      return;
    duplex_ = duplex_state::open;
    raw_in_.resize(64u << 10);
    srv_.replies_->post([id = id_, ready = std::move(ready_),
                         channel = link_](server& srv) {
      if (ready)
        ready(channel);
      if (auto* s = srv.find_session(id))
        s->open_duplex();
    });
  }

  void open_duplex() {
    if (closing_ || owner_closed_)
      return;
    auto rest = in_.take_rest();
    if (!rest.empty())
      peer_->on_data({rest.data(), rest.size()});
    if (closing_ || owner_closed_)
      return;
    if (eof_)
      peer_->on_client_closed(false);
    else
      set_reading(!peer_paused_);
  }

  static bool write_all(int fd, const char* p, size_t n) {
    while (n > 0) {
      auto w = ::write(fd, p, n);
      if (w < 0 && errno == EINTR)
        continue;
      if (w <= 0)
        return false;
      p += w;
      n -= size_t(w);
    }
    return true;
  }

  // Keeps a small buffer for the next replies, not the largest one seen.
  void clear_output() {
    out_.clear();
    if (out_.capacity() > 16384)
      out_.shrink_to_fit();
  }

  void maybe_close() {
    if (close_after_flush_ && !writing_ && out_.empty())
      close();
  }

  server& srv_;
  uint64_t id_;
  uv_stream_t* h_;
  frame_reader in_;
  std::shared_ptr<link> link_;
  // The call in flight; the session does not keep it alive, so a handler
  // that drops it unanswered is noticed.
  std::weak_ptr<rpc::call> current_;
  rpc::call_flags current_flags_;
  bool busy_ = false;
  std::string out_;
  bool writing_ = false;
  bool reading_ = false;
  bool processing_ = false;
  bool eof_ = false;
  bool draining_ = false;
  bool closing_ = false;
  bool close_after_flush_ = false;
  bool poisoned_ = false;
  rpc::raw_transfer raw_;
  int raw_fd_ = -1;
  uint64_t raw_left_ = 0;
  duplex_state duplex_ = duplex_state::none;
  std::shared_ptr<rpc::raw_peer> peer_;
  rpc::raw_ready ready_;
  std::vector<char> raw_in_;
  bool peer_paused_ = false;
  bool peer_gone_ = false;
  bool owner_closed_ = false;
};

size_t link::write(std::string bytes) {
  if (closed_)
    return 0;
  size_t after = queued(bytes.size());
  queue_->post([id = id_, b = std::move(bytes)](server& srv) mutable {
    if (auto* s = srv.find_session(id))
      s->duplex_write(std::move(b));
  });
  return after;
}

// A pause asked for on the loop thread (in `on_data`, say) takes effect
// before the next read; it touches nothing the owner holds.
void link::pause_reading(bool paused) {
  queue_->run_or_post([id = id_, paused](server& srv) {
    if (auto* s = srv.find_session(id))
      s->duplex_pause(paused);
  });
}

void link::close() {
  queue_->post([id = id_](server& srv) {
    if (auto* s = srv.find_session(id))
      s->duplex_close();
  });
}

// --- server ---------------------------------------------------------------------

server::server(uv_loop_t* loop, server_config cfg)
  : loop_(loop), cfg_(std::move(cfg)), parse_(new parse_state) {
  auto* h = new uv_any_handle;
  async_ = &h->async;
  uv_async_init(loop_, async_, [](uv_async_t* a) {
    static_cast<server*>(a->data)->drain_replies();
  });
  async_->data = this;
  replies_ = std::make_shared<reply_queue>(this, async_);
  if (auto e = parse_->parser.allocate(cfg_.max_message, cfg_.max_depth))
    log()->error("json parser: {}", simdjson::error_message(e));
  builtin_ = std::make_unique<builtin_service>(*this);
  add_interface(vsvc::info, [this](const rpc::call_ptr& c) {
    builtin_->invoke(c);
  });
}

server::~server() {
  // Without a shutdown the connections end with the server: their owners
  // hear so before the tasks queued for them run.
  auto tasks = replies_->detach();
  sessions_.clear();
  for (auto& t : tasks)
    t(*this);
}

void server::add_interface(const rpc::interface_info& iface, executor exec,
                           std::vector<std::string_view> streams_only,
                           bool keep_parameters) {
  ifaces_.push_back(
      {&iface, std::move(exec), std::move(streams_only), keep_parameters});
}

server::binding* server::find_binding(std::string_view name) {
  for (auto& b : ifaces_)
    if (b.iface->name == name)
      return &b;
  return nullptr;
}

bool server::start(std::string& err) {
  // A client that hangs up must cost its connection, never the process:
  // with SIGPIPE ignored, a write to its socket fails with EPIPE instead.
  // Whatever embeds the server (berthd, a test) gets this from start().
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  sigaction(SIGPIPE, &ignore, nullptr);
  auto add = [&](int fd, address a, bool owns) {
    auto l = std::make_unique<listener>();
    l->srv = this;
    l->addr = std::move(a);
    sockaddr_storage ss{};
    socklen_t len = sizeof ss;
    getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len);
    l->is_unix = ss.ss_family == AF_UNIX;
    l->owns_file = owns && l->addr.type == address::kind::unix_path;
    struct stat st;
    if (l->owns_file && stat(l->addr.path.c_str(), &st) == 0)
      l->inode = st.st_ino;
    auto* h = new uv_any_handle;
    if (l->is_unix) {
      uv_pipe_init(loop_, &h->pipe, 0);
      uv_pipe_open(&h->pipe, fd);
    } else {
      uv_tcp_init(loop_, &h->tcp);
      uv_tcp_open(&h->tcp, fd);
    }
    l->handle = &h->stream;
    l->handle->data = l.get();
    listeners_.push_back(std::move(l));
  };
  for (int fd : cfg_.activated_fds)
    add(fd, address{}, false);
  if (cfg_.activated_fds.empty()) {
    for (auto& a : cfg_.addresses) {
      int fd = listen_on(a, cfg_.socket_mode);
      if (fd < 0) {
        err = "listening on " + a.str() + ": " + std::strerror(-fd);
        close_listeners();
        return false;
      }
      add(fd, a, true);
    }
  }
  for (auto& l : listeners_) {
    int rc = uv_listen(l->handle, 1024, [](uv_stream_t* h, int status) {
      auto* l = static_cast<listener*>(h->data);
      if (status == 0)
        l->srv->on_connection(*l);
    });
    if (rc < 0) {
      err = "listening on " + l->addr.str() + ": " + uv_strerror(rc);
      close_listeners();
      return false;
    }
  }
  update_idle_timer();
  return true;
}

void server::on_connection(listener& l) {
  auto* h = new uv_any_handle;
  if (l.is_unix) {
    uv_pipe_init(loop_, &h->pipe, 0);
  } else {
    uv_tcp_init(loop_, &h->tcp);
    uv_tcp_nodelay(&h->tcp, 1);
  }
  auto* client = &h->stream;
  if (uv_accept(l.handle, client) < 0 || stopping_) {
    uv_close(reinterpret_cast<uv_handle_t*>(client), [](uv_handle_t* h) {
      delete reinterpret_cast<uv_any_handle*>(h);
    });
    return;
  }
  auto id = next_session_++;
  auto s = std::make_unique<session>(*this, id, client);
  auto* raw = s.get();
  sessions_.emplace(id, std::move(s));
  raw->start();
  update_idle_timer();
}

void server::deliver(uint64_t id, std::string msg, bool final,
                     std::shared_ptr<raw_phase> raw) {
  auto it = sessions_.find(id);
  if (it != sessions_.end()) {
    it->second->on_reply(std::move(msg), final, std::move(raw));
    return;
  }
  // The connection is gone; its call still counted as in flight.
  if (raw && raw->peer)
    tell_peer_gone(*replies_, raw->peer);
  if (final)
    call_finished();
}

void server::drain_replies() {
  auto [items, tasks] = replies_->take();
  for (auto& r : items)
    deliver(r.session, std::move(r.msg), r.final, std::move(r.raw));
  for (auto& t : tasks)
    t(*this);
}

session* server::find_session(uint64_t id) {
  auto it = sessions_.find(id);
  return it == sessions_.end() ? nullptr : it->second.get();
}

void server::session_closed(uint64_t id) {
  auto it = sessions_.find(id);
  if (it == sessions_.end())
    return;
  // A call still running keeps counting until its final reply arrives.
  auto s = std::move(it->second);
  sessions_.erase(it);
  s.reset();
  update_idle_timer();
  maybe_finish_shutdown();
}

void server::call_finished() {
  if (in_flight_ > 0)
    in_flight_--;
  update_idle_timer();
}

void server::update_idle_timer() {
  if (cfg_.idle_timeout.count() == 0 || stopping_)
    return;
  if (!idle_timer_) {
    idle_timer_ = &(new uv_any_handle)->timer;
    uv_timer_init(loop_, idle_timer_);
    idle_timer_->data = this;
  }
  bool idle = sessions_.empty() && in_flight_ == 0;
  if (idle && !uv_is_active(reinterpret_cast<uv_handle_t*>(idle_timer_))) {
    uv_timer_start(idle_timer_, [](uv_timer_t* t) {
      auto* self = static_cast<server*>(t->data);
      log()->info("idle for {} ms, exiting", self->cfg_.idle_timeout.count());
      if (self->on_idle)
        self->on_idle();
    }, cfg_.idle_timeout.count(), 0);
  } else if (!idle) {
    uv_timer_stop(idle_timer_);
  }
}

void server::close_listeners() {
  for (auto& l : listeners_) {
    if (l->owns_file) {
      // Remove the file only if it is still ours, not a successor's.
      struct stat st;
      if (stat(l->addr.path.c_str(), &st) == 0 && st.st_ino == l->inode)
        unlink(l->addr.path.c_str());
    }
    uv_close(reinterpret_cast<uv_handle_t*>(l->handle), [](uv_handle_t* h) {
      delete reinterpret_cast<uv_any_handle*>(h);
    });
  }
  listeners_.clear();
}

void server::shutdown(std::function<void()> done) {
  if (stopping_)
    return;
  stopping_ = true;
  stopped_ = std::move(done);
  close_listeners();
  if (idle_timer_)
    uv_timer_stop(idle_timer_);
  drain_timer_ = &(new uv_any_handle)->timer;
  uv_timer_init(loop_, drain_timer_);
  drain_timer_->data = this;
  uv_timer_start(drain_timer_, [](uv_timer_t* t) {
    auto* self = static_cast<server*>(t->data);
    log()->warn("calls still running after {} ms; closing connections",
                self->cfg_.drain_timeout.count());
    std::vector<session*> all;
    for (auto& [id, s] : self->sessions_)
      all.push_back(s.get());
    for (auto* s : all)
      s->close();
  }, cfg_.drain_timeout.count(), 0);
  std::vector<session*> all;
  for (auto& [id, s] : sessions_)
    all.push_back(s.get());
  for (auto* s : all)
    s->drain();
  maybe_finish_shutdown();
}

void server::maybe_finish_shutdown() {
  if (!stopping_ || !sessions_.empty() || !stopped_)
    return;
  // What was queued for the connections can only tell their owners that
  // they are gone.
  for (auto& t : replies_->detach())
    t(*this);
  auto close_handle = [](auto*& h) {
    if (!h)
      return;
    uv_close(reinterpret_cast<uv_handle_t*>(h), [](uv_handle_t* h) {
      delete reinterpret_cast<uv_any_handle*>(h);
    });
    h = nullptr;
  };
  close_handle(drain_timer_);
  close_handle(idle_timer_);
  close_handle(async_);
  auto done = std::move(stopped_);
  stopped_ = nullptr;
  done();
}

server_stats server::stats() const {
  return {sessions_.size(), in_flight_, calls_total_};
}

} // namespace berth::varlink
