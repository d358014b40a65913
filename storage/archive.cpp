// Loading, saving and importing images as files. Every file read from an
// archive is opened with openat2(RESOLVE_IN_ROOT) below the directory it
// was unpacked into; every output is built under a temporary name.
#include "storage/archive.hpp"

#include "protocol/json.hpp"
#include "protocol/unique_fd.hpp"

#include "storage/archive_handles.hpp"
#include "storage/digest.hpp"
#include "storage/errno_text.hpp"
#include "storage/gzip.hpp"
#include "storage/layer.hpp"
#include "storage/open_at.hpp"
#include "storage/reference.hpp"
#include "storage/registry.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <simdjson.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <ctime>
#include <dirent.h>
#include <fcntl.h>
#include <filesystem>
#include <map>
#include <memory>
#include <sys/stat.h>
#include <unistd.h>
#include <utility>

namespace berth::storage {

namespace {

namespace fs = std::filesystem;

constexpr std::string_view oci_config_type =
    "application/vnd.oci.image.config.v1+json";
constexpr std::string_view docker_config_type =
    "application/vnd.docker.container.image.v1+json";
constexpr std::string_view oci_layer_tar =
    "application/vnd.oci.image.layer.v1.tar";
constexpr std::string_view oci_layer_gzip =
    "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr std::string_view oci_layer_zstd =
    "application/vnd.oci.image.layer.v1.tar+zstd";
constexpr std::string_view oci_foreign_gzip =
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip";
constexpr std::string_view docker_layer_tar =
    "application/vnd.docker.image.rootfs.diff.tar";
constexpr std::string_view docker_layer_gzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
constexpr std::string_view docker_foreign_gzip =
    "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip";
constexpr std::string_view ref_name_annotation =
    "org.opencontainers.image.ref.name";
constexpr std::string_view dir_version = "Directory Transport Version: 1.1\n";
constexpr std::string_view oci_layout_file =
    "{\"imageLayoutVersion\":\"1.0.0\"}";

/// The largest JSON document (index, manifest, config) read into memory.
constexpr size_t max_json_size = 32 << 20;
constexpr size_t copy_block = 1 << 20;

// ---------------------------------------------------------------------------
// Files

/// A temporary directory removed when this goes out of scope.
class temp_dir {
public:
  temp_dir() = default;
  explicit temp_dir(std::string path) : path_(std::move(path)) {}
  ~temp_dir() { remove(); }
  temp_dir(temp_dir&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  temp_dir& operator=(temp_dir&& other) noexcept {
    if (this != &other) {
      remove();
      path_ = std::exchange(other.path_, {});
    }
    return *this;
  }
  const std::string& path() const { return path_; }

private:
  void remove() {
    if (!path_.empty()) {
      std::error_code ec;
      fs::remove_all(path_, ec);
    }
  }

  std::string path_;
};

// Opens the regular file `rel` below `root` for reading; anything else (a
// device, a fifo, a directory) is refused.
unique_fd open_regular(int root, const std::string& rel, std::string& err) {
  unique_fd fd{open_in_root(root, rel, O_RDONLY | O_NONBLOCK)};
  if (!fd) {
    err = rel + ": " + errno_text(errno);
    return unique_fd{};
  }
  struct stat st;
  if (fstat(fd.get(), &st) < 0 || !S_ISREG(st.st_mode)) {
    err = rel + ": not a regular file";
    return unique_fd{};
  }
  return fd;
}

bool exists_in(int root, const std::string& rel) {
  unique_fd fd{open_in_root(root, rel, O_PATH)};
  return bool(fd);
}

bool read_all(int fd, size_t max, std::string& out, std::string& err) {
  out.clear();
  char buf[65536];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      err = errno_text(errno);
      return false;
    }
    if (n == 0)
      return true;
    out.append(buf, size_t(n));
    if (out.size() > max) {
      err = "larger than " + std::to_string(max) + " bytes";
      return false;
    }
  }
}

bool read_json_in(int root, const std::string& rel, std::string& out,
                  std::string& err) {
  auto fd = open_regular(root, rel, err);
  if (!fd)
    return false;
  if (!read_all(fd.get(), max_json_size, out, err)) {
    err = rel + ": " + err;
    return false;
  }
  return true;
}

bool write_all(int fd, const char* data, size_t size) {
  while (size > 0) {
    auto n = ::write(fd, data, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    data += n;
    size -= size_t(n);
  }
  return true;
}

bool write_file(const std::string& path, std::string_view data,
                std::string& err) {
  unique_fd fd{
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)};
  if (!fd || !write_all(fd.get(), data.data(), data.size())) {
    err = "writing " + path + ": " + errno_text(errno);
    return false;
  }
  return true;
}

// Copies what is left of `in` to `out` (when >= 0), hashing it; `total`
// only feeds `progress`, which may cancel.
bool copy_hashed(int in, int out, std::string& digest, uint64_t total,
                 const transfer_progress& progress, std::string& err,
                 const blob_tap* tap = nullptr) {
  sha256 h;
  std::unique_ptr<char[]> buf{new char[copy_block]};
  uint64_t done = 0;
  for (;;) {
    auto n = ::read(in, buf.get(), copy_block);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      err = "reading: " + errno_text(errno);
      return false;
    }
    if (n == 0)
      break;
    h.update(buf.get(), size_t(n));
    if (out >= 0 && !write_all(out, buf.get(), size_t(n))) {
      err = "writing: " + errno_text(errno);
      return false;
    }
    if (tap && tap->chunk)
      tap->chunk(buf.get(), size_t(n));
    done += uint64_t(n);
    if (progress && !progress(done, total)) {
      err = "cancelled";
      return false;
    }
  }
  digest = h.digest();
  return true;
}

std::string hex_of(const std::string& digest) {
  return digest.substr(digest.find(':') + 1);
}

std::string digest_of(std::string_view text) {
  sha256 h;
  h.update(text.data(), text.size());
  return h.digest();
}

enum class compression { none, gzip, zstd, bzip2, xz };

compression detect_compression(int fd) {
  unsigned char m[6] = {};
  auto n = pread(fd, m, sizeof m, 0);
  if (n >= 2 && m[0] == 0x1f && m[1] == 0x8b)
    return compression::gzip;
  if (n >= 4 && m[0] == 0x28 && m[1] == 0xb5 && m[2] == 0x2f && m[3] == 0xfd)
    return compression::zstd;
  if (n >= 3 && m[0] == 'B' && m[1] == 'Z' && m[2] == 'h')
    return compression::bzip2;
  if (n >= 6 && m[0] == 0xfd && m[1] == '7' && m[2] == 'z' && m[3] == 'X' &&
      m[4] == 'Z' && m[5] == 0)
    return compression::xz;
  return compression::none;
}

