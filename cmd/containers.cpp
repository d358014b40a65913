// berth's container verbs: run, create, start, stop, kill, restart, pause,
// unpause, wait, rm, ps, inspect, mount, umount, diff, export.
#include "cmd/cli.hpp"
#include "protocol/gen/io_podman.hpp"
#include "protocol/json_decode.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>
#include <tuple>

namespace berth::cli {

using simdjson::dom::element;

// ---------------------------------------------------------------------------
// Replies and errors, shared with the other verbs

parsed_reply::parsed_reply(const std::string& json) : text(json) {
  if (parser.parse(text).get(doc) != simdjson::SUCCESS) {
    std::cerr << "berth: malformed reply\n";
    std::exit(failure);
  }
}

std::string string_at(element e, std::string_view key) {
  std::string_view v;
  return e[key].get(v) == simdjson::SUCCESS ? std::string{v} : std::string{};
}

std::string name_param(const std::string& name) {
  return "{\"name\":" + json::quote(name) + "}";
}

std::string reason_of(const varlink::reply& r) {
  simdjson::dom::parser parser;
  simdjson::padded_string text{r.parameters};
  element doc;
  if (parser.parse(text).get(doc) == simdjson::SUCCESS) {
    if (auto reason = string_at(doc, "reason"); !reason.empty())
      return reason;
    if (r.error == "org.varlink.service.MethodNotImplemented")
      return string_at(doc, "method") + " is not implemented by the server";
    if (r.error == "io.podman.ContainerNotFound")
      return "no container with name or ID " + string_at(doc, "id") + " found";
  }
  return r.error + " " + r.parameters;
}

int report(const varlink::reply& r, int code) {
  std::cerr << "Error: " << reason_of(r) << '\n';
  return code;
}

void run_usage_error(const std::string& msg) {
  std::cerr << "berth: " << msg << "\nTry 'berth help'.\n";
  std::exit(engine_failed);
}

int start_failure_code(const varlink::reply& r) {
  if (r.error == "io.podman.ContainerNotFound")
    return engine_failed;
  std::string text = reason_of(r);
  std::transform(text.begin(), text.end(), text.begin(),
                 [](unsigned char c) { return std::tolower(c); });
  auto has = [&](const char* s) { return text.find(s) != std::string::npos; };
  if (has("permission denied") || has("is a directory") ||
      has("not executable"))
    return cannot_invoke;
  if (has("no such file or directory") || has("not found"))
    return not_found;
  return engine_failed;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width(rows.empty() ? 0 : rows[0].size());
  for (auto& row : rows)
    for (size_t i = 0; i < row.size() && i < width.size(); ++i)
      width[i] = std::max(width[i], row[i].size());
  for (auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size())
        line += std::string((i < width.size() ? width[i] : row[i].size()) -
                                row[i].size() + 3,
                            ' ');
    }
    std::cout << line << '\n';
  }
}

namespace {

// What WaitContainer's `interval` carries: a poll hint in nanoseconds, the
// value podman-remote sends (250 ms).
constexpr int64_t wait_interval_ns = 250'000'000;

// Stop and restart grace period when -t is not given, as podman's.
constexpr int64_t default_stop_timeout = 10;

// The `container` string of a reply (most container calls answer one).
std::string container_of(const varlink::reply& r) {
  return string_at(parsed_reply{r.parameters}.doc, "container");
}

// ---------------------------------------------------------------------------
// Values of options

std::optional<int64_t> to_int(const std::string& v) {
  if (v.empty())
    return std::nullopt;
  errno = 0;
  char* end = nullptr;
  long long n = std::strtoll(v.c_str(), &end, 10);
  if (*end || errno == ERANGE)
    return std::nullopt;
  return n;
}

// A byte count like 512, 64k, 1.5g, 100MB or 2GiB (units are powers of
// 1024, as podman's).
std::optional<int64_t> to_size(const std::string& v) {
  size_t i = 0;
  while (i < v.size() && (std::isdigit((unsigned char)v[i]) || v[i] == '.'))
    ++i;
  if (i == 0)
    return std::nullopt;
  char* end = nullptr;
  auto number = v.substr(0, i); // `end` points into it
  double n = std::strtod(number.c_str(), &end);
  if (*end)
    return std::nullopt;
  std::string unit;
  for (char c : v.substr(i))
    unit += char(std::tolower((unsigned char)c));
  if (unit.size() == 3 && unit.ends_with("ib"))
    unit.erase(1);
  else if (unit.size() == 2 && unit[1] == 'b')
    unit.pop_back();
  static const std::string units = "bkmgtp";
  double scale = 1;
  if (!unit.empty()) {
    auto at = units.find(unit);
    if (unit.size() != 1 || at == std::string::npos)
      return std::nullopt;
    scale = std::pow(1024.0, double(at));
  }
  double bytes = n * scale;
  if (!std::isfinite(bytes) || bytes >= 9.2e18)
    return std::nullopt;
  return int64_t(bytes);
}

struct signal_name {
  const char* name;
  int number;
};

constexpr signal_name signal_names[] = {
    {"HUP", 1},   {"INT", 2},     {"QUIT", 3},    {"ILL", 4},   {"TRAP", 5},
    {"ABRT", 6},  {"IOT", 6},     {"BUS", 7},     {"FPE", 8},   {"KILL", 9},
    {"USR1", 10}, {"SEGV", 11},   {"USR2", 12},   {"PIPE", 13}, {"ALRM", 14},
    {"TERM", 15}, {"STKFLT", 16}, {"CHLD", 17},   {"CLD", 17},  {"CONT", 18},
    {"STOP", 19}, {"TSTP", 20},   {"TTIN", 21},   {"TTOU", 22}, {"URG", 23},
    {"XCPU", 24}, {"XFSZ", 25},   {"VTALRM", 26}, {"PROF", 27}, {"WINCH", 28},
    {"IO", 29},   {"POLL", 29},   {"PWR", 30},    {"SYS", 31},
};

// Linux numbers the real-time signals 34 (RTMIN) to 64 (RTMAX).
constexpr int rtmin = 34;
constexpr int rtmax = 64;

// A signal given as a number (1-64) or a name with or without "SIG", in
// any case: TERM, SIGTERM, RTMIN+3, SIGRTMAX-2.
std::optional<int> to_signal(const std::string& v) {
  if (auto n = to_int(v))
    return *n >= 1 && *n <= rtmax ? std::optional<int>(int(*n)) : std::nullopt;
  std::string name;
  for (char c : v)
    name += char(std::toupper((unsigned char)c));
  if (name.starts_with("SIG"))
    name.erase(0, 3);
  for (auto& s : signal_names)
    if (name == s.name)
      return s.number;
  for (auto [base, number, sign] :
       {std::tuple{"RTMIN", rtmin, 1}, std::tuple{"RTMAX", rtmax, -1}}) {
    std::string_view b = base;
    if (!name.starts_with(b))
      continue;
    auto rest = name.substr(b.size());
    if (rest.empty())
      return number;
    auto offset = to_int(rest.substr(1));
    if (rest[0] != (sign > 0 ? '+' : '-') || !offset || *offset < 0 ||
        *offset > rtmax - rtmin)
      return std::nullopt;
    return number + sign * int(*offset);
  }
  return std::nullopt;
}

// A CPU or memory-node list: "0-3,5,7-8".
bool is_cpu_list(const std::string& v) {
  std::istringstream parts{v};
  int count = 0;
  for (std::string part; std::getline(parts, part, ',');) {
    auto dash = part.find('-');
    auto lo = to_int(part.substr(0, dash));
    auto hi = dash == std::string::npos ? lo : to_int(part.substr(dash + 1));
    if (!lo || !hi || *lo < 0 || *hi < *lo)
      return false;
    ++count;
  }
  return count > 0 && !v.ends_with(',');
}

bool is_ip(const std::string& v) {
  unsigned char buf[sizeof(struct in6_addr)];
  return inet_pton(AF_INET, v.c_str(), buf) == 1 ||
         inet_pton(AF_INET6, v.c_str(), buf) == 1;
}

bool is_absolute(const std::string& v) {
  return !v.empty() && v[0] == '/';
}

// A namespace mode of --pid, --ipc, --uts or --network.
bool is_namespace_mode(const std::string& v,
                       std::initializer_list<const char*> words) {
  for (auto w : words)
    if (v == w)
      return true;
  if (v.starts_with("container:"))
    return v.size() > 10;
  if (v.starts_with("ns:"))
    return is_absolute(v.substr(3));
  return false;
}

// Container names as podman allows them.
bool is_container_name(const std::string& v) {
  if (v.empty() || !std::isalnum((unsigned char)v[0]))
    return false;
  return std::all_of(v.begin(), v.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '.' || c == '-';
  });
}

