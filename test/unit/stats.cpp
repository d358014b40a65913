// Container stats and process listings against real cgroups made for the
// test, holding children that use cpu, memory, disk and network; the file
// parsers and the formatting helpers on fixed text.
#define BOOST_TEST_MODULE stats
#include <boost/test/unit_test.hpp>

#include "runtime/stats.hpp"
#include "runtime/top.hpp"
#include "support.hpp"

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <functional>
#include <linux/if_tun.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sstream>
#include <string>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace fs = std::filesystem;
namespace utf = boost::unit_test;
using namespace berth::runtime;
using berth::testing::precondition;

namespace {

constexpr uint64_t mib = 1024 * 1024;

// How long a child may take to report before the test gives up on it (a
// guard against hanging, not a timing assertion).
constexpr int patience_ms = 60'000;

boost::test_tools::assertion_result as_root(utf::test_unit_id) {
  return precondition(::geteuid() == 0, "needs root to make cgroups");
}

boost::test_tools::assertion_result can_make_tun(utf::test_unit_id) {
  return precondition(::geteuid() == 0 && ::access("/dev/net/tun", R_OK) == 0,
                      "needs root and /dev/net/tun");
}

std::vector<std::string> split(const std::string& s, char sep) {
  std::vector<std::string> out;
  std::string item;
  std::istringstream in{s};
  while (std::getline(in, item, sep))
    out.push_back(item);
  return out;
}

// Mount points of the hierarchies read_cgroup_stats looks at, found here
// independently of the code under test: v1 mounts of cpu, cpuacct, memory,
// pids and blkio; the cgroup2 mount only when there is no v1 controller.
std::vector<std::string> cgroup_mounts() {
  std::vector<std::string> v1;
  std::string v2;
  std::ifstream in{"/proc/self/mountinfo"};
  std::string line;
  while (std::getline(in, line)) {
    auto dash = line.find(" - ");
    if (dash == std::string::npos)
      continue;
    auto left = split(line.substr(0, dash), ' ');
    auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3)
      continue;
    if (right[0] == "cgroup2")
      v2 = left[4];
    if (right[0] != "cgroup")
      continue;
    for (const auto& opt : split(right[2], ','))
      if (opt == "cpu" || opt == "cpuacct" || opt == "memory" ||
          opt == "pids" || opt == "blkio") {
        v1.push_back(left[4]);
        break;
      }
  }
  if (v1.empty() && !v2.empty())
    v1.push_back(v2);
  return v1;
}

uint64_t mem_total() {
  std::ifstream in{"/proc/meminfo"};
  std::string key;
  uint64_t kib = 0;
  in >> key >> kib;
  return kib * 1024;
}

// Reads one byte from `fd`, waiting at most `patience_ms`: false when the
// writer closed it (a child failed) or never wrote.
bool wait_byte(int fd) {
  pollfd p{fd, POLLIN, 0};
  char c;
  return ::poll(&p, 1, patience_ms) == 1 && ::read(fd, &c, 1) == 1;
}

// Waits until the child holding the write end of this CLOEXEC pipe has
// called exec (the read sees end of file).
void wait_exec(int fd) {
  pollfd p{fd, POLLIN, 0};
  char c;
  BOOST_TEST_REQUIRE(::poll(&p, 1, patience_ms) == 1);
  BOOST_TEST_REQUIRE(::read(fd, &c, 1) == 0);
}

struct pipe_pair {
  int fd[2] = {-1, -1};
  explicit pipe_pair(int flags = 0) {
    BOOST_TEST_REQUIRE(::pipe2(fd, flags) == 0);
  }
  ~pipe_pair() {
    close_read();
    close_write();
  }
  void close_read() {
    if (fd[0] >= 0)
      ::close(std::exchange(fd[0], -1));
  }
  void close_write() {
    if (fd[1] >= 0)
      ::close(std::exchange(fd[1], -1));
  }
};

