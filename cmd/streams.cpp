// berth's verbs that watch containers: logs (following too), stats (a live
// table), top, and attach, which also carries run -it and start -ai.
#include "cmd/cli.hpp"
#include "protocol/gen/io_podman.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace berth::cli {

using simdjson::dom::element;

namespace {

// ---------------------------------------------------------------------------
// Replies read straight from a socket

/// Replies of one connection, read with our own buffer rather than the
/// client's, so that a loop polling several sockets sees every received
/// byte, and the bytes after an upgraded call's reply stay at hand.
class reply_reader {
public:
  enum class status { none, reply, malformed };

  explicit reply_reader(int fd) : fd_(fd) {}

  /// Takes a reply that has been received completely, if there is one.
  status take(varlink::reply& out) {
    auto nul = buf_.find('\0');
    if (nul == std::string::npos)
      return status::none;
    bool good =
        varlink::parse_reply(std::string_view{buf_}.substr(0, nul), out);
    buf_.erase(0, nul + 1);
    return good ? status::reply : status::malformed;
  }

  /// Receives once (blocking); false at the end of the connection, on an
  /// error, or when a reply outgrows any sane size.
  bool fill() {
    char chunk[65536];
    for (;;) {
      auto n = ::recv(fd_, chunk, sizeof chunk, 0);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0 || buf_.size() > max_buffered)
        return false;
      buf_.append(chunk, size_t(n));
      return true;
    }
  }

  /// The next reply, waiting for it; false if the connection ends first or
  /// the reply is malformed.
  bool wait(varlink::reply& out) {
    for (;;) {
      auto st = take(out);
      if (st != status::none)
        return st == status::reply;
      if (!fill())
        return false;
    }
  }

  int fd() const { return fd_; }
  /// What was received past the replies taken so far.
  std::string& rest() { return buf_; }

private:
  static constexpr size_t max_buffered = 64u << 20;
  int fd_;
  std::string buf_;
};

// ---------------------------------------------------------------------------
// Times