bool is_ulimit(const std::string& v) {
  static const char* names[] = {"core",   "cpu",        "data",     "fsize",
                                "locks",  "memlock",    "msgqueue", "nice",
                                "nofile", "nproc",      "rss",      "rtprio",
                                "rttime", "sigpending", "stack",    "as"};
  auto eq = v.find('=');
  if (eq == std::string::npos)
    return false;
  auto name = v.substr(0, eq);
  if (std::none_of(std::begin(names), std::end(names),
                   [&](const char* n) { return name == n; }))
    return false;
  auto limits = v.substr(eq + 1);
  auto colon = limits.find(':');
  auto soft = to_int(limits.substr(0, colon));
  auto hard =
      colon == std::string::npos ? soft : to_int(limits.substr(colon + 1));
  if (!soft || !hard || *soft < -1 || *hard < -1)
    return false;
  return *soft == -1 || *hard == -1 || *soft <= *hard;
}

// A bind mount SRC:DST[:OPTIONS], OPTIONS a comma list.
bool is_volume(const std::string& v) {
  static const char* options[] = {
      "ro",    "rw",     "z",       "Z",        "shared", "rshared",
      "slave", "rslave", "private", "rprivate", "nosuid", "suid",
      "nodev", "dev",    "noexec",  "exec",     "bind",   "rbind"};
  std::vector<std::string> parts;
  std::istringstream in{v};
  for (std::string p; std::getline(in, p, ':');)
    parts.push_back(p);
  if (parts.size() < 2 || parts.size() > 3 || parts[0].empty() ||
      !is_absolute(parts[1]) || v.ends_with(':'))
    return false;
  if (parts.size() == 2)
    return true;
  std::istringstream opts{parts[2]};
  for (std::string o; std::getline(opts, o, ',');)
    if (std::none_of(std::begin(options), std::end(options),
                     [&](const char* n) { return o == n; }))
      return false;
  return true;
}

// A device HOST[:CONTAINER[:PERMISSIONS]], PERMISSIONS made of r, w, m.
bool is_device(const std::string& v) {
  std::vector<std::string> parts;
  std::istringstream in{v};
  for (std::string p; std::getline(in, p, ':');)
    parts.push_back(p);
  if (parts.empty() || parts.size() > 3 || !is_absolute(parts[0]))
    return false;
  if (parts.size() >= 2 && !is_absolute(parts[1]) &&
      !(parts.size() == 2 &&
        parts[1].find_first_not_of("rwm") == std::string::npos))
    return false;
  return parts.size() < 3 ||
         (!parts[2].empty() &&
          parts[2].find_first_not_of("rwm") == std::string::npos);
}

// A throttle DEVICE:RATE; RATE a size (bps) or a count (iops).
bool is_throttle(const std::string& v, bool bytes) {
  auto colon = v.rfind(':');
  if (colon == std::string::npos || !is_absolute(v.substr(0, colon)))
    return false;
  auto rate = v.substr(colon + 1);
  auto n = bytes ? to_size(rate) : to_int(rate);
  return n && *n > 0;
}

// ---------------------------------------------------------------------------
// run and create: flags into a Create

struct run_request {
  podman::Create create;
  bool detach = false;
  bool memory_swap_set = false;
  std::string detach_keys; ///< "" for berthd's default
};

/// Sets a field from an option's value ("true"/"false" for switches).
using setter = void (*)(run_request&, const std::string& flag,
                        const std::string& value);

struct create_flag {
  std::string_view name; ///< long form, "--memory"
  char short_name;       ///< 'm', or 0
  bool takes_value;
  setter apply;
};

[[noreturn]] void bad_value(const std::string& flag, const std::string& v,
                            const std::string& expected = {}) {
  run_usage_error("invalid value for " + flag + ": '" + v + "'" +
                  (expected.empty() ? "" : " (expected " + expected + ")"));
}

int64_t int_in(const std::string& flag, const std::string& v, int64_t lo,
               int64_t hi) {
  auto n = to_int(v);
  if (!n || *n < lo || *n > hi)
    bad_value(flag, v,
              "an integer from " + std::to_string(lo) + " to " +
                  std::to_string(hi));
  return *n;
}

int64_t size_of(const std::string& flag, const std::string& v) {
  auto n = to_size(v);
  if (!n || *n <= 0)
    bad_value(flag, v, "a size like 512m or 2g");
  return *n;
}

std::pair<std::string, std::string>
key_value(const std::string& flag, const std::string& v, bool need_value) {
  auto eq = v.find('=');
  if (eq == 0 || v.empty() || (need_value && eq == std::string::npos))
    bad_value(flag, v, "KEY=VALUE");
  if (eq == std::string::npos)
    return {v, ""};
  return {v.substr(0, eq), v.substr(eq + 1)};
}

std::string checked(const std::string& flag, const std::string& v, bool ok,
                    const char* expected) {
  if (!ok)
    bad_value(flag, v, expected);
  return v;
}

bool switch_on(const std::string& v) {
  return v == "true";
}

// -e K=V, or -e K taking K from berth's own environment (skipped when
// unset there), as podman's.
void add_env(run_request& r, const std::string& flag, const std::string& v) {
  auto [key, value] = key_value(flag, v, false);
  if (v.find('=') != std::string::npos) {
    r.create.env[key] = value;
  } else if (const char* own = std::getenv(key.c_str())) {
    r.create.env[key] = own;
  }
}

