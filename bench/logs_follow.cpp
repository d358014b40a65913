// berth-logs-follow: follows one container's log, through berthd's
// GetContainerLogs with `more` or through `podman logs -f`, checks every line
// against what the container was told to write, and times the delivery.
//
// berth:  --berth SOCK --container ID [--berthd-pid PID] CHECK
//         Calls GetContainerLogs (more) on one connection; once its first
//         reply is in, StartContainer on a second one. Reads to the final
//         reply. Records are the raw k8s-file lines berthd sends
//         (`<RFC3339Nano> <stream> <P|F> <text>\n`); P records are joined.
// podman: --podman ID [--log-file PATH] CHECK -- PODMAN_ARGV...
//         Runs `PODMAN_ARGV start ID`, then `PODMAN_ARGV logs -f ID` (with -t
//         under --seq) and reads its standard output to its end. podman's
//         follow returns at once for a container that was never started, so
//         its follower can only be started after the container.
// --replay: the container has exited; its whole log is read (berth: the
//         same call, no start; podman: `logs` without -f) and timed from the
//         request.
// CHECK:  --text S --repeat K --lines N   every line is S repeated K times
//         --seq N                         lines are "0", "1", ... "N-1";
//                                         each line's latency is taken
// Both: --timeout S (no byte for S seconds fails the run, default 120);
// --log-file PATH: the container's k8s-file log, read after the run for the
// span conmon stamped and the whole lines it holds.
// --span-only PATH: only that, for a container run without a follower.
//
// Latency of a line = CLOCK_REALTIME when the read that completed it
// returned, minus the timestamp conmon put on it when it read the line from
// the container's pipe. The follower's CPU (berthd, or the `podman logs`
// process) is counted from the first line received to the end; berthd's peak
// RSS is reset (clear_refs) before the start.
//
// Prints one JSON object. Exit status: 0 when every line arrived intact and
// in order; 1 when one was lost, changed, or the run failed.

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

namespace {

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "berth-logs-follow: %s\n", what.c_str());
  std::exit(1);
}

uint64_t wall_ns() {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// ---------------------------------------------------------------- options

struct options {
  std::string berth_sock;
  std::string podman_id;
  std::vector<std::string> podman_argv;
  std::string container;
  std::string log_file;
  pid_t berthd_pid = 0;
  std::string text;
  uint64_t repeat = 1;
  uint64_t lines = 0;
  uint64_t seq = 0;
  bool seq_mode = false;
  bool replay = false;
  int timeout_s = 120;
};

void usage() {
  std::fprintf(stderr,
               "usage: berth-logs-follow --berth SOCK --container ID "
               "[--berthd-pid PID] CHECK\n"
               "       berth-logs-follow --podman ID [--log-file PATH] CHECK "
               "-- PODMAN_ARGV...\n"
               "CHECK: --text S --repeat K --lines N | --seq N; "
               "[--replay] [--timeout S]\n"
               "       berth-logs-follow --span-only LOG_FILE\n");
  std::exit(2);
}

uint64_t to_u64(const char* v) {
  char* end = nullptr;
  auto u = std::strtoull(v, &end, 10);
  if (!end || *end || v[0] == '-' || v[0] == 0)
    die(std::string("not a number: ") + v);
  return u;
}

options parse_args(int argc, char** argv) {
  options o;
  int i = 1;
  auto val = [&]() -> const char* {
    if (i + 1 >= argc)
      usage();
    return argv[++i];
  };
  for (; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--") {
      o.podman_argv.assign(argv + i + 1, argv + argc);
      break;
    }
    if (a == "--berth")
      o.berth_sock = val();
    else if (a == "--container")
      o.container = val();
    else if (a == "--podman")
      o.podman_id = val();
    else if (a == "--log-file")
      o.log_file = val();
    else if (a == "--berthd-pid")
      o.berthd_pid = pid_t(to_u64(val()));
    else if (a == "--text")
      o.text = val();
    else if (a == "--repeat")
      o.repeat = to_u64(val());
    else if (a == "--lines")
      o.lines = to_u64(val());
    else if (a == "--seq")
      o.seq = to_u64(val()), o.seq_mode = true;
    else if (a == "--replay")
      o.replay = true;
    else if (a == "--timeout")
      o.timeout_s = int(to_u64(val()));
    else
      usage();
  }
  bool berth = !o.berth_sock.empty() && !o.container.empty();
  bool podman = !o.podman_id.empty() && !o.podman_argv.empty();
  if (berth == podman || (!o.seq_mode && (o.text.empty() || o.lines == 0)))
    usage();
  return o;
}