int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return int64_t(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

/// Nanoseconds since the epoch of an RFC 3339 time with an optional
/// fraction: "2024-01-01T10:11:12.5Z", "...12+02:00". With `local_ok`, a
/// time without a zone is local time, and a date alone its midnight.
std::optional<int64_t> time_ns(const std::string& t, bool local_ok) {
  std::tm tm{};
  int used = 0;
  bool date_only = t.size() == 10 && local_ok;
  if (date_only) {
    if (std::sscanf(t.c_str(), "%4d-%2d-%2d%n", &tm.tm_year, &tm.tm_mon,
                    &tm.tm_mday, &used) != 3 ||
        used != 10)
      return std::nullopt;
  } else if (std::sscanf(t.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year,
                         &tm.tm_mon, &tm.tm_mday, &tm.tm_hour, &tm.tm_min,
                         &tm.tm_sec, &used) != 6) {
    return std::nullopt;
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  size_t i = size_t(used);
  int64_t frac = 0;
  if (i < t.size() && t[i] == '.') {
    int64_t scale = 100'000'000;
    for (++i; i < t.size() && std::isdigit((unsigned char)t[i]); ++i) {
      frac += (t[i] - '0') * scale;
      scale /= 10;
    }
  }
  // Nanoseconds reach from 1678 to 2262; times beyond are the ends.
  auto in_ns = [frac](int64_t secs) {
    constexpr int64_t limit = INT64_MAX / 1'000'000'000 - 1;
    if (secs > limit || secs < -limit)
      return secs > 0 ? INT64_MAX : INT64_MIN;
    return secs * 1'000'000'000 + frac;
  };
  if (i == t.size() && local_ok) {
    tm.tm_isdst = -1;
    return in_ns(int64_t(std::mktime(&tm)));
  }
  int64_t secs = timegm(&tm);
  if (i + 1 == t.size() && (t[i] == 'Z' || t[i] == 'z'))
    return in_ns(secs);
  int oh = 0, om = 0, n = 0;
  if (i < t.size() && (t[i] == '+' || t[i] == '-') &&
      std::sscanf(t.c_str() + i + 1, "%2d:%2d%n", &oh, &om, &n) == 2 &&
      i + 1 + size_t(n) == t.size())
    return in_ns(secs - (t[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60));
  return std::nullopt;
}

/// A duration in Go's notation, like 10m, 1h30m, 1.5h or 250ms, in
/// nanoseconds.
std::optional<int64_t> duration_ns(std::string_view d) {
  struct unit {
    std::string_view name;
    double ns;
  };
  static constexpr unit units[] = {
      {"ns", 1},  {"us", 1e3}, {"\xc2\xb5s", 1e3}, {"ms", 1e6},
      {"s", 1e9}, {"m", 60e9}, {"h", 3600e9}};
  if (d.empty())
    return std::nullopt;
  double total = 0;
  while (!d.empty()) {
    size_t digits = 0;
    while (digits < d.size() &&
           (std::isdigit((unsigned char)d[digits]) || d[digits] == '.'))
      ++digits;
    std::string number{d.substr(0, digits)};
    char* end = nullptr;
    double n = std::strtod(number.c_str(), &end);
    if (digits == 0 || *end)
      return std::nullopt;
    d.remove_prefix(digits);
    size_t letters = 0;
    while (letters < d.size() && !std::isdigit((unsigned char)d[letters]) &&
           d[letters] != '.')
      ++letters;
    auto name = d.substr(0, letters);
    auto u = std::find_if(std::begin(units), std::end(units),
                          [&](const unit& x) { return x.name == name; });
    if (u == std::end(units))
      return std::nullopt;
    total += n * u->ns;
    d.remove_prefix(letters);
  }
  if (total >= 9.2e18)
    return std::nullopt;
  return int64_t(total);
}

// --since: a time, or a duration before now.
std::optional<int64_t> since_ns(const std::string& v) {
  if (auto t = time_ns(v, true))
    return t;
  if (auto d = duration_ns(v))
    return now_ns() - *d;
  return std::nullopt;
}

// ---------------------------------------------------------------------------
// Log lines

/// One k8s-file log line, `<time> <stdout|stderr> <P|F> <text>`.
struct log_record {
  bool well_formed = false;
  std::string_view time;
  bool is_stderr = false;
  bool partial = false;
  std::string_view text;
};

log_record parse_record(std::string_view line) {
  log_record r;
  if (line.ends_with('\n'))
    line.remove_suffix(1);
  auto s1 = line.find(' ');
  auto s2 = s1 == std::string_view::npos ? s1 : line.find(' ', s1 + 1);
  if (s2 == std::string_view::npos) {
    r.text = line;
    return r;
  }
  r.well_formed = true;
  r.time = line.substr(0, s1);
  r.is_stderr = line.substr(s1 + 1, s2 - s1 - 1) == "stderr";
  r.text = line.substr(s2 + 1);
  if (r.text.starts_with("P ") || r.text == "P" || r.text.starts_with("F ") ||
      r.text == "F") {
    r.partial = r.text[0] == 'P';
    r.text = r.text.size() > 1 ? r.text.substr(2) : std::string_view{};
  }
  return r;
}

// When a line was written; a line without a readable time counts as new.
int64_t written_at(std::string_view line) {
  auto r = parse_record(line);
  auto t = r.well_formed ? time_ns(std::string{r.time}, false) : std::nullopt;
  return t ? *t : INT64_MAX;
}

// The lines of a GetContainerLogs reply.
std::vector<std::string> lines_of(const varlink::reply& r) {
  std::vector<std::string> out;
  parsed_reply p{r.parameters};
  simdjson::dom::array lines;
  if (p.doc["container"].get(lines) != simdjson::SUCCESS)
    return out;
  for (auto l : lines) {
    std::string_view text;
    if (l.get(text) == simdjson::SUCCESS)
      out.emplace_back(text);
  }
  return out;
}

} // namespace

void log_printer::print(std::string_view line) {
  auto r = parse_record(line);
  if (!r.well_formed) {
    std::cout << r.text << '\n';
    return;
  }
  auto& out = r.is_stderr ? std::cerr : std::cout;
  bool& at_start = at_line_start_[r.is_stderr ? 1 : 0];
  if (timestamps_ && at_start)
    out << r.time << ' ';
  out << r.text;
  if (!r.partial)
    out << '\n';
  at_start = !r.partial;
}

size_t log_printer::print_reply(const varlink::reply& r, size_t skip) {
  auto lines = lines_of(r);
  for (size_t i = skip; i < lines.size(); ++i)
    print(lines[i]);
  std::cout.flush();
  std::cerr.flush();
  return lines.size();
}

namespace {

// ---------------------------------------------------------------------------
// logs

struct logs_request {
  bool follow = false;
  bool timestamps = false;
  int64_t tail = -1; ///< -1: every line
  std::optional<int64_t> since;
  std::string name;
};

logs_request parse_logs(const std::vector<std::string>& args) {
  logs_request r;
  std::vector<std::string> names;
  auto value = [&](size_t& i, const std::string& flag) -> std::string {
    auto& a = args[i];
    if (a.size() > flag.size())
      return a.substr(flag.size() + 1);
    if (i + 1 >= args.size())
      usage_error(flag + " needs a value");
    return args[++i];
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--follow" || a == "--timestamps") {
      (a == "--follow" ? r.follow : r.timestamps) = true;
    } else if (a == "--tail" || a.starts_with("--tail=")) {
      auto v = value(i, "--tail");
      char* end = nullptr;
      errno = 0;
      long long n = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || errno || n < -1)
        usage_error("invalid value for --tail: '" + v +
                    "' (expected a number of lines, or -1 for all)");
      r.tail = n;
    } else if (a == "--since" || a.starts_with("--since=")) {
      auto v = value(i, "--since");
      r.since = since_ns(v);
      if (!r.since)
        usage_error("invalid value for --since: '" + v +
                    "' (expected an RFC 3339 time or a duration like 10m)");
    } else if (a.size() > 1 && a[0] == '-' && a[1] != '-' &&
               a.find_first_not_of("ft", 1) == std::string::npos) {
      // -f, -t, or both grouped
      r.follow |= a.find('f') != std::string::npos;
      r.timestamps |= a.find('t') != std::string::npos;
    } else if (a.starts_with("-")) {
      usage_error("unknown option for logs: " + a);
    } else {
      names.push_back(a);
    }
  }
  if (names.size() != 1)
    usage_error("logs needs one container");
  r.name = names[0];
  return r;
}

/// Which of `lines` (the log so far) to show: the last `tail` lines
/// written since `since`. A line is its stream's partial (P) chunks and
/// the full (F) one that ends it, whatever the other stream wrote between
/// them; the chunks of a line not yet ended are shown.
std::vector<bool> shown_lines(const std::vector<std::string>& lines,
                              const logs_request& req) {
  size_t first = 0;
  if (req.since)
    while (first < lines.size() && written_at(lines[first]) < *req.since)
      ++first;
  std::vector<bool> shown(lines.size(), false);
  int64_t kept = 0;
  bool in_kept_line[2] = {true, true}; // stdout, stderr
  for (size_t i = lines.size(); i > first; --i) {
    auto r = parse_record(lines[i - 1]);
    bool& in_line = in_kept_line[r.is_stderr ? 1 : 0];
    if (!r.partial) {
      in_line = req.tail < 0 || kept < req.tail;
      kept += in_line ? 1 : 0;
    }
    shown[i - 1] = in_line;
  }
  return shown;
}

int logs(const std::string& addr, const std::vector<std::string>& args) {
  auto req = parse_logs(args);
  session s{addr};
  log_printer printer{req.timestamps};
  // `seen` lines came before these; of those in `so_far`, only the marked
  // ones are shown.
  std::vector<bool> so_far;
  size_t seen = 0;
  auto print = [&](const std::vector<std::string>& lines) {
    for (auto& l : lines) {
      bool show = seen < so_far.size()
                      ? bool(so_far[seen])
                      : !req.since || written_at(l) >= *req.since;
      if (show)
        printer.print(l);
      ++seen;
    }
    std::cout.flush();
    std::cerr.flush();
  };

  // The log so far: all there is without -f; with --tail, which to show.
  if (!req.follow || req.tail >= 0) {
    auto r = s.call("io.podman.GetContainerLogs", name_param(req.name));
    if (!r.error.empty())
      return report(r);
    auto lines = lines_of(r);
    so_far = shown_lines(lines, req);
    if (!req.follow) {
      print(lines);
      return ok;
    }
  }

  // The follow repeats the log from its start, then goes on as it grows.
  for (auto r = s.call("io.podman.GetContainerLogs", name_param(req.name),
                       {.more = true});
       ; r = s.next()) {
    if (!r.error.empty())
      return report(r);
    print(lines_of(r));
    if (!r.continues)
      return ok;
  }
}

// ---------------------------------------------------------------------------
// stats

struct stats_sample {
  std::string json; ///< the ContainerStats object as berthd sent it
  std::string id, name;
  double cpu = 0, mem_perc = 0;
  int64_t mem_usage = 0, mem_limit = 0, net_input = 0, net_output = 0,
          block_input = 0, block_output = 0, pids = 0;
};

std::optional<stats_sample> sample_of(const varlink::reply& r) {
  parsed_reply p{r.parameters};
  element c;
  if (p.doc["container"].get(c) != simdjson::SUCCESS || !c.is_object())
    return std::nullopt;
  stats_sample s;
  s.json = simdjson::minify(c);
  s.id = string_at(c, "id");
  s.name = string_at(c, "name");
  auto number = [&](const char* key, auto& out) {
    std::remove_reference_t<decltype(out)> v{};
    if (c[key].get(v) == simdjson::SUCCESS)
      out = v;
  };
  number("cpu", s.cpu);
  number("mem_perc", s.mem_perc);
  number("mem_usage", s.mem_usage);
  number("mem_limit", s.mem_limit);
  number("net_input", s.net_input);
  number("net_output", s.net_output);
  number("block_input", s.block_input);
  number("block_output", s.block_output);
  number("pids", s.pids);
  return s;
}

// Bytes in decimal units with four significant digits, as podman shows
// them: 671.7kB, 25.28GB.
std::string human_size(double bytes) {
  static const char* units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
  size_t u = 0;
  while (bytes >= 1000 && u + 1 < std::size(units)) {
    bytes /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g%s", bytes, units[u]);
  return buf;
}

std::string percent(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f%%", v);
  return buf;
}

void print_stats(const std::vector<const stats_sample*>& samples,
                 bool as_json) {
  if (as_json) {
    std::cout << '[';
    for (size_t i = 0; i < samples.size(); ++i)
      std::cout << (i ? "," : "") << samples[i]->json;
    std::cout << "]\n";
    return;
  }
  auto pair = [](int64_t a, int64_t b) {
    return human_size(double(a)) + " / " + human_size(double(b));
  };
  std::vector<std::vector<std::string>> rows{{"ID", "NAME", "CPU %",
                                              "MEM USAGE / LIMIT", "MEM %",
                                              "NET IO", "BLOCK IO", "PIDS"}};
  for (auto* s : samples)
    rows.push_back({s->id.substr(0, 12), s->name, percent(s->cpu),
                    pair(s->mem_usage, s->mem_limit), percent(s->mem_perc),
                    pair(s->net_input, s->net_output),
                    pair(s->block_input, s->block_output),
                    std::to_string(s->pids)});
  print_table(rows);
}

// A container that stopped or went away after we listed it is no error
// when showing all running containers.
bool gone(const varlink::reply& r) {
  return r.error == "io.podman.NoContainerRunning" ||
         r.error == "io.podman.ContainerNotFound";
}

int report_stats_error(const varlink::reply& r, const std::string& name) {
  if (r.error == "io.podman.NoContainerRunning") {
    std::cerr << "Error: container " << name << " is not running\n";
    return remote_error;
  }
  return report(r);
}

// The IDs of the running containers.
std::vector<std::string> running_containers(session& s) {
  auto r = s.call("io.podman.ListContainers", "");
  if (!r.error.empty())
    std::exit(report(r));
  std::vector<std::string> ids;
  parsed_reply p{r.parameters};
  simdjson::dom::array list;
  if (p.doc["containers"].get(list) == simdjson::SUCCESS)
    for (auto c : list)
      if (string_at(c, "status") == "running")
        ids.push_back(string_at(c, "id"));
  return ids;
}

int stats_once(session& s, const std::vector<std::string>& names, bool all,
               bool as_json) {
  int rc = ok;
  std::vector<stats_sample> samples;
  for (auto& n : names) {
    auto r = s.call("io.podman.GetContainerStats", name_param(n));
    if (!r.error.empty()) {
      if (!(all && gone(r)))
        rc = report_stats_error(r, n);
      continue;
    }
    if (auto sample = sample_of(r))
      samples.push_back(std::move(*sample));
  }
  std::vector<const stats_sample*> shown;
  for (auto& sample : samples)
    shown.push_back(&sample);
  if (rc == ok || !shown.empty())
    print_stats(shown, as_json);
  return rc;
}

/// One container's `more` stats stream, on a connection of its own.
struct stats_watch {
  std::string name;
  session conn;
  reply_reader in;
  std::optional<stats_sample> last;
  bool ended = false;

  stats_watch(const std::string& addr, const std::string& n)
    : name(n), conn(addr), in(conn.conn.fd()) {
    if (!conn.conn.send("io.podman.GetContainerStats", name_param(n),
                        {.more = true})) {
      std::cerr << "berth: GetContainerStats: connection lost\n";
      std::exit(failure);
    }
  }
};

// The live table: redrawn every second with each container's latest
// sample; a container whose stream ends (it stopped) drops out, and the
// command ends when none is left.
int stats_live(const std::string& addr, const std::vector<std::string>& names,
               bool all, bool as_json) {
  using clock = std::chrono::steady_clock;
  std::vector<std::unique_ptr<stats_watch>> watches;
  for (auto& n : names)
    watches.push_back(std::make_unique<stats_watch>(addr, n));
  int rc = ok;
  auto handle = [&](stats_watch& w, const varlink::reply& r) {
    if (!r.error.empty()) {
      if (!w.last && !(all && gone(r)))
        rc = report_stats_error(r, w.name);
      w.ended = true;
      return;
    }
    if (auto s = sample_of(r))
      w.last = std::move(*s);
    w.ended = !r.continues;
  };

  bool drawn = false;
  auto next_draw = clock::now() + std::chrono::seconds(1);
  for (;;) {
    for (auto& w : watches) {
      varlink::reply r;
      for (auto st = reply_reader::status::none;
           !w->ended && (st = w->in.take(r)) != reply_reader::status::none;) {
        if (st == reply_reader::status::malformed) {
          std::cerr << "berth: stats of " << w->name << ": malformed reply\n";
          rc = failure;
          w->ended = true;
        } else {
          handle(*w, r);
        }
      }
    }
    std::erase_if(watches, [](auto& w) { return w->ended; });
    if (watches.empty())
      return rc;

    auto now = clock::now();
    bool all_sampled = std::all_of(watches.begin(), watches.end(),
                                   [](auto& w) { return bool(w->last); });
    if ((!drawn && all_sampled) || now >= next_draw) {
      std::vector<const stats_sample*> shown;
      for (auto& w : watches)
        if (w->last)
          shown.push_back(&*w->last);
      if (!as_json && isatty(STDOUT_FILENO))
        std::cout << "\033[2J\033[H";
      print_stats(shown, as_json);
      std::cout.flush();
      drawn = true;
      next_draw = now + std::chrono::seconds(1);
    }

    std::vector<pollfd> fds;
    for (auto& w : watches)
      fds.push_back({w->in.fd(), POLLIN, 0});
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(
        next_draw - clock::now());
    int n =
        ::poll(fds.data(), fds.size(), int(std::max<int64_t>(0, wait.count())));
    if (n < 0 && errno != EINTR) {
      std::cerr << "berth: poll: " << std::strerror(errno) << '\n';
      return failure;
    }
    for (size_t i = 0; n > 0 && i < fds.size(); ++i)
      if (fds[i].revents && !watches[i]->in.fill()) {
        std::cerr << "berth: stats of " << watches[i]->name
                  << ": connection lost\n";
        rc = failure;
        watches[i]->ended = true;
      }
  }
}

int stats(const std::string& addr, const std::vector<std::string>& args) {
  bool no_stream = false, as_json = false;
  std::vector<std::string> names;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--no-stream")
      no_stream = true;
    else if (a == "--format=json" ||
             (a == "--format" && i + 1 < args.size() && args[++i] == "json"))
      as_json = true;
    else if (a.starts_with("-"))
      usage_error("unknown option for stats: " + a +
                  " (stats takes --no-stream, --format json)");
    else
      names.push_back(a);
  }
  bool all = names.empty();
  session s{addr};
  if (all)
    names = running_containers(s);
  if (no_stream || !isatty(STDOUT_FILENO) || names.empty())
    return stats_once(s, names, all, as_json);
  return stats_live(addr, names, all, as_json);
}

// ---------------------------------------------------------------------------
// top

int top(const std::string& addr, const std::vector<std::string>& args) {
  if (args.empty())
    usage_error("top needs a container");
  std::vector<std::string> descriptors;
  for (size_t i = 1; i < args.size(); ++i) {
    if (args[i].starts_with("-"))
      usage_error("unknown option for top: " + args[i]);
    // "pid,user" and "pid user" alike
    size_t from = 0;
    for (auto comma = args[i].find(','); from <= args[i].size();
         comma = args[i].find(',', from)) {
      auto d = args[i].substr(from, comma - from);
      if (!d.empty())
        descriptors.push_back(d);
      if (comma == std::string::npos)
        break;
      from = comma + 1;
    }
  }
  session s{addr};
  auto r = s.call(
      "io.podman.ListContainerProcesses",
      params_of(podman::ListContainerProcesses_in{args[0], descriptors}));
  if (!r.error.empty())
    return report(r);
  std::vector<std::vector<std::string>> rows;
  parsed_reply p{r.parameters};
  simdjson::dom::array list;
  if (p.doc["container"].get(list) == simdjson::SUCCESS)
    for (auto row : list) {
      std::string_view text;
      if (row.get(text) != simdjson::SUCCESS)
        continue;
      std::vector<std::string> cells;
      for (size_t from = 0;;) {
        auto tab = text.find('\t', from);
        cells.emplace_back(text.substr(from, tab - from));
        if (tab == std::string_view::npos)
          break;
        from = tab + 1;
      }
      rows.push_back(std::move(cells));
    }
  print_table(rows);
  return ok;
}

// ---------------------------------------------------------------------------
// attach: the local terminal

// The terminal's settings before it was made raw, for every way out.
termios saved_terminal;
bool terminal_is_raw = false;

void restore_terminal() {
  if (terminal_is_raw &&
      tcsetattr(STDIN_FILENO, TCSADRAIN, &saved_terminal) == 0)
    terminal_is_raw = false;
}

// Raw input and output, so every key reaches the container's terminal
// (which does its own echo and line editing) and its output is shown as
// sent.
void make_terminal_raw() {
  termios t{};
  if (tcgetattr(STDIN_FILENO, &t) != 0)
    return;
  saved_terminal = t;
  cfmakeraw(&t);
  if (tcsetattr(STDIN_FILENO, TCSADRAIN, &t) != 0)
    return;
  terminal_is_raw = true;
  static bool restore_at_exit = (std::atexit(restore_terminal), true);
  (void)restore_at_exit;
}

// "ROWS COLS" of the local terminal.
std::optional<std::string> terminal_size() {
  for (int fd : {STDIN_FILENO, STDOUT_FILENO}) {
    winsize ws{};
    if (::ioctl(fd, TIOCGWINSZ, &ws) == 0 && ws.ws_row > 0 && ws.ws_col > 0)
      return std::to_string(ws.ws_row) + " " + std::to_string(ws.ws_col);
  }
  return std::nullopt;
}

// Signals reach the relay loop through a pipe.
int signal_pipe[2] = {-1, -1};

void on_signal(int sig) {
  int saved = errno;
  unsigned char b = (unsigned char)sig;
  if (::write(signal_pipe[1], &b, 1) < 0) {
    // nop: the pipe is full, so the loop wakes anyway
  }
  errno = saved;
}

constexpr int relayed_signals[] = {SIGWINCH, SIGINT, SIGTERM, SIGHUP, SIGQUIT};

void catch_signals() {
  if (signal_pipe[0] < 0 && ::pipe2(signal_pipe, O_CLOEXEC | O_NONBLOCK) < 0) {
    std::cerr << "berth: pipe: " << std::strerror(errno) << '\n';
    std::exit(engine_failed);
  }
  struct sigaction sa{};
  sa.sa_handler = on_signal;
  sa.sa_flags = SA_RESTART;
  sigemptyset(&sa.sa_mask);
  for (int sig : relayed_signals)
    sigaction(sig, &sa, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    auto n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data.remove_prefix(size_t(n));
  }
  return true;
}

// ---------------------------------------------------------------------------
// attach: the relay

// Frame types of Attach's framing (see the method in io.podman.varlink).
enum : uint8_t { frame_stdin = 0, frame_resize = 1, frame_stdin_end = 2 };
enum : uint8_t { frame_stdout = 1, frame_stderr = 2, frame_end = 3 };

constexpr uint32_t max_frame = 16u << 20;

/// An attached connection, after Attach's reply: the container's output
/// to ours, our input and terminal size to the container, signals to the
/// container, until the end frame.
class attach_relay {
public:
  attach_relay(std::string addr, std::string name, session& s, reply_reader& in,
               const attach_options& opts)
    : addr_(std::move(addr)), name_(std::move(name)), conn_(s.conn), in_(in),
      opts_(opts), reading_stdin_(opts.relay_stdin) {}

  int run() {
    if (opts_.tty)
      send_size();
    for (;;) {
      if (auto status = take_frames())
        return finish(*status);
      pollfd fds[] = {{in_.fd(), POLLIN, 0},
                      {signal_pipe[0], POLLIN, 0},
                      {reading_stdin_ ? STDIN_FILENO : -1, POLLIN, 0}};
      if (::poll(fds, 3, -1) < 0) {
        if (errno == EINTR)
          continue;
        return fail(std::string{"poll: "} + std::strerror(errno));
      }
      if (fds[1].revents)
        if (auto status = take_signals())
          return finish(*status);
      if (fds[0].revents && !in_.fill())
        return fail("connection lost");
      if (fds[2].revents)
        relay_stdin();
    }
  }

private:
  bool send_frame(uint8_t type, std::string_view payload) {
    std::string f(5, '\0');
    f[0] = char(type);
    uint32_t n = htonl(uint32_t(payload.size()));
    std::memcpy(&f[1], &n, 4);
    f.append(payload);
    return conn_.write_raw(f);
  }

  void send_size() {
    if (auto size = terminal_size())
      send_frame(frame_resize, *size);
  }

  // Input to the container; at its end, the end of stdin frame.
  void relay_stdin() {
    char buf[32768];
    auto n = ::read(STDIN_FILENO, buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
      return;
    if (n > 0) {
      send_frame(frame_stdin, {buf, size_t(n)});
      return;
    }
    send_frame(frame_stdin_end, {});
    reading_stdin_ = false;
  }

  // Shows every complete frame received; the status once the end frame
  // came (or the output could not be written).
  std::optional<int> take_frames() {
    auto& buf = in_.rest();
    size_t at = 0;
    std::optional<int> status;
    while (!status && buf.size() - at >= 5) {
      uint32_t len = 0;
      std::memcpy(&len, buf.data() + at + 1, 4);
      len = ntohl(len);
      if (len > max_frame)
        return fail("malformed frame from berthd");
      if (buf.size() - at - 5 < len)
        break;
      auto type = uint8_t(buf[at]);
      std::string_view payload{buf.data() + at + 5, len};
      at += 5 + len;
      if (type == frame_end)
        status = end_status(std::string{payload});
      else if ((type == frame_stdout || type == frame_stderr) &&
               !write_all(type == frame_stdout ? STDOUT_FILENO : STDERR_FILENO,
                          payload))
        status = fail(std::string{"writing output: "} + std::strerror(errno),
                      failure);
    }
    buf.erase(0, at);
    return status;
  }

  // The end frame's payload: the container's exit code, or "detached".
  int end_status(const std::string& payload) {
    if (payload == "detached")
      return ok;
    char* end = nullptr;
    long code = std::strtol(payload.c_str(), &end, 10);
    if (payload.empty() || *end || code < 0 || code > 255)
      return fail("unexpected end of attach: " + payload);
    return int(code);
  }

  // A resize follows the terminal; any other signal goes to the container
  // (as podman's --sig-proxy), and a second one ends berth itself.
  std::optional<int> take_signals() {
    unsigned char sigs[64];
    auto n = ::read(signal_pipe[0], sigs, sizeof sigs);
    for (ssize_t i = 0; i < n; ++i) {
      int sig = sigs[i];
      if (sig == SIGWINCH) {
        if (opts_.tty)
          send_size();
        continue;
      }
      if (stop_signals_++ > 0) {
        restore_terminal();
        ::signal(sig, SIG_DFL);
        ::raise(sig);
        return 128 + sig;
      }
      proxy(sig);
    }
    return std::nullopt;
  }

  // KillContainer on a connection of its own; a failure only means the
  // container is gone already.
  void proxy(int sig) {
    auto a = varlink::address::parse(addr_);
    varlink::client c;
    std::string err;
    varlink::reply r;
    if (a && c.connect(*a, err) &&
        c.send("io.podman.KillContainer",
               params_of(podman::KillContainer_in{name_, sig})))
      c.receive(r, err);
  }

  int fail(const std::string& what, int status = engine_failed) {
    restore_terminal();
    std::cerr << "berth: attach to " << name_ << ": " << what << '\n';
    return status;
  }

  int finish(int status) {
    restore_terminal();
    return status;
  }

  std::string addr_;
  std::string name_;
  varlink::client& conn_;
  reply_reader& in_;
  attach_options opts_;
  bool reading_stdin_;
  int stop_signals_ = 0;
};

// The container's Config: whether it has a terminal and an open stdin.
std::optional<std::pair<bool, bool>> terminal_config(session& s,
                                                     const std::string& name) {
  auto r = s.call("io.podman.InspectContainer", name_param(name));
  if (!r.error.empty()) {
    report(r, engine_failed);
    return std::nullopt;
  }
  parsed_reply inspect{string_at(parsed_reply{r.parameters}.doc, "container")};
  bool tty = false, open_stdin = false;
  element config;
  if (inspect.doc["Config"].get(config) == simdjson::SUCCESS) {
    if (config["Tty"].get(tty) != simdjson::SUCCESS)
      tty = false;
    if (config["OpenStdin"].get(open_stdin) != simdjson::SUCCESS)
      open_stdin = false;
  }
  return std::pair{tty, open_stdin};
}

int attach(const std::string& addr, const std::vector<std::string>& args) {
  attach_options opts;
  opts.from_container = true;
  std::vector<std::string> names;
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    if (a == "--no-stdin") {
      opts.relay_stdin = false;
    } else if (a == "--detach-keys") {
      if (i + 1 >= args.size())
        run_usage_error("--detach-keys needs a value");
      opts.detach_keys = args[++i];
    } else if (a.starts_with("--detach-keys=")) {
      opts.detach_keys = a.substr(14);
    } else if (a.starts_with("-")) {
      run_usage_error("unknown option for attach: " + a);
    } else {
      names.push_back(a);
    }
  }
  if (names.size() != 1)
    run_usage_error("attach needs one container");
  return attach_to(addr, names[0], opts).status;
}

} // namespace

