// One registry of children guarded by one lock: spawning registers under it
// and the reaper reaps under it, so a status always finds its waiter.
#include "runtime/process.hpp"

#include <cerrno>
#include <cstdint>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <poll.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

namespace berth::runtime {

namespace {

using clock = std::chrono::steady_clock;

constexpr size_t max_output = 64 * 1024;

/// The slow rescan that guards against a SIGCHLD taken by a thread started
/// before start_reaper (the signal then never reaches the signalfd).
constexpr int rescan_ms = 5000;

struct child {
  pid_t pid = 0;
  bool reaped = false;
  bool lost = false; ///< reaped by someone else: no status
  int status = 0;
};

struct reaper_state {
  std::mutex mutex;
  std::condition_variable reaped;
  std::list<child> children; ///< spawn order; a pid is live at most once
  bool running = false;
  std::thread thread;
  int signal_fd = -1;
  int wake_fd = -1;
};

// Never destroyed: a joinable thread must not meet a static destructor.
reaper_state& registry() {
  static auto* s = new reaper_state;
  return *s;
}

std::string errno_text(int e) { return std::strerror(e); }

// The oldest registered child with this pid that nobody collected yet.
std::list<child>::iterator find_child(reaper_state& s, pid_t pid) {
  for (auto it = s.children.begin(); it != s.children.end(); ++it)
    if (it->pid == pid)
      return it;
  return s.children.end();
}

// Hands a status to its waiter; orphans (not ours to wait for) are dropped.
void record(reaper_state& s, pid_t pid, int status) {
  for (auto& c : s.children)
    if (c.pid == pid && !c.reaped) {
      c.reaped = true;
      c.status = status;
      return;
    }
}

void reap_ready(reaper_state& s) {
  std::lock_guard lock{s.mutex};
  bool any = false;
  for (;;) {
    int status = 0;
    pid_t pid = ::waitpid(-1, &status, WNOHANG | __WALL);
    if (pid < 0 && errno == EINTR)
      continue;
    if (pid <= 0)
      break;
    record(s, pid, status);
    any = true;
  }
  if (any)
    s.reaped.notify_all();
}

void reaper_loop(reaper_state* s) {
  pollfd fds[2] = {{s->signal_fd, POLLIN, 0}, {s->wake_fd, POLLIN, 0}};
  for (;;) {
    reap_ready(*s);
    if (::poll(fds, 2, rescan_ms) < 0) {
      // Only EINTR or a lack of memory: retry later, never stop reaping.
      if (errno != EINTR)
        std::this_thread::sleep_for(std::chrono::milliseconds{rescan_ms});
      continue;
    }
    if (fds[1].revents & POLLIN)
      return;
    signalfd_siginfo info;
    if (fds[0].revents & POLLIN)
      while (::read(s->signal_fd, &info, sizeof info) > 0) {
        // nop: draining; one pass of waitpid covers every pending child
      }
  }
}

int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

// Without the reaper: waits on the child itself, giving up at `deadline`.
bool wait_directly(pid_t pid, std::optional<clock::time_point> deadline,
                   child& c) {
  if (deadline) {
    unique_fd pidfd{pidfd_open(pid)};
    pollfd p{pidfd.get(), POLLIN, 0};
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          *deadline - clock::now());
      if (pidfd.get() < 0 || left.count() <= 0)
        break;
      int n = ::poll(&p, 1, static_cast<int>(left.count()));
      if (n > 0 || (n < 0 && errno != EINTR))
        break;
    }
    if (pidfd.get() >= 0 && !(p.revents & POLLIN))
      return false;
  }
  int status = 0;
  pid_t got;
  do
    got = ::waitpid(pid, &status, __WALL);
  while (got < 0 && errno == EINTR);
  c.reaped = true;
  c.lost = got != pid;
  c.status = status;
  return true;
}

// Waits for a registered child until `deadline`; false when it is still
// running then.
bool await(pid_t pid, std::optional<clock::time_point> deadline, int& code) {
  auto& s = registry();
  std::unique_lock lock{s.mutex};
  auto it = find_child(s, pid);
  if (it == s.children.end()) {
    code = -1;
    return true;
  }
  while (!it->reaped) {
    if (!s.running) {
      lock.unlock();
      child c;
      bool done = wait_directly(pid, deadline, c);
      lock.lock();
      if (!done)
        return false;
      it = find_child(s, pid);
      if (it == s.children.end()) {
        code = -1;
        return true;
      }
      it->reaped = true;
      it->lost = c.lost;
      it->status = c.status;
    } else if (!deadline) {
      s.reaped.wait(lock);
    } else if (s.reaped.wait_until(lock, *deadline) ==
                   std::cv_status::timeout &&
               !it->reaped) {
      return false;
    }
  }
  code = it->lost ? -1 : decode_wait_status(it->status);
  s.children.erase(it);
  return true;
}

