// export_tree and overlay_changes on small trees built in temporary
// directories; tars read back with libarchive's reader.
#define BOOST_TEST_MODULE container_files
#include <boost/test/unit_test.hpp>

#include "storage/container_files.hpp"
#include "storage/layer.hpp"
#include "support.hpp"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cerrno>
#include <clocale>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <locale.h>
#include <map>
#include <string>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <vector>

namespace fs = std::filesystem;
using berth::storage::export_tree;
using berth::storage::overlay_changes;
using berth::storage::tree_changes;
using berth::testing::lstat_of;
using berth::testing::random_bytes;
using berth::testing::read_file;
using berth::testing::temp_dir;

namespace {

// One entry read back from a tar.
struct tar_entry {
  std::string name;
  unsigned type = 0;
  unsigned perm = 0;
  int64_t uid = 0;
  int64_t gid = 0;
  time_t mtime = 0;
  long mtime_nsec = 0;
  int64_t size = 0;
  std::string data;
  std::string symlink;
  std::string hardlink;
  unsigned major = 0;
  unsigned minor = 0;
  std::map<std::string, std::string> xattrs;
};

// A name as libarchive hands it back: in the locale's charset when it
// converts, as UTF-8 otherwise.
std::string text(const char* mbs, const char* utf8) {
  if (mbs)
    return mbs;
  return utf8 ? utf8 : "";
}

// Every entry of the tar at `path`, in archive order.
std::vector<tar_entry> read_tar(const fs::path& path) {
  std::vector<tar_entry> entries;
  auto* a = archive_read_new();
  archive_read_support_format_tar(a);
  BOOST_REQUIRE_EQUAL(archive_read_open_filename(a, path.c_str(), 1 << 16),
                      ARCHIVE_OK);
  archive_entry* e = nullptr;
  int rc;
  while ((rc = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
         rc == ARCHIVE_WARN) {
    tar_entry t;
    t.name = text(archive_entry_pathname(e), archive_entry_pathname_utf8(e));
    t.type = archive_entry_filetype(e);
    t.perm = archive_entry_perm(e);
    t.uid = archive_entry_uid(e);
    t.gid = archive_entry_gid(e);
    t.mtime = archive_entry_mtime(e);
    t.mtime_nsec = archive_entry_mtime_nsec(e);
    t.size = archive_entry_size(e);
    if (archive_entry_symlink(e) || archive_entry_symlink_utf8(e))
      t.symlink = text(archive_entry_symlink(e), archive_entry_symlink_utf8(e));
    if (archive_entry_hardlink(e) || archive_entry_hardlink_utf8(e))
      t.hardlink =
          text(archive_entry_hardlink(e), archive_entry_hardlink_utf8(e));
    t.major = archive_entry_rdevmajor(e);
    t.minor = archive_entry_rdevminor(e);
    archive_entry_xattr_reset(e);
    const char* key = nullptr;
    const void* value = nullptr;
    size_t size = 0;
    while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK)
      t.xattrs[key] = std::string{static_cast<const char*>(value), size};
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof buf)) > 0)
      t.data.append(buf, static_cast<size_t>(n));
    BOOST_REQUIRE_MESSAGE(n == 0, "reading " << t.name);
    entries.push_back(std::move(t));
  }
  BOOST_CHECK_EQUAL(rc, ARCHIVE_EOF);
  archive_read_free(a);
  return entries;
}

std::map<std::string, tar_entry> by_name(std::vector<tar_entry> entries) {
  std::map<std::string, tar_entry> out;
  for (auto& e : entries)
    BOOST_CHECK_MESSAGE(out.emplace(e.name, e).second, "twice: " << e.name);
  return out;
}

std::vector<std::string> names_of(const std::vector<tar_entry>& entries) {
  std::vector<std::string> names;
  for (auto& e : entries)
    names.push_back(e.name);
  return names;
}

