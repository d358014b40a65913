// The host side of a container on the real conmon and runc: spawning and
// reaping, the container verbs, exit files, the failures the CLI maps to
// 126 and 127, and overlay mounts with many layers.
#define BOOST_TEST_MODULE oci
#include <boost/test/unit_test.hpp>

#include "runtime/exits.hpp"
#include "runtime/oci.hpp"
#include "runtime/overlay.hpp"
#include "runtime/process.hpp"
#include "support.hpp"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <cctype>
#include <sys/mount.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace runtime = berth::runtime;
namespace fs = std::filesystem;
namespace utf = boost::unit_test;
using namespace std::chrono_literals;
using berth::testing::precondition;
using berth::testing::read_file;

namespace {

const std::string busybox = "/bin/busybox";
const std::string runc = "/usr/sbin/runc";
const std::string conmon = "/usr/bin/conmon";

/// How long a test waits for something that must happen before it gives up
/// and lets the following checks fail (a guard, not a timing assertion).
constexpr auto patience = 60s;

// The reaper runs for the whole module, started before any thread.
struct reaper_fixture {
  reaper_fixture() { runtime::start_reaper(); }
  ~reaper_fixture() { runtime::stop_reaper(); }
};
BOOST_TEST_GLOBAL_FIXTURE(reaper_fixture);

boost::test_tools::assertion_result have_busybox(utf::test_unit_id) {
  return precondition(::access(busybox.c_str(), X_OK) == 0,
                      busybox + " is missing");
}

boost::test_tools::assertion_result as_root(utf::test_unit_id) {
  return precondition(::geteuid() == 0, "needs root");
}

boost::test_tools::assertion_result can_run_containers(utf::test_unit_id) {
  std::string missing;
  if (::geteuid() != 0)
    missing = "root";
  for (const auto& p : {runc, conmon, busybox})
    if (::access(p.c_str(), X_OK) != 0)
      missing += (missing.empty() ? "" : ", ") + p;
  return precondition(missing.empty(), "needs " + missing);
}

void write_file(const fs::path& p, const std::string& text) {
  std::ofstream{p} << text;
}

// A directory under /tmp, removed at the end; what is mounted under it is
// unmounted first.
struct temp_dir : berth::testing::temp_dir {
  temp_dir() : berth::testing::temp_dir("/tmp/berth-unit-oci-") {}
  ~temp_dir() {
    std::error_code ec;
    for (const auto& e : fs::recursive_directory_iterator{path, ec})
      if (e.is_directory(ec) && runtime::is_mounted(e.path()))
        ::umount2(e.path().c_str(), MNT_DETACH);
  }
};

// Zombie children of this process, read from /proc.
std::vector<pid_t> zombies() {
  std::vector<pid_t> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator{"/proc", ec}) {
    auto name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos)
      continue;
    auto stat = read_file(e.path() / "stat");
    auto close = stat.rfind(')');
    if (close == std::string::npos)
      continue;
    std::istringstream rest{stat.substr(close + 1)};
    char state = 0;
    pid_t ppid = 0;
    rest >> state >> ppid;
    if (state == 'Z' && ppid == ::getpid())
      found.push_back(std::stoi(name));
  }
  return found;
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator{"/proc/self/fd"})
    ++n;
  return n;
}

// Waits until `pid` no longer exists (reaped); false if it outlived us.
bool wait_gone(pid_t pid) {
  auto deadline = std::chrono::steady_clock::now() + patience;
  while (::kill(pid, 0) == 0 || errno != ESRCH) {
    if (std::chrono::steady_clock::now() > deadline)
      return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

// Ids reported by an exit_watcher, for tests to wait on.
class exit_log {
public:
  void add(const std::string& id) {
    std::lock_guard lock{mutex_};
    ids_.insert(id);
    changed_.notify_all();
  }
  bool wait(const std::string& id) {
    std::unique_lock lock{mutex_};
    return changed_.wait_for(lock, patience,
                             [&] { return ids_.contains(id); });
  }
  size_t count(const std::string& id) {
    std::lock_guard lock{mutex_};
    return ids_.count(id);
  }
  std::set<std::string> all() {
    std::lock_guard lock{mutex_};
    return {ids_.begin(), ids_.end()};
  }

private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::multiset<std::string> ids_;
};

const char* config_template = R"({
  "ociVersion": "1.0.2",
  "process": {
    "terminal": @TERMINAL@,
    "user": {"uid": 0, "gid": 0},
    "args": @ARGS@,
    "env": ["PATH=/bin"],
    "cwd": "/",
    "capabilities": {
      "bounding": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "effective": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
      "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"]
    },
    "noNewPrivileges": true
  },
  "root": {"path": "@ROOTFS@", "readonly": true},
  "hostname": "berth-test",
  "mounts": [
    {"destination": "/proc", "type": "proc", "source": "proc"},
    {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
     "options": ["nosuid", "strictatime", "mode=755", "size=1024k"]},
    {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
     "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666"]}
  ],
  "linux": {
    "cgroupsPath": "/berth-test/@ID@",
    "resources": {"devices": [{"allow": false, "access": "rwm"}]},
    "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                   {"type": "uts"}, {"type": "mount"}]
  }
})";