// A cgroup "/berth-test-stats-<pid>" in every hierarchy of cgroup_mounts(),
// removed (after its child is killed and reaped) when the test ends.
struct test_cgroup {
  std::string path = "/berth-test-stats-" + std::to_string(::getpid());
  std::vector<std::string> dirs;
  pid_t child = -1;

  test_cgroup() {
    for (const auto& mount : cgroup_mounts()) {
      std::string dir = mount + path;
      BOOST_TEST_REQUIRE(::mkdir(dir.c_str(), 0755) == 0,
                         "mkdir " << dir << ": " << std::strerror(errno));
      dirs.push_back(dir);
    }
    BOOST_TEST_REQUIRE(!dirs.empty(), "no cgroup hierarchy is mounted");
  }

  ~test_cgroup() {
    stop_child();
    for (const auto& dir : dirs)
      if (::rmdir(dir.c_str()) != 0)
        BOOST_ERROR("rmdir " << dir << ": " << std::strerror(errno));
  }

  // In a child: moves the calling process into every hierarchy.
  bool join() const {
    for (const auto& dir : dirs) {
      int fd = ::open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC);
      bool ok = fd >= 0 && ::write(fd, "0", 1) == 1;
      if (fd >= 0)
        ::close(fd);
      if (!ok)
        return false;
    }
    return true;
  }

  // Kills and reaps the child; its exit status, or -1.
  int stop_child() {
    if (child <= 0)
      return -1;
    ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(std::exchange(child, -1), &status, 0);
    return status;
  }

  bool has_file(const char* name) const {
    for (const auto& dir : dirs)
      if (::access((dir + "/" + name).c_str(), F_OK) == 0)
        return true;
    return false;
  }
};

// Burns `ms` of this thread's cpu time.
void burn_cpu(int ms) {
  timespec ts{};
  volatile uint64_t sink = 0;
  do {
    for (int i = 0; i < 10000; ++i)
      sink = sink + static_cast<uint64_t>(i);
    ::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  } while (ts.tv_sec * 1000 + ts.tv_nsec / 1'000'000 < ms);
}

// Writes `bytes` to a new file at `path`, bypassing the page cache when
// the file system allows it, then syncs it.
bool write_file_direct(const std::string& path, size_t bytes) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_DIRECT, 0600);
  if (fd < 0)
    fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  void* buf = nullptr;
  if (fd < 0 || ::posix_memalign(&buf, 4096, mib) != 0)
    return false;
  std::memset(buf, 'x', mib);
  bool ok = true;
  for (size_t done = 0; ok && done < bytes; done += mib)
    ok = ::write(fd, buf, mib) == static_cast<ssize_t>(mib);
  ok = ok && ::fsync(fd) == 0;
  ::close(fd);
  std::free(buf);
  return ok;
}

// A temporary directory on the disk (not tmpfs), removed at the end.
struct temp_dir : berth::testing::temp_dir {
  temp_dir() : berth::testing::temp_dir("/var/tmp/berth-unit-stats-") {}
};

bool set_flags_up(int sock, const char* name) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  if (::ioctl(sock, SIOCGIFFLAGS, &ifr) != 0)
    return false;
  ifr.ifr_flags = static_cast<short>(ifr.ifr_flags | IFF_UP);
  return ::ioctl(sock, SIOCSIFFLAGS, &ifr) == 0;
}

bool set_ipv4(int sock, const char* name, unsigned long request,
              const char* address) {
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, name, IFNAMSIZ - 1);
  auto* a = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  a->sin_family = AF_INET;
  ::inet_pton(AF_INET, address, &a->sin_addr);
  return ::ioctl(sock, request, &ifr) == 0;
}

// Opens a tun device "tun0" (IPv4 10.254.0.1/24) in the current network
// namespace; -1 on failure.
int make_tun(int sock) {
  int fd = ::open("/dev/net/tun", O_RDWR | O_CLOEXEC);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "tun0", IFNAMSIZ - 1);
  ifr.ifr_flags = IFF_TUN | IFF_NO_PI;
  if (fd < 0 || ::ioctl(fd, TUNSETIFF, &ifr) != 0 ||
      !set_ipv4(sock, "tun0", SIOCSIFADDR, "10.254.0.1") ||
      !set_ipv4(sock, "tun0", SIOCSIFNETMASK, "255.255.255.0") ||
      !set_flags_up(sock, "tun0"))
    return -1;
  return fd;
}

