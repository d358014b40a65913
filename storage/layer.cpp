// Layer unpacking in one pass: libarchive undoes the compression (on a
// thread of its own) and parses the tar; every file system change is made by *at() calls on directories
// that openat2(RESOLVE_IN_ROOT) resolved inside the destination.
#include "storage/layer.hpp"

#include "protocol/unique_fd.hpp"

#include "storage/archive_handles.hpp"
#include "storage/digest.hpp"
#include "storage/errno_text.hpp"
#include "storage/open_at.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <isa-l/igzip_lib.h>

#include <cerrno>
#include <algorithm>
#include <climits>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <cstring>
#include <dirent.h>
#include <memory>
#include <fcntl.h>
#include <string_view>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace berth::storage {

namespace {

constexpr std::string_view whiteout_prefix = ".wh.";
constexpr std::string_view meta_prefix = ".wh..wh.";
constexpr std::string_view opaque_marker = ".wh..wh..opq";
constexpr std::string_view aufs_link_dir = ".wh..wh.plnk";
constexpr int max_symlink_hops = 40;
constexpr size_t read_block = 1 << 16;

constexpr const char* corrupt_input = "corrupt or truncated input";

std::string archive_text(archive* a) {
  return archive_error(a, corrupt_input);
}

using path_parts = std::vector<std::string>;

// Splits `path` into components, resolving `.` and `..` as if the layer root
// were `/`: `..` never climbs above it and a leading `/` starts at it.
path_parts clean_path(std::string_view path) {
  path_parts parts;
  while (!path.empty()) {
    auto slash = path.find('/');
    auto part = path.substr(0, slash);
    path = slash == std::string_view::npos ? "" : path.substr(slash + 1);
    if (part.empty() || part == ".")
      continue;
    if (part == "..") {
      if (!parts.empty())
        parts.pop_back();
      continue;
    }
    parts.emplace_back(part);
  }
  return parts;
}

// The first `count` components as a relative path; "." for none.
std::string join(const path_parts& parts, size_t count) {
  std::string path;
  for (size_t i = 0; i < count; ++i) {
    if (i > 0)
      path += '/';
    path += parts[i];
  }
  return path.empty() ? "." : path;
}

// A name of `e` as text; libarchive offers it in the locale's charset or,
// failing a conversion, as UTF-8.
std::string entry_text(const char* mbs, const char* utf8) {
  if (mbs)
    return mbs;
  return utf8 ? utf8 : "";
}

// Removes the directory `name` in `dirfd` with everything below it, never
// following a symlink.
bool remove_tree(int dirfd, const std::string& name) {
  int fd = openat(dirfd, name.c_str(),
                  O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return false;
  DIR* dir = fdopendir(fd);
  if (!dir) {
    ::close(fd);
    return false;
  }
  std::vector<std::pair<std::string, bool>> children;
  while (auto* d = readdir(dir)) {
    std::string_view child = d->d_name;
    if (child == "." || child == "..")
      continue;
    bool is_dir = d->d_type == DT_DIR;
    struct stat st;
    if (d->d_type == DT_UNKNOWN &&
        fstatat(fd, d->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0)
      is_dir = S_ISDIR(st.st_mode);
    children.emplace_back(child, is_dir);
  }
  bool ok = true;
  for (auto& [child, is_dir] : children)
    if (is_dir ? !remove_tree(fd, child)
               : unlinkat(fd, child.c_str(), 0) < 0 && errno != ENOENT)
      ok = false;
  int saved = errno;
  closedir(dir);
  errno = saved;
  return ok && unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) == 0;
}

// Reads `fd` into `buf`, retrying on EINTR: bytes read, 0 at the end, -1
// with errno set.
ssize_t read_some(int fd, char* buf, size_t len) {
  for (;;) {
    auto n = ::read(fd, buf, len);
    if (n >= 0 || errno != EINTR)
      return n;
  }
}

// Where the uncompressed bytes of a layer come from.
class uncompressed_source {
public:
  virtual ~uncompressed_source() = default;
  /// Up to `len` bytes into `buf`: how many, 0 at the end, -1 with `err`.
  virtual ssize_t read(char* buf, size_t len, std::string& err) = 0;
};

// gzip, inflated by ISA-L (a few times faster than zlib). Members follow
// one another as gzip allows; the trailer's CRC and size are checked.
// Anything after the last member that is not another one is read and
// ignored, as libarchive does, so that a writer feeding `fd` is never left
// blocked.
class gzip_source : public uncompressed_source {
public:
  gzip_source(int fd, std::string head) : fd_(fd), in_(in_size) {
    std::memcpy(in_.data(), head.data(), head.size());
    isal_inflate_init(&state_);
    state_.crc_flag = ISAL_GZIP;
    state_.next_in = reinterpret_cast<uint8_t*>(in_.data());
    state_.avail_in = uint32_t(head.size());
  }

  ssize_t read(char* buf, size_t len, std::string& err) override {
    size_t done = 0;
    while (done < len) {
      if (state_.block_state == ISAL_BLOCK_FINISH) {
        int next = next_member(err);
        if (next < 0)
          return -1;
        if (next == 0)
          break;
        continue;
      }
      if (state_.avail_in == 0) {
        auto n = refill(err);
        if (n < 0)
          return -1;
        if (n == 0) {
          err = "gzip: unexpected end of input";
          return -1;
        }
      }
      state_.next_out = reinterpret_cast<uint8_t*>(buf + done);
      state_.avail_out = uint32_t(std::min<size_t>(len - done, 1u << 30));
      auto in_before = state_.avail_in;
      int rc = isal_inflate(&state_);
      auto made = size_t(reinterpret_cast<char*>(state_.next_out) - buf) - done;
      done += made;
      if (rc != ISAL_DECOMP_OK) {
        err = std::string{"gzip: "} + describe(rc);
        return -1;
      }
      // Input it could not use yet (the rest of a header or a symbol):
      // more must come, or the stream ends too early.
      if (made == 0 && state_.avail_in == in_before &&
          state_.block_state != ISAL_BLOCK_FINISH) {
        auto n = refill(err);
        if (n < 0)
          return -1;
        if (n == 0) {
          err = "gzip: unexpected end of input";
          return -1;
        }
      }
    }
    return ssize_t(done);
  }

private:
  static constexpr size_t in_size = 1 << 18;

  static const char* describe(int rc) {
    switch (rc) {
    case ISAL_INVALID_BLOCK: return "invalid deflate block";
    case ISAL_INVALID_SYMBOL: return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK: return "invalid back reference";
    case ISAL_INVALID_WRAPPER: return "invalid header";
    case ISAL_UNSUPPORTED_METHOD: return "unsupported compression method";
    case ISAL_INCORRECT_CHECKSUM: return "checksum mismatch";
    default: return "corrupt input";
    }
  }

  // Reads more input after what is left: bytes read, 0 at the end, -1.
  ssize_t refill(std::string& err) {
    if (state_.avail_in > 0)
      std::memmove(in_.data(), state_.next_in, state_.avail_in);
    auto n = read_some(fd_, in_.data() + state_.avail_in,
                       in_size - state_.avail_in);
    if (n < 0) {
      err = "reading: " + errno_text(errno);
      return -1;
    }
    state_.next_in = reinterpret_cast<uint8_t*>(in_.data());
    state_.avail_in += uint32_t(n);
    return n;
  }

  // After a member: 1 when another one starts, 0 at the end, -1.
  int next_member(std::string& err) {
    while (state_.avail_in < 2) {
      auto n = refill(err);
      if (n < 0)
        return -1;
      if (n == 0)
        break;
    }
    if (state_.avail_in >= 2 && state_.next_in[0] == 0x1f &&
        state_.next_in[1] == 0x8b) {
      auto* next = state_.next_in;
      auto avail = state_.avail_in;
      isal_inflate_reset(&state_);
      state_.crc_flag = ISAL_GZIP;
      state_.next_in = next;
      state_.avail_in = avail;
      return 1;
    }
    state_.avail_in = 0;
    ssize_t n;
    while ((n = read_some(fd_, in_.data(), in_size)) > 0) {
      // not another member: ignored
    }
    if (n < 0) {
      err = "reading: " + errno_text(errno);
      return -1;
    }
    return 0;
  }

  int fd_;
  std::vector<char> in_;
  inflate_state state_;
};

// Any other compression (zstd, bzip2, xz) or none, through libarchive. It
// sees the bytes already read from `fd` first.
class archive_source : public uncompressed_source {
public:
  archive_source(int fd, std::string head)
      : fd_(fd), head_(std::move(head)), buf_(read_block) {}

  /// Opens libarchive's reader; false with `err`.
  bool open(std::string& err) {
    raw_.reset(archive_read_new());
    if (!raw_) {
      err = "out of memory";
      return false;
    }
    support_compressed_stream(raw_.get());
    archive_entry* entry = nullptr;
    if (archive_read_open(raw_.get(), this, nullptr, feed, nullptr) !=
            ARCHIVE_OK ||
        archive_read_next_header(raw_.get(), &entry) != ARCHIVE_OK) {
      err = archive_text(raw_.get());
      return false;
    }
    return true;
  }

  ssize_t read(char* buf, size_t len, std::string& err) override {
    size_t done = 0;
    while (done < len) {
      if (left_ == 0) {
        la_int64_t offset = 0;
        auto rc = archive_read_data_block(raw_.get(), &block_, &left_, &offset);
        if (rc == ARCHIVE_EOF)
          break;
        if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
          err = archive_text(raw_.get());
          return -1;
        }
        continue;
      }
      size_t n = std::min(left_, len - done);
      std::memcpy(buf + done, block_, n);
      block_ = static_cast<const char*>(block_) + n;
      left_ -= n;
      done += n;
    }
    return ssize_t(done);
  }

private:
  static la_ssize_t feed(archive* a, void* opaque, const void** out) {
    auto* self = static_cast<archive_source*>(opaque);
    if (!self->head_.empty()) {
      self->buf_.assign(self->head_.begin(), self->head_.end());
      self->head_.clear();
      *out = self->buf_.data();
      return la_ssize_t(self->buf_.size());
    }
    self->buf_.resize(read_block);
    auto n = read_some(self->fd_, self->buf_.data(), read_block);
    if (n < 0) {
      archive_set_error(a, errno, "reading: %s", errno_text(errno).c_str());
      return -1;
    }
    *out = self->buf_.data();
    return n;
  }

  int fd_;
  std::string head_;
  std::vector<char> buf_;
  archive_reader raw_;
  const void* block_ = nullptr;
  size_t left_ = 0;
};

// Picks the source for the layer in `fd` by its first bytes.
std::unique_ptr<uncompressed_source> open_source(int fd, std::string& err) {
  std::string head(read_block, '\0');
  size_t got = 0;
  while (got < 2) {
    auto n = read_some(fd, head.data() + got, head.size() - got);
    if (n < 0) {
      err = "reading: " + errno_text(errno);
      return nullptr;
    }
    if (n == 0)
      break;
    got += size_t(n);
  }
  head.resize(got);
  if (got >= 2 && head[0] == '\x1f' && head[1] == '\x8b')
    return std::make_unique<gzip_source>(fd, std::move(head));
  auto src = std::make_unique<archive_source>(fd, std::move(head));
  if (!src->open(err))
    return nullptr;
  return src;
}

// The uncompressed tar stream. A thread of its own inflates `source` and
// hashes what comes out, so that inflating runs beside the file writes; it
// hands the tar reader batches through a bounded queue.
class layer_stream {
public:
  explicit layer_stream(uncompressed_source& source) : source_(source) {
    thread_ = std::thread{[this] { produce(); }};
  }

