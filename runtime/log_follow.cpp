#include "runtime/log_follow.hpp"

#include "runtime/ring_loop.hpp"

#include <atomic>
#include <chrono>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <functional>
#include <map>
#include <mutex>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

namespace berth::runtime {

namespace {

/// Bytes read per step: a follower never holds more than this plus one
/// partial line.
constexpr size_t chunk_size = 128 << 10;
/// A "line" longer than this is delivered as it stands.
constexpr size_t max_partial = 1 << 20;
constexpr unsigned ring_entries = 256;

enum kind : uint64_t { k_inotify = 2, k_read = 3, k_delay = 4 };

/// A writer that keeps a follower at the end of its file gets its lines
/// gathered for this long before the next read, so that a burst of small
/// writes costs a few replies rather than one each (the goal for a new
/// line's latency is 10 ms).
constexpr uint64_t burst_ns = 2'000'000;
const __kernel_timespec gather_for{0, 1'000'000};

uint64_t steady_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

uint64_t tag(kind k, uint64_t id) { return uint64_t(k) << 56 | id; }

} // namespace

struct log_hub::impl final : ring_loop {
  struct follower {
    id fid = 0;
    std::string path;
    std::string dir, base; ///< for a file that does not exist yet
    bool follow = false;
    std::shared_ptr<log_sink> sink;
    int fd = -1;
    int wd = -1; ///< watch on the file, or on its directory
    bool dir_watch = false;
    uint64_t offset = 0;
    std::string partial;
    std::unique_ptr<char[]> buf;
    bool reading = false;
    bool waiting = false; ///< at the end, for inotify
    bool dirty = false;   ///< the file changed while a read was in flight
    bool paused = false;
    bool finishing = false;
    bool dropped = false;
    bool gathering = false; ///< a k_delay timeout is pending
    uint64_t eof_at = 0;    ///< when it last reached the end, steady ns
  };

  int inotify_fd = -1;
  alignas(inotify_event) char inotify_buf[4096];
  std::mutex mu; ///< guards `next_id`
  id next_id = 1;
  std::atomic<size_t> count{0};

  // Owned by the loop's thread.
  std::map<id, std::unique_ptr<follower>> followers;
  std::map<int, std::map<id, bool>> watchers; ///< wd -> followers

  ~impl() override {
    stop();
    if (inotify_fd >= 0)
      ::close(inotify_fd);
  }

  void on_start() override { arm_inotify(); }

  void on_completion(uint64_t data, int res) override {
    auto fid = data & ((uint64_t(1) << 56) - 1);
    switch (kind(data >> 56)) {
      case k_inotify: return on_inotify(res);
      case k_read: return on_read(fid, res);
      case k_delay: return on_delay(fid);
    }
  }

  void arm_inotify() {
    auto* s = submission(tag(k_inotify, 0));
    io_uring_prep_read(s, inotify_fd, inotify_buf, sizeof inotify_buf, 0);
  }

  void on_inotify(int res) {
    for (int pos = 0; res > 0 && pos < res;) {
      auto* ev = reinterpret_cast<inotify_event*>(inotify_buf + pos);
      pos += int(sizeof(inotify_event) + ev->len);
      auto w = watchers.find(ev->wd);
      if (w == watchers.end())
        continue;
      std::string name = ev->len ? std::string{ev->name} : std::string{};
      std::vector<id> ids;
      for (auto& [fid, _] : w->second)
        ids.push_back(fid);
      for (auto fid : ids) {
        auto it = followers.find(fid);
        if (it == followers.end())
          continue;
        auto& f = *it->second;
        if (f.dir_watch) {
          if (name == f.base)
            open_file(f);
          continue;
        }
        if (f.reading)
          f.dirty = true;
        else if (f.waiting && !f.paused)
          wake(f);
      }
    }
    arm_inotify();
  }

  void watch(follower& f, const std::string& path, uint32_t mask) {
    f.wd = inotify_add_watch(inotify_fd, path.c_str(), mask);
    if (f.wd >= 0)
      watchers[f.wd][f.fid] = true;
  }

  void unwatch(follower& f) {
    if (f.wd < 0)
      return;
    auto w = watchers.find(f.wd);
    if (w != watchers.end()) {
      w->second.erase(f.fid);
      if (w->second.empty()) {
        inotify_rm_watch(inotify_fd, f.wd);
        watchers.erase(w);
      }
    }
    f.wd = -1;
  }

  /// Opens the file; a missing one is waited for (with follow) or is an
  /// empty log.
  void open_file(follower& f) {
    f.fd = ::open(f.path.c_str(), O_RDONLY | O_CLOEXEC);
    if (f.fd < 0) {
      if (errno == ENOENT && f.follow && !f.finishing) {
        if (!f.dir_watch) {
          f.dir_watch = true;
          watch(f, f.dir, IN_CREATE | IN_MOVED_TO);
        }
        f.waiting = true;
        return;
      }
      if (errno == ENOENT)
        return end(f, "");
      return end(f, "opening " + f.path + ": " + std::strerror(errno));
    }
    if (f.dir_watch) {
      unwatch(f);
      f.dir_watch = false;
    }
    if (f.follow)
      watch(f, f.path, IN_MODIFY);
    read_next(f);
  }

  void read_next(follower& f) {
    f.waiting = false;
    f.dirty = false;
    if (f.fd < 0)
      return open_file(f); // it may exist by now; if not, waits or ends
    if (!f.buf)
      f.buf.reset(new char[chunk_size]);
    auto* s = submission(tag(k_read, f.fid));
    io_uring_prep_read(s, f.fd, f.buf.get(), chunk_size, f.offset);
    f.reading = true;
  }

