#include "runtime/attach.hpp"

#include "runtime/ring_loop.hpp"

#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <fcntl.h>
#include <map>
#include <mutex>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <utility>

namespace berth::runtime {

namespace {

/// conmon's packets carry at most this much data after the stream byte.
constexpr size_t packet_size = 8192 + 1;
/// Queued output above which reading from conmon pauses, and below which
/// it resumes.
constexpr size_t high_water = 1 << 20;
constexpr size_t low_water = 256 << 10;
/// A client frame larger than this is a protocol error.
constexpr uint32_t max_frame = 1 << 20;

enum kind : uint64_t { k_recv = 1, k_send = 2 };

uint64_t tag(kind k, uint64_t id) { return uint64_t(k) << 56 | id; }

} // namespace

std::string encode_frame(uint8_t type, std::string_view payload) {
  std::string out;
  out.reserve(5 + payload.size());
  out += char(type);
  auto n = uint32_t(payload.size());
  for (int shift = 24; shift >= 0; shift -= 8)
    out += char(n >> shift & 0xff);
  out.append(payload);
  return out;
}

bool parse_detach_keys(std::string_view text, std::string& out,
                       std::string& err) {
  if (text.empty())
    text = "ctrl-p,ctrl-q";
  out.clear();
  while (!text.empty()) {
    auto comma = text.find(',');
    auto key = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{}
                                           : text.substr(comma + 1);
    if (key.size() == 1) {
      out += key[0];
      continue;
    }
    if (key.size() == 6 && key.substr(0, 5) == "ctrl-") {
      char ch = key[5];
      if (ch >= 'a' && ch <= 'z') {
        out += char(ch - 'a' + 1);
        continue;
      }
      static constexpr std::string_view specials = "@[\\]^_";
      if (auto pos = specials.find(ch); pos != std::string_view::npos) {
        out += char(pos == 0 ? 0 : 26 + pos);
        continue;
      }
    }
    err = "invalid detach key \"" + std::string{key} +
          "\": use a single character or ctrl-<a-z, @, [, \\, ], ^ or _>";
    return false;
  }
  if (out.empty()) {
    err = "no detach keys given";
    return false;
  }
  return true;
}

struct attach_hub::impl final : ring_loop {
  struct session {
    id sid = 0;
    int sock = -1;
    int ctl = -1;
    std::string ctl_path;
    std::string detach;
    size_t matched = 0;
    bool stdin_open = false;
    std::shared_ptr<rpc::raw_channel> ch;
    std::string early; ///< output before the client's channel was ready
    std::function<void()> on_output_end;
    char rbuf[packet_size];
    bool receiving = false;
    bool paused = false;
    bool output_ended = false;
    std::deque<std::string> to_send;
    bool sending = false;
    bool close_stdin = false; ///< after the queued stdin is sent
    std::string in;           ///< client bytes not yet a whole frame
    int64_t end_code = 0;
    bool end_pending = false;
    bool parked = false; ///< the client left; the socket stays until exit
    bool closed = false;
  };

  std::mutex mu;
  id next_id = 1;
  std::atomic<size_t> count{0};
  std::map<id, std::shared_ptr<session>> sessions; // the loop's thread

  ~impl() override { stop(); }

  session* find(id sid) {
    auto it = sessions.find(sid);
    return it == sessions.end() || it->second->closed ? nullptr
                                                      : it->second.get();
  }

  void on_completion(uint64_t data, int res) override {
    auto sid = data & ((uint64_t(1) << 56) - 1);
    auto it = sessions.find(sid);
    if (it == sessions.end())
      return;
    auto& s = *it->second;
    if (kind(data >> 56) == k_recv) {
      s.receiving = false;
      if (s.closed)
        return maybe_forget(s);
      on_packet(s, res);
    } else {
      s.sending = false;
      if (!s.to_send.empty())
        s.to_send.pop_front();
      if (s.closed)
        return maybe_forget(s);
      send_next(s);
    }
  }

  void arm_recv(session& s) {
    if (s.receiving || s.paused || s.output_ended || s.closed)
      return;
    auto* e = submission(tag(k_recv, s.sid));
    io_uring_prep_recv(e, s.sock, s.rbuf, sizeof s.rbuf, 0);
    s.receiving = true;
  }