bool send_udp(const char* address, int count, size_t size) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(9);
  ::inet_pton(AF_INET, address, &to.sin_addr);
  std::vector<char> payload(size, 'p');
  bool ok = s >= 0;
  for (int i = 0; ok && i < count; ++i)
    ok = ::sendto(s, payload.data(), size, 0, reinterpret_cast<sockaddr*>(&to),
                  sizeof to) == static_cast<ssize_t>(size);
  if (s >= 0)
    ::close(s);
  return ok;
}

// Reads the IPv4 UDP packets the stack sent out of the tun device and
// writes each back with addresses and ports swapped, so that it arrives as
// received traffic (checksums stay valid: their sums do not change).
bool reflect_udp(int tun, int count) {
  char buf[4096];
  for (int done = 0; done < count;) {
    pollfd p{tun, POLLIN, 0};
    if (::poll(&p, 1, patience_ms) != 1)
      return false;
    ssize_t n = ::read(tun, buf, sizeof buf);
    if (n < 28)
      return false;
    size_t ihl = static_cast<size_t>(buf[0] & 0x0f) * 4;
    if ((buf[0] >> 4) != 4 || buf[9] != IPPROTO_UDP)
      continue; // IPv6 chatter of a new link
    char tmp[4];
    std::memcpy(tmp, buf + 12, 4);
    std::memmove(buf + 12, buf + 16, 4);
    std::memcpy(buf + 16, tmp, 4);
    std::memcpy(tmp, buf + ihl, 2);
    std::memmove(buf + ihl, buf + ihl + 2, 2);
    std::memcpy(buf + ihl + 2, tmp, 2);
    if (::write(tun, buf, static_cast<size_t>(n)) != n)
      return false;
    ++done;
  }
  return true;
}

// A child in `cg` that runs `work` (its exit code when not 0), tells the
// test it is ready, then stays until released, so that the test measures
// what `work` left behind.
struct held_child {
  pipe_pair ready, hold;
  pid_t pid = -1;

  held_child(test_cgroup& cg, const std::function<int()>& work) {
    pid = ::fork();
    BOOST_TEST_REQUIRE(pid >= 0);
    if (pid == 0) {
      ready.close_read();
      hold.close_write();
      int code = cg.join() ? work() : 10;
      if (code == 0 && ::write(ready.fd[1], "r", 1) != 1)
        code = 19;
      if (code != 0)
        ::_exit(code);
      char c;
      while (::read(hold.fd[0], &c, 1) != 0) {
      }
      ::_exit(0);
    }
    cg.child = pid;
    ready.close_write();
    hold.close_read();
    BOOST_TEST_REQUIRE(wait_byte(ready.fd[0]), "the child did not get ready");
  }

  // Lets the child exit and checks that it exited with 0.
  void release(test_cgroup& cg) {
    hold.close_write();
    int status = 0;
    BOOST_TEST(::waitpid(std::exchange(cg.child, -1), &status, 0) == pid);
    BOOST_TEST(WIFEXITED(status));
    BOOST_TEST(WEXITSTATUS(status) == 0);
  }
};

// Checks the two totals that `sum` (sum_blkio, sum_io_stat, sum_net_dev)
// finds in `text`.
void check_totals(void (*sum)(std::string_view, uint64_t&, uint64_t&),
                  std::string_view text, uint64_t first, uint64_t second) {
  uint64_t a = 0, b = 0;
  sum(text, a, b);
  BOOST_TEST(a == first);
  BOOST_TEST(b == second);
}

std::vector<std::string> columns(const std::string& row) {
  return split(row, '\t');
}