void add_env_file(run_request& r, const std::string& flag,
                  const std::string& path) {
  std::ifstream in{path};
  if (!in)
    run_usage_error("reading " + path + ": " + std::strerror(errno));
  for (std::string line; std::getline(in, line);) {
    auto start = line.find_first_not_of(" \t");
    if (start == std::string::npos || line[start] == '#')
      continue;
    add_env(r, flag, line.substr(start));
  }
}

std::vector<std::string> entrypoint_of(const std::string& flag,
                                       const std::string& v) {
  if (!v.starts_with("["))
    return {v};
  // A JSON array of strings, as podman accepts it.
  simdjson::dom::parser parser;
  simdjson::padded_string text{v};
  simdjson::dom::array list;
  if (parser.parse(text).get(list) != simdjson::SUCCESS)
    bad_value(flag, v, "a command or a JSON array of strings");
  std::vector<std::string> out;
  for (auto e : list) {
    std::string_view s;
    if (e.get(s) != simdjson::SUCCESS)
      bad_value(flag, v, "a command or a JSON array of strings");
    out.emplace_back(s);
  }
  return out;
}

void set_log_opt(run_request& r, const std::string& flag,
                 const std::string& v) {
  auto [key, value] = key_value(flag, v, true);
  if (key == "max-size" && value != "-1")
    size_of(flag, value);
  r.create.log_driver_opt.push_back(v);
}

// A setter from its body, which sees the request `r`, the flag `f` and
// the value `v`.
#define BERTH_SET(...)                                                         \
  +[](run_request& r, const std::string& f, const std::string& v) {            \
    __VA_ARGS__;                                                               \
  }

const create_flag create_flags[] = {
    // process and identity
    {"--detach", 'd', false, BERTH_SET(r.detach = switch_on(v))},
    {"--detach-keys", 0, true,
     BERTH_SET(r.detach_keys =
                   checked(f, v, !v.empty(), "keys like ctrl-p,q"))},
    {"--rm", 0, false, BERTH_SET(r.create.rm = switch_on(v))},
    {"--tty", 't', false, BERTH_SET(r.create.tty = switch_on(v))},
    {"--interactive", 'i', false,
     BERTH_SET(r.create.interactive = switch_on(v))},
    {"--env", 'e', true, BERTH_SET(add_env(r, f, v))},
    {"--env-file", 0, true, BERTH_SET(add_env_file(r, f, v))},
    {"--name", 0, true,
     BERTH_SET(r.create.name = checked(f, v, is_container_name(v),
                                       "letters, digits, _ . -"))},
    {"--workdir", 'w', true,
     BERTH_SET(r.create.work_dir =
                   checked(f, v, is_absolute(v), "an absolute path"))},
    {"--user", 'u', true,
     BERTH_SET(r.create.user = checked(f, v, !v.empty(), "USER[:GROUP]"))},
    {"--hostname", 'h', true,
     BERTH_SET(r.create.hostname = checked(f, v, !v.empty(), "a name"))},
    {"--label", 'l', true, BERTH_SET({
       auto [key, value] = key_value(f, v, false);
       r.create.labels[key] = value;
     })},
    {"--entrypoint", 0, true,
     BERTH_SET(r.create.entrypoint = entrypoint_of(f, v))},
    {"--init", 0, false, BERTH_SET(r.create.init = switch_on(v))},
    {"--group-add", 0, true,
     BERTH_SET(
         r.create.group_add.push_back(checked(f, v, !v.empty(), "a group")))},
    {"--stop-signal", 0, true, BERTH_SET({
       auto sig = to_signal(v);
       if (!sig)
         bad_value(f, v, "a signal name or number");
       r.create.stop_signal = *sig;
     })},
    {"--stop-timeout", 0, true,
     BERTH_SET(r.create.stop_timeout = int_in(f, v, 0, INT32_MAX))},
    {"--log-opt", 0, true, BERTH_SET(set_log_opt(r, f, v))},
    // security and file system
    {"--read-only", 0, false,
     BERTH_SET(r.create.readonly_rootfs = switch_on(v))},
    {"--privileged", 0, false, BERTH_SET(r.create.privileged = switch_on(v))},
    {"--cap-add", 0, true,
     BERTH_SET(r.create.cap_add.push_back(
         checked(f, v, !v.empty(), "a capability")))},
    {"--cap-drop", 0, true,
     BERTH_SET(r.create.cap_drop.push_back(
         checked(f, v, !v.empty(), "a capability")))},
    {"--device", 0, true,
     BERTH_SET(r.create.devices.push_back(
         checked(f, v, is_device(v), "HOST[:CONTAINER[:rwm]]")))},
    {"--volume", 'v', true,
     BERTH_SET(r.create.volumes.push_back(
         checked(f, v, is_volume(v), "SRC:DST[:ro]")))},
    {"--tmpfs", 0, true,
     BERTH_SET(r.create.tmpfs.push_back(checked(
         f, v, is_absolute(v.substr(0, v.find(':'))), "DST[:OPTIONS]")))},
    {"--sysctl", 0, true, BERTH_SET({
       auto [key, value] = key_value(f, v, true);
       r.create.sys_ctl[key] = value;
     })},
    {"--ulimit", 0, true,
     BERTH_SET(r.create.resources.ulimit.push_back(
         checked(f, v, is_ulimit(v), "NAME=SOFT[:HARD]")))},
    // name spaces and network
    {"--network", 0, true,
     BERTH_SET(
         r.create.net_mode = checked(
             f, v,
             is_namespace_mode(v, {"none", "host", "bridge", "slirp4netns"}),
             "none, host, bridge or container:ID"))},
    {"--pid", 0, true,
     BERTH_SET(r.create.pid_mode =
                   checked(f, v, is_namespace_mode(v, {"host", "private"}),
                           "host, private or container:ID"))},
    {"--ipc", 0, true,
     BERTH_SET(
         r.create.ipc_mode = checked(
             f, v,
             is_namespace_mode(v, {"host", "private", "shareable", "none"}),
             "host, private, shareable, none or container:ID"))},
    {"--uts", 0, true,
     BERTH_SET(r.create.uts_mode =
                   checked(f, v, is_namespace_mode(v, {"host", "private"}),
                           "host, private or container:ID"))},
    {"--dns", 0, true,
     BERTH_SET(r.create.dns_servers.push_back(
         checked(f, v, is_ip(v), "an IP address")))},
    {"--dns-search", 0, true,
     BERTH_SET(
         r.create.dns_search.push_back(checked(f, v, !v.empty(), "a domain")))},
    {"--dns-option", 0, true,
     BERTH_SET(
         r.create.dns_opt.push_back(checked(f, v, !v.empty(), "an option")))},
    {"--add-host", 0, true, BERTH_SET({
       auto colon = v.find(':');
       if (colon == 0 || colon == std::string::npos ||
           !is_ip(v.substr(colon + 1)))
         bad_value(f, v, "HOST:IP");
       r.create.host_add.push_back(v);
     })},
    // resources
    {"--memory", 'm', true,
     BERTH_SET(r.create.resources.memory = size_of(f, v))},
    {"--memory-reservation", 0, true,
     BERTH_SET(r.create.resources.memory_reservation = size_of(f, v))},
    {"--memory-swap", 0, true, BERTH_SET({
       r.create.resources.memory_swap = v == "-1" ? -1 : size_of(f, v);
       r.memory_swap_set = true;
     })},
    {"--memory-swappiness", 0, true,
     BERTH_SET(r.create.resources.memory_swappiness = int_in(f, v, -1, 100))},
    {"--kernel-memory", 0, true,
     BERTH_SET(r.create.resources.kernel_memory = size_of(f, v))},
    {"--shm-size", 0, true,
     BERTH_SET(r.create.resources.shm_size = size_of(f, v))},
    {"--cpus", 0, true, BERTH_SET({
       char* end = nullptr;
       double n = std::strtod(v.c_str(), &end);
       if (v.empty() || *end || !(n > 0) || n > 1e6)
         bad_value(f, v, "a positive number of CPUs");
       r.create.resources.cpus = n;
     })},
    {"--cpu-shares", 'c', true,
     BERTH_SET(r.create.resources.cpu_shares = int_in(f, v, 2, 262144))},
    {"--cpu-period", 0, true,
     BERTH_SET(r.create.resources.cpu_period = int_in(f, v, 1000, 1000000))},
    {"--cpu-quota", 0, true,
     BERTH_SET(r.create.resources.cpu_quota = int_in(f, v, -1, INT64_MAX))},
    {"--cpuset-cpus", 0, true,
     BERTH_SET(r.create.resources.cpuset_cpus =
                   checked(f, v, is_cpu_list(v), "a list like 0-2,4"))},
    {"--cpuset-mems", 0, true,
     BERTH_SET(r.create.resources.cpuset_mems =
                   checked(f, v, is_cpu_list(v), "a list like 0-1"))},
    {"--pids-limit", 0, true,
     BERTH_SET(r.create.resources.pids_limit = int_in(f, v, -1, INT32_MAX))},
    {"--blkio-weight", 0, true, BERTH_SET({
       auto n = int_in(f, v, 0, 1000);
       if (n != 0 && n < 10)
         bad_value(f, v, "0 or 10 to 1000");
       r.create.resources.blkio_weight = n;
     })},
    {"--device-read-bps", 0, true,
     BERTH_SET(r.create.resources.device_read_bps.push_back(checked(
         f, v, is_throttle(v, true), "DEVICE:RATE like /dev/sda:1mb")))},
    {"--device-write-bps", 0, true,
     BERTH_SET(r.create.resources.device_write_bps.push_back(checked(
         f, v, is_throttle(v, true), "DEVICE:RATE like /dev/sda:1mb")))},
    {"--device-read-iops", 0, true,
     BERTH_SET(r.create.resources.device_read_iops.push_back(
         checked(f, v, is_throttle(v, false), "DEVICE:COUNT")))},
    {"--device-write-iops", 0, true,
     BERTH_SET(r.create.resources.device_write_iops.push_back(
         checked(f, v, is_throttle(v, false), "DEVICE:COUNT")))},
    {"--oom-kill-disable", 0, false,
     BERTH_SET(r.create.resources.disable_oomkiller = switch_on(v))},
    {"--oom-score-adj", 0, true,
     BERTH_SET(r.create.resources.oom_score_adj = int_in(f, v, -1000, 1000))},
};

