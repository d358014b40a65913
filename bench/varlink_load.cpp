// berth-varlink-load: closed-loop load client for varlink services.
//
// Opens N connections to a varlink address, keeps D calls in flight on each
// (D = 1: strictly sequential; D > 1: pipelined), and measures every call's
// latency from the moment its bytes were handed to the kernel to the moment
// the NUL that ends its reply was read. Replies on one connection arrive in
// call order (varlink-protocol.md §5), so a FIFO of send timestamps per
// connection is enough to pair them.
//
// One epoll loop per thread (default: one thread), non-blocking sockets, the
// call bytes serialised once. Replies are split at NUL and not parsed, except
// for a cheap check for a top-level "error" key.
//
// Modes:
//   load:  --address A --connections N (--calls M | --seconds S) [--depth D]
//          [--method M] [--params JSON] [--warmup S] [--threads T] [--json]
//   idle:  --address A --idle N --hold S [--no-ping] [--json]
//          opens N connections, makes one call on each (so the server has
//          surely accepted them), prints a "ready" line, holds them idle for
//          S seconds, then closes them.
//
// Exit status: 0 ok; 1 usage or transport failure (connect, close by the
// server, stall, missing replies); 2 run completed but some replies were
// errors.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

namespace {

uint64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

[[noreturn]] void die(const char* fmt, const char* a = "", const char* b = "") {
  std::fprintf(stderr, "berth-varlink-load: ");
  std::fprintf(stderr, fmt, a, b);
  std::fprintf(stderr, "\n");
  std::exit(1);
}

// ---------------------------------------------------------------- address

struct Address {
  sockaddr_storage ss{};
  socklen_t len = 0;
  bool tcp = false;
};

// unix:/path, unix:@abstract, tcp:HOST:PORT; anything after ';' is ignored
// (varlink-protocol.md §1).
bool parse_address(std::string s, Address& a, std::string& err) {
  if (auto semi = s.find(';'); semi != std::string::npos)
    s.resize(semi);
  if (s.rfind("unix:", 0) == 0) {
    std::string path = s.substr(5);
    if (path.empty()) {
      err = "empty unix path";
      return false;
    }
    auto* sun = reinterpret_cast<sockaddr_un*>(&a.ss);
    sun->sun_family = AF_UNIX;
    if (path.size() >= sizeof(sun->sun_path)) {
      err = "unix path too long";
      return false;
    }
    if (path[0] == '@') {
      sun->sun_path[0] = '\0';
      std::memcpy(sun->sun_path + 1, path.data() + 1, path.size() - 1);
      a.len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size());
    } else {
      std::memcpy(sun->sun_path, path.c_str(), path.size() + 1);
      a.len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
    }
    return true;
  }
  if (s.rfind("tcp:", 0) == 0) {
    std::string hp = s.substr(4);
    auto colon = hp.rfind(':');
    if (colon == std::string::npos) {
      err = "tcp address needs HOST:PORT";
      return false;
    }
    std::string host = hp.substr(0, colon), port = hp.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || !res) {
      err = std::string("getaddrinfo: ") + gai_strerror(rc);
      return false;
    }
    std::memcpy(&a.ss, res->ai_addr, res->ai_addrlen);
    a.len = res->ai_addrlen;
    a.tcp = true;
    freeaddrinfo(res);
    return true;
  }
  err = "address must be unix:PATH or tcp:HOST:PORT";
  return false;
}

// Blocking connect (a full unix backlog makes connect() wait, which is what
// we want when opening many connections), then optionally non-blocking.
int connect_to(const Address& a, bool nonblock) {
  int fd = socket(a.ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -1;
  int rc;
  do
    rc = connect(fd, reinterpret_cast<const sockaddr*>(&a.ss), a.len);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    int e = errno;
    close(fd);
    errno = e;
    return -1;
  }
  if (a.tcp) {
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  if (nonblock)
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
  return fd;
}

void raise_nofile(size_t need) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
    return;
  if (rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < need)
    std::fprintf(stderr,
                 "berth-varlink-load: warning: RLIMIT_NOFILE is %llu, %zu "
                 "connections may not fit\n",
                 static_cast<unsigned long long>(rl.rlim_cur), need);
}

// ---------------------------------------------------------------- replies

