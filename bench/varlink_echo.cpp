// berth-varlink-echo: the cheapest possible varlink responder.
//
// Single-threaded epoll server on a unix or tcp socket. It does not parse
// JSON: every NUL byte it reads ends one call, and each is answered with the
// same fixed reply (default {"parameters":{"version":"echo"}} + NUL), in
// order, so pipelined calls work. Run berth-varlink-load against it to see
// the load client's own ceiling on this machine.
//
//   berth-varlink-echo --address unix:/path|unix:@name|tcp:127.0.0.1:PORT
//   [--reply JSON]
//
// SIGINT/SIGTERM: stop, unlink the socket file, print counts to stderr.

#include <cerrno>
#include <cinttypes>
#include <csignal>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace {

volatile std::sig_atomic_t g_stop = 0;
void on_signal(int) {
  g_stop = 1;
}

[[noreturn]] void die(const std::string& msg) {
  std::fprintf(stderr, "berth-varlink-echo: %s\n", msg.c_str());
  std::exit(1);
}

struct Conn {
  int fd = -1;
  std::string out;
  size_t out_off = 0;
  bool want_out = false;
  bool reading = true;
};

constexpr size_t kMaxPending =
    4u << 20; // stop reading a client that does not read its replies

int g_ep = -1;
std::vector<Conn*> g_conns; // by fd
uint64_t g_messages = 0, g_accepted = 0;

void update_events(Conn& c) {
  bool want_out = c.out_off < c.out.size();
  bool reading = c.out.size() - c.out_off < kMaxPending;
  if (want_out == c.want_out && reading == c.reading)
    return;
  epoll_event ev{};
  ev.events = (reading ? EPOLLIN : 0u) | (want_out ? EPOLLOUT : 0u);
  ev.data.fd = c.fd;
  epoll_ctl(g_ep, EPOLL_CTL_MOD, c.fd, &ev);
  c.want_out = want_out;
  c.reading = reading;
}

void drop(Conn* c) {
  epoll_ctl(g_ep, EPOLL_CTL_DEL, c->fd, nullptr);
  close(c->fd);
  g_conns[size_t(c->fd)] = nullptr;
  delete c;
}

// Returns false if the connection is gone.
bool flush(Conn& c) {
  while (c.out_off < c.out.size()) {
    ssize_t w = send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off,
                     MSG_NOSIGNAL);
    if (w > 0) {
      c.out_off += size_t(w);
      continue;
    }
    if (w < 0 && errno == EINTR)
      continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    return false;
  }
  if (c.out_off == c.out.size()) {
    c.out.clear();
    c.out_off = 0;
  }
  update_events(c);
  return true;
}

bool on_readable(Conn& c, const std::string& reply, std::vector<char>& buf) {
  for (int rounds = 0; rounds < 4; ++rounds) {
    ssize_t r = recv(c.fd, buf.data(), buf.size(), 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
      break;
    if (r <= 0)
      return false;
    const char* p = buf.data();
    const char* end = p + r;
    size_t n = 0;
    while ((p = static_cast<const char*>(std::memchr(p, 0, size_t(end - p)))) !=
           nullptr) {
      ++n;
      ++p;
    }
    g_messages += n;
    for (size_t i = 0; i < n; ++i)
      c.out += reply;
    if (size_t(r) < buf.size())
      break;
    if (c.out.size() - c.out_off >= kMaxPending)
      break;
  }
  return flush(c);
}

int listen_on(std::string addr, std::string& unlink_path) {
  if (auto semi = addr.find(';'); semi != std::string::npos)
    addr.resize(semi);
  if (addr.rfind("unix:", 0) == 0) {
    std::string path = addr.substr(5);
    sockaddr_un sun{};
    sun.sun_family = AF_UNIX;
    if (path.empty() || path.size() >= sizeof(sun.sun_path))
      die("bad unix path: " + path);
    socklen_t len;
    if (path[0] == '@') {
      std::memcpy(sun.sun_path + 1, path.data() + 1, path.size() - 1);
      len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size());
    } else {
      std::memcpy(sun.sun_path, path.c_str(), path.size() + 1);
      len = socklen_t(offsetof(sockaddr_un, sun_path) + path.size() + 1);
      struct stat st {};
      if (lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode))
        unlink(path.c_str());
      unlink_path = path;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      die(std::string("socket: ") + std::strerror(errno));
    if (bind(fd, reinterpret_cast<sockaddr*>(&sun), len) < 0)
      die("bind " + path + ": " + std::strerror(errno));
    if (listen(fd, SOMAXCONN) < 0)
      die(std::string("listen: ") + std::strerror(errno));
    return fd;
  }
  if (addr.rfind("tcp:", 0) == 0) {
    std::string hp = addr.substr(4);
    auto colon = hp.rfind(':');
    if (colon == std::string::npos)
      die("tcp address needs HOST:PORT");
    std::string host = hp.substr(0, colon), port = hp.substr(colon + 1);
    if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
      host = host.substr(1, host.size() - 2);
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV | AI_PASSIVE;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res);
    if (rc != 0 || !res)
      die(std::string("getaddrinfo: ") + gai_strerror(rc));
    int fd =
        socket(res->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
      die(std::string("socket: ") + std::strerror(errno));
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, res->ai_addr, res->ai_addrlen) < 0)
      die("bind " + addr + ": " + std::strerror(errno));
    freeaddrinfo(res);
    if (listen(fd, SOMAXCONN) < 0)
      die(std::string("listen: ") + std::strerror(errno));
    return fd;
  }
  die("address must be unix:PATH or tcp:HOST:PORT");
}

} // namespace

