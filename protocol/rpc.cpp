#include "protocol/rpc.hpp"

#include <algorithm>

namespace berth::rpc {

namespace {

// Room for the NUL the connection appends, so that costs no reallocation.
std::string frame(std::string_view params, bool continues) {
  std::string s;
  s.reserve(params.size() + 34);
  s += "{\"parameters\":";
  s += params;
  if (continues)
    s += ",\"continues\":true";
  s += '}';
  return s;
}

} // namespace

call::~call() {
  if (out_ && !finished_.exchange(true))
    out_->deliver({}, true);
}

void responder::deliver_duplex(std::string message,
                               std::shared_ptr<raw_peer> peer, raw_ready) {
  deliver(std::move(message), true);
  peer->on_client_closed(true);
}

size_t responder::backlog() const {
  return 0;
}

void responder::when_writable(size_t, std::function<void()> f) {
  f();
}

void service::internal_error(const call_ptr& c, const std::string&) {
  if (!c->finished_.exchange(true))
    c->out_->deliver({}, true);
}

void call::reply_json(std::string_view params_json, bool continues) {
  // `continues` without `more` is a protocol violation: send it as final.
  bool final = !(continues && flags_.more);
  if (final && finished_.exchange(true))
    return;
  out_->deliver(frame(params_json, !final), final);
}

void call::reply_upgraded(std::string_view params_json, raw_transfer t) {
  if (finished_.exchange(true))
    return;
  out_->deliver(frame(params_json, false), true,
                std::make_shared<const raw_transfer>(std::move(t)));
}

void call::reply_upgraded_duplex(std::string_view params_json,
                                 std::shared_ptr<raw_peer> peer,
                                 raw_ready ready) {
  if (finished_.exchange(true))
    return;
  out_->deliver_duplex(frame(params_json, false), std::move(peer),
                       std::move(ready));
}

void call::fail_json(std::string_view error_name, std::string params_json) {
  if (finished_.exchange(true))
    return;
  std::string s;
  s.reserve(params_json.size() + error_name.size() + 32);
  s += "{\"error\":";
  s += json::quote(error_name);
  s += ",\"parameters\":";
  s += params_json;
  s += '}';
  out_->deliver(std::move(s), true);
}

void call::not_implemented() {
  fail_json("org.varlink.service.MethodNotImplemented",
            "{\"method\":" + json::quote(method_->full_name) + "}");
}

void call::on_cancel(std::function<void()> f) {
  std::unique_lock guard{cancel_mtx_};
  if (!cancelled_) {
    on_cancel_ = std::move(f);
    return;
  }
  guard.unlock();
  f();
}

void call::cancel() {
  std::function<void()> f;
  {
    std::lock_guard guard{cancel_mtx_};
    cancelled_ = true;
    f.swap(on_cancel_);
  }
  if (f)
    f();
}

const method_info* interface_info::find(std::string_view bare_name) const {
  // The generator emits the methods sorted by name.
  auto it = std::lower_bound(
      methods.begin(), methods.end(), bare_name,
      [](const method_info& m, std::string_view n) { return m.name < n; });
  return it != methods.end() && it->name == bare_name ? &*it : nullptr;
}

} // namespace berth::rpc
