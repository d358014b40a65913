// unpack_layer: tar layers built here with libarchive's writer, unpacked into
// temporary directories, hostile ones included; and the sha256 helpers.
#define BOOST_TEST_MODULE layer
#include <boost/test/unit_test.hpp>

#include "storage/digest.hpp"
#include "storage/layer.hpp"
#include "support.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <openssl/evp.h>

#include <cerrno>
#include <clocale>
#include <csignal>
#include <cstdlib>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <set>
#include <thread>
#include <string>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>
#include <utility>
#include <vector>

// GCC 12 warns about members left to their default initializers in the
// designated initializers that describe tar entries below.
#pragma GCC diagnostic ignored "-Wmissing-field-initializers"

namespace fs = std::filesystem;
using berth::storage::unpack_layer;
using berth::storage::unpack_stats;
using berth::testing::lstat_of;
using berth::testing::random_bytes;
using berth::testing::read_file;
using berth::testing::temp_dir;

namespace {

// One tar entry to write; fields left alone make a root-owned 0644 file.
struct spec {
  std::string path;
  unsigned type = AE_IFREG;
  unsigned mode = 0644;
  std::string data;
  std::string symlink;
  std::string hardlink;
  int64_t uid = 0;
  int64_t gid = 0;
  time_t mtime = 1600000000;
  long mtime_nsec = 0;
  unsigned major = 0;
  unsigned minor = 0;
  std::vector<std::pair<std::string, std::string>> xattrs;
};

la_ssize_t append(archive*, void* out, const void* buf, size_t size) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(buf), size);
  return static_cast<la_ssize_t>(size);
}

// Opens a writer of `format` (ARCHIVE_FORMAT_*) that appends to `out`.
archive* writer(std::string& out, int format, int filter) {
  auto* a = archive_write_new();
  archive_write_set_format(a, format);
  archive_write_add_filter(a, filter);
  // No zero padding after a compressed stream: zstd rejects it.
  if (format == ARCHIVE_FORMAT_RAW)
    archive_write_set_bytes_in_last_block(a, 1);
  BOOST_REQUIRE_EQUAL(archive_write_open(a, &out, nullptr, append, nullptr),
                      ARCHIVE_OK);
  return a;
}

