// Exporting a root file system as a tar, and listing what an overlay upper
// directory changed. Both walk trees that a container may be changing, so
// every step is an *at() call on a directory already open.
#include "storage/container_files.hpp"

#include "protocol/unique_fd.hpp"

#include "storage/archive_handles.hpp"
#include "storage/errno_text.hpp"
#include "storage/open_at.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <linux/openat2.h>

#include <algorithm>
#include <cerrno>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <locale.h>
#include <map>
#include <memory>
#include <set>
#include <string_view>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utility>

namespace berth::storage {

namespace {

constexpr size_t copy_block = 1 << 20;
/// Deeper trees are refused rather than walked with ever more descriptors
/// and stack; no path that deep fits in PATH_MAX anyway.
constexpr int max_depth = 1024;
constexpr std::string_view whiteout_prefix = ".wh.";
constexpr std::string_view meta_prefix = ".wh..wh.";
constexpr std::string_view overlay_xattr_prefix = "trusted.overlay.";
constexpr const char* opaque_xattr = "trusted.overlay.opaque";

// ---------------------------------------------------------------------------
// Files and directories

struct dir_closer {
  void operator()(DIR* d) const { closedir(d); }
};

// The names in the directory open as `fd`, "." and ".." left out, sorted
// so that results do not depend on the file system's order.
bool list_dir(int fd, std::vector<std::string>& names) {
  names.clear();
  int own = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (own < 0)
    return false;
  std::unique_ptr<DIR, dir_closer> dir{fdopendir(own)};
  if (!dir) {
    unique_fd close_it{own};
    return false;
  }
  for (;;) {
    errno = 0;
    auto* d = readdir(dir.get());
    if (!d)
      break;
    std::string_view name = d->d_name;
    if (name != "." && name != "..")
      names.emplace_back(name);
  }
  if (errno != 0)
    return false;
  std::sort(names.begin(), names.end());
  return true;
}

// The value of xattr `key` of `path` (symlinks not followed), empty when
// it has none or the file system keeps none.
std::string xattr_value(const std::string& path, const char* key) {
  char buf[16];
  auto n = lgetxattr(path.c_str(), key, buf, sizeof buf);
  return n < 0 ? std::string{} : std::string{buf, static_cast<size_t>(n)};
}

// ---------------------------------------------------------------------------
// Exporting

struct entry_deleter {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};

using entry_ptr = std::unique_ptr<archive_entry, entry_deleter>;

std::string archive_text(archive* a) {
  return archive_error(a, "failed");
}

// Makes this thread's character set UTF-8 while it lives. libarchive's pax
// writer converts names from it to UTF-8: in the C locale every non-ASCII
// name would be stored as binary. Thread-local, so other threads keep
// theirs.
class utf8_locale {
public:
  utf8_locale() : own_(newlocale(LC_CTYPE_MASK, "C.UTF-8", locale_t{})) {
    if (own_)
      saved_ = uselocale(own_);
  }
  ~utf8_locale() {
    if (own_) {
      uselocale(saved_);
      freelocale(own_);
    }
  }
  utf8_locale(const utf8_locale&) = delete;
  utf8_locale& operator=(const utf8_locale&) = delete;

private:
  locale_t own_;
  locale_t saved_{};
};

// The tar under a temporary name beside its destination; removed unless
// it was published.
class temp_output {
public:
  temp_output() = default;
  ~temp_output() {
    if (!path_.empty())
      ::unlink(path_.c_str());
  }
  temp_output(const temp_output&) = delete;
  temp_output& operator=(const temp_output&) = delete;

