#include "protocol/address.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

namespace berth::varlink {

std::optional<address> address::parse(std::string_view text) {
  text = text.substr(0, text.find(';'));
  address a;
  if (text.starts_with("unix:")) {
    auto p = text.substr(5);
    if (p.starts_with('@')) {
      a.type = kind::unix_abstract;
      p.remove_prefix(1);
    } else if (!p.starts_with('/')) {
      return std::nullopt;
    }
    // sun_path holds 108 bytes; the abstract form needs one for its NUL.
    if (p.empty() || p.size() > 107)
      return std::nullopt;
    a.path.assign(p);
    return a;
  }
  if (text.starts_with("tcp:")) {
    auto hp = text.substr(4);
    auto colon = hp.rfind(':');
    if (colon == std::string_view::npos)
      return std::nullopt;
    auto host = hp.substr(0, colon);
    auto port = hp.substr(colon + 1);
    if (host.starts_with('[') && host.ends_with(']'))
      host = host.substr(1, host.size() - 2);
    auto r = std::from_chars(port.data(), port.data() + port.size(), a.port);
    if (host.empty() || r.ec != std::errc{} || r.ptr != port.end() ||
        a.port < 0 || a.port > 65535)
      return std::nullopt;
    a.type = kind::tcp;
    a.host.assign(host);
    return a;
  }
  return std::nullopt;
}

std::string address::str() const {
  switch (type) {
    case kind::unix_path: return "unix:" + path;
    case kind::unix_abstract: return "unix:@" + path;
    case kind::tcp:
      if (host.find(':') != std::string::npos)
        return "tcp:[" + host + "]:" + std::to_string(port);
      return "tcp:" + host + ":" + std::to_string(port);
  }
  return {};
}

namespace {

socklen_t unix_sockaddr(const address& a, sockaddr_un& sun) {
  std::memset(&sun, 0, sizeof sun);
  sun.sun_family = AF_UNIX;
  if (a.type == address::kind::unix_abstract) {
    // Leading NUL, then the name, with no trailing NUL in the length.
    std::memcpy(sun.sun_path + 1, a.path.data(), a.path.size());
    return offsetof(sockaddr_un, sun_path) + 1 + a.path.size();
  }
  std::memcpy(sun.sun_path, a.path.data(), a.path.size());
  return offsetof(sockaddr_un, sun_path) + a.path.size() + 1;
}

// Runs f(sockaddr, len) for each resolved tcp address until one succeeds.
template <class F>
int with_tcp_addrs(const address& a, F f) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* res = nullptr;
  auto port = std::to_string(a.port);
  if (getaddrinfo(a.host.c_str(), port.c_str(), &hints, &res) != 0)
    return -EADDRNOTAVAIL;
  int rc = -EADDRNOTAVAIL;
  for (auto* ai = res; ai; ai = ai->ai_next) {
    rc = f(ai);
    if (rc >= 0)
      break;
  }
  freeaddrinfo(res);
  return rc;
}

int fail(int fd) {
  int err = errno;
  close(fd);
  return -err;
}

} // namespace

int connect_to(const address& a) {
  if (a.type == address::kind::tcp) {
    return with_tcp_addrs(a, [](addrinfo* ai) {
      int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0)
        return -errno;
      if (connect(fd, ai->ai_addr, ai->ai_addrlen) < 0)
        return fail(fd);
      int one = 1;
      setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    });
  }
  sockaddr_un sun;
  auto len = unix_sockaddr(a, sun);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  if (connect(fd, reinterpret_cast<sockaddr*>(&sun), len) < 0)
    return fail(fd);
  return fd;
}

namespace {

// Removes a socket file nobody listens on; EADDRINUSE if someone does.
int clear_stale_socket(const address& a) {
  struct stat st;
  if (lstat(a.path.c_str(), &st) < 0)
    return errno == ENOENT ? 0 : -errno;
  if (!S_ISSOCK(st.st_mode))
    return -EEXIST;
  int fd = connect_to(a);
  if (fd >= 0) {
    close(fd);
    return -EADDRINUSE;
  }
  if (unlink(a.path.c_str()) < 0 && errno != ENOENT)
    return -errno;
  return 0;
}

} // namespace

int listen_on(const address& a, unsigned mode) {
  if (a.type == address::kind::tcp) {
    return with_tcp_addrs(a, [](addrinfo* ai) {
      int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd < 0)
        return -errno;
      int one = 1;
      setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
      if (bind(fd, ai->ai_addr, ai->ai_addrlen) < 0 || listen(fd, 1024) < 0)
        return fail(fd);
      return fd;
    });
  }
  if (a.type == address::kind::unix_path) {
    if (int rc = clear_stale_socket(a); rc < 0)
      return rc;
  }
  sockaddr_un sun;
  auto len = unix_sockaddr(a, sun);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return -errno;
  // The file appears with the final mode: no window with wider access.
  auto old_mask = umask(~mode & 0777);
  int rc = bind(fd, reinterpret_cast<sockaddr*>(&sun), len);
  umask(old_mask);
  if (rc < 0 || listen(fd, 1024) < 0)
    return fail(fd);
  if (a.type == address::kind::unix_path)
    chmod(a.path.c_str(), mode);
  return fd;
}

} // namespace berth::varlink
