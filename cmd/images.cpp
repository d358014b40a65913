// berth's image verbs: pull and push (with per-layer progress on a
// terminal), images, rmi, tag, history, image inspect, load, save, import,
// search.
#include "cmd/cli.hpp"
#include "protocol/json_decode.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

namespace berth::cli {

namespace {

using simdjson::dom::element;

struct parsed {
  simdjson::dom::parser parser;
  simdjson::padded_string text;
  element doc;

  explicit parsed(const std::string& json) : text(json) {
    if (parser.parse(text).get(doc) != simdjson::SUCCESS) {
      std::cerr << "berth: malformed reply\n";
      std::exit(failure);
    }
  }
};

std::string str(element e, const char* key) {
  std::string_view v;
  return e[key].get(v) == simdjson::SUCCESS ? std::string{v} : std::string{};
}

std::string human_size(int64_t bytes) {
  const char* units[] = {"B", "kB", "MB", "GB", "TB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1000 && u < 4) {
    v /= 1000;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.3g %s", v, units[u]);
  return buf;
}

/// Shows pull progress: on a terminal one line per blob, redrawn in place;
/// otherwise the daemon's lines as they come.
class progress_view {
public:
  progress_view() : tty_(isatty(STDOUT_FILENO)) {
  }

  void add(const std::string& line) {
    if (!tty_) {
      std::cout << line << std::flush;
      return;
    }
    std::istringstream in{line};
    std::string w1, w2, blob, state;
    in >> w1 >> w2 >> blob >> state;
    if (w1 == "Copying" && w2 == "blob") {
      auto slash = state.find('/');
      if (slash != std::string::npos) {
        auto done = std::stod(state.substr(0, slash));
        auto total = std::stod(state.substr(slash + 1));
        rows_[blob] = bar(done, total);
      } else {
        rows_[blob] = state == "done" ? "done" : line.substr(14 + blob.size());
      }
      if (!order_.count(blob))
        order_[blob] = order_.size();
    } else {
      notes_.push_back(line);
    }
    redraw();
  }

private:
  static std::string bar(double done, double total) {
    constexpr int width = 30;
    int fill = total > 0 ? int(width * done / total) : 0;
    return "[" + std::string(fill, '=') + std::string(width - fill, ' ') +
           "] " + human_size(int64_t(done)) + " / " +
           human_size(int64_t(total));
  }

  void redraw() {
    for (size_t i = 0; i < drawn_; ++i)
      std::cout << "\x1b[1A\x1b[2K";
    drawn_ = 0;
    for (auto& n : notes_)
      std::cout << n;
    notes_.clear();
    std::vector<std::string> lines(order_.size());
    for (auto& [blob, pos] : order_)
      lines[pos] = "Copying blob " + blob + " " + rows_[blob];
    for (auto& l : lines) {
      std::cout << l << '\n';
      ++drawn_;
    }
    std::cout << std::flush;
  }

  bool tty_;
  std::map<std::string, std::string> rows_;
  std::map<std::string, size_t> order_;
  std::vector<std::string> notes_;
  size_t drawn_ = 0;
};

// Runs a streaming call (PullImage, PushImage, LoadImage, ImageSave) with
// `more`, or without it; every log line goes to `on_log`. Returns the last
// non-empty `id`, or exits with the error reply's status.
std::string stream_call(session& s, std::string_view method,
                        const std::string& params, bool more,
                        const std::function<void(const std::string&)>& on_log) {
  std::string id;
  for (auto r = s.call(method, params, {.more = more});; r = s.next()) {
    if (!r.error.empty())
      std::exit(print_error(r));
    parsed p{r.parameters};
    element reply;
    if (p.doc["reply"].get(reply) == simdjson::SUCCESS) {
      simdjson::dom::array logs;
      if (reply["logs"].get(logs) == simdjson::SUCCESS)
        for (auto l : logs)
          if (l.is_string())
            on_log(std::string{std::string_view(l)});
      if (auto v = str(reply, "id"); !v.empty())
        id = v;
    }
    if (!r.continues)
      return id;
  }
}

/// Reads an option's value: "--flag=value" or "--flag value".
struct option_reader {
  const std::vector<std::string>& args;
  size_t& i;

  bool is(const std::string& flag) const {
    return args[i] == flag || args[i].starts_with(flag + "=");
  }
  std::string value(const std::string& flag) const {
    auto& a = args[i];
    if (a.starts_with(flag + "="))
      return a.substr(flag.size() + 1);
    if (i + 1 >= args.size())
      usage_error(flag + " needs a value");
    return args[++i];
  }
};

/// An open input file and its size; standard input is first copied to an
/// unlinked temporary file, as SendFile needs the length up front.
struct local_input {
  int fd = -1;
  int64_t size = 0;

  explicit local_input(const std::string& path) {
    if (path == "-") {
      if (isatty(STDIN_FILENO))
        usage_error("refusing to read an archive from a terminal; use -i");
      fd = spool_stdin();
    } else {
      fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    }
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
      std::cerr << "berth: reading " << path << ": "
                << (fd < 0 ? std::strerror(errno) : "not a regular file")
                << '\n';
      std::exit(failure);
    }
    size = st.st_size;
  }
  ~local_input() {
    if (fd >= 0)
      ::close(fd);
  }

  static int spool_stdin() {
    const char* dir = std::getenv("TMPDIR");
    std::string path = std::string{dir && *dir ? dir : "/tmp"} +
                       "/berth-stdin-XXXXXX";
    int fd = mkstemp(path.data());
    if (fd < 0)
      return -1;
    ::unlink(path.c_str());
    char buf[1 << 16];
    for (ssize_t n; (n = ::read(STDIN_FILENO, buf, sizeof buf)) != 0;) {
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0 || ::write(fd, buf, size_t(n)) != n) {
        ::close(fd);
        return -1;
      }
    }
    lseek(fd, 0, SEEK_SET);
    return fd;
  }
};

[[noreturn]] void transfer_failed(const std::string& what) {
  std::cerr << "berth: " << what << ": connection lost\n";
  std::exit(failure);
}

// Sends a local file with SendFile on an upgraded connection; returns the
// path berthd stored it under. The connection carries varlink again
// afterwards.
std::string upload(session& s, const std::string& path) {
  local_input in{path};
  json::writer w;
  w.begin_object();
  w.key("type"), w.value("");
  w.key("length"), w.value(in.size);
  w.end_object();
  auto r = s.call("io.podman.SendFile", w.out(), {.upgrade = true});
  if (!r.error.empty())
    std::exit(print_error(r));
  auto handle = str(parsed{r.parameters}.doc, "file_handle");
  std::vector<char> buf(1 << 20);
  for (int64_t left = in.size; left > 0;) {
    auto n = ::read(in.fd, buf.data(), size_t(std::min<int64_t>(
                                           left, int64_t(buf.size()))));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0) {
      std::cerr << "berth: reading " << path << ": "
                << (n < 0 ? std::strerror(errno) : "file shrank") << '\n';
      std::exit(failure);
    }
    if (!s.conn.write_raw({buf.data(), size_t(n)}))
      transfer_failed("sending " + path);
    left -= n;
  }
  // The acknowledgement is the path followed by ':'.
  std::string ack;
  if (!s.conn.read_raw(handle.size() + 1, ack))
    transfer_failed("sending " + path);
  if (ack != handle + ":") {
    std::cerr << "berth: sending " << path << ": unexpected acknowledgement\n";
    std::exit(failure);
  }
  return handle;
}