void write_file(const fs::path& p, const std::string& data,
                mode_t mode = 0644) {
  {
    std::ofstream out{p, std::ios::binary | std::ios::trunc};
    out.write(data.data(), static_cast<std::streamsize>(data.size()));
    BOOST_REQUIRE(out.good());
  }
  BOOST_REQUIRE(::chmod(p.c_str(), mode) == 0);
}

void set_mtime(const fs::path& p, time_t sec, long nsec) {
  timespec times[2] = {{sec, nsec}, {sec, nsec}};
  BOOST_REQUIRE(utimensat(AT_FDCWD, p.c_str(), times, AT_SYMLINK_NOFOLLOW) ==
                0);
}

void mkdirs(const fs::path& p, mode_t mode = 0755) {
  fs::create_directories(p);
  BOOST_REQUIRE(::chmod(p.c_str(), mode) == 0);
}

// Writes each (path below `root`, content) of `files` as a 0644 file,
// making the missing directories on the way (0755).
void write_files(
    const fs::path& root,
    std::initializer_list<std::pair<const char*, std::string>> files) {
  for (auto& [path, data] : files) {
    mkdirs((root / path).parent_path());
    write_file(root / path, data);
  }
}

void make_whiteout(const fs::path& p) {
  BOOST_REQUIRE_MESSAGE(::mknod(p.c_str(), S_IFCHR | 0, makedev(0, 0)) == 0,
                        "mknod " << p << ": " << std::strerror(errno));
}

void make_opaque(const fs::path& p) {
  BOOST_REQUIRE_MESSAGE(
      ::setxattr(p.c_str(), "trusted.overlay.opaque", "y", 1, 0) == 0,
      "setxattr " << p << ": " << std::strerror(errno));
}

// `upper` made to look as overlayfs leaves a directory it copied up
// without changing it: the lower one's mode, owner and mtime.
void copy_dir_attrs(const fs::path& lower, const fs::path& upper) {
  auto st = lstat_of(lower);
  BOOST_REQUIRE(::chown(upper.c_str(), st.st_uid, st.st_gid) == 0);
  BOOST_REQUIRE(::chmod(upper.c_str(), st.st_mode & 07777) == 0);
  set_mtime(upper, st.st_mtim.tv_sec, st.st_mtim.tv_nsec);
}

bool is_root() {
  return geteuid() == 0;
}

// A private temporary directory, removed with its contents at the end.
struct tmp_fixture {
  temp_dir dir{"/tmp/berth-files-"};
  fs::path root = dir.path;
  fs::path tree = root / "tree";
  fs::path out_dir = root / "out";
  fs::path out = out_dir / "rootfs.tar";

  tmp_fixture() {
    fs::create_directory(tree);
    fs::create_directory(out_dir);
  }

  // What `out_dir` holds: only the tar after a success, nothing (or what
  // was there) after a failure; never a temporary file.
  std::vector<std::string> out_dir_names() const {
    std::vector<std::string> names;
    for (auto& e : fs::directory_iterator{out_dir})
      names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
  }

  std::vector<tar_entry> export_ok() {
    std::string err;
    BOOST_REQUIRE_MESSAGE(export_tree(tree.string(), out.string(), err), err);
    return read_tar(out);
  }
};

} // namespace

BOOST_AUTO_TEST_SUITE(exporting)

