#include "actors/containers.hpp"

#include "actors/container_views.hpp"
#include "actors/images.hpp"
#include "protocol/gen/io_podman.hpp"
#include "protocol/json_decode.hpp"
#include "protocol/log.hpp"
#include "runtime/attach.hpp"
#include "runtime/exits.hpp"
#include "runtime/log_follow.hpp"
#include "runtime/oci.hpp"
#include "runtime/overlay.hpp"
#include "runtime/spec.hpp"
#include "runtime/stats.hpp"
#include "runtime/top.hpp"
#include "storage/archive.hpp"
#include "storage/container_files.hpp"
#include "storage/container_store.hpp"
#include "storage/store.hpp"

#include <caf/all.hpp>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <set>
#include <tuple>
#include <unordered_map>
#include <sys/stat.h>
#include <unistd.h>

namespace berth::actors {

namespace {

using namespace std::chrono_literals;
using storage::container_state;
namespace fs = std::filesystem;

using exited_atom = caf::atom_constant<caf::atom("exited")>;
using jobdone_atom = caf::atom_constant<caf::atom("jobdone")>;
using update_atom = caf::atom_constant<caf::atom("cupdate")>;
using removed_atom = caf::atom_constant<caf::atom("cremoved")>;
using timer_atom = caf::atom_constant<caf::atom("ctimer")>;
using gone_atom = caf::atom_constant<caf::atom("cgone")>;
using pidof_atom = caf::atom_constant<caf::atom("pidof")>;
using remove_atom = caf::atom_constant<caf::atom("cremove")>;
using logend_atom = caf::atom_constant<caf::atom("logend")>;
using tick_atom = caf::atom_constant<caf::atom("statstick")>;
using unwatch_atom = caf::atom_constant<caf::atom("unwatch")>;

std::shared_ptr<spdlog::logger> log() {
  static auto l = logger("container");
  return l;
}

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string read_boot_id() {
  std::ifstream in{"/proc/sys/kernel/random/boot_id"};
  std::string id;
  std::getline(in, id);
  return id;
}

/// What the catalog and every container actor share. Set up once by the
/// catalog before any container actor exists; the store locks itself.
struct shared_ctx {
  container_options opts;
  storage::container_store store;
  std::unique_ptr<runtime::oci> oci;
  runtime::exit_watcher exits;
  runtime::log_hub logs;
  runtime::attach_hub attach;
  std::string boot_id;

  std::string uploads() const { return opts.root + "/uploads"; }
};
using ctx_ptr = std::shared_ptr<shared_ctx>;

/// The outcome of blocking work done for a container on a job actor.
struct job_result {
  bool ok = true;
  std::string err;
  int64_t code = 0;
  runtime::created made;
  bool start_failed = false; ///< created, then the start failed
  std::string text;
  std::vector<std::string> lines;
  storage::tree_changes changes;
};
using job_result_ptr = std::shared_ptr<const job_result>;
using job_work = std::function<void(job_result&)>;

/// What a container actor tells the catalog after each change.
struct container_view {
  podman::Container summary;
  container_state state = container_state::configured;
  int64_t pid = 0;
  int64_t created = 0;
  bool mounted = false;
  std::string merged;
  std::string hostname;
};
using view_ptr = std::shared_ptr<const container_view>;

/// The pids of the containers whose namespaces a container joins.
struct ns_pids {
  std::string error;
  std::vector<int64_t> pids;
  std::string ipc_shm; ///< the /dev/shm directory of the IPC target
};
using ns_pids_ptr = std::shared_ptr<const ns_pids>;

} // namespace
} // namespace berth::actors

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::rpc::call_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::job_result_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::job_work)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::view_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::ns_pids_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::ctx_ptr)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(berth::actors::container_facts)

namespace berth::actors {

namespace {

/// A job's own thread: runs the blocking work, reports to the container.
void job_actor(caf::event_based_actor* self, caf::actor owner, job_work work) {
  auto r = std::make_shared<job_result>();
  try {
    work(*r);
  } catch (const std::exception& e) {
    r->ok = false;
    r->err = e.what();
  }
  caf::anon_send(owner, jobdone_atom::value, job_result_ptr{r});
  self->quit();
}

bool write_file_atomic(const std::string& path, const std::string& text,
                       std::string& err) {
  auto tmp = path + ".tmp";
  {
    std::ofstream out{tmp, std::ios::trunc | std::ios::binary};
    out << text;
    out.flush();
    if (!out) {
      err = "writing " + tmp + ": " + std::strerror(errno);
      return false;
    }
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    err = "renaming " + tmp + ": " + std::strerror(errno);
    return false;
  }
  return true;
}

std::string base64(const std::string& in) {
  static const char* tbl =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  size_t i = 0;
  for (; i + 2 < in.size(); i += 3) {
    uint32_t v = uint8_t(in[i]) << 16 | uint8_t(in[i + 1]) << 8 |
                 uint8_t(in[i + 2]);
    for (int s = 18; s >= 0; s -= 6)
      out += tbl[v >> s & 63];
  }
  if (i < in.size()) {
    uint32_t v = uint8_t(in[i]) << 16;
    if (i + 1 < in.size())
      v |= uint8_t(in[i + 1]) << 8;
    out += tbl[v >> 18 & 63];
    out += tbl[v >> 12 & 63];
    out += i + 1 < in.size() ? tbl[v >> 6 & 63] : '=';
    out += '=';
  }
  return out;
}

/// A follower's lines, sent as `continues` replies of GetContainerLogs.
/// When the client reads slower than the log grows, the follower pauses
/// until the connection's queue drains.
class log_stream final : public runtime::log_sink {
public:
  /// Queued reply bytes above which the follower pauses, and below which
  /// it resumes.
  static constexpr size_t high_water = 1 << 20;
  static constexpr size_t low_water = 256 << 10;

  log_stream(rpc::call_ptr c, runtime::log_hub* hub, runtime::log_hub::id id,
             caf::actor owner)
    : c_(std::move(c)), hub_(hub), id_(id), owner_(std::move(owner)) {
  }

  bool on_lines(std::vector<std::string>&& lines) override {
    if (c_->cancelled())
      return false; // on_cancel drops the follower
    c_->reply(podman::GetContainerLogs_out{std::move(lines)}, true);
    if (c_->backlog() < high_water)
      return true;
    auto* hub = hub_;
    auto id = id_;
    c_->when_writable(low_water, [hub, id] { hub->resume(id); });
    return false;
  }

  void on_end(const std::string& error) override {
    if (!error.empty())
      c_->fail(podman::ErrorOccurred{error});
    else
      c_->reply(podman::GetContainerLogs_out{});
    caf::anon_send(owner_, logend_atom::value, id_);
  }

private:
  rpc::call_ptr c_;
  runtime::log_hub* hub_;
  runtime::log_hub::id id_;
  caf::actor owner_;
};

bool state_is_live(container_state s) {
  return s == container_state::created || s == container_state::running ||
         s == container_state::paused;
}

std::string improper(const std::string& what) {
  return what + ": container state improper";
}

// ---------------------------------------------------------------------------
// One container.

class container final : public podman::service {
public:
  container(caf::event_based_actor* self, ctx_ptr ctx, caf::actor catalog,
            container_facts f)
    : self_(self), ctx_(std::move(ctx)), catalog_(std::move(catalog)),
      f_(std::move(f)) {
  }

  /// Tells the catalog how the container looks now.
  void publish() {
    auto v = std::make_shared<container_view>();
    v->summary = summarize(f_);
    v->state = f_.rec.state;
    v->pid = f_.rec.pid;
    v->created = f_.rec.created;
    v->mounted = f_.rec.mounted;
    v->merged = f_.merged;
    v->hostname = f_.hostname;
    caf::anon_send(catalog_, update_atom::value, f_.rec.id, view_ptr{v});
  }

  // -- the queue: one operation at a time, in arrival order -----------------

  void submit(std::function<void()> op) {
    if (busy_)
      queue_.push_back(std::move(op));
    else
      op();
  }

  void job(job_work work, std::function<void(const job_result&)> then) {
    busy_ = true;
    then_ = std::move(then);
    auto me = caf::actor_cast<caf::actor>(self_);
    self_->spawn<caf::detached>(job_actor, me, std::move(work));
  }

  void job_done(const job_result_ptr& r) {
    auto then = std::move(then_);
    then_ = nullptr;
    busy_ = false;
    if (then)
      then(*r);
    while (!busy_ && !queue_.empty()) {
      auto op = std::move(queue_.front());
      queue_.pop_front();
      op();
    }
  }

  void call(const rpc::call_ptr& c) {
    submit([this, c] {
      // A waiter still learns how the container ended.
      if (gone_ && c->method().index == size_t(podman::method::WaitContainer))
        return c->reply(podman::WaitContainer_out{f_.rec.exit_code});
      if (gone_)
        return c->fail(podman::ContainerNotFound{
            f_.rec.id, "no container with name or ID " + f_.rec.id +
                           " found: no such container"});
      try {
        invoke(c);
      } catch (const std::exception& e) {
        internal_error(c, e.what());
      }
    });
  }

  void internal_error(const rpc::call_ptr& c,
                      const std::string& what) override {
    c->fail(podman::ErrorOccurred{std::string{c->method().name} + ": " +
                                  what});
  }

  bool commit(std::string& err) {
    if (!ctx_->store.update(f_.rec, err)) {
      log()->error("{}", err);
      return false;
    }
    publish();
    return true;
  }

  /// Commits; on failure answers `c` and returns false.
  bool commit_or_fail(const rpc::call_ptr& c) {
    std::string err;
    if (commit(err))
      return true;
    if (c)
      c->fail(podman::ErrorOccurred{err});
    return false;
  }

  // -- the life cycle ------------------------------------------------------

  using done_fn = std::function<void(bool ok, const std::string& err)>;

  std::vector<std::string> lower_top_first() const {
    return {layer_dirs_.rbegin(), layer_dirs_.rend()};
  }

