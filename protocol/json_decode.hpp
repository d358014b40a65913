// Decoding of varlink values from simdjson's DOM into typed structs. Only
// source files include this: simdjson's header is large.
#pragma once

#include "protocol/json.hpp"

#include <simdjson.h>

#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

namespace berth::json {

using element = simdjson::dom::element;

/// The dotted path of the field being decoded, e.g. `create.resources.cpus`.
class path {
public:
  /// `name` must outlive its place on the path (member names do: they
  /// point into the parsed document or the generated code).
  void push(std::string_view name) { parts_.push_back({name, 0}); }
  void push_index(size_t i) { parts_.push_back({{}, i}); }
  void pop() { parts_.pop_back(); }
  std::string str() const;

private:
  struct part {
    std::string_view name; ///< empty for an array index
    size_t index;
  };
  std::vector<part> parts_;
};

/// Records the first failure; decoding stops there.
struct decode_error {
  std::string field;
};

bool decode(const element& e, bool& out, path& p, decode_error& err);
bool decode(const element& e, int64_t& out, path& p, decode_error& err);
bool decode(const element& e, double& out, path& p, decode_error& err);
bool decode(const element& e, std::string& out, path& p, decode_error& err);
bool decode(const element& e, raw& out, path& p, decode_error& err);
bool decode(const element& e, std::set<std::string>& out, path& p,
            decode_error& err);
bool fail(path& p, decode_error& err);

template <class T>
bool decode(const element& e, std::vector<T>& out, path& p,
            decode_error& err) {
  out.clear();
  if (e.is_null())
    return true;
  simdjson::dom::array a;
  if (e.get(a) != simdjson::SUCCESS)
    return fail(p, err);
  out.reserve(a.size());
  size_t i = 0;
  for (element item : a) {
    p.push_index(i++);
    if (!decode(item, out.emplace_back(), p, err))
      return false;
    p.pop();
  }
  return true;
}

template <class T>
bool decode(const element& e, std::map<std::string, T>& out, path& p,
            decode_error& err) {
  out.clear();
  if (e.is_null())
    return true;
  simdjson::dom::object o;
  if (e.get(o) != simdjson::SUCCESS)
    return fail(p, err);
  for (auto [k, v] : o) {
    p.push(k);
    if (!decode(v, out[std::string{k}], p, err))
      return false;
    p.pop();
  }
  return true;
}

template <class T>
bool decode(const element& e, std::optional<T>& out, path& p,
            decode_error& err) {
  if (e.is_null()) {
    out.reset();
    return true;
  }
  return decode(e, out.emplace(), p, err);
}

/// Deep equality of two parsed values; numbers compare by value.
bool equal(const element& a, const element& b);

} // namespace berth::json
