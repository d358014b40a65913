// JSON encoding for varlink replies, and the decoding helpers that the
// generated interface code uses on top of simdjson's DOM.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace berth::json {

/// A foreign JSON value (varlink `object`), kept as its serialized text.
struct raw {
  std::string text = "{}";
  /// Semantic equality: key order and number spelling do not matter.
  bool operator==(const raw& other) const;
};

/// Appends JSON to a string; the caller places commas through the helpers.
class writer {
public:
  std::string& out() { return out_; }
  std::string take() { return std::move(out_); }

  void begin_object() { out_ += '{'; first_ = true; }
  void end_object() { out_ += '}'; first_ = false; }
  void begin_array() { out_ += '['; first_ = true; }
  void end_array() { out_ += ']'; first_ = false; }
  /// Writes `"name":`, preceded by a comma unless first in its container.
  void key(std::string_view name);
  /// Separates array elements.
  void element() { if (!first_) out_ += ','; first_ = false; }

  void value(std::string_view s) { string(s); first_ = false; }
  void value(const std::string& s) { value(std::string_view{s}); }
  void value(const char* s) { value(std::string_view{s}); }
  void value(bool b) { out_ += b ? "true" : "false"; first_ = false; }
  void value(int64_t i);
  void value(double d);
  void value(const raw& r) { out_ += r.text; first_ = false; }
  void null() { out_ += "null"; first_ = false; }

private:
  void string(std::string_view s);
  std::string out_;
  bool first_ = true;
};

// Encoders for the varlink type shapes; generated code adds its structs.
inline void encode(writer& w, bool b) { w.value(b); }
inline void encode(writer& w, int64_t i) { w.value(i); }
inline void encode(writer& w, double d) { w.value(d); }
inline void encode(writer& w, const std::string& s) { w.value(s); }
inline void encode(writer& w, const raw& r) { w.value(r); }
/// A set is an object whose values are empty objects.
void encode(writer& w, const std::set<std::string>& s);

template <class T>
void encode(writer& w, const std::vector<T>& v) {
  w.begin_array();
  for (const auto& x : v) {
    w.element();
    encode(w, x);
  }
  w.end_array();
}

template <class T>
void encode(writer& w, const std::map<std::string, T>& m) {
  w.begin_object();
  for (const auto& [k, x] : m) {
    w.key(k);
    encode(w, x);
  }
  w.end_object();
}

template <class T>
void encode(writer& w, const std::optional<T>& v) {
  if (v)
    encode(w, *v);
  else
    w.null();
}

/// Parses `text` and reports whether it is one JSON object, nothing else.
bool is_object_text(std::string_view text);

/// Rewrites every number in the JSON text `text` that neither a 64-bit
/// integer nor a finite double can hold as a string literal.
std::string tame_numbers(std::string_view text);

/// Renders a JSON string literal (with quotes) for `s`.
std::string quote(std::string_view s);

} // namespace berth::json