  /// Hands the container to the runtime (configured/stopped/exited ->
  /// created): mounts its root, writes its spec, starts conmon.
  /// With `then_start`, the start follows in the same job, and only the
  /// running state is committed: a crash before that commit leaves a
  /// configured container whose runtime state the next start removes.
  void init(done_fn done, bool then_start = false) {
    std::vector<std::string> targets;
    for (auto* n : {&f_.plan.pid, &f_.plan.ipc, &f_.plan.uts, &f_.plan.net})
      targets.push_back(n->mode == runtime::ns_mode::container ? n->container
                                                                : "");
    bool any = std::any_of(targets.begin(), targets.end(),
                           [](auto& t) { return !t.empty(); });
    if (!any)
      return init_with({0, 0, 0, 0}, shm_dir(), std::move(done), then_start);
    self_->request(catalog_, 10s, pidof_atom::value, targets)
        .then(
            [this, done, then_start](const ns_pids_ptr& p) {
              if (!p->error.empty())
                return done(false, p->error);
              init_with(p->pids, p->ipc_shm, done, then_start);
            },
            [this, done](caf::error& e) {
              done(false, "finding the containers to share namespaces "
                          "with: " + self_->system().render(e));
            });
  }

  /// The tmpfs on the host behind the container's /dev/shm (private IPC).
  std::string shm_dir() const { return f_.userdata + "/shm"; }

  void init_with(std::vector<int64_t> pids, std::string shm_path,
                 done_fn done, bool then_start) {
    runtime::render_inputs in;
    in.id = f_.rec.id;
    in.rootfs = f_.merged;
    in.userdata = f_.userdata;
    in.cgroups_path = "/berth/" + f_.rec.id;
    in.pid_ns_pid = pid_t(pids[0]);
    in.ipc_ns_pid = pid_t(pids[1]);
    in.uts_ns_pid = pid_t(pids[2]);
    in.net_ns_pid = pid_t(pids[3]);
    bool own_shm = f_.plan.ipc.mode == runtime::ns_mode::private_;
    if (own_shm)
      shm_path = shm_dir();
    in.shm_path = shm_path;
    auto shm_size = f_.plan.shm_size;
    runtime::create_request req;
    req.id = f_.rec.id;
    req.name = f_.rec.name;
    req.bundle = f_.userdata;
    req.userdata = f_.userdata;
    req.log_path = f_.log_path;
    req.log_max_size = log_budget();
    req.tty = f_.plan.tty;
    req.interactive = f_.plan.interactive;
    auto plan = f_.plan;
    auto lower = lower_top_first();
    auto dir = f_.dir;
    auto merged = f_.merged;
    bool keep_mount = f_.rec.mounted;
    auto ctx = ctx_;
    // A leftover exit file belongs to an earlier run.
    ctx->oci->forget_exit(f_.rec.id);
    job(
        [=](job_result& r) {
          if (!mount_root(lower, dir, merged, r.err) ||
              (own_shm && !runtime::mount_shm(in.shm_path, shm_size, r.err))) {
            r.ok = false;
            return;
          }
          std::string spec;
          r.ok = runtime::render_spec(plan, in, spec, r.err) &&
                 write_file_atomic(in.userdata + "/config.json", spec, r.err) &&
                 ctx->oci->create(req, r.made, r.err);
          std::string ignored;
          // cgroup v1 counts block I/O only on disks with a throttle rule.
          if (r.ok && !runtime::enable_block_accounting(
                          in.cgroups_path, ctx->opts.root, ignored))
            log()->debug("block I/O accounting for {}: {}", in.id, ignored);
          if (r.ok && then_start && !ctx->oci->start(in.id, r.err)) {
            r.ok = false;
            r.start_failed = true;
            r.code = runtime::failure_exit_code(r.err);
            ctx->oci->remove(in.id, true, ignored);
            ctx->oci->forget_exit(in.id);
          }
          if (!r.ok && !keep_mount)
            runtime::unmount(merged, ignored);
          if (!r.ok && own_shm)
            runtime::unmount(in.shm_path, ignored);
        },
        [this, done, then_start](const job_result& r) {
          if (!r.ok && r.start_failed) {
            finish(r.code);
            return done(false, r.err);
          }
          if (!r.ok)
            return done(false, r.err);
          f_.rec.state = then_start ? container_state::running
                                    : container_state::created;
          f_.rec.pid = r.made.pid;
          f_.rec.conmon_pid = r.made.conmon_pid;
          f_.rec.boot_id = ctx_->boot_id;
          if (then_start)
            f_.rec.started = now_ns();
          std::string err;
          if (!commit(err))
            return done(false, err);
          if (then_start)
            log()->info("started container {} ({})", f_.rec.id, f_.rec.name);
          done(true, "");
        });
  }

  /// conmon counts log bytes from zero at each start; the limit is on the
  /// file. So conmon gets what is left of it, and a file already past half
  /// of it starts over now, as conmon itself does at the limit.
  int64_t log_budget() {
    auto max = f_.plan.log_max_size;
    struct stat st;
    if (max <= 0 || ::stat(f_.log_path.c_str(), &st) < 0 || st.st_size == 0)
      return max;
    if (st.st_size >= max / 2) {
      if (::truncate(f_.log_path.c_str(), 0) < 0)
        log()->warn("truncating {}: {}", f_.log_path, std::strerror(errno));
      return max;
    }
    return max - st.st_size;
  }

  static bool mount_root(const std::vector<std::string>& lower,
                         const std::string& dir, const std::string& merged,
                         std::string& err) {
    if (runtime::is_mounted(merged))
      return true;
    // The upper directory's mode is what the container sees as its `/`:
    // the image's, not the store's 0700.
    struct stat top;
    mode_t root_mode = !lower.empty() && ::stat(lower.front().c_str(), &top) == 0
                           ? top.st_mode & 07777
                           : 0755;
    for (auto* sub : {"/upper", "/work", "/merged"})
      if (!storage::make_dirs(dir + sub, 0700)) {
        err = "creating " + dir + sub + ": " + std::strerror(errno);
        return false;
      }
    if (::chmod((dir + "/upper").c_str(), root_mode) < 0) {
      err = "setting the mode of " + dir + "/upper: " + std::strerror(errno);
      return false;
    }
    return runtime::mount_overlay(lower, dir + "/upper", dir + "/work",
                                  merged, err);
  }

  /// configured/stopped/exited/created -> running.
  void start(done_fn done) {
    if (f_.rec.state != container_state::created)
      return init(std::move(done), true);
    run_start(std::move(done));
  }

  void run_start(done_fn done) {
    auto ctx = ctx_;
    auto id = f_.rec.id;
    auto shm = shm_dir();
    auto merged = f_.merged;
    bool keep_mount = f_.rec.mounted;
    job(
        [=](job_result& r) {
          r.ok = ctx->oci->start(id, r.err);
          if (!r.ok) {
            r.code = runtime::failure_exit_code(r.err);
            std::string ignored;
            ctx->oci->remove(id, true, ignored);
            if (!keep_mount)
              runtime::unmount(merged, ignored);
            runtime::unmount(shm, ignored);
            ctx->oci->forget_exit(id);
          }
        },
        [this, done](const job_result& r) {
          if (!r.ok) {
            finish(r.code);
            return done(false, r.err);
          }
          f_.rec.state = container_state::running;
          f_.rec.started = now_ns();
          std::string err;
          if (!commit(err))
            return done(false, err);
          log()->info("started container {} ({})", f_.rec.id, f_.rec.name);
          done(true, "");
        });
  }

  /// The container's process is gone and the runtime cleaned up: record
  /// the code, then tell whoever waited.
  void finish(int64_t code) {
    announce_exit(code);
    after_exit();
  }

  /// Records how the process ended and tells whoever waits for it.
  void announce_exit(int64_t code, int64_t ended = 0) {
    f_.rec.state = container_state::exited;
    f_.rec.exit_code = code;
    f_.rec.finished = ended > 0 ? ended : now_ns();
    f_.rec.pid = 0;
    f_.rec.conmon_pid = 0;
    ++stop_gen_;
    std::string err;
    commit(err);
    finish_followers();
    end_stats_watchers();
    for (auto sid : std::exchange(attached_, {}))
      ctx_->attach.end(sid, code);
    for (auto& c : std::exchange(stoppers_, {}))
      c->reply(podman::StopContainer_out{f_.rec.id});
    for (auto& c : std::exchange(waiters_, {}))
      c->reply(podman::WaitContainer_out{code});
  }

  /// Once the runtime's remains are cleaned up: a restart or a removal
  /// that waited for the exit.
  void after_exit() {
    if (!restarters_.empty()) {
      auto callers = std::exchange(restarters_, {});
      return start([this, callers](bool ok, const std::string& err) {
        for (auto& c : callers)
          answer<podman::RestartContainer_out>(c, "restarting")(ok, err);
      });
    }
    if (!removers_.empty() || !remove_promises_.empty() || f_.plan.rm)
      remove_now();
  }