// True if the reply object has a top-level "error" key. memmem first: a
// reply without the byte sequence "error" (the common case) costs one scan.
bool is_error_reply(const char* p, size_t n) {
  if (!memmem(p, n, "\"error\"", 7))
    return false;
  int depth = 0;
  for (size_t i = 0; i < n; ++i) {
    char c = p[i];
    if (c == '"') {
      size_t start = i + 1, j = start;
      while (j < n && p[j] != '"')
        j += (p[j] == '\\') ? 2 : 1;
      if (depth == 1 && j < n && j - start == 5 &&
          std::memcmp(p + start, "error", 5) == 0) {
        size_t k = j + 1;
        while (k < n &&
               (p[k] == ' ' || p[k] == '\t' || p[k] == '\n' || p[k] == '\r'))
          ++k;
        if (k < n && p[k] == ':')
          return true;
      }
      i = j;
    } else if (c == '{' || c == '[') {
      ++depth;
    } else if (c == '}' || c == ']') {
      --depth;
    }
  }
  return false;
}

std::string json_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char b[8];
      std::snprintf(b, sizeof b, "\\u%04x", c);
      o += b;
    } else
      o += c;
  }
  return o;
}

// ---------------------------------------------------------------- options

struct Options {
  std::string address;
  size_t connections = 1;
  uint64_t calls = 0; // per connection; 0 = use seconds
  double seconds = 0;
  double warmup = 0;
  size_t depth = 1;
  size_t threads = 1;
  std::string method = "io.podman.GetVersion";
  std::string params = "{}";
  double timeout = 10; // stall timeout
  bool json = false;
  size_t idle = 0;
  double hold = 0;
  bool ping = true;
};

void usage() {
  std::fprintf(
      stderr,
      "usage: berth-varlink-load --address "
      "unix:/path|unix:@name|tcp:HOST:PORT\n"
      "         [--connections N] (--calls M | --seconds S) [--depth D] "
      "[--warmup S]\n"
      "         [--method NAME] [--params JSON] [--threads T] [--timeout S] "
      "[--json]\n"
      "       berth-varlink-load --address A --idle N --hold S [--no-ping] "
      "[--method NAME] [--json]\n"
      "  --calls M      calls per connection (exact count; default 1000 if no "
      "--seconds)\n"
      "  --seconds S    run for S seconds (stop issuing at S, then drain "
      "in-flight calls)\n"
      "  --depth D      calls in flight per connection (1 = sequential; >1 = "
      "pipelined)\n"
      "  --warmup S     leave out calls sent in the first S seconds from the "
      "figures\n"
      "  --threads T    epoll threads sharing the connections (default 1)\n"
      "  --timeout S    give up if no reply arrives for S seconds (default "
      "10)\n"
      "  --idle N       open N connections, ping each once, hold them --hold S "
      "seconds\n");
}

double parse_double(const char* opt, const char* v) {
  char* end = nullptr;
  double d = std::strtod(v, &end);
  if (!end || *end || d < 0)
    die("bad value for %s: %s", opt, v);
  return d;
}

uint64_t parse_u64(const char* opt, const char* v) {
  char* end = nullptr;
  unsigned long long u = std::strtoull(v, &end, 10);
  if (!end || *end || v[0] == '-')
    die("bad value for %s: %s", opt, v);
  return u;
}

Options parse_args(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    auto val = [&]() -> const char* {
      if (i + 1 >= argc)
        die("%s needs a value", argv[i]);
      return argv[++i];
    };
    if (a == "--address")
      o.address = val();
    else if (a == "--connections")
      o.connections = parse_u64("--connections", val());
    else if (a == "--calls")
      o.calls = parse_u64("--calls", val());
    else if (a == "--seconds")
      o.seconds = parse_double("--seconds", val());
    else if (a == "--warmup")
      o.warmup = parse_double("--warmup", val());
    else if (a == "--depth")
      o.depth = parse_u64("--depth", val());
    else if (a == "--threads")
      o.threads = parse_u64("--threads", val());
    else if (a == "--method")
      o.method = val();
    else if (a == "--params")
      o.params = val();
    else if (a == "--timeout")
      o.timeout = parse_double("--timeout", val());
    else if (a == "--json")
      o.json = true;
    else if (a == "--idle")
      o.idle = parse_u64("--idle", val());
    else if (a == "--hold")
      o.hold = parse_double("--hold", val());
    else if (a == "--no-ping")
      o.ping = false;
    else if (a == "-h" || a == "--help") {
      usage();
      std::exit(0);
    } else {
      usage();
      die("unknown option %s", argv[i]);
    }
  }
  if (o.address.empty()) {
    usage();
    die("--address is required");
  }
  if (o.connections == 0)
    die("--connections must be > 0");
  if (o.depth == 0)
    die("--depth must be > 0");
  if (o.threads == 0)
    o.threads = 1;
  if (o.threads > o.connections)
    o.threads = o.connections;
  if (o.calls == 0 && o.seconds == 0)
    o.calls = 1000;
  if (o.calls && o.seconds > 0)
    die("give either --calls or --seconds, not both");
  if (o.timeout <= 0)
    o.timeout = 10;
  return o;
}