// Undoes whatever compression `in` has (from its start), writing the
// stream to `out` when >= 0; `digest` is the uncompressed stream's.
bool decompress(int in, int out, std::string& digest, std::string& err) {
  archive_reader a;
  if (lseek(in, 0, SEEK_SET) < 0)
    err = "unreadable input";
  else
    a = open_decompressing(in, 1 << 16, err, "unreadable input");
  if (!a) {
    err = "decompressing: " + err;
    return false;
  }
  sha256 h;
  for (;;) {
    const void* buf = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    auto rc = archive_read_data_block(a.get(), &buf, &size, &offset);
    if (rc == ARCHIVE_EOF)
      break;
    if (rc != ARCHIVE_OK && rc != ARCHIVE_WARN) {
      err = "decompressing: " + archive_error(a.get(), "corrupt input");
      return false;
    }
    h.update(buf, size);
    if (out >= 0 && !write_all(out, static_cast<const char*>(buf), size)) {
      err = "writing: " + errno_text(errno);
      return false;
    }
  }
  digest = h.digest();
  return true;
}

// ---------------------------------------------------------------------------
// JSON

std::string quote(std::string_view s) {
  return json::quote(s);
}

std::string string_array(const std::vector<std::string>& v) {
  std::string out = "[";
  for (size_t i = 0; i < v.size(); ++i)
    out += (i ? "," : "") + quote(v[i]);
  return out + "]";
}

// {"a":{},"b":{}}: how the config writes ports and volumes.
std::string string_set(const std::vector<std::string>& v) {
  std::string out = "{";
  for (size_t i = 0; i < v.size(); ++i)
    out += (i ? "," : "") + quote(v[i]) + ":{}";
  return out + "}";
}

std::string str(simdjson::dom::element e, const char* key) {
  std::string_view v;
  return e[key].get(v) == simdjson::SUCCESS ? std::string{v} : std::string{};
}

std::vector<std::string> strings(simdjson::dom::element e, const char* key) {
  std::vector<std::string> out;
  simdjson::dom::array a;
  if (e[key].get(a) == simdjson::SUCCESS)
    for (auto item : a)
      if (item.is_string())
        out.emplace_back(std::string_view(item));
  return out;
}

std::string rfc3339_now() {
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char frac[16];
  std::snprintf(frac, sizeof frac, ".%09ldZ", ts.tv_nsec);
  return std::string{buf} + frac;
}

/// A blob as a manifest describes it, and where its bytes are.
struct blob_desc {
  std::string media_type;
  std::string digest;
  int64_t size = 0;
  std::string file;
};

std::string render_descriptor(const blob_desc& d) {
  return "{\"mediaType\":" + quote(d.media_type) +
         ",\"digest\":" + quote(d.digest) +
         ",\"size\":" + std::to_string(d.size) + "}";
}

std::string render_manifest(std::string_view type, const blob_desc& config,
                            const std::vector<blob_desc>& layers) {
  std::string out = "{\"schemaVersion\":2,\"mediaType\":" + quote(type) +
                    ",\"config\":" + render_descriptor(config) +
                    ",\"layers\":[";
  for (size_t i = 0; i < layers.size(); ++i)
    out += (i ? "," : "") + render_descriptor(layers[i]);
  return out + "]}";
}

// ---------------------------------------------------------------------------
// Reading archives

/// A directory holding blobs: an OCI layout (blobs/sha256/<hex>), a "dir:"
/// directory (<hex>) or an unpacked docker-archive (paths from its
/// manifest.json, registered with `add`).
class directory_source : public blob_source {
public:
  enum class layout { oci, dir, listed };

  directory_source(int root, layout l) : root_(root), layout_(l) {}

  void add(const std::string& digest, const std::string& rel) {
    paths_.emplace(digest, rel);
  }

  std::string path_of(const std::string& digest) const {
    if (auto it = paths_.find(digest); it != paths_.end())
      return it->second;
    switch (layout_) {
    case layout::oci:
      return "blobs/sha256/" + hex_of(digest);
    case layout::dir:
      return hex_of(digest);
    case layout::listed:
      break;
    }
    return {};
  }

  bool fetch_blob(const std::string& digest, int fd,
                  const transfer_progress& progress, std::string& err,
                  const blob_tap* tap) override {
    auto rel = path_of(digest);
    if (rel.empty() || !valid_digest(digest)) {
      err = "reading blob " + digest + ": not in the archive";
      return false;
    }
    auto in = open_regular(root_, rel, err);
    struct stat st;
    if (!in || fstat(in.get(), &st) < 0) {
      err = "reading blob " + digest + ": " + err;
      return false;
    }
    std::string got;
    if (!copy_hashed(in.get(), fd, got, uint64_t(st.st_size), progress, err,
                     tap)) {
      err = "copying blob " + digest + ": " + err;
      return false;
    }
    if (got != digest) {
      err = "blob " + digest + " in the archive has content " + got;
      return false;
    }
    return true;
  }

private:
  int root_;
  layout layout_;
  std::map<std::string, std::string> paths_;
};

/// One image found in an archive.
struct found_image {
  manifest m;
  std::vector<std::string> names; ///< full references
  std::vector<std::string> refs;  ///< as the archive writes them
};

// Reads a blob of an OCI layout into memory, checked against its digest.
bool read_oci_blob(int root, const std::string& digest, std::string& out,
                   std::string& err) {
  if (!valid_digest(digest)) {
    err = "index.json names an invalid digest \"" + digest + "\"";
    return false;
  }
  if (!read_json_in(root, "blobs/sha256/" + hex_of(digest), out, err))
    return false;
  if (digest_of(out) != digest) {
    err = "blob " + digest + " in the layout has other content";
    return false;
  }
  return true;
}

void add_found(std::vector<found_image>& found, manifest m,
               const std::string& ref) {
  auto it = std::find_if(found.begin(), found.end(),
                         [&](auto& f) { return f.m.digest == m.digest; });
  if (it == found.end()) {
    found.push_back({std::move(m), {}, {}});
    it = found.end() - 1;
  }
  std::string name;
  if (!ref.empty()) {
    it->refs.push_back(ref);
    if (archive_name(ref, name) &&
        std::find(it->names.begin(), it->names.end(), name) == it->names.end())
      it->names.push_back(name);
  }
}