  /// conmon wrote the exit file. The code is recorded and announced at
  /// once; deleting the runtime's state and unmounting follow (a crash in
  /// between is cleaned up at the next start, see catalog::recover).
  void on_exit() {
    if (!state_is_live(f_.rec.state) &&
        f_.rec.state != container_state::stopped) {
      ctx_->oci->forget_exit(f_.rec.id);
      return;
    }
    auto id = f_.rec.id;
    auto code = ctx_->oci->exit_code(id);
    int64_t status = code ? *code : -1;
    if (!code)
      log()->warn("container {} ended without an exit code", id);
    // runc reports a failed exec of the command (a script without its
    // interpreter, a binary for another machine) only as an exit of 1 and
    // a line in the log; that is a command that could not be run: 126 or
    // 127, as for failures it finds before.
    if (auto failed = runtime::exec_failure(int(status), f_.log_path))
      status = runtime::failure_exit_code(*failed);
    log()->info("container {} exited with {}", id, status);
    // conmon wrote the file when the process ended, maybe while berthd was
    // down: that is the time it finished.
    struct stat ex;
    int64_t ended = 0;
    if (::stat((ctx_->oci->paths().exits_dir + "/" + id).c_str(), &ex) == 0)
      ended = int64_t(ex.st_mtim.tv_sec) * 1000000000 + ex.st_mtim.tv_nsec;
    announce_exit(status, ended);
    auto ctx = ctx_;
    auto merged = f_.merged;
    auto shm = shm_dir();
    bool keep_mount = f_.rec.mounted;
    job(
        [=](job_result&) {
          std::string ignored;
          if (!ctx->oci->remove(id, true, ignored))
            log()->warn("deleting container {}: {}", id, ignored);
          if (!keep_mount && !runtime::unmount(merged, ignored))
            log()->warn("unmounting {}: {}", merged, ignored);
          if (!runtime::unmount(shm, ignored))
            log()->warn("unmounting {}: {}", shm, ignored);
          ctx->oci->forget_exit(id);
        },
        [this](const job_result&) { after_exit(); });
  }

  // -- removal -------------------------------------------------------------

  /// Removes everything of the container: runtime state, mounts, files,
  /// its row; then answers the removers and ends the actor.
  void remove_now() {
    f_.rec.state = container_state::removing;
    finish_followers();
    auto ctx = ctx_;
    auto id = f_.rec.id;
    auto merged = f_.merged;
    auto shm = shm_dir();
    job(
        [=](job_result& r) {
          std::string ignored;
          ctx->oci->remove(id, true, ignored);
          if (!runtime::unmount(merged, r.err) || !runtime::unmount(shm, r.err))
            r.ok = false;
          // The runtime removes its cgroups, unless it lost the container's
          // state (a reboot): then they are removed here.
          runtime::remove_cgroups("/berth/" + id);
          ctx->oci->forget_exit(id);
        },
        [this](const job_result& r) {
          if (!r.ok) {
            f_.rec.state = container_state::exited;
            for (auto& c : std::exchange(removers_, {}))
              c->fail(podman::ErrorOccurred{"removing container " +
                                            f_.rec.id + ": " + r.err});
            for (auto& p : std::exchange(remove_promises_, {}))
              p.deliver(r.err);
            publish();
            return;
          }
          std::string err;
          if (!ctx_->store.remove(f_.rec, err)) {
            f_.rec.state = container_state::exited;
            for (auto& c : std::exchange(removers_, {}))
              c->fail(podman::ErrorOccurred{err});
            for (auto& p : std::exchange(remove_promises_, {}))
              p.deliver(err);
            return;
          }
          // Calls the catalog forwarded before it forgot the container
          // arrive before its answer; they find the container gone.
          busy_ = true;
          self_->request(catalog_, caf::infinite, removed_atom::value,
                         f_.rec.id)
              .then([this](bool) { forget_files(); },
                    [this](caf::error&) { forget_files(); });
        });
  }

  void forget_files() {
    gone_ = true;
    auto dir = f_.dir;
    job([dir](job_result&) {
          std::error_code ec;
          fs::remove_all(dir, ec);
        },
        [this](const job_result&) {
          log()->info("removed container {} ({})", f_.rec.id, f_.rec.name);
          for (auto& c : std::exchange(removers_, {}))
            c->reply(podman::RemoveContainer_out{f_.rec.id});
          for (auto& p : std::exchange(remove_promises_, {}))
            p.deliver(std::string{});
          for (auto& c : std::exchange(waiters_, {}))
            c->reply(podman::WaitContainer_out{f_.rec.exit_code});
          // What queued meanwhile is answered before the actor ends.
          while (!queue_.empty()) {
            auto op = std::move(queue_.front());
            queue_.pop_front();
            op();
          }
          self_->quit();
        });
  }

  /// Removal asked for by the catalog (DeleteStoppedContainers; with
  /// `force`, a forced RemoveImage, which kills a running container as
  /// RemoveContainer does): "" when done, else why not.
  void remove_for_catalog(caf::response_promise rp, bool force) {
    // Asked again (two forced RemoveImage calls) after it was removed.
    if (gone_) {
      rp.deliver(std::string{});
      return;
    }
    auto s = f_.rec.state;
    if (state_is_live(s) && !force) {
      rp.deliver(improper("cannot remove container " + f_.rec.id +
                          " as it is running"));
      return;
    }
    remove_promises_.push_back(std::move(rp));
    if (s == container_state::removing)
      return;
    if (s == container_state::running || s == container_state::paused) {
      ++stop_gen_;
      return kill_now(SIGKILL, true); // the exit removes it
    }
    remove_now();
  }

  void stop_timer(uint64_t gen) {
    if (gen != stop_gen_ || !state_is_live(f_.rec.state))
      return;
    log()->info("container {} ignored its stop signal: killing it",
                f_.rec.id);
    kill_now(SIGKILL, true);
  }

  void kill_now(int sig, bool all) {
    auto ctx = ctx_;
    auto id = f_.rec.id;
    bool paused = f_.rec.state == container_state::paused;
    job(
        [=](job_result& r) {
          r.ok = ctx->oci->kill(id, sig, all, r.err);
          // A frozen process only dies once thawed.
          if (r.ok && paused && sig == SIGKILL) {
            std::string ignored;
            ctx->oci->resume(id, ignored);
          }
        },
        [this, sig](const job_result& r) {
          if (!r.ok)
            log()->warn("signal {} to container {}: {}", sig, f_.rec.id,
                        r.err);
        });
  }

  /// Asks the process to stop, then kills it after `timeout` seconds; the
  /// exit completes the stop.
  void begin_stop(int64_t timeout) {
    if (stopping_gen_ == stop_gen_ + 1 && timeout != 0)
      return; // a stop is under way
    ++stop_gen_;
    stopping_gen_ = stop_gen_ + 1;
    if (timeout < 0)
      timeout = f_.plan.stop_timeout;
    if (timeout == 0 || f_.rec.state == container_state::paused)
      return kill_now(SIGKILL, true);
    kill_now(f_.plan.stop_signal, false);
    self_->delayed_send(self_, std::chrono::seconds{timeout},
                        timer_atom::value, stop_gen_);
  }

  // -- methods ---------------------------------------------------------------

  void StartContainer(const rpc::call_ptr& c,
                      const podman::StartContainer_in&) override {
    auto s = f_.rec.state;
    if (s == container_state::running || s == container_state::paused)
      return c->fail(podman::ErrorOccurred{
          improper("container " + f_.rec.id +
                   " is already running or paused")});
    if (s == container_state::removing)
      return c->fail(podman::ErrorOccurred{
          improper("container " + f_.rec.id + " is being removed")});
    start(answer<podman::StartContainer_out>(c, "starting"));
  }

  /// A done_fn that answers `c` with the container's ID, or the error.
  template <class Out>
  done_fn answer(const rpc::call_ptr& c, const char* doing) {
    return [this, c, doing](bool ok, const std::string& err) {
      if (ok)
        c->reply(Out{f_.rec.id});
      else
        c->fail(podman::ErrorOccurred{std::string{doing} + " container " +
                                      f_.rec.id + ": " + err});
    };
  }

  void StopContainer(const rpc::call_ptr& c,
                     const podman::StopContainer_in& in) override {
    switch (f_.rec.state) {
      case container_state::exited:
      case container_state::stopped:
        return c->reply(podman::StopContainer_out{f_.rec.id});
      case container_state::configured:
      case container_state::removing:
      case container_state::unknown:
        return c->fail(podman::ErrorOccurred{
            improper("can only stop created, running, or stopped "
                     "containers. " + f_.rec.id + " is in state " +
                     storage::state_name(f_.rec.state))});
      case container_state::created:
      case container_state::running:
      case container_state::paused:
        break;
    }
    stoppers_.push_back(c);
    if (f_.rec.state == container_state::created) {
      // Its process never ran: killing it is the whole stop.
      return kill_now(SIGKILL, true);
    }
    begin_stop(in.timeout);
  }

  void KillContainer(const rpc::call_ptr& c,
                     const podman::KillContainer_in& in) override {
    if (in.signal < 1 || in.signal > 64)
      return c->fail(podman::ErrorOccurred{
          "invalid signal " + std::to_string(in.signal) +
          ": a signal is a number from 1 to 64"});
    if (f_.rec.state != container_state::running &&
        f_.rec.state != container_state::paused)
      return c->fail(podman::ErrorOccurred{
          improper("can only kill running containers. " + f_.rec.id +
                   " is in state " + storage::state_name(f_.rec.state))});
    auto ctx = ctx_;
    auto id = f_.rec.id;
    int sig = int(in.signal);
    job([=](job_result& r) { r.ok = ctx->oci->kill(id, sig, false, r.err); },
        [this, c](const job_result& r) {
          answer<podman::KillContainer_out>(c, "killing")(r.ok, r.err);
        });
  }

  void RestartContainer(const rpc::call_ptr& c,
                        const podman::RestartContainer_in& in) override {
    auto s = f_.rec.state;
    if (s == container_state::removing)
      return c->fail(podman::ErrorOccurred{
          improper("container " + f_.rec.id + " is being removed")});
    if (state_is_live(s)) {
      restarters_.push_back(c);
      return begin_stop(in.timeout);
    }
    start(answer<podman::RestartContainer_out>(c, "restarting"));
  }

  void PauseContainer(const rpc::call_ptr& c,
                      const podman::PauseContainer_in&) override {
    if (f_.rec.state != container_state::running)
      return c->fail(podman::ErrorOccurred{improper(
          "\"" + f_.rec.id + "\" is not running, can't pause")});
    freeze(c, true);
  }

  void UnpauseContainer(const rpc::call_ptr& c,
                        const podman::UnpauseContainer_in&) override {
    if (f_.rec.state != container_state::paused)
      return c->fail(podman::ErrorOccurred{improper(
          "\"" + f_.rec.id + "\" is not paused, can't unpause")});
    freeze(c, false);
  }