// Forks a child that joins `cg` and execs /bin/sleep; returns once the
// exec has happened.
pid_t spawn_sleeper(test_cgroup& cg) {
  pipe_pair exec_pipe{O_CLOEXEC};
  pid_t pid = ::fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0) {
    if (cg.join())
      ::execl("/bin/sleep", "sleep", "1000", nullptr);
    ::_exit(127);
  }
  cg.child = pid;
  exec_pipe.close_write();
  wait_exec(exec_pipe.fd[0]);
  return pid;
}

} // namespace

BOOST_AUTO_TEST_SUITE(arithmetic)

BOOST_AUTO_TEST_CASE(cpu_percent_is_a_real_percentage) {
  // Half a core over one second, then two full cores.
  BOOST_TEST(cpu_percent(0, 500'000'000, 0, 1'000'000'000) == 50.0);
  BOOST_TEST(cpu_percent(1'000'000'000, 5'000'000'000, 3'000'000'000,
                         5'000'000'000) == 200.0);
  BOOST_TEST(cpu_percent(7, 7, 0, 1'000'000'000) == 0.0);
  BOOST_TEST(cpu_percent(9, 7, 0, 1'000'000'000) == 0.0);
  BOOST_TEST(cpu_percent(0, 7, 5, 5) == 0.0);
  BOOST_TEST(cpu_percent(0, 7, 6, 5) == 0.0);
}

BOOST_AUTO_TEST_CASE(durations_as_go_prints_them) {
  BOOST_TEST(go_duration(0) == "0s");
  BOOST_TEST(go_duration(999) == "999ns");
  BOOST_TEST(go_duration(1500) == "1.5\xc2\xb5s");
  BOOST_TEST(go_duration(1'500'000) == "1.5ms");
  BOOST_TEST(go_duration(750'000'000) == "750ms");
  BOOST_TEST(go_duration(1'000'000'000) == "1s");
  BOOST_TEST(go_duration(59'250'000'000) == "59.25s");
  BOOST_TEST(go_duration(123'000'000'000) == "2m3s");
  BOOST_TEST(go_duration(108'543'880'454) == "1m48.543880454s");
  BOOST_TEST(go_duration(3'605'100'000'000) == "1h0m5.1s");
  BOOST_TEST(go_duration(90'000'000'000'000) == "25h0m0s");
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(parsers)

BOOST_AUTO_TEST_CASE(keyed_files) {
  std::string cpu_stat = "usage_usec 1500\nuser_usec 1000\n"
                         "system_usec 500\nnr_periods 0\n";
  BOOST_TEST(keyed_value(cpu_stat, "usage_usec") == 1500u);
  BOOST_TEST(keyed_value(cpu_stat, "system_usec") == 500u);
  BOOST_TEST(keyed_value(cpu_stat, "user") == 0u);
  BOOST_TEST(keyed_value(cpu_stat, "missing") == 0u);
  BOOST_TEST(keyed_value("MemTotal:       2048 kB\n", "MemTotal:") == 2048u);
  BOOST_TEST(keyed_value("user 10\nsystem 20", "system") == 20u);
}

BOOST_AUTO_TEST_CASE(blkio_rows_summed_over_devices) {
  std::string text = "8:0 Read 100\n8:0 Write 200\n8:0 Sync 300\n"
                     "8:0 Async 0\n8:0 Discard 0\n8:0 Total 300\n"
                     "254:16 Read 1\n254:16 Write 2\n254:16 Total 3\n"
                     "Total 303\n";
  check_totals(sum_blkio, text, 101, 202);
}

BOOST_AUTO_TEST_CASE(io_stat_summed_over_devices) {
  std::string text = "8:0 rbytes=4096 wbytes=8192 rios=1 wios=2 dbytes=0 "
                     "dios=0\n254:0 rbytes=1 wbytes=2 rios=1 wios=1\n";
  check_totals(sum_io_stat, text, 4097, 8194);
}

BOOST_AUTO_TEST_CASE(net_dev_without_loopback) {
  std::string text =
      "Inter-|   Receive                                                |  "
      "Transmit\n"
      " face |bytes    packets errs drop fifo frame compressed multicast|"
      "bytes    packets errs drop fifo colls carrier compressed\n"
      "    lo:  999999     10    0    0    0     0          0         0 "
      "  999999      10    0    0    0     0       0          0\n"
      "  eth0:    1000     10    0    0    0     0          0         0 "
      "     300       3    0    0    0     0       0          0\n"
      "  eth1:20 1 0 0 0 0 0 0 7 1 0 0 0 0 0 0\n";
  check_totals(sum_net_dev, text, 1020, 307);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(cgroups, *utf::precondition(as_root))

BOOST_AUTO_TEST_CASE(stats_of_a_busy_child) {
  test_cgroup cg;
  temp_dir tmp;
  std::string file = (tmp.path / "written").string();
  std::string err;
  BOOST_TEST_REQUIRE(enable_block_accounting(cg.path, tmp.path, err), err);

  auto use_resources = [&] {
    burn_cpu(300);
    auto* mem = static_cast<volatile char*>(std::malloc(20 * mib));
    for (size_t i = 0; mem != nullptr && i < 20 * mib; i += 4096)
      mem[i] = 1;
    bool ok = mem != nullptr && write_file_direct(file, 5 * mib);
    return ok ? 0 : 11;
  };
  held_child child{cg, use_resources};
  pid_t pid = child.pid;

  cgroup_stats st;
  BOOST_TEST_REQUIRE(read_cgroup_stats(cg.path, pid, st, err), err);
  BOOST_TEST(st.cpu_nano > 100'000'000u);
  BOOST_TEST(st.system_nano <= st.cpu_nano);
  BOOST_TEST(st.online_cpus ==
             static_cast<uint64_t>(::sysconf(_SC_NPROCESSORS_ONLN)));
  BOOST_TEST(st.mem_limit > 0u);
  BOOST_TEST(st.mem_limit <= mem_total());
  if (cg.has_file("memory.usage_in_bytes") || cg.has_file("memory.current"))
    BOOST_TEST(st.mem_usage >= 20 * mib);
  if (cg.has_file("pids.current"))
    BOOST_TEST(st.pids == 1u);

  // Block I/O is only counted for file systems on a block device (not
  // tmpfs, or overlay without one).
  struct stat dir_st {};
  BOOST_TEST_REQUIRE(::stat(tmp.path.c_str(), &dir_st) == 0);
  if (::major(dir_st.st_dev) != 0 &&
      (cg.has_file("blkio.throttle.io_service_bytes") ||
       cg.has_file("io.stat")))
    BOOST_TEST(st.block_write >= 5 * mib);
  else
    BOOST_TEST_MESSAGE("block I/O not checked: " << tmp.path
                                                 << " has no block device");

  // The child shares our network namespace: host networking shows none.
  BOOST_TEST(st.net_rx == 0u);
  BOOST_TEST(st.net_tx == 0u);
  child.release(cg);
}

BOOST_AUTO_TEST_CASE(stats_of_an_empty_cgroup) {
  test_cgroup cg;
  cgroup_stats st;
  std::string err;
  BOOST_TEST_REQUIRE(read_cgroup_stats(cg.path, 0, st, err), err);
  BOOST_TEST(st.pids == 0u);
  BOOST_TEST(st.net_rx == 0u);
}

BOOST_AUTO_TEST_CASE(stats_of_a_missing_cgroup_fail) {
  cgroup_stats st;
  std::string err;
  std::string path = "/berth-test-stats-missing-" + std::to_string(::getpid());
  BOOST_TEST(!read_cgroup_stats(path, 0, st, err));
  BOOST_TEST(err.find(path) != std::string::npos, err);
  BOOST_TEST(err.find("No such file") != std::string::npos, err);
}

BOOST_AUTO_TEST_CASE(stats_of_a_gone_process_fail) {
  test_cgroup cg;
  pid_t pid = ::fork();
  BOOST_TEST_REQUIRE(pid >= 0);
  if (pid == 0)
    ::_exit(0);
  BOOST_TEST_REQUIRE(::waitpid(pid, nullptr, 0) == pid);
  cgroup_stats st;
  std::string err;
  BOOST_TEST(!read_cgroup_stats(cg.path, pid, st, err));
  BOOST_TEST(err.find("/proc/" + std::to_string(pid)) != std::string::npos,
             err);
}

BOOST_AUTO_TEST_CASE(network_of_a_namespace, *utf::precondition(can_make_tun)) {
  constexpr int packets = 20;
  constexpr size_t payload = 1000;
  constexpr uint64_t on_wire = packets * (payload + 28); // IPv4 + UDP
  constexpr uint64_t loopback = 100 * (payload + 28);
  test_cgroup cg;
  auto make_traffic = [&] {
    if (::unshare(CLONE_NEWNET) != 0)
      return 10;
    int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int tun = sock >= 0 && set_flags_up(sock, "lo") ? make_tun(sock) : -1;
    if (tun < 0)
      return 11;
    if (!send_udp("10.254.0.2", packets, payload) || !reflect_udp(tun, packets))
      return 12;
    if (!send_udp("127.0.0.1", 100, payload))
      return 13;
    return 0;
  };
  held_child child{cg, make_traffic};
  pid_t pid = child.pid;

  cgroup_stats st;
  std::string err;
  BOOST_TEST_REQUIRE(read_cgroup_stats(cg.path, pid, st, err), err);
  BOOST_TEST(st.net_tx >= on_wire);
  BOOST_TEST(st.net_rx >= on_wire);
  // Loopback traffic is left out (a new link's IPv6 chatter is far less).
  BOOST_TEST(st.net_tx < on_wire + loopback);
  BOOST_TEST(st.net_rx < on_wire + loopback);
  child.release(cg);
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(processes, *utf::precondition(as_root))

BOOST_AUTO_TEST_CASE(default_columns_of_a_sleeper) {
  test_cgroup cg;
  pid_t pid = spawn_sleeper(cg);

  std::vector<std::string> rows;
  std::string err;
  BOOST_TEST_REQUIRE(list_processes(cg.path, "", {}, rows, err), err);
  BOOST_TEST_REQUIRE(rows.size() == 2u);
  BOOST_TEST(rows[0] == "USER\tPID\tPPID\t%CPU\tELAPSED\tTTY\tTIME\tCOMMAND");
  auto c = columns(rows[1]);
  BOOST_TEST_REQUIRE(c.size() == 8u, rows[1]);
  BOOST_TEST(c[0] == "root");
  BOOST_TEST(c[1] == std::to_string(pid));
  BOOST_TEST(c[2] == std::to_string(::getpid()));
  BOOST_TEST(c[3].size() >= 5u);
  BOOST_TEST(c[3][c[3].size() - 4] == '.');
  BOOST_TEST(c[4].back() == 's');
  BOOST_TEST(c[6] == "0s");
  BOOST_TEST(c[7] == "sleep");
}

BOOST_AUTO_TEST_CASE(chosen_columns) {
  test_cgroup cg;
  pid_t pid = spawn_sleeper(cg);

  std::vector<std::string> rows;
  std::string err;
  BOOST_TEST_REQUIRE(list_processes(cg.path, "",
                                    {"pid,hpid", "args %c", "state", "uid",
                                     "huser", "seccomp", "capbnd", "nice"},
                                    rows, err),
                     err);
  BOOST_TEST_REQUIRE(rows.size() == 2u);
  BOOST_TEST(rows[0] == "PID\tHPID\tCOMMAND\tCOMMAND\tSTATE\tUID\tHUSER\t"
                        "SECCOMP\tBOUNDING CAPS\tNI");
  auto c = columns(rows[1]);
  BOOST_TEST_REQUIRE(c.size() == 10u, rows[1]);
  BOOST_TEST(c[0] == std::to_string(pid));
  BOOST_TEST(c[1] == std::to_string(pid));
  BOOST_TEST(c[2] == "sleep 1000");
  BOOST_TEST(c[3] == "sleep");
  BOOST_TEST((c[4] == "S" || c[4] == "R"), c[4]);
  BOOST_TEST(c[5] == "0");
  BOOST_TEST(c[6] == "root");
  BOOST_TEST(c[7] == "disabled");
  BOOST_TEST(!c[8].empty());
  BOOST_TEST(c[9] == "0");
}

BOOST_AUTO_TEST_CASE(unknown_descriptor_is_named) {
  test_cgroup cg;
  std::vector<std::string> rows;
  std::string err;
  BOOST_TEST(!list_processes(cg.path, "", {"pid", "bogus"}, rows, err));
  BOOST_TEST(err.find("'bogus'") != std::string::npos, err);
}

BOOST_AUTO_TEST_CASE(missing_cgroup_fails) {
  std::vector<std::string> rows;
  std::string err;
  BOOST_TEST(!list_processes("/berth-test-stats-missing", "", {}, rows, err));
  BOOST_TEST(err.find("/berth-test-stats-missing") != std::string::npos, err);
}

// The first process of a new pid namespace is pid 1 with parent 0, as
// inside a container; hpid shows its pid on the host.
BOOST_AUTO_TEST_CASE(pids_inside_a_pid_namespace) {
  test_cgroup cg;
  pipe_pair exec_pipe{O_CLOEXEC}, report;

  pid_t middle = ::fork();
  BOOST_TEST_REQUIRE(middle >= 0);
  if (middle == 0) {
    if (::unshare(CLONE_NEWPID) != 0)
      ::_exit(10);
    pid_t inner = ::fork();
    if (inner == 0) {
      if (cg.join())
        ::execl("/bin/sleep", "sleep", "1000", nullptr);
      ::_exit(127);
    }
    ::close(exec_pipe.fd[1]);
    if (inner < 0 || ::write(report.fd[1], &inner, sizeof inner) !=
                         static_cast<ssize_t>(sizeof inner))
      ::_exit(11);
    ::waitpid(inner, nullptr, 0);
    ::_exit(0);
  }
  cg.child = middle;
  exec_pipe.close_write();
  report.close_write();
  pid_t inner = -1;
  BOOST_TEST_REQUIRE(::read(report.fd[0], &inner, sizeof inner) ==
                     static_cast<ssize_t>(sizeof inner));
  wait_exec(exec_pipe.fd[0]);

  std::vector<std::string> rows;
  std::string err;
  bool listed =
      list_processes(cg.path, "", {"pid", "ppid", "hpid", "pgid"}, rows, err);
  // The middle child reaps the sleeper and exits.
  ::kill(inner, SIGKILL);
  BOOST_TEST(::waitpid(std::exchange(cg.child, -1), nullptr, 0) == middle);
  BOOST_TEST_REQUIRE(listed, err);
  BOOST_TEST_REQUIRE(rows.size() == 2u);
  BOOST_TEST(rows[1] == "1\t0\t" + std::to_string(inner) + "\t0");
}

// Names come from the container's files, symlinks resolved inside its root.
BOOST_AUTO_TEST_CASE(users_from_the_container_root) {
  temp_dir root;
  fs::create_directories(root.path / "etc");
  std::ofstream{root.path / "inside-passwd"} << "boss:x:0:0::/:/bin/sh\n";
  std::ofstream{root.path / "etc/group"} << "crew:x:0:\n";
  fs::create_symlink("/inside-passwd", root.path / "etc/passwd");
  test_cgroup cg;
  spawn_sleeper(cg);

  std::vector<std::string> rows;
  std::string err;
  BOOST_TEST_REQUIRE(list_processes(cg.path, root.path.string(),
                                    {"user", "group", "ruser", "huser"}, rows,
                                    err),
                     err);
  BOOST_TEST_REQUIRE(rows.size() == 2u);
  BOOST_TEST(rows[1] == "boss\tcrew\tboss\troot");
}

BOOST_AUTO_TEST_SUITE_END()