BOOST_AUTO_TEST_CASE(files_dirs_links_and_metadata) {
  tmp_fixture t;
  auto big = random_bytes(5 << 20, 7);
  mkdirs(t.tree / "etc");
  write_file(t.tree / "etc/passwd", "root:x:0:0::/root:/bin/sh\n");
  write_file(t.tree / "etc/shadow", "root:*:1::::::\n", 0640);
  mkdirs(t.tree / "usr/bin", 0750);
  // Owner first: chown clears the setuid bit.
  write_file(t.tree / "usr/bin/tool", "#!/bin/sh\n");
  BOOST_REQUIRE(::chown((t.tree / "usr/bin/tool").c_str(), 1000, 2000) == 0);
  BOOST_REQUIRE(::chmod((t.tree / "usr/bin/tool").c_str(), 04755) == 0);
  BOOST_REQUIRE(::link((t.tree / "usr/bin/tool").c_str(),
                       (t.tree / "usr/bin/tool-again").c_str()) == 0);
  fs::create_symlink("tool", t.tree / "usr/bin/sh");
  // Absolute and escaping targets are stored, never followed.
  fs::create_symlink("/etc/passwd", t.tree / "etc/localtime");
  fs::create_symlink("/", t.tree / "escape");
  fs::create_symlink("../../..", t.tree / "usr/up");
  mkdirs(t.tree / "data");
  write_file(t.tree / "data/big", big, 0600);
  write_file(t.tree / "data/empty", "");
  set_mtime(t.tree / "etc/passwd", 1500000000, 123456789);
  set_mtime(t.tree / "usr/bin", 1400000000, 0);

  auto entries = t.export_ok();
  std::vector<std::string> expected{"data/",
                                    "data/big",
                                    "data/empty",
                                    "escape",
                                    "etc/",
                                    "etc/localtime",
                                    "etc/passwd",
                                    "etc/shadow",
                                    "usr/",
                                    "usr/bin/",
                                    "usr/bin/sh",
                                    "usr/bin/tool",
                                    "usr/bin/tool-again",
                                    "usr/up"};
  BOOST_TEST(names_of(entries) == expected, boost::test_tools::per_element());

  auto m = by_name(entries);
  BOOST_CHECK_EQUAL(m["etc/"].type, unsigned{AE_IFDIR});
  BOOST_CHECK_EQUAL(m["etc/passwd"].type, unsigned{AE_IFREG});
  BOOST_CHECK_EQUAL(m["etc/passwd"].data, "root:x:0:0::/root:/bin/sh\n");
  BOOST_CHECK_EQUAL(m["etc/passwd"].mtime, 1500000000);
  BOOST_CHECK_EQUAL(m["etc/passwd"].mtime_nsec, 123456789);
  BOOST_CHECK_EQUAL(m["etc/shadow"].perm, 0640u);
  BOOST_CHECK_EQUAL(m["usr/bin/"].perm, 0750u);
  BOOST_CHECK_EQUAL(m["usr/bin/"].mtime, 1400000000);
  BOOST_CHECK_EQUAL(m["usr/bin/tool"].perm, 04755u);
  BOOST_CHECK_EQUAL(m["usr/bin/tool"].uid, 1000);
  BOOST_CHECK_EQUAL(m["usr/bin/tool"].gid, 2000);
  BOOST_CHECK_EQUAL(m["usr/bin/tool"].data, "#!/bin/sh\n");
  BOOST_CHECK_EQUAL(m["usr/bin/tool-again"].hardlink, "usr/bin/tool");
  BOOST_CHECK_EQUAL(m["usr/bin/tool-again"].data, "");
  BOOST_CHECK_EQUAL(m["usr/bin/sh"].type, unsigned{AE_IFLNK});
  BOOST_CHECK_EQUAL(m["usr/bin/sh"].symlink, "tool");
  BOOST_CHECK_EQUAL(m["etc/localtime"].type, unsigned{AE_IFLNK});
  BOOST_CHECK_EQUAL(m["etc/localtime"].symlink, "/etc/passwd");
  BOOST_CHECK_EQUAL(m["etc/localtime"].data, "");
  BOOST_CHECK_EQUAL(m["escape"].symlink, "/");
  BOOST_CHECK_EQUAL(m["usr/up"].symlink, "../../..");
  BOOST_CHECK_EQUAL(m["data/big"].size, int64_t{5 << 20});
  BOOST_CHECK(m["data/big"].data == big);
  BOOST_CHECK_EQUAL(m["data/empty"].size, 0);

  BOOST_TEST(t.out_dir_names() == std::vector<std::string>{"rootfs.tar"},
             boost::test_tools::per_element());
  BOOST_CHECK_EQUAL(lstat_of(t.out).st_mode & 07777, 0644u);
}