std::string json_array(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i) {
    out += i ? ", \"" : "\"";
    for (char c : v[i]) {
      if (c == '"' || c == '\\')
        out += '\\';
      out += c;
    }
    out += '"';
  }
  return out + "]";
}

std::string replace_all(std::string s, const std::string& from,
                        const std::string& to) {
  for (auto pos = s.find(from); pos != std::string::npos;
       pos = s.find(from, pos + to.size()))
    s.replace(pos, from.size(), to);
  return s;
}

// cgroup directories the runtime made for `id`, in every hierarchy.
std::vector<fs::path> cgroup_dirs(const std::string& id) {
  std::vector<fs::path> found;
  std::error_code ec;
  for (const auto& h : fs::directory_iterator{"/sys/fs/cgroup", ec})
    if (fs::exists(h.path() / "berth-test" / id, ec))
      found.push_back(h.path() / "berth-test" / id);
  return found;
}

// A run directory, a busybox root file system, runc through conmon and an
// exit watcher; whatever a test created is deleted at the end, even when a
// check failed.
struct container_host {
  temp_dir tmp;
  fs::path rootfs = tmp.path / "rootfs";
  runtime::oci oci{runtime::runtime_info{"runc", runc},
                   runtime::oci_paths{(tmp.path / "run/runc").string(),
                                      (tmp.path / "run/exits").string(),
                                      (tmp.path / "run/socket").string(),
                                      conmon}};
  runtime::exit_watcher watcher;
  exit_log exits;
  std::vector<std::string> ids;

  container_host() {
    fs::create_directories(rootfs / "bin");
    for (const char* dir : {"proc", "dev", "sys", "etc", "tmp"})
      fs::create_directories(rootfs / dir);
    fs::copy_file(busybox, rootfs / "bin/busybox");
    for (const char* applet : {"sh", "true", "sleep", "echo", "cat", "ls"})
      fs::create_symlink("busybox", rootfs / "bin" / applet);
    // Executable by its mode, yet no format the kernel can run.
    write_file(rootfs / "bad", std::string{"\x01\x02garbage", 9});
    fs::permissions(rootfs / "bad", fs::perms(0755));
    std::string err;
    BOOST_TEST_REQUIRE(watcher.start(oci.paths().exits_dir,
                                     [this](const std::string& id) {
                                       exits.add(id);
                                     },
                                     err),
                       err);
  }

  ~container_host() {
    watcher.stop();
    std::string err;
    for (const auto& id : ids) {
      oci.remove(id, true, err);
      for (const auto& dir : cgroup_dirs(id))
        ::rmdir(dir.c_str());
    }
    std::error_code ec;
    for (const auto& h : fs::directory_iterator{"/sys/fs/cgroup", ec})
      ::rmdir((h.path() / "berth-test").c_str()); // fails while others use it
  }

  std::string new_id() {
    static std::atomic<int> next{0};
    return "berth-" + std::to_string(::getpid()) + "-" +
           std::to_string(next++);
  }

  runtime::create_request request(const std::string& id,
                                  const std::vector<std::string>& args,
                                  bool tty = false) {
    auto dir = tmp.path / "containers" / id;
    fs::create_directories(dir);
    auto config = replace_all(config_template, "@ARGS@", json_array(args));
    config = replace_all(config, "@TERMINAL@", tty ? "true" : "false");
    config = replace_all(config, "@ROOTFS@", rootfs.string());
    write_file(dir / "config.json", replace_all(config, "@ID@", id));
    runtime::create_request r;
    r.id = id;
    r.name = "test-" + id;
    r.bundle = r.userdata = dir.string();
    r.log_path = (dir / "ctr.log").string();
    r.tty = tty;
    return r;
  }