// The uncompressed tar of `entries`, pax unless told otherwise.
std::string make_tar(const std::vector<spec>& entries,
                     int format = ARCHIVE_FORMAT_TAR_PAX_INTERCHANGE) {
  std::string out;
  auto* a = writer(out, format, ARCHIVE_FILTER_NONE);
  for (auto& s : entries) {
    auto* e = archive_entry_new();
    archive_entry_set_pathname(e, s.path.c_str());
    archive_entry_set_filetype(e, s.type);
    archive_entry_set_perm(e, s.mode);
    archive_entry_set_uid(e, s.uid);
    archive_entry_set_gid(e, s.gid);
    archive_entry_set_mtime(e, s.mtime, s.mtime_nsec);
    if (!s.symlink.empty())
      archive_entry_set_symlink(e, s.symlink.c_str());
    if (!s.hardlink.empty())
      archive_entry_set_hardlink(e, s.hardlink.c_str());
    archive_entry_set_rdevmajor(e, s.major);
    archive_entry_set_rdevminor(e, s.minor);
    for (auto& [k, v] : s.xattrs)
      archive_entry_xattr_add_entry(e, k.c_str(), v.data(), v.size());
    archive_entry_set_size(e, static_cast<la_int64_t>(s.data.size()));
    BOOST_REQUIRE_EQUAL(archive_write_header(a, e), ARCHIVE_OK);
    if (!s.data.empty())
      BOOST_REQUIRE_EQUAL(archive_write_data(a, s.data.data(), s.data.size()),
                          static_cast<la_ssize_t>(s.data.size()));
    archive_entry_free(e);
  }
  BOOST_REQUIRE_EQUAL(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

// `bytes` compressed with `filter`, through a raw-format writer.
std::string compress(const std::string& bytes, int filter) {
  if (filter == ARCHIVE_FILTER_NONE)
    return bytes;
  std::string out;
  auto* a = writer(out, ARCHIVE_FORMAT_RAW, filter);
  auto* e = archive_entry_new();
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, static_cast<la_int64_t>(bytes.size()));
  BOOST_REQUIRE_EQUAL(archive_write_header(a, e), ARCHIVE_OK);
  BOOST_REQUIRE_EQUAL(archive_write_data(a, bytes.data(), bytes.size()),
                      static_cast<la_ssize_t>(bytes.size()));
  archive_entry_free(e);
  BOOST_REQUIRE_EQUAL(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

// sha256 through OpenSSL's one-shot call, independent of storage/digest.
std::string reference_digest(const std::string& bytes) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned len = 0;
  EVP_Digest(bytes.data(), bytes.size(), md, &len, EVP_sha256(), nullptr);
  std::string hex = "sha256:";
  char buf[3];
  for (unsigned i = 0; i < len; ++i) {
    snprintf(buf, sizeof buf, "%02x", md[i]);
    hex += buf;
  }
  return hex;
}

bool exists_no_follow(const fs::path& p) {
  struct stat st;
  return ::lstat(p.c_str(), &st) == 0;
}

std::string xattr_of(const fs::path& p, const char* key) {
  char buf[256];
  auto n = ::lgetxattr(p.c_str(), key, buf, sizeof buf);
  return n < 0 ? std::string{} : std::string{buf, static_cast<size_t>(n)};
}

// A host file's identity, to prove an unpack left it alone.
struct file_identity {
  ino_t ino;
  nlink_t nlink;
  off_t size;
  timespec mtime;
  bool operator==(const file_identity& o) const {
    return ino == o.ino && nlink == o.nlink && size == o.size &&
           mtime.tv_sec == o.mtime.tv_sec && mtime.tv_nsec == o.mtime.tv_nsec;
  }
};

file_identity identity(const char* path) {
  auto st = lstat_of(path);
  return {st.st_ino, st.st_nlink, st.st_size, st.st_mtim};
}

size_t open_fds() {
  size_t n = 0;
  for ([[maybe_unused]] auto& e : fs::directory_iterator{"/proc/self/fd"})
    ++n;
  return n;
}

// A private temporary directory holding `layer/` (the destination) and the
// archive; removed with all its contents at the end of the test.
struct tmp_fixture {
  temp_dir dir{"/tmp/berth-layer-"};
  fs::path root = dir.path;
  fs::path dest = root / "layer";
  fs::path archive = root / "layer.tar";

  tmp_fixture() { fs::create_directory(dest); }

  void write_archive(const std::string& bytes) {
    std::ofstream out{archive, std::ios::binary | std::ios::trunc};
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }

  // Writes `entries` compressed with `filter` and unpacks them.
  bool unpack(const std::vector<spec>& entries, std::string& err,
              int filter = ARCHIVE_FILTER_NONE) {
    write_archive(compress(make_tar(entries), filter));
    unpack_stats stats;
    return unpack_layer(archive.string(), dest.string(), stats, err);
  }

  // Only `layer/` and the archive may exist beside the destination.
  void check_nothing_outside() {
    std::set<std::string> names;
    for (auto& e : fs::directory_iterator{root})
      names.insert(e.path().filename().string());
    BOOST_CHECK((names == std::set<std::string>{"layer", "layer.tar"}));
  }
};

// Everything a layer can hold that has no whiteout or hostile meaning.
std::vector<spec> full_layer(const std::string& big) {
  return {
      {.path = "usr/", .type = AE_IFDIR, .mode = 0755, .mtime = 1500000000},
      {.path = "usr/bin/",
       .type = AE_IFDIR,
       .mode = 0750,
       .uid = 7,
       .gid = 8,
       .mtime = 1500000001,
       .mtime_nsec = 123456789},
      {.path = "usr/bin/tool",
       .mode = 04755,
       .data = "#!/bin/sh\necho hi\n",
       .uid = 1000,
       .gid = 2000,
       .mtime = 1400000000},
      {.path = "usr/bin/group", .mode = 02711, .data = "g"},
      {.path = "usr/bin/big", .data = big},
      {.path = "usr/bin/empty", .mode = 0600},
      {.path = "usr/bin/link",
       .type = AE_IFLNK,
       .mode = 0777,
       .symlink = "tool",
       .uid = 1000,
       .gid = 2000,
       .mtime = 1300000000},
      {.path = "usr/bin/hard", .hardlink = "usr/bin/tool"},
      {.path = "tmp/", .type = AE_IFDIR, .mode = 01777},
      {.path = "dev/null",
       .type = AE_IFCHR,
       .mode = 0666,
       .major = 1,
       .minor = 3},
      {.path = "dev/loop9",
       .type = AE_IFBLK,
       .mode = 0660,
       .gid = 6,
       .major = 7,
       .minor = 9},
      {.path = "run/fifo", .type = AE_IFIFO, .mode = 0620},
      {.path = "etc/attr",
       .data = "x",
       .xattrs = {{"user.berth.test", "value"}, {"user.empty", ""}}},
      {.path = "./", .type = AE_IFDIR, .mode = 0700},
      {.path = ".", .type = AE_IFDIR, .mode = 0700},
  };
}

void check_full_layer(const fs::path& d, const std::string& big) {
  auto tool = lstat_of(d / "usr/bin/tool");
  BOOST_CHECK(S_ISREG(tool.st_mode));
  BOOST_CHECK_EQUAL(tool.st_mode & 07777, 04755u);
  BOOST_CHECK_EQUAL(tool.st_uid, 1000u);
  BOOST_CHECK_EQUAL(tool.st_gid, 2000u);
  BOOST_CHECK_EQUAL(tool.st_mtim.tv_sec, 1400000000);
  BOOST_CHECK_EQUAL(tool.st_nlink, 2u);
  BOOST_CHECK_EQUAL(read_file(d / "usr/bin/tool"), "#!/bin/sh\necho hi\n");
  BOOST_CHECK_EQUAL(lstat_of(d / "usr/bin/group").st_mode & 07777, 02711u);
  BOOST_CHECK(read_file(d / "usr/bin/big") == big);
  BOOST_CHECK_EQUAL(lstat_of(d / "usr/bin/empty").st_size, 0);
  BOOST_CHECK_EQUAL(lstat_of(d / "usr/bin/empty").st_mode & 07777, 0600u);

  auto link = lstat_of(d / "usr/bin/link");
  BOOST_CHECK(S_ISLNK(link.st_mode));
  BOOST_CHECK_EQUAL(fs::read_symlink(d / "usr/bin/link").string(), "tool");
  BOOST_CHECK_EQUAL(link.st_uid, 1000u);
  BOOST_CHECK_EQUAL(link.st_mtim.tv_sec, 1300000000);

  BOOST_CHECK_EQUAL(lstat_of(d / "usr/bin/hard").st_ino, tool.st_ino);

  // Directory times survive the entries written into them later.
  auto bin = lstat_of(d / "usr/bin");
  BOOST_CHECK_EQUAL(bin.st_mode & 07777, 0750u);
  BOOST_CHECK_EQUAL(bin.st_uid, 7u);
  BOOST_CHECK_EQUAL(bin.st_gid, 8u);
  BOOST_CHECK_EQUAL(bin.st_mtim.tv_sec, 1500000001);
  BOOST_CHECK_EQUAL(bin.st_mtim.tv_nsec, 123456789);
  BOOST_CHECK_EQUAL(lstat_of(d / "usr").st_mtim.tv_sec, 1500000000);
  BOOST_CHECK_EQUAL(lstat_of(d / "tmp").st_mode & 07777, 01777u);

  auto null = lstat_of(d / "dev/null");
  BOOST_CHECK(S_ISCHR(null.st_mode));
  BOOST_CHECK_EQUAL(major(null.st_rdev), 1u);
  BOOST_CHECK_EQUAL(minor(null.st_rdev), 3u);
  BOOST_CHECK_EQUAL(null.st_mode & 07777, 0666u);
  auto loop = lstat_of(d / "dev/loop9");
  BOOST_CHECK(S_ISBLK(loop.st_mode));
  BOOST_CHECK_EQUAL(major(loop.st_rdev), 7u);
  BOOST_CHECK_EQUAL(minor(loop.st_rdev), 9u);
  BOOST_CHECK_EQUAL(loop.st_gid, 6u);
  auto fifo = lstat_of(d / "run/fifo");
  BOOST_CHECK(S_ISFIFO(fifo.st_mode));
  BOOST_CHECK_EQUAL(fifo.st_mode & 07777, 0620u);

  BOOST_CHECK_EQUAL(xattr_of(d / "etc/attr", "user.berth.test"), "value");
  BOOST_CHECK_EQUAL(
      ::lgetxattr((d / "etc/attr").c_str(), "user.empty", nullptr, 0), 0);
  // "./" and "." are skipped: the destination keeps its own mode.
  BOOST_CHECK_EQUAL(lstat_of(d).st_mode & 07777, 0755u);
}

void unpack_full(int filter) {
  tmp_fixture t;
  ::chmod(t.dest.c_str(), 0755);
  auto big = random_bytes(3 * 1024 * 1024 + 17, 42);
  auto tar = make_tar(full_layer(big));
  t.write_archive(compress(tar, filter));
  BOOST_TEST_MESSAGE("filter " << filter << ": tar " << tar.size() << " bytes");

  unpack_stats stats;
  std::string err;
  auto fds = open_fds();
  BOOST_REQUIRE_MESSAGE(unpack_layer(t.archive, t.dest, stats, err), err);
  BOOST_CHECK_EQUAL(open_fds(), fds);
  BOOST_CHECK_EQUAL(stats.diff_id, reference_digest(tar));
  BOOST_CHECK_EQUAL(stats.size, 18u + 1u + big.size() + 1u);
  check_full_layer(t.dest, big);
  t.check_nothing_outside();
}

} // namespace

BOOST_AUTO_TEST_SUITE(digest)

BOOST_AUTO_TEST_CASE(known_vectors) {
  using berth::storage::sha256;
  sha256 empty;
  BOOST_CHECK_EQUAL(empty.hex(), "e3b0c44298fc1c149afbf4c8996fb924"
                                 "27ae41e4649b934ca495991b7852b855");
  sha256 abc;
  abc.update("a", 1);
  abc.update("bc", 2);
  BOOST_CHECK_EQUAL(abc.digest(), "sha256:ba7816bf8f01cfea414140de5dae2223"
                                  "b00361a396177a9cb410ff61f20015ad");
  BOOST_CHECK_EQUAL(abc.hex(), abc.digest().substr(7));
  auto big = random_bytes(1 << 20, 1);
  sha256 h;
  for (size_t i = 0; i < big.size(); i += 1000)
    h.update(big.data() + i, std::min<size_t>(1000, big.size() - i));
  BOOST_CHECK_EQUAL(h.digest(), reference_digest(big));
  sha256 moved{std::move(h)};
  BOOST_CHECK_EQUAL(moved.digest(), reference_digest(big));
}

BOOST_AUTO_TEST_CASE(files) {
  tmp_fixture t;
  auto data = random_bytes(200000, 2);
  t.write_archive(data);
  std::string digest, err;
  BOOST_REQUIRE_MESSAGE(berth::storage::sha256_file(t.archive, digest, err),
                        err);
  BOOST_CHECK_EQUAL(digest, reference_digest(data));
  BOOST_CHECK(!berth::storage::sha256_file(t.root / "missing", digest, err));
  BOOST_CHECK_MESSAGE(err.find("missing: no such file") != std::string::npos,
                      err);
}

BOOST_AUTO_TEST_CASE(validation) {
  using berth::storage::valid_digest;
  std::string hex(64, 'a');
  BOOST_CHECK(valid_digest("sha256:" + hex));
  BOOST_CHECK(valid_digest(reference_digest("x")));
  BOOST_CHECK(!valid_digest("sha256:" + hex.substr(1)));
  BOOST_CHECK(!valid_digest("sha256:" + hex + "a"));
  BOOST_CHECK(!valid_digest("sha256:" + std::string(64, 'A')));
  BOOST_CHECK(!valid_digest("sha256:" + std::string(63, 'a') + "g"));
  BOOST_CHECK(!valid_digest("sha512:" + hex));
  BOOST_CHECK(!valid_digest(hex));
  BOOST_CHECK(!valid_digest(""));
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(unpack)

BOOST_AUTO_TEST_CASE(uncompressed) {
  unpack_full(ARCHIVE_FILTER_NONE);
}

BOOST_AUTO_TEST_CASE(gzip) {
  unpack_full(ARCHIVE_FILTER_GZIP);
}

BOOST_AUTO_TEST_CASE(zstd) {
  unpack_full(ARCHIVE_FILTER_ZSTD);
}

BOOST_AUTO_TEST_CASE(from_fd) {
  tmp_fixture t;
  auto tar = make_tar({{.path = "a", .data = "hello"}});
  t.write_archive(compress(tar, ARCHIVE_FILTER_GZIP));
  int fd = ::open(t.archive.c_str(), O_RDONLY | O_CLOEXEC);
  BOOST_REQUIRE(fd >= 0);
  unpack_stats stats;
  std::string err;
  BOOST_CHECK_MESSAGE(unpack_layer(fd, t.dest, stats, err), err);
  ::close(fd);
  BOOST_CHECK_EQUAL(read_file(t.dest / "a"), "hello");
  BOOST_CHECK_EQUAL(stats.size, 5u);
  BOOST_CHECK_EQUAL(stats.diff_id, reference_digest(tar));
}

BOOST_AUTO_TEST_CASE(implicit_parents) {
  tmp_fixture t;
  std::string err;
  BOOST_REQUIRE_MESSAGE(t.unpack({{.path = "a/b/c/file", .data = "x"}}, err),
                        err);
  BOOST_CHECK_EQUAL(read_file(t.dest / "a/b/c/file"), "x");
  BOOST_CHECK_EQUAL(lstat_of(t.dest / "a/b").st_mode & 07777, 0755u);
}

BOOST_AUTO_TEST_CASE(whiteouts) {
  tmp_fixture t;
  std::string err;
  std::vector<spec> layer{
      {.path = "etc/", .type = AE_IFDIR, .mode = 0755},
      {.path = "etc/.wh.motd"},
      {.path = "opaque/", .type = AE_IFDIR, .mode = 0755},
      {.path = "opaque/.wh..wh..opq"},
      {.path = "opaque/kept", .data = "k"},
      {.path = "implicit/.wh..wh..opq"},
      {.path = ".wh..wh.aufs"},
      {.path = ".wh..wh.orph/", .type = AE_IFDIR},
      {.path = ".wh..wh.orph/file", .data = "x"},
      {.path = "keep/.wh..wh.meta"},
  };
  BOOST_REQUIRE_MESSAGE(t.unpack(layer, err, ARCHIVE_FILTER_GZIP), err);
  auto wh = lstat_of(t.dest / "etc/motd");
  BOOST_CHECK(S_ISCHR(wh.st_mode));
  BOOST_CHECK_EQUAL(wh.st_rdev, makedev(0, 0));
  BOOST_CHECK(!exists_no_follow(t.dest / "etc/.wh.motd"));
  BOOST_CHECK_EQUAL(xattr_of(t.dest / "opaque", "trusted.overlay.opaque"), "y");
  BOOST_CHECK(!exists_no_follow(t.dest / "opaque/.wh..wh..opq"));
  BOOST_CHECK_EQUAL(read_file(t.dest / "opaque/kept"), "k");
  BOOST_CHECK_EQUAL(xattr_of(t.dest / "implicit", "trusted.overlay.opaque"),
                    "y");
  BOOST_CHECK(!exists_no_follow(t.dest / ".wh..wh.aufs"));
  BOOST_CHECK(!exists_no_follow(t.dest / ".wh..wh.orph"));
  BOOST_CHECK(!exists_no_follow(t.dest / "keep/.wh..wh.meta"));
}

BOOST_AUTO_TEST_CASE(whiteout_replaces_earlier_entry) {
  tmp_fixture t;
  std::string err;
  BOOST_REQUIRE_MESSAGE(t.unpack({{.path = "d/sub/file", .data = "x"},
                                  {.path = "f", .data = "y"},
                                  {.path = ".wh.d"},
                                  {.path = ".wh.f"}},
                                 err),
                        err);
  BOOST_CHECK(S_ISCHR(lstat_of(t.dest / "d").st_mode));
  BOOST_CHECK(S_ISCHR(lstat_of(t.dest / "f").st_mode));
}

BOOST_AUTO_TEST_CASE(aufs_hardlinks) {
  tmp_fixture t;
  std::string err;
  BOOST_REQUIRE_MESSAGE(
      t.unpack({{.path = ".wh..wh.plnk/", .type = AE_IFDIR, .mode = 0700},
                {.path = ".wh..wh.plnk/12.34", .data = "shared"},
                {.path = "bin/a", .hardlink = ".wh..wh.plnk/12.34"},
                {.path = "bin/b", .hardlink = ".wh..wh.plnk/12.34"}},
               err),
      err);
  BOOST_CHECK(!exists_no_follow(t.dest / ".wh..wh.plnk"));
  BOOST_CHECK_EQUAL(read_file(t.dest / "bin/a"), "shared");
  BOOST_CHECK_EQUAL(lstat_of(t.dest / "bin/b").st_nlink, 2u);
}

BOOST_AUTO_TEST_CASE(replacing_entries) {
  tmp_fixture t;
  std::string err;
  std::vector<spec> layer{
      {.path = "f2d", .data = "file"},
      {.path = "f2d/", .type = AE_IFDIR, .mode = 0711},
      {.path = "d2f/sub/x", .data = "x"},
      {.path = "d2f", .data = "now a file"},
      {.path = "merge/", .type = AE_IFDIR, .mode = 0700},
      {.path = "merge/old", .data = "o"},
      {.path = "merge/", .type = AE_IFDIR, .mode = 0755, .uid = 5},
      {.path = "merge/new", .data = "n"},
      {.path = "l2f", .type = AE_IFLNK, .symlink = "/etc/passwd"},
      {.path = "l2f", .data = "plain"},
      {.path = "f2l", .data = "plain"},
      {.path = "f2l", .type = AE_IFLNK, .symlink = "target"},
      {.path = "f2f", .mode = 0600, .data = "first"},
      {.path = "f2f", .mode = 0644, .data = "second"},
      {.path = "d2l/", .type = AE_IFDIR},
      {.path = "d2l", .type = AE_IFLNK, .symlink = "f2f"},
  };
  BOOST_REQUIRE_MESSAGE(t.unpack(layer, err), err);
  BOOST_CHECK(S_ISDIR(lstat_of(t.dest / "f2d").st_mode));
  BOOST_CHECK_EQUAL(lstat_of(t.dest / "f2d").st_mode & 07777, 0711u);
  BOOST_CHECK_EQUAL(read_file(t.dest / "d2f"), "now a file");
  BOOST_CHECK_EQUAL(read_file(t.dest / "merge/old"), "o");
  BOOST_CHECK_EQUAL(read_file(t.dest / "merge/new"), "n");
  BOOST_CHECK_EQUAL(lstat_of(t.dest / "merge").st_mode & 07777, 0755u);
  BOOST_CHECK_EQUAL(lstat_of(t.dest / "merge").st_uid, 5u);
  BOOST_CHECK(S_ISREG(lstat_of(t.dest / "l2f").st_mode));
  BOOST_CHECK_EQUAL(read_file(t.dest / "l2f"), "plain");
  BOOST_CHECK(S_ISLNK(lstat_of(t.dest / "f2l").st_mode));
  BOOST_CHECK_EQUAL(read_file(t.dest / "f2f"), "second");
  BOOST_CHECK_EQUAL(lstat_of(t.dest / "f2f").st_mode & 07777, 0644u);
  BOOST_CHECK(S_ISLNK(lstat_of(t.dest / "d2l").st_mode));
}

// trusted.overlay.* from the archive is dropped; user.* where the kernel
// forbids it (symlinks, fifos) too; both without failing the layer.
BOOST_AUTO_TEST_CASE(xattrs_skipped) {
  tmp_fixture t;
  std::string err;
  BOOST_REQUIRE_MESSAGE(
      t.unpack(
          {{.path = "d/",
            .type = AE_IFDIR,
            .xattrs = {{"trusted.overlay.redirect", "/etc"}, {"user.ok", "1"}}},
           {.path = "s",
            .type = AE_IFLNK,
            .symlink = "d",
            .xattrs = {{"user.no", "1"}, {"trusted.yes", "1"}}},
           {.path = "p", .type = AE_IFIFO, .xattrs = {{"user.no", "1"}}}},
          err),
      err);
  BOOST_CHECK_EQUAL(xattr_of(t.dest / "s", "trusted.yes"), "1");
  BOOST_CHECK_EQUAL(xattr_of(t.dest / "d", "trusted.overlay.redirect"), "");
  BOOST_CHECK_EQUAL(xattr_of(t.dest / "d", "user.ok"), "1");
}

// Pax names are UTF-8; the unpacking side runs in the C locale, as the
// daemon does. (libarchive's pax writer needs a UTF-8 locale for them.)
BOOST_AUTO_TEST_CASE(utf8_names) {
  tmp_fixture t;
  std::string name = "caf\xc3\xa9/\xe2\x9c\x93";
  BOOST_REQUIRE(setlocale(LC_CTYPE, "C.UTF-8"));
  auto tar = make_tar({{.path = name, .data = "u"},
                       {.path = "s", .type = AE_IFLNK, .symlink = name},
                       {.path = "h", .hardlink = name}});
  setlocale(LC_CTYPE, "C");
  t.write_archive(tar);
  unpack_stats stats;
  std::string err;
  BOOST_REQUIRE_MESSAGE(unpack_layer(t.archive, t.dest, stats, err), err);
  BOOST_CHECK_EQUAL(read_file(t.dest / name), "u");
  BOOST_CHECK_EQUAL(fs::read_symlink(t.dest / "s").string(), name);
  BOOST_CHECK_EQUAL(lstat_of(t.dest / "h").st_nlink, 2u);
}

// GNU and ustar archives too: long names, raw (non-UTF-8) name bytes.
BOOST_AUTO_TEST_CASE(other_tar_formats) {
  // Over 100 bytes: GNU's long name, ustar's prefix field.
  std::string long_name = std::string(60, 'p') + "/" + std::string(90, 'n');
  for (int format : {ARCHIVE_FORMAT_TAR_GNUTAR, ARCHIVE_FORMAT_TAR_USTAR}) {
    tmp_fixture t;
    auto tar = make_tar(
        {{.path = long_name, .data = "long"},
         {.path = "lat\xe9", .mode = 0640, .data = "l1"},
         {.path = "s", .type = AE_IFLNK, .symlink = "lat\xe9"},
         {.path = "d/", .type = AE_IFDIR, .mode = 0711, .mtime = 1234567890}},
        format);
    t.write_archive(compress(tar, ARCHIVE_FILTER_GZIP));
    unpack_stats stats;
    std::string err;
    BOOST_REQUIRE_MESSAGE(unpack_layer(t.archive, t.dest, stats, err), err);
    BOOST_CHECK_EQUAL(read_file(t.dest / long_name), "long");
    BOOST_CHECK_EQUAL(read_file(t.dest / "lat\xe9"), "l1");
    BOOST_CHECK_EQUAL(fs::read_symlink(t.dest / "s").string(), "lat\xe9");
    BOOST_CHECK_EQUAL(lstat_of(t.dest / "d").st_mtim.tv_sec, 1234567890);
    BOOST_CHECK_EQUAL(stats.diff_id, reference_digest(tar));
  }
}

BOOST_AUTO_TEST_SUITE_END()

BOOST_AUTO_TEST_SUITE(hostile)

BOOST_AUTO_TEST_CASE(dot_dot_and_absolute_paths) {
  tmp_fixture t;
  std::string err;
  BOOST_REQUIRE_MESSAGE(t.unpack({{.path = "../escape", .data = "1"},
                                  {.path = "/abs", .data = "2"},
                                  {.path = "a/../../x", .data = "3"},
                                  {.path = "../../../../tmp/deep", .data = "4"},
                                  {.path = "/", .type = AE_IFDIR},
                                  {.path = "..", .type = AE_IFDIR}},
                                 err),
                        err);
  BOOST_CHECK_EQUAL(read_file(t.dest / "escape"), "1");
  BOOST_CHECK_EQUAL(read_file(t.dest / "abs"), "2");
  BOOST_CHECK_EQUAL(read_file(t.dest / "x"), "3");
  BOOST_CHECK_EQUAL(read_file(t.dest / "tmp/deep"), "4");
  BOOST_CHECK(!exists_no_follow("/abs"));
  t.check_nothing_outside();
}

BOOST_AUTO_TEST_CASE(symlink_to_host_etc) {
  auto before = identity("/etc/passwd");
  for (bool with_etc : {false, true}) {
    tmp_fixture t;
    std::vector<spec> layer;
    if (with_etc)
      layer.push_back({.path = "etc/", .type = AE_IFDIR, .mode = 0755});
    layer.push_back({.path = "l", .type = AE_IFLNK, .symlink = "/etc"});
    layer.push_back({.path = "l/passwd", .data = "owned"});
    layer.push_back({.path = "l/sub/deeper", .data = "d"});
    std::string err;
    BOOST_REQUIRE_MESSAGE(t.unpack(layer, err), err);
    BOOST_CHECK_EQUAL(read_file(t.dest / "etc/passwd"), "owned");
    BOOST_CHECK_EQUAL(read_file(t.dest / "etc/sub/deeper"), "d");
    BOOST_CHECK(S_ISLNK(lstat_of(t.dest / "l").st_mode));
    BOOST_CHECK(identity("/etc/passwd") == before);
    BOOST_CHECK(!exists_no_follow("/etc/sub/deeper"));
    t.check_nothing_outside();
  }
}

BOOST_AUTO_TEST_CASE(symlink_climbing_up) {
  tmp_fixture t;
  std::string err;
  BOOST_REQUIRE_MESSAGE(
      t.unpack({{.path = "a/b/", .type = AE_IFDIR},
                {.path = "a/b/up", .type = AE_IFLNK, .symlink = "../../.."},
                {.path = "a/b/up/x", .data = "x"},
                {.path = "up", .type = AE_IFLNK, .symlink = "../../.."},
                {.path = "up/y", .data = "y"},
                {.path = "up/../z", .data = "z"},
                {.path = "rel", .type = AE_IFLNK, .symlink = "../layer.tar"},
                {.path = "rel", .data = "replaced, not followed"}},
               err),
      err);
  BOOST_CHECK_EQUAL(read_file(t.dest / "x"), "x");
  BOOST_CHECK_EQUAL(read_file(t.dest / "y"), "y");
  BOOST_CHECK_EQUAL(read_file(t.dest / "z"), "z");
  BOOST_CHECK(S_ISREG(lstat_of(t.dest / "rel").st_mode));
  t.check_nothing_outside();
}

BOOST_AUTO_TEST_CASE(symlink_chain_and_loop) {
  tmp_fixture t;
  std::string err;
  BOOST_REQUIRE_MESSAGE(
      t.unpack({{.path = "one", .type = AE_IFLNK, .symlink = "two/in"},
                {.path = "two", .type = AE_IFLNK, .symlink = "/../../root"},
                {.path = "one/file", .data = "f"}},
               err),
      err);
  BOOST_CHECK_EQUAL(read_file(t.dest / "root/in/file"), "f");
  BOOST_CHECK(!exists_no_follow(t.root / "root"));

  tmp_fixture u;
  BOOST_CHECK(!u.unpack({{.path = "loop", .type = AE_IFLNK, .symlink = "loop"},
                         {.path = "loop/x", .data = "x"}},
                        err));
  BOOST_CHECK_MESSAGE(err.find("entry loop/x") != std::string::npos, err);
  u.check_nothing_outside();
}

// A symlink naming a host directory by its absolute path: later entries
// neither change that directory nor write into it.
BOOST_AUTO_TEST_CASE(symlink_to_host_path) {
  tmp_fixture t;
  auto host = t.root.string();
  auto before = lstat_of(t.root);
  std::string err;
  BOOST_REQUIRE_MESSAGE(
      t.unpack({{.path = "d", .type = AE_IFLNK, .symlink = host},
                {.path = "d/",
                 .type = AE_IFDIR,
                 .mode = 0700,
                 .uid = 9,
                 .mtime = 1000},
                {.path = "d/file", .data = "in d"},
                {.path = "e", .type = AE_IFLNK, .symlink = host},
                {.path = "e/file", .data = "in e"},
                {.path = "e/.wh..wh..opq"},
                {.path = "e/x",
                 .type = AE_IFDIR,
                 .mode = 0700,
                 .xattrs = {{"user.x", "1"}}}},
               err),
      err);
  BOOST_CHECK(S_ISDIR(lstat_of(t.dest / "d").st_mode));
  BOOST_CHECK_EQUAL(read_file(t.dest / "d/file"), "in d");
  BOOST_CHECK_EQUAL(read_file(t.dest / host.substr(1) / "file"), "in e");
  BOOST_CHECK_EQUAL(xattr_of(t.dest / host.substr(1), "trusted.overlay.opaque"),
                    "y");
  BOOST_CHECK_EQUAL(xattr_of(t.dest / host.substr(1) / "x", "user.x"), "1");
  auto after = lstat_of(t.root);
  BOOST_CHECK_EQUAL(after.st_mode, before.st_mode);
  BOOST_CHECK_EQUAL(after.st_uid, before.st_uid);
  BOOST_CHECK_EQUAL(after.st_mtim.tv_sec, before.st_mtim.tv_sec);
  BOOST_CHECK_EQUAL(xattr_of(t.root, "trusted.overlay.opaque"), "");
  t.check_nothing_outside();
}

BOOST_AUTO_TEST_CASE(hardlink_to_host_file) {
  auto before = identity("/etc/hostname");
  {
    // No etc/hostname in the layer: the link must fail, not reach the host.
    tmp_fixture t;
    std::string err;
    BOOST_CHECK(!t.unpack({{.path = "h", .hardlink = "/etc/hostname"}}, err));
    BOOST_CHECK_MESSAGE(err.find("entry h: hard link target etc/hostname") !=
                            std::string::npos,
                        err);
    BOOST_CHECK(identity("/etc/hostname") == before);
    BOOST_CHECK(!exists_no_follow(t.dest / "h"));
    t.check_nothing_outside();
  }
  {
    // With it, the link is to the layer's own file, through ../ and a
    // symlink to /etc as well.
    tmp_fixture t;
    std::string err;
    BOOST_REQUIRE_MESSAGE(
        t.unpack({{.path = "etc/hostname", .data = "layer"},
                  {.path = "l", .type = AE_IFLNK, .symlink = "/etc"},
                  {.path = "h1", .hardlink = "/etc/hostname"},
                  {.path = "h2", .hardlink = "../../etc/hostname"},
                  {.path = "h3", .hardlink = "l/hostname"}},
                 err),
        err);
    auto own = lstat_of(t.dest / "etc/hostname");
    BOOST_CHECK_EQUAL(own.st_nlink, 4u);
    for (auto* h : {"h1", "h2", "h3"})
      BOOST_CHECK_EQUAL(lstat_of(t.dest / h).st_ino, own.st_ino);
    BOOST_CHECK(identity("/etc/hostname") == before);
    t.check_nothing_outside();
  }
  {
    // A hard link to a symlink that points at the host file links the
    // symlink itself.
    tmp_fixture t;
    std::string err;
    BOOST_REQUIRE_MESSAGE(
        t.unpack({{.path = "s", .type = AE_IFLNK, .symlink = "/etc/hostname"},
                  {.path = "h", .hardlink = "s"}},
                 err),
        err);
    BOOST_CHECK(S_ISLNK(lstat_of(t.dest / "h").st_mode));
    BOOST_CHECK_EQUAL(lstat_of(t.dest / "s").st_nlink, 2u);
    BOOST_CHECK(identity("/etc/hostname") == before);
  }
}

BOOST_AUTO_TEST_CASE(bad_whiteout_names) {
  for (auto* name : {".wh...", ".wh..", ".wh.", "a/.wh..."}) {
    tmp_fixture t;
    std::string err;
    BOOST_CHECK(
        !t.unpack({{.path = "a/", .type = AE_IFDIR}, {.path = name}}, err));
    BOOST_CHECK_MESSAGE(err.find("whiteout") != std::string::npos, err);
    BOOST_CHECK(S_ISDIR(lstat_of(t.dest / "a").st_mode));
    t.check_nothing_outside();
  }
}

BOOST_AUTO_TEST_CASE(truncated_archives) {
  for (int filter :
       {ARCHIVE_FILTER_GZIP, ARCHIVE_FILTER_ZSTD, ARCHIVE_FILTER_NONE}) {
    tmp_fixture t;
    auto packed =
        compress(make_tar({{.path = "a", .data = random_bytes(100000, 3)},
                           {.path = "b", .data = "b"}}),
                 filter);
    t.write_archive(packed.substr(0, packed.size() / 2));
    unpack_stats stats;
    std::string err;
    BOOST_CHECK(!unpack_layer(t.archive, t.dest, stats, err));
    BOOST_TEST_MESSAGE("filter " << filter << ": " << err);
    BOOST_CHECK(err.starts_with("unpacking layer: "));
  }
  // Cut in the gzip trailer, after all of the tar: libarchive does not check
  // the trailer, so this may pass, but then only with the full content
  // (the blob digest is what catches it).
  tmp_fixture t;
  auto tar = make_tar({{.path = "a", .data = "a"}});
  auto packed = compress(tar, ARCHIVE_FILTER_GZIP);
  t.write_archive(packed.substr(0, packed.size() - 4));
  unpack_stats stats;
  std::string err;
  if (unpack_layer(t.archive, t.dest, stats, err))
    BOOST_CHECK_EQUAL(stats.diff_id, reference_digest(tar));
  BOOST_TEST_MESSAGE("gzip trailer: " << err);
}

// gzip allows members one after another; a layer may be written that way.
// Whatever follows the last member without being one is ignored.
BOOST_AUTO_TEST_CASE(gzip_members_and_trailing_bytes) {
  auto tar = make_tar({{.path = "a", .data = random_bytes(300000, 5)},
                       {.path = "b", .data = random_bytes(70000, 6)}});
  auto half = tar.size() / 2;
  auto members = compress(tar.substr(0, half), ARCHIVE_FILTER_GZIP) +
                 compress(tar.substr(half), ARCHIVE_FILTER_GZIP);
  for (auto& bytes : {members, members + std::string(1000, '\0')}) {
    tmp_fixture t;
    t.write_archive(bytes);
    unpack_stats stats;
    std::string err;
    BOOST_TEST_REQUIRE(unpack_layer(t.archive, t.dest, stats, err), err);
    BOOST_CHECK_EQUAL(stats.diff_id, reference_digest(tar));
    BOOST_CHECK_EQUAL(fs::file_size(t.dest / "b"), 70000u);
  }
}

// The gzip trailer's CRC is checked: a layer whose content does not match it
// is refused even though it inflates.
BOOST_AUTO_TEST_CASE(gzip_checksum) {
  auto packed = compress(make_tar({{.path = "a", .data = "abc"}}),
                         ARCHIVE_FILTER_GZIP);
  packed[packed.size() - 8] ^= 0x55; // the CRC-32 comes before the size
  tmp_fixture t;
  t.write_archive(packed);
  unpack_stats stats;
  std::string err;
  BOOST_CHECK(!unpack_layer(t.archive, t.dest, stats, err));
  BOOST_CHECK_MESSAGE(err.find("gzip: checksum mismatch") != std::string::npos,
                      err);
}

// A layer read from a pipe (as a pull feeds it while the blob downloads)
// unpacks the same, and the whole pipe is read: the writer never blocks on
// bytes after the archive.
BOOST_AUTO_TEST_CASE(from_a_pipe) {
  std::signal(SIGPIPE, SIG_IGN); // a failed unpack shows as a failed check
  auto tar = make_tar({{.path = "a", .data = random_bytes(2000000, 7)},
                       {.path = "d/b", .data = "b"}});
  for (int filter : {ARCHIVE_FILTER_GZIP, ARCHIVE_FILTER_ZSTD,
                     ARCHIVE_FILTER_NONE}) {
    // Bytes after the archive: gzip and tar ignore them (libarchive's zstd
    // reader does not).
    auto bytes = compress(tar, filter);
    if (filter != ARCHIVE_FILTER_ZSTD)
      bytes += std::string(200000, '\0');
    tmp_fixture t;
    int p[2];
    BOOST_TEST_REQUIRE(pipe2(p, O_CLOEXEC) == 0);
    bool written = false;
    std::thread writer{[&] {
      written = write(p[1], bytes.data(), bytes.size()) ==
                ssize_t(bytes.size());
      close(p[1]);
    }};
    unpack_stats stats;
    std::string err;
    bool ok = unpack_layer(p[0], t.dest.string(), stats, err);
    close(p[0]);
    writer.join();
    BOOST_TEST_REQUIRE(ok, "filter " << filter << ": " << err);
    BOOST_CHECK(written);
    // Uncompressed, the trailing bytes are part of the stream (of its diff
    // ID) too.
    BOOST_CHECK_EQUAL(stats.diff_id, reference_digest(
        filter == ARCHIVE_FILTER_NONE ? bytes : tar));
    BOOST_CHECK_EQUAL(fs::file_size(t.dest / "a"), 2000000u);
  }
}

BOOST_AUTO_TEST_CASE(garbage) {
  for (auto& bytes : {random_bytes(5000, 4), std::string{"not a tar"},
                      std::string{}, std::string{"\x1f\x8b garbage"}}) {
    tmp_fixture t;
    t.write_archive(bytes);
    unpack_stats stats;
    std::string err;
    BOOST_CHECK(!unpack_layer(t.archive, t.dest, stats, err));
    BOOST_TEST_MESSAGE(err);
    BOOST_CHECK(err.starts_with("unpacking layer"));
    BOOST_CHECK(fs::is_empty(t.dest));
  }
}

BOOST_AUTO_TEST_CASE(errors_name_the_entry) {
  tmp_fixture t;
  std::string err;
  BOOST_CHECK(!t.unpack(
      {{.path = "f", .data = "x"}, {.path = "f/x", .data = "y"}}, err));
  BOOST_CHECK_EQUAL(err, "unpacking layer: entry f/x: opening its "
                         "directory: not a directory");
  unpack_stats stats;
  BOOST_CHECK(!unpack_layer(t.archive, t.root / "none", stats, err));
  BOOST_CHECK_MESSAGE(err.ends_with("none: no such file or directory"), err);
  BOOST_CHECK(!unpack_layer(t.root / "none", t.dest, stats, err));
  BOOST_CHECK_MESSAGE(err.ends_with("none: no such file or directory"), err);
}

// A failed write (here: over the file size limit, as a full disk would)
// names the entry and keeps errno's text.
BOOST_AUTO_TEST_CASE(write_errors_name_the_entry) {
  tmp_fixture t;
  t.write_archive(
      make_tar({{.path = "usr/bin/x", .data = random_bytes(1 << 20, 5)}}));
  struct rlimit saved;
  BOOST_REQUIRE(getrlimit(RLIMIT_FSIZE, &saved) == 0);
  auto* old_handler = signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 4096;
  BOOST_REQUIRE(setrlimit(RLIMIT_FSIZE, &small) == 0);
  unpack_stats stats;
  std::string err;
  bool ok = unpack_layer(t.archive, t.dest, stats, err);
  setrlimit(RLIMIT_FSIZE, &saved);
  signal(SIGXFSZ, old_handler);
  BOOST_CHECK(!ok);
  BOOST_CHECK_EQUAL(err, "unpacking layer: entry usr/bin/x: file too large");
}

BOOST_AUTO_TEST_SUITE_END()
