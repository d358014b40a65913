// Child processes of berthd: spawning, reaping (as a child subreaper) and
// collecting exit statuses, so that no child is lost and none stays a zombie.
#pragma once

#include "protocol/unique_fd.hpp"

#include <chrono>
#include <string>
#include <sys/types.h>
#include <utility>
#include <vector>

namespace berth::runtime {

using berth::unique_fd;

/// Call once, early in main() BEFORE any thread starts: makes the daemon a
/// child subreaper, blocks SIGCHLD in the calling thread (and so in every
/// thread created later) and starts the reaper thread. The reaper waits on a
/// signalfd and reaps every child, orphans reparented to us included (the
/// daemonised conmon), and hands the status of children spawned through
/// `spawn` to their waiter. Without it `wait_child` waits by itself.
void start_reaper();

/// Stops the reaper thread; later waits fall back to waiting directly.
void stop_reaper();

struct spawn_options {
  std::vector<std::string> argv;       ///< argv[0] is an absolute path
  std::vector<std::string> env;        ///< full environment ("K=V")
  std::vector<std::pair<int, int>> fds; ///< (parent fd, child fd) to pass
  std::string stdin_path = "/dev/null";
  /// run() only: SIGKILL after this long; 0 waits for ever.
  std::chrono::milliseconds timeout = std::chrono::seconds{30};
};

/// Runs to completion and returns the exit code, or 128+signal. stdout and
/// stderr are captured together into `output` (at most 64 KiB kept). -1 with
/// `err` if it could not start or was killed for running past its timeout.
int run(const spawn_options& o, std::string& output, std::string& err);

/// Spawns without waiting; `wait_child` gets its exit code later. Spawning
/// and registration happen under the lock the reaper takes, so no status is
/// lost and a reused pid is never confused with ours. Children start with an
/// empty signal mask and default dispositions; stdout and stderr go to
/// /dev/null unless `fds` names them; every fd not in `fds` is closed.
pid_t spawn(const spawn_options& o, std::string& err);

/// Waits for a child from `spawn`: its exit code, or 128+signal; -1 for a
/// pid that `spawn` did not return or that was already waited for.
int wait_child(pid_t pid);

/// As wait_child, but gives up after `timeout`: false then, and the child
/// stays registered (wait again, or signal it first).
bool wait_child_for(pid_t pid, std::chrono::milliseconds timeout, int& code);

/// Sends `sig` to a child from `spawn` that has not been reaped yet; false
/// when it is unknown or already gone (so a reused pid is never hit).
bool signal_child(pid_t pid, int sig);

/// A raw wait status decoded as a shell does: exit code, or 128+signal.
int decode_wait_status(int status);

} // namespace berth::runtime
