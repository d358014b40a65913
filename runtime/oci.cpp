// conmon and the OCI runtime driven through their command lines, with
// conmon's sync and start pipes so that create is really done when it
// answers.
#include "runtime/oci.hpp"

#include "runtime/process.hpp"

#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <poll.h>
#include <sstream>
#include <sys/socket.h>
#include <unistd.h>

namespace berth::runtime {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

namespace {

/// How long one runtime command or one conmon hand-over may take.
constexpr auto command_timeout = 30s;

constexpr const char* default_path =
    "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

std::string trim(std::string_view s) {
  auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos)
    return {};
  auto last = s.find_last_not_of(" \t\r\n");
  return std::string{s.substr(first, last - first + 1)};
}

std::string lower(std::string_view s) {
  std::string out{s};
  for (auto& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::optional<int64_t> to_int(std::string_view s) {
  auto t = trim(s);
  int64_t v = 0;
  auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
  if (ec != std::errc{} || end != t.data() + t.size() || t.empty())
    return std::nullopt;
  return v;
}

// A program in PATH or the usual system directories; "" when missing.
std::string find_program(const std::string& name) {
  std::vector<std::string> dirs;
  if (const char* path = std::getenv("PATH")) {
    std::stringstream in{path};
    std::string dir;
    while (std::getline(in, dir, ':'))
      if (!dir.empty())
        dirs.push_back(dir);
  }
  for (const char* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin",
                          "/usr/bin", "/sbin", "/bin"})
    dirs.emplace_back(dir);
  for (const auto& dir : dirs) {
    auto candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0 && !fs::is_directory(candidate))
      return candidate;
  }
  return {};
}

bool cgroup_v1_mounted() {
  std::ifstream in{"/proc/self/mountinfo"};
  std::string line;
  while (std::getline(in, line)) {
    auto sep = line.find(" - ");
    if (sep != std::string::npos && line.compare(sep + 3, 7, "cgroup ") == 0)
      return true;
  }
  return false;
}

// Reads one line from conmon's sync pipe, waiting until `deadline`; false
// when the time ran out.
bool read_sync_line(int fd, std::chrono::steady_clock::time_point deadline,
                    std::string& line) {
  pollfd p{fd, POLLIN, 0};
  char buf[4096];
  while (line.find('\n') == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return false;
    int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return n < 0;
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got < 0 && errno == EINTR)
      continue;
    if (got <= 0)
      return true;
    line.append(buf, size_t(got));
  }
  return true;
}

// Whatever conmon itself printed before it detached, without waiting long.
std::string read_available(int fd) {
  std::string text;
  pollfd p{fd, POLLIN, 0};
  char buf[4096];
  while (text.size() < 16384 && ::poll(&p, 1, 100) > 0) {
    ssize_t got = ::read(fd, buf, sizeof buf);
    if (got <= 0)
      break;
    text.append(buf, size_t(got));
  }
  return trim(text);
}

// conmon's answer: {"data": PID} or {"data": -1, "message": "..."}.
bool parse_sync(const std::string& line, int64_t& data,
                std::string& message) {
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  if (parser.parse(line.substr(0, line.find('\n'))).get(doc) !=
      simdjson::SUCCESS)
    return false;
  if (doc["data"].get(data) != simdjson::SUCCESS)
    return false;
  std::string_view text;
  if (doc["message"].get(text) == simdjson::SUCCESS)
    message = text;
  return true;
}

// Signals a conmon monitor, an orphan of ours, only while it still is one.
void kill_conmon(pid_t pid) {
  if (pid <= 0)
    return;
  auto comm = trim(read_file("/proc/" + std::to_string(pid) + "/comm"));
  if (comm == "conmon")
    ::kill(pid, SIGKILL);
}

std::string unquote_logrus(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 1 < s.size()) {
      char c = s[++i];
      out += c == 'n' ? '\n' : c == 't' ? '\t' : c;
    } else if (s[i] == '"') {
      break;
    } else {
      out += s[i];
    }
  }
  return out;
}

} // namespace

bool hybrid_cgroups(std::string& controllers) {
  controllers =
      trim(read_file("/sys/fs/cgroup/unified/cgroup.controllers"));
  return !controllers.empty() && cgroup_v1_mounted();
}