// The images of an OCI layout's index; a nested index (several platforms)
// gives its linux/amd64 image.
bool read_oci(int root, std::vector<found_image>& found, std::string& err) {
  std::string text;
  if (!read_json_in(root, "index.json", text, err))
    return false;
  simdjson::dom::parser parser;
  simdjson::padded_string padded{text};
  simdjson::dom::element doc;
  simdjson::dom::array entries;
  if (parser.parse(padded).get(doc) != simdjson::SUCCESS ||
      doc["manifests"].get(entries) != simdjson::SUCCESS) {
    err = "index.json is not an image index";
    return false;
  }
  for (auto e : entries) {
    manifest m;
    m.media_type = str(e, "mediaType");
    m.digest = str(e, "digest");
    std::string ref;
    simdjson::dom::element notes;
    if (e["annotations"].get(notes) == simdjson::SUCCESS)
      ref = str(notes, std::string{ref_name_annotation}.c_str());
    if (!read_oci_blob(root, m.digest, m.body, err))
      return false;
    if (m.media_type.empty()) {
      simdjson::dom::parser p2;
      simdjson::padded_string b{m.body};
      simdjson::dom::element d;
      if (p2.parse(b).get(d) == simdjson::SUCCESS)
        m.media_type = str(d, "mediaType");
    }
    if (is_index_type(m.media_type)) {
      std::string digest, type;
      if (!choose_platform_manifest(m.body, image_platform{}, digest, type,
                                    err))
        return false;
      m.index_digest = m.digest;
      m.digest = digest;
      m.media_type = type;
      if (!read_oci_blob(root, digest, m.body, err))
        return false;
    }
    add_found(found, std::move(m), ref);
  }
  return true;
}

// A path from a docker-archive's manifest.json: relative, no "..".
bool inside_archive(std::string_view path) {
  if (path.empty() || path.front() == '/')
    return false;
  size_t start = 0;
  while (start <= path.size()) {
    auto end = path.find('/', start);
    if (end == std::string_view::npos)
      end = path.size();
    if (path.substr(start, end - start) == "..")
      return false;
    start = end + 1;
  }
  return true;
}

// Hashes a file of the archive and registers it with the source.
bool describe_file(int root, const std::string& rel, directory_source& src,
                   blob_desc& out, std::string& err) {
  if (!inside_archive(rel)) {
    err = "manifest.json names \"" + rel + "\", a path outside the archive";
    return false;
  }
  auto fd = open_regular(root, rel, err);
  struct stat st;
  if (!fd || fstat(fd.get(), &st) < 0 ||
      !copy_hashed(fd.get(), -1, out.digest, 0, {}, err)) {
    err = "reading " + err;
    return false;
  }
  out.size = st.st_size;
  switch (detect_compression(fd.get())) {
  case compression::gzip:
    out.media_type = oci_layer_gzip;
    break;
  case compression::zstd:
    out.media_type = oci_layer_zstd;
    break;
  default:
    out.media_type = oci_layer_tar;
    break;
  }
  src.add(out.digest, rel);
  return true;
}

// The images of a docker-archive, each with a synthesised OCI manifest.
bool read_docker_archive(int root, const std::string& text,
                         directory_source& src, std::vector<found_image>& found,
                         std::string& err) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded{text};
  simdjson::dom::array entries;
  if (parser.parse(padded).get(entries) != simdjson::SUCCESS) {
    err = "manifest.json is not a docker-archive manifest";
    return false;
  }
  for (auto e : entries) {
    auto config_path = str(e, "Config");
    auto layer_paths = strings(e, "Layers");
    if (config_path.empty()) {
      err = "manifest.json has an entry without Config";
      return false;
    }
    blob_desc config;
    if (!describe_file(root, config_path, src, config, err))
      return false;
    config.media_type = oci_config_type;
    std::vector<blob_desc> layers(layer_paths.size());
    for (size_t i = 0; i < layer_paths.size(); ++i)
      if (!describe_file(root, layer_paths[i], src, layers[i], err))
        return false;
    manifest m;
    m.media_type = oci_manifest_type;
    m.body = render_manifest(oci_manifest_type, config, layers);
    m.digest = digest_of(m.body);
    auto tags = strings(e, "RepoTags");
    if (tags.empty())
      add_found(found, m, "");
    for (auto& t : tags)
      add_found(found, m, t);
  }
  return true;
}

// A "dir:" directory holds one image; its manifest is manifest.json.
bool read_dir_format(const std::string& text, std::vector<found_image>& found,
                     std::string& err) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded{text};
  simdjson::dom::element doc;
  if (parser.parse(padded).get(doc) != simdjson::SUCCESS) {
    err = "manifest.json is not a manifest";
    return false;
  }
  manifest m;
  m.body = text;
  m.digest = digest_of(text);
  m.media_type = str(doc, "mediaType");
  simdjson::dom::element config;
  if (m.media_type.empty() && doc["config"].get(config) == simdjson::SUCCESS)
    m.media_type = str(config, "mediaType") == docker_config_type
                       ? docker_manifest_type
                       : oci_manifest_type;
  add_found(found, std::move(m), "");
  return true;
}

bool selected(const found_image& f, const std::string& ref) {
  if (ref.empty())
    return true;
  if (std::find(f.refs.begin(), f.refs.end(), ref) != f.refs.end())
    return true;
  std::string name;
  return archive_name(ref, name) &&
         std::find(f.names.begin(), f.names.end(), name) != f.names.end();
}

// Finds the images below `root` and how to read their blobs.
bool find_images(int root, std::unique_ptr<directory_source>& src,
                 std::vector<found_image>& found, std::string& err) {
  if (exists_in(root, "index.json")) {
    src =
        std::make_unique<directory_source>(root, directory_source::layout::oci);
    return read_oci(root, found, err);
  }
  if (!exists_in(root, "manifest.json")) {
    err = "not an image archive: it has neither index.json nor "
          "manifest.json";
    return false;
  }
  std::string text;
  if (!read_json_in(root, "manifest.json", text, err))
    return false;
  auto first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    src = std::make_unique<directory_source>(root,
                                             directory_source::layout::listed);
    return read_docker_archive(root, text, *src, found, err);
  }
  src = std::make_unique<directory_source>(root, directory_source::layout::dir);
  return read_dir_format(text, found, err);
}

// ---------------------------------------------------------------------------
// Writing images