  /// The file grew under a waiting follower: read now, or after a moment
  /// when the writer is in the middle of a burst.
  void wake(follower& f) {
    if (f.gathering)
      return;
    if (steady_ns() - f.eof_at > burst_ns)
      return read_next(f);
    f.gathering = true;
    auto* e = submission(tag(k_delay, f.fid));
    io_uring_prep_timeout(e, const_cast<__kernel_timespec*>(&gather_for), 0,
                          0);
  }

  void on_delay(id fid) {
    auto it = followers.find(fid);
    if (it == followers.end())
      return;
    auto& f = *it->second;
    f.gathering = false;
    if (!f.dropped && f.waiting && !f.paused && !f.reading)
      read_next(f);
  }

  void on_read(id fid, int res) {
    auto it = followers.find(fid);
    if (it == followers.end())
      return;
    auto& f = *it->second;
    f.reading = false;
    if (f.dropped)
      return forget(f);
    if (res < 0)
      return end(f, "reading " + f.path + ": " + std::strerror(-res));
    if (res == 0)
      return at_end(f);
    f.offset += uint64_t(res);
    std::vector<std::string> lines;
    const char* p = f.buf.get();
    const char* stop = p + res;
    while (p < stop) {
      auto* nl = static_cast<const char*>(std::memchr(p, '\n', size_t(stop - p)));
      if (!nl) {
        f.partial.append(p, size_t(stop - p));
        break;
      }
      f.partial.append(p, size_t(nl - p + 1));
      lines.push_back(std::move(f.partial));
      f.partial.clear();
      p = nl + 1;
    }
    if (f.partial.size() > max_partial) {
      lines.push_back(std::move(f.partial));
      f.partial.clear();
    }
    bool more = lines.empty() || f.sink->on_lines(std::move(lines));
    if (!more) {
      f.paused = true;
      return;
    }
    read_next(f);
  }

  void at_end(follower& f) {
    struct stat st;
    if (fstat(f.fd, &st) == 0 && uint64_t(st.st_size) < f.offset) {
      // Truncated (the log rotated): start over.
      f.offset = 0;
      f.partial.clear();
      return read_next(f);
    }
    if (f.dirty)
      return read_next(f);
    if (!f.follow || f.finishing) {
      if (!f.partial.empty()) {
        std::vector<std::string> last{std::move(f.partial)};
        f.partial.clear();
        f.sink->on_lines(std::move(last));
      }
      return end(f, "");
    }
    f.buf.reset(); // idle followers hold no buffer
    f.waiting = true;
    f.eof_at = steady_ns();
  }

  void end(follower& f, const std::string& error) {
    auto sink = f.sink;
    f.dropped = true;
    if (!f.reading)
      forget(f);
    sink->on_end(error);
  }

  /// Runs `f` on the loop's thread with follower `fid`, if it is still
  /// followed.
  template <class F>
  void with(id fid, F f) {
    post([this, fid, f] {
      auto it = followers.find(fid);
      if (it != followers.end() && !it->second->dropped)
        f(*it->second);
    });
  }

  void forget(follower& f) {
    unwatch(f);
    if (f.fd >= 0)
      ::close(f.fd);
    followers.erase(f.fid);
    --count;
  }
};

log_hub::log_hub() : impl_(new impl) {
}

log_hub::~log_hub() {
  stop();
}

bool log_hub::start(std::string& err) {
  auto& m = *impl_;
  m.inotify_fd = inotify_init1(IN_CLOEXEC);
  if (m.inotify_fd < 0) {
    err = std::string{"setting up inotify: "} + std::strerror(errno);
    return false;
  }
  return m.start(ring_entries, err);
}

void log_hub::stop() {
  impl_->stop();
}

log_hub::id log_hub::next_id() {
  std::lock_guard lock{impl_->mu};
  return impl_->next_id++;
}

log_hub::id log_hub::add(const std::string& path, bool follow,
                         std::shared_ptr<log_sink> sink) {
  auto fid = next_id();
  add(fid, path, follow, std::move(sink));
  return fid;
}

void log_hub::add(id fid, const std::string& path, bool follow,
                  std::shared_ptr<log_sink> sink) {
  auto& m = *impl_;
  ++m.count;
  m.post([&m, fid, path, follow, sink] {
    auto f = std::make_unique<impl::follower>();
    f->fid = fid;
    f->path = path;
    auto slash = path.rfind('/');
    f->dir = slash == std::string::npos ? "." : path.substr(0, slash);
    f->base = path.substr(slash == std::string::npos ? 0 : slash + 1);
    f->follow = follow;
    f->sink = sink;
    auto& ref = *f;
    m.followers[fid] = std::move(f);
    m.open_file(ref);
  });
}

void log_hub::resume(id fid) {
  impl_->with(fid, [m = impl_.get()](impl::follower& f) {
    if (!f.paused)
      return;
    f.paused = false;
    if (!f.reading)
      m->read_next(f);
  });
}

void log_hub::finish(id fid) {
  impl_->with(fid, [m = impl_.get()](impl::follower& f) {
    f.finishing = true;
    if (f.waiting && !f.paused)
      m->read_next(f);
  });
}

void log_hub::cancel(id fid) {
  impl_->with(fid, [m = impl_.get()](impl::follower& f) {
    f.dropped = true;
    if (!f.reading)
      m->forget(f);
  });
}

size_t log_hub::followers() const {
  return impl_->count.load();
}

} // namespace berth::runtime