// What the child does between clone and exec, prepared beforehand: the
// child shares our memory and must not allocate.
struct child_plan {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  std::vector<std::pair<int, int>> moves; ///< (copy above top, target)
  std::vector<int> closes;                ///< unused fds up to top
  int top = 2;
  int open_max = 1024;
  int error = 0; ///< errno of the step that failed, written by the child
};

// Lays out the child's fd table: 0 from stdin_path, 1 and 2 to `output` (or
// /dev/null), then the caller's pairs, which win. Sources are first copied
// above every target so that no dup2 overwrites a source still needed;
// everything else is closed in the child.
bool plan_fds(const spawn_options& o, int output, child_plan& plan,
              std::vector<unique_fd>& held, std::string& err) {
  std::map<int, int> table; // child fd -> parent fd
  held.emplace_back(::open(o.stdin_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (held.back().get() < 0) {
    err = "opening " + o.stdin_path + ": " + errno_text(errno);
    return false;
  }
  table[0] = held.back().get();
  if (output < 0) {
    held.emplace_back(::open("/dev/null", O_WRONLY | O_CLOEXEC));
    output = held.back().get();
  }
  table[1] = table[2] = output;
  for (auto [parent, target] : o.fds)
    table[target] = parent;

  plan.top = table.rbegin()->first;
  for (auto [target, parent] : table) {
    held.emplace_back(::fcntl(parent, F_DUPFD_CLOEXEC, plan.top + 1));
    if (held.back().get() < 0) {
      err = "passing fd " + std::to_string(parent) + ": " + errno_text(errno);
      return false;
    }
    plan.moves.emplace_back(held.back().get(), target);
  }
  for (int fd = 3; fd < plan.top; ++fd)
    if (!table.contains(fd))
      plan.closes.push_back(fd);
  plan.open_max = static_cast<int>(::sysconf(_SC_OPEN_MAX));
  return true;
}

// The kernel's struct sigaction (glibc's wrapper refuses its own internal
// signals, which posix_spawn therefore leaves ignored in the child).
struct kernel_sigaction {
  void (*handler)(int);
  unsigned long flags;
  void (*restorer)();
  uint64_t mask;
};

void set_signal_mask(uint64_t mask, uint64_t* old) {
  ::syscall(SYS_rt_sigprocmask, SIG_SETMASK, &mask, old, sizeof mask);
}

// Runs in the child (CLONE_VM | CLONE_VFORK) until exec: syscalls only.
int child_main(void* arg) {
  auto* plan = static_cast<child_plan*>(arg);
  kernel_sigaction dfl{SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig <= 64; ++sig)
    if (sig != SIGKILL && sig != SIGSTOP)
      ::syscall(SYS_rt_sigaction, sig, &dfl, nullptr, sizeof(uint64_t));
  for (auto [from, to] : plan->moves)
    if (::dup2(from, to) < 0) {
      plan->error = errno;
      return 127;
    }
  for (int fd : plan->closes)
    ::close(fd);
  if (::syscall(SYS_close_range, plan->top + 1, ~0U, 0) != 0)
    for (int fd = plan->top + 1; fd < plan->open_max; ++fd)
      ::close(fd);
  set_signal_mask(0, nullptr);
  ::execve(plan->path, plan->argv, plan->envp);
  plan->error = errno;
  return 127;
}

std::vector<char*> c_strings(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v)
    out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// clone as posix_spawn does it (shared memory, parent suspended until the
// exec), with every signal blocked meanwhile so that no handler of ours
// runs in the child.
pid_t clone_and_exec(child_plan& plan) {
  constexpr size_t stack_size = 128 * 1024;
  void* stack = ::mmap(nullptr, stack_size, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    plan.error = errno;
    return -1;
  }
  uint64_t old = 0;
  set_signal_mask(~uint64_t{0}, &old);
  pid_t pid = ::clone(child_main, static_cast<char*>(stack) + stack_size,
                      CLONE_VM | CLONE_VFORK | SIGCHLD, &plan);
  int clone_errno = errno;
  set_signal_mask(old, nullptr);
  ::munmap(stack, stack_size);
  if (pid < 0)
    plan.error = clone_errno;
  return pid;
}

// Spawns and registers; with `pidfd`, also opens a pidfd while the child
// cannot have been reaped yet.
pid_t spawn_child(const spawn_options& o, int output, int* pidfd,
                  std::string& err) {
  if (o.argv.empty() || !o.argv[0].starts_with('/')) {
    err = "starting a process: argv[0] must be an absolute path";
    return -1;
  }
  child_plan plan;
  std::vector<unique_fd> held;
  held.reserve(o.fds.size() + 5);
  if (!plan_fds(o, output, plan, held, err))
    return -1;
  auto argv = c_strings(o.argv);
  auto envp = c_strings(o.env);
  plan.path = argv[0];
  plan.argv = argv.data();
  plan.envp = envp.data();

  // Under the lock the reaper takes: it cannot reap before we register.
  auto& s = registry();
  std::lock_guard lock{s.mutex};
  pid_t pid = clone_and_exec(plan);
  if (pid > 0 && plan.error != 0) {
    ::waitpid(pid, nullptr, __WALL); // the child that failed to exec
    pid = -1;
  }
  if (pid < 0) {
    err = "starting " + o.argv[0] + ": " + errno_text(plan.error);
    return -1;
  }
  s.children.push_back(child{pid});
  if (pidfd)
    *pidfd = pidfd_open(pid);
  return pid;
}

void drain(int fd, std::string& output) {
  ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(fd, buf, sizeof buf)) > 0)
    output.append(buf, std::min(size_t(n), max_output - output.size()));
}