#undef BERTH_SET

const create_flag* find_flag(std::string_view name) {
  for (auto& f : create_flags)
    if (f.name == name)
      return &f;
  return nullptr;
}

const create_flag* find_short(char c) {
  for (auto& f : create_flags)
    if (f.short_name == c)
      return &f;
  return nullptr;
}

// Applies one option at args[i] (advancing i past a separate value);
// false when args[i] is no option.
bool apply_option(run_request& r, const std::vector<std::string>& args,
                  size_t& i) {
  const auto& a = args[i];
  auto take_value = [&](const create_flag& f) -> std::string {
    if (i + 1 >= args.size())
      run_usage_error(std::string{f.name} + " needs a value");
    return args[++i];
  };
  if (a.starts_with("--")) {
    auto eq = a.find('=');
    auto* f = find_flag(std::string_view{a}.substr(0, eq));
    if (!f)
      run_usage_error("unknown option: " + a);
    std::string name{f->name};
    if (eq != std::string::npos) {
      auto v = a.substr(eq + 1);
      if (!f->takes_value && v != "true" && v != "false")
        bad_value(name, v, "true or false");
      f->apply(r, name, v);
    } else {
      f->apply(r, name, f->takes_value ? take_value(*f) : "true");
    }
    return true;
  }
  if (a.size() < 2 || a[0] != '-')
    return false;
  // Short options: switches may be grouped (-dit); an option taking a value
  // ends the group and takes the rest of the word or the next argument.
  for (size_t k = 1; k < a.size(); ++k) {
    auto* f = find_short(a[k]);
    if (!f)
      run_usage_error("unknown option: -" + std::string(1, a[k]) +
                      (a.size() > 2 ? " in " + a : ""));
    std::string name{f->name};
    if (!f->takes_value) {
      f->apply(r, name, "true");
      continue;
    }
    auto rest = a.substr(k + 1);
    if (rest.starts_with("="))
      rest.erase(0, 1);
    f->apply(r, name, rest.empty() ? take_value(*f) : rest);
    return true;
  }
  return true;
}

// Checks that need several options together.
void check_request(const run_request& r) {
  auto& res = r.create.resources;
  if (r.memory_swap_set && res.memory_swap != -1) {
    if (res.memory == 0)
      run_usage_error("--memory-swap needs --memory");
    if (res.memory_swap < res.memory)
      run_usage_error("--memory-swap must not be smaller than --memory");
  }
  if (res.memory_reservation && res.memory &&
      res.memory_reservation > res.memory)
    run_usage_error("--memory-reservation must not be larger than --memory");
}

// Parses `run` or `create` arguments: options, IMAGE, then COMMAND [ARG...]
// taken verbatim.
run_request parse_run(const std::vector<std::string>& args, bool is_run) {
  run_request r;
  r.create.resources.memory_swappiness = -1;
  r.create.stop_timeout = default_stop_timeout;
  size_t i = 0;
  for (; i < args.size(); ++i) {
    if (args[i] == "--") {
      ++i;
      break;
    }
    if (!apply_option(r, args, i))
      break;
  }
  if (!is_run && r.detach)
    run_usage_error("create takes no --detach; the container is not started");
  if (i >= args.size())
    run_usage_error(std::string{is_run ? "run" : "create"} + " needs an IMAGE");
  check_request(r);
  r.create.image = args[i];
  r.create.command.assign(args.begin() + long(i) + 1, args.end());
  r.create.args.assign(args.begin() + long(i), args.end());
  r.create.detach = r.detach;
  return r;
}

// ---------------------------------------------------------------------------
// Logs

// A log stream opened before the container starts, on a connection of its
// own: berthd answers a follow at once (with the lines so far, possibly
// none), so once `open` returns no output can be missed, even of a
// container that ends and is removed (run --rm) right after it starts.
struct log_follower {
  session conn;
  varlink::reply first;
  log_printer printer;
  size_t printed = 0;