bool choose_runtime(const std::string& wanted, runtime_info& out,
                    std::string& note, std::string& err) {
  note.clear();
  std::string controllers;
  bool hybrid = hybrid_cgroups(controllers);
  auto hybrid_text = "cgroups are hybrid (v1 mounted beside a v2 hierarchy "
                     "with controllers: " +
                     controllers + "), which crun refuses";
  if (wanted.empty()) {
    auto crun = find_program("crun");
    if (!crun.empty() && !hybrid) {
      out = {"crun", crun};
      return true;
    }
    auto runc = find_program("runc");
    if (runc.empty()) {
      err = crun.empty() ? "no OCI runtime: neither crun nor runc is installed"
                         : "no usable OCI runtime: " + hybrid_text +
                               ", and runc is not installed";
      return false;
    }
    note = crun.empty() ? "crun is not installed; using runc"
                        : "crun passed over: " + hybrid_text + "; using runc";
    out = {"runc", runc};
    return true;
  }
  if (wanted.starts_with('/')) {
    if (::access(wanted.c_str(), X_OK) != 0) {
      err = "OCI runtime " + wanted + ": " + std::strerror(errno);
      return false;
    }
    out = {fs::path{wanted}.filename().string(), wanted};
  } else if (wanted == "crun" || wanted == "runc") {
    auto path = find_program(wanted);
    if (path.empty()) {
      err = "OCI runtime " + wanted + " is not installed";
      return false;
    }
    out = {wanted, path};
  } else {
    err = "unknown OCI runtime \"" + wanted +
          "\": expected crun, runc or an absolute path";
    return false;
  }
  if (out.name == "crun" && hybrid)
    note = "crun was asked for, but " + hybrid_text;
  return true;
}

oci::oci(runtime_info rt, oci_paths paths)
  : rt_{std::move(rt)}, paths_{std::move(paths)} {
  // nop
}

bool oci::runtime_call(const std::string& verb,
                       const std::vector<std::string>& args,
                       std::string& output, std::string& err) {
  spawn_options o;
  o.argv = {rt_.path, "--root", paths_.runtime_root, verb};
  o.argv.insert(o.argv.end(), args.begin(), args.end());
  o.env = {default_path};
  o.timeout = command_timeout;
  std::string run_err;
  int code = run(o, output, run_err);
  if (code == 0)
    return true;
  err = code < 0 ? run_err : runtime_message(output);
  if (err.empty())
    err = rt_.name + " " + verb + " exited with " + std::to_string(code);
  return false;
}

namespace {

// The three channels to conmon: it answers on the sync pipe, waits for a
// byte on the start socket (a socket, so that writing never raises
// SIGPIPE), and prints its own early complaints to `diag`.
struct conmon_channels {
  unique_fd sync_r, sync_w, start_w, start_r, diag_r, diag_w;

  bool open(std::string& err) {
    int fds[2];
    bool ok = ::pipe2(fds, O_CLOEXEC) == 0;
    if (ok) {
      sync_r.reset(fds[0]);
      sync_w.reset(fds[1]);
      ok = ::pipe2(fds, O_CLOEXEC) == 0;
    }
    if (ok) {
      diag_r.reset(fds[0]);
      diag_w.reset(fds[1]);
      ok = ::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0;
    }
    if (!ok) {
      err = std::string{"pipes for conmon: "} + std::strerror(errno);
      return false;
    }
    start_w.reset(fds[0]);
    start_r.reset(fds[1]);
    return true;
  }

  /// conmon's ends, as the fds it expects them on.
  std::vector<std::pair<int, int>> for_child() const {
    return {{sync_w.get(), 3}, {start_r.get(), 4}, {diag_w.get(), 1},
            {diag_w.get(), 2}};
  }

  void close_child_ends() {
    sync_w.reset();
    start_r.reset();
    diag_w.reset();
  }
};

} // namespace

std::vector<std::string> oci::conmon_argv(const create_request& r) const {
  std::vector<std::string> argv{
      paths_.conmon, "--api-version", "1", "-c", r.id, "-u", r.id,
      "-n", r.name.empty() ? r.id : r.name, "-r", rt_.path,
      "-b", r.bundle, "-p", r.userdata + "/pidfile",
      "-P", r.userdata + "/conmon.pid", "-l", "k8s-file:" + r.log_path,
      "--exit-dir", paths_.exits_dir, "--socket-dir-path", paths_.sockets_dir,
      "--log-level", "error", "--runtime-arg", "--root=" + paths_.runtime_root};
  if (r.log_max_size > 0)
    argv.insert(argv.end(), {"--log-size-max", std::to_string(r.log_max_size)});
  if (r.tty)
    argv.emplace_back("-t");
  if (r.interactive)
    argv.emplace_back("-i");
  return argv;
}