// ---------------------------------------------------------------- timestamps

int64_t days_from_civil(int64_t y, unsigned m, unsigned d) {
  y -= m <= 2;
  int64_t era = (y >= 0 ? y : y - 399) / 400;
  auto yoe = unsigned(y - era * 400);
  unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
  unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + int64_t(doe) - 719468;
}

bool digits(std::string_view s, size_t at, size_t n, int& out) {
  if (at + n > s.size())
    return false;
  out = 0;
  for (size_t i = at; i < at + n; ++i) {
    if (s[i] < '0' || s[i] > '9')
      return false;
    out = out * 10 + (s[i] - '0');
  }
  return true;
}

// RFC 3339 with an optional fraction and a `Z` or `+hh:mm` offset, as conmon
// and `podman logs -t` write it; nanoseconds since the epoch, 0 if malformed.
uint64_t parse_ts(std::string_view s) {
  int y, mo, d, h, mi, se;
  if (!digits(s, 0, 4, y) || !digits(s, 5, 2, mo) || !digits(s, 8, 2, d) ||
      !digits(s, 11, 2, h) || !digits(s, 14, 2, mi) || !digits(s, 17, 2, se))
    return 0;
  size_t i = 19;
  int64_t frac = 0, scale = 1000000000;
  if (i < s.size() && s[i] == '.')
    for (++i; i < s.size() && s[i] >= '0' && s[i] <= '9'; ++i)
      if (scale > 1)
        scale /= 10, frac += (s[i] - '0') * scale;
  int64_t offset = 0;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) {
    int oh, om;
    if (!digits(s, i + 1, 2, oh) || !digits(s, i + 4, 2, om))
      return 0;
    offset = (s[i] == '+' ? 1 : -1) * (oh * 3600 + om * 60);
  }
  int64_t secs = days_from_civil(y, unsigned(mo), unsigned(d)) * 86400 +
                 h * 3600 + mi * 60 + se - offset;
  return uint64_t(secs) * 1000000000ull + uint64_t(frac);
}

// ---------------------------------------------------------------- process

struct proc_sample {
  double cpu_s = 0;
  uint64_t rss_kb = 0;
  uint64_t hwm_kb = 0;
};

// utime + stime of the whole thread group (exited threads included), and
// VmRSS / VmHWM.
proc_sample sample(pid_t pid) {
  proc_sample out;
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string all((std::istreambuf_iterator<char>(stat)), {});
  auto paren = all.rfind(')');
  if (paren != std::string::npos) {
    std::istringstream in(all.substr(paren + 2));
    std::string field;
    unsigned long long ut = 0, st = 0;
    for (int k = 3; k <= 15 && in >> field; ++k)
      if (k == 14)
        ut = std::strtoull(field.c_str(), nullptr, 10);
      else if (k == 15)
        st = std::strtoull(field.c_str(), nullptr, 10);
    out.cpu_s = double(ut + st) / double(sysconf(_SC_CLK_TCK));
  }
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string key;
  uint64_t kb;
  while (status >> key) {
    if (key == "VmRSS:" && status >> kb)
      out.rss_kb = kb;
    else if (key == "VmHWM:" && status >> kb)
      out.hwm_kb = kb;
  }
  return out;
}

void reset_peak_rss(pid_t pid) {
  std::ofstream f("/proc/" + std::to_string(pid) + "/clear_refs");
  f << "5";
}

// ---------------------------------------------------------------- checking