  log_follower(const std::string& addr, const std::string& id)
    : conn(addr),
      first(conn.call("io.podman.GetContainerLogs", name_param(id),
                      {.more = true})) {
  }

  // Prints until the stream ends: with a final reply, or an error (a
  // server that cannot follow).
  void drain() {
    for (auto r = std::move(first);; r = conn.next()) {
      if (!r.error.empty())
        return;
      printed += printer.print_reply(r);
      if (!r.continues)
        return;
    }
  }
};

// Prints the whole log once, from line `skip` on. A container already
// removed (run --rm) has nothing more to show.
void print_rest_of_log(session& s, log_printer& printer, const std::string& id,
                       size_t skip) {
  auto r = s.call("io.podman.GetContainerLogs", name_param(id));
  if (r.error == "io.podman.ContainerNotFound")
    return;
  if (!r.error.empty()) {
    report(r);
    return;
  }
  printer.print_reply(r, skip);
}

// WaitContainer: the exit code, or nullopt after printing the error.
std::optional<int64_t> wait_for(session& s, const std::string& name) {
  auto r = s.call("io.podman.WaitContainer",
                  params_of(podman::WaitContainer_in{name, wait_interval_ns}));
  if (!r.error.empty()) {
    report(r);
    return std::nullopt;
  }
  int64_t code = 0;
  if (parsed_reply{r.parameters}.doc["exitcode"].get(code) !=
      simdjson::SUCCESS) {
    std::cerr << "berth: malformed reply\n";
    return std::nullopt;
  }
  return code;
}

// An attached run or start -a: shows the output as it comes, then exits
// with the container's status.
int attach_output(session& s, log_follower& logs, const std::string& id) {
  logs.drain();
  auto code = wait_for(s, id);
  // A stream may end before the last output (a server that does not
  // follow, or ends a follow with an error): the rest comes now.
  print_rest_of_log(s, logs.printer, id, logs.printed);
  if (!code || *code < 0 || *code > 255)
    return engine_failed;
  return int(*code);
}

// ---------------------------------------------------------------------------
// Verbs

// StartContainer; on failure prints the error and returns its status.
std::optional<int> start_one(session& s, const std::string& name) {
  auto r = s.call("io.podman.StartContainer", name_param(name));
  if (r.error.empty())
    return std::nullopt;
  report(r);
  return start_failure_code(r);
}

// run -i or -t: the container's terminal through Attach, which starts it
// once attached so no output is lost.
int run_attached(session& s, const std::string& addr, const std::string& id,
                 const run_request& req) {
  attach_options opts;
  opts.detach_keys = req.detach_keys;
  opts.start = true;
  opts.relay_stdin = req.create.interactive;
  opts.tty = req.create.tty;
  auto out = attach_to(addr, id, opts);
  // A container that never ran is not removed by the daemon at exit.
  if (!out.attached && req.create.rm)
    s.call("io.podman.RemoveContainer",
           params_of(podman::RemoveContainer_in{id, true, false}));
  return out.status;
}

int run(const std::string& addr, const std::vector<std::string>& args,
        bool is_run) {
  auto req = parse_run(args, is_run);
  session s{addr};
  auto r = s.call("io.podman.CreateContainer",
                  params_of(podman::CreateContainer_in{req.create}));
  if (!r.error.empty())
    return report(r, engine_failed);
  auto id = container_of(r);
  if (!is_run) {
    std::cout << id << '\n';
    return ok;
  }
  if (!req.detach && (req.create.interactive || req.create.tty))
    return run_attached(s, addr, id, req);

  std::optional<log_follower> logs;
  if (!req.detach)
    logs.emplace(addr, id);
  if (auto failed = start_one(s, id)) {
    // The container never ran, so the daemon will not remove it at exit.
    if (req.create.rm)
      s.call("io.podman.RemoveContainer",
             params_of(podman::RemoveContainer_in{id, true, false}));
    return *failed;
  }
  if (req.detach) {
    std::cout << id << '\n';
    return ok;
  }
  return attach_output(s, *logs, id);
}

struct start_request {
  bool attach = false;
  bool interactive = false;
  std::optional<std::string> detach_keys;
  std::vector<std::string> names;
};

start_request parse_start(const std::vector<std::string>& args) {
  start_request r;
  auto attaching = [](const std::string& a) {
    return a == "-a" || a == "--attach" || a == "-i" || a == "--interactive" ||
           a == "-ai" || a == "-ia";
  };
  // start -a exits like run, usage errors included.
  auto fail = std::any_of(args.begin(), args.end(), attaching) ? run_usage_error
                                                               : usage_error;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "-a" || a == "--attach") {
      r.attach = true;
    } else if (a == "-i" || a == "--interactive" || a == "-ai" || a == "-ia") {
      r.attach = r.interactive = true;
    } else if (a == "--detach-keys") {
      if (i + 1 >= args.size())
        fail("--detach-keys needs a value");
      r.detach_keys = args[++i];
    } else if (a.starts_with("--detach-keys=")) {
      r.detach_keys = a.substr(14);
    } else if (a.starts_with("-")) {
      fail("unknown option for start: " + a);
    } else {
      r.names.push_back(a);
    }
  }
  if (r.names.empty())
    fail("start needs a container");
  if (r.attach && r.names.size() > 1)
    run_usage_error("start -a takes one container");
  if (r.detach_keys && !r.interactive)
    fail("--detach-keys needs -i");
  return r;
}

int start(const std::string& addr, const std::vector<std::string>& args) {
  auto req = parse_start(args);
  if (req.interactive) {
    // start -ai: the container's terminal, as attach does it.
    attach_options opts;
    opts.detach_keys = req.detach_keys.value_or("");
    opts.start = true;
    opts.from_container = true;
    return attach_to(addr, req.names[0], opts).status;
  }
  session s{addr};
  if (req.attach) {
    log_follower logs{addr, req.names[0]};
    if (auto failed = start_one(s, req.names[0]))
      return *failed;
    return attach_output(s, logs, req.names[0]);
  }
  int rc = ok;
  for (auto& n : req.names) {
    if (start_one(s, n))
      rc = remote_error;
    else
      std::cout << n << '\n';
  }
  return rc;
}

/// Reads "-t N" / "--time N" / "--timeout N" (seconds).
std::optional<int64_t> timeout_option(const std::vector<std::string>& args,
                                      size_t& i) {
  const auto& a = args[i];
  std::string v;
  if (a == "-t" || a == "--time" || a == "--timeout") {
    if (i + 1 >= args.size())
      usage_error(a + " needs a number of seconds");
    v = args[++i];
  } else if (a.starts_with("--time=") || a.starts_with("--timeout=")) {
    v = a.substr(a.find('=') + 1);
  } else if (a.starts_with("-t") && a.size() > 2) {
    v = a.substr(2);
  } else {
    return std::nullopt;
  }
  auto n = to_int(v);
  if (!n || *n < 0 || *n > INT32_MAX)
    usage_error("invalid timeout: " + v);
  return *n;
}