int main(int argc, char** argv) {
  std::string address;
  std::string reply = "{\"parameters\":{\"version\":\"echo\"}}";
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if ((a == "--address" || a == "--reply") && i + 1 < argc) {
      (a == "--address" ? address : reply) = argv[++i];
    } else if (a == "-h" || a == "--help") {
      std::printf("usage: berth-varlink-echo --address "
                  "unix:/path|unix:@name|tcp:HOST:PORT [--reply JSON]\n");
      return 0;
    } else {
      die("unknown option " + std::string(a) + " (try --help)");
    }
  }
  if (address.empty())
    die("--address is required");
  reply.push_back('\0');

  std::signal(SIGPIPE, SIG_IGN);
  struct sigaction sa {};
  sa.sa_handler = on_signal; // no SA_RESTART: epoll_wait returns EINTR
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);

  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }

  std::string unlink_path;
  int lfd = listen_on(address, unlink_path);
  g_ep = epoll_create1(EPOLL_CLOEXEC);
  if (g_ep < 0)
    die(std::string("epoll_create1: ") + std::strerror(errno));
  epoll_event lev{};
  lev.events = EPOLLIN;
  lev.data.fd = lfd;
  epoll_ctl(g_ep, EPOLL_CTL_ADD, lfd, &lev);

  std::vector<char> buf(1 << 16);
  std::vector<epoll_event> evs(512);
  bool emfile_warned = false;
  while (!g_stop) {
    int n = epoll_wait(g_ep, evs.data(), int(evs.size()), -1);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      die(std::string("epoll_wait: ") + std::strerror(errno));
    }
    for (int i = 0; i < n; ++i) {
      int fd = evs[size_t(i)].data.fd;
      uint32_t e = evs[size_t(i)].events;
      if (fd == lfd) {
        for (;;) {
          int cfd =
              accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
          if (cfd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
              continue;
            if ((errno == EMFILE || errno == ENFILE) && !emfile_warned) {
              std::fprintf(stderr, "berth-varlink-echo: accept: %s\n",
                           std::strerror(errno));
              emfile_warned = true;
            }
            break;
          }
          if (address.rfind("tcp:", 0) == 0) {
            int one = 1;
            setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
          }
          if (size_t(cfd) >= g_conns.size())
            g_conns.resize(size_t(cfd) * 2 + 1, nullptr);
          auto* c = new Conn;
          c->fd = cfd;
          g_conns[size_t(cfd)] = c;
          epoll_event ev{};
          ev.events = EPOLLIN;
          ev.data.fd = cfd;
          epoll_ctl(g_ep, EPOLL_CTL_ADD, cfd, &ev);
          ++g_accepted;
        }
        continue;
      }
      Conn* c = size_t(fd) < g_conns.size() ? g_conns[size_t(fd)] : nullptr;
      if (!c)
        continue;
      bool ok = true;
      if (e & EPOLLOUT)
        ok = flush(*c);
      if (ok && (e & (EPOLLIN | EPOLLHUP | EPOLLERR)))
        ok = on_readable(*c, reply, buf);
      if (!ok)
        drop(c);
    }
  }
  for (Conn* c : g_conns)
    if (c)
      drop(c);
  close(lfd);
  if (!unlink_path.empty())
    unlink(unlink_path.c_str());
  std::fprintf(stderr,
               "berth-varlink-echo: %" PRIu64 " connections, %" PRIu64
               " messages\n",
               g_accepted, g_messages);
  return 0;
}