  bool create(const std::string& dest, std::string& err);
  /// Syncs the file, makes it 0644 and renames it to the destination.
  bool publish(std::string& err);
  int fd() const { return fd_.get(); }
  const struct stat& status() const { return st_; }

private:
  std::string dest_;
  std::string parent_;
  std::string path_;
  unique_fd fd_;
  struct stat st_ {};
};

bool temp_output::create(const std::string& dest, std::string& err) {
  namespace fs = std::filesystem;
  fs::path p{dest};
  auto base = p.filename().string();
  if (base.empty() || base == "." || base == "..") {
    err = "writing " + dest + ": " + errno_text(EISDIR);
    return false;
  }
  dest_ = dest;
  parent_ = p.parent_path().string();
  if (parent_.empty())
    parent_ = ".";
  auto name = parent_ + "/." + base + ".tmp-XXXXXX";
  unique_fd fd{mkostemp(name.data(), O_CLOEXEC)};
  if (!fd) {
    err = "creating a temporary file in " + parent_ + ": " + errno_text(errno);
    return false;
  }
  path_ = name;
  fd_ = std::move(fd);
  if (fstat(fd_.get(), &st_) < 0) {
    err = "creating " + path_ + ": " + errno_text(errno);
    return false;
  }
  return true;
}

bool temp_output::publish(std::string& err) {
  if (fchmod(fd_.get(), 0644) < 0 || fsync(fd_.get()) < 0) {
    err = "syncing " + path_ + ": " + errno_text(errno);
    return false;
  }
  if (rename(path_.c_str(), dest_.c_str()) < 0) {
    err = "moving the tar to " + dest_ + ": " + errno_text(errno);
    return false;
  }
  path_.clear();

  // The rename is done; a directory that cannot be synced changes nothing
  // for the caller, who has a complete file either way.
  unique_fd dir{::open(parent_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (dir)
    fsync(dir.get());
  return true;
}

// Adds the entries of a tree to an open tar writer, each directory's in
// name order, a directory before what it holds.
class tar_walker {
public:
  /// `output` is the tar being written, left out should it lie in the tree.
  tar_walker(archive* a, const struct stat& output)
      : a_(a), output_(output), buf_(new char[copy_block]) {}

  /// Adds what the directory open as `dir` holds; `prefix` is its name in
  /// the tar with a trailing '/', empty for the root.
  bool add_children(int dir, const std::string& prefix, int depth);

  const std::string& error() const { return err_; }

private:
  bool add(int dir, const std::string& name, const std::string& path,
           int depth);
  entry_ptr make_entry(const std::string& path, const struct stat& st);
  bool add_xattrs(archive_entry* e, const std::string& file, bool follow,
                  const std::string& path);
  bool add_symlink(archive_entry* e, int fd, const std::string& path);
  bool write_header(archive_entry* e, const std::string& path);
  bool copy_data(int fd, int64_t size, const std::string& path);
  bool fail(const std::string& path, const std::string& what, int e);
  bool fail_archive(const std::string& path);

  archive* a_;
  struct stat output_;
  std::unique_ptr<char[]> buf_;
  /// The first path stored for each inode with several links.
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
  std::string err_;
};

bool tar_walker::fail(const std::string& path, const std::string& what, int e) {
  err_ = (path.empty() ? std::string{"."} : path) + ": " + what + ": " +
         errno_text(e);
  return false;
}

bool tar_walker::fail_archive(const std::string& path) {
  if (archive_errno(a_) > 0)
    return fail(path, "writing it to the tar", archive_errno(a_));
  err_ = path + ": writing it to the tar: " + archive_text(a_);
  return false;
}

bool tar_walker::add_children(int dir, const std::string& prefix, int depth) {
  if (depth > max_depth)
    return fail(prefix, "nesting too deep", ELOOP);
  std::vector<std::string> names;
  if (!list_dir(dir, names))
    return fail(prefix, "reading the directory", errno);
  for (auto& name : names)
    if (!add(dir, name, prefix + name, depth))
      return false;
  return true;
}

// Every entry is first pinned with O_PATH and O_NOFOLLOW: its type is
// checked on that very inode, a symlink is never followed, and only a
// regular file is ever opened for reading (a device node never is).
bool tar_walker::add(int dir, const std::string& name, const std::string& path,
                     int depth) {
  unique_fd fd{openat(dir, name.c_str(), O_PATH | O_NOFOLLOW | O_CLOEXEC)};
  struct stat st;
  if (!fd || fstat(fd.get(), &st) < 0) {
    // Removed since the directory was read: it is simply not exported.
    return errno == ENOENT || fail(path, "opening it", errno);
  }
  if (S_ISSOCK(st.st_mode) ||
      (st.st_dev == output_.st_dev && st.st_ino == output_.st_ino))
    return true;
  bool is_dir = S_ISDIR(st.st_mode);
  auto e = make_entry(is_dir ? path + "/" : path, st);

  // A further link to an inode already stored.
  if (!is_dir && st.st_nlink > 1) {
    auto [first, fresh] = links_.try_emplace({st.st_dev, st.st_ino}, path);
    if (!fresh) {
      archive_entry_copy_hardlink(e.get(), first->second.c_str());
      archive_entry_set_size(e.get(), 0);
      return write_header(e.get(), path);
    }
  }

  // Xattrs through the pinned inode; a symlink's through its directory, as
  // the kernel would follow it from the descriptor.
  bool is_link = S_ISLNK(st.st_mode);
  auto file = is_link ? proc_path(dir) + "/" + name : proc_path(fd.get());
  if (!add_xattrs(e.get(), file, !is_link, path))
    return false;
  if (is_link && !add_symlink(e.get(), fd.get(), path))
    return false;
  if (!S_ISREG(st.st_mode)) {
    if (!write_header(e.get(), path))
      return false;
    return !is_dir || add_children(fd.get(), path + "/", depth + 1);
  }

  unique_fd in{
      ::open(proc_path(fd.get()).c_str(), O_RDONLY | O_NOCTTY | O_CLOEXEC)};
  if (!in)
    return fail(path, "opening it", errno);
  return write_header(e.get(), path) && copy_data(in.get(), st.st_size, path);
}

// Numeric owners only, as container layers have them: names would be the
// host's, not the image's.
entry_ptr tar_walker::make_entry(const std::string& path,
                                 const struct stat& st) {
  entry_ptr e{archive_entry_new()};
  archive_entry_copy_pathname(e.get(), path.c_str());
  archive_entry_set_filetype(e.get(), st.st_mode & S_IFMT);
  archive_entry_set_perm(e.get(), st.st_mode & 07777);
  archive_entry_set_uid(e.get(), st.st_uid);
  archive_entry_set_gid(e.get(), st.st_gid);
  archive_entry_set_mtime(e.get(), st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
  archive_entry_set_size(e.get(), S_ISREG(st.st_mode) ? st.st_size : 0);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    archive_entry_set_rdevmajor(e.get(), major(st.st_rdev));
    archive_entry_set_rdevminor(e.get(), minor(st.st_rdev));
  }
  return e;
}

// Every xattr of `file` except overlayfs' own. A file system without
// xattrs has none to add; one removed meanwhile is left out.
bool tar_walker::add_xattrs(archive_entry* e, const std::string& file,
                            bool follow, const std::string& path) {
  auto list = follow ? listxattr : llistxattr;
  auto get = follow ? getxattr : lgetxattr;
  std::string names;
  for (;;) {
    auto n = list(file.c_str(), nullptr, 0);
    if (n >= 0)
      names.resize(static_cast<size_t>(n));
    if (n > 0)
      n = list(file.c_str(), names.data(), names.size());
    if (n >= 0) {
      names.resize(static_cast<size_t>(n));
      break;
    }
    // No xattrs kept here, or a symlink removed since it was opened.
    if (errno == ENOTSUP || errno == ENOENT)
      return true;
    if (errno != ERANGE)
      return fail(path, "listing its xattrs", errno);
  }

  std::string value;
  for (size_t at = 0; at < names.size();) {
    std::string key = names.c_str() + at;
    at += key.size() + 1;
    if (key.empty() || key.starts_with(overlay_xattr_prefix))
      continue;
    ssize_t n = 0;
    do {
      n = get(file.c_str(), key.c_str(), nullptr, 0);
      if (n > 0) {
        value.resize(static_cast<size_t>(n));
        n = get(file.c_str(), key.c_str(), value.data(), value.size());
      }
    } while (n < 0 && errno == ERANGE);
    if (n < 0 && (errno == ENODATA || errno == ENOENT))
      continue;
    if (n < 0)
      return fail(path, "reading xattr " + key, errno);
    archive_entry_xattr_add_entry(e, key.c_str(), value.data(),
                                  static_cast<size_t>(n));
  }
  return true;
}

bool tar_walker::add_symlink(archive_entry* e, int fd,
                             const std::string& path) {
  std::string target(256, '\0');
  for (;;) {
    auto n = readlinkat(fd, "", target.data(), target.size());
    if (n < 0)
      return fail(path, "reading the link", errno);
    if (static_cast<size_t>(n) < target.size()) {
      target.resize(static_cast<size_t>(n));
      break;
    }
    target.resize(target.size() * 2);
  }
  archive_entry_copy_symlink(e, target.c_str());
  return true;
}

// ARCHIVE_WARN is success: a name that is not UTF-8 is stored as binary.
bool tar_walker::write_header(archive_entry* e, const std::string& path) {
  return archive_write_header(a_, e) >= ARCHIVE_WARN || fail_archive(path);
}

// Copies at most `size` bytes: the header announced that size. Should the
// file end sooner, libarchive pads the entry with zeros.
bool tar_walker::copy_data(int fd, int64_t size, const std::string& path) {
  while (size > 0) {
    auto want = static_cast<size_t>(std::min<int64_t>(size, copy_block));
    auto n = ::read(fd, buf_.get(), want);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return fail(path, "reading it", errno);
    if (n == 0)
      return true;
    if (archive_write_data(a_, buf_.get(), static_cast<size_t>(n)) != n)
      return fail_archive(path);
    size -= n;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Overlay changes

bool is_whiteout(const struct stat& st) {
  return S_ISCHR(st.st_mode) && st.st_rdev == makedev(0, 0);
}

// Whether `name` in the directory open as `dir` is an opaque directory.
bool is_opaque(int dir, const std::string& name) {
  return xattr_value(proc_path(dir) + "/" + name, opaque_xattr) == "y";
}

std::string join(const std::string& dir, std::string_view name) {
  return (dir == "/" ? dir : dir + "/") + std::string{name};
}

std::string parent_of(const std::string& path) {
  auto slash = path.rfind('/');
  return slash == 0 || slash == std::string::npos ? "/" : path.substr(0, slash);
}

// Directories equal as podman compares them; owners as well, so that a
// chown shows. Whole seconds suffice when either side lost its
// nanoseconds to a tar format without them.
bool same_dir(const struct stat& a, const struct stat& b) {
  bool same_time = a.st_mtim.tv_sec == b.st_mtim.tv_sec &&
                   (a.st_mtim.tv_nsec == b.st_mtim.tv_nsec ||
                    a.st_mtim.tv_nsec == 0 || b.st_mtim.tv_nsec == 0);
  return S_ISDIR(b.st_mode) && a.st_mode == b.st_mode && a.st_uid == b.st_uid &&
         a.st_gid == b.st_gid && a.st_size == b.st_size && same_time;
}

// The image layers, each root kept open. A directory of their union is
// the list of layers, topmost first, whose directory at that path shows
// through (no whiteout or non-directory above it, no opaque one).
class layer_stack {
public:
  bool open(const std::vector<std::string>& dirs, std::string& err);

  size_t size() const { return roots_.size(); }

  /// Layer `layer`'s directory, as given.
  const std::string& path(size_t layer) const { return paths_[layer]; }

  /// Opens directory `path` ("/usr/bin") of layer `layer` without
  /// following any symlink, so nothing outside the layer is reached.
  unique_fd open_dir(size_t layer, const std::string& path) const;

private:
  std::vector<unique_fd> roots_;
  std::vector<std::string> paths_;
};

bool layer_stack::open(const std::vector<std::string>& dirs, std::string& err) {
  for (auto& dir : dirs) {
    unique_fd fd{::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
    if (!fd) {
      err = "layer " + dir + ": " + errno_text(errno);
      return false;
    }
    roots_.push_back(std::move(fd));
    paths_.push_back(dir);
  }
  return true;
}

unique_fd layer_stack::open_dir(size_t layer, const std::string& path) const {
  auto rel = path == "/" ? std::string{"."} : path.substr(1);
  return unique_fd{open_below(roots_[layer].get(), rel, O_RDONLY | O_DIRECTORY,
                              RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS |
                                  RESOLVE_NO_MAGICLINKS)};
}

// What the layers hold at one name of a directory of their union.
struct lower_entry {
  bool present = false;
  struct stat st {}; ///< from the topmost layer holding it
  /// When a directory: the layers whose directory at that path shows.
  std::vector<size_t> layers;
};

// One directory of the union, its layers' directories open while its
// entries are compared.
struct lower_dir {
  std::vector<size_t> layers;
  std::vector<unique_fd> fds;
};

// Compares an upper directory with the layers, directory by directory.
class change_walker {
public:
  explicit change_walker(const layer_stack& stack) : stack_(stack) {}

  /// Compares the upper directory open as `upper`, at `path` in the
  /// container, with the directories of `layers`. `hidden`: the layers'
  /// entries here no longer show (an opaque directory or one below it).
  bool walk(int upper, const std::string& path,
            const std::vector<size_t>& layers, bool hidden, int depth);

  /// Adds the parents of added and deleted entries and fills `out`.
  void finish(tree_changes& out);

  const std::string& error() const { return err_; }

private:
  /// A directory to compare once the current one is done.
  struct subdir {
    std::string name;
    std::vector<size_t> layers;
    bool hidden;
  };

  bool open_lower(const std::string& path, const std::vector<size_t>& layers,
                  lower_dir& out);
  bool compare(int upper, const std::string& path, const std::string& name,
               const lower_dir& lower, bool hidden,
               std::vector<subdir>& subdirs);
  bool look_up(const lower_dir& lower, const std::string& path,
               const std::string& name, lower_entry& out);
  bool add_hidden(const lower_dir& lower, const std::string& path,
                  const std::vector<std::string>& upper_names);
  bool fail(const std::string& path, const std::string& what, int e);

  const layer_stack& stack_;
  std::set<std::string> changed_;
  std::set<std::string> added_;
  std::set<std::string> deleted_;
  std::string err_;
};

bool change_walker::fail(const std::string& path, const std::string& what,
                         int e) {
  err_ = path + ": " + what + ": " + errno_text(e);
  return false;
}

bool change_walker::walk(int upper, const std::string& path,
                         const std::vector<size_t>& layers, bool hidden,
                         int depth) {
  if (depth > max_depth)
    return fail(path, "nesting too deep", ELOOP);
  std::vector<std::string> names;
  if (!list_dir(upper, names)) {
    // Removed since its parent was read: nothing in it to report.
    return errno == ENOENT || fail(path, "reading the directory", errno);
  }

  // This directory's entries, with the layers' directories open; their
  // subdirectories afterwards, so that only one level's are open at once.
  std::vector<subdir> subdirs;
  {
    lower_dir lower;
    if (!open_lower(path, layers, lower))
      return false;
    for (auto& name : names)
      if (!compare(upper, path, name, lower, hidden, subdirs))
        return false;
    if (hidden && !add_hidden(lower, path, names))
      return false;
  }

  for (auto& sub : subdirs) {
    auto sub_path = join(path, sub.name);
    unique_fd fd{openat(upper, sub.name.c_str(),
                        O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)};
    if (!fd) {
      // Removed or replaced since it was compared: a later diff sees it.
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
        continue;
      return fail(sub_path, "opening it", errno);
    }
    if (!walk(fd.get(), sub_path, sub.layers, sub.hidden, depth + 1))
      return false;
  }
  return true;
}

bool change_walker::open_lower(const std::string& path,
                               const std::vector<size_t>& layers,
                               lower_dir& out) {
  out.layers = layers;
  for (auto layer : layers) {
    auto fd = stack_.open_dir(layer, path);
    if (!fd)
      return fail(path, "opening it in layer " + stack_.path(layer), errno);
    out.fds.push_back(std::move(fd));
  }
  return true;
}

// Classifies the upper entry `name` of `path`; a directory goes to
// `subdirs` with the layers that hold it.
bool change_walker::compare(int upper, const std::string& path,
                            const std::string& name, const lower_dir& lower,
                            bool hidden, std::vector<subdir>& subdirs) {
  std::string_view view = name;
  if (view.starts_with(meta_prefix))
    return true;
  if (view.starts_with(whiteout_prefix)) {
    view.remove_prefix(whiteout_prefix.size());
    if (!view.empty())
      deleted_.insert(join(path, view));
    return true;
  }

  auto child = join(path, name);
  struct stat st;
  if (fstatat(upper, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0)
    return errno == ENOENT || fail(child, "reading it", errno);
  if (is_whiteout(st)) {
    deleted_.insert(child);
    return true;
  }
  lower_entry below;
  if (!look_up(lower, path, name, below))
    return false;
  if (!S_ISDIR(st.st_mode)) {
    (below.present ? changed_ : added_).insert(child);
    return true;
  }

  // A directory copied up unchanged is not itself a change; an opaque one
  // replaced what was there, and so did any below it.
  bool opaque = hidden || is_opaque(upper, name);
  if (!below.present)
    added_.insert(child);
  else if (opaque || !same_dir(st, below.st))
    changed_.insert(child);
  subdirs.push_back({name, std::move(below.layers), opaque});
  return true;
}

// Looks `name` up in the layers as overlayfs does: the topmost layer
// holding it decides; a whiteout there means it is gone; only directories
// merge with those below them, down to the first opaque one.
bool change_walker::look_up(const lower_dir& lower, const std::string& path,
                            const std::string& name, lower_entry& out) {
  for (size_t k = 0; k < lower.fds.size(); ++k) {
    struct stat st;
    int dir = lower.fds[k].get();
    if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT)
        continue;
      return fail(join(path, name),
                  "reading it in layer " + stack_.path(lower.layers[k]), errno);
    }
    if (is_whiteout(st) || (out.present && !S_ISDIR(st.st_mode)))
      return true;
    if (!out.present) {
      out.present = true;
      out.st = st;
    }
    if (!S_ISDIR(st.st_mode))
      return true;
    out.layers.push_back(lower.layers[k]);
    if (is_opaque(dir, name))
      return true;
  }
  return true;
}

// In a directory that hides the layers' entries: each one the layers hold
// that the upper directory lacks is deleted.
bool change_walker::add_hidden(const lower_dir& lower, const std::string& path,
                               const std::vector<std::string>& upper_names) {
  std::set<std::string> seen;
  std::vector<std::string> names;
  for (size_t k = 0; k < lower.fds.size(); ++k) {
    int dir = lower.fds[k].get();
    if (!list_dir(dir, names))
      return fail(path, "reading it in layer " + stack_.path(lower.layers[k]),
                  errno);
    for (auto& name : names) {
      // A higher layer decided about this name already.
      if (!seen.insert(name).second)
        continue;
      struct stat st;
      if (fstatat(dir, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 &&
          is_whiteout(st))
        continue;
      if (!std::binary_search(upper_names.begin(), upper_names.end(), name))
        deleted_.insert(join(path, name));
    }
  }
  return true;
}

void change_walker::finish(tree_changes& out) {
  auto mark_parents = [this](const std::string& path) {
    for (auto dir = parent_of(path); dir != "/"; dir = parent_of(dir))
      if (!added_.contains(dir))
        changed_.insert(dir);
  };
  for (auto& path : added_)
    mark_parents(path);
  for (auto& path : deleted_)
    mark_parents(path);
  out.changed.assign(changed_.begin(), changed_.end());
  out.added.assign(added_.begin(), added_.end());
  out.deleted.assign(deleted_.begin(), deleted_.end());
}

} // namespace

bool export_tree(const std::string& dir, const std::string& out_path,
                 std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "exporting " + dir + ": " + why;
    return false;
  };
  unique_fd root{::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
  if (!root)
    return fail(errno_text(errno));
  temp_output out;
  if (!out.create(out_path, err))
    return fail(err);

  // Declared after `out`, the writer is freed (and flushes) before the
  // file it writes to is closed.
  utf8_locale utf8;
  archive_writer a{archive_write_new()};
  if (!a)
    return fail(errno_text(ENOMEM));
  archive_write_set_format_pax(a.get());
  archive_write_set_bytes_in_last_block(a.get(), 1);
  if (archive_write_open_fd(a.get(), out.fd()) != ARCHIVE_OK)
    return fail(archive_text(a.get()));

  tar_walker walker{a.get(), out.status()};
  if (!walker.add_children(root.get(), "", 0))
    return fail(walker.error());
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    auto e = archive_errno(a.get());
    return fail("writing the tar: " +
                (e > 0 ? errno_text(e) : archive_text(a.get())));
  }
  if (!out.publish(err))
    return fail(err);
  return true;
}

bool overlay_changes(const std::string& upper,
                     const std::vector<std::string>& lower_top_first,
                     tree_changes& out, std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "comparing " + upper + " with its layers: " + why;
    return false;
  };
  out = tree_changes{};
  unique_fd root{::open(upper.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (!root)
    return fail(errno_text(errno));
  layer_stack stack;
  if (!stack.open(lower_top_first, err))
    return fail(err);

  std::vector<size_t> all(stack.size());
  for (size_t i = 0; i < all.size(); ++i)
    all[i] = i;
  char opaque[2];
  bool hidden =
      fgetxattr(root.get(), opaque_xattr, opaque, sizeof opaque) == 1 &&
      opaque[0] == 'y';
  change_walker walker{stack};
  if (!walker.walk(root.get(), "/", all, hidden, 0))
    return fail(walker.error());
  walker.finish(out);
  return true;
}

} // namespace berth::storage