// What arrived, line by line, against what the container was told to write.
class ledger {
public:
  explicit ledger(const options& o) : o_(o) {
    if (!o.seq_mode)
      for (uint64_t k = 0; k < o.repeat; ++k)
        expected_ += o.text;
  }

  /// One k8s-file record (without its newline), read at `rx`.
  void record(std::string_view rec, uint64_t rx) {
    ++records_;
    auto s1 = rec.find(' ');
    auto s2 = s1 == rec.npos ? s1 : rec.find(' ', s1 + 1);
    if (s2 == rec.npos || s2 + 2 > rec.size() ||
        (s2 + 2 < rec.size() && rec[s2 + 2] != ' ')) {
      note_bad(rec);
      return;
    }
    auto ts = rec.substr(0, s1);
    if (records_ == 1)
      first_ts_ = parse_ts(ts);
    last_ts_.assign(ts);
    if (rec.substr(s1 + 1, s2 - s1 - 1) != "stdout")
      ++stderr_records_;
    auto text = s2 + 3 <= rec.size() ? rec.substr(s2 + 3) : std::string_view{};
    if (rec[s2 + 1] == 'P') {
      ++partial_records_;
      partial_.append(text);
      return;
    }
    if (partial_.empty()) {
      line(text, ts, rx);
    } else {
      partial_.append(text);
      line(partial_, ts, rx);
      partial_.clear();
    }
  }

  /// One whole line as `podman logs` prints it; with `-t` it starts with
  /// its timestamp.
  void printed(std::string_view l, bool stamped, uint64_t rx) {
    if (!stamped)
      return line(l, {}, rx);
    auto sp = l.find(' ');
    if (sp == l.npos)
      return note_bad(l);
    line(l.substr(sp + 1), l.substr(0, sp), rx);
  }

  void line(std::string_view text, std::string_view ts, uint64_t rx) {
    ++lines_;
    payload_ += text.size() + 1;
    if (lines_ == 1)
      first_rx_ = rx;
    last_rx_ = rx;
    if (o_.seq_mode)
      return seq_line(text, ts, rx);
    if (text != expected_)
      note_bad(text);
  }

  bool intact() const {
    return bad_ == 0 && partial_.empty() && lines_ == expected_lines() &&
           payload_ == expected_bytes();
  }
  uint64_t expected_lines() const { return o_.seq_mode ? o_.seq : o_.lines; }
  uint64_t expected_bytes() const {
    if (!o_.seq_mode)
      return o_.lines * (expected_.size() + 1);
    uint64_t n = 0;
    for (uint64_t k = 0; k < o_.seq; ++k)
      n += std::to_string(k).size() + 1;
    return n;
  }

  void write_json(FILE* out) const;

  uint64_t first_ts() const { return first_ts_; }
  uint64_t last_ts() const { return parse_ts(last_ts_); }
  uint64_t first_rx() const { return first_rx_; }
  uint64_t lines() const { return lines_; }
  void set_write_span(uint64_t first, uint64_t last) {
    first_ts_ = first;
    last_ts_override_ = last;
  }
  uint64_t write_end() const {
    return last_ts_override_ ? last_ts_override_ : last_ts();
  }

private:
  void seq_line(std::string_view text, std::string_view ts, uint64_t rx) {
    // A lost or repeated line shows as a jump; counting resumes after it.
    char* end = nullptr;
    std::string copy(text);
    auto n = std::strtoull(copy.c_str(), &end, 10);
    if (copy.empty() || *end != 0 || n != next_seq_)
      note_bad(text);
    next_seq_ = n + 1;
    auto t = parse_ts(ts);
    if (t == 0)
      ++unstamped_;
    else
      latency_ns_.push_back(int64_t(rx) - int64_t(t));
  }

  void note_bad(std::string_view what) {
    if (bad_++ == 0)
      first_bad_.assign(what.substr(0, 120));
  }