/// One file (or directory) of the output.
struct out_entry {
  std::string name;
  bool is_dir = false;
  std::string data; ///< the content, unless `file` names it
  std::string file;
};

bool tar_entry(archive* a, const out_entry& e, std::string& err) {
  unique_fd in;
  int64_t size = int64_t(e.data.size());
  if (!e.is_dir && !e.file.empty()) {
    in = unique_fd{::open(e.file.c_str(), O_RDONLY | O_CLOEXEC)};
    struct stat st;
    if (!in || fstat(in.get(), &st) < 0) {
      err = "reading " + e.file + ": " + errno_text(errno);
      return false;
    }
    size = st.st_size;
  }
  std::unique_ptr<archive_entry, void (*)(archive_entry*)> entry{
      archive_entry_new(), archive_entry_free};
  archive_entry_set_pathname(entry.get(), e.name.c_str());
  archive_entry_set_filetype(entry.get(), e.is_dir ? AE_IFDIR : AE_IFREG);
  archive_entry_set_perm(entry.get(), e.is_dir ? 0755 : 0644);
  archive_entry_set_size(entry.get(), e.is_dir ? 0 : size);
  archive_entry_set_mtime(entry.get(), 0, 0);
  if (archive_write_header(a, entry.get()) != ARCHIVE_OK) {
    err = "writing " + e.name + ": " + archive_error_string(a);
    return false;
  }
  if (e.is_dir)
    return true;
  if (!in) {
    if (archive_write_data(a, e.data.data(), e.data.size()) ==
        la_ssize_t(e.data.size()))
      return true;
    err = "writing " + e.name + ": " + archive_error_string(a);
    return false;
  }
  std::unique_ptr<char[]> buf{new char[copy_block]};
  for (;;) {
    auto n = ::read(in.get(), buf.get(), copy_block);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      err = "reading " + e.file + ": " + errno_text(errno);
      return false;
    }
    if (n == 0)
      return true;
    if (archive_write_data(a, buf.get(), size_t(n)) != n) {
      err = "writing " + e.name + ": " + archive_error_string(a);
      return false;
    }
  }
}

bool write_tar(const std::vector<out_entry>& entries, const std::string& path,
               std::string& err) {
  unique_fd fd{
      ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
  if (!fd) {
    err = "creating " + path + ": " + errno_text(errno);
    return false;
  }
  archive_writer a{archive_write_new()};
  archive_write_set_format_pax_restricted(a.get());
  archive_write_set_bytes_in_last_block(a.get(), 1);
  if (archive_write_open_fd(a.get(), fd.get()) != ARCHIVE_OK) {
    err = std::string{"writing a tar: "} + archive_error_string(a.get());
    return false;
  }
  for (auto& e : entries)
    if (!tar_entry(a.get(), e, err))
      return false;
  if (archive_write_close(a.get()) != ARCHIVE_OK) {
    err = std::string{"writing a tar: "} + archive_error_string(a.get());
    return false;
  }
  if (fsync(fd.get()) < 0) {
    err = "syncing " + path + ": " + errno_text(errno);
    return false;
  }
  return true;
}

bool write_dir(const std::vector<out_entry>& entries, const std::string& dir,
               std::string& err) {
  for (auto& e : entries) {
    auto path = dir + "/" + e.name;
    if (e.is_dir) {
      if (mkdir(path.c_str(), 0755) < 0 && errno != EEXIST) {
        err = "creating " + path + ": " + errno_text(errno);
        return false;
      }
      continue;
    }
    if (e.file.empty()) {
      if (!write_file(path, e.data, err))
        return false;
      continue;
    }
    std::error_code ec;
    if (!fs::copy_file(e.file, path, fs::copy_options::overwrite_existing,
                       ec)) {
      err = "copying to " + path + ": " + ec.message();
      return false;
    }
  }
  return true;
}

std::string parent_of(const std::string& path) {
  auto p = fs::path(path).parent_path().string();
  return p.empty() ? "." : p;
}

// Writes `entries` as a tar file or a directory at `dest`, under a
// temporary name first: in the store's temporary directory when it is on
// the same file system (so a crash leaves nothing that `open` keeps),
// beside `dest` otherwise.
bool publish(image_store& store, const std::vector<out_entry>& entries,
             const std::string& dest, bool as_tar, std::string& err) {
  auto parent = parent_of(dest);
  struct stat pst, sst, dst;
  if (stat(parent.c_str(), &pst) < 0 || !S_ISDIR(pst.st_mode)) {
    err = "writing " + dest + ": " + parent + " is not a directory";
    return false;
  }
  bool replace_empty_dir = false;
  if (lstat(dest.c_str(), &dst) == 0) {
    if (!as_tar) {
      std::error_code ec;
      if (!S_ISDIR(dst.st_mode) || !fs::is_empty(dest, ec)) {
        err = "writing " + dest + ": it exists and is not an empty directory";
        return false;
      }
      replace_empty_dir = true;
    } else if (S_ISDIR(dst.st_mode)) {
      err = "writing " + dest + ": it is a directory";
      return false;
    }
  }

  temp_dir work;
  std::string tmp;
  if (stat(store.root().c_str(), &sst) == 0 && sst.st_dev == pst.st_dev) {
    work = temp_dir{store.make_temp_dir(err)};
    if (work.path().empty())
      return false;
    tmp = work.path() + "/out";
  } else {
    auto base = fs::path(dest).filename().string();
    tmp = parent + "/." + base + ".tmp-XXXXXX";
    if (!mkdtemp(tmp.data())) {
      err = "creating a temporary directory in " + parent + ": " +
            errno_text(errno);
      return false;
    }
    work = temp_dir{tmp};
    tmp += "/out";
  }
  if (!as_tar && mkdir(tmp.c_str(), 0755) < 0) {
    err = "creating " + tmp + ": " + errno_text(errno);
    return false;
  }
  if (as_tar ? !write_tar(entries, tmp, err) : !write_dir(entries, tmp, err))
    return false;
  if (as_tar)
    chmod(tmp.c_str(), 0644);
  if (replace_empty_dir)
    rmdir(dest.c_str());
  if (rename(tmp.c_str(), dest.c_str()) < 0) {
    err = "moving the output to " + dest + ": " + errno_text(errno);
    return false;
  }
  unique_fd pfd{::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)};
  if (pfd)
    fsync(pfd.get());
  return true;
}