// The tar is a layer berth itself can unpack, hard link included.
BOOST_AUTO_TEST_CASE(round_trip_through_unpack_layer) {
  tmp_fixture t;
  mkdirs(t.tree / "bin");
  write_file(t.tree / "bin/busy", "busy", 0755);
  BOOST_REQUIRE(
      ::link((t.tree / "bin/busy").c_str(), (t.tree / "bin/sh").c_str()) == 0);
  fs::create_symlink("/bin/busy", t.tree / "bin/ls");
  std::string err;
  BOOST_REQUIRE_MESSAGE(export_tree(t.tree.string(), t.out.string(), err), err);
  auto dest = t.root / "unpacked";
  fs::create_directory(dest);
  berth::storage::unpack_stats stats;
  BOOST_REQUIRE_MESSAGE(
      berth::storage::unpack_layer(t.out.string(), dest.string(), stats, err),
      err);
  BOOST_CHECK_EQUAL(read_file(dest / "bin/busy"), "busy");
  BOOST_CHECK_EQUAL(lstat_of(dest / "bin/sh").st_ino,
                    lstat_of(dest / "bin/busy").st_ino);
  BOOST_CHECK_EQUAL(fs::read_symlink(dest / "bin/ls").string(), "/bin/busy");
  BOOST_CHECK_EQUAL(lstat_of(dest / "bin/busy").st_mode & 07777, 0755u);
}

BOOST_AUTO_TEST_CASE(xattrs) {
  tmp_fixture t;
  write_file(t.tree / "f", "x");
  mkdirs(t.tree / "d");
  if (::setxattr((t.tree / "f").c_str(), "user.berth", "v1", 2, 0) != 0) {
    BOOST_TEST_MESSAGE("no user xattrs here: " << std::strerror(errno));
    return;
  }
  BOOST_REQUIRE(::setxattr((t.tree / "d").c_str(), "user.dir", "v2", 2, 0) ==
                0);
  // overlayfs' own never travel in a tar.
  if (is_root())
    make_opaque(t.tree / "d");
  auto m = by_name(t.export_ok());
  BOOST_CHECK_EQUAL(m["f"].xattrs["user.berth"], "v1");
  BOOST_CHECK_EQUAL(m["d/"].xattrs["user.dir"], "v2");
  BOOST_CHECK(!m["d/"].xattrs.contains("trusted.overlay.opaque"));
}