  const options& o_;
  std::string expected_;
  std::string partial_;
  uint64_t records_ = 0, partial_records_ = 0, stderr_records_ = 0;
  uint64_t lines_ = 0, payload_ = 0, bad_ = 0, unstamped_ = 0;
  uint64_t next_seq_ = 0;
  uint64_t first_ts_ = 0, last_ts_override_ = 0;
  uint64_t first_rx_ = 0, last_rx_ = 0;
  std::string last_ts_;
  std::string first_bad_;
  std::vector<int64_t> latency_ns_;
};

std::string json_text(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\')
      out += '\\', out += char(c);
    else if (c < 0x20 || c >= 0x7f)
      out += "?";
    else
      out += char(c);
  }
  return out + "\"";
}

double pct_ms(std::vector<int64_t> v, double p) {
  if (v.empty())
    return NAN;
  std::sort(v.begin(), v.end());
  auto rank = size_t(std::ceil(p / 100 * double(v.size())));
  return double(v[rank > 0 ? rank - 1 : 0]) / 1e6;
}

void ledger::write_json(FILE* out) const {
  std::fprintf(out,
               "\"records\":%" PRIu64 ",\"partial_records\":%" PRIu64
               ",\"stderr_records\":%" PRIu64 ",\"lines\":%" PRIu64
               ",\"payload_bytes\":%" PRIu64 ",\"expected_lines\":%" PRIu64
               ",\"expected_bytes\":%" PRIu64 ",\"bad_lines\":%" PRIu64
               ",\"first_bad\":%s,\"unterminated\":%zu,\"intact\":%s,"
               "\"first_write_ns\":%" PRIu64 ",\"last_write_ns\":%" PRIu64
               ",\"first_rx_ns\":%" PRIu64 ",\"last_rx_ns\":%" PRIu64,
               records_, partial_records_, stderr_records_, lines_, payload_,
               expected_lines(), expected_bytes(), bad_,
               json_text(first_bad_).c_str(), partial_.size(),
               intact() ? "true" : "false", first_ts_, write_end(), first_rx_,
               last_rx_);
  if (!o_.seq_mode)
    return;
  std::fprintf(out, ",\"unstamped\":%" PRIu64 ",\"latency_ms\":[", unstamped_);
  for (size_t i = 0; i < latency_ns_.size(); ++i)
    std::fprintf(out, "%s%.3f", i ? "," : "", double(latency_ns_[i]) / 1e6);
  std::fprintf(out, "],\"p50_ms\":%.3f,\"p99_ms\":%.3f,\"max_ms\":%.3f",
               pct_ms(latency_ns_, 50), pct_ms(latency_ns_, 99),
               pct_ms(latency_ns_, 100));
}

// ---------------------------------------------------------------- reading

// Waits up to `timeout_s` for `fd` to be readable, then reads.
ssize_t read_some(int fd, char* buf, size_t n, int timeout_s) {
  pollfd p{fd, POLLIN, 0};
  int rc;
  do
    rc = poll(&p, 1, timeout_s * 1000);
  while (rc < 0 && errno == EINTR);
  if (rc == 0)
    die("nothing arrived for " + std::to_string(timeout_s) + " s");
  ssize_t got;
  do
    got = read(fd, buf, n);
  while (got < 0 && errno == EINTR);
  if (got < 0)
    die(std::string("reading: ") + std::strerror(errno));
  return got;
}

// Splits a byte stream at a delimiter; `on_item` gets each item and the
// time the read that completed it returned. Returns at EOF, or when
// `on_item` returns false.
template <class F>
void split_stream(int fd, char delim, int timeout_s, F&& on_item) {
  std::vector<char> buf(4 << 20);
  size_t have = 0;
  for (;;) {
    if (have == buf.size())
      buf.resize(buf.size() * 2);
    auto got = read_some(fd, buf.data() + have, buf.size() - have, timeout_s);
    auto rx = wall_ns();
    if (got == 0) {
      if (have > 0)
        on_item(std::string_view(buf.data(), have), rx);
      return;
    }
    size_t scanned = have, start = 0;
    have += size_t(got);
    while (auto* hit = static_cast<char*>(
               std::memchr(buf.data() + scanned, delim, have - scanned))) {
      size_t end = size_t(hit - buf.data());
      if (!on_item(std::string_view(buf.data() + start, end - start), rx))
        return;
      start = scanned = end + 1;
    }
    std::memmove(buf.data(), buf.data() + start, have - start);
    have -= start;
  }
}