  bool create(const std::string& id, const std::vector<std::string>& args,
              runtime::created& out, std::string& err) {
    ids.push_back(id);
    return oci.create(request(id, args), out, err);
  }

  // create + start, failing the test on error.
  runtime::created run(const std::string& id,
                       const std::vector<std::string>& args) {
    runtime::created out;
    std::string err;
    BOOST_TEST_REQUIRE(create(id, args, out, err), err);
    BOOST_TEST_REQUIRE(oci.start(id, err), err);
    return out;
  }

  // The exit code, once the watcher saw conmon's exit file; -1 if none.
  int wait_exit(const std::string& id) {
    if (!exits.wait(id))
      return -1;
    return oci.exit_code(id).value_or(-1);
  }

  std::string status(const std::string& id) {
    std::string status, err;
    pid_t pid = 0;
    if (!oci.state(id, status, pid, err))
      return "unknown";
    return status;
  }

  size_t runtime_state_entries() {
    size_t n = 0;
    std::error_code ec;
    for ([[maybe_unused]] const auto& e :
         fs::directory_iterator{oci.paths().runtime_root, ec})
      ++n;
    return n;
  }
};

runtime::spawn_options command(std::vector<std::string> argv) {
  runtime::spawn_options o;
  o.argv = std::move(argv);
  o.env = {"PATH=/bin"};
  return o;
}

// Runs `script` with busybox's sh through runtime::run: the exit code, and
// the output in `out`.
int run_script(const std::string& script, std::string& out) {
  std::string err;
  return runtime::run(command({busybox, "sh", "-c", script}), out, err);
}

std::string status_field(const std::string& status, const std::string& key) {
  std::istringstream in{status};
  std::string line;
  while (std::getline(in, line))
    if (line.starts_with(key + ":"))
      return line.substr(line.find_first_not_of(" \t", key.size() + 1));
  return {};
}

} // namespace

// --- processes --------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(processes, *utf::precondition(have_busybox))

BOOST_AUTO_TEST_CASE(run_captures_output_and_exit_code) {
  std::string out;
  BOOST_TEST(run_script("echo out; echo err >&2; exit 7", out) == 7);
  BOOST_TEST(out == "out\nerr\n");
}

BOOST_AUTO_TEST_CASE(run_reports_a_signal_as_128_plus_its_number) {
  std::string out;
  BOOST_TEST(run_script("kill -9 $$", out) == 137);
}

BOOST_AUTO_TEST_CASE(run_fails_for_a_missing_program) {
  std::string out, err;
  BOOST_TEST(runtime::run(command({"/nonexistent/program"}), out, err) == -1);
  BOOST_TEST(err.find("No such file or directory") != std::string::npos, err);
  BOOST_TEST(runtime::run(command({"relative"}), out, err) == -1);
}

BOOST_AUTO_TEST_CASE(run_kills_a_command_past_its_timeout) {
  auto o = command({busybox, "sleep", "30"});
  o.timeout = 100ms;
  std::string out, err;
  BOOST_TEST(runtime::run(o, out, err) == -1);
  BOOST_TEST(err.find("was killed") != std::string::npos, err);
  BOOST_TEST(zombies().empty());
}

BOOST_AUTO_TEST_CASE(run_kills_a_command_that_closed_its_output) {
  auto o = command({busybox, "sh", "-c", "exec >&- 2>&-; sleep 30"});
  o.timeout = 100ms;
  std::string out, err;
  BOOST_TEST(runtime::run(o, out, err) == -1);
  BOOST_TEST(err.find("was killed") != std::string::npos, err);
}

BOOST_AUTO_TEST_CASE(run_keeps_at_most_64_kib_of_output) {
  std::string out;
  BOOST_TEST(run_script("head -c 200000 /dev/zero; exit 0", out) == 0);
  BOOST_TEST(out.size() == 64u * 1024);
}

BOOST_AUTO_TEST_CASE(run_returns_when_a_grandchild_keeps_the_output_open) {
  std::string out;
  // The background sleep holds the pipe; run() must not wait for it.
  BOOST_TEST(run_script("/bin/busybox sleep 30 & echo $!", out) == 0);
  pid_t orphan = std::atoi(out.c_str());
  BOOST_TEST_REQUIRE(orphan > 0);
  ::kill(orphan, SIGKILL);
  BOOST_TEST(wait_gone(orphan)); // reaped by the subreaper
}

