#include "actors/certification.hpp"

#include <fstream>
#include <numbers>

namespace berth::actors {

namespace {

using namespace std::chrono_literals;

constexpr auto client_lifetime = 12h;
constexpr size_t max_clients = 1000;
const std::string a_lot = "a lot of string";

std::string new_client_id() {
  unsigned char bytes[16];
  std::ifstream{"/dev/urandom", std::ios::binary}.read(
      reinterpret_cast<char*>(bytes), sizeof bytes);
  static constexpr char hex[] = "0123456789abcdef";
  std::string id;
  for (auto b : bytes) {
    id += hex[b >> 4];
    id += hex[b & 15];
  }
  return id;
}

// The call as JSON, for the error that reports a mismatch.
template <class In>
json::raw describe(std::string_view method, const In* params, bool more,
                   bool oneway) {
  json::writer w;
  w.begin_object();
  w.key("method");
  w.value("org.varlink.certification." + std::string{method});
  if (params) {
    w.key("parameters");
    encode(w, *params);
  }
  if (more) {
    w.key("more");
    w.value(true);
  }
  if (oneway) {
    w.key("oneway");
    w.value(true);
  }
  w.end_object();
  return {w.take()};
}

std::map<std::string, std::string> foo_bar() {
  return {{"foo", "Foo"}, {"bar", "Bar"}};
}

std::vector<std::string> more_replies() {
  std::vector<std::string> v;
  for (int i = 1; i <= 10; ++i)
    v.push_back("Reply number " + std::to_string(i));
  return v;
}

} // namespace

template <class In>
bool certification::check(const rpc::call_ptr& c, const In& got,
                          const In& want, bool more, bool oneway) {
  expire();
  auto it = clients_.find(got.client_id);
  if (it == clients_.end()) {
    c->fail(cert::ClientIdError{});
    return false;
  }
  auto name = c->method().name;
  auto& f = c->flags();
  if (it->second.next != name) {
    c->fail(cert::CertificationError{
        describe<In>(it->second.next, nullptr, false, false),
        describe(name, &got, f.more, f.oneway)});
    return false;
  }
  // Exact: the values, and no parameter more or less than expected.
  json::writer w;
  encode(w, want);
  auto sent = c->raw_parameters().empty() ? std::string{"{}"}
                                          : c->raw_parameters();
  bool exact = json::raw{sent} == json::raw{w.take()};
  if (!(got == want) || !exact || f.more != more || f.oneway != oneway ||
      f.upgrade) {
    // What came, as it came: unknown parameters included.
    auto came = describe<In>(name, nullptr, f.more, f.oneway);
    came.text.insert(came.text.size() - 1, ",\"parameters\":" + sent);
    c->fail(cert::CertificationError{describe(name, &want, more, oneway),
                                     std::move(came)});
    return false;
  }
  return true;
}

void certification::advance(const std::string& id, std::string next) {
  clients_[id].next = std::move(next);
}

void certification::expire() {
  auto now = std::chrono::steady_clock::now();
  std::erase_if(clients_, [&](auto& kv) {
    return now - kv.second.started > client_lifetime;
  });
}

cert::MyType certification::my_type() {
  cert::MyType t;
  t.object.text = R"({"method":"org.varlink.certification.Test09",)"
                  R"("parameters":{"map":{"foo":"Foo","bar":"Bar"}}})";
  t.enum_ = cert::MyType_enum::two;
  t.struct_ = {1, "2"};
  t.array = {"one", "two", "three"};
  t.dictionary = foo_bar();
  t.stringset = {"one", "two", "three"};
  using foo = cert::Interface_foo;
  t.interface_.foo.emplace();
  auto& list = *t.interface_.foo;
  list.emplace_back();
  list.emplace_back(std::map<std::string, foo>{{"foo", foo::foo},
                                               {"bar", foo::bar}});
  list.emplace_back();
  list.emplace_back(std::map<std::string, foo>{{"one", foo::foo},
                                               {"two", foo::bar}});
  t.interface_.anon = {true, false};
  return t;
}

void certification::Start(const rpc::call_ptr& c, const cert::Start_in&) {
  expire();
  auto& f = c->flags();
  if (f.more || f.oneway || f.upgrade) {
    cert::Start_in none;
    c->fail(cert::CertificationError{
        describe("Start", &none, false, false),
        describe("Start", &none, f.more, f.oneway)});
    return;
  }
  if (clients_.size() >= max_clients) {
    // Forget the oldest client to make room.
    auto oldest = clients_.begin();
    for (auto it = clients_.begin(); it != clients_.end(); ++it)
      if (it->second.started < oldest->second.started)
        oldest = it;
    clients_.erase(oldest);
  }
  auto id = new_client_id();
  clients_[id] = {"Test01", std::chrono::steady_clock::now()};
  c->reply(cert::Start_out{id});
}

void certification::Test01(const rpc::call_ptr& c,
                           const cert::Test01_in& in) {
  if (!check(c, in, {in.client_id}))
    return;
  advance(in.client_id, "Test02");
  c->reply(cert::Test01_out{true});
}

void certification::Test02(const rpc::call_ptr& c,
                           const cert::Test02_in& in) {
  if (!check(c, in, {in.client_id, true}))
    return;
  advance(in.client_id, "Test03");
  c->reply(cert::Test02_out{1});
}

void certification::Test03(const rpc::call_ptr& c,
                           const cert::Test03_in& in) {
  if (!check(c, in, {in.client_id, 1}))
    return;
  advance(in.client_id, "Test04");
  c->reply(cert::Test03_out{1.0});
}

void certification::Test04(const rpc::call_ptr& c,
                           const cert::Test04_in& in) {
  if (!check(c, in, {in.client_id, 1.0}))
    return;
  advance(in.client_id, "Test05");
  c->reply(cert::Test04_out{"ping"});
}

void certification::Test05(const rpc::call_ptr& c,
                           const cert::Test05_in& in) {
  if (!check(c, in, {in.client_id, "ping"}))
    return;
  advance(in.client_id, "Test06");
  c->reply(cert::Test05_out{false, 2, std::numbers::pi, a_lot});
}

void certification::Test06(const rpc::call_ptr& c,
                           const cert::Test06_in& in) {
  if (!check(c, in, {in.client_id, false, 2, std::numbers::pi, a_lot}))
    return;
  advance(in.client_id, "Test07");
  c->reply(cert::Test06_out{{false, 2, std::numbers::pi, a_lot}});
}

void certification::Test07(const rpc::call_ptr& c,
                           const cert::Test07_in& in) {
  if (!check(c, in, {in.client_id, {false, 2, std::numbers::pi, a_lot}}))
    return;
  advance(in.client_id, "Test08");
  c->reply(cert::Test07_out{foo_bar()});
}

void certification::Test08(const rpc::call_ptr& c,
                           const cert::Test08_in& in) {
  if (!check(c, in, {in.client_id, foo_bar()}))
    return;
  advance(in.client_id, "Test09");
  c->reply(cert::Test08_out{{"one", "two", "three"}});
}

void certification::Test09(const rpc::call_ptr& c,
                           const cert::Test09_in& in) {
  if (!check(c, in, {in.client_id, {"one", "two", "three"}}))
    return;
  advance(in.client_id, "Test10");
  c->reply(cert::Test09_out{my_type()});
}

void certification::Test10(const rpc::call_ptr& c,
                           const cert::Test10_in& in) {
  if (!check(c, in, {in.client_id, my_type()}, true))
    return;
  advance(in.client_id, "Test11");
  auto replies = more_replies();
  for (size_t i = 0; i < replies.size(); ++i)
    c->reply(cert::Test10_out{replies[i]}, i + 1 < replies.size());
}

void certification::Test11(const rpc::call_ptr& c,
                           const cert::Test11_in& in) {
  if (!check(c, in, {in.client_id, more_replies()}, false, true))
    return;
  advance(in.client_id, "End");
  c->reply(cert::Test11_out{});
}

void certification::End(const rpc::call_ptr& c, const cert::End_in& in) {
  if (!check(c, in, {in.client_id}))
    return;
  clients_.erase(in.client_id);
  c->reply(cert::End_out{true});
}

} // namespace berth::actors