/// An image from the store taken apart for writing.
struct image_parts {
  std::string manifest_type;
  std::string manifest_body;
  std::string manifest_digest;
  blob_desc config;
  std::vector<blob_desc> layers;
  std::vector<std::string> diff_ids;
};

bool uncompressed(std::string_view type) {
  return type == oci_layer_tar || type == docker_layer_tar;
}

bool blob_file(image_store& store, blob_desc& d, std::string& err) {
  d.file = store.blob_path(d.digest);
  struct stat st;
  if (stat(d.file.c_str(), &st) < 0) {
    err = "reading blob " + d.digest + ": " + errno_text(errno);
    return false;
  }
  d.size = st.st_size;
  return true;
}

bool read_parts(image_store& store, const image_record& img, image_parts& p,
                std::string& err) {
  p.manifest_type = img.manifest_type;
  p.manifest_digest = img.manifest_digest;
  image_manifest im;
  if (store.read_blob(img.manifest_digest, p.manifest_body, err) &&
      parse_image_manifest(p.manifest_body, im, err)) {
    if (p.manifest_type.empty())
      p.manifest_type = im.media_type;
    p.config = {"", im.config_digest, 0, ""};
    for (auto& l : im.layers)
      p.layers.push_back({l.media_type, l.digest, 0, ""});
  } else {
    // No manifest: the store's own records describe the image.
    p.manifest_body.clear();
    p.config = {"", "sha256:" + img.id, 0, ""};
    for (auto& l : img.layers)
      p.layers.push_back({l.media_type, l.blob, 0, ""});
  }
  std::string text;
  image_config cfg;
  if (!store.read_blob(p.config.digest, text, err) ||
      !parse_image_config(text, cfg, err))
    return false;
  p.diff_ids = cfg.diff_ids;
  if (p.diff_ids.size() != p.layers.size()) {
    err = "image " + img.id + " has " + std::to_string(p.layers.size()) +
          " layers and " + std::to_string(p.diff_ids.size()) + " diff IDs";
    return false;
  }
  if (!blob_file(store, p.config, err))
    return false;
  for (auto& l : p.layers)
    if (!blob_file(store, l, err))
      return false;
  return true;
}

// Writes layer `i` uncompressed into `dir`, checked against its diff ID.
bool uncompressed_copy(const image_parts& p, size_t i, const std::string& dir,
                       blob_desc& out, std::string& err) {
  auto& l = p.layers[i];
  out = l;
  if (uncompressed(l.media_type) && l.digest == p.diff_ids[i])
    return true;
  out.file = dir + "/layer-" + std::to_string(i) + ".tar";
  unique_fd in{::open(l.file.c_str(), O_RDONLY | O_CLOEXEC)};
  unique_fd fd{
      ::open(out.file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
  std::string digest;
  if (!in || !fd) {
    err = "decompressing layer " + l.digest + ": " + errno_text(errno);
    return false;
  }
  if (!decompress(in.get(), fd.get(), digest, err)) {
    err = "layer " + l.digest + ": " + err;
    return false;
  }
  if (digest != p.diff_ids[i]) {
    err = "layer " + l.digest + " unpacks to " + digest +
          ", the configuration says " + p.diff_ids[i];
    return false;
  }
  struct stat st;
  fstat(fd.get(), &st);
  out.digest = digest;
  out.size = st.st_size;
  return true;
}

// The layer media type in the other format, or empty when there is none.
std::string_view convert_layer_type(std::string_view type, bool to_oci) {
  constexpr std::pair<std::string_view, std::string_view> pairs[] = {
      {oci_layer_gzip, docker_layer_gzip},
      {oci_layer_tar, docker_layer_tar},
      {oci_foreign_gzip, docker_foreign_gzip},
  };
  for (auto& [oci, docker] : pairs) {
    if (type == oci || type == docker)
      return to_oci ? oci : docker;
  }
  if (to_oci && type == oci_layer_zstd)
    return type;
  return {};
}

// Makes `p` describe itself with an OCI or Docker schema 2 manifest.
bool convert_manifest(image_parts& p, std::string_view type,
                      const std::string& dir, std::string& err) {
  if (p.manifest_type == type && !p.manifest_body.empty())
    return true;
  bool to_oci = type == oci_manifest_type;
  p.config.media_type = to_oci ? oci_config_type : docker_config_type;
  for (size_t i = 0; i < p.layers.size(); ++i) {
    auto mapped = convert_layer_type(p.layers[i].media_type, to_oci);
    if (!mapped.empty()) {
      p.layers[i].media_type = mapped;
      continue;
    }
    // Docker has no type for it: send it uncompressed.
    blob_desc plain;
    if (!uncompressed_copy(p, i, dir, plain, err))
      return false;
    plain.media_type = to_oci ? oci_layer_tar : docker_layer_tar;
    p.layers[i] = plain;
  }
  p.manifest_type = type;
  p.manifest_body = render_manifest(type, p.config, p.layers);
  p.manifest_digest = digest_of(p.manifest_body);
  return true;
}

bool gzip_compressed(std::string_view type) {
  return type == oci_layer_gzip || type == docker_layer_gzip ||
         type == oci_foreign_gzip || type == docker_foreign_gzip;
}

// Makes every layer of `p` gzip, recompressing the others into `dir`
// (each checked against its diff ID), and describes them in p's manifest.
bool gzip_layers(image_parts& p, const std::string& dir, std::string& err) {
  bool docker = p.manifest_type == docker_manifest_type;
  bool changed = false;
  for (size_t i = 0; i < p.layers.size(); ++i) {
    auto& l = p.layers[i];
    if (gzip_compressed(l.media_type))
      continue;
    gzipped_layer gz;
    auto file = dir + "/layer-" + std::to_string(i) + ".gz";
    if (!gzip_layer(l.file, file, gz, err))
      return false;
    if (gz.diff_id != p.diff_ids[i]) {
      err = "layer " + l.digest + " unpacks to " + gz.diff_id +
            ", the configuration says " + p.diff_ids[i];
      return false;
    }
    l = {std::string{docker ? docker_layer_gzip : oci_layer_gzip}, gz.digest,
         gz.size, file};
    changed = true;
  }
  if (!changed)
    return true;
  p.manifest_type = docker ? docker_manifest_type : oci_manifest_type;
  p.config.media_type = docker ? docker_config_type : oci_config_type;
  p.manifest_body = render_manifest(p.manifest_type, p.config, p.layers);
  p.manifest_digest = digest_of(p.manifest_body);
  return true;
}

void add_blob(std::vector<out_entry>& entries, const std::string& name,
              const std::string& file) {
  for (auto& e : entries)
    if (e.name == name)
      return;
  entries.push_back({name, false, {}, file});
}

void oci_entries(const image_parts& p, const std::vector<std::string>& names,
                 std::vector<out_entry>& out) {
  std::string index = "{\"schemaVersion\":2,\"manifests\":[";
  auto desc = "{\"mediaType\":" + quote(p.manifest_type) +
              ",\"digest\":" + quote(p.manifest_digest) +
              ",\"size\":" + std::to_string(p.manifest_body.size());
  if (names.empty())
    index += desc + "}";
  for (size_t i = 0; i < names.size(); ++i)
    index += (i ? "," : "") + desc + ",\"annotations\":{" +
             quote(ref_name_annotation) + ":" + quote(names[i]) + "}}";
  index += "]}";
  out.push_back({"oci-layout", false, std::string{oci_layout_file}, {}});
  out.push_back({"index.json", false, index, {}});
  out.push_back({"blobs", true, {}, {}});
  out.push_back({"blobs/sha256", true, {}, {}});
  out.push_back({"blobs/sha256/" + hex_of(p.manifest_digest),
                 false,
                 p.manifest_body,
                 {}});
  add_blob(out, "blobs/sha256/" + hex_of(p.config.digest), p.config.file);
  for (auto& l : p.layers)
    add_blob(out, "blobs/sha256/" + hex_of(l.digest), l.file);
}

bool docker_archive_entries(const image_parts& p,
                            const std::vector<std::string>& names,
                            const std::string& dir, std::vector<out_entry>& out,
                            std::string& err) {
  auto config_name = hex_of(p.config.digest) + ".json";
  std::vector<std::string> layer_names;
  std::vector<out_entry> layers;
  for (size_t i = 0; i < p.layers.size(); ++i) {
    blob_desc plain;
    if (!uncompressed_copy(p, i, dir, plain, err))
      return false;
    layer_names.push_back(hex_of(p.diff_ids[i]) + ".tar");
    add_blob(layers, layer_names.back(), plain.file);
  }
  auto manifest = "[{\"Config\":" + quote(config_name) +
                  ",\"RepoTags\":" + string_array(names) +
                  ",\"Layers\":" + string_array(layer_names) + "}]";
  out.push_back({"manifest.json", false, manifest, {}});
  out.push_back({config_name, false, {}, p.config.file});
  out.insert(out.end(), layers.begin(), layers.end());
  return true;
}

void dir_entries(const image_parts& p, std::vector<out_entry>& out) {
  out.push_back({"version", false, std::string{dir_version}, {}});
  out.push_back({"manifest.json", false, p.manifest_body, {}});
  add_blob(out, hex_of(p.config.digest), p.config.file);
  for (auto& l : p.layers)
    add_blob(out, hex_of(l.digest), l.file);
}

// ---------------------------------------------------------------------------
// Changes

std::string trim(std::string_view s) {
  auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos)
    return {};
  auto e = s.find_last_not_of(" \t\r\n");
  return std::string{s.substr(b, e - b + 1)};
}

// Splits at unquoted white space, removing quotes and backslash escapes.
bool split_words(std::string_view s, std::vector<std::string>& out,
                 std::string& err) {
  out.clear();
  std::string word;
  bool in_word = false;
  char q = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (q) {
      if (c == q) {
        q = 0;
      } else if (c == '\\' && q == '"' && i + 1 < s.size()) {
        word += s[++i];
      } else {
        word += c;
      }
    } else if (c == '"' || c == '\'') {
      q = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < s.size()) {
      word += s[++i];
      in_word = true;
    } else if (c == ' ' || c == '\t') {
      if (in_word)
        out.push_back(std::move(word));
      word.clear();
      in_word = false;
    } else {
      word += c;
      in_word = true;
    }
  }
  if (q) {
    err = "unterminated quote";
    return false;
  }
  if (in_word)
    out.push_back(std::move(word));
  return true;
}