  layer_stream(const layer_stream&) = delete;
  layer_stream& operator=(const layer_stream&) = delete;

  ~layer_stream() { stop(); }

  /// The next batch for the tar reader: its size, 0 at the end, -1 on
  /// failure (see error()). `buf` stays valid until the next call.
  la_ssize_t next(const void** buf) {
    std::unique_lock lock{mutex_};
    changed_.wait(lock, [&] { return !ready_.empty() || done_; });
    if (ready_.empty())
      return err_.empty() ? 0 : -1;
    current_ = std::move(ready_.front());
    ready_.pop_front();
    queued_ -= current_.size;
    changed_.notify_all();
    *buf = current_.data.get();
    return static_cast<la_ssize_t>(current_.size);
  }

  /// Stops the inflating thread (it may be ahead of the tar reader) and
  /// waits for it.
  void stop() {
    {
      std::lock_guard lock{mutex_};
      stopping_ = true;
    }
    changed_.notify_all();
    if (thread_.joinable())
      thread_.join();
  }

  /// Why the stream failed, once next() said so; empty otherwise.
  std::string error() {
    std::lock_guard lock{mutex_};
    return err_;
  }

  /// "sha256:..." of the whole stream, once next() returned 0.
  std::string digest() { return hash_.digest(); }

private:
  static constexpr size_t batch_size = 1 << 18;
  static constexpr size_t max_queued = 8 << 20;