  void freeze(const rpc::call_ptr& c, bool pause) {
    auto ctx = ctx_;
    auto id = f_.rec.id;
    job(
        [=](job_result& r) {
          r.ok = pause ? ctx->oci->pause(id, r.err)
                       : ctx->oci->resume(id, r.err);
        },
        [this, c, pause](const job_result& r) {
          if (!r.ok)
            return c->fail(podman::ErrorOccurred{
                (pause ? "pausing container " : "unpausing container ") +
                f_.rec.id + ": " + r.err});
          // The process may have ended meanwhile; its exit comes next.
          if (state_is_live(f_.rec.state))
            f_.rec.state = pause ? container_state::paused
                                 : container_state::running;
          if (!commit_or_fail(c))
            return;
          if (pause)
            c->reply(podman::PauseContainer_out{f_.rec.id});
          else
            c->reply(podman::UnpauseContainer_out{f_.rec.id});
        });
  }

  void WaitContainer(const rpc::call_ptr& c,
                     const podman::WaitContainer_in&) override {
    if (f_.rec.state == container_state::exited ||
        f_.rec.state == container_state::stopped ||
        (f_.rec.state == container_state::removing && f_.rec.finished))
      return c->reply(podman::WaitContainer_out{f_.rec.exit_code});
    waiters_.push_back(c);
    auto me = caf::actor_cast<caf::actor>(self_);
    auto key = uint64_t(reinterpret_cast<uintptr_t>(c.get()));
    c->on_cancel([me, key] { caf::anon_send(me, gone_atom::value, key); });
  }

  /// A waiter hung up: forget it at once (case C02).
  void waiter_gone(uint64_t key) {
    std::erase_if(waiters_, [key](const rpc::call_ptr& c) {
      return uint64_t(reinterpret_cast<uintptr_t>(c.get())) == key;
    });
  }

  void RemoveContainer(const rpc::call_ptr& c,
                       const podman::RemoveContainer_in& in) override {
    auto s = f_.rec.state;
    if (s == container_state::removing) {
      removers_.push_back(c);
      return;
    }
    if ((s == container_state::running || s == container_state::paused) &&
        !in.force)
      return c->fail(podman::ErrorOccurred{improper(
          "cannot remove container " + f_.rec.id +
          " as it is running - running or paused containers cannot be "
          "removed without force")});
    removers_.push_back(c);
    if (s == container_state::running || s == container_state::paused) {
      ++stop_gen_;
      return kill_now(SIGKILL, true); // the exit removes it
    }
    remove_now();
  }

  void MountContainer(const rpc::call_ptr& c,
                      const podman::MountContainer_in&) override {
    if (f_.rec.state == container_state::removing)
      return c->fail(podman::ErrorOccurred{
          improper("container " + f_.rec.id + " is being removed")});
    auto lower = lower_top_first();
    auto dir = f_.dir;
    auto merged = f_.merged;
    job([=](job_result& r) { r.ok = mount_root(lower, dir, merged, r.err); },
        [this, c](const job_result& r) {
          if (!r.ok)
            return c->fail(podman::ErrorOccurred{
                "mounting container " + f_.rec.id + ": " + r.err});
          f_.rec.mounted = true;
          if (commit_or_fail(c))
            c->reply(podman::MountContainer_out{f_.merged});
        });
  }

  void UnmountContainer(const rpc::call_ptr& c,
                        const podman::UnmountContainer_in&) override {
    if (!f_.rec.mounted)
      return c->reply(podman::UnmountContainer_out{});
    f_.rec.mounted = false;
    bool in_use = state_is_live(f_.rec.state);
    auto merged = f_.merged;
    job(
        [=](job_result& r) {
          if (!in_use)
            r.ok = runtime::unmount(merged, r.err);
        },
        [this, c](const job_result& r) {
          if (!r.ok) {
            f_.rec.mounted = true;
            return c->fail(podman::ErrorOccurred{
                "unmounting container " + f_.rec.id + ": " + r.err});
          }
          if (commit_or_fail(c))
            c->reply(podman::UnmountContainer_out{});
        });
  }

  void ListContainerChanges(const rpc::call_ptr& c,
                            const podman::ListContainerChanges_in&) override {
    auto upper = f_.dir + "/upper";
    auto lower = lower_top_first();
    job(
        [=](job_result& r) {
          std::error_code ec;
          if (!fs::exists(upper, ec))
            return; // never started: no changes
          r.ok = storage::overlay_changes(upper, lower, r.changes, r.err);
        },
        [this, c](const job_result& r) {
          if (!r.ok)
            return c->fail(podman::ErrorOccurred{r.err});
          c->reply(podman::ListContainerChanges_out{
              {r.changes.changed, r.changes.added, r.changes.deleted}});
        });
  }

  void ExportContainer(const rpc::call_ptr& c,
                       const podman::ExportContainer_in& in) override {
    if (f_.rec.state == container_state::removing)
      return c->fail(podman::ErrorOccurred{
          improper("container " + f_.rec.id + " is being removed")});
    auto lower = lower_top_first();
    auto dir = f_.dir;
    auto merged = f_.merged;
    bool keep = f_.rec.mounted || state_is_live(f_.rec.state);
    auto path = in.path;
    auto uploads = ctx_->uploads();
    job(
        [=](job_result& r) {
          auto out = path;
          if (out.empty()) {
            if (!storage::make_dirs(uploads, 0700)) {
              r.ok = false;
              r.err = "creating " + uploads + ": " + std::strerror(errno);
              return;
            }
            out = uploads + "/container-export-XXXXXX";
            int fd = mkstemp(out.data());
            if (fd < 0) {
              r.ok = false;
              r.err = "creating " + out + ": " + std::strerror(errno);
              return;
            }
            ::close(fd);
          }
          bool mounted_here = !runtime::is_mounted(merged);
          if (!mount_root(lower, dir, merged, r.err)) {
            r.ok = false;
            return;
          }
          r.ok = storage::export_tree(merged, out, r.err);
          std::string ignored;
          if (mounted_here && !keep)
            runtime::unmount(merged, ignored);
          if (!r.ok && path.empty())
            ::unlink(out.c_str());
          r.text = out;
        },
        [this, c](const job_result& r) {
          if (!r.ok)
            return c->fail(podman::ErrorOccurred{
                "exporting container " + f_.rec.id + ": " + r.err});
          c->reply(podman::ExportContainer_out{r.text});
        });
  }

  void GetContainerLogs(const rpc::call_ptr& c,
                        const podman::GetContainerLogs_in&) override {
    if (c->more())
      return follow_logs(c);
    auto path = f_.log_path;
    job(
        [=](job_result& r) {
          // The reply is written straight from the file: its JSON is the
          // only copy of the log in memory.
          json::writer w;
          w.begin_object();
          w.key("container");
          w.begin_array();
          std::ifstream in{path, std::ios::binary};
          std::string line;
          while (std::getline(in, line)) {
            if (!in.eof())
              line += '\n';
            w.element();
            w.value(line);
          }
          w.end_array();
          w.end_object();
          r.text = w.take();
        },
        [c](const job_result& r) { c->reply_json(r.text); });
  }

  /// With `more`: the lines so far, then new ones as they are written,
  /// until the container's process ends (one that never started is
  /// waited for).
  void follow_logs(const rpc::call_ptr& c) {
    auto* hub = &ctx_->logs;
    auto fid = hub->next_id();
    auto me = caf::actor_cast<caf::actor>(self_);
    bool follow = state_is_live(f_.rec.state) ||
                  f_.rec.state == container_state::configured;
    followers_.insert(fid);
    c->on_cancel([ctx = ctx_, fid, me] {
      ctx->logs.cancel(fid);
      caf::anon_send(me, logend_atom::value, fid);
    });
    // A first reply at once, even without lines: the client knows the
    // follow is in place (berth run starts the container only then).
    c->reply(podman::GetContainerLogs_out{}, true);
    hub->add(fid, f_.log_path, follow,
             std::make_shared<log_stream>(c, hub, fid, me));
  }

  void follower_ended(runtime::log_hub::id fid) { followers_.erase(fid); }

  runtime::attach_request attach_request_for(std::string keys) const {
    runtime::attach_request r;
    r.socket_path = ctx_->oci->paths().sockets_dir + "/" + f_.rec.id +
                    "/attach";
    r.ctl_path = f_.userdata + "/ctl";
    r.detach_keys = std::move(keys);
    r.tty = f_.plan.tty;
    r.stdin_open = f_.plan.interactive;
    return r;
  }

  void GetAttachSockets(const rpc::call_ptr& c,
                        const podman::GetAttachSockets_in&) override {
    auto answer = [this, c] {
      auto r = attach_request_for("");
      c->reply(podman::GetAttachSockets_out{
          {f_.rec.id, r.socket_path, f_.userdata + "/ctl"}});
    };
    if (state_is_live(f_.rec.state))
      return answer();
    if (f_.rec.state == container_state::removing)
      return c->fail(podman::ErrorOccurred{
          improper("container " + f_.rec.id + " is being removed")});
    // The sockets exist once conmon runs: prepare the container.
    init([this, c, answer](bool ok, const std::string& err) {
      if (!ok)
        return c->fail(podman::ErrorOccurred{
            "preparing container " + f_.rec.id + ": " + err});
      answer();
    });
  }