// ---------------------------------------------------------------- varlink

// Just enough JSON for `{"parameters":{"container":[...]},"continues":true}`
// and `{"error":"...","parameters":{...}}`: other members are skipped.
class reply_parser {
public:
  reply_parser(std::string_view msg) : p_(msg.data()), end_(p_ + msg.size()) {}

  /// Calls `on_line` with every string of parameters.container.
  template <class F>
  bool parse(F&& on_line) {
    if (!consume('{'))
      return false;
    if (consume('}'))
      return true;
    do {
      std::string key;
      if (!string(key) || !consume(':'))
        return false;
      bool ok = key == "parameters"  ? parameters(on_line)
                : key == "continues" ? literal(continues)
                : key == "error"     ? string(error)
                                     : skip();
      if (!ok)
        return false;
    } while (consume(','));
    return consume('}');
  }

  bool continues = false;
  std::string error;

private:
  template <class F>
  bool parameters(F&& on_line) {
    if (!consume('{'))
      return false;
    if (consume('}'))
      return true;
    do {
      std::string key;
      if (!string(key) || !consume(':'))
        return false;
      bool list = key == "container" && peek() != '"';
      if (!(list ? lines(on_line) : skip()))
        return false;
    } while (consume(','));
    return consume('}');
  }

  template <class F>
  bool lines(F&& on_line) {
    if (peek() == 'n')
      return word("null");
    if (!consume('['))
      return false;
    if (consume(']'))
      return true;
    std::string s;
    do {
      s.clear();
      if (!string(s))
        return false;
      on_line(std::string_view(s));
    } while (consume(','));
    return consume(']');
  }

  char peek() {
    while (p_ < end_ &&
           (*p_ == ' ' || *p_ == '\n' || *p_ == '\t' || *p_ == '\r'))
      ++p_;
    return p_ < end_ ? *p_ : 0;
  }
  bool consume(char c) {
    if (peek() != c)
      return false;
    ++p_;
    return true;
  }
  bool word(std::string_view w) {
    peek();
    if (size_t(end_ - p_) < w.size() || std::string_view(p_, w.size()) != w)
      return false;
    p_ += w.size();
    return true;
  }
  bool literal(bool& out) {
    out = peek() == 't';
    return word(out ? "true" : "false");
  }

  bool string(std::string& out) {
    if (!consume('"'))
      return false;
    for (;;) {
      // memchr twice beats a byte loop on long strings without escapes.
      auto* q =
          static_cast<const char*>(std::memchr(p_, '"', size_t(end_ - p_)));
      if (q == nullptr)
        q = end_;
      if (auto* b = std::memchr(p_, '\\', size_t(q - p_)))
        q = static_cast<const char*>(b);
      out.append(p_, q);
      p_ = q;
      if (p_ >= end_)
        return false;
      if (*p_++ == '"')
        return true;
      if (!escape(out))
        return false;
    }
  }

  bool escape(std::string& out) {
    static constexpr std::string_view from = "ntrbf\"\\/";
    static constexpr std::string_view to = "\n\t\r\b\f\"\\/";
    if (p_ >= end_)
      return false;
    char c = *p_++;
    if (c == 'u')
      return unicode(out);
    auto k = from.find(c);
    if (k == from.npos)
      return false;
    out += to[k];
    return true;
  }

  bool hex4(uint32_t& v) {
    if (end_ - p_ < 4)
      return false;
    v = 0;
    for (int i = 0; i < 4; ++i) {
      char c = *p_++;
      v <<= 4;
      if (c >= '0' && c <= '9')
        v |= uint32_t(c - '0');
      else if ((c | 0x20) >= 'a' && (c | 0x20) <= 'f')
        v |= uint32_t((c | 0x20) - 'a' + 10);
      else
        return false;
    }
    return true;
  }