  struct batch {
    std::unique_ptr<char[]> data;
    size_t size = 0;
  };

  void produce() {
    std::string failure;
    bool end = false;
    while (!end) {
      batch b{std::make_unique<char[]>(batch_size), 0};
      while (b.size < batch_size) {
        auto n = source_.read(b.data.get() + b.size, batch_size - b.size,
                              failure);
        if (n <= 0) {
          end = true;
          break;
        }
        b.size += size_t(n);
      }
      if (b.size == 0)
        break;
      hash_.update(b.data.get(), b.size);
      std::unique_lock lock{mutex_};
      changed_.wait(lock, [&] { return queued_ < max_queued || stopping_; });
      if (stopping_)
        break;
      queued_ += b.size;
      ready_.push_back(std::move(b));
      changed_.notify_all();
    }
    std::lock_guard lock{mutex_};
    err_ = std::move(failure);
    done_ = true;
    changed_.notify_all();
  }

  uncompressed_source& source_;
  sha256 hash_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<batch> ready_;
  batch current_;
  size_t queued_ = 0;
  bool done_ = false;
  bool stopping_ = false;
  std::string err_;
};

// Hands the tar reader the next uncompressed batch; 0 at the end, -1 on
// failure (the reason kept in the stream).
la_ssize_t read_uncompressed(archive*, void* opaque, const void** buf) {
  return static_cast<layer_stream*>(opaque)->next(buf);
}

// Opens the tar reader (ustar, pax, GNU) on the uncompressed stream.
archive_reader open_tar(layer_stream& stream, std::string& err) {
  archive_reader a{archive_read_new()};
  if (!a) {
    err = "out of memory";
    return nullptr;
  }
  archive_read_support_format_tar(a.get());
  if (archive_read_open(a.get(), &stream, nullptr, read_uncompressed,
                        nullptr) != ARCHIVE_OK) {
    auto why = stream.error();
    err = why.empty() ? archive_text(a.get()) : why;
    return nullptr;
  }
  return a;
}

// Hashes what is left of the uncompressed stream after the tar reader
// stopped: end-of-archive blocks and record padding belong to the diff_id.
bool drain(layer_stream& stream, std::string& err) {
  const void* buf = nullptr;
  while (stream.next(&buf) > 0) {
    // nop
  }
  err = stream.error();
  return err.empty();
}

// Writes the entries of one layer below `root`.
class extractor {
public:
  /// `stream` explains a failed read of the uncompressed stream.
  extractor(int root, unpack_stats& stats, layer_stream& stream)
      : root_(root), stats_(stats), stream_(stream) {}

