// Layer unpacking in one pass: libarchive undoes the compression and parses
// the tar; every file system change is made by *at() calls on directories
// that openat2(RESOLVE_IN_ROOT) resolved inside the destination.
#include "storage/layer.hpp"

#include "protocol/unique_fd.hpp"

#include "storage/archive_handles.hpp"
#include "storage/digest.hpp"
#include "storage/errno_text.hpp"
#include "storage/open_at.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <dirent.h>
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

// The uncompressed tar stream: a `raw` reader undoes the compression, and
// each block it yields is hashed on its way to the tar reader.
struct layer_stream {
  archive* raw = nullptr;
  sha256 hash;
  std::string err; ///< why the raw reader stopped, if it failed
};

// Hands the tar reader the next uncompressed block; 0 at the end, -1 on
// failure (the reason kept in the stream).
la_ssize_t read_uncompressed(archive*, void* opaque, const void** buf) {
  auto* s = static_cast<layer_stream*>(opaque);
  for (;;) {
    size_t size = 0;
    la_int64_t offset = 0;
    auto rc = archive_read_data_block(s->raw, buf, &size, &offset);
    if (rc == ARCHIVE_EOF)
      return 0;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      s->err = archive_text(s->raw);
      return -1;
    }
    if (size > 0) {
      s->hash.update(*buf, size);
      return static_cast<la_ssize_t>(size);
    }
  }
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
    err = stream.err.empty() ? archive_text(a.get()) : stream.err;
    return nullptr;
  }
  return a;
}

// Hashes what is left of the uncompressed stream after the tar reader
// stopped: end-of-archive blocks and record padding belong to the diff_id.
bool drain(layer_stream& stream, std::string& err) {
  const void* buf = nullptr;
  while (read_uncompressed(nullptr, &stream, &buf) > 0) {
    // nop
  }
  err = stream.err;
  return err.empty();
}

// Writes the entries of one layer below `root`.
class extractor {
public:
  /// `stream_err` is where the decompressor explains a failed read.
  extractor(int root, unpack_stats& stats, const std::string& stream_err)
      : root_(root), stats_(stats), stream_err_(stream_err) {}

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
  const std::string& stream_err_;
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
      auto why = stream_err_.empty() ? archive_text(a) : stream_err_;
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
  layer_stream stream;
  auto raw = open_decompressing(archive_fd, read_block, err, corrupt_input);
  stream.raw = raw.get();
  auto tar = raw ? open_tar(stream, err) : nullptr;
  if (!tar) {
    err = "unpacking layer: " + err;
    return false;
  }

  // Entry by entry; the tar reader pulls the uncompressed blocks through.
  out = unpack_stats{};
  extractor x{root.get(), out, stream.err};
  for (;;) {
    archive_entry* entry = nullptr;
    auto rc = archive_read_next_header(tar.get(), &entry);
    if (rc == ARCHIVE_EOF)
      break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      auto why = stream.err.empty() ? archive_text(tar.get()) : stream.err;
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
  out.diff_id = stream.hash.digest();
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