  void on_packet(session& s, int res) {
    if (res <= 0) {
      // conmon closed the socket: the container's process is gone.
      s.output_ended = true;
      if (s.on_output_end)
        s.on_output_end();
      if (s.parked)
        return close(s);
      return finish_if_ended(s);
    }
    uint8_t stream = uint8_t(s.rbuf[0]);
    std::string_view data{s.rbuf + 1, size_t(res - 1)};
    if ((stream == 2 || stream == 3) && !s.parked)
      out(s, encode_frame(stream == 2 ? 1 : 2, data));
    if (s.ch && !s.parked && s.ch->backlog() > high_water) {
      s.paused = true;
      auto sid = s.sid;
      s.ch->when_writable(low_water, [this, sid] {
        post([this, sid] {
          if (auto* s = find(sid)) {
            s->paused = false;
            arm_recv(*s);
          }
        });
      });
      return;
    }
    arm_recv(s);
  }

  /// The end frame goes out once the exit code is known and every byte of
  /// output went before it.
  void finish_if_ended(session& s) {
    if (!s.end_pending || !s.output_ended || !s.ch || s.closed || s.parked)
      return;
    s.ch->write(encode_frame(uint8_t(attach_frame::end),
                             std::to_string(s.end_code)));
    close(s);
  }

  void out(session& s, std::string bytes) {
    if (s.ch)
      s.ch->write(std::move(bytes));
    else
      s.early += bytes;
  }

  void send_next(session& s) {
    if (s.sending || s.closed)
      return;
    if (s.to_send.empty()) {
      if (s.close_stdin) {
        s.close_stdin = false;
        ::shutdown(s.sock, SHUT_WR);
      }
      return;
    }
    auto& front = s.to_send.front();
    auto* e = submission(tag(k_send, s.sid));
    io_uring_prep_send(e, s.sock, front.data(), front.size(), MSG_NOSIGNAL);
    s.sending = true;
  }

  /// Bytes the client typed: the detach keys end the attach; the rest goes
  /// to the container's stdin.
  void on_stdin(session& s, std::string_view bytes) {
    std::string pass;
    for (char ch : bytes) {
      if (ch == s.detach[s.matched]) {
        if (++s.matched == s.detach.size())
          return detach(s);
        continue;
      }
      pass.append(s.detach, 0, s.matched);
      s.matched = ch == s.detach[0] ? 1 : 0;
      if (s.matched == 0)
        pass += ch;
    }
    if (!pass.empty() && s.stdin_open) {
      s.to_send.push_back(std::move(pass));
      send_next(s);
    }
  }

  /// The client leaves (detach keys, or it hung up) but the container
  /// keeps its stdin: conmon closes a container's stdin when an attach
  /// connection ends, so this one stays open, its output dropped, until
  /// the container's process ends. A later attach gets a connection of its
  /// own.
  void park(session& s) {
    s.ch.reset(); // the connection is gone already
    detach(s);
  }

  void detach(session& s) {
    if (s.ch) {
      s.ch->write(encode_frame(uint8_t(attach_frame::end), "detached"));
      s.ch->close();
      s.ch.reset();
    }
    s.parked = true;
    s.early.clear();
    s.to_send.clear();
    s.paused = false;
    arm_recv(s);
  }

