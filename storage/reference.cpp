#include "storage/reference.hpp"

#include <algorithm>

namespace berth::storage {

namespace {

constexpr std::string_view transport_prefix = "docker://";
constexpr size_t max_name_length = 255;

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool is_alnum(char c) {
  return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

bool is_word(char c) {
  return is_alnum(c) || c == '_';
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
         (c >= 'A' && c <= 'F');
}

bool has_upper(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return c >= 'A' && c <= 'Z'; });
}

// `[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*`
bool valid_path_component(std::string_view s) {
  size_t i = 0;
  auto alnum_run = [&] {
    size_t start = i;
    while (i < s.size() && is_lower_alnum(s[i]))
      ++i;
    return i > start;
  };
  if (!alnum_run())
    return false;
  while (i < s.size()) {
    if (s[i] == '.') {
      ++i;
    } else if (s[i] == '_') {
      i += i + 1 < s.size() && s[i + 1] == '_' ? 2 : 1;
    } else if (s[i] == '-') {
      while (i < s.size() && s[i] == '-')
        ++i;
    } else {
      return false;
    }
    if (!alnum_run())
      return false;
  }
  return true;
}

// `[a-zA-Z0-9]([a-zA-Z0-9-]*[a-zA-Z0-9])?`
bool valid_domain_component(std::string_view s) {
  if (s.empty() || !is_alnum(s.front()) || !is_alnum(s.back()))
    return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_alnum(c) || c == '-'; });
}

bool valid_port(std::string_view s) {
  return !s.empty() && s.size() <= 5 &&
         std::all_of(s.begin(), s.end(),
                     [](char c) { return c >= '0' && c <= '9'; });
}

// host[:port], where host is dot-separated labels or a bracketed IPv6
// address.
bool valid_registry(std::string_view s) {
  std::string_view host = s;
  if (!s.empty() && s.front() == '[') {
    size_t close = s.find(']');
    if (close == std::string_view::npos || close == 1)
      return false;
    std::string_view addr = s.substr(1, close - 1);
    if (!std::all_of(addr.begin(), addr.end(),
                     [](char c) { return is_hex(c) || c == ':'; }))
      return false;
    std::string_view rest = s.substr(close + 1);
    if (rest.empty())
      return true;
    return rest.front() == ':' && valid_port(rest.substr(1));
  }
  if (size_t colon = s.find(':'); colon != std::string_view::npos) {
    if (!valid_port(s.substr(colon + 1)))
      return false;
    host = s.substr(0, colon);
  }
  while (true) {
    size_t dot = host.find('.');
    if (!valid_domain_component(host.substr(0, dot)))
      return false;
    if (dot == std::string_view::npos)
      return true;
    host.remove_prefix(dot + 1);
  }
}

bool is_identifier(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Why `repo` is not a valid repository, for the error text.
std::string repository_problem(std::string_view repo) {
  if (has_upper(repo))
    return "repository name must be lowercase";
  size_t start = 0;
  while (true) {
    size_t slash = repo.find('/', start);
    std::string_view part = repo.substr(start, slash - start);
    if (part.empty())
      return "repository \"" + std::string(repo) +
             "\" has an empty path component";
    if (!valid_path_component(part))
      return "repository path component \"" + std::string(part) +
             "\" must be lowercase letters and digits separated by "
             "'.', '_', '__' or '-'";
    if (slash == std::string_view::npos)
      return {};
    start = slash + 1;
  }
}

std::string digest_problem(std::string_view d) {
  size_t colon = d.find(':');
  if (colon == std::string_view::npos || colon == 0)
    return "invalid checksum digest format \"" + std::string(d) + "\"";
  if (d.substr(0, colon) != "sha256")
    return "unsupported digest algorithm \"" + std::string(d.substr(0, colon)) +
           "\"";
  if (d.size() - colon - 1 != 64)
    return "invalid checksum digest length in \"" + std::string(d) + "\"";
  return "invalid checksum digest format \"" + std::string(d) +
         "\": expected 64 lowercase hex digits";
}

// Splits a name into registry and remainder the way docker and
// containers/image do: the first component is a registry only when it
// looks like a host.
void split_registry(std::string_view name, std::string_view& registry,
                    std::string_view& rest) {
  size_t slash = name.find('/');
  if (slash != std::string_view::npos) {
    std::string_view first = name.substr(0, slash);
    if (first.find_first_of(".:") != std::string_view::npos ||
        first == "localhost" || has_upper(first)) {
      registry = first;
      rest = name.substr(slash + 1);
      return;
    }
  }
  registry = {};
  rest = name;
}

std::string normalised_registry(std::string_view registry) {
  if (registry == "index.docker.io")
    return std::string(default_registry);
  return std::string(registry);
}

std::string repository_under(std::string_view registry, std::string_view path) {
  if (registry == default_registry && path.find('/') == std::string_view::npos)
    return "library/" + std::string(path);
  return std::string(path);
}

} // namespace