// A JSON array of strings, or nothing when `s` is not one.
bool json_strings(const std::string& s, std::vector<std::string>& out) {
  simdjson::dom::parser parser;
  simdjson::padded_string padded{s};
  simdjson::dom::array a;
  if (parser.parse(padded).get(a) != simdjson::SUCCESS)
    return false;
  out.clear();
  for (auto item : a) {
    if (!item.is_string())
      return false;
    out.emplace_back(std::string_view(item));
  }
  return true;
}

// CMD and ENTRYPOINT: the exec form, or the shell form run by /bin/sh -c.
bool command(const std::string& arg, std::vector<std::string>& out,
             std::string& err) {
  if (arg.starts_with("[")) {
    if (!json_strings(arg, out)) {
      err = "not a JSON array of strings: " + arg;
      return false;
    }
    return true;
  }
  out = {"/bin/sh", "-c", arg};
  return true;
}

// "k=v k2=v2" (quotes allowed), or for ENV the old "k v..." form.
bool pairs(const std::string& arg, bool allow_space_form,
           std::vector<std::pair<std::string, std::string>>& out,
           std::string& err) {
  out.clear();
  auto first_space = arg.find_first_of(" \t");
  auto first_eq = arg.find('=');
  if (allow_space_form &&
      (first_eq == std::string::npos ||
       (first_space != std::string::npos && first_space < first_eq))) {
    if (first_space == std::string::npos) {
      err = "\"" + arg + "\" has no value";
      return false;
    }
    out.emplace_back(arg.substr(0, first_space),
                     trim(arg.substr(first_space + 1)));
    return true;
  }
  std::vector<std::string> words;
  if (!split_words(arg, words, err))
    return false;
  for (auto& w : words) {
    auto eq = w.find('=');
    if (eq == std::string::npos || eq == 0) {
      err = "\"" + w + "\" is not KEY=VALUE";
      return false;
    }
    out.emplace_back(w.substr(0, eq), w.substr(eq + 1));
  }
  return true;
}

void set_env(std::vector<std::string>& env, const std::string& key,
             const std::string& value) {
  for (auto& e : env)
    if (e.starts_with(key + "=")) {
      e = key + "=" + value;
      return;
    }
  env.push_back(key + "=" + value);
}

void add_unique(std::vector<std::string>& v, const std::string& s) {
  if (std::find(v.begin(), v.end(), s) == v.end())
    v.push_back(s);
}