// Reads the child's output until it exits (the pidfd turns readable); false
// when the timeout passed first. Without a pidfd, EOF stands for the exit.
bool collect_output(int fd, int pidfd, std::chrono::milliseconds timeout,
                    std::string& output) {
  auto deadline = clock::now() + timeout;
  pollfd fds[2] = {{fd, POLLIN, 0}, {pidfd, POLLIN, 0}};
  char buf[4096];
  for (;;) {
    int wait_ms = -1;
    if (timeout.count() > 0) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - clock::now());
      if (left.count() <= 0)
        return false;
      wait_ms = static_cast<int>(left.count());
    }
    int n = ::poll(fds, 2, wait_ms);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return true;
    if (fds[0].revents) {
      ssize_t got = ::read(fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR)
        continue;
      if (got > 0)
        output.append(buf,
                      std::min(size_t(got), max_output - output.size()));
      else if (pidfd < 0)
        return true;
      else
        fds[0].fd = -1; // EOF: now wait for the exit alone
      continue;
    }
    // Exited, yet a grandchild may keep the pipe open: take what is there.
    if (fds[1].revents) {
      if (fds[0].fd >= 0)
        drain(fd, output);
      return true;
    }
  }
}

} // namespace

int decode_wait_status(int status) {
  if (WIFEXITED(status))
    return WEXITSTATUS(status);
  if (WIFSIGNALED(status))
    return 128 + WTERMSIG(status);
  return -1;
}

void start_reaper() {
  auto& s = registry();
  std::lock_guard lock{s.mutex};
  if (s.running)
    return;
  ::prctl(PR_SET_CHILD_SUBREAPER, 1);
  // An ignored SIGCHLD (or SA_NOCLDWAIT) would let the kernel discard the
  // statuses we hand to waiters.
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  ::sigaction(SIGCHLD, &dfl, nullptr);
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  s.signal_fd = ::signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
  s.wake_fd = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  s.running = true;
  s.thread = std::thread{reaper_loop, &s};
}

void stop_reaper() {
  auto& s = registry();
  std::thread t;
  {
    std::lock_guard lock{s.mutex};
    if (!s.running)
      return;
    uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(s.wake_fd, &one, sizeof one);
    t = std::move(s.thread);
  }
  t.join();
  std::lock_guard lock{s.mutex};
  s.running = false;
  ::close(s.wake_fd);
  ::close(s.signal_fd);
  s.wake_fd = s.signal_fd = -1;
  // Waiters now wait for their children by themselves.
  s.reaped.notify_all();
}

pid_t spawn(const spawn_options& o, std::string& err) {
  return spawn_child(o, -1, nullptr, err);
}

int wait_child(pid_t pid) {
  int code = -1;
  await(pid, std::nullopt, code);
  return code;
}

bool wait_child_for(pid_t pid, std::chrono::milliseconds timeout,
                    int& code) {
  return await(pid, clock::now() + timeout, code);
}

bool signal_child(pid_t pid, int sig) {
  auto& s = registry();
  std::lock_guard lock{s.mutex};
  auto it = find_child(s, pid);
  if (it == s.children.end() || it->reaped)
    return false;
  return ::kill(pid, sig) == 0;
}

int run(const spawn_options& o, std::string& output, std::string& err) {
  output.clear();
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0) {
    err = "creating a pipe: " + errno_text(errno);
    return -1;
  }
  unique_fd out{p[0]}, in{p[1]};
  int raw_pidfd = -1;
  pid_t pid = spawn_child(o, in.get(), &raw_pidfd, err);
  unique_fd pidfd{raw_pidfd};
  in.reset();
  if (pid < 0)
    return -1;

  bool finished = collect_output(out.get(), pidfd.get(), o.timeout, output);
  if (!finished)
    signal_child(pid, SIGKILL);
  int code = wait_child(pid);
  if (!finished) {
    err = o.argv[0] + " did not finish within " +
          std::to_string(o.timeout.count()) + " ms and was killed";
    return -1;
  }
  return code;
}

} // namespace berth::runtime