// ---------------------------------------------------------------- load

struct Conn {
  int fd = -1;
  std::vector<char> in; // read buffer
  size_t in_len = 0;    // bytes held in `in`
  size_t scan = 0;      // NUL search resumes here
  std::string out;      // bytes not yet written
  size_t out_off = 0;
  bool want_out = false;      // EPOLLOUT armed
  std::vector<uint64_t> ring; // send timestamps, FIFO of capacity depth
  size_t head = 0, inflight = 0;
  uint64_t sent = 0, done = 0;
  bool finished = false, dead = false;
};

struct Shared {
  const Options* opt = nullptr;
  std::string call; // pre-serialised call incl. trailing NUL
  uint64_t start = 0, measure_from = 0, deadline = 0;
  uint64_t timeout_ns = 0;
};

struct Worker {
  const Shared* sh = nullptr;
  std::vector<Conn*> conns;
  std::vector<uint64_t> lat; // ns, calls sent at/after measure_from
  uint64_t measured = 0, errors = 0, completed = 0, sent = 0;
  uint64_t last_reply = 0, first_measured_send = 0;
  uint64_t conn_errors = 0;
  std::string first_error;
  std::string fatal;
  int ep = -1;
  size_t active = 0;

  bool budget(const Conn& c, uint64_t now) const {
    const Options& o = *sh->opt;
    if (o.calls)
      return c.sent < o.calls;
    return now < sh->deadline;
  }

  void issue(Conn& c, uint64_t now) {
    c.ring[(c.head + c.inflight) % c.ring.size()] = now;
    ++c.inflight;
    ++c.sent;
    ++sent;
    c.out += sh->call;
  }

  void finish(Conn& c) {
    if (c.finished || c.dead)
      return;
    c.finished = true;
    --active;
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
  }