bool valid_tag(std::string_view s) {
  if (s.empty() || s.size() > 128 || !is_word(s.front()))
    return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_word(c) || c == '.' || c == '-'; });
}

bool valid_repository(std::string_view s) {
  return !s.empty() && repository_problem(s).empty();
}

bool image_reference::parse(std::string_view text, image_reference& out,
                            std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "parsing reference \"" + std::string(text) +
          "\": invalid reference format";
    if (!why.empty())
      err += ": " + why;
    return false;
  };
  std::string_view s = text;
  if (s.substr(0, transport_prefix.size()) == transport_prefix)
    s.remove_prefix(transport_prefix.size());
  if (s.empty())
    return fail("repository name must have at least one component");
  if (is_identifier(s))
    return fail("cannot specify 64-byte hexadecimal strings as a name");

  // name[:tag][@digest]
  image_reference r;
  std::string_view name = s;
  if (size_t at = s.find('@'); at != std::string_view::npos) {
    std::string_view d = s.substr(at + 1);
    if (!valid_digest(d))
      return fail(digest_problem(d));
    r.digest = std::string(d);
    name = s.substr(0, at);
  }
  size_t colon = name.rfind(':');
  size_t slash = name.rfind('/');
  if (colon != std::string_view::npos &&
      (slash == std::string_view::npos || colon > slash)) {
    std::string_view t = name.substr(colon + 1);
    if (!valid_tag(t))
      return fail("tag \"" + std::string(t) +
                  "\" must match [A-Za-z0-9_][A-Za-z0-9_.-]{0,127}");
    r.tag = std::string(t);
    name = name.substr(0, colon);
  }
  if (name.empty())
    return fail("repository name must have at least one component");
  if (name.size() > max_name_length)
    return fail("repository name must not be more than 255 characters");

  // [registry/]path
  std::string_view registry, path;
  split_registry(name, registry, path);
  if (!registry.empty() && !valid_registry(registry))
    return fail("registry \"" + std::string(registry) +
                "\" is not a valid "
                "host[:port]");
  if (std::string why = repository_problem(path); !why.empty())
    return fail(why);
  r.has_registry_part = !registry.empty();
  r.registry = r.has_registry_part ? normalised_registry(registry)
                                   : std::string(default_registry);
  r.path = std::string(path);
  r.repository = repository_under(r.registry, path);
  if (r.tag.empty() && r.digest.empty())
    r.tag = "latest";
  out = std::move(r);
  return true;
}

std::string image_reference::name() const {
  return registry + "/" + repository;
}

std::string image_reference::str() const {
  std::string s = name();
  if (!tag.empty())
    s += ":" + tag;
  if (!digest.empty())
    s += "@" + digest;
  return s;
}

image_reference
image_reference::qualified(std::string_view search_registry) const {
  if (has_registry_part)
    return *this;
  image_reference r = *this;
  r.registry = normalised_registry(search_registry);
  r.repository = repository_under(r.registry, path);
  r.has_registry_part = true;
  return r;
}

} // namespace berth::storage
