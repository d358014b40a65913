#include "protocol/client.hpp"

#include "protocol/json_decode.hpp"

#include <cerrno>
#include <cstring>
#include <sys/socket.h>
#include <unistd.h>

namespace berth::varlink {

client::~client() {
  if (fd_ >= 0)
    ::close(fd_);
}

client::client(client&& other) noexcept
  : fd_(std::exchange(other.fd_, -1)), in_(std::move(other.in_)) {
}

client& client::operator=(client&& other) noexcept {
  std::swap(fd_, other.fd_);
  std::swap(in_, other.in_);
  return *this;
}

bool client::connect(const address& a, std::string& err) {
  int fd = connect_to(a);
  if (fd < 0) {
    err = "connecting to " + a.str() + ": " + std::strerror(-fd);
    return false;
  }
  fd_ = fd;
  return true;
}

bool client::write_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    auto n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    bytes.remove_prefix(size_t(n));
  }
  return true;
}

bool client::send(std::string_view method, std::string_view params_json,
                  rpc::call_flags flags) {
  std::string msg = "{\"method\":" + json::quote(method);
  if (!params_json.empty()) {
    msg += ",\"parameters\":";
    msg += params_json;
  }
  if (flags.more)
    msg += ",\"more\":true";
  if (flags.oneway)
    msg += ",\"oneway\":true";
  if (flags.upgrade)
    msg += ",\"upgrade\":true";
  msg += "}";
  msg += '\0';
  return write_raw(msg);
}

bool parse_reply(std::string_view msg, reply& out) {
  simdjson::dom::parser parser;
  simdjson::padded_string text{msg};
  simdjson::dom::object obj;
  if (parser.parse(text).get(obj) != simdjson::SUCCESS)
    return false;
  out = reply{};
  out.parameters = "{}";
  for (auto [key, value] : obj) {
    if (key == "error") {
      std::string_view e;
      if (value.get(e) != simdjson::SUCCESS)
        return false;
      out.error.assign(e);
    } else if (key == "parameters" && !value.is_null()) {
      out.parameters = simdjson::minify(value);
    } else if (key == "continues") {
      bool b = false;
      if (value.get(b) != simdjson::SUCCESS)
        return false;
      out.continues = b;
    }
  }
  return true;
}

bool client::receive(reply& out, std::string& err) {
  for (;;) {
    std::string_view msg;
    auto st = in_.next(msg);
    if (st == frame_reader::status::message) {
      if (parse_reply(msg, out))
        return true;
      err = "malformed reply";
      return false;
    }
    if (st == frame_reader::status::oversize) {
      err = "reply too large";
      return false;
    }
    auto span = in_.prepare();
    auto n = ::recv(fd_, span.data(), span.size(), 0);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      err = n == 0 ? "connection closed by the server" : std::strerror(errno);
      return false;
    }
    in_.commit(size_t(n));
  }
}

bool client::read_raw(size_t n, std::string& out) {
  auto rest = in_.take_rest();
  out.assign(rest.begin(), rest.begin() + std::min(n, rest.size()));
  while (out.size() < n) {
    char buf[65536];
    auto got = ::recv(fd_, buf, std::min(sizeof buf, n - out.size()), 0);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return false;
    out.append(buf, size_t(got));
  }
  // Bytes past the raw part belong to the next varlink message.
  if (rest.size() > n) {
    auto span = in_.prepare(rest.size() - n);
    std::memcpy(span.data(), rest.data() + n, rest.size() - n);
    in_.commit(rest.size() - n);
  }
  return true;
}

} // namespace berth::varlink