  void set_out(Conn& c, bool on) {
    if (c.want_out == on)
      return;
    epoll_event ev{};
    ev.events = EPOLLIN | (on ? EPOLLOUT : 0u);
    ev.data.ptr = &c;
    epoll_ctl(ep, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = on;
  }

  void kill(Conn& c, const char* why) {
    if (c.dead)
      return;
    if (!c.finished)
      --active;
    c.dead = true;
    ++conn_errors;
    if (fatal.empty())
      fatal = why;
    epoll_ctl(ep, EPOLL_CTL_DEL, c.fd, nullptr);
  }

  void flush(Conn& c) {
    while (c.out_off < c.out.size()) {
      ssize_t w = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                       MSG_NOSIGNAL);
      if (w > 0) {
        c.out_off += size_t(w);
        continue;
      }
      if (w < 0 && errno == EINTR)
        continue;
      if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        set_out(c, true);
        return;
      }
      kill(c, "write failed (server closed the connection?)");
      return;
    }
    c.out.clear();
    c.out_off = 0;
    set_out(c, false);
  }

  void on_reply(Conn& c, const char* p, size_t n, uint64_t now) {
    if (c.inflight == 0) {
      kill(c, "reply without a call (server sent more replies than calls)");
      return;
    }
    uint64_t t = c.ring[c.head];
    c.head = (c.head + 1) % c.ring.size();
    --c.inflight;
    ++c.done;
    ++completed;
    last_reply = now;
    if (t >= sh->measure_from) {
      lat.push_back(now - t);
      ++measured;
      if (first_measured_send == 0 || t < first_measured_send)
        first_measured_send = t;
    }
    if (is_error_reply(p, n)) {
      ++errors;
      if (first_error.empty())
        first_error.assign(p, std::min<size_t>(n, 300));
    }
  }

  void on_readable(Conn& c) {
    for (;;) {
      if (c.in.size() - c.in_len < 16384)
        c.in.resize(std::max<size_t>(c.in.size() * 2, 65536));
      size_t room = c.in.size() - c.in_len;
      ssize_t r = recv(c.fd, c.in.data() + c.in_len, room, 0);
      if (r < 0 && errno == EINTR)
        continue;
      if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
        return;
      if (r <= 0) {
        kill(c, r == 0 ? "server closed the connection" : "read failed");
        return;
      }
      uint64_t now = now_ns();
      c.in_len += size_t(r);
      size_t start = 0, replies = 0;
      while (c.scan < c.in_len) {
        auto* z = static_cast<const char*>(
            std::memchr(c.in.data() + c.scan, 0, c.in_len - c.scan));
        if (!z) {
          c.scan = c.in_len;
          break;
        }
        size_t end = size_t(z - c.in.data());
        on_reply(c, c.in.data() + start, end - start, now);
        if (c.dead)
          return;
        ++replies;
        start = end + 1;
        c.scan = start;
      }
      if (start > 0) {
        std::memmove(c.in.data(), c.in.data() + start, c.in_len - start);
        c.in_len -= start;
        c.scan -= start;
      }
      // Closed loop: one new call per completed one, while the budget lasts.
      size_t k = 0;
      while (k < replies && c.inflight < sh->opt->depth && budget(c, now)) {
        issue(c, now);
        ++k;
      }
      if (k) {
        flush(c);
        if (c.dead)
          return;
      }
      if (c.inflight == 0 && !budget(c, now)) {
        finish(c);
        return;
      }
      if (size_t(r) < room)
        return; // short read: socket drained
    }
  }

  void run() {
    ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
      fatal = "epoll_create1 failed";
      return;
    }
    uint64_t now = now_ns();
    active = conns.size();
    for (Conn* c : conns) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.ptr = c;
      epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
      while (c->inflight < sh->opt->depth && budget(*c, now))
        issue(*c, now);
      flush(*c);
      if (c->inflight == 0)
        finish(*c);
    }
    std::vector<epoll_event> evs(512);
    uint64_t last_progress = now_ns();
    uint64_t seen_completed = completed;
    for (;;) {
      if (active == 0)
        break;
      int n = epoll_wait(ep, evs.data(), int(evs.size()), 100);
      if (n < 0 && errno != EINTR) {
        fatal = "epoll_wait failed";
        break;
      }
      for (int i = 0; i < n; ++i) {
        Conn& c = *static_cast<Conn*>(evs[size_t(i)].data.ptr);
        if (c.dead || c.finished)
          continue;
        uint32_t e = evs[size_t(i)].events;
        if (e & EPOLLOUT)
          flush(c);
        if (!c.dead && (e & (EPOLLIN | EPOLLHUP | EPOLLERR)))
          on_readable(c);
      }
      uint64_t t = now_ns();
      if (completed != seen_completed) {
        seen_completed = completed;
        last_progress = t;
      } else if (t - last_progress > sh->timeout_ns) {
        for (Conn* c : conns)
          if (!c->finished && !c->dead)
            kill(*c, "stalled: no reply within --timeout");
        break;
      }
    }
    close(ep);
  }
};

double pct(const std::vector<uint64_t>& v, double p) {
  if (v.empty())
    return 0;
  size_t rank = size_t(std::ceil(p / 100.0 * double(v.size())));
  if (rank < 1)
    rank = 1;
  if (rank > v.size())
    rank = v.size();
  return double(v[rank - 1]) / 1000.0;
}