// stop and restart: NAME... with a grace period.
int stop_or_restart(const std::string& addr, const std::string& verb,
                    const std::vector<std::string>& args) {
  // Without -t, each container's own stop timeout (-1 asks for it).
  int64_t timeout = -1;
  std::vector<std::string> names;
  for (size_t i = 0; i < args.size(); ++i) {
    if (auto t = timeout_option(args, i))
      timeout = *t;
    else if (args[i].starts_with("-"))
      usage_error("unknown option for " + verb + ": " + args[i]);
    else
      names.push_back(args[i]);
  }
  if (names.empty())
    usage_error(verb + " needs a container");
  session s{addr};
  int rc = ok;
  for (auto& n : names) {
    auto r = verb == "stop"
                 ? s.call("io.podman.StopContainer",
                          params_of(podman::StopContainer_in{n, timeout}))
                 : s.call("io.podman.RestartContainer",
                          params_of(podman::RestartContainer_in{n, timeout}));
    if (!r.error.empty())
      rc = report(r);
    else
      std::cout << container_of(r) << '\n';
  }
  return rc;
}

int signal_containers(const std::string& addr,
                      const std::vector<std::string>& args) {
  int64_t signal = 9;
  std::vector<std::string> names;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    std::string v;
    if (a == "-s" || a == "--signal") {
      if (i + 1 >= args.size())
        usage_error(a + " needs a signal");
      v = args[++i];
    } else if (a.starts_with("--signal=")) {
      v = a.substr(9);
    } else if (a.starts_with("-s") && a.size() > 2) {
      v = a.substr(2);
    } else if (a.starts_with("-")) {
      usage_error("unknown option for kill: " + a);
    } else {
      names.push_back(a);
      continue;
    }
    auto sig = to_signal(v);
    if (!sig)
      usage_error("invalid signal: " + v);
    signal = *sig;
  }
  if (names.empty())
    usage_error("kill needs a container");
  session s{addr};
  int rc = ok;
  for (auto& n : names) {
    auto r = s.call("io.podman.KillContainer",
                    params_of(podman::KillContainer_in{n, signal}));
    if (!r.error.empty())
      rc = report(r);
    else
      std::cout << container_of(r) << '\n';
  }
  return rc;
}

// pause and unpause: NAME..., no options.
int pause_or_unpause(const std::string& addr, const std::string& verb,
                     const std::vector<std::string>& args) {
  for (auto& a : args)
    if (a.starts_with("-"))
      usage_error("unknown option for " + verb + ": " + a);
  if (args.empty())
    usage_error(verb + " needs a container");
  auto method = verb == "pause" ? "io.podman.PauseContainer"
                                : "io.podman.UnpauseContainer";
  session s{addr};
  int rc = ok;
  for (auto& n : args) {
    auto r = s.call(method, name_param(n));
    if (!r.error.empty())
      rc = report(r);
    else
      std::cout << container_of(r) << '\n';
  }
  return rc;
}

int wait_containers(const std::string& addr,
                    const std::vector<std::string>& args) {
  for (auto& a : args)
    if (a.starts_with("-"))
      usage_error("unknown option for wait: " + a);
  if (args.empty())
    usage_error("wait needs a container");
  session s{addr};
  int rc = ok;
  for (auto& n : args) {
    if (auto code = wait_for(s, n))
      std::cout << *code << '\n' << std::flush;
    else
      rc = remote_error;
  }
  return rc;
}

int rm(const std::string& addr, const std::vector<std::string>& args) {
  bool force = false, volumes = false;
  std::vector<std::string> names;
  for (auto& a : args) {
    if (a == "-f" || a == "--force")
      force = true;
    else if (a == "-v" || a == "--volumes")
      volumes = true;
    else if (a == "-fv" || a == "-vf")
      force = volumes = true;
    else if (a.starts_with("-"))
      usage_error("unknown option for rm: " + a);
    else
      names.push_back(a);
  }
  if (names.empty())
    usage_error("rm needs a container");
  session s{addr};
  int rc = ok;
  for (auto& n : names) {
    auto r = s.call("io.podman.RemoveContainer",
                    params_of(podman::RemoveContainer_in{n, force, volumes}));
    if (!r.error.empty())
      rc = report(r);
    else
      std::cout << container_of(r) << '\n';
  }
  return rc;
}

// ---------------------------------------------------------------------------
// ps