  void Attach(const rpc::call_ptr& c, const podman::Attach_in& in) override {
    if (!c->flags().upgrade)
      return c->fail(podman::ErrorOccurred{
          "Attach needs an upgraded connection: call it with upgrade"});
    std::string keys, err;
    if (!runtime::parse_detach_keys(in.detachKeys, keys, err))
      return c->fail(podman::ErrorOccurred{err});
    auto s = f_.rec.state;
    if (s == container_state::removing ||
        (!in.start && s != container_state::running &&
         s != container_state::paused && s != container_state::created))
      return c->fail(podman::ErrorOccurred{improper(
          "you can only attach to running containers; " + f_.rec.id +
          " is " + storage::state_name(s))});
    auto attach_then_start = [this, c, keys, start = in.start] {
      runtime::attach_hub::id sid = 0;
      std::string err;
      if (!ctx_->attach.open(attach_request_for(keys), nullptr, sid, err))
        return c->fail(podman::ErrorOccurred{"attaching to container " +
                                             f_.rec.id + ": " + err});
      attached_.push_back(sid);
      auto* hub = &ctx_->attach;
      c->reply_upgraded_duplex(
          "{}", hub->peer(sid),
          [hub, sid](std::shared_ptr<rpc::raw_channel> ch) {
            hub->connect(sid, std::move(ch));
          });
      if (start && f_.rec.state == container_state::created)
        run_start([this, sid](bool ok, const std::string& err) {
          if (!ok)
            log()->info("attach start of {} failed: {}", f_.rec.id, err);
        });
    };
    if (state_is_live(s) || !in.start)
      return attach_then_start();
    init([this, c, attach_then_start](bool ok, const std::string& err) {
      if (!ok)
        return c->fail(podman::ErrorOccurred{
            "starting container " + f_.rec.id + ": " + err});
      attach_then_start();
    });
  }

  /// The writer is done: followers deliver the rest and end.
  void finish_followers() {
    for (auto fid : followers_)
      ctx_->logs.finish(fid);
  }

  std::string cgroups_path() const { return "/berth/" + f_.rec.id; }

  /// One sample; `prev` gives the baseline of the cpu percentage (none:
  /// the average since the start).
  bool sample(podman::ContainerStats& out, std::string& err,
              const podman::ContainerStats* prev = nullptr) {
    runtime::cgroup_stats st;
    if (!runtime::read_cgroup_stats(cgroups_path(), pid_t(f_.rec.pid), st,
                                    err))
      return false;
    auto now = uint64_t(now_ns());
    out.id = f_.rec.id;
    out.name = f_.rec.name;
    out.cpu_nano = int64_t(st.cpu_nano);
    // system_nano carries the wall clock of the sample, which is what the
    // next sample's percentage needs (podman 1.x fed it the same way).
    out.system_nano = int64_t(now);
    uint64_t cpu_prev = prev ? uint64_t(prev->cpu_nano) : 0;
    uint64_t wall_prev = prev && prev->system_nano > 0
                             ? uint64_t(prev->system_nano)
                             : uint64_t(f_.rec.started);
    out.cpu = runtime::cpu_percent(cpu_prev, st.cpu_nano, wall_prev, now);
    // Right after a start the cgroup holds the runtime's own set-up time
    // too; no share can exceed every core busy.
    if (st.online_cpus > 0)
      out.cpu = std::min(out.cpu, 100.0 * double(st.online_cpus));
    out.mem_usage = int64_t(st.mem_usage);
    out.mem_limit = int64_t(st.mem_limit);
    out.mem_perc = st.mem_limit ? double(st.mem_usage) * 100.0 /
                                      double(st.mem_limit)
                                : 0.0;
    // podman's names: input is what the container sent, output what it
    // received.
    out.net_input = int64_t(st.net_tx);
    out.net_output = int64_t(st.net_rx);
    out.block_input = int64_t(st.block_read);
    out.block_output = int64_t(st.block_write);
    out.pids = int64_t(st.pids);
    return true;
  }

  void GetContainerStats(const rpc::call_ptr& c,
                         const podman::GetContainerStats_in&) override {
    if (f_.rec.state != container_state::running &&
        f_.rec.state != container_state::paused)
      return c->fail(podman::NoContainerRunning{});
    podman::ContainerStats st;
    std::string err;
    if (!sample(st, err))
      return c->fail(podman::ErrorOccurred{"reading the stats of " +
                                           f_.rec.id + ": " + err});
    if (!c->more())
      return c->reply(podman::GetContainerStats_out{st});
    // One sampler per container, shared by every watcher.
    c->reply(podman::GetContainerStats_out{st}, true);
    stats_watchers_.push_back(c);
    last_sample_ = st;
    auto me = caf::actor_cast<caf::actor>(self_);
    auto key = uint64_t(reinterpret_cast<uintptr_t>(c.get()));
    c->on_cancel([me, key] { caf::anon_send(me, unwatch_atom::value, key); });
    if (!ticking_) {
      ticking_ = true;
      self_->delayed_send(self_, 1s, tick_atom::value);
    }
  }

  void stats_tick() {
    ticking_ = false;
    if (stats_watchers_.empty() ||
        (f_.rec.state != container_state::running &&
         f_.rec.state != container_state::paused))
      return;
    podman::ContainerStats st;
    std::string err;
    if (!sample(st, err, &last_sample_)) {
      // The process ended between samples; its exit ends the streams.
      log()->debug("stats of {}: {}", f_.rec.id, err);
    } else {
      last_sample_ = st;
      for (auto& w : stats_watchers_)
        // A watcher that does not read misses samples, never piles them
        // up.
        if (w->backlog() < 64 * 1024)
          w->reply(podman::GetContainerStats_out{st}, true);
    }
    ticking_ = true;
    self_->delayed_send(self_, 1s, tick_atom::value);
  }

  void unwatch(uint64_t key) {
    std::erase_if(stats_watchers_, [key](const rpc::call_ptr& c) {
      return uint64_t(reinterpret_cast<uintptr_t>(c.get())) == key;
    });
  }

  /// The container stopped: each stream ends with the last sample.
  void end_stats_watchers() {
    for (auto& w : std::exchange(stats_watchers_, {}))
      w->reply(podman::GetContainerStats_out{last_sample_});
  }

  /// False, after answering `c`, when no process runs to look at.
  bool running_or_fail(const rpc::call_ptr& c) {
    if (f_.rec.state == container_state::running ||
        f_.rec.state == container_state::paused)
      return true;
    c->fail(podman::ErrorOccurred{"container " + f_.rec.name +
                                  " is not running"});
    return false;
  }

  void GetContainerStatsWithHistory(
      const rpc::call_ptr& c,
      const podman::GetContainerStatsWithHistory_in& in) override {
    if (!running_or_fail(c))
      return;
    podman::ContainerStats st;
    std::string err;
    if (!sample(st, err, &in.previousStats))
      return c->fail(podman::ErrorOccurred{"reading the stats of " +
                                           f_.rec.id + ": " + err});
    c->reply(podman::GetContainerStatsWithHistory_out{st});
  }

  void ListContainerProcesses(
      const rpc::call_ptr& c,
      const podman::ListContainerProcesses_in& in) override {
    if (!running_or_fail(c))
      return;
    auto path = cgroups_path();
    auto rootfs = f_.merged;
    auto opts = in.opts;
    job(
        [=](job_result& r) {
          r.ok = runtime::list_processes(path, rootfs, opts, r.lines, r.err);
        },
        [c](const job_result& r) {
          if (!r.ok)
            return c->fail(podman::ErrorOccurred{r.err});
          c->reply(podman::ListContainerProcesses_out{r.lines});
        });
  }

  void InspectContainer(const rpc::call_ptr& c,
                        const podman::InspectContainer_in&) override {
    c->reply(podman::InspectContainer_out{inspect_json(f_, true)});
  }

  void ContainerInspectData(const rpc::call_ptr& c,
                            const podman::ContainerInspectData_in&) override {
    c->reply(podman::ContainerInspectData_out{inspect_json(f_, false)});
  }

  void ContainerConfig(const rpc::call_ptr& c,
                       const podman::ContainerConfig_in&) override {
    std::ifstream in{f_.userdata + "/config.json", std::ios::binary};
    std::string spec{std::istreambuf_iterator<char>{in}, {}};
    if (!spec.empty() && !json::is_object_text(spec))
      spec.clear();
    c->reply(podman::ContainerConfig_out{config_json(f_, spec)});
  }

  void ContainerStateData(const rpc::call_ptr& c,
                          const podman::ContainerStateData_in&) override {
    c->reply(podman::ContainerStateData_out{state_json(f_)});
  }

  void ContainerArtifacts(const rpc::call_ptr& c,
                          const podman::ContainerArtifacts_in& in) override {
    auto name = in.artifactName;
    if (name.empty() || name.find('/') != std::string::npos || name == "." ||
        name == "..")
      return c->fail(podman::ErrorOccurred{"invalid artifact name \"" +
                                           name + "\""});
    std::ifstream file{f_.dir + "/artifacts/" + name, std::ios::binary};
    if (!file)
      return c->fail(podman::ErrorOccurred{
          "container " + f_.rec.id + " has no artifact \"" + name + "\""});
    std::string data{std::istreambuf_iterator<char>{file}, {}};
    c->reply(podman::ContainerArtifacts_out{json::quote(base64(data))});
  }