bool expose(const std::string& arg, image_config& cfg, std::string& err) {
  std::vector<std::string> words;
  if (!split_words(arg, words, err))
    return false;
  for (auto w : words) {
    auto slash = w.find('/');
    auto port = w.substr(0, slash);
    auto proto = slash == std::string::npos ? "tcp" : w.substr(slash + 1);
    if (port.empty() ||
        port.find_first_not_of("0123456789-") != std::string::npos ||
        (proto != "tcp" && proto != "udp" && proto != "sctp")) {
      err = "invalid port \"" + w + "\"";
      return false;
    }
    add_unique(cfg.exposed_ports, port + "/" + proto);
  }
  return true;
}

} // namespace

// ---------------------------------------------------------------------------
// Public

bool parse_archive_reference(std::string_view text, archive_reference& out) {
  struct kind {
    std::string_view prefix;
    image_format format;
  };
  constexpr kind kinds[] = {
      {"docker-archive:", image_format::docker_archive},
      {"oci-archive:", image_format::oci_archive},
      {"oci:", image_format::oci_layout},
      {"dir:", image_format::directory},
  };
  for (auto& k : kinds) {
    if (!text.starts_with(k.prefix))
      continue;
    auto rest = text.substr(k.prefix.size());
    out = {};
    out.format = k.format;
    auto colon = k.format == image_format::directory ? std::string_view::npos
                                                     : rest.find(':');
    out.path = std::string{rest.substr(0, colon)};
    if (colon != std::string_view::npos)
      out.ref = std::string{rest.substr(colon + 1)};
    return !out.path.empty();
  }
  return false;
}

bool archive_name(std::string_view text, std::string& out) {
  if (text.find_first_of("/:@") == std::string_view::npos)
    return false;
  image_reference ref;
  std::string err;
  if (!image_reference::parse(text, ref, err))
    return false;
  out = ref.str();
  return true;
}