  bool unicode(std::string& out) {
    uint32_t cp;
    if (!hex4(cp))
      return false;
    if (cp >= 0xd800 && cp < 0xdc00) {
      uint32_t lo;
      if (!word("\\u") || !hex4(lo) || lo < 0xdc00 || lo > 0xdfff)
        return false;
      cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
    }
    if (cp < 0x80) {
      out += char(cp);
    } else if (cp < 0x800) {
      out += char(0xc0 | cp >> 6), out += char(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      out += char(0xe0 | cp >> 12), out += char(0x80 | (cp >> 6 & 0x3f));
      out += char(0x80 | (cp & 0x3f));
    } else {
      out += char(0xf0 | cp >> 18), out += char(0x80 | (cp >> 12 & 0x3f));
      out += char(0x80 | (cp >> 6 & 0x3f)), out += char(0x80 | (cp & 0x3f));
    }
    return true;
  }

  bool skip() {
    char c = peek();
    if (c == '"') {
      std::string ignored;
      return string(ignored);
    }
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      ++p_;
      if (consume(close))
        return true;
      do {
        if (c == '{') {
          std::string ignored;
          if (!string(ignored) || !consume(':'))
            return false;
        }
        if (!skip())
          return false;
      } while (consume(','));
      return consume(close);
    }
    auto* q = p_;
    while (q < end_ && std::strchr(",}] \n\t\r", *q) == nullptr)
      ++q;
    bool any = q > p_;
    p_ = q;
    return any;
  }

  const char* p_;
  const char* end_;
};

int connect_unix(const std::string& path) {
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  if (fd < 0 || path.size() >= sizeof sa.sun_path)
    die("socket " + path);
  std::memcpy(sa.sun_path, path.c_str(), path.size() + 1);
  if (connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0)
    die("connecting to " + path + ": " + std::strerror(errno));
  return fd;
}

void send_all(int fd, const std::string& msg) {
  size_t off = 0;
  while (off < msg.size()) {
    auto n = write(fd, msg.data() + off, msg.size() - off);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      die(std::string("sending a call: ") + std::strerror(errno));
    off += size_t(n);
  }
}

std::string call_json(const char* method, const std::string& id, bool more) {
  return std::string("{\"method\":\"io.podman.") + method +
         "\",\"parameters\":{\"name\":\"" + id + "\"}" +
         (more ? ",\"more\":true" : "") + "}" + std::string(1, '\0');
}

// One call and its single reply, on a connection of its own.
void call_once(const options& o, const char* method) {
  int fd = connect_unix(o.berth_sock);
  send_all(fd, call_json(method, o.container, false));
  std::string reply;
  split_stream(fd, '\0', o.timeout_s, [&](std::string_view m, uint64_t) {
    reply.assign(m);
    return false;
  });
  close(fd);
  reply_parser p(reply);
  if (!p.parse([](std::string_view) {}) || !p.error.empty())
    die(std::string(method) + ": " + reply.substr(0, 300));
}

struct timeline {
  uint64_t start = 0;   // the start request leaves
  uint64_t started = 0; // its answer is in
  uint64_t follow = 0;  // the follower is in place
  uint64_t end = 0;     // final reply / end of output
  uint64_t replies = 0, wire_bytes = 0;
  proc_sample before, at_first_line, after;
  double cpu_total_s = NAN;
  uint64_t maxrss_kb = 0;
};