bool oci::prepare(const create_request& r, std::string& err) {
  std::error_code ec;
  for (const auto& dir : {paths_.runtime_root, paths_.exits_dir,
                          paths_.sockets_dir, r.userdata})
    if (fs::create_directories(dir, ec); ec) {
      err = "creating " + dir + ": " + ec.message();
      return false;
    }
  forget_exit(r.id);
  fs::remove(r.userdata + "/pidfile", ec);
  fs::remove(r.userdata + "/conmon.pid", ec);
  return true;
}

bool oci::create(const create_request& r, created& out, std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "creating container " + r.id + ": " + why;
    clean_up_failed(r.id, out);
    return false;
  };
  out = {};
  std::string why;
  conmon_channels ch;
  if (!prepare(r, why) || !ch.open(why))
    return fail(why);

  spawn_options o;
  o.argv = conmon_argv(r);
  o.env = {default_path, "_OCI_SYNCPIPE=3", "_OCI_STARTPIPE=4"};
  if (const char* tmp = std::getenv("TMPDIR"))
    o.env.push_back(std::string{"TMPDIR="} + tmp);
  o.fds = ch.for_child();
  pid_t pid = spawn(o, why);
  ch.close_child_ends();
  if (pid < 0)
    return fail(why);

  // Let it go: conmon forks its monitor and the first process exits.
  char go = '0';
  [[maybe_unused]] auto sent = ::send(ch.start_w.get(), &go, 1, MSG_NOSIGNAL);
  ch.start_w.reset();
  int code = -1;
  if (!wait_child_for(pid, command_timeout, code)) {
    signal_child(pid, SIGKILL);
    wait_child(pid);
    return fail("conmon did not detach within 30 s");
  }
  if (code != 0) {
    auto text = read_available(ch.diag_r.get());
    return fail("conmon exited with " + std::to_string(code) +
                (text.empty() ? "" : ": " + text));
  }
  out.conmon_pid = static_cast<pid_t>(
      to_int(read_file(r.userdata + "/conmon.pid")).value_or(0));

  // The monitor ran `RUNTIME create`: the container's pid, or the runtime's
  // complaint.
  int64_t pid_or_error = 0;
  if (!await_sync(ch.sync_r.get(), ch.diag_r.get(), pid_or_error, why))
    return fail(why);
  out.pid = static_cast<pid_t>(pid_or_error);
  return true;
}

bool oci::await_sync(int sync_fd, int diag_fd, int64_t& pid,
                     std::string& why) const {
  std::string line, message;
  auto deadline = std::chrono::steady_clock::now() + command_timeout;
  if (!read_sync_line(sync_fd, deadline, line)) {
    why = rt_.name + " create did not finish within 30 s";
    return false;
  }
  if (line.empty()) {
    auto text = read_available(diag_fd);
    why = "conmon exited without reporting the container's pid" +
          (text.empty() ? "" : ": " + text);
    return false;
  }
  if (!parse_sync(line, pid, message)) {
    why = "unexpected answer from conmon: " + trim(line);
    return false;
  }
  if (pid <= 0) {
    why = message.empty() ? rt_.name + " create failed"
                          : runtime_message(message);
    return false;
  }
  return true;
}

void oci::clean_up_failed(const std::string& id, const created& partial) {
  kill_conmon(partial.conmon_pid);
  std::string output, err;
  runtime_call("delete", {"--force", id}, output, err);
  forget_exit(id);
  std::error_code ec;
  if (fs::is_symlink(paths_.sockets_dir + "/" + id, ec))
    fs::remove(paths_.sockets_dir + "/" + id, ec);
}

bool oci::start(const std::string& id, std::string& err) {
  std::string output;
  if (runtime_call("start", {id}, output, err))
    return true;
  err = "starting container " + id + ": " + err;
  return false;
}

bool oci::kill(const std::string& id, int sig, bool all, std::string& err) {
  std::vector<std::string> args;
  if (all)
    args.emplace_back("--all");
  args.insert(args.end(), {id, std::to_string(sig)});
  std::string output;
  if (runtime_call("kill", args, output, err))
    return true;
  err = "killing container " + id + ": " + err;
  return false;
}