  container_facts& facts() { return f_; }
  void set_layers(std::vector<std::string> dirs) {
    layer_dirs_ = std::move(dirs);
  }

private:
  caf::event_based_actor* self_;
  ctx_ptr ctx_;
  caf::actor catalog_;
  container_facts f_;
  std::vector<std::string> layer_dirs_; ///< bottom first
  bool busy_ = false;
  bool gone_ = false; ///< removed; calls still queued find nothing
  std::function<void(const job_result&)> then_;
  std::deque<std::function<void()>> queue_;
  std::vector<rpc::call_ptr> waiters_, stoppers_, restarters_, removers_;
  std::vector<caf::response_promise> remove_promises_;
  std::set<runtime::log_hub::id> followers_;
  std::vector<runtime::attach_hub::id> attached_;
  std::vector<rpc::call_ptr> stats_watchers_;
  podman::ContainerStats last_sample_;
  bool ticking_ = false;
  uint64_t stop_gen_ = 0;
  uint64_t stopping_gen_ = 0;
};

caf::behavior container_actor(caf::event_based_actor* self, ctx_ptr ctx,
                              caf::actor catalog, container_facts facts,
                              std::vector<std::string> layer_dirs,
                              bool check_exit) {
  auto c = std::make_shared<container>(self, ctx, catalog, std::move(facts));
  c->set_layers(std::move(layer_dirs));
  c->publish();
  // An exit that happened while nobody watched (berthd was down).
  if (check_exit && ctx->oci->exit_code(c->facts().rec.id))
    c->submit([c] { c->on_exit(); });
  self->set_default_handler([](caf::scheduled_actor*, caf::message_view&) {
    log()->warn("unexpected message to a container actor");
    return caf::sec::unexpected_message;
  });
  return {
    [c](const rpc::call_ptr& call) { c->call(call); },
    [c](jobdone_atom, const job_result_ptr& r) { c->job_done(r); },
    [c](exited_atom) { c->submit([c] { c->on_exit(); }); },
    [c](timer_atom, uint64_t gen) { c->submit([c, gen] { c->stop_timer(gen); }); },
    [c](gone_atom, uint64_t key) { c->waiter_gone(key); },
    [c](logend_atom, uint64_t fid) { c->follower_ended(fid); },
    [c](tick_atom) { c->stats_tick(); },
    [c](unwatch_atom, uint64_t key) { c->unwatch(key); },
    [self, c](remove_atom, bool force) {
      auto rp = self->make_response_promise();
      c->submit(
          [c, rp, force]() mutable { c->remove_for_catalog(rp, force); });
      return rp;
    },
  };
}

// ---------------------------------------------------------------------------
// The catalog.

const char* const adjectives[] = {
  "agile",   "amber",   "ancient", "bold",    "brave",   "bright",
  "calm",    "clever",  "cosmic",  "crisp",   "curious", "daring",
  "eager",   "elegant", "fervent", "festive", "gentle",  "gifted",
  "glad",    "golden",  "happy",   "humble",  "jolly",   "keen",
  "kind",    "lively",  "loyal",   "lucid",   "merry",   "modest",
  "nimble",  "noble",   "patient", "placid",  "proud",   "quick",
  "quiet",   "radiant", "rapid",   "serene",  "sharp",   "silent",
  "steady",  "stoic",   "sunny",   "swift",   "tender",  "tidy",
  "upbeat",  "vibrant", "vivid",   "warm",    "wise",    "witty",
  "zealous", "zen",
};

const char* const surnames[] = {
  "agnesi",   "babbage",  "banach",   "bohr",     "boole",    "cantor",
  "curie",    "darwin",   "dirac",    "euclid",   "euler",    "faraday",
  "fermat",   "fermi",    "feynman",  "galois",   "gauss",    "hamilton",
  "hawking",  "hilbert",  "hopper",   "hypatia",  "jacobi",   "kepler",
  "knuth",    "lagrange", "laplace",  "leibniz",  "lovelace", "maxwell",
  "meitner",  "mendel",   "napier",   "newton",   "noether",  "pascal",
  "pasteur",  "planck",   "poincare", "ramanujan", "riemann", "ritchie",
  "shannon",  "tesla",    "thompson", "turing",   "volta",    "wiles",
};

bool valid_name(const std::string& n) {
  if (n.empty() || !std::isalnum(static_cast<unsigned char>(n[0])))
    return false;
  return std::all_of(n.begin(), n.end(), [](char ch) {
    return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' ||
           ch == '.' || ch == '-';
  });
}

class catalog final : public podman::service {
public:
  catalog(caf::event_based_actor* self, ctx_ptr ctx, caf::actor images)
    : self_(self), ctx_(std::move(ctx)), images_(std::move(images)),
      rng_(std::random_device{}()) {
  }

  /// Brings back every stored container. After a reboot (another boot id,
  /// or a run directory that lost its marker) nothing the runtime knew
  /// survives: containers that were live are marked exited.
  void recover() {
    auto marker = ctx_->opts.runroot + "/boot_id";
    std::string marked;
    {
      std::ifstream in{marker};
      std::getline(in, marked);
    }
    bool rebooted = marked != ctx_->boot_id;
    std::string err;
    if (rebooted && !write_file_atomic(marker, ctx_->boot_id + "\n", err))
      log()->error("{}", err);
    auto records = ctx_->store.list();
    for (auto& rec : records) {
      bool check_exit = false;
      auto before = std::make_tuple(rec.state, rec.mounted, rec.pid);
      auto merged = ctx_->store.dir(rec.id) + "/merged";
      auto shm = ctx_->store.dir(rec.id) + "/userdata/shm";
      if (rebooted && state_is_live(rec.state)) {
        log()->info("container {} did not survive the reboot", rec.id);
        std::string ignored;
        ctx_->oci->remove(rec.id, true, ignored);
        runtime::unmount(merged, ignored);
        runtime::unmount(shm, ignored);
        rec.state = container_state::exited;
        rec.finished = rec.finished ? rec.finished : now_ns();
        rec.pid = rec.conmon_pid = 0;
      } else if (rebooted) {
        rec.mounted = rec.mounted && runtime::is_mounted(merged);
      } else if (rec.state == container_state::configured) {
        // A create the runtime may have half done before a crash. Its
        // state directory tells, without running the runtime for every
        // container that was never started.
        std::string ignored;
        std::error_code ec;
        if (fs::exists(ctx_->oci->paths().runtime_root + "/" + rec.id, ec)) {
          ctx_->oci->remove(rec.id, true, ignored);
          if (!rec.mounted)
            runtime::unmount(merged, ignored);
          runtime::unmount(shm, ignored);
        }
        ctx_->oci->forget_exit(rec.id);
      } else if (rec.state == container_state::exited ||
                 rec.state == container_state::stopped) {
        // The exit was recorded; its clean-up may not have happened.
        std::string ignored;
        std::error_code ec;
        if (fs::exists(ctx_->oci->paths().runtime_root + "/" + rec.id, ec) ||
            ctx_->oci->exit_code(rec.id)) {
          ctx_->oci->remove(rec.id, true, ignored);
          if (!rec.mounted)
            runtime::unmount(merged, ignored);
          runtime::unmount(shm, ignored);
          ctx_->oci->forget_exit(rec.id);
        }
        rec.state = container_state::exited;
      } else if (state_is_live(rec.state)) {
        check_exit = true;
        if (!ctx_->oci->exit_code(rec.id) && !alive(rec.conmon_pid)) {
          // Its monitor is gone and left no exit code: nobody can tell
          // how it ended.
          log()->warn("container {} lost its monitor", rec.id);
          std::string ignored;
          ctx_->oci->remove(rec.id, true, ignored);
          if (!rec.mounted)
            runtime::unmount(merged, ignored);
          runtime::unmount(shm, ignored);
          rec.state = container_state::exited;
          rec.exit_code = -1;
          rec.finished = now_ns();
          rec.pid = rec.conmon_pid = 0;
          check_exit = false;
        }
      }
      // Only what changed is written: a thousand containers must not
      // cost a thousand synced transactions at every start.
      if (before != std::make_tuple(rec.state, rec.mounted, rec.pid) &&
          !ctx_->store.update(rec, err))
        log()->error("{}", err);
      storage::container_record copy = rec;
      spawn_container(std::move(copy), check_exit);
    }
    if (!records.empty())
      log()->info("recovered {} containers", records.size());
    // Before any call reaches the images actor: the engine serves only
    // once the catalog has answered its first question.
    for (auto& [id, e] : entries_)
      self_->send(images_, used_atom::value, e.view->summary.imageid, id);
  }

  static bool alive(int64_t pid) {
    return pid > 0 && (::kill(pid_t(pid), 0) == 0 || errno == EPERM);
  }

  /// Builds a container's facts from its record; false if its stored
  /// request no longer plans (it always did when it was created).
  bool facts_for(const storage::container_record& rec, container_facts& f,
                 std::vector<std::string>& layer_dirs, std::string& err) {
    f.rec = rec;
    f.dir = ctx_->store.dir(rec.id);
    f.userdata = f.dir + "/userdata";
    f.merged = f.dir + "/merged";
    f.log_path = f.userdata + "/ctr.log";
    // The request is stored as CreateContainer's parameters were sent.
    simdjson::dom::parser parser;
    simdjson::dom::element e;
    json::decode_error de;
    rpc::call_ptr call;
    static const auto* create_method = podman::info.find("CreateContainer");
    if (parser.parse(rec.create_json).get(e) != simdjson::SUCCESS ||
        !(call = create_method->decode(&e, de))) {
      err = "reading the stored request of container " + rec.id;
      return false;
    }
    f.create =
        static_cast<rpc::typed_call<podman::CreateContainer_in>&>(*call)
            .in.create;
    runtime::image_defaults img;
    std::ifstream in{f.dir + "/image.json", std::ios::binary};
    std::string cfg{std::istreambuf_iterator<char>{in}, {}};
    storage::image_config ic;
    if (!storage::parse_image_config(cfg, ic, err)) {
      err = "reading the image configuration of container " + rec.id +
            ": " + err;
      return false;
    }
    img = defaults_of(ic);
    if (!runtime::plan_container(f.create, img, f.plan, err))
      return false;
    f.hostname = f.plan.hostname.empty() ? rec.id.substr(0, 12)
                                         : f.plan.hostname;
    f.plan.hostname = f.hostname;
    for (auto& chain : rec.layers)
      layer_dirs.push_back(ctx_->opts.root + "/layers/" + chain + "/diff");
    return true;
  }

  static runtime::image_defaults defaults_of(const storage::image_config& c) {
    runtime::image_defaults d;
    d.entrypoint = c.entrypoint;
    d.cmd = c.cmd;
    d.env = c.env;
    d.user = c.user;
    d.working_dir = c.working_dir;
    d.stop_signal = c.stop_signal;
    d.volumes = c.volumes;
    return d;
  }