bool load_images(image_store& store, const load_request& req,
                 const pull_events& ev, std::vector<image_record>& out,
                 std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "loading " + req.path + ": " + why;
    return false;
  };
  struct stat st;
  if (stat(req.path.c_str(), &st) < 0)
    return fail(errno_text(errno));
  temp_dir work;
  std::string root_path = req.path;
  if (S_ISREG(st.st_mode)) {
    // A tarball is unpacked as carefully as a layer is.
    work = temp_dir{store.make_temp_dir(err)};
    if (work.path().empty())
      return false;
    root_path = work.path() + "/archive";
    unpack_stats unpacked;
    std::string why;
    if (mkdir(root_path.c_str(), 0700) < 0)
      return fail("creating " + root_path + ": " + errno_text(errno));
    if (!unpack_layer(req.path, root_path, unpacked, why))
      return fail("not an image archive: " + why);
  } else if (!S_ISDIR(st.st_mode)) {
    return fail("not a file or directory");
  }
  unique_fd root{::open(root_path.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
  if (!root)
    return fail(errno_text(errno));

  std::unique_ptr<directory_source> source;
  std::vector<found_image> found;
  std::string why;
  if (!find_images(root.get(), source, found, why))
    return fail(why);
  std::erase_if(found, [&](auto& f) { return !selected(f, req.ref); });
  if (found.empty())
    return fail(req.ref.empty() ? "it holds no image"
                                : "it holds no image named " + req.ref);

  ev.log("Getting image source signatures\n");
  for (auto& f : found) {
    image_record rec;
    if (!store_image(store, *source, f.m, ev, rec, why))
      return fail(why);
    rec.names = f.names;
    out.push_back(std::move(rec));
  }
  return true;
}

bool save_image(image_store& store, const save_request& req,
                const pull_events& ev, std::string& err) {
  auto fail = [&](const std::string& why) {
    err =
        "saving image " + req.image.id + " to " + req.destination + ": " + why;
    return false;
  };
  image_parts parts;
  std::string why;
  if (!read_parts(store, req.image, parts, why))
    return fail(why);
  temp_dir work{store.make_temp_dir(err)};
  if (work.path().empty())
    return false;

  ev.log("Getting image source signatures\n");
  bool to_dir = req.format == image_format::oci_layout ||
                req.format == image_format::directory;
  if (req.compress && to_dir && !gzip_layers(parts, work.path(), why))
    return fail(why);
  std::vector<out_entry> entries;
  bool ok = true;
  switch (req.format) {
  case image_format::oci_archive:
  case image_format::oci_layout:
    ok = convert_manifest(parts, oci_manifest_type, work.path(), why);
    if (ok)
      oci_entries(parts, req.names, entries);
    break;
  case image_format::docker_archive:
    ok = docker_archive_entries(parts, req.names, work.path(), entries, why);
    break;
  case image_format::directory:
    if (!req.manifest_type.empty())
      ok = convert_manifest(parts, req.manifest_type, work.path(), why);
    else if (parts.manifest_body.empty())
      ok = convert_manifest(parts, oci_manifest_type, work.path(), why);
    if (ok)
      dir_entries(parts, entries);
    break;
  }
  if (!ok)
    return fail(why);
  for (auto& l : parts.layers)
    ev.log("Copying blob " + hex_of(l.digest).substr(0, 12) + " done\n");
  ev.log("Copying config " + hex_of(parts.config.digest).substr(0, 12) +
         " done\n");
  ev.log("Writing manifest to image destination\n");
  if (ev.cancelled && ev.cancelled())
    return fail("cancelled");
  bool as_tar = req.as_tar || req.format == image_format::oci_archive ||
                req.format == image_format::docker_archive;
  if (!publish(store, entries, req.destination, as_tar, why))
    return fail(why);
  ev.log("Storing signatures\n");
  return true;
}

bool import_rootfs(image_store& store, const import_request& req,
                   const pull_events& ev, image_record& out, std::string& err) {
  auto fail = [&](const std::string& why) {
    err = "importing " + req.source + ": " + why;
    return false;
  };
  image_config cfg;
  cfg.created = rfc3339_now();
  cfg.architecture = req.architecture;
  cfg.os = req.os;
  std::string why;
  for (auto& c : req.changes)
    if (!apply_change(c, cfg, why))
      return fail("change \"" + c + "\": " + why);

  unique_fd in{::open(req.source.c_str(), O_RDONLY | O_CLOEXEC)};
  struct stat st;
  if (!in || fstat(in.get(), &st) < 0)
    return fail(errno_text(errno));
  if (!S_ISREG(st.st_mode))
    return fail("not a regular file");
  temp_dir work{store.make_temp_dir(err)};
  if (work.path().empty())
    return false;

  // The layer blob: the tarball as it is, unless Docker and OCI have no
  // media type for its compression.
  blob_desc layer;
  layer.file = work.path() + "/layer";
  unique_fd blob{::open(layer.file.c_str(),
                        O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)};
  if (!blob)
    return fail("creating " + layer.file + ": " + errno_text(errno));
  std::string diff_id;
  auto kind = detect_compression(in.get());
  bool ok = true;
  if (kind == compression::none) {
    layer.media_type = oci_layer_tar;
    ok = copy_hashed(in.get(), blob.get(), layer.digest, 0, {}, why);
    diff_id = layer.digest;
  } else if (kind == compression::gzip || kind == compression::zstd) {
    layer.media_type =
        kind == compression::gzip ? oci_layer_gzip : oci_layer_zstd;
    ok = copy_hashed(in.get(), blob.get(), layer.digest, 0, {}, why) &&
         decompress(in.get(), -1, diff_id, why);
  } else {
    layer.media_type = oci_layer_tar;
    ok = decompress(in.get(), blob.get(), diff_id, why);
    layer.digest = diff_id;
  }
  struct stat bst;
  if (!ok || fstat(blob.get(), &bst) < 0)
    return fail(why);
  layer.size = bst.st_size;
  blob.reset();

  cfg.diff_ids = {diff_id};
  cfg.history = {{cfg.created, "", "", req.message, false}};
  auto config_text = render_config(cfg);
  blob_desc config{std::string{oci_config_type}, digest_of(config_text),
                   int64_t(config_text.size()), work.path() + "/config"};
  if (!write_file(config.file, config_text, why))
    return fail(why);
  manifest m;
  m.media_type = oci_manifest_type;
  m.body = render_manifest(oci_manifest_type, config, {layer});
  m.digest = digest_of(m.body);

  unique_fd root{::open(work.path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC)};
  directory_source source{root.get(), directory_source::layout::listed};
  source.add(layer.digest, "layer");
  source.add(config.digest, "config");
  if (!store_image(store, source, m, ev, out, why))
    return fail(why);
  return true;
}

bool apply_change(const std::string& change, image_config& cfg,
                  std::string& err) {
  auto text = trim(change);
  auto cut = text.find_first_of(" \t=");
  auto instr = text.substr(0, cut);
  std::transform(instr.begin(), instr.end(), instr.begin(),
                 [](unsigned char c) { return std::toupper(c); });
  auto arg =
      cut == std::string::npos ? std::string{} : trim(text.substr(cut + 1));
  if (instr.empty()) {
    err = "empty change";
    return false;
  }
  if (arg.empty()) {
    err = instr + " needs an argument";
    return false;
  }
  std::vector<std::pair<std::string, std::string>> kv;
  std::vector<std::string> words;
  if (instr == "CMD")
    return command(arg, cfg.cmd, err);
  if (instr == "ENTRYPOINT")
    return command(arg, cfg.entrypoint, err);
  if (instr == "ENV" || instr == "LABEL") {
    if (!pairs(arg, instr == "ENV", kv, err))
      return false;
    for (auto& [k, v] : kv) {
      if (instr == "ENV")
        set_env(cfg.env, k, v);
      else
        cfg.labels[k] = v;
    }
    return true;
  }
  if (instr == "WORKDIR") {
    cfg.working_dir = arg;
    return true;
  }
  if (instr == "USER") {
    cfg.user = arg;
    return true;
  }
  if (instr == "STOPSIGNAL") {
    cfg.stop_signal = arg;
    return true;
  }
  if (instr == "EXPOSE")
    return expose(arg, cfg, err);
  if (instr == "VOLUME") {
    if (!(arg.starts_with("[") ? json_strings(arg, words)
                               : split_words(arg, words, err))) {
      if (err.empty())
        err = "not a JSON array of strings: " + arg;
      return false;
    }
    for (auto& w : words)
      add_unique(cfg.volumes, w);
    return true;
  }
  err = "unknown instruction " + instr +
        " (use CMD, ENTRYPOINT, ENV, "
        "EXPOSE, LABEL, STOPSIGNAL, USER, VOLUME or WORKDIR)";
  return false;
}

std::string render_config(const image_config& cfg) {
  std::string c;
  auto add = [&](const char* key, const std::string& json) {
    c += (c.empty() ? "" : ",") + quote(key) + ":" + json;
  };
  if (!cfg.user.empty())
    add("User", quote(cfg.user));
  if (!cfg.exposed_ports.empty())
    add("ExposedPorts", string_set(cfg.exposed_ports));
  if (!cfg.env.empty())
    add("Env", string_array(cfg.env));
  if (!cfg.entrypoint.empty())
    add("Entrypoint", string_array(cfg.entrypoint));
  if (!cfg.cmd.empty())
    add("Cmd", string_array(cfg.cmd));
  if (!cfg.volumes.empty())
    add("Volumes", string_set(cfg.volumes));
  if (!cfg.working_dir.empty())
    add("WorkingDir", quote(cfg.working_dir));
  if (!cfg.labels.empty()) {
    std::string labels;
    for (auto& [k, v] : cfg.labels)
      labels += (labels.empty() ? "" : ",") + quote(k) + ":" + quote(v);
    add("Labels", "{" + labels + "}");
  }
  if (!cfg.stop_signal.empty())
    add("StopSignal", quote(cfg.stop_signal));

  std::string out = "{";
  if (!cfg.created.empty())
    out += "\"created\":" + quote(cfg.created) + ",";
  if (!cfg.author.empty())
    out += "\"author\":" + quote(cfg.author) + ",";
  out += "\"architecture\":" + quote(cfg.architecture) +
         ",\"os\":" + quote(cfg.os) + ",\"config\":{" + c + "}" +
         ",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":" +
         string_array(cfg.diff_ids) + "},\"history\":[";
  for (size_t i = 0; i < cfg.history.size(); ++i) {
    auto& h = cfg.history[i];
    std::string e;
    auto field = [&](const char* key, const std::string& v) {
      if (!v.empty())
        e += (e.empty() ? "" : ",") + quote(key) + ":" + quote(v);
    };
    field("created", h.created);
    field("created_by", h.created_by);
    field("author", h.author);
    field("comment", h.comment);
    if (h.empty_layer)
      e += (e.empty() ? "" : ",") + std::string{"\"empty_layer\":true"};
    out += (i ? "," : "") + std::string{"{"} + e + "}";
  }
  return out + "]}";
}

} // namespace berth::storage