bool oci::pause(const std::string& id, std::string& err) {
  std::string output;
  if (runtime_call("pause", {id}, output, err))
    return true;
  err = "pausing container " + id + ": " + err;
  return false;
}

bool oci::resume(const std::string& id, std::string& err) {
  std::string output;
  if (runtime_call("resume", {id}, output, err))
    return true;
  err = "resuming container " + id + ": " + err;
  return false;
}

bool oci::remove(const std::string& id, bool force, std::string& err) {
  std::vector<std::string> args;
  if (force)
    args.emplace_back("--force");
  args.push_back(id);
  std::string output, why;
  // The runtime keeps its state in ROOT/ID: without it, nothing to delete.
  std::error_code ec;
  if (!runtime_call("delete", args, output, why) &&
      fs::exists(paths_.runtime_root + "/" + id, ec)) {
    err = "removing container " + id + ": " + why;
    return false;
  }
  // conmon removes its attach socket but leaves the link to the bundle.
  if (fs::is_symlink(paths_.sockets_dir + "/" + id, ec))
    fs::remove(paths_.sockets_dir + "/" + id, ec);
  return true;
}

bool oci::state(const std::string& id, std::string& status, pid_t& pid,
                std::string& err) {
  std::string output;
  if (!runtime_call("state", {id}, output, err)) {
    err = "reading the state of container " + id + ": " + err;
    return false;
  }
  simdjson::dom::parser parser;
  simdjson::dom::element doc;
  std::string_view s;
  int64_t p = 0;
  if (parser.parse(output).get(doc) != simdjson::SUCCESS ||
      doc["status"].get(s) != simdjson::SUCCESS) {
    err = "reading the state of container " + id + ": unexpected output: " +
          trim(output);
    return false;
  }
  status = s;
  pid = doc["pid"].get(p) == simdjson::SUCCESS ? static_cast<pid_t>(p) : 0;
  return true;
}

std::optional<int> oci::exit_code(const std::string& id) const {
  auto v = to_int(read_file(paths_.exits_dir + "/" + id));
  if (!v)
    return std::nullopt;
  return static_cast<int>(*v);
}

void oci::forget_exit(const std::string& id) {
  std::error_code ec;
  fs::remove(paths_.exits_dir + "/" + id, ec);
}

int failure_exit_code(std::string_view runtime_message) {
  auto text = lower(runtime_message);
  for (const char* cause : {"permission denied", "is a directory",
                            "not executable", "exec format error"})
    if (text.find(cause) != std::string::npos)
      return 126;
  for (const char* cause : {"no such file or directory", "not found"})
    if (text.find(cause) != std::string::npos)
      return 127;
  return 125;
}

std::string runtime_message(std::string_view text) {
  // The last logrus line at error level, else the last with a msg.
  std::string_view chosen;
  bool chosen_is_error = false;
  size_t pos = 0;
  while (pos < text.size()) {
    auto end = text.find('\n', pos);
    auto line = text.substr(pos, end == std::string_view::npos
                                     ? std::string_view::npos
                                     : end - pos);
    pos = end == std::string_view::npos ? text.size() : end + 1;
    if (line.find("msg=\"") == std::string_view::npos)
      continue;
    bool is_error = line.find("level=error") != std::string_view::npos ||
                    line.find("level=fatal") != std::string_view::npos;
    if (is_error || !chosen_is_error) {
      chosen = line;
      chosen_is_error = is_error;
    }
  }
  if (chosen.empty())
    return trim(text);
  return trim(unquote_logrus(chosen.substr(chosen.find("msg=\"") + 5)));
}

std::optional<std::string> exec_failure(int exit_code,
                                        const std::string& log_path) {
  if (exit_code != 1 && exit_code != 255)
    return std::nullopt;
  auto log = read_file(log_path);
  auto text = trim(log.size() > 8192 ? log.substr(log.size() - 8192) : log);
  auto line = text.substr(text.rfind('\n') + 1);
  // k8s-file: <timestamp> <stream> <F|P> <text>
  std::istringstream in{line};
  std::string stamp, stream, tag, rest;
  in >> stamp >> stream >> tag;
  std::getline(in >> std::ws, rest);
  if (stream != "stderr" || !rest.starts_with("exec ") ||
      rest.find(": ") == std::string::npos)
    return std::nullopt;
  return rest;
}

} // namespace berth::runtime