void run_berth(const options& o, ledger& led, timeline& tl) {
  int fd = connect_unix(o.berth_sock);
  if (o.berthd_pid && o.replay) {
    reset_peak_rss(o.berthd_pid);
    tl.before = sample(o.berthd_pid);
  }
  tl.start = wall_ns();
  send_all(fd, call_json("GetContainerLogs", o.container, true));
  std::thread starter;
  bool done = false, sampled = false;
  split_stream(fd, '\0', o.timeout_s, [&](std::string_view m, uint64_t rx) {
    ++tl.replies;
    tl.wire_bytes += m.size() + 1;
    reply_parser p(m);
    bool ok = p.parse([&](std::string_view rec) {
      led.record(rec.ends_with('\n') ? rec.substr(0, rec.size() - 1) : rec, rx);
    });
    if (!ok || !p.error.empty())
      die("GetContainerLogs: " + std::string(m.substr(0, 300)));
    if (o.berthd_pid && !sampled && led.lines() > 0) {
      tl.at_first_line = sample(o.berthd_pid);
      sampled = true;
    }
    if (tl.replies == 1 && !o.replay) {
      tl.follow = wall_ns();
      if (o.berthd_pid) {
        reset_peak_rss(o.berthd_pid);
        tl.before = sample(o.berthd_pid);
      }
      tl.start = wall_ns();
      starter = std::thread([&] {
        call_once(o, "StartContainer");
        tl.started = wall_ns();
      });
    }
    done = !p.continues;
    return !done;
  });
  tl.end = wall_ns();
  if (o.berthd_pid)
    tl.after = sample(o.berthd_pid);
  if (starter.joinable())
    starter.join();
  close(fd);
  if (!done)
    die("berthd closed the connection before the final reply");
}

// ---------------------------------------------------------------- podman

pid_t spawn(const std::vector<std::string>& argv, int out_fd) {
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = fork();
  if (pid < 0)
    die(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    if (out_fd >= 0)
      dup2(out_fd, 1);
    execvp(args[0], args.data());
    _exit(127);
  }
  return pid;
}

int wait_for(pid_t pid, rusage* ru) {
  int status = 0;
  while (wait4(pid, &status, 0, ru) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::vector<std::string> podman(const options& o,
                                std::initializer_list<std::string> tail) {
  auto argv = o.podman_argv;
  argv.insert(argv.end(), tail);
  return argv;
}

void run_podman(const options& o, ledger& led, timeline& tl) {
  tl.start = wall_ns();
  rusage ru{};
  int rc = 0;
  if (!o.replay) {
    int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    rc = wait_for(spawn(podman(o, {"start", o.podman_id}), null), &ru);
    close(null);
  }
  tl.started = wall_ns();
  if (rc != 0)
    die("podman start exited with " + std::to_string(rc));

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) < 0)
    die(std::string("pipe: ") + std::strerror(errno));
  // A replay reads a finished log: podman 4.3's -f stops early on a long
  // one even then, so it is left out.
  auto argv = o.replay     ? podman(o, {"logs", o.podman_id})
              : o.seq_mode ? podman(o, {"logs", "-f", "-t", o.podman_id})
                           : podman(o, {"logs", "-f", o.podman_id});
  tl.follow = wall_ns();
  pid_t pid = spawn(argv, fds[1]);
  close(fds[1]);

  bool sampled = false;
  split_stream(fds[0], '\n', o.timeout_s, [&](std::string_view l, uint64_t rx) {
    tl.wire_bytes += l.size() + 1;
    led.printed(l, o.seq_mode, rx);
    if (!sampled) {
      tl.at_first_line = sample(pid);
      sampled = true;
    }
    return true;
  });
  tl.end = wall_ns();
  close(fds[0]);
  rc = wait_for(pid, &ru);
  if (rc != 0)
    die("podman logs -f exited with " + std::to_string(rc));
  tl.cpu_total_s = double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                   double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
  tl.maxrss_kb = uint64_t(ru.ru_maxrss);
  tl.after.cpu_s = tl.cpu_total_s;
  tl.after.hwm_kb = tl.maxrss_kb;
}

// What the k8s-file log holds: when conmon read the first and the last line
// from the container, and how many whole lines (F records) it wrote.
struct log_file_view {
  uint64_t first_ns = 0, last_ns = 0, lines = 0, bytes = 0;
};