  /// Places entry `e` (its data read from `a`); false with error() set.
  bool put(archive* a, archive_entry* e);

  /// Sets directory times and drops AUFS link targets, once all is placed.
  bool finish();

  const std::string& error() const { return err_; }

private:
  struct dir_times {
    path_parts parts;
    timespec times[2];
  };

  bool fail(const std::string& what, int e);
  unique_fd open_dir(const path_parts& parts, size_t count, int& hops);
  unique_fd open_parent(const path_parts& parts);
  bool follow_dangling(int parent, const path_parts& parts, size_t count,
                       int& hops);
  bool clear(int parent, const std::string& name, bool keep_dir);
  bool put_whiteout(const path_parts& parts);
  bool put_hardlink(int parent, const std::string& name, archive_entry* e);
  bool put_node(archive* a, int parent, const path_parts& parts,
                archive_entry* e);
  bool create(archive* a, int parent, const std::string& name,
              archive_entry* e);
  bool write_file(archive* a, int fd);
  bool set_owner_mode(int parent, const std::string& name, archive_entry* e);
  bool set_xattrs(int parent, const std::string& name, archive_entry* e);
  void entry_times(archive_entry* e, timespec* times);

  int root_;
  unpack_stats& stats_;
  layer_stream& stream_;
  std::string entry_;
  std::string err_;
  std::vector<dir_times> dirs_;
  bool aufs_links_ = false;
};

bool extractor::fail(const std::string& what, int e) {
  err_ = "entry " + entry_ + ": " + (what.empty() ? "" : what + ": ") +
         errno_text(e);
  return false;
}

// Opens the directory made of the first `count` components, creating the
// missing ones (0755, root-owned) like `mkdir -p` would inside the root.
unique_fd extractor::open_dir(const path_parts& parts, size_t count,
                              int& hops) {
  auto path = join(parts, count);
  unique_fd fd{open_in_root(root_, path, O_PATH | O_DIRECTORY)};
  if (fd || errno != ENOENT || count == 0)
    return fd;

  // Something on the way is missing: make sure the parent exists, then the
  // last component (or, if it is a dangling symlink, what it points to).
  auto parent = open_dir(parts, count - 1, hops);
  if (!parent)
    return parent;
  auto& name = parts[count - 1];
  if (mkdirat(parent.get(), name.c_str(), 0755) < 0) {
    if (errno != EEXIST || !follow_dangling(parent.get(), parts, count, hops))
      return unique_fd{};
  }
  return unique_fd{open_in_root(root_, path, O_PATH | O_DIRECTORY)};
}

// Creates the directory that the symlink `parts[count - 1]` (in `parent`)
// points to, resolving its target lexically inside the root.
bool extractor::follow_dangling(int parent, const path_parts& parts,
                                size_t count, int& hops) {
  if (++hops > max_symlink_hops) {
    errno = ELOOP;
    return false;
  }
  char buf[PATH_MAX];
  auto n = readlinkat(parent, parts[count - 1].c_str(), buf, sizeof buf);
  if (n < 0 || static_cast<size_t>(n) >= sizeof buf) {
    errno = n < 0 ? (errno == EINVAL ? EEXIST : errno) : ENAMETOOLONG;
    return false;
  }
  std::string target{buf, static_cast<size_t>(n)};
  if (!target.starts_with('/'))
    target = join(parts, count - 1) + "/" + target;
  auto to = clean_path(target);
  return static_cast<bool>(open_dir(to, to.size(), hops));
}

unique_fd extractor::open_parent(const path_parts& parts) {
  int hops = 0;
  auto fd = open_dir(parts, parts.size() - 1, hops);
  if (!fd)
    fail("opening its directory", errno);
  return fd;
}

// Makes room for a new entry `name`: removes what is there, except a
// directory when `keep_dir` (directories merge).
bool extractor::clear(int parent, const std::string& name, bool keep_dir) {
  struct stat st;
  if (fstatat(parent, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT || fail("replacing it", errno);
  if (!S_ISDIR(st.st_mode)) {
    if (unlinkat(parent, name.c_str(), 0) < 0)
      return fail("replacing it", errno);
    return true;
  }
  if (keep_dir)
    return true;
  return remove_tree(parent, name) || fail("replacing it", errno);
}

bool extractor::put(archive* a, archive_entry* e) {
  entry_ =
      entry_text(archive_entry_pathname(e), archive_entry_pathname_utf8(e));
  auto parts = clean_path(entry_);
  if (parts.empty())
    return true;

  // AUFS metadata: its hard link directory is unpacked (links may point
  // into it) and removed at the end; the rest is dropped.
  bool aufs_link = parts.front() == aufs_link_dir && parts.size() > 1;
  aufs_links_ = aufs_links_ || aufs_link;
  for (size_t i = 0; i + 1 < parts.size() && !aufs_link; ++i)
    if (parts[i].starts_with(meta_prefix))
      return true;
  if (!aufs_link && parts.back().starts_with(whiteout_prefix))
    return put_whiteout(parts);

  auto parent = open_parent(parts);
  if (!parent)
    return false;
  auto& name = parts.back();
  if (archive_entry_hardlink(e) || archive_entry_hardlink_utf8(e))
    return put_hardlink(parent.get(), name, e);
  return put_node(a, parent.get(), parts, e);
}

bool extractor::put_whiteout(const path_parts& parts) {
  auto& marker = parts.back();
  if (marker.starts_with(meta_prefix) && marker != opaque_marker)
    return true;
  auto parent = open_parent(parts);
  if (!parent)
    return false;
  if (marker == opaque_marker) {
    auto dir = proc_path(parent.get());
    if (setxattr(dir.c_str(), "trusted.overlay.opaque", "y", 1, 0) < 0)
      return fail("marking its directory opaque", errno);
    return true;
  }

  // `.wh.NAME` hides NAME of the layers below: a 0:0 character device.
  auto name = marker.substr(whiteout_prefix.size());
  if (name.empty() || name == "." || name == "..")
    return fail("invalid whiteout name", EINVAL);
  if (!clear(parent.get(), name, false))
    return false;
  if (mknodat(parent.get(), name.c_str(), S_IFCHR | 0, makedev(0, 0)) < 0)
    return fail("creating the whiteout", errno);
  return true;
}

bool extractor::put_hardlink(int parent, const std::string& name,
                             archive_entry* e) {
  auto target = clean_path(
      entry_text(archive_entry_hardlink(e), archive_entry_hardlink_utf8(e)));
  if (target.empty())
    return fail("hard link to the layer root", EPERM);
  int hops = 0;
  auto from = open_dir(target, target.size() - 1, hops);
  if (!from)
    return fail("hard link target " + join(target, target.size()), errno);
  auto& from_name = target.back();

  // Linking a name to itself, or again to the same file, changes nothing.
  struct stat src, dst;
  if (fstatat(from.get(), from_name.c_str(), &src, AT_SYMLINK_NOFOLLOW) < 0)
    return fail("hard link target " + join(target, target.size()), errno);
  if (fstatat(parent, name.c_str(), &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
      src.st_dev == dst.st_dev && src.st_ino == dst.st_ino)
    return true;

  if (!clear(parent, name, false))
    return false;
  if (linkat(from.get(), from_name.c_str(), parent, name.c_str(), 0) < 0)
    return fail("hard link to " + join(target, target.size()), errno);
  return true;
}

// Creates a file, directory, symlink or device node with its metadata.
bool extractor::put_node(archive* a, int parent, const path_parts& parts,
                         archive_entry* e) {
  auto& name = parts.back();
  auto type = archive_entry_filetype(e);
  if (type == AE_IFSOCK)
    return true;
  if (!clear(parent, name, type == AE_IFDIR) || !create(a, parent, name, e))
    return false;
  if (!set_owner_mode(parent, name, e) || !set_xattrs(parent, name, e))
    return false;

  timespec times[2];
  entry_times(e, times);
  if (type == AE_IFDIR) {
    // Later entries below it would change its mtime; set it at the end.
    dirs_.push_back({parts, {times[0], times[1]}});
    return true;
  }
  if (utimensat(parent, name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0)
    return fail("setting its times", errno);
  return true;
}

// Creates `name` as the type of `e`, with private permissions until its
// owner and mode are set; a directory may exist already.
bool extractor::create(archive* a, int parent, const std::string& name,
                       archive_entry* e) {
  auto type = archive_entry_filetype(e);
  auto* cname = name.c_str();
  switch (type) {
  case AE_IFREG: {
    unique_fd fd{openat(parent, cname,
                        O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                        0600)};
    if (!fd)
      return fail("creating it", errno);
    if (!write_file(a, fd.get()))
      return false;
    if (archive_entry_size_is_set(e) &&
        ftruncate(fd.get(), archive_entry_size(e)) < 0)
      return fail("writing it", errno);
    return true;
  }
  case AE_IFDIR:
    if (mkdirat(parent, cname, 0700) < 0 && errno != EEXIST)
      return fail("creating it", errno);
    return true;
  case AE_IFLNK: {
    auto target =
        entry_text(archive_entry_symlink(e), archive_entry_symlink_utf8(e));
    if (symlinkat(target.c_str(), parent, cname) < 0)
      return fail("creating it", errno);
    return true;
  }
  case AE_IFCHR:
  case AE_IFBLK:
  case AE_IFIFO: {
    auto dev = makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
    if (mknodat(parent, cname, type | 0600, type == AE_IFIFO ? 0 : dev) < 0)
      return fail("creating it", errno);
    return true;
  }
  default:
    return fail("unsupported file type", EINVAL);
  }
}

bool extractor::write_file(archive* a, int fd) {
  for (;;) {
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    auto rc = archive_read_data_block(a, &buf, &size, &offset);
    if (rc == ARCHIVE_EOF)
      return true;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      auto why = stream_.error();
      if (why.empty())
        why = archive_text(a);
      err_ = "entry " + entry_ + ": " + why;
      return false;
    }
    // Blocks carry their offset: sparse files keep their holes.
    auto* p = static_cast<const char*>(buf);
    for (size_t done = 0; done < size;) {
      auto n = pwrite(fd, p + done, size - done, offset + done);
      if (n < 0 && errno == EINTR)
        continue;
      if (n < 0)
        return fail("", errno);
      done += static_cast<size_t>(n);
    }
    stats_.size += size;
  }
}

// Ownership first: chown clears setuid/setgid bits, so the mode follows.
bool extractor::set_owner_mode(int parent, const std::string& name,
                               archive_entry* e) {
  auto uid = archive_entry_uid(e);
  auto gid = archive_entry_gid(e);
  if (uid < 0 || gid < 0 || uid >= UINT32_MAX || gid >= UINT32_MAX)
    return fail("owner out of range", EINVAL);
  if (fchownat(parent, name.c_str(), static_cast<uid_t>(uid),
               static_cast<gid_t>(gid), AT_SYMLINK_NOFOLLOW) < 0)
    return fail("setting its owner", errno);
  if (archive_entry_filetype(e) == AE_IFLNK)
    return true;
  if (fchmodat(parent, name.c_str(), archive_entry_perm(e) & 07777,
               AT_SYMLINK_NOFOLLOW) < 0)
    return fail("setting its mode", errno);
  return true;
}

// The archive's xattrs. Skipped: security.* and trusted.* ones the kernel
// refuses, user.* ones on symlinks and device nodes (the kernel allows them
// only on files and directories), and every trusted.overlay.* one, as those
// would steer overlayfs (redirects, metacopy) past the layer's whiteouts.
bool extractor::set_xattrs(int parent, const std::string& name,
                           archive_entry* e) {
  if (archive_entry_xattr_reset(e) == 0)
    return true;
  auto path = proc_path(parent) + "/" + name;
  const char* key = nullptr;
  const void* value = nullptr;
  size_t size = 0;
  while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
    std::string_view k = key;
    if (k.starts_with("trusted.overlay."))
      continue;
    if (lsetxattr(path.c_str(), key, value, size, 0) == 0)
      continue;
    if (k.starts_with("security.") || k.starts_with("trusted."))
      continue;
    auto type = archive_entry_filetype(e);
    if (errno == EPERM && type != AE_IFREG && type != AE_IFDIR)
      continue;
    return fail("setting xattr " + std::string{k}, errno);
  }
  return true;
}

void extractor::entry_times(archive_entry* e, timespec* times) {
  if (!archive_entry_mtime_is_set(e)) {
    times[0].tv_nsec = times[1].tv_nsec = UTIME_OMIT;
    times[0].tv_sec = times[1].tv_sec = 0;
    return;
  }
  times[1] = {archive_entry_mtime(e), archive_entry_mtime_nsec(e)};
  times[0] = times[1];
  if (archive_entry_atime_is_set(e))
    times[0] = {archive_entry_atime(e), archive_entry_atime_nsec(e)};
}

bool extractor::finish() {
  for (auto& d : dirs_) {
    entry_ = join(d.parts, d.parts.size());
    unique_fd parent{open_in_root(root_, join(d.parts, d.parts.size() - 1),
                                  O_PATH | O_DIRECTORY)};
    struct stat st;
    auto* name = d.parts.back().c_str();
    // Replaced or removed by a later entry: nothing to do.
    if (!parent || fstatat(parent.get(), name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
        !S_ISDIR(st.st_mode))
      continue;
    if (utimensat(parent.get(), name, d.times, AT_SYMLINK_NOFOLLOW) < 0)
      return fail("setting its times", errno);
  }
  entry_ = aufs_link_dir;
  if (aufs_links_ && !remove_tree(root_, std::string{aufs_link_dir}) &&
      errno != ENOENT)
    return fail("removing it", errno);
  return true;
}

} // namespace

bool unpack_layer(int archive_fd, const std::string& dest, unpack_stats& out,
                  std::string& err) {
  unique_fd root{::open(dest.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (!root) {
    err = "unpacking layer into " + dest + ": " + errno_text(errno);
    return false;
  }
  auto source = open_source(archive_fd, err);
  if (!source) {
    err = "unpacking layer: " + err;
    return false;
  }
  layer_stream stream{*source};
  auto tar = open_tar(stream, err);
  if (!tar) {
    err = "unpacking layer: " + err;
    return false;
  }

  // Entry by entry; the tar reader pulls the uncompressed blocks through.
  out = unpack_stats{};
  extractor x{root.get(), out, stream};
  for (;;) {
    archive_entry* entry = nullptr;
    auto rc = archive_read_next_header(tar.get(), &entry);
    if (rc == ARCHIVE_EOF)
      break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      auto why = stream.error();
      if (why.empty())
        why = archive_text(tar.get());
      err = "unpacking layer: " + why;
      return false;
    }
    if (!x.put(tar.get(), entry)) {
      err = "unpacking layer: " + x.error();
      return false;
    }
  }

  if (!drain(stream, err)) {
    err = "unpacking layer: " + err;
    return false;
  }
  if (!x.finish()) {
    err = "unpacking layer: " + x.error();
    return false;
  }
  out.diff_id = stream.digest();
  return true;
}

bool unpack_layer(const std::string& archive_path, const std::string& dest,
                  unpack_stats& out, std::string& err) {
  unique_fd fd{::open(archive_path.c_str(), O_RDONLY | O_CLOEXEC)};
  if (!fd) {
    err = "unpacking layer " + archive_path + ": " + errno_text(errno);
    return false;
  }
  return unpack_layer(fd.get(), dest, out, err);
}

} // namespace berth::storage