// Seconds since the epoch of an RFC 3339 time ("2019-03-08T10:11:12Z",
// "...12.5-05:00"); nullopt for anything else or Go's zero time.
std::optional<int64_t> epoch_of(const std::string& t) {
  std::tm tm{};
  int used = 0;
  if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year,
                  &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec,
                  &used) != 6 ||
      tm.tm_year <= 1)
    return std::nullopt;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  int64_t secs = timegm(&tm);
  size_t i = size_t(used);
  if (i < t.size() && t[i] == '.')
    for (++i; i < t.size() && std::isdigit((unsigned char)t[i]);)
      ++i;
  if (i < t.size() && (t[i] == 'Z' || t[i] == 'z'))
    return secs;
  int oh = 0, om = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-') &&
      std::sscanf(t.c_str() + i + 1, "%2d:%2d", &oh, &om) == 2)
    return secs - (t[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  return std::nullopt;
}

// "5 seconds", "About a minute", "3 hours", "2 weeks": how long ago, in
// words, the way podman and docker say it.
std::string human_duration(int64_t secs) {
  auto n = [](int64_t v, const char* unit) {
    return std::to_string(v) + " " + unit;
  };
  int64_t mins = secs / 60, hours = (secs + 1800) / 3600, days = secs / 86400;
  if (secs < 1)
    return "Less than a second";
  if (secs == 1)
    return "1 second";
  if (secs < 60)
    return n(secs, "seconds");
  if (mins == 1)
    return "About a minute";
  if (mins < 60)
    return n(mins, "minutes");
  if (hours == 1)
    return "About an hour";
  if (hours < 48)
    return n(hours, "hours");
  if (days < 14)
    return n(days, "days");
  if (days < 60)
    return n(days / 7, "weeks");
  if (days < 730)
    return n(days / 30, "months");
  return n(days / 365, "years");
}

std::string ago(const std::string& when, int64_t now) {
  auto t = epoch_of(when);
  return t ? human_duration(std::max<int64_t>(0, now - *t)) + " ago" : "";
}

// The STATUS column: "Up 3 seconds", "Exited (3) 2 seconds ago", "Created",
// "Paused". Start and finish times and the exit code come from inspect.
std::string status_text(session& s, element c, int64_t now) {
  auto state = string_at(c, "status");
  if (state == "configured" || state == "created")
    return "Created";
  if (state == "paused")
    return "Paused";
  bool running = state == "running";
  if (!running && state != "exited" && state != "stopped")
    return state.empty()
               ? "Unknown"
               : char(std::toupper((unsigned char)state[0])) + state.substr(1);
  auto r = s.call("io.podman.InspectContainer", name_param(string_at(c, "id")));
  std::string inspect_text =
      r.error.empty() ? string_at(parsed_reply{r.parameters}.doc, "container")
                      : "";
  simdjson::dom::parser parser;
  simdjson::padded_string text{inspect_text};
  element st;
  bool have = !inspect_text.empty() &&
              parser.parse(text)["State"].get(st) == simdjson::SUCCESS;
  if (running) {
    auto started = have ? epoch_of(string_at(st, "StartedAt")) : std::nullopt;
    return started
               ? "Up " + human_duration(std::max<int64_t>(0, now - *started))
               : "Up";
  }
  int64_t code = 0;
  if (!have || st["ExitCode"].get(code) != simdjson::SUCCESS)
    return "Exited";
  auto when = ago(string_at(st, "FinishedAt"), now);
  return "Exited (" + std::to_string(code) + ")" +
         (when.empty() ? "" : " " + when);
}

std::string command_text(element c, bool no_trunc) {
  std::string cmd;
  simdjson::dom::array parts;
  if (c["command"].get(parts) == simdjson::SUCCESS)
    for (auto p : parts) {
      std::string_view v;
      if (p.get(v) == simdjson::SUCCESS)
        cmd += (cmd.empty() ? "" : " ") + std::string{v};
    }
  if (!no_trunc && cmd.size() > 20)
    cmd = cmd.substr(0, 17) + "...";
  return cmd;
}

int ps(const std::string& addr, const std::vector<std::string>& args) {
  bool all = false, quiet = false, no_trunc = false, as_json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "-a" || a == "--all")
      all = true;
    else if (a == "-q" || a == "--quiet")
      quiet = true;
    else if (a == "-aq" || a == "-qa")
      all = quiet = true;
    else if (a == "--no-trunc")
      no_trunc = true;
    else if (a == "--format=json" ||
             (a == "--format" && i + 1 < args.size() && args[++i] == "json"))
      as_json = true;
    else
      usage_error("unknown option for ps: " + a +
                  " (ps takes -a, -q, --no-trunc, --format json)");
  }
  session s{addr};
  auto r = s.call("io.podman.ListContainers", "");
  if (!r.error.empty())
    return report(r);
  parsed_reply p{r.parameters};
  std::vector<element> shown;
  simdjson::dom::array list;
  if (p.doc["containers"].get(list) == simdjson::SUCCESS)
    for (auto c : list)
      if (all || string_at(c, "status") == "running")
        shown.push_back(c);

  if (as_json) {
    std::cout << '[';
    for (size_t i = 0; i < shown.size(); ++i)
      std::cout << (i ? "," : "") << simdjson::minify(shown[i]);
    std::cout << "]\n";
    return ok;
  }
  auto short_id = [&](element c) {
    auto id = string_at(c, "id");
    return no_trunc ? id : id.substr(0, 12);
  };
  if (quiet) {
    for (auto c : shown)
      std::cout << short_id(c) << '\n';
    return ok;
  }
  auto now = int64_t(std::time(nullptr));
  std::vector<std::vector<std::string>> rows{
      {"CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"}};
  for (auto c : shown)
    rows.push_back({short_id(c), string_at(c, "image"),
                    command_text(c, no_trunc),
                    ago(string_at(c, "createdat"), now), status_text(s, c, now),
                    string_at(c, "names")});
  print_table(rows);
  return ok;
}

// ---------------------------------------------------------------------------
// inspect, mount, umount, diff, export

// Writes a JSON value indented by four spaces a level, as podman does.
void print_json(std::ostream& out, element e, int depth) {
  std::string pad((depth + 1) * 4, ' ');
  std::string close(depth * 4, ' ');
  if (e.is_object()) {
    auto o = simdjson::dom::object(e);
    if (o.size() == 0) {
      out << "{}";
      return;
    }
    out << "{\n";
    bool first = true;
    for (auto [k, v] : o) {
      out << (first ? "" : ",\n") << pad << json::quote(k) << ": ";
      print_json(out, v, depth + 1);
      first = false;
    }
    out << '\n' << close << '}';
  } else if (e.is_array()) {
    auto a = simdjson::dom::array(e);
    if (a.size() == 0) {
      out << "[]";
      return;
    }
    out << "[\n";
    bool first = true;
    for (auto v : a) {
      out << (first ? "" : ",\n") << pad;
      print_json(out, v, depth + 1);
      first = false;
    }
    out << '\n' << close << ']';
  } else if (e.is_string()) {
    out << json::quote(std::string_view(e));
  } else {
    out << simdjson::minify(e);
  }
}

// InspectContainer, or InspectImage for a name that is no container (or
// when containers are not served), as podman's inspect does. Returns the
// reply that answered, with the JSON text in `json_text`.
varlink::reply inspect_one(session& s, const std::string& name,
                           std::string& json_text) {
  auto r = s.call("io.podman.InspectContainer", name_param(name));
  if (r.error.empty()) {
    json_text = container_of(r);
    return r;
  }
  if (r.error != "io.podman.ContainerNotFound" &&
      r.error != "org.varlink.service.MethodNotImplemented")
    return r;
  auto img = s.call("io.podman.InspectImage", name_param(name));
  if (!img.error.empty())
    return r;
  json_text = string_at(parsed_reply{img.parameters}.doc, "image");
  return img;
}

int inspect(const std::string& addr, const std::vector<std::string>& args) {
  for (auto& a : args)
    if (a.starts_with("-"))
      usage_error("unknown option for inspect: " + a);
  if (args.empty())
    usage_error("inspect needs a container");
  session s{addr};
  int rc = ok;
  std::vector<std::string> found;
  for (auto& n : args) {
    std::string text;
    auto r = inspect_one(s, n, text);
    if (!r.error.empty())
      rc = report(r);
    else
      found.push_back(std::move(text));
  }
  std::cout << '[';
  for (size_t i = 0; i < found.size(); ++i) {
    simdjson::dom::parser parser;
    simdjson::padded_string text{found[i]};
    element doc;
    if (parser.parse(text).get(doc) != simdjson::SUCCESS) {
      std::cerr << "berth: malformed inspect data\n";
      return failure;
    }
    std::cout << (i ? ",\n    " : "\n    ");
    print_json(std::cout, doc, 1);
  }
  std::cout << (found.empty() ? "]\n" : "\n]\n");
  return rc;
}

int mount(const std::string& addr, const std::vector<std::string>& args) {
  bool no_trunc = false;
  std::vector<std::string> names;
  for (auto& a : args) {
    if (a == "--notruncate" || a == "--no-trunc")
      no_trunc = true;
    else if (a.starts_with("-"))
      usage_error("unknown option for mount: " + a);
    else
      names.push_back(a);
  }
  session s{addr};
  if (names.empty()) {
    auto r = s.call("io.podman.ListContainerMounts", "");
    if (!r.error.empty())
      return report(r);
    parsed_reply p{r.parameters};
    simdjson::dom::object mounts;
    if (p.doc["mounts"].get(mounts) == simdjson::SUCCESS)
      for (auto [id, path] : mounts) {
        std::string_view where;
        if (path.get(where) != simdjson::SUCCESS)
          continue;
        std::cout << (no_trunc ? id : id.substr(0, 12)) << ' ' << where << '\n';
      }
    return ok;
  }
  int rc = ok;
  for (auto& n : names) {
    auto r = s.call("io.podman.MountContainer", name_param(n));
    if (!r.error.empty())
      rc = report(r);
    else
      std::cout << string_at(parsed_reply{r.parameters}.doc, "path") << '\n';
  }
  return rc;
}