log_file_view read_log_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  log_file_view v;
  std::string rec, last;
  while (std::getline(f, rec)) {
    auto s1 = rec.find(' ');
    auto s2 = s1 == rec.npos ? s1 : rec.find(' ', s1 + 1);
    if (v.bytes == 0)
      v.first_ns = parse_ts(std::string_view(rec).substr(0, s1));
    v.bytes += rec.size() + 1;
    if (s2 != rec.npos && s2 + 1 < rec.size() && rec[s2 + 1] == 'F')
      ++v.lines;
    last.assign(rec, 0, s1);
  }
  if (v.bytes == 0)
    die("reading " + path + ": empty or missing");
  v.last_ns = parse_ts(last);
  return v;
}

// --span-only PATH: the log file alone, for a run without a follower.
int span_only(const std::string& path) {
  auto v = read_log_file(path);
  std::printf("{\"engine\":\"none\",\"first_write_ns\":%" PRIu64
              ",\"last_write_ns\":%" PRIu64 ",\"file_lines\":%" PRIu64
              ",\"file_bytes\":%" PRIu64 "}\n",
              v.first_ns, v.last_ns, v.lines, v.bytes);
  return 0;
}

// ---------------------------------------------------------------- report

double secs(uint64_t a, uint64_t b) {
  return b > a ? double(b - a) / 1e9 : 0.0;
}

void report(const options& o, const ledger& led, const timeline& tl,
            const log_file_view& file) {
  bool berth = !o.berth_sock.empty();
  auto from = led.first_ts() && !o.replay ? led.first_ts() : tl.start;
  double wall = secs(from, tl.end);
  double cpu = tl.after.cpu_s - tl.at_first_line.cpu_s;
  double cpu_window = secs(led.first_rx(), tl.end);
  std::printf("{\"engine\":\"%s\",\"replay\":%s,", berth ? "berth" : "podman",
              o.replay ? "true" : "false");
  led.write_json(stdout);
  std::printf(",\"start_ns\":%" PRIu64 ",\"started_ns\":%" PRIu64
              ",\"follow_ns\":%" PRIu64 ",\"end_ns\":%" PRIu64
              ",\"replies\":%" PRIu64 ",\"wire_bytes\":%" PRIu64
              ",\"wall_s\":%.6f,\"from_start_s\":%.6f,\"lag_ms\":%.3f"
              ",\"cpu_s\":%.3f,\"cpu_window_s\":%.6f",
              tl.start, tl.started, tl.follow, tl.end, tl.replies,
              tl.wire_bytes, wall, secs(tl.start, tl.end),
              double(int64_t(tl.end) - int64_t(led.write_end())) / 1e6, cpu,
              cpu_window);
  if (berth)
    std::printf(",\"rss_before_kb\":%" PRIu64 ",\"hwm_after_kb\":%" PRIu64
                ",\"rss_after_kb\":%" PRIu64,
                tl.before.rss_kb, tl.after.hwm_kb, tl.after.rss_kb);
  else
    std::printf(",\"cpu_total_s\":%.3f,\"rss_at_first_line_kb\":%" PRIu64
                ",\"maxrss_kb\":%" PRIu64,
                tl.cpu_total_s, tl.at_first_line.rss_kb, tl.maxrss_kb);
  if (file.bytes)
    std::printf(",\"file_lines\":%" PRIu64 ",\"file_bytes\":%" PRIu64,
                file.lines, file.bytes);
  std::printf("}\n");
}

} // namespace

int main(int argc, char** argv) {
  signal(SIGPIPE, SIG_IGN);
  if (argc == 3 && std::string_view(argv[1]) == "--span-only")
    return span_only(argv[2]);
  auto o = parse_args(argc, argv);
  ledger led(o);
  timeline tl;
  if (!o.berth_sock.empty())
    run_berth(o, led, tl);
  else
    run_podman(o, led, tl);
  log_file_view file;
  if (!o.log_file.empty()) {
    file = read_log_file(o.log_file);
    led.set_write_span(file.first_ns, file.last_ns);
  }
  report(o, led, tl, file);
  if (!led.intact()) {
    std::fprintf(stderr,
                 "berth-logs-follow: %" PRIu64 " of %" PRIu64
                 " lines arrived, not all intact\n",
                 led.lines(), led.expected_lines());
    return 1;
  }
  return 0;
}
