#include "protocol/json.hpp"
#include "protocol/json_decode.hpp"

#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
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

namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0 if there is
// none (stray continuation byte, overlong form, surrogate, beyond U+10FFFF,
// cut short).
size_t utf8_sequence(std::string_view s, size_t i) {
  auto b = [&](size_t k) { return static_cast<unsigned char>(s[i + k]); };
  auto cont = [&](size_t k) { return i + k < s.size() && (b(k) & 0xc0) == 0x80; };
  unsigned char c = b(0);
  if (c >= 0xc2 && c <= 0xdf)
    return cont(1) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (!cont(1) || !cont(2))
      return 0;
    if ((c == 0xe0 && b(1) < 0xa0) || (c == 0xed && b(1) >= 0xa0))
      return 0;
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (!cont(1) || !cont(2) || !cont(3))
      return 0;
    if ((c == 0xf0 && b(1) < 0x90) || (c == 0xf4 && b(1) >= 0x90))
      return 0;
    return 4;
  }
  return 0;
}

} // namespace

// Escapes what JSON requires; bytes that are not UTF-8 become U+FFFD, so
// the output is always valid JSON whatever the input (file names, logs).
void writer::string(std::string_view s) {
  static constexpr char hex[] = "0123456789abcdef";
  out_.reserve(out_.size() + s.size() + 2);
  out_ += '"';
  size_t run = 0;
  for (size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\' && c < 0x80) {
      ++i;
      continue;
    }
    if (c >= 0x80) {
      if (size_t n = utf8_sequence(s, i)) {
        i += n;
        continue;
      }
    }
    out_.append(s.data() + run, i - run);
    switch (c) {
      case '"': out_ += "\\\""; break;
      case '\\': out_ += "\\\\"; break;
      case '\n': out_ += "\\n"; break;
      case '\r': out_ += "\\r"; break;
      case '\t': out_ += "\\t"; break;
      default:
        if (c >= 0x80) {
          out_ += "\\ufffd";
        } else {
          out_ += "\\u00";
          out_ += hex[c >> 4];
          out_ += hex[c & 15];
        }
    }
    run = ++i;
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

namespace {

// A JSON number: -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
bool is_json_number(std::string_view n) {
  size_t i = 0;
  auto digits = [&] {
    size_t start = i;
    while (i < n.size() && n[i] >= '0' && n[i] <= '9')
      ++i;
    return i > start;
  };
  if (i < n.size() && n[i] == '-')
    ++i;
  if (i < n.size() && n[i] == '0')
    ++i;
  else if (!digits())
    return false;
  if (i < n.size() && n[i] == '.' && (++i, !digits()))
    return false;
  if (i < n.size() && (n[i] == 'e' || n[i] == 'E')) {
    ++i;
    if (i < n.size() && (n[i] == '+' || n[i] == '-'))
      ++i;
    if (!digits())
      return false;
  }
  return i == n.size();
}

bool number_fits(std::string_view num) {
  // Not a number at all: left alone, so the message stays malformed.
  if (!is_json_number(num))
    return true;
  if (num.find_first_of(".eE") == std::string_view::npos) {
    int64_t i;
    uint64_t u;
    auto end = num.data() + num.size();
    return std::from_chars(num.data(), end, i).ec == std::errc{} ||
           std::from_chars(num.data(), end, u).ec == std::errc{};
  }
  std::string copy{num};
  errno = 0;
  double d = std::strtod(copy.c_str(), nullptr);
  return errno != ERANGE && std::isfinite(d);
}

} // namespace

std::string tame_numbers(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 16);
  bool in_string = false;
  for (size_t i = 0; i < text.size();) {
    char c = text[i];
    if (in_string) {
      out += c;
      if (c == '\\' && i + 1 < text.size())
        out += text[++i];
      else if (c == '"')
        in_string = false;
      ++i;
      continue;
    }
    if (c == '"') {
      in_string = true;
      out += c;
      ++i;
      continue;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      size_t j = i + 1;
      while (j < text.size() && std::strchr("0123456789.eE+-", text[j]))
        ++j;
      auto num = text.substr(i, j - i);
      if (number_fits(num))
        out += num;
      else
        out += quote(num);
      i = j;
      continue;
    }
    out += c;
    ++i;
  }
  return out;
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

std::string path::str() const {
  std::string s;
  for (auto& p : parts_) {
    if (p.name.empty()) {
      s += '[' + std::to_string(p.index) + ']';
      continue;
    }
    if (!s.empty())
      s += '.';
    s += p.name;
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
  if (a.is_number() && b.is_number()) {
    // Integers compare exactly; doubles would merge neighbours past 2^53.
    int64_t x, y;
    uint64_t ux, uy;
    if (a.get(x) == simdjson::SUCCESS && b.get(y) == simdjson::SUCCESS)
      return x == y;
    if (a.get(ux) == simdjson::SUCCESS && b.get(uy) == simdjson::SUCCESS)
      return ux == uy;
    return double(a) == double(b);
  }
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