  void spawn_container(storage::container_record rec, bool check_exit) {
    container_facts f;
    std::vector<std::string> layers;
    std::string err;
    if (!facts_for(rec, f, layers, err)) {
      log()->error("container {} cannot be managed: {}", rec.id, err);
      return;
    }
    auto me = caf::actor_cast<caf::actor>(self_);
    auto a = self_->spawn(container_actor, ctx_, me, f, layers, check_exit);
    auto& e = entries_[rec.id];
    e.actor = a;
    e.name = rec.name;
    auto v = std::make_shared<container_view>();
    v->summary = summarize(f);
    v->state = rec.state;
    v->pid = rec.pid;
    v->created = rec.created;
    v->mounted = rec.mounted;
    v->merged = f.merged;
    v->hostname = f.hostname;
    e.view = v;
    names_[rec.name] = rec.id;
    self_->monitor(a);
  }

  // -- lookups ---------------------------------------------------------------

  enum class found { yes, no, ambiguous, empty };

  found resolve(const std::string& name, std::string& id) {
    if (name.empty())
      return found::empty;
    if (entries_.count(name)) {
      id = name;
      return found::yes;
    }
    if (auto it = names_.find(name);
        it != names_.end() && entries_.count(it->second)) {
      id = it->second;
      return found::yes;
    }
    int hits = 0;
    if (name.find_first_not_of("0123456789abcdef") == std::string::npos)
      for (auto& [key, _] : entries_)
        if (key.starts_with(name)) {
          id = key;
          ++hits;
        }
    return hits == 1 ? found::yes : hits ? found::ambiguous : found::no;
  }

  static std::string why(found f, const std::string& name) {
    switch (f) {
      case found::empty: return "name or ID cannot be empty";
      case found::ambiguous:
        return "more than one result for container ID " + name +
               ": container already exists";
      case found::no:
      case found::yes: break;
    }
    return "no container with name or ID " + name +
           " found: no such container";
  }

  /// Sends the call to the container `name` names, or answers it.
  void forward(const rpc::call_ptr& c, const std::string& name,
               bool not_found_is_error = false) {
    std::string id;
    auto f = resolve(name, id);
    if (f == found::yes)
      return caf::anon_send(entries_[id].actor, c);
    if (f == found::no && !not_found_is_error)
      return c->fail(podman::ContainerNotFound{name, why(f, name)});
    c->fail(podman::ErrorOccurred{why(f, name)});
  }

  void internal_error(const rpc::call_ptr& c,
                      const std::string& what) override {
    c->fail(podman::ErrorOccurred{std::string{c->method().name} + ": " +
                                  what});
  }

  // -- methods the catalog answers ------------------------------------------

  void CreateContainer(const rpc::call_ptr& c,
                       const podman::CreateContainer_in& in) override {
    auto req = in.create;
    // The seed's clients put the image and command in their own fields;
    // later ones send them as args.
    if (req.image.empty() && !req.args.empty())
      req.image = req.args.front();
    if (req.command.empty())
      req.command = runtime::requested_command(req);
    if (req.image.empty())
      return c->fail(podman::ErrorOccurred{
          "creating a container: no image given (set create.image, or "
          "create.args with the image first)"});
    std::string name = req.name;
    if (!name.empty() && !valid_name(name))
      return c->fail(podman::ErrorOccurred{
          "invalid container name \"" + name +
          "\": a name must match [a-zA-Z0-9][a-zA-Z0-9_.-]*"});
    auto id = new_id();
    if (name.empty())
      name = generate_name();
    if (auto it = names_.find(name); it != names_.end())
      return c->fail(podman::ErrorOccurred{
          "the container name \"" + name + "\" is already in use by \"" +
          it->second + "\". You have to remove that container to be able "
          "to reuse that name.: that name is already in use"});
    // The name is ours from here on; every failure below gives it back.
    names_[name] = id;
    req.name = name;
    self_->request(images_, caf::infinite, image_for_atom::value, req.image)
        .then(
            [this, c, id, req](const container_image_ptr& img) {
              create_with(c, id, req, *img);
            },
            [this, c, name](caf::error& e) {
              names_.erase(name);
              c->fail(podman::ErrorOccurred{
                  "creating a container: finding its image: " +
                  self_->system().render(e)});
            });
  }

  void create_with(const rpc::call_ptr& c, const std::string& id,
                   const podman::Create& req, const container_image& img) {
    auto release = [&](const std::string& err) {
      names_.erase(req.name);
      if (img.ok) // image_for holds the image until told
        self_->send(images_, handed_atom::value, img.id, std::string{});
      c->fail(podman::ErrorOccurred{err});
    };
    if (!img.ok)
      return release("creating a container from " + req.image + ": " +
                     img.error);
    runtime::container_plan plan;
    std::string err;
    if (!runtime::plan_container(req, defaults_of(img.config), plan, err))
      return release(err);
    storage::container_record rec;
    rec.id = id;
    rec.name = req.name;
    rec.image = req.image;
    rec.image_id = img.id;
    json::writer w;
    w.begin_object();
    w.key("create");
    podman::encode(w, req);
    w.end_object();
    rec.create_json = w.take();
    rec.command = plan.args;
    rec.layers = img.chain_ids;
    rec.created = now_ns();
    rec.state = container_state::configured;
    auto dir = ctx_->store.dir(id);
    // The files first, the row last: a crash in between leaves a
    // directory that the next start removes.
    if (!storage::make_dirs(dir + "/userdata", 0700) ||
        !storage::make_dirs(dir + "/artifacts", 0700)) {
      err = "creating " + dir + ": " + std::strerror(errno);
      std::error_code ec;
      fs::remove_all(dir, ec);
      return release(err);
    }
    if (!write_file_atomic(dir + "/image.json",
                           storage::render_config(img.config), err) ||
        !ctx_->store.insert(rec, err)) {
      std::error_code ec;
      fs::remove_all(dir, ec);
      return release(err);
    }
    spawn_container(rec, false);
    if (!entries_.count(id)) {
      std::string ignored;
      ctx_->store.remove(rec, ignored);
      std::error_code ec;
      fs::remove_all(dir, ec);
      return release("creating container " + id + ": see the log");
    }
    self_->send(images_, handed_atom::value, img.id, id);
    log()->info("created container {} ({}) from {}", id, rec.name,
                req.image);
    c->reply(podman::CreateContainer_out{id});
  }

  std::string new_id() {
    static const char* hex = "0123456789abcdef";
    for (;;) {
      std::string id(64, '0');
      for (auto& ch : id)
        ch = hex[rng_() & 15];
      // IDs that look like numbers confuse tools that take either.
      if (!entries_.count(id) && !names_.count(id) &&
          id.find_first_not_of("0123456789") != std::string::npos)
        return id;
    }
  }

  std::string generate_name() {
    constexpr size_t na = std::size(adjectives), ns = std::size(surnames);
    for (int attempt = 0;; ++attempt) {
      std::string n = std::string{adjectives[rng_() % na]} + "_" +
                      surnames[rng_() % ns];
      if (attempt >= 10)
        n += std::to_string(rng_() % 10000);
      if (!names_.count(n))
        return n;
    }
  }

  void ListContainers(const rpc::call_ptr& c,
                      const podman::ListContainers_in&) override {
    podman::ListContainers_out out;
    out.containers.reserve(entries_.size());
    auto now = now_ns();
    for (auto& [id, e] : entries_) {
      out.containers.push_back(e.view->summary);
      out.containers.back().runningfor = go_duration(now - e.view->created);
    }
    c->reply(out);
  }

  void GetContainer(const rpc::call_ptr& c,
                    const podman::GetContainer_in& in) override {
    std::string id;
    auto f = resolve(in.id, id);
    if (f == found::no)
      return c->fail(podman::ContainerNotFound{in.id, why(f, in.id)});
    if (f != found::yes)
      return c->fail(podman::ErrorOccurred{why(f, in.id)});
    auto& e = entries_[id];
    auto out = e.view->summary;
    out.runningfor = go_duration(now_ns() - e.view->created);
    c->reply(podman::GetContainer_out{out});
  }

  void ContainerExists(const rpc::call_ptr& c,
                       const podman::ContainerExists_in& in) override {
    std::string id;
    auto f = resolve(in.name, id);
    if (f == found::yes)
      return c->reply(podman::ContainerExists_out{0});
    if (f == found::no)
      return c->reply(podman::ContainerExists_out{1});
    c->fail(podman::ErrorOccurred{why(f, in.name)});
  }

  void GetContainersByContext(
      const rpc::call_ptr& c,
      const podman::GetContainersByContext_in& in) override {
    podman::GetContainersByContext_out out;
    if (in.all) {
      for (auto& [id, _] : entries_)
        out.containers.push_back(id);
    } else if (in.latest) {
      const std::string* newest = nullptr;
      int64_t when = -1;
      for (auto& [id, e] : entries_)
        if (e.view->created > when) {
          when = e.view->created;
          newest = &id;
        }
      if (!newest)
        return c->fail(podman::ErrorOccurred{"no containers to find"});
      out.containers.push_back(*newest);
    } else {
      for (auto& name : in.args) {
        std::string id;
        auto f = resolve(name, id);
        if (f != found::yes)
          return c->fail(podman::ErrorOccurred{why(f, name)});
        out.containers.push_back(id);
      }
    }
    c->reply(out);
  }

  void ListContainerMounts(const rpc::call_ptr& c,
                           const podman::ListContainerMounts_in&) override {
    podman::ListContainerMounts_out out;
    for (auto& [id, e] : entries_)
      if (e.view->mounted || state_is_live(e.view->state))
        out.mounts[id] = e.view->merged;
    c->reply(out);
  }

  void DeleteStoppedContainers(
      const rpc::call_ptr& c,
      const podman::DeleteStoppedContainers_in&) override {
    std::vector<std::pair<std::string, caf::actor>> targets;
    for (auto& [id, e] : entries_)
      if (!state_is_live(e.view->state) &&
          e.view->state != container_state::removing)
        targets.emplace_back(id, e.actor);
    remove_each(
        std::move(targets), false,
        [c](std::vector<std::string> removed, const std::string& err) {
          if (!err.empty())
            c->fail(podman::ErrorOccurred{err});
          else
            c->reply(podman::DeleteStoppedContainers_out{std::move(removed)});
        });
  }