// Device nodes and fifos become tar entries; none of them is ever opened
// (a fifo without a writer would block the export forever).
BOOST_AUTO_TEST_CASE(devices_fifos_and_sockets) {
  tmp_fixture t;
  BOOST_REQUIRE(::mkfifo((t.tree / "fifo").c_str(), 0600) == 0);
  BOOST_REQUIRE(::chmod((t.tree / "fifo").c_str(), 0620) == 0);

  // A listening socket is left out.
  int s = ::socket(AF_UNIX, SOCK_STREAM, 0);
  BOOST_REQUIRE(s >= 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  auto sock_path = (t.tree / "sock").string();
  BOOST_REQUIRE(sock_path.size() < sizeof addr.sun_path);
  std::strcpy(addr.sun_path, sock_path.c_str());
  BOOST_REQUIRE(::bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) ==
                0);

  bool root = is_root();
  if (root) {
    BOOST_REQUIRE(
        ::mknod((t.tree / "null").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0);
    BOOST_REQUIRE(::chmod((t.tree / "null").c_str(), 0666) == 0);
    BOOST_REQUIRE(::mknod((t.tree / "loop9").c_str(), S_IFBLK | 0660,
                          makedev(7, 9)) == 0);
  } else {
    BOOST_TEST_MESSAGE("not root: no device nodes");
  }
  auto entries = t.export_ok();
  ::close(s);

  auto m = by_name(entries);
  BOOST_CHECK(!m.contains("sock"));
  BOOST_CHECK_EQUAL(m["fifo"].type, unsigned{AE_IFIFO});
  BOOST_CHECK_EQUAL(m["fifo"].perm, 0620u);
  if (root) {
    BOOST_CHECK_EQUAL(m["null"].type, unsigned{AE_IFCHR});
    BOOST_CHECK_EQUAL(m["null"].major, 1u);
    BOOST_CHECK_EQUAL(m["null"].minor, 3u);
    BOOST_CHECK_EQUAL(m["null"].perm, 0666u);
    BOOST_CHECK_EQUAL(m["loop9"].type, unsigned{AE_IFBLK});
    BOOST_CHECK_EQUAL(m["loop9"].major, 7u);
    BOOST_CHECK_EQUAL(m["loop9"].minor, 9u);
    BOOST_CHECK_EQUAL(m.size(), 3u);
  }
}

// Names keep their bytes whatever the locale: UTF-8 ones as pax UTF-8,
// others as binary. The caller's locale is left as it was.
BOOST_AUTO_TEST_CASE(names_in_the_c_locale) {
  tmp_fixture t;
  std::string utf8 = "caf\xc3\xa9";
  std::string latin1 = "lat\xe9";
  write_file(t.tree / utf8, "u");
  write_file(t.tree / latin1, "l");
  fs::create_symlink(utf8, t.tree / "to-utf8");
  auto long_name = std::string(120, 'n');
  write_file(t.tree / long_name, "long");

  BOOST_REQUIRE_EQUAL(std::string{setlocale(LC_CTYPE, nullptr)}, "C");
  auto m = by_name(t.export_ok());
  BOOST_CHECK_EQUAL(std::string{setlocale(LC_CTYPE, nullptr)}, "C");
  BOOST_CHECK(uselocale(locale_t{}) == LC_GLOBAL_LOCALE);
  BOOST_CHECK_EQUAL(m[utf8].data, "u");
  BOOST_CHECK_EQUAL(m[latin1].data, "l");
  BOOST_CHECK_EQUAL(m["to-utf8"].symlink, utf8);
  BOOST_CHECK_EQUAL(m[long_name].data, "long");
}

// Exporting into the tree itself leaves the tar out of the tar.
BOOST_AUTO_TEST_CASE(output_inside_the_tree) {
  tmp_fixture t;
  write_file(t.tree / "a", "a");
  auto out = t.tree / "export.tar";
  std::string err;
  BOOST_REQUIRE_MESSAGE(export_tree(t.tree.string(), out.string(), err), err);
  BOOST_TEST(names_of(read_tar(out)) == std::vector<std::string>{"a"},
             boost::test_tools::per_element());
}

// A write failing half-way (over the file size limit, as a full disk
// would) leaves nothing at the destination, nor a temporary file, and an
// older file there untouched.
BOOST_AUTO_TEST_CASE(failure_leaves_no_output) {
  tmp_fixture t;
  write_file(t.tree / "big", random_bytes(3 << 20, 3));
  struct rlimit saved;
  BOOST_REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  auto* old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 1 << 20;
  BOOST_REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  std::string err1;
  std::string err2;
  bool first = export_tree(t.tree.string(), t.out.string(), err1);
  auto names_after_first = t.out_dir_names();
  write_file(t.out, "older");
  bool second = export_tree(t.tree.string(), t.out.string(), err2);
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);

  BOOST_CHECK(!first);
  BOOST_CHECK_MESSAGE(err1 == "exporting " + t.tree.string() +
                                  ": big: writing it to the tar: file too "
                                  "large",
                      err1);
  BOOST_CHECK(names_after_first.empty());
  BOOST_CHECK(!second);
  BOOST_CHECK_EQUAL(read_file(t.out), "older");
  BOOST_TEST(t.out_dir_names() == std::vector<std::string>{"rootfs.tar"},
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(bad_arguments) {
  tmp_fixture t;
  std::string err;
  BOOST_CHECK(!export_tree((t.root / "none").string(), t.out.string(), err));
  BOOST_CHECK_MESSAGE(err.ends_with("none: no such file or directory"), err);
  BOOST_CHECK(
      !export_tree(t.tree.string(), (t.root / "no/x.tar").string(), err));
  BOOST_CHECK_MESSAGE(err.ends_with("no such file or directory"), err);
  BOOST_CHECK(!export_tree(t.tree.string(), t.out_dir.string() + "/", err));
  BOOST_CHECK_MESSAGE(err.ends_with("is a directory"), err);
  BOOST_CHECK(t.out_dir_names().empty());
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(diffing)

// A layer stack (l1 over l2) and a container's upper directory with
// every kind of change; overlayfs' whiteouts and opaque directories need
// root (mknod, trusted.* xattrs).
BOOST_AUTO_TEST_CASE(upper_over_two_layers) {
  if (!is_root()) {
    BOOST_TEST_MESSAGE("not root: no whiteouts or opaque directories");
    return;
  }
  tmp_fixture t;
  auto l1 = t.root / "l1";
  auto l2 = t.root / "l2";
  auto up = t.root / "upper";

  // The bottom layer.
  write_files(l2, {{"etc/passwd", "p"},
                   {"etc/group", "g"},
                   {"usr/bin/tool", "t"},
                   {"lib/libc.so", "c"},
                   {"var/cache/old/x", "x"},
                   {"var/cache/keep/k1", "k"},
                   {"var/cache/keepfile", "k"},
                   {"opt/gone", "g"},
                   {"opt/stay", "s"},
                   {"data/a", "a"},
                   {"shadowed", "s"}});

  // The top layer: an opaque /data, a whiteout over /shadowed.
  write_files(
      l1,
      {{"etc/hostname", "h"}, {"data/c", "c"}, {"var/cache/new_in_l1", "n"}});
  make_opaque(l1 / "data");
  make_whiteout(l1 / "shadowed");

  // The container's changes.
  write_files(up, {{"etc/passwd", "p2"},
                   {"etc/newfile", "n"},
                   {"usr/bin/newtool", "n"},
                   {"lib/libc.so", "c2"},
                   {"var/cache/newfile2", "n"},
                   {"opt/.wh.gone", ""},
                   {"data/a", "a2"},
                   {"shadowed", "back"},
                   {"srv/app/file", "f"}});
  make_whiteout(up / "etc/group");
  mkdirs(up / "var/cache/keep");
  make_opaque(up / "var/cache");
  mkdirs(up / ".wh..wh.plnk");
  set_mtime(up / "etc", 1000000000, 0);
  set_mtime(up / "data", 1000000000, 0);
  for (auto dir : {"usr/bin", "usr", "lib", "var/cache/keep", "var", "opt"})
    copy_dir_attrs(l2 / dir, up / dir);

  tree_changes c;
  std::string err;
  BOOST_REQUIRE_MESSAGE(
      overlay_changes(up.string(), {l1.string(), l2.string()}, c, err), err);
  std::vector<std::string> changed{
      "/data", "/etc",     "/etc/passwd", "/lib/libc.so", "/opt",
      "/usr",  "/usr/bin", "/var",        "/var/cache",   "/var/cache/keep"};
  std::vector<std::string> added{
      "/data/a",  "/etc/newfile",  "/shadowed",        "/srv",
      "/srv/app", "/srv/app/file", "/usr/bin/newtool", "/var/cache/newfile2"};
  std::vector<std::string> deleted{
      "/etc/group",           "/opt/gone",
      "/var/cache/keep/k1",   "/var/cache/keepfile",
      "/var/cache/new_in_l1", "/var/cache/old"};
  BOOST_TEST(c.changed == changed, boost::test_tools::per_element());
  BOOST_TEST(c.added == added, boost::test_tools::per_element());
  BOOST_TEST(c.deleted == deleted, boost::test_tools::per_element());
}

// A directory copied up unchanged shows only as the parent of a change;
// one whose mode or owner changed shows on its own.
BOOST_AUTO_TEST_CASE(copied_up_directories) {
  tmp_fixture t;
  auto low = t.root / "low";
  auto up = t.root / "upper";
  mkdirs(low / "a/b");
  write_file(low / "a/b/f", "f");
  mkdirs(low / "m");
  mkdirs(low / "o");
  mkdirs(up / "a/b");
  write_file(up / "a/b/f", "f2");
  mkdirs(up / "m");
  mkdirs(up / "o");
  copy_dir_attrs(low / "a/b", up / "a/b");
  copy_dir_attrs(low / "a", up / "a");
  copy_dir_attrs(low / "m", up / "m");
  BOOST_REQUIRE(::chmod((up / "m").c_str(), 0700) == 0);
  copy_dir_attrs(low / "o", up / "o");
  bool root = is_root();
  if (root)
    BOOST_REQUIRE(::chown((up / "o").c_str(), 5, 5) == 0);

  tree_changes c;
  std::string err;
  BOOST_REQUIRE_MESSAGE(overlay_changes(up.string(), {low.string()}, c, err),
                        err);
  auto changed = root ? std::vector<std::string>{"/a/b/f", "/m", "/o"}
                      : std::vector<std::string>{"/a/b/f", "/m"};
  BOOST_TEST(c.changed == changed, boost::test_tools::per_element());
  BOOST_CHECK(c.added.empty());
  BOOST_CHECK(c.deleted.empty());
}

// Without layers everything is added; "/" itself is never reported.
BOOST_AUTO_TEST_CASE(no_layers) {
  tmp_fixture t;
  auto up = t.root / "upper";
  mkdirs(up / "d/e");
  write_file(up / "d/e/f", "f");
  write_file(up / "g", "g");
  tree_changes c;
  c.changed = {"stale"};
  std::string err;
  BOOST_REQUIRE_MESSAGE(overlay_changes(up.string(), {}, c, err), err);
  BOOST_CHECK(c.changed.empty());
  BOOST_TEST(c.added ==
                 (std::vector<std::string>{"/d", "/d/e", "/d/e/f", "/g"}),
             boost::test_tools::per_element());
  BOOST_CHECK(c.deleted.empty());
}

// A layer's symlink is an entry like any other: a directory in the upper
// directory replaced it, and what lies below is new, whatever the host
// holds where the link points.
BOOST_AUTO_TEST_CASE(layer_symlinks_are_not_followed) {
  tmp_fixture t;
  auto low = t.root / "low";
  auto up = t.root / "upper";
  mkdirs(low);
  fs::create_symlink("/etc", low / "conf");
  fs::create_symlink("../../../../../etc", low / "up");
  mkdirs(up / "conf");
  write_file(up / "conf/passwd", "p");
  mkdirs(up / "up");
  write_file(up / "up/passwd", "p");
  tree_changes c;
  std::string err;
  BOOST_REQUIRE_MESSAGE(overlay_changes(up.string(), {low.string()}, c, err),
                        err);
  BOOST_TEST(c.changed == (std::vector<std::string>{"/conf", "/up"}),
             boost::test_tools::per_element());
  BOOST_TEST(c.added ==
                 (std::vector<std::string>{"/conf/passwd", "/up/passwd"}),
             boost::test_tools::per_element());
}

BOOST_AUTO_TEST_CASE(missing_directories) {
  tmp_fixture t;
  auto up = t.root / "upper";
  mkdirs(up);
  tree_changes c;
  std::string err;
  BOOST_CHECK(!overlay_changes((t.root / "none").string(), {}, c, err));
  BOOST_CHECK_MESSAGE(err.ends_with("none with its layers: no such file or "
                                    "directory"),
                      err);
  auto layer = (t.root / "gone").string();
  BOOST_CHECK(!overlay_changes(up.string(), {layer}, c, err));
  BOOST_CHECK_MESSAGE(
      err.ends_with("layer " + layer + ": no such file or directory"), err);
}

BOOST_AUTO_TEST_SUITE_END()