// Fetches the server file `remote` with ReceiveFile (removing it there)
// into the open file `fd`.

// A path from a tar header: relative, no "..", leading "./" dropped; empty
// when it is none of these.
std::string tar_path(std::string name) {
  while (name.starts_with("./"))
    name.erase(0, 2);
  while (name.ends_with("/"))
    name.pop_back();
  if (name.empty() || name.front() == '/')
    return {};
  std::istringstream parts{name};
  for (std::string part; std::getline(parts, part, '/');)
    if (part == ".." || part.empty())
      return {};
  return name;
}

int64_t tar_octal(const char* field, size_t size) {
  int64_t v = 0;
  for (size_t i = 0; i < size && field[i]; ++i)
    if (field[i] >= '0' && field[i] <= '7')
      v = v * 8 + (field[i] - '0');
  return v;
}

[[noreturn]] void untar_failed(const std::string& why) {
  std::cerr << "berth: unpacking the saved image: " << why << '\n';
  std::exit(failure);
}

// Unpacks what berthd's ImageSave writes for the dir formats (a tar of
// regular files and directories) into `dir`; anything else is refused.
void untar(int fd, const std::string& dir) {
  auto read_exact = [&](char* p, size_t n) {
    for (size_t got = 0; got < n;) {
      auto r = ::read(fd, p + got, n - got);
      if (r < 0 && errno == EINTR)
        continue;
      if (r <= 0)
        untar_failed("truncated archive");
      got += size_t(r);
    }
  };
  std::string long_name;
  for (;;) {
    char h[512];
    read_exact(h, sizeof h);
    if (std::all_of(h, h + sizeof h, [](char c) { return c == 0; }))
      return;
    std::string name{h, strnlen(h, 100)};
    if (std::string_view{h + 257, 5} == "ustar" && h[345])
      name = std::string{h + 345, strnlen(h + 345, 155)} + "/" + name;
    auto size = tar_octal(h + 124, 12);
    char type = h[156];
    std::string data;
    auto padded = (size + 511) / 512 * 512;
    if (type == 'x' || type == 'g' || type == 'L') {
      data.resize(size_t(padded));
      read_exact(data.data(), data.size());
      data.resize(size_t(size));
      if (type == 'L') {
        long_name = data.c_str();
      } else if (type == 'x') {
        // Records "LEN path=VALUE\n"; only the path matters here.
        auto at = data.find(" path=");
        if (at != std::string::npos) {
          auto end = data.find('\n', at);
          long_name = data.substr(at + 6, end - at - 6);
        }
      }
      continue;
    }
    if (!long_name.empty())
      name = std::exchange(long_name, {});
    auto rel = tar_path(name);
    if (rel.empty())
      untar_failed("refusing entry " + name);
    auto path = dir + "/" + rel;
    std::error_code ec;
    std::filesystem::create_directories(
        std::filesystem::path(path).parent_path(), ec);
    if (type == '5') {
      std::filesystem::create_directories(path, ec);
      continue;
    }
    if (type != '0' && type != '\0')
      untar_failed("refusing entry " + name + " of type " +
                   std::string(1, type));
    int out = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC |
                                       O_NOFOLLOW, 0644);
    if (out < 0)
      untar_failed("creating " + path + ": " + std::strerror(errno));
    std::vector<char> buf(1 << 16);
    for (int64_t left = padded; left > 0;) {
      auto n = size_t(std::min<int64_t>(left, int64_t(buf.size())));
      read_exact(buf.data(), n);
      auto keep = size_t(std::max<int64_t>(
          0, std::min<int64_t>(int64_t(n), size - (padded - left))));
      if (keep > 0 && ::write(out, buf.data(), keep) != ssize_t(keep))
        untar_failed("writing " + path + ": " + std::strerror(errno));
      left -= int64_t(n);
    }
    ::close(out);
  }
}