  /// Removes every container made from image `image_id`, killing running
  /// ones: "" once all are gone, else the first reason one stayed.
  caf::result<std::string> remove_users(const std::string& image_id) {
    std::vector<std::pair<std::string, caf::actor>> targets;
    for (auto& [id, e] : entries_)
      if (e.view->summary.imageid == image_id)
        targets.emplace_back(id, e.actor);
    auto rp = self_->make_response_promise<std::string>();
    remove_each(std::move(targets), true,
                [rp](std::vector<std::string>, const std::string& err) mutable {
                  rp.deliver(err);
                });
    return rp;
  }

  using removals_done =
      std::function<void(std::vector<std::string>, const std::string&)>;

  /// Asks the actor of each container in `targets` to remove it; `done`
  /// gets the IDs removed and the first error, once all have answered.
  void remove_each(std::vector<std::pair<std::string, caf::actor>> targets,
                   bool force, removals_done done) {
    struct gather {
      removals_done done;
      std::vector<std::string> removed;
      std::string error;
      size_t left = 0;
    };
    auto g = std::make_shared<gather>();
    g->done = std::move(done);
    g->left = targets.size();
    if (targets.empty())
      return g->done({}, {});
    auto finish_one = [g] {
      if (--g->left == 0)
        g->done(std::move(g->removed), g->error);
    };
    for (auto& [id, actor] : targets) {
      self_->request(actor, caf::infinite, remove_atom::value, force)
          .then(
              [g, id = id, finish_one](const std::string& err) {
                if (err.empty())
                  g->removed.push_back(id);
                else if (g->error.empty())
                  g->error = err;
                finish_one();
              },
              [this, g, finish_one](caf::error& e) {
                if (g->error.empty())
                  g->error = self_->system().render(e);
                finish_one();
              });
    }
  }

  void WaitContainer(const rpc::call_ptr& c,
                     const podman::WaitContainer_in& in) override {
    std::string id;
    auto f = resolve(in.name, id);
    if (f == found::yes)
      return caf::anon_send(entries_[id].actor, c);
    // A container removed after it ran (run --rm) still has its code.
    if (f == found::no)
      if (auto code = ctx_->store.removed_exit_code(in.name))
        return c->reply(podman::WaitContainer_out{*code});
    if (f == found::no)
      return c->fail(podman::ContainerNotFound{in.name, why(f, in.name)});
    c->fail(podman::ErrorOccurred{why(f, in.name)});
  }

  // Everything else about one container is its own actor's business.
#define BERTH_FORWARD(Method, field)                                         \
  void Method(const rpc::call_ptr& c, const podman::Method##_in& in)         \
      override {                                                             \
    forward(c, in.field);                                                    \
  }
#define BERTH_FORWARD_EO(Method, field)                                      \
  void Method(const rpc::call_ptr& c, const podman::Method##_in& in)         \
      override {                                                             \
    forward(c, in.field, true);                                              \
  }
  BERTH_FORWARD(StartContainer, name)
  BERTH_FORWARD(StopContainer, name)
  BERTH_FORWARD(KillContainer, name)
  BERTH_FORWARD(RestartContainer, name)
  BERTH_FORWARD(PauseContainer, name)
  BERTH_FORWARD(UnpauseContainer, name)
  BERTH_FORWARD(RemoveContainer, name)
  BERTH_FORWARD(InspectContainer, name)
  BERTH_FORWARD(ContainerInspectData, name)
  BERTH_FORWARD(ContainerConfig, name)
  BERTH_FORWARD(ContainerStateData, name)
  BERTH_FORWARD(ContainerArtifacts, name)
  BERTH_FORWARD(ExportContainer, name)
  BERTH_FORWARD(GetContainerLogs, name)
  BERTH_FORWARD(GetAttachSockets, name)
  BERTH_FORWARD(GetContainerStats, name)
  BERTH_FORWARD_EO(GetContainerStatsWithHistory, previousStats.id)
  BERTH_FORWARD(ListContainerProcesses, name)
  BERTH_FORWARD(Attach, name)
  BERTH_FORWARD_EO(MountContainer, name)
  BERTH_FORWARD_EO(UnmountContainer, name)
  BERTH_FORWARD_EO(ListContainerChanges, name)
#undef BERTH_FORWARD
#undef BERTH_FORWARD_EO

  // -- messages from the container actors ----------------------------------

  void update(const std::string& id, const view_ptr& v) {
    if (auto it = entries_.find(id); it != entries_.end())
      it->second.view = v;
  }

  void removed(const std::string& id) {
    auto it = entries_.find(id);
    if (it == entries_.end())
      return;
    if (auto n = names_.find(it->second.name);
        n != names_.end() && n->second == id)
      names_.erase(n);
    self_->send(images_, unused_atom::value, it->second.view->summary.imageid,
                id);
    entries_.erase(it);
  }

  void down(const caf::actor_addr& who, const caf::error& why) {
    for (auto& [id, e] : entries_) {
      if (e.actor.address() != who)
        continue;
      // It ended without removing itself: bring it back from the store.
      log()->error("the actor of container {} failed ({}); restarting it",
                   id, self_->system().render(why));
      auto id_copy = id;
      auto image_id = e.view->summary.imageid;
      for (auto& rec : ctx_->store.list())
        if (rec.id == id_copy) {
          entries_.erase(id_copy);
          spawn_container(rec, true);
          if (!entries_.count(id_copy))
            self_->send(images_, unused_atom::value, image_id, id_copy);
          return;
        }
      return;
    }
  }

  ns_pids_ptr pids_of(const std::vector<std::string>& targets) {
    auto r = std::make_shared<ns_pids>();
    for (auto& t : targets) {
      if (t.empty()) {
        r->pids.push_back(0);
        continue;
      }
      std::string id;
      auto f = resolve(t, id);
      if (f != found::yes) {
        r->error = why(f, t);
        return r;
      }
      auto& v = *entries_[id].view;
      if (v.state != container_state::running &&
          v.state != container_state::paused) {
        r->error = "container " + id + " must be running to share its "
                   "namespaces";
        return r;
      }
      r->pids.push_back(v.pid);
      if (r->pids.size() == 2) // the IPC target: its /dev/shm
        r->ipc_shm = ctx_->store.dir(id) + "/userdata/shm";
    }
    return r;
  }

  int64_t count() const { return int64_t(entries_.size()); }

  void send_exit(const std::string& id) {
    if (auto it = entries_.find(id); it != entries_.end())
      caf::anon_send(it->second.actor, exited_atom::value);
  }

private:
  struct entry {
    caf::actor actor;
    std::string name;
    view_ptr view;
  };

  caf::event_based_actor* self_;
  ctx_ptr ctx_;
  caf::actor images_;
  std::mt19937_64 rng_;
  std::map<std::string, entry> entries_;
  /// Names in use, also those reserved by creates still under way.
  std::unordered_map<std::string, std::string> names_;
};

} // namespace

caf::behavior catalog_actor(caf::event_based_actor* self,
                            container_options opts, caf::actor images) {
  auto ctx = std::make_shared<shared_ctx>();
  ctx->opts = opts;
  ctx->boot_id = read_boot_id();
  std::string err, note;
  runtime::runtime_info rt;
  bool ok = ctx->store.open(opts.root, err) &&
            storage::make_dirs(opts.runroot, 0700) &&
            runtime::choose_runtime(opts.runtime, rt, note, err);
  if (!ok) {
    log()->error("opening the container store: {}",
                 err.empty() ? std::strerror(errno) : err);
    self->quit(caf::sec::runtime_error);
    return {};
  }
  if (!note.empty())
    log()->warn("{}", note);
  log()->info("OCI runtime: {} ({})", rt.name, rt.path);
  runtime::oci_paths paths;
  paths.runtime_root = opts.runroot + "/" + rt.name;
  paths.exits_dir = opts.runroot + "/exits";
  paths.sockets_dir = opts.runroot + "/socket";
  ctx->oci = std::make_unique<runtime::oci>(rt, paths);
  auto me = caf::actor_cast<caf::actor>(self);
  if (!ctx->exits.start(
          paths.exits_dir,
          [me](const std::string& id) {
            caf::anon_send(me, exited_atom::value, id);
          },
          err)) {
    log()->error("watching {}: {}", paths.exits_dir, err);
    self->quit(caf::sec::runtime_error);
    return {};
  }
  if (!ctx->logs.start(err) || !ctx->attach.start(err)) {
    log()->error("{}", err);
    self->quit(caf::sec::runtime_error);
    return {};
  }
  auto cat = std::make_shared<catalog>(self, ctx, images);
  cat->recover();
  self->set_down_handler(
      [cat](caf::down_msg& m) { cat->down(m.source, m.reason); });
  self->attach_functor([ctx] {
    ctx->exits.stop();
    ctx->logs.stop();
    ctx->attach.stop();
  });
  return {
    [cat](const rpc::call_ptr& c) {
      try {
        cat->invoke(c);
      } catch (const std::exception& e) {
        cat->internal_error(c, e.what());
      }
    },
    [cat](update_atom, const std::string& id, const view_ptr& v) {
      cat->update(id, v);
    },
    [cat](removed_atom, const std::string& id) {
      cat->removed(id);
      return true;
    },
    [cat](exited_atom, const std::string& id) {
      std::string found_id;
      if (cat->resolve(id, found_id) == catalog::found::yes &&
          found_id == id)
        cat->send_exit(id);
    },
    [cat](pidof_atom, const std::vector<std::string>& targets) {
      return cat->pids_of(targets);
    },
    [cat](ccount_atom) { return cat->count(); },
    [cat](remove_users_atom, const std::string& image_id) {
      return cat->remove_users(image_id);
    },
  };
}

} // namespace berth::actors