BOOST_AUTO_TEST_CASE(children_get_an_empty_mask_and_default_signals) {
  // This thread blocks SIGCHLD (the reaper's signalfd); children must not.
  std::string out, err;
  auto o = command({busybox, "cat", "/proc/self/status"});
  BOOST_TEST_REQUIRE(runtime::run(o, out, err) == 0, err);
  BOOST_TEST(status_field(out, "SigBlk") == "0000000000000000");
  BOOST_TEST(status_field(out, "SigIgn") == "0000000000000000");
}

BOOST_AUTO_TEST_CASE(children_get_only_the_fds_they_are_given) {
  int p[2];
  BOOST_TEST_REQUIRE(::pipe(p) == 0); // no O_CLOEXEC: closing is spawn's job
  runtime::unique_fd r{p[0]}, w{p[1]};
  // Neither CLOEXEC nor passed, and above what ls opens for itself.
  runtime::unique_fd null{::open("/dev/null", O_RDONLY | O_CLOEXEC)};
  int stray = ::fcntl(null.get(), F_DUPFD, 100);
  auto o = command({busybox, "sh", "-c", "echo via-5 >&5; ls /proc/self/fd"});
  o.fds = {{w.get(), 5}};
  std::string out, err;
  BOOST_TEST_REQUIRE(runtime::run(o, out, err) == 0, err);
  ::close(stray);
  w.reset();
  char buf[64] = {};
  BOOST_TEST(::read(r.get(), buf, sizeof buf - 1) > 0);
  BOOST_TEST(std::string{buf} == "via-5\n");
  // ls itself opens one directory fd: 0 1 2 3 (ls) 5, nothing else.
  std::set<std::string> fds;
  std::istringstream in{out};
  for (std::string fd; in >> fd;)
    fds.insert(fd);
  BOOST_TEST(fds.contains("5"));
  BOOST_TEST(!fds.contains(std::to_string(stray)));
  BOOST_TEST(fds.size() <= 5u);
}

BOOST_AUTO_TEST_CASE(wait_child_gets_a_status_the_reaper_took_first) {
  std::string err;
  pid_t pid = runtime::spawn(command({busybox, "sh", "-c", "exit 42"}), err);
  BOOST_TEST_REQUIRE(pid > 0, err);
  BOOST_TEST_REQUIRE(wait_gone(pid)); // reaped before anyone waits
  BOOST_TEST(runtime::wait_child(pid) == 42);
  BOOST_TEST(runtime::wait_child(pid) == -1); // once only
}

BOOST_AUTO_TEST_CASE(wait_child_for_gives_up_and_signal_child_ends_it) {
  std::string err;
  pid_t pid = runtime::spawn(command({busybox, "sleep", "30"}), err);
  BOOST_TEST_REQUIRE(pid > 0, err);
  int code = 0;
  BOOST_TEST(!runtime::wait_child_for(pid, 10ms, code));
  BOOST_TEST(runtime::signal_child(pid, SIGTERM));
  BOOST_TEST(runtime::wait_child_for(pid, patience, code));
  BOOST_TEST(code == 128 + SIGTERM);
  BOOST_TEST(!runtime::signal_child(pid, SIGTERM)); // gone: never a new pid
}

BOOST_AUTO_TEST_CASE(orphans_reparented_to_the_subreaper_are_reaped) {
  std::string out, err;
  BOOST_TEST_REQUIRE(
      runtime::run(command({busybox, "sh", "-c",
                            "/bin/busybox true & echo $!; exit 0"}),
                   out, err) == 0,
      err);
  pid_t orphan = std::atoi(out.c_str());
  BOOST_TEST_REQUIRE(orphan > 0);
  BOOST_TEST(wait_gone(orphan));
  BOOST_TEST(zombies().empty());
}

