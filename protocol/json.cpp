#include "protocol/json.hpp"
#include "protocol/json_decode.hpp"

#include <charconv>
#include <cmath>
#include <limits>

namespace berth::json {

void writer::key(std::string_view name) {
  if (!first_)
    out_ += ',';
  string(name);
  out_ += ':';
  first_ = true;
}

void writer::value(int64_t i) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, i);
  out_.append(buf, r.ptr);
  first_ = false;
}

void writer::value(double d) {
  first_ = false;
  if (!std::isfinite(d)) {
    out_ += '0';
    return;
  }
  char buf[32];
  auto r = std::to_chars(buf, buf + sizeof buf, d);
  std::string_view s{buf, size_t(r.ptr - buf)};
  out_ += s;
  // Keep floats recognisable as floats for typed clients.
  if (s.find_first_of(".e") == std::string_view::npos)
    out_ += ".0";
}

void writer::string(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out_.reserve(out_.size() + s.size() + 2);
  out_ += '"';
  size_t run = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\')
      continue;
    out_.append(s.data() + run, i - run);
    run = i + 1;
    switch (c) {
      case '"': out_ += "\\\""; break;
      case '\\': out_ += "\\\\"; break;
      case '\n': out_ += "\\n"; break;
      case '\r': out_ += "\\r"; break;
      case '\t': out_ += "\\t"; break;
      default:
        out_ += "\\u00";
        out_ += hex[c >> 4];
        out_ += hex[c & 15];
    }
  }
  out_.append(s.data() + run, s.size() - run);
  out_ += '"';
}

void encode(writer& w, const std::set<std::string>& s) {
  w.begin_object();
  for (auto& k : s) {
    w.key(k);
    w.begin_object();
    w.end_object();
  }
  w.end_object();
}

std::string quote(std::string_view s) {
  writer w;
  w.value(s);
  return w.take();
}

bool is_object_text(std::string_view text) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded{text};
  auto doc = parser.parse(padded);
  return doc.error() == simdjson::SUCCESS && doc.value().is_object();
}

bool raw::operator==(const raw& other) const {
  if (text == other.text)
    return true;
  simdjson::dom::parser pa, pb;
  simdjson::padded_string ta{text}, tb{other.text};
  auto a = pa.parse(ta);
  auto b = pb.parse(tb);
  if (a.error() || b.error())
    return false;
  return equal(a.value(), b.value());
}

// --- decoding ---------------------------------------------------------------

void path::push_index(size_t i) {
  indices_.push_back('[' + std::to_string(i) + ']');
  parts_.push_back(indices_.back());
}

std::string path::str() const {
  std::string s;
  for (auto part : parts_) {
    if (!s.empty() && part.front() != '[')
      s += '.';
    s += part;
  }
  return s;
}

bool fail(path& p, decode_error& err) {
  err.field = p.str();
  return false;
}

bool decode(const element& e, bool& out, path& p, decode_error& err) {
  if (e.is_null()) {
    out = false;
    return true;
  }
  return e.get(out) == simdjson::SUCCESS || fail(p, err);
}

bool decode(const element& e, int64_t& out, path& p, decode_error& err) {
  if (e.is_null()) {
    out = 0;
    return true;
  }
  // simdjson refuses uint64 values above INT64_MAX here: out of range.
  return e.get(out) == simdjson::SUCCESS || fail(p, err);
}

bool decode(const element& e, double& out, path& p, decode_error& err) {
  if (e.is_null()) {
    out = 0;
    return true;
  }
  if (!e.is_number())
    return fail(p, err);
  return e.get(out) == simdjson::SUCCESS || fail(p, err);
}

bool decode(const element& e, std::string& out, path& p, decode_error& err) {
  if (e.is_null()) {
    out.clear();
    return true;
  }
  std::string_view s;
  if (e.get(s) != simdjson::SUCCESS)
    return fail(p, err);
  out.assign(s);
  return true;
}

bool decode(const element& e, raw& out, path& p, decode_error& err) {
  if (e.is_null()) {
    out.text = "{}";
    return true;
  }
  if (!e.is_object())
    return fail(p, err);
  out.text = simdjson::minify(e);
  return true;
}

bool decode(const element& e, std::set<std::string>& out, path& p,
            decode_error& err) {
  out.clear();
  if (e.is_null())
    return true;
  simdjson::dom::object o;
  if (e.get(o) != simdjson::SUCCESS)
    return fail(p, err);
  for (auto [k, v] : o)
    out.emplace(k);
  return true;
}

bool equal(const element& a, const element& b) {
  using simdjson::dom::element_type;
  if (a.is_number() && b.is_number())
    return double(a) == double(b);
  if (a.type() != b.type())
    return false;
  switch (a.type()) {
    case element_type::ARRAY: {
      auto x = simdjson::dom::array(a), y = simdjson::dom::array(b);
      if (x.size() != y.size())
        return false;
      for (size_t i = 0; i < x.size(); ++i)
        if (!equal(x.at(i).value(), y.at(i).value()))
          return false;
      return true;
    }
    case element_type::OBJECT: {
      auto x = simdjson::dom::object(a), y = simdjson::dom::object(b);
      if (x.size() != y.size())
        return false;
      for (auto [k, v] : x) {
        auto w = y.at_key(k);
        if (w.error() || !equal(v, w.value()))
          return false;
      }
      return true;
    }
    case element_type::STRING:
      return std::string_view(a) == std::string_view(b);
    case element_type::BOOL:
      return bool(a) == bool(b);
    default:
      return true; // null
  }
}

} // namespace berth::json