int run_load(const Options& o, const Address& addr) {
  raise_nofile(o.connections + 64);
  Shared sh;
  sh.opt = &o;
  sh.call = "{\"method\":\"" + json_escape(o.method) +
            "\",\"parameters\":" + o.params + "}";
  sh.call.push_back('\0');
  sh.timeout_ns = uint64_t(o.timeout * 1e9);

  std::vector<Conn> conns(o.connections);
  for (size_t i = 0; i < conns.size(); ++i) {
    conns[i].fd = connect_to(addr, true);
    if (conns[i].fd < 0) {
      std::string msg = "connect " + o.address + " (connection " +
                        std::to_string(i + 1) + "): " + std::strerror(errno);
      die("%s", msg.c_str());
    }
    conns[i].ring.assign(o.depth, 0);
    conns[i].in.resize(65536);
  }

  std::vector<Worker> workers(o.threads);
  for (size_t i = 0; i < conns.size(); ++i)
    workers[i % o.threads].conns.push_back(&conns[i]);
  for (auto& w : workers) {
    w.sh = &sh;
    if (o.calls)
      w.lat.reserve(std::min<uint64_t>(o.calls * w.conns.size(), 50'000'000));
    else
      w.lat.reserve(1 << 20);
  }
  sh.start = now_ns();
  sh.measure_from = sh.start + uint64_t(o.warmup * 1e9);
  sh.deadline =
      o.seconds > 0 ? sh.start + uint64_t(o.seconds * 1e9) : UINT64_MAX;
  if (o.calls && o.warmup > 0)
    std::fprintf(stderr,
                 "berth-varlink-load: note: --warmup with --calls leaves the "
                 "first %.3f s out of the figures\n",
                 o.warmup);

  if (o.threads == 1) {
    workers[0].run();
  } else {
    std::vector<std::thread> ts;
    for (auto& w : workers)
      ts.emplace_back([&w] { w.run(); });
    for (auto& t : ts)
      t.join();
  }

  std::vector<uint64_t> lat;
  uint64_t measured = 0, errors = 0, completed = 0, sent = 0, conn_errors = 0,
           last = 0;
  uint64_t first_send = UINT64_MAX;
  std::string first_error, fatal;
  for (auto& w : workers) {
    lat.insert(lat.end(), w.lat.begin(), w.lat.end());
    measured += w.measured;
    errors += w.errors;
    completed += w.completed;
    sent += w.sent;
    conn_errors += w.conn_errors;
    last = std::max(last, w.last_reply);
    if (w.first_measured_send)
      first_send = std::min(first_send, w.first_measured_send);
    if (first_error.empty())
      first_error = w.first_error;
    if (fatal.empty())
      fatal = w.fatal;
  }
  for (auto& c : conns)
    close(c.fd);
  std::sort(lat.begin(), lat.end());

  double window =
      (measured && last > first_send) ? double(last - first_send) / 1e9 : 0;
  double rate = window > 0 ? double(measured) / window : 0;
  double mean = 0;
  for (uint64_t x : lat)
    mean += double(x);
  if (!lat.empty())
    mean = mean / double(lat.size()) / 1000.0;
  double p50 = pct(lat, 50), p90 = pct(lat, 90), p99 = pct(lat, 99),
         p999 = pct(lat, 99.9);
  double mx = lat.empty() ? 0 : double(lat.back()) / 1000.0;
  uint64_t expected = o.calls ? o.calls * o.connections : sent;
  double elapsed = last > sh.start ? double(last - sh.start) / 1e9 : 0;

  if (o.json) {
    std::printf("{\"mode\":\"load\",\"address\":\"%s\",\"method\":\"%s\","
                "\"connections\":%zu,\"depth\":%zu,"
                "\"threads\":%zu,\"expected\":%" PRIu64 ",\"sent\":%" PRIu64
                ",\"calls\":%" PRIu64 ",\"measured\":%" PRIu64
                ",\"seconds\":%.4f,\"calls_per_s\":%.1f,\"mean_us\":%.2f,"
                "\"p50_us\":%.2f,\"p90_us\":%.2f,\"p99_us\":%.2f,\"p999_us\":%."
                "2f,\"max_us\":%.2f,"
                "\"errors\":%" PRIu64 ",\"conn_errors\":%" PRIu64
                "%s%s%s%s%s%s}\n",
                json_escape(o.address).c_str(), json_escape(o.method).c_str(),
                o.connections, o.depth, o.threads, expected, sent, completed,
                measured, elapsed, rate, mean, p50, p90, p99, p999, mx, errors,
                conn_errors, fatal.empty() ? "" : ",\"fatal\":\"",
                fatal.empty() ? "" : json_escape(fatal).c_str(),
                fatal.empty() ? "" : "\"",
                first_error.empty() ? "" : ",\"first_error\":\"",
                first_error.empty() ? "" : json_escape(first_error).c_str(),
                first_error.empty() ? "" : "\"");
  } else {
    std::printf("%s conns=%zu depth=%zu: %.0f calls/s  p50 %.1f us  p99 %.1f "
                "us  p99.9 %.1f us  max %.1f us  "
                "errors %" PRIu64 "  (calls %" PRIu64 "/%" PRIu64
                " in %.2f s, conn_errors %" PRIu64 ")\n",
                o.method.c_str(), o.connections, o.depth, rate, p50, p99, p999,
                mx, errors, completed, expected, elapsed, conn_errors);
  }
  std::fflush(stdout);
  if (!fatal.empty())
    std::fprintf(stderr, "berth-varlink-load: %s\n", fatal.c_str());
  if (!first_error.empty())
    std::fprintf(stderr, "berth-varlink-load: first error reply: %s\n",
                 first_error.c_str());
  if (!fatal.empty() || conn_errors || completed != expected) {
    if (completed != expected)
      std::fprintf(stderr,
                   "berth-varlink-load: %" PRIu64 " replies, expected %" PRIu64
                   "\n",
                   completed, expected);
    return 1;
  }
  return errors ? 2 : 0;
}