  void resize(session& s, std::string_view payload) {
    unsigned rows = 0, cols = 0;
    std::string text{payload};
    if (std::sscanf(text.c_str(), "%u %u", &rows, &cols) != 2)
      return;
    if (s.ctl < 0)
      s.ctl = ::open(s.ctl_path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (s.ctl < 0)
      return;
    auto line = "1 " + std::to_string(rows) + " " + std::to_string(cols) +
                "\n";
    // A FIFO write this small is atomic; a full FIFO drops the resize.
    [[maybe_unused]] auto n = ::write(s.ctl, line.data(), line.size());
  }

  void on_client_bytes(session& s, std::string_view bytes) {
    if (s.parked)
      return;
    s.in.append(bytes);
    size_t pos = 0;
    while (s.in.size() - pos >= 5) {
      auto* p = reinterpret_cast<const uint8_t*>(s.in.data() + pos);
      uint32_t n = uint32_t(p[1]) << 24 | uint32_t(p[2]) << 16 |
                   uint32_t(p[3]) << 8 | p[4];
      if (n > max_frame)
        return close(s);
      if (s.in.size() - pos - 5 < n)
        break;
      std::string_view payload{s.in.data() + pos + 5, n};
      switch (p[0]) {
        case uint8_t(attach_frame::stdin_data): on_stdin(s, payload); break;
        case uint8_t(attach_frame::resize): resize(s, payload); break;
        case uint8_t(attach_frame::stdin_end):
          s.close_stdin = true;
          send_next(s);
          break;
        default: return close(s);
      }
      if (s.closed || s.parked)
        return;
      pos += 5 + n;
    }
    s.in.erase(0, pos);
  }

  void close(session& s) {
    if (s.closed)
      return;
    s.closed = true;
    if (s.ch)
      s.ch->close();
    ::shutdown(s.sock, SHUT_RDWR);
    maybe_forget(s);
  }

  void maybe_forget(session& s) {
    if (s.receiving || s.sending)
      return; // its completions come back first
    ::close(s.sock);
    if (s.ctl >= 0)
      ::close(s.ctl);
    sessions.erase(s.sid);
    --count;
  }

  class client_peer;
};

/// The client side of one session, fed by the server on its I/O thread.
class attach_hub::impl::client_peer final : public rpc::raw_peer {
public:
  client_peer(impl* hub, id sid)
    : hub_(hub), sid_(sid) {
  }
  void on_data(std::string_view bytes) override {
    hub_->post([hub = hub_, sid = sid_, data = std::string{bytes}] {
      if (auto* s = hub->find(sid))
        hub->on_client_bytes(*s, data);
    });
  }
  void on_client_closed(bool hangup) override {
    hub_->post([hub = hub_, sid = sid_, hangup] {
      auto* s = hub->find(sid);
      if (!s)
        return;
      if (hangup) {
        hub->park(*s);
      } else {
        // End of the client's input: the container's stdin ends too.
        s->close_stdin = true;
        hub->send_next(*s);
      }
    });
  }

private:
  impl* hub_;
  id sid_;
};


attach_hub::attach_hub() : impl_(new impl) {
}

attach_hub::~attach_hub() {
  stop();
}

bool attach_hub::start(std::string& err) {
  return impl_->start(64, err);
}

void attach_hub::stop() {
  impl_->stop();
}

bool attach_hub::open(const attach_request& r,
                      std::function<void()> on_output_end, id& out,
                      std::string& err) {
  sockaddr_un addr{};
  if (r.socket_path.size() >= sizeof addr.sun_path) {
    err = "attach socket path too long: " + r.socket_path;
    return false;
  }
  int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    err = std::string{"creating a socket: "} + std::strerror(errno);
    return false;
  }
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, r.socket_path.data(), r.socket_path.size());
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) < 0) {
    err = "connecting to " + r.socket_path + ": " + std::strerror(errno);
    ::close(fd);
    return false;
  }
  auto& m = *impl_;
  {
    std::lock_guard lock{m.mu};
    out = m.next_id++;
  }
  ++m.count;
  auto s = std::make_shared<impl::session>();
  s->sid = out;
  s->sock = fd;
  s->ctl_path = r.ctl_path;
  s->detach = r.detach_keys.empty() ? std::string{"\x10\x11"} : r.detach_keys;
  s->stdin_open = r.stdin_open;
  s->on_output_end = std::move(on_output_end);
  m.post([&m, s] {
    m.sessions[s->sid] = s;
    m.arm_recv(*s);
  });
  return true;
}

void attach_hub::connect(id sid, std::shared_ptr<rpc::raw_channel> channel) {
  auto& m = *impl_;
  m.post([&m, sid, channel] {
    auto* s = m.find(sid);
    if (!s) {
      channel->close();
      return;
    }
    s->ch = channel;
    if (!s->early.empty())
      s->ch->write(std::exchange(s->early, {}));
    m.finish_if_ended(*s);
  });
}

std::shared_ptr<rpc::raw_peer> attach_hub::peer(id sid) {
  return std::make_shared<impl::client_peer>(impl_.get(), sid);
}

void attach_hub::end(id sid, int64_t code) {
  auto& m = *impl_;
  m.post([&m, sid, code] {
    if (auto* s = m.find(sid)) {
      s->end_pending = true;
      s->end_code = code;
      m.finish_if_ended(*s);
    }
  });
}

void attach_hub::abandon(id sid) {
  auto& m = *impl_;
  m.post([&m, sid] {
    if (auto* s = m.find(sid))
      m.close(*s);
  });
}

size_t attach_hub::sessions() const {
  return impl_->count.load();
}

} // namespace berth::runtime