int load(const std::string& addr, const std::vector<std::string>& args) {
  std::string input, name;
  bool quiet = false;
  for (size_t i = 0; i < args.size(); ++i) {
    option_reader o{args, i};
    if (args[i] == "-q" || args[i] == "--quiet")
      quiet = true;
    else if (o.is("--input"))
      input = o.value("--input");
    else if (args[i] == "-i")
      input = o.value("-i");
    else if (args[i].starts_with("-") && args[i] != "-")
      usage_error("unknown option for load: " + args[i]);
    else if (name.empty())
      name = args[i];
    else
      usage_error("load takes at most one image name");
  }
  if (input.empty())
    input = "-";
  session s{addr};
  auto remote = upload(s, input);
  json::writer w;
  w.begin_object();
  w.key("name"), w.value(name);
  w.key("inputFile"), w.value(remote);
  w.key("quiet"), w.value(quiet);
  w.key("deleteFile"), w.value(true);
  w.end_object();
  progress_view view;
  auto id = stream_call(s, "io.podman.LoadImage", w.out(), !quiet,
                        [&](const std::string& l) {
                          if (!quiet)
                            view.add(l);
                        });
  std::cout << "Loaded image(s): " << id << '\n';
  return ok;
}

int save(const std::string& addr, const std::vector<std::string>& args) {
  std::string output, format = "oci-archive";
  bool quiet = false, compress = false;
  std::vector<std::string> names;
  for (size_t i = 0; i < args.size(); ++i) {
    option_reader o{args, i};
    if (args[i] == "-q" || args[i] == "--quiet")
      quiet = true;
    else if (args[i] == "--compress")
      compress = true;
    else if (o.is("--output"))
      output = o.value("--output");
    else if (args[i] == "-o")
      output = o.value("-o");
    else if (o.is("--format"))
      format = o.value("--format");
    else if (args[i].starts_with("-"))
      usage_error("unknown option for save: " + args[i]);
    else
      names.push_back(args[i]);
  }
  if (names.empty())
    usage_error("save needs an image");
  bool is_dir = format == "oci-dir" || format == "docker-dir";
  if (is_dir && output.empty())
    usage_error("--format " + format + " needs -o DIRECTORY");
  if (output.empty() && isatty(STDOUT_FILENO))
    usage_error("refusing to write an archive to a terminal; use -o FILE");

  json::writer w;
  w.begin_object();
  w.key("options"), w.begin_object();
  w.key("name"), w.value(names[0]);
  w.key("format"), w.value(format);
  w.key("output"), w.value(output);
  w.key("outputType"), w.value("");
  w.key("moreTags"), encode(w, std::vector(names.begin() + 1, names.end()));
  w.key("quiet"), w.value(quiet);
  w.key("compress"), w.value(compress);
  w.end_object();
  w.end_object();
  session s{addr};
  auto remote = stream_call(s, "io.podman.ImageSave", w.out(), !quiet,
                            [&](const std::string& l) {
                              if (!quiet)
                                std::cerr << l << std::flush;
                            });
  if (output.empty()) {
    receive_file(s, remote, STDOUT_FILENO);
    return ok;
  }
  // Into a temporary file beside the output, renamed (or unpacked) once
  // complete.
  auto parent = std::filesystem::path(output).parent_path().string();
  auto tmp = (parent.empty() ? "." : parent) + "/.berth-save-XXXXXX";
  int fd = mkstemp(tmp.data());
  if (fd < 0) {
    std::cerr << "berth: writing " << output << ": " << std::strerror(errno)
              << '\n';
    return failure;
  }
  receive_file(s, remote, fd);
  if (is_dir) {
    lseek(fd, 0, SEEK_SET);
    std::error_code ec;
    std::filesystem::create_directories(output, ec);
    untar(fd, output);
    ::close(fd);
    ::unlink(tmp.c_str());
    return ok;
  }
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

int import_tarball(const std::string& addr,
                   const std::vector<std::string>& args) {
  std::vector<std::string> rest, changes;
  std::string message;
  for (size_t i = 0; i < args.size(); ++i) {
    option_reader o{args, i};
    if (args[i] == "-c")
      changes.push_back(o.value("-c"));
    else if (o.is("--change"))
      changes.push_back(o.value("--change"));
    else if (args[i] == "-m")
      message = o.value("-m");
    else if (o.is("--message"))
      message = o.value("--message");
    else if (args[i].starts_with("-") && args[i] != "-")
      usage_error("unknown option for import: " + args[i]);
    else
      rest.push_back(args[i]);
  }
  if (rest.empty() || rest.size() > 2)
    usage_error("import needs a FILE and at most one REFERENCE");
  session s{addr};
  auto remote = upload(s, rest[0]);
  json::writer w;
  w.begin_object();
  w.key("source"), w.value(remote);
  w.key("reference"), w.value(rest.size() > 1 ? rest[1] : "");
  w.key("message"), w.value(message);
  w.key("changes"), encode(w, changes);
  w.key("delete"), w.value(true);
  w.end_object();
  auto r = s.call("io.podman.ImportImage", w.out());
  if (!r.error.empty())
    return print_error(r);
  std::cout << str(parsed{r.parameters}.doc, "image") << '\n';
  return ok;
}

int push(const std::string& addr, const std::vector<std::string>& args) {
  std::string creds, cert_dir, format;
  std::vector<std::string> rest;
  int tls = -1;
  bool quiet = false, compress = false;
  for (size_t i = 0; i < args.size(); ++i) {
    option_reader o{args, i};
    auto& a = args[i];
    if (a == "-q" || a == "--quiet")
      quiet = true;
    else if (a == "--tls-verify" || a == "--tls-verify=true")
      tls = 1;
    else if (a == "--tls-verify=false")
      tls = 0;
    else if (a == "--compress")
      compress = true;
    else if (o.is("--creds"))
      creds = o.value("--creds");
    else if (o.is("--cert-dir"))
      cert_dir = o.value("--cert-dir");
    else if (o.is("--format"))
      format = o.value("--format");
    else if (a == "-f")
      format = o.value("-f");
    else if (a.starts_with("-"))
      usage_error("unknown option for push: " + a);
    else
      rest.push_back(a);
  }
  if (rest.empty() || rest.size() > 2)
    usage_error("push needs an IMAGE and at most one DESTINATION");
  json::writer w;
  w.begin_object();
  w.key("name"), w.value(rest[0]);
  w.key("tag"), w.value(rest.size() > 1 ? rest[1] : "");
  if (tls >= 0)
    w.key("tlsverify"), w.value(tls == 1);
  w.key("signaturePolicy"), w.value("");
  w.key("creds"), w.value(creds);
  w.key("certDir"), w.value(cert_dir);
  w.key("compress"), w.value(compress);
  w.key("format"), w.value(format);
  w.key("removeSignatures"), w.value(false);
  w.key("signBy"), w.value("");
  w.end_object();
  session s{addr};
  progress_view view;
  stream_call(s, "io.podman.PushImage", w.out(), true,
              [&](const std::string& l) {
                if (!quiet)
                  view.add(l);
              });
  return ok;
}

int search(const std::string& addr, const std::vector<std::string>& args) {
  int64_t limit = 0;
  int tls = -1;
  std::string term;
  std::optional<bool> official, automated;
  int64_t stars = 0;
  for (size_t i = 0; i < args.size(); ++i) {
    option_reader o{args, i};
    auto& a = args[i];
    if (a == "--tls-verify" || a == "--tls-verify=true") {
      tls = 1;
    } else if (a == "--tls-verify=false") {
      tls = 0;
    } else if (o.is("--limit")) {
      auto v = o.value("--limit");
      char* end = nullptr;
      limit = std::strtoll(v.c_str(), &end, 10);
      if (v.empty() || *end || limit < 0)
        usage_error("--limit needs a number: " + v);
    } else if (o.is("--filter") || a == "-f") {
      auto v = o.value(a == "-f" ? "-f" : "--filter");
      auto eq = v.find('=');
      auto key = v.substr(0, eq);
      auto val = eq == std::string::npos ? "" : v.substr(eq + 1);
      if (key == "is-official")
        official = val == "true";
      else if (key == "is-automated")
        automated = val == "true";
      else if (key == "stars")
        stars = std::strtoll(val.c_str(), nullptr, 10);
      else
        usage_error("unknown filter " + v + " (is-official=BOOL, "
                    "is-automated=BOOL, stars=N)");
    } else if (a.starts_with("-")) {
      usage_error("unknown option for search: " + a);
    } else if (term.empty()) {
      term = a;
    } else {
      usage_error("search takes one TERM");
    }
  }
  if (term.empty())
    usage_error("search needs a TERM");
  json::writer w;
  w.begin_object();
  w.key("query"), w.value(term);
  if (limit > 0)
    w.key("limit"), w.value(limit);
  if (tls >= 0)
    w.key("tlsVerify"), w.value(tls == 1);
  w.key("filter"), w.begin_object();
  if (official)
    w.key("is_official"), w.value(*official);
  if (automated)
    w.key("is_automated"), w.value(*automated);
  w.key("star_count"), w.value(stars);
  w.end_object();
  w.end_object();
  session s{addr};
  auto r = s.call("io.podman.SearchImages", w.out());
  if (!r.error.empty())
    return print_error(r);
  parsed p{r.parameters};
  simdjson::dom::array results;
  if (p.doc["results"].get(results) != simdjson::SUCCESS)
    return failure;
  std::cout << std::left << std::setw(44) << "NAME" << std::setw(40)
            << "DESCRIPTION" << std::setw(7) << "STARS" << std::setw(10)
            << "OFFICIAL" << "AUTOMATED\n";
  for (auto e : results) {
    int64_t n = 0;
    if (e["star_count"].get(n) != simdjson::SUCCESS)
      n = 0;
    bool is_official = false, is_automated = false;
    if (e["is_official"].get(is_official) != simdjson::SUCCESS)
      is_official = false;
    if (e["is_automated"].get(is_automated) != simdjson::SUCCESS)
      is_automated = false;
    auto desc = str(e, "description");
    if (desc.size() > 38)
      desc = desc.substr(0, 35) + "...";
    std::cout << std::left << std::setw(44) << str(e, "name") << std::setw(40)
              << desc << std::setw(7) << n << std::setw(10)
              << (is_official ? "[OK]" : "") << (is_automated ? "[OK]" : "")
              << '\n';
  }
  return ok;
}

int pull(const std::string& addr, const std::vector<std::string>& args) {
  json::writer w;
  std::string name, creds, cert_dir;
  int tls = -1;
  bool quiet = false;
  for (size_t i = 0; i < args.size(); ++i) {
    auto& a = args[i];
    auto value = [&](const std::string& flag) -> std::string {
      if (a.starts_with(flag + "="))
        return a.substr(flag.size() + 1);
      if (i + 1 >= args.size())
        usage_error(flag + " needs a value");
      return args[++i];
    };
    if (a == "-q" || a == "--quiet")
      quiet = true;
    else if (a == "--tls-verify" || a == "--tls-verify=true")
      tls = 1;
    else if (a == "--tls-verify=false")
      tls = 0;
    else if (a.starts_with("--creds"))
      creds = value("--creds");
    else if (a.starts_with("--cert-dir"))
      cert_dir = value("--cert-dir");
    else if (a.starts_with("-"))
      usage_error("unknown option for pull: " + a);
    else if (name.empty())
      name = a;
    else
      usage_error("pull takes one image name");
  }
  if (name.empty())
    usage_error("pull needs an image name");
  w.begin_object();
  w.key("name"), w.value(name);
  w.key("creds"), w.value(creds);
  w.key("certDir"), w.value(cert_dir);
  if (tls >= 0)
    w.key("tlsVerify"), w.value(tls == 1);
  w.end_object();
  session s{addr};
  progress_view view;
  auto id = stream_call(s, "io.podman.PullImage", w.out(), true,
                        [&](const std::string& l) {
                          if (!quiet)
                            view.add(l);
                        });
  std::cout << id << '\n';
  return ok;
}

int images(const std::string& addr, const std::vector<std::string>& args) {
  bool quiet = false, as_json = false;
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i] == "-q" || args[i] == "--quiet")
      quiet = true;
    else if (args[i] == "--format=json" ||
             (args[i] == "--format" && i + 1 < args.size() &&
              args[++i] == "json"))
      as_json = true;
    else
      usage_error("unknown option for images: " + args[i]);
  }
  session s{addr};
  auto r = s.call("io.podman.ListImages", "");
  if (!r.error.empty())
    return print_error(r);
  parsed p{r.parameters};
  simdjson::dom::array list;
  if (p.doc["images"].get(list) != simdjson::SUCCESS)
    return failure;
  if (as_json) {
    std::cout << simdjson::minify(list) << '\n';
    return ok;
  }
  auto now = int64_t(std::time(nullptr));
  std::vector<std::vector<std::string>> rows{
      {"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}};
  for (auto img : list) {
    auto id = str(img, "id").substr(0, 12);
    if (quiet) {
      std::cout << id << '\n';
      continue;
    }
    int64_t size = 0;
    if (img["size"].get(size) != simdjson::SUCCESS)
      size = 0;
    std::vector<std::string> tags;
    simdjson::dom::array names;
    if (img["repoTags"].get(names) == simdjson::SUCCESS)
      for (auto n : names)
        tags.emplace_back(std::string_view(n));
    if (tags.empty())
      tags.push_back("<none>:<none>");
    auto created = time_ago(str(img, "created"), now);
    for (auto& t : tags) {
      // "repo:tag"; a name kept by digest ("repo@sha256:...") has no tag.
      std::string repo = t, tag = "<none>";
      if (auto at = t.find('@'); at != std::string::npos) {
        repo = t.substr(0, at);
      } else if (auto colon = t.rfind(':');
                 colon != std::string::npos &&
                 (t.rfind('/') == std::string::npos || colon > t.rfind('/'))) {
        repo = t.substr(0, colon);
        tag = t.substr(colon + 1);
      }
      rows.push_back({repo, tag, id,
                      created.empty() ? str(img, "created") : created,
                      human_size(size)});
    }
  }
  if (!quiet)
    print_table(rows);
  return ok;
}

int rmi(const std::string& addr, const std::vector<std::string>& args) {
  bool force = false;
  std::vector<std::string> names;
  for (auto& a : args) {
    if (a == "-f" || a == "--force")
      force = true;
    else
      names.push_back(a);
  }
  if (names.empty())
    usage_error("rmi needs at least one image");
  session s{addr};
  int rc = ok;
  for (auto& n : names) {
    json::writer w;
    w.begin_object();
    w.key("name"), w.value(n);
    w.key("force"), w.value(force);
    w.end_object();
    auto r = s.call("io.podman.RemoveImage", w.out());
    if (!r.error.empty()) {
      rc = print_error(r);
      continue;
    }
    std::cout << str(parsed{r.parameters}.doc, "image") << '\n';
  }
  return rc;
}

int tag(const std::string& addr, const std::vector<std::string>& args) {
  if (args.size() < 2)
    usage_error("tag needs an image and at least one new name");
  session s{addr};
  for (size_t i = 1; i < args.size(); ++i) {
    json::writer w;
    w.begin_object();
    w.key("name"), w.value(args[0]);
    w.key("tagged"), w.value(args[i]);
    w.end_object();
    auto r = s.call("io.podman.TagImage", w.out());
    if (!r.error.empty())
      return print_error(r);
  }
  return ok;
}

int history(const std::string& addr, const std::vector<std::string>& args) {
  if (args.size() != 1)
    usage_error("history needs one image");
  session s{addr};
  auto r = s.call("io.podman.HistoryImage",
                  "{\"name\":" + json::quote(args[0]) + "}");
  if (!r.error.empty())
    return print_error(r);
  parsed p{r.parameters};
  simdjson::dom::array list;
  if (p.doc["history"].get(list) != simdjson::SUCCESS)
    return failure;
  std::cout << std::left << std::setw(14) << "ID" << std::setw(28)
            << "CREATED" << std::setw(46) << "CREATED BY" << "SIZE\n";
  for (auto h : list) {
    int64_t size = 0;
    if (h["size"].get(size) != simdjson::SUCCESS)
      size = 0;
    auto by = str(h, "createdBy");
    if (by.size() > 44)
      by = by.substr(0, 41) + "...";
    std::cout << std::left << std::setw(14) << str(h, "id").substr(0, 12)
              << std::setw(28) << str(h, "created") << std::setw(46) << by
              << human_size(size) << '\n';
  }
  return ok;
}

int inspect(const std::string& addr, const std::vector<std::string>& args) {
  if (args.empty())
    usage_error("image inspect needs at least one image");
  session s{addr};
  int rc = ok;
  std::cout << "[";
  bool first = true;
  for (auto& n : args) {
    auto r = s.call("io.podman.InspectImage",
                    "{\"name\":" + json::quote(n) + "}");
    if (!r.error.empty()) {
      rc = print_error(r);
      continue;
    }
    std::cout << (first ? "" : ",") << str(parsed{r.parameters}.doc, "image");
    first = false;
  }
  std::cout << "]\n";
  return rc;
}

} // namespace

bool is_image_command(const std::string& verb) {
  return verb == "pull" || verb == "images" || verb == "rmi" ||
         verb == "tag" || verb == "history" || verb == "image" ||
         verb == "load" || verb == "save" || verb == "import" ||
         verb == "push" || verb == "search";
}

int image_command(const std::string& addr, const std::string& verb,
                  const std::vector<std::string>& args) {
  if (verb == "pull")
    return pull(addr, args);
  if (verb == "images")
    return images(addr, args);
  if (verb == "rmi")
    return rmi(addr, args);
  if (verb == "tag")
    return tag(addr, args);
  if (verb == "history")
    return history(addr, args);
  if (verb == "load")
    return load(addr, args);
  if (verb == "save")
    return save(addr, args);
  if (verb == "import")
    return import_tarball(addr, args);
  if (verb == "push")
    return push(addr, args);
  if (verb == "search")
    return search(addr, args);
  if (!args.empty() && args[0] == "inspect")
    return inspect(addr, {args.begin() + 1, args.end()});
  if (!args.empty() && args[0] == "ls")
    return images(addr, {args.begin() + 1, args.end()});
  usage_error("unknown image command");
}

} // namespace berth::cli