// ---------------------------------------------------------------- idle

int run_idle(const Options& o, const Address& addr) {
  raise_nofile(o.idle + 64);
  std::string call = "{\"method\":\"" + json_escape(o.method) +
                     "\",\"parameters\":" + o.params + "}";
  call.push_back('\0');
  std::vector<int> fds;
  fds.reserve(o.idle);
  uint64_t t0 = now_ns();
  for (size_t i = 0; i < o.idle; ++i) {
    int fd = connect_to(addr, false);
    if (fd < 0) {
      std::string msg = "connect " + o.address + " (connection " +
                        std::to_string(i + 1) + "): " + std::strerror(errno);
      die("%s", msg.c_str());
    }
    timeval tv{};
    tv.tv_sec = time_t(o.timeout);
    tv.tv_usec = suseconds_t((o.timeout - double(tv.tv_sec)) * 1e6);
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    fds.push_back(fd);
  }
  uint64_t errors = 0;
  if (o.ping) {
    // Pipelined across connections: every call first, then every reply.
    for (int fd : fds) {
      size_t off = 0;
      while (off < call.size()) {
        ssize_t w =
            send(fd, call.data() + off, call.size() - off, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
          continue;
        if (w <= 0)
          die("idle: send failed: %s", std::strerror(errno));
        off += size_t(w);
      }
    }
    std::vector<char> buf(1 << 16);
    for (int fd : fds) {
      std::string msg;
      for (;;) {
        ssize_t r = recv(fd, buf.data(), buf.size(), 0);
        if (r < 0 && errno == EINTR)
          continue;
        if (r == 0)
          die("idle: server closed a connection before replying");
        if (r < 0)
          die("idle: no reply: %s", std::strerror(errno));
        msg.append(buf.data(), size_t(r));
        if (msg.find('\0') != std::string::npos)
          break;
      }
      if (msg.find('\0') + 1 != msg.size())
        die("idle: more bytes than one reply");
      if (is_error_reply(msg.data(), msg.size() - 1))
        ++errors;
    }
  }
  double setup = double(now_ns() - t0) / 1e9;
  if (o.json)
    std::printf("{\"event\":\"ready\",\"connections\":%zu,\"setup_s\":%.3f}\n",
                fds.size(), setup);
  else
    std::printf("ready: %zu connections open%s in %.3f s, holding %.1f s\n",
                fds.size(), o.ping ? " and pinged" : "", setup, o.hold);
  std::fflush(stdout);

  timespec ts{};
  ts.tv_sec = time_t(o.hold);
  ts.tv_nsec = long((o.hold - double(ts.tv_sec)) * 1e9);
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }

  uint64_t closed = 0;
  char c;
  for (int fd : fds) {
    ssize_t r = recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK))
      ++closed;
    close(fd);
  }
  if (o.json)
    std::printf("{\"mode\":\"idle\",\"address\":\"%s\",\"connections\":%zu,"
                "\"pinged\":%s,\"hold_s\":%.3f,"
                "\"errors\":%" PRIu64 ",\"closed_by_server\":%" PRIu64 "}\n",
                json_escape(o.address).c_str(), fds.size(),
                o.ping ? "true" : "false", o.hold, errors, closed);
  else
    std::printf("idle: %zu connections held %.1f s, errors %" PRIu64
                ", closed by server %" PRIu64 "\n",
                fds.size(), o.hold, errors, closed);
  std::fflush(stdout);
  if (closed)
    return 1;
  return errors ? 2 : 0;
}

} // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  Options o = parse_args(argc, argv);
  Address addr;
  std::string err;
  if (!parse_address(o.address, addr, err))
    die("%s: %s", o.address.c_str(), err.c_str());
  if (o.idle)
    return run_idle(o, addr);
  return run_load(o, addr);
}