BOOST_AUTO_TEST_CASE(concurrent_spawns_each_get_their_own_status) {
  std::vector<std::thread> threads;
  std::atomic<int> wrong{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([t, &wrong] {
      for (int i = 0; i < 25; ++i) {
        int want = (t * 25 + i) % 200;
        std::string out, err;
        auto o = command(
            {busybox, "sh", "-c", "exit " + std::to_string(want)});
        if (runtime::run(o, out, err) != want)
          ++wrong;
      }
    });
  for (auto& t : threads)
    t.join();
  BOOST_TEST(wrong == 0);
  BOOST_TEST(zombies().empty());
}

BOOST_AUTO_TEST_SUITE_END()

// --- choosing the runtime ---------------------------------------------------

BOOST_AUTO_TEST_CASE(choose_runtime_reads_the_host) {
  runtime::runtime_info rt;
  std::string note, err, controllers;
  bool hybrid = runtime::hybrid_cgroups(controllers);
  bool have_crun = ::access("/usr/bin/crun", X_OK) == 0;
  bool have_runc = ::access(runc.c_str(), X_OK) == 0;
  if (!have_runc && (hybrid || !have_crun)) {
    BOOST_TEST_MESSAGE("skipped: no runtime that can run here");
    return;
  }
  BOOST_TEST_REQUIRE(runtime::choose_runtime("", rt, note, err), err);
  if (hybrid || !have_crun) {
    // This host: hugetlb on /sys/fs/cgroup/unified beside the v1 hierarchies.
    BOOST_TEST(rt.name == "runc");
    BOOST_TEST(rt.path == runc);
    BOOST_TEST(note.find(have_crun ? "hybrid" : "not installed") !=
                   std::string::npos,
               note);
    if (hybrid)
      BOOST_TEST(note.find(controllers) != std::string::npos, note);
  } else {
    BOOST_TEST(rt.name == "crun");
    BOOST_TEST(note.empty());
  }
}

BOOST_AUTO_TEST_CASE(choose_runtime_by_name_or_path) {
  runtime::runtime_info rt;
  std::string note, err;
  if (::access(runc.c_str(), X_OK) == 0) {
    BOOST_TEST(runtime::choose_runtime("runc", rt, note, err), err);
    BOOST_TEST(rt.path == runc);
    BOOST_TEST(runtime::choose_runtime(runc, rt, note, err), err);
    BOOST_TEST(rt.name == "runc");
  }
  BOOST_TEST(!runtime::choose_runtime("/nonexistent/crun", rt, note, err));
  BOOST_TEST(err.find("/nonexistent/crun") != std::string::npos, err);
  BOOST_TEST(!runtime::choose_runtime("kata", rt, note, err));
  BOOST_TEST(err.find("kata") != std::string::npos, err);
}

// --- messages ---------------------------------------------------------------

BOOST_AUTO_TEST_CASE(runtime_messages_are_unwrapped_and_classified) {
  auto denied = runtime::runtime_message(
      "time=\"2024-01-01T00:00:00Z\" level=warning msg=\"something\"\n"
      "time=\"2024-01-01T00:00:00Z\" level=error msg=\"runc create failed: "
      "unable to start container process: exec: \\\"/etc\\\": permission "
      "denied\"\n");
  BOOST_TEST(denied == "runc create failed: unable to start container "
                       "process: exec: \"/etc\": permission denied");
  BOOST_TEST(runtime::failure_exit_code(denied) == 126);
  BOOST_TEST(runtime::failure_exit_code(
                 "exec: \"x\": executable file not found in $PATH") == 127);
  BOOST_TEST(runtime::failure_exit_code(
                 "stat /bin/nosuch: no such file or directory") == 127);
  BOOST_TEST(runtime::failure_exit_code("open /etc: Is a directory") == 126);
  BOOST_TEST(runtime::failure_exit_code("exec /bad: exec format error") ==
             126);
  BOOST_TEST(runtime::failure_exit_code("cgroup: device busy") == 125);
  BOOST_TEST(runtime::runtime_message("  plain text\n") == "plain text");
}

// --- exit watcher -----------------------------------------------------------

BOOST_AUTO_TEST_CASE(exit_watcher_reports_each_file_once) {
  temp_dir tmp;
  auto dir = tmp.path / "exits"; // created by the watcher
  exit_log log;
  runtime::exit_watcher watcher;
  std::string err;
  BOOST_TEST_REQUIRE(watcher.start(dir.string(),
                                   [&](const std::string& id) { log.add(id); },
                                   err),
                     err);
  // As conmon (glib) writes: a temporary renamed into place.
  write_file(dir / "abc.XyZ123", "0");
  fs::rename(dir / "abc.XyZ123", dir / "abc");
  // As a plain writer does.
  write_file(dir / "def", "1");
  BOOST_TEST(log.wait("abc"));
  BOOST_TEST(log.wait("def")); // events arrive in order: "abc" is settled
  BOOST_TEST(log.count("abc") == 1u);
  BOOST_TEST(log.count("abc.XyZ123") == 0u);
  watcher.stop();
  auto present = runtime::exit_watcher::existing(dir.string());
  BOOST_TEST((std::set<std::string>{present.begin(), present.end()} ==
              std::set<std::string>{"abc", "def"}));
}

// --- containers -------------------------------------------------------------

BOOST_AUTO_TEST_SUITE(containers, *utf::precondition(can_run_containers))

BOOST_FIXTURE_TEST_CASE(create_start_and_exit_code, container_host) {
  auto id = new_id();
  runtime::created c;
  std::string err;
  BOOST_TEST_REQUIRE(create(id, {"sh", "-c", "exit 3"}, c, err), err);
  BOOST_TEST(c.pid > 0);
  BOOST_TEST(c.conmon_pid > 0);
  BOOST_TEST(status(id) == "created"); // really exists when create returns
  BOOST_TEST_REQUIRE(oci.start(id, err), err);
  BOOST_TEST(wait_exit(id) == 3);
  BOOST_TEST(exits.count(id) == 1u);
  BOOST_TEST(status(id) == "stopped");
  BOOST_TEST(oci.remove(id, false, err), err);
  BOOST_TEST(status(id) == "unknown");
  BOOST_TEST(cgroup_dirs(id).empty());
  oci.forget_exit(id);
  BOOST_TEST(!oci.exit_code(id).has_value());
}

BOOST_FIXTURE_TEST_CASE(killed_container_exits_137, container_host) {
  auto id = new_id();
  run(id, {"sleep", "30"});
  BOOST_TEST(status(id) == "running");
  std::string err;
  BOOST_TEST(oci.kill(id, SIGKILL, false, err), err);
  BOOST_TEST(wait_exit(id) == 137);
  BOOST_TEST(oci.remove(id, false, err), err);
  BOOST_TEST(cgroup_dirs(id).empty());
}

BOOST_FIXTURE_TEST_CASE(pause_and_resume, container_host) {
  auto id = new_id();
  run(id, {"sleep", "30"});
  std::string err;
  BOOST_TEST_REQUIRE(oci.pause(id, err), err);
  BOOST_TEST(status(id) == "paused");
  BOOST_TEST_REQUIRE(oci.resume(id, err), err);
  BOOST_TEST(status(id) == "running");
  BOOST_TEST(oci.kill(id, SIGKILL, true, err), err);
  BOOST_TEST(wait_exit(id) == 137);
  BOOST_TEST(oci.remove(id, false, err), err);
}

BOOST_FIXTURE_TEST_CASE(force_remove_of_a_running_container,
                        container_host) {
  auto id = new_id();
  auto c = run(id, {"sleep", "30"});
  std::string err;
  BOOST_TEST(oci.remove(id, true, err), err);
  BOOST_TEST(status(id) == "unknown");
  BOOST_TEST(wait_exit(id) == 137);
  BOOST_TEST(wait_gone(c.conmon_pid));
  BOOST_TEST(cgroup_dirs(id).empty());
  BOOST_TEST(oci.remove(id, false, err), err); // unknown: still success
}

BOOST_FIXTURE_TEST_CASE(a_directory_as_command_fails_with_126,
                        container_host) {
  auto id = new_id();
  runtime::created c;
  std::string err;
  BOOST_TEST_REQUIRE(!create(id, {"/etc"}, c, err));
  BOOST_TEST_MESSAGE("runc said: " << err);
  BOOST_TEST(err.find("\"/etc\": permission denied") != std::string::npos,
             err);
  BOOST_TEST(err.find("level=") == std::string::npos, err);
  BOOST_TEST(runtime::failure_exit_code(err) == 126);
  // Nothing left behind.
  BOOST_TEST(status(id) == "unknown");
  BOOST_TEST(runtime_state_entries() == 0u);
  BOOST_TEST(cgroup_dirs(id).empty());
  BOOST_TEST(!oci.exit_code(id).has_value());
  if (c.conmon_pid > 0)
    BOOST_TEST(wait_gone(c.conmon_pid));
}

BOOST_FIXTURE_TEST_CASE(a_missing_command_fails_with_127, container_host) {
  auto id = new_id();
  runtime::created c;
  std::string err;
  BOOST_TEST_REQUIRE(!create(id, {"nosuchcmd"}, c, err));
  BOOST_TEST(err.find("nosuchcmd") != std::string::npos, err);
  BOOST_TEST(runtime::failure_exit_code(err) == 127);
  BOOST_TEST_REQUIRE(!create(new_id(), {"/bin/nosuch"}, c, err));
  BOOST_TEST(runtime::failure_exit_code(err) == 127);
  BOOST_TEST(runtime_state_entries() == 0u);
  BOOST_TEST(cgroup_dirs(id).empty());
}

// runc checks the command at create; an exec that fails only after start
// shows as exit 1 with the reason on stderr, which exec_failure finds.
BOOST_FIXTURE_TEST_CASE(an_exec_failing_after_start_is_recognised,
                        container_host) {
  auto id = new_id();
  run(id, {"/bad"});
  int code = wait_exit(id);
  BOOST_TEST_REQUIRE(code >= 0);
  auto log = (tmp.path / "containers" / id / "ctr.log").string();
  auto failure = runtime::exec_failure(code, log);
  BOOST_TEST_REQUIRE(failure.has_value(), "log: " << read_file(log));
  BOOST_TEST(failure->find("exec format error") != std::string::npos);
  BOOST_TEST(runtime::failure_exit_code(*failure) == 126);
  // An ordinary exit 1 is not mistaken for one.
  auto other = new_id();
  run(other, {"sh", "-c", "echo done; exit 1"});
  BOOST_TEST(wait_exit(other) == 1);
  BOOST_TEST(!runtime::exec_failure(
                  1, (tmp.path / "containers" / other / "ctr.log").string())
                  .has_value());
}

BOOST_FIXTURE_TEST_CASE(k8s_file_log_holds_the_output, container_host) {
  auto id = new_id();
  run(id, {"echo", "hi"});
  BOOST_TEST(wait_exit(id) == 0);
  auto log = read_file(tmp.path / "containers" / id / "ctr.log");
  // "<RFC 3339 time with fraction> stdout F hi\n", a line of its own.
  auto at = log.find(" stdout F hi\n");
  BOOST_REQUIRE_MESSAGE(at != std::string::npos, log);
  auto start = log.rfind('\n', at);
  auto stamp = log.substr(start == std::string::npos ? 0 : start + 1,
                          at - (start == std::string::npos ? 0 : start + 1));
  BOOST_TEST(stamp.size() > 20u, stamp);
  BOOST_TEST(std::isdigit(static_cast<unsigned char>(stamp[0])), stamp);
  BOOST_TEST(stamp[4] == '-', stamp);
  BOOST_TEST(stamp[10] == 'T', stamp);
  BOOST_TEST(stamp.find('.') != std::string::npos, stamp);
}

BOOST_FIXTURE_TEST_CASE(a_container_with_a_terminal, container_host) {
  auto id = new_id();
  ids.push_back(id);
  runtime::created c;
  std::string err;
  BOOST_TEST_REQUIRE(oci.create(request(id, {"sh", "-c", "test -t 1"}, true),
                                c, err),
                     err);
  BOOST_TEST_REQUIRE(oci.start(id, err), err);
  BOOST_TEST(wait_exit(id) == 0); // stdout is a terminal
  BOOST_TEST(oci.remove(id, false, err), err);
}

BOOST_FIXTURE_TEST_CASE(fifty_cycles_leave_nothing_behind, container_host) {
  // Warm up once so that lazily opened descriptors are counted before.
  std::string err;
  auto warm = new_id();
  run(warm, {"true"});
  BOOST_TEST_REQUIRE(wait_exit(warm) == 0);
  BOOST_TEST_REQUIRE(oci.remove(warm, false, err), err);
  oci.forget_exit(warm);
  size_t fds_before = open_fds();

  std::vector<pid_t> monitors;
  for (int i = 0; i < 50; ++i) {
    auto id = new_id();
    auto c = run(id, {"sh", "-c", "exit " + std::to_string(i % 5)});
    monitors.push_back(c.conmon_pid);
    BOOST_TEST(wait_exit(id) == i % 5);
    BOOST_TEST(oci.remove(id, false, err), err);
    oci.forget_exit(id);
    BOOST_TEST(cgroup_dirs(id).empty());
  }
  for (pid_t pid : monitors)
    BOOST_TEST(wait_gone(pid));
  BOOST_TEST(zombies().empty());
  BOOST_TEST(open_fds() == fds_before);
  for (const auto& reported : exits.all()) // no temporary file reported
    BOOST_TEST((std::find(ids.begin(), ids.end(), reported) != ids.end()),
               reported);
  BOOST_TEST(runtime_state_entries() == 0u);
  BOOST_TEST(runtime::exit_watcher::existing(oci.paths().exits_dir).empty());
  BOOST_TEST(fs::is_empty(oci.paths().sockets_dir));
}

// What berthd blocks or ignores must not reach the container through
// conmon and the runtime (glibc's posix_spawn leaves its internal signals
// ignored, and that survives every exec down to the container).
BOOST_FIXTURE_TEST_CASE(containers_start_with_default_signals,
                        container_host) {
  auto id = new_id();
  run(id, {"cat", "/proc/self/status"});
  BOOST_TEST(wait_exit(id) == 0);
  auto log = read_file(tmp.path / "containers" / id / "ctr.log");
  BOOST_TEST(log.find("SigBlk:\t0000000000000000") != std::string::npos, log);
  BOOST_TEST(log.find("SigIgn:\t0000000000000000") != std::string::npos, log);
}

BOOST_AUTO_TEST_SUITE_END()

// --- overlay ----------------------------------------------------------------

namespace {

// `count` layers under deliberately long paths, each with its own file and
// a "shadow" file naming the layer, and upper, work and merged beside them.
struct overlay_host {
  temp_dir tmp;
  std::vector<std::string> lowers; // top first
  fs::path upper = tmp.path / "upper", work = tmp.path / "work",
           merged = tmp.path / "merged";

  void make_layers(int count) {
    auto base = tmp.path / std::string(120, 'l');
    for (int i = 0; i < count; ++i) {
      auto dir = base / ("layer-" + std::to_string(i) + "-" +
                         std::string(40, 'x')) / "diff";
      fs::create_directories(dir);
      write_file(dir / ("file-" + std::to_string(i)), std::to_string(i));
      write_file(dir / "shadow", std::to_string(i));
      lowers.push_back(dir.string());
    }
    for (const auto& d : {upper, work, merged})
      fs::create_directories(d);
  }

  size_t absolute_data_size() const {
    size_t n = 0;
    for (const auto& l : lowers)
      n += l.size() + 1;
    return n + upper.string().size() + work.string().size();
  }

  ~overlay_host() {
    std::string err;
    runtime::unmount(merged.string(), err);
  }

  void check_mount(int count) {
    std::string err;
    BOOST_TEST_REQUIRE(runtime::mount_overlay(lowers, upper.string(),
                                              work.string(), merged.string(),
                                              err),
                       err);
    BOOST_TEST(runtime::is_mounted(merged.string()));
    for (int i = 0; i < count; ++i)
      BOOST_TEST(read_file(merged / ("file-" + std::to_string(i))) ==
                 std::to_string(i));
    BOOST_TEST(read_file(merged / "shadow") == "0"); // top layer wins
    write_file(merged / "written", "up");
    BOOST_TEST(read_file(upper / "written") == "up");
    BOOST_TEST(runtime::unmount(merged.string(), err), err);
    BOOST_TEST(!runtime::is_mounted(merged.string()));
    BOOST_TEST(runtime::unmount(merged.string(), err), err); // not mounted
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(overlay, *utf::precondition(as_root))

BOOST_FIXTURE_TEST_CASE(overlay_with_three_layers, overlay_host) {
  make_layers(3);
  check_mount(3);
}

BOOST_FIXTURE_TEST_CASE(overlay_with_sixty_long_layer_paths, overlay_host) {
  make_layers(60);
  // Past one page as absolute paths: the short fd names must be used.
  BOOST_TEST_REQUIRE(absolute_data_size() > size_t(::sysconf(_SC_PAGESIZE)));
  check_mount(60);
}

BOOST_FIXTURE_TEST_CASE(overlay_with_three_hundred_layers, overlay_host) {
  make_layers(300);
  // Past one page even as /proc/self/fd names: one layer at a time.
  check_mount(300);
}

BOOST_FIXTURE_TEST_CASE(read_only_overlay_and_errors, overlay_host) {
  make_layers(2);
  std::string err;
  BOOST_TEST_REQUIRE(
      runtime::mount_overlay(lowers, "", "", merged.string(), err), err);
  BOOST_TEST(read_file(merged / "shadow") == "0");
  BOOST_TEST(runtime::unmount(merged.string(), err), err);
  BOOST_TEST(!runtime::mount_overlay({"/nonexistent/layer", lowers[0]},
                                     upper.string(), work.string(),
                                     merged.string(), err));
  BOOST_TEST(err.find(merged.string()) != std::string::npos, err);
  BOOST_TEST(!runtime::is_mounted(merged.string()));
}

BOOST_AUTO_TEST_SUITE_END()