int umount(const std::string& addr, const std::vector<std::string>& args) {
  bool force = false;
  std::vector<std::string> names;
  for (auto& a : args) {
    if (a == "-f" || a == "--force")
      force = true;
    else if (a.starts_with("-"))
      usage_error("unknown option for umount: " + a);
    else
      names.push_back(a);
  }
  if (names.empty())
    usage_error("umount needs a container");
  session s{addr};
  int rc = ok;
  for (auto& n : names) {
    auto r = s.call("io.podman.UnmountContainer",
                    params_of(podman::UnmountContainer_in{n, force}));
    if (!r.error.empty())
      rc = report(r);
    else
      std::cout << n << '\n';
  }
  return rc;
}

int diff(const std::string& addr, const std::vector<std::string>& args) {
  bool as_json = false;
  std::vector<std::string> names;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--format=json" ||
        (a == "--format" && i + 1 < args.size() && args[++i] == "json"))
      as_json = true;
    else if (a.starts_with("-"))
      usage_error("unknown option for diff: " + a);
    else
      names.push_back(a);
  }
  if (names.size() != 1)
    usage_error("diff needs one container");
  session s{addr};
  auto r = s.call("io.podman.ListContainerChanges", name_param(names[0]));
  if (!r.error.empty())
    return report(r);
  parsed_reply p{r.parameters};
  element changes;
  if (p.doc["container"].get(changes) != simdjson::SUCCESS) {
    std::cerr << "berth: malformed reply\n";
    return failure;
  }
  if (as_json) {
    std::cout << simdjson::minify(changes) << '\n';
    return ok;
  }
  // One list sorted by path, each line "<C|A|D> <path>".
  std::vector<std::pair<std::string, char>> lines;
  for (auto [key, mark] : {std::pair{"changed", 'C'}, std::pair{"added", 'A'},
                           std::pair{"deleted", 'D'}}) {
    simdjson::dom::array paths;
    if (changes[key].get(paths) != simdjson::SUCCESS)
      continue;
    for (auto path : paths) {
      std::string_view v;
      if (path.get(v) == simdjson::SUCCESS)
        lines.emplace_back(std::string{v}, mark);
    }
  }
  std::sort(lines.begin(), lines.end());
  for (auto& [path, mark] : lines)
    std::cout << mark << ' ' << path << '\n';
  return ok;
}

int export_tar(const std::string& addr, const std::vector<std::string>& args) {
  std::string output;
  std::vector<std::string> names;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "-o" || a == "--output") {
      if (i + 1 >= args.size())
        usage_error(a + " needs a file");
      output = args[++i];
    } else if (a.starts_with("--output=")) {
      output = a.substr(9);
    } else if (a.starts_with("-")) {
      usage_error("unknown option for export: " + a);
    } else {
      names.push_back(a);
    }
  }
  if (names.size() != 1)
    usage_error("export needs one container");
  if (output.empty() && isatty(STDOUT_FILENO))
    usage_error("refusing to write an archive to a terminal; use -o FILE");

  session s{addr};
  auto r = s.call("io.podman.ExportContainer",
                  params_of(podman::ExportContainer_in{names[0], ""}));
  if (!r.error.empty())
    return report(r);
  auto remote = string_at(parsed_reply{r.parameters}.doc, "tarfile");
  if (output.empty()) {
    receive_file(s, remote, STDOUT_FILENO);
    return ok;
  }
  // Into a temporary file beside the output, renamed once complete.
  auto parent = std::filesystem::path(output).parent_path().string();
  auto tmp = (parent.empty() ? "." : parent) + "/.berth-export-XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) {
    std::cerr << "berth: writing " << output << ": " << std::strerror(errno)
              << '\n';
    return failure;
  }
  receive_file(s, remote, fd);
  fchmod(fd, 0644);
  bool synced = fsync(fd) == 0;
  ::close(fd);
  if (!synced || rename(tmp.c_str(), output.c_str()) < 0) {
    std::cerr << "berth: writing " << output << ": " << std::strerror(errno)
              << '\n';
    ::unlink(tmp.c_str());
    return failure;
  }
  return ok;
}

} // namespace

std::string time_ago(const std::string& when, int64_t now) {
  return ago(when, now);
}

void receive_file(session& s, const std::string& remote, int fd) {
  auto r = s.call("io.podman.ReceiveFile",
                  params_of(podman::ReceiveFile_in{remote, true}),
                  {.upgrade = true});
  if (!r.error.empty())
    std::exit(report(r));
  int64_t len = 0;
  if (parsed_reply{r.parameters}.doc["len"].get(len) != simdjson::SUCCESS ||
      len < 0) {
    std::cerr << "berth: malformed reply\n";
    std::exit(failure);
  }
  std::string chunk;
  for (int64_t left = len; left > 0;) {
    auto n = size_t(std::min<int64_t>(left, 1 << 20));
    if (!s.conn.read_raw(n, chunk)) {
      std::cerr << "berth: receiving " << remote << ": connection lost\n";
      std::exit(failure);
    }
    for (size_t off = 0; off < chunk.size();) {
      auto wrote = ::write(fd, chunk.data() + off, chunk.size() - off);
      if (wrote < 0 && errno == EINTR)
        continue;
      if (wrote <= 0) {
        std::cerr << "berth: writing: " << std::strerror(errno) << '\n';
        std::exit(failure);
      }
      off += size_t(wrote);
    }
    left -= int64_t(n);
  }
}

bool is_container_command(const std::string& verb) {
  static const char* verbs[] = {
      "run",   "create",  "start",   "stop", "kill",   "restart",
      "pause", "unpause", "wait",    "rm",   "ps",     "inspect",
      "mount", "umount",  "unmount", "diff", "export"};
  return std::any_of(std::begin(verbs), std::end(verbs),
                     [&](const char* v) { return verb == v; });
}

int container_command(const std::string& addr, const std::string& verb,
                      const std::vector<std::string>& args) {
  if (verb == "run" || verb == "create")
    return run(addr, args, verb == "run");
  if (verb == "start")
    return start(addr, args);
  if (verb == "stop" || verb == "restart")
    return stop_or_restart(addr, verb, args);
  if (verb == "kill")
    return signal_containers(addr, args);
  if (verb == "pause" || verb == "unpause")
    return pause_or_unpause(addr, verb, args);
  if (verb == "wait")
    return wait_containers(addr, args);
  if (verb == "rm")
    return rm(addr, args);
  if (verb == "ps")
    return ps(addr, args);
  if (verb == "inspect")
    return inspect(addr, args);
  if (verb == "mount")
    return mount(addr, args);
  if (verb == "umount" || verb == "unmount")
    return umount(addr, args);
  if (verb == "diff")
    return diff(addr, args);
  if (verb == "export")
    return export_tar(addr, args);
  usage_error("unknown container command: " + verb);
}

} // namespace berth::cli