attach_outcome attach_to(const std::string& addr, const std::string& name,
                         const attach_options& options) {
  auto opts = options;
  session s{addr};
  if (opts.from_container) {
    auto config = terminal_config(s, name);
    if (!config)
      return {false, engine_failed};
    opts.tty = config->first;
    opts.relay_stdin = opts.relay_stdin && config->second;
  }

  // The reply, read with our own buffer: frames may follow it at once.
  std::cout.flush();
  std::cerr.flush();
  reply_reader in{s.conn.fd()};
  varlink::reply r;
  if (!s.conn.send(
          "io.podman.Attach",
          params_of(podman::Attach_in{name, opts.detach_keys, opts.start}),
          {.upgrade = true}) ||
      !in.wait(r)) {
    std::cerr << "berth: io.podman.Attach: connection lost\n";
    return {false, engine_failed};
  }
  if (!r.error.empty())
    return {false,
            report(r, opts.start ? start_failure_code(r) : engine_failed)};

  catch_signals();
  if (opts.tty && opts.relay_stdin && isatty(STDIN_FILENO))
    make_terminal_raw();
  return {true, attach_relay{addr, name, s, in, opts}.run()};
}

bool is_stream_command(const std::string& verb) {
  return verb == "logs" || verb == "stats" || verb == "top" || verb == "attach";
}

int stream_command(const std::string& addr, const std::string& verb,
                   const std::vector<std::string>& args) {
  if (verb == "logs")
    return logs(addr, args);
  if (verb == "stats")
    return stats(addr, args);
  if (verb == "top")
    return top(addr, args);
  if (verb == "attach")
    return attach(addr, args);
  usage_error("unknown command: " + verb);
}

} // namespace berth::cli
