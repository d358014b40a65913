#include "cmd/cli.hpp"

#include <cstdlib>
#include <iostream>

namespace berth::cli {

void usage_error(const std::string& msg) {
  std::cerr << "berth: " << msg << "\nTry 'berth help'.\n";
  std::exit(failure);
}

session::session(const std::string& addr) {
  auto a = varlink::address::parse(addr);
  if (!a)
    usage_error("invalid address: " + addr);
  std::string err;
  if (!conn.connect(*a, err)) {
    std::cerr << "berth: " << err << '\n';
    std::exit(failure);
  }
}

varlink::reply session::call(std::string_view method, std::string_view params,
                             rpc::call_flags flags) {
  varlink::reply r;
  std::string err;
  if (!conn.send(method, params, flags) || !conn.receive(r, err)) {
    std::cerr << "berth: " << method << ": "
              << (err.empty() ? "connection lost" : err) << '\n';
    std::exit(failure);
  }
  return r;
}

varlink::reply session::next() {
  varlink::reply r;
  std::string err;
  if (!conn.receive(r, err)) {
    std::cerr << "berth: " << err << '\n';
    std::exit(failure);
  }
  return r;
}

int print_error(const varlink::reply& r) {
  std::cerr << r.error << ' ' << r.parameters << '\n';
  return remote_error;
}

} // namespace berth::cli
