#include "storage/registries.hpp"

#include <cctype>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace berth::storage {

namespace {

// A cursor over the TOML subset registries.conf uses: tables, arrays of
// tables, strings, booleans and arrays of strings.
struct toml_cursor {
  const std::string& s;
  size_t i = 0;
  int line = 1;

  void skip_space(bool newlines) {
    while (i < s.size()) {
      char c = s[i];
      if (c == '#') {
        while (i < s.size() && s[i] != '\n')
          ++i;
      } else if (c == ' ' || c == '\t' || c == '\r' ||
                 (newlines && c == '\n')) {
        line += c == '\n';
        ++i;
      } else {
        break;
      }
    }
  }

  bool string(std::string& out) {
    if (i >= s.size() || (s[i] != '"' && s[i] != '\''))
      return false;
    char q = s[i++];
    out.clear();
    while (i < s.size() && s[i] != q && s[i] != '\n') {
      if (q == '"' && s[i] == '\\' && i + 1 < s.size())
        ++i;
      out += s[i++];
    }
    if (i >= s.size() || s[i] != q)
      return false;
    ++i;
    return true;
  }

  bool key(std::string& out) {
    if (i < s.size() && (s[i] == '"' || s[i] == '\''))
      return string(out);
    size_t start = i;
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) ||
                            s[i] == '-' || s[i] == '_' || s[i] == '.'))
      ++i;
    out = s.substr(start, i - start);
    return !out.empty();
  }
};

struct value {
  enum { text, boolean, list, other } kind = other;
  std::string str;
  bool b = false;
  std::vector<std::string> items;
};

bool parse_value(toml_cursor& c, value& v) {
  if (c.i >= c.s.size())
    return false;
  char ch = c.s[c.i];
  if (ch == '"' || ch == '\'') {
    v.kind = value::text;
    return c.string(v.str);
  }
  if (ch == '[') {
    v.kind = value::list;
    ++c.i;
    for (;;) {
      c.skip_space(true);
      if (c.i < c.s.size() && c.s[c.i] == ']') {
        ++c.i;
        return true;
      }
      std::string item;
      if (c.i < c.s.size() && (c.s[c.i] == '"' || c.s[c.i] == '\'')) {
        if (!c.string(item))
          return false;
        v.items.push_back(item);
      } else {
        // Numbers and booleans in a list of a key we do not use.
        while (c.i < c.s.size() && c.s[c.i] != ',' && c.s[c.i] != ']' &&
               c.s[c.i] != '\n')
          ++c.i;
      }
      c.skip_space(true);
      if (c.i < c.s.size() && c.s[c.i] == ',')
        ++c.i;
    }
  }
  if (c.s.compare(c.i, 4, "true") == 0 || c.s.compare(c.i, 5, "false") == 0) {
    v.kind = value::boolean;
    v.b = c.s[c.i] == 't';
    c.i += v.b ? 4 : 5;
    return true;
  }
  // Numbers and other scalars: skip to the end of the line.
  while (c.i < c.s.size() && c.s[c.i] != '\n' && c.s[c.i] != '#')
    ++c.i;
  return true;
}

} // namespace

std::vector<std::string> registries_conf::insecure() const {
  std::vector<std::string> out;
  for (auto& r : registries)
    if (r.insecure)
      out.push_back(r.location);
  return out;
}

bool parse_registries_conf(const std::string& text, registries_conf& out,
                           std::string& err) {
  out = {};
  toml_cursor c{text};
  std::string table;
  auto fail = [&](const char* what) {
    err = "line " + std::to_string(c.line) + ": " + what;
    return false;
  };
  for (;;) {
    c.skip_space(true);
    if (c.i >= text.size())
      return true;
    if (text[c.i] == '[') {
      bool array = text.compare(c.i, 2, "[[") == 0;
      c.i += array ? 2 : 1;
      c.skip_space(false);
      if (!c.key(table))
        return fail("expected a table name");
      c.skip_space(false);
      if (text.compare(c.i, array ? 2 : 1, array ? "]]" : "]") != 0)
        return fail("unterminated table header");
      c.i += array ? 2 : 1;
      if (array && table == "registry")
        out.registries.emplace_back();
      continue;
    }
    std::string key;
    if (!c.key(key))
      return fail("expected a key");
    c.skip_space(false);
    if (c.i >= text.size() || text[c.i] != '=')
      return fail("expected '='");
    ++c.i;
    c.skip_space(false);
    value v;
    if (!parse_value(c, v))
      return fail("malformed value");
    if (table.empty() && key == "unqualified-search-registries" &&
        v.kind == value::list) {
      out.search = v.items;
    } else if (table == "registry" && !out.registries.empty()) {
      auto& r = out.registries.back();
      if (key == "location")
        r.location = v.str;
      else if (key == "prefix")
        r.prefix = v.str;
      else if (key == "insecure")
        r.insecure = v.b;
      else if (key == "blocked")
        r.blocked = v.b;
    } else if (key == "registries" && v.kind == value::list) {
      // Version 1: [registries.search] and [registries.insecure].
      if (table == "registries.search") {
        out.search.insert(out.search.end(), v.items.begin(), v.items.end());
      } else if (table == "registries.insecure") {
        for (auto& loc : v.items)
          out.registries.push_back({loc, loc, true, false});
      }
    }
  }
}

bool load_registries_conf(const std::string& path, registries_conf& out,
                          std::string& err) {
  std::ifstream in{path};
  if (!in) {
    out = {};
    if (errno == ENOENT)
      return true;
    err = "reading " + path + ": " + std::strerror(errno);
    return false;
  }
  std::stringstream text;
  text << in.rdbuf();
  if (!parse_registries_conf(text.str(), out, err)) {
    err = path + ": " + err;
    return false;
  }
  return true;
}

} // namespace berth::storage
