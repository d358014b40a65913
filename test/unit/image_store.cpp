// The image store's blobs and directory saves: layers gzip-compressed by
// gzip_layer and by save_image's `compress`, and blobs that live exactly as
// long as an image names them, across removal, re-opening and a store
// written before image_blobs existed. Images are OCI layouts made here with
// tar, gzip and zstd, loaded through load_images.
#define BOOST_TEST_MODULE image_store
#include <boost/test/unit_test.hpp>

#include "storage/archive.hpp"
#include "storage/digest.hpp"
#include "storage/gzip.hpp"
#include "storage/image_config.hpp"
#include "storage/image_store.hpp"
#include "storage/registry.hpp"
#include "storage/sqlite.hpp"

#include "support.hpp"

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace berth::storage;
using berth::testing::read_file;
using berth::testing::temp_dir;

namespace {

constexpr const char* oci_plain = "application/vnd.oci.image.layer.v1.tar";
constexpr const char* oci_gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr const char* oci_zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
constexpr const char* docker_gzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";

enum class packing { plain, gzip, zstd };

std::string digest_of(std::string_view data) {
  sha256 h;
  h.update(data.data(), data.size());
  return h.digest();
}

std::string hex(const std::string& digest) {
  return digest.substr(digest.find(':') + 1);
}

void write(const fs::path& p, std::string_view text) {
  std::ofstream out{p, std::ios::binary | std::ios::trunc};
  out << text;
}

bool run(const std::string& command) {
  return std::system(command.c_str()) == 0;
}

bool have_zstd() {
  return fs::exists("/usr/bin/zstd");
}

bool is_gzip(const std::string& bytes) {
  return bytes.size() > 2 && bytes[0] == '\x1f' && bytes[1] == '\x8b';
}

/// The tar of a one-file layer saying `text`, packed as asked.
struct layer_blob {
  std::string bytes, media_type, diff_id;
};

layer_blob make_layer(const std::string& text, packing p) {
  temp_dir dir{"/tmp/berth-unit-store-layer-"};
  fs::create_directory(dir.path / "root");
  write(dir.path / "root" / "file", text + "\n");
  auto tar = (dir.path / "layer.tar").string();
  BOOST_REQUIRE(run("tar -C " + (dir.path / "root").string() +
                    " --mtime=@0 --owner=0 --group=0 -cf " + tar + " file"));
  layer_blob l;
  l.diff_id = digest_of(read_file(tar));
  switch (p) {
  case packing::plain:
    l.bytes = read_file(tar);
    l.media_type = oci_plain;
    break;
  case packing::gzip:
    BOOST_REQUIRE(run("gzip -n " + tar));
    l.bytes = read_file(tar + ".gz");
    l.media_type = oci_gzip;
    break;
  case packing::zstd:
    BOOST_REQUIRE(run("zstd -q " + tar));
    l.bytes = read_file(tar + ".zst");
    l.media_type = oci_zstd;
    break;
  }
  return l;
}

std::string descriptor(const std::string& type, const std::string& digest,
                       size_t size) {
  return R"({"mediaType":")" + type + R"(","digest":")" + digest +
         R"(","size":)" + std::to_string(size) + "}";
}

/// An OCI layout at `dir` holding one image of `layers`, its config
/// labelled `label` (so the label decides the image ID).
struct layout {
  std::string config_digest, manifest_digest;
  std::vector<std::string> layer_digests;
};

layout make_layout(const fs::path& dir, const std::string& label,
                   const std::vector<layer_blob>& layers) {
  layout out;
  fs::create_directories(dir / "blobs" / "sha256");
  auto put = [&](std::string_view bytes) {
    auto d = digest_of(bytes);
    write(dir / "blobs" / "sha256" / hex(d), bytes);
    return d;
  };
  std::string diff_ids, descriptors;
  for (size_t i = 0; i < layers.size(); ++i) {
    out.layer_digests.push_back(put(layers[i].bytes));
    diff_ids += (i ? ",\"" : "\"") + layers[i].diff_id + "\"";
    descriptors += (i ? "," : "") + descriptor(layers[i].media_type,
                                               out.layer_digests.back(),
                                               layers[i].bytes.size());
  }
  auto config = R"({"architecture":"amd64","os":"linux","config":)"
                R"({"Labels":{"label":")" +
                label + R"("}},"rootfs":{"type":"layers","diff_ids":[)" +
                diff_ids + "]}}";
  out.config_digest = put(config);
  auto manifest = R"({"schemaVersion":2,"mediaType":")" +
                  std::string{oci_manifest_type} + R"(","config":)" +
                  descriptor("application/vnd.oci.image.config.v1+json",
                             out.config_digest, config.size()) +
                  R"(,"layers":[)" + descriptors + "]}";
  out.manifest_digest = put(manifest);
  write(dir / "oci-layout", R"({"imageLayoutVersion":"1.0.0"})");
  write(dir / "index.json",
        R"({"schemaVersion":2,"manifests":[)" +
            descriptor(std::string{oci_manifest_type}, out.manifest_digest,
                       manifest.size()) +
            "]}");
  return out;
}

pull_events quiet() {
  return {[](std::string) {}, [] { return false; }};
}

/// Loads the image at `path` into `store` and commits it.
image_record load(image_store& store, const fs::path& path) {
  std::vector<image_record> out;
  std::string err;
  BOOST_REQUIRE_MESSAGE(
      load_images(store, {path.string(), ""}, quiet(), out, err), err);
  BOOST_REQUIRE_EQUAL(out.size(), 1u);
  BOOST_REQUIRE_MESSAGE(store.commit_image(out[0], err), err);
  return out[0];
}

/// The hex names in ROOT/blobs/sha256.
std::set<std::string> blob_files(const image_store& store) {
  std::set<std::string> out;
  for (auto& e : fs::directory_iterator(store.root() + "/blobs/sha256"))
    out.insert(e.path().filename().string());
  return out;
}

std::set<std::string> hexes(const std::vector<std::string>& digests) {
  std::set<std::string> out;
  for (auto& d : digests)
    out.insert(hex(d));
  return out;
}

/// The hex names of every blob `l` holds.
std::set<std::string> blobs_of(const layout& l) {
  auto out = hexes(l.layer_digests);
  out.insert(hex(l.config_digest));
  out.insert(hex(l.manifest_digest));
  return out;
}

bool contains_all(const std::set<std::string>& have,
                  const std::set<std::string>& want) {
  for (auto& w : want)
    if (!have.count(w))
      return false;
  return true;
}

bool contains_none(const std::set<std::string>& have,
                   const std::set<std::string>& unwanted) {
  for (auto& u : unwanted)
    if (have.count(u))
      return false;
  return true;
}

/// A store in a temporary directory, with OCI layouts beside it.
struct fixture {
  temp_dir dir{"/tmp/berth-unit-store-"};
  fs::path root = dir.path / "root";
  std::unique_ptr<image_store> opened;

  fixture() { open(); }
  image_store& store() { return *opened; }
  /// Closes the store and opens it again, as a restarted berthd does.
  void open() {
    opened.reset();
    opened = std::make_unique<image_store>();
    std::string err;
    BOOST_REQUIRE_MESSAGE(opened->open(root.string(), err), err);
  }
  fs::path at(const std::string& name) const { return dir.path / name; }
};

/// The saved directory's manifest, parsed.
image_manifest saved_manifest(const fs::path& dir, std::string& body) {
  body = read_file(dir / "manifest.json");
  image_manifest m;
  std::string err;
  BOOST_REQUIRE_MESSAGE(parse_image_manifest(body, m, err), err);
  return m;
}

void save_to(image_store& store, const image_record& img, image_format f,
             const std::string& manifest_type, bool compress,
             const fs::path& dest) {
  save_request req;
  req.image = img;
  req.format = f;
  req.manifest_type = manifest_type;
  req.destination = dest.string();
  req.compress = compress;
  std::string err;
  BOOST_REQUIRE_MESSAGE(save_image(store, req, quiet(), err), err);
}

} // namespace

// ---- gzip_layer ------------------------------------------------------------

BOOST_AUTO_TEST_CASE(gzip_layer_from_every_compression) {
  temp_dir dir{"/tmp/berth-unit-store-gz-"};
  std::vector<packing> kinds{packing::plain, packing::gzip};
  if (have_zstd())
    kinds.push_back(packing::zstd);
  std::string first_digest;
  for (auto k : kinds) {
    auto l = make_layer("same content", k);
    auto src = dir.path / "src";
    write(src, l.bytes);
    auto dest = dir.path / "out.gz";
    gzipped_layer gz;
    std::string err;
    BOOST_REQUIRE_MESSAGE(gzip_layer(src, dest, gz, err), err);
    auto bytes = read_file(dest);
    BOOST_TEST(is_gzip(bytes));
    BOOST_TEST(gz.diff_id == l.diff_id);
    BOOST_TEST(gz.digest == digest_of(bytes));
    BOOST_TEST(gz.size == int64_t(bytes.size()));
    // The same tar always compresses to the same bytes.
    if (first_digest.empty())
      first_digest = gz.digest;
    BOOST_TEST(gz.digest == first_digest);
  }
  gzipped_layer gz;
  std::string err;
  BOOST_TEST(!gzip_layer((dir.path / "missing").string(),
                         (dir.path / "x.gz").string(), gz, err));
  BOOST_TEST(err.find("missing") != std::string::npos, err);
}

// ---- save with compress ----------------------------------------------------

BOOST_AUTO_TEST_CASE(directory_saves_compress_every_layer) {
  fixture f;
  std::vector<layer_blob> layers{make_layer("bottom", packing::plain),
                                 make_layer("middle", packing::gzip)};
  if (have_zstd())
    layers.push_back(make_layer("top", packing::zstd));
  auto src = make_layout(f.at("src"), "compress me", layers);
  auto img = load(f.store(), f.at("src"));

  struct want {
    const char* name;
    std::string manifest_type;
    const char* layer_type;
  };
  for (auto& w :
       {want{"oci-dir", std::string{oci_manifest_type}, oci_gzip},
        want{"docker-dir", std::string{docker_manifest_type}, docker_gzip}}) {
    BOOST_TEST_CONTEXT(w.name) {
      auto out = f.at(w.name);
      save_to(f.store(), img, image_format::directory, w.manifest_type, true,
              out);
      std::string body;
      auto m = saved_manifest(out, body);
      BOOST_TEST(m.media_type == w.manifest_type);
      BOOST_TEST(m.config_digest == src.config_digest);
      BOOST_REQUIRE_EQUAL(m.layers.size(), layers.size());
      for (size_t i = 0; i < m.layers.size(); ++i) {
        auto bytes = read_file(out / hex(m.layers[i].digest));
        BOOST_TEST(m.layers[i].media_type == w.layer_type);
        BOOST_TEST(is_gzip(bytes));
        BOOST_TEST(digest_of(bytes) == m.layers[i].digest);
        BOOST_TEST(m.layers[i].size == int64_t(bytes.size()));
      }
      // The gzip layer was stored so and is written as it is.
      BOOST_TEST(m.layers[1].digest == src.layer_digests[1]);

      // Loaded into another store, it is the same image.
      fixture other;
      auto back = load(other.store(), out);
      BOOST_TEST(back.id == img.id);
      for (size_t i = 0; i < back.layers.size(); ++i)
        BOOST_TEST(back.layers[i].diff_id == layers[i].diff_id);
    }
  }

  // An OCI layout export compresses too; without compress, layers stay as
  // they are stored.
  save_to(f.store(), img, image_format::oci_layout, "", true, f.at("oci"));
  auto index = read_file(f.at("oci") / "index.json");
  auto at = index.find("sha256:");
  BOOST_REQUIRE(at != std::string::npos);
  auto layout_manifest = index.substr(at, 71);
  std::string body =
      read_file(f.at("oci") / "blobs" / "sha256" / hex(layout_manifest));
  BOOST_TEST(digest_of(body) == layout_manifest);
  image_manifest lm;
  std::string err;
  BOOST_REQUIRE_MESSAGE(parse_image_manifest(body, lm, err), err);
  for (auto& l : lm.layers) {
    BOOST_TEST(l.media_type == oci_gzip);
    BOOST_TEST(
        is_gzip(read_file(f.at("oci") / "blobs" / "sha256" / hex(l.digest))));
  }
  save_to(f.store(), img, image_format::directory, "", false, f.at("plain"));
  auto m = saved_manifest(f.at("plain"), body);
  BOOST_TEST(body == read_file(f.at("src") / "blobs" / "sha256" /
                               hex(src.manifest_digest)));
  BOOST_TEST(m.layers[0].media_type == oci_plain);
  BOOST_TEST(!is_gzip(read_file(f.at("plain") / hex(m.layers[0].digest))));
}

BOOST_AUTO_TEST_CASE(archives_ignore_compress) {
  fixture f;
  auto src = make_layout(f.at("src"), "archive",
                         {make_layer("plain archive", packing::plain)});
  auto img = load(f.store(), f.at("src"));
  save_to(f.store(), img, image_format::oci_archive, "", true, f.at("a.tar"));
  // The layer goes into the archive as stored: plain, under its digest.
  BOOST_TEST(run("mkdir " + f.at("a").string() + " && tar -C " +
                 f.at("a").string() + " -xf " + f.at("a.tar").string()));
  BOOST_TEST(read_file(f.at("a") / "index.json").find(src.manifest_digest) !=
             std::string::npos);
  BOOST_TEST(
      fs::exists(f.at("a") / "blobs" / "sha256" / hex(src.layer_digests[0])));
}

// ---- blobs live as long as an image names them -----------------------------

// One layer (same diff ID, so one unpacked layer) stored by two images under
// two compressions: the blob the layer record does not name is still the
// other image's, and goes with it.
BOOST_AUTO_TEST_CASE(blob_of_another_compression_goes_with_its_image) {
  fixture f;
  auto plain = make_layout(f.at("plain"), "plain one",
                           {make_layer("shared", packing::plain)});
  auto gz = make_layout(f.at("gz"), "gzip one",
                        {make_layer("shared", packing::gzip)});
  auto a = load(f.store(), f.at("gz"));
  auto b = load(f.store(), f.at("plain"));
  BOOST_REQUIRE_EQUAL(a.layers[0].chain_id, b.layers[0].chain_id);
  BOOST_TEST(contains_all(blob_files(f.store()), blobs_of(plain)));
  BOOST_TEST(contains_all(blob_files(f.store()), blobs_of(gz)));

  std::string err;
  BOOST_REQUIRE_MESSAGE(f.store().remove(b.id, err), err);
  BOOST_TEST(blob_files(f.store()) == blobs_of(gz));
  BOOST_TEST(fs::exists(f.store().layer_path(a.layers[0].chain_id)));

  // Removed the other way round, the layer stays and records the blob
  // the remaining image has for it.
  b = load(f.store(), f.at("plain"));
  BOOST_REQUIRE_MESSAGE(f.store().remove(a.id, err), err);
  BOOST_TEST(blob_files(f.store()) == blobs_of(plain));
  image_record left;
  BOOST_REQUIRE(f.store().get(b.id, left));
  BOOST_TEST(left.layers[0].blob == plain.layer_digests[0]);
  BOOST_TEST(left.layers[0].media_type == oci_plain);
  BOOST_TEST(fs::exists(f.store().layer_path(b.layers[0].chain_id)));

  BOOST_REQUIRE_MESSAGE(f.store().remove(b.id, err), err);
  BOOST_TEST(blob_files(f.store()).empty());
  BOOST_TEST(fs::is_empty(f.root / "layers"));

  // Nothing left behind for `open` either.
  f.open();
  BOOST_TEST(blob_files(f.store()).empty());
}

// The same image (one config) stored again under another manifest keeps
// both manifests' blobs until it is removed.
BOOST_AUTO_TEST_CASE(image_stored_twice_keeps_and_drops_both_manifests) {
  fixture f;
  auto plain = make_layout(f.at("plain"), "same image",
                           {make_layer("twice", packing::plain)});
  auto gz = make_layout(f.at("gz"), "same image",
                        {make_layer("twice", packing::gzip)});
  BOOST_REQUIRE_EQUAL(plain.config_digest, gz.config_digest);
  auto first = load(f.store(), f.at("plain"));
  auto second = load(f.store(), f.at("gz"));
  BOOST_REQUIRE_EQUAL(first.id, second.id);
  BOOST_TEST(f.store().count() == 1);
  auto all = blobs_of(plain);
  all.merge(blobs_of(gz));
  BOOST_TEST(blob_files(f.store()) == all);

  // A re-open does not take them for leftovers.
  f.open();
  BOOST_TEST(blob_files(f.store()) == all);

  std::string err;
  BOOST_REQUIRE_MESSAGE(f.store().remove(first.id, err), err);
  BOOST_TEST(blob_files(f.store()).empty());
}

BOOST_AUTO_TEST_CASE(shared_blobs_stay_while_an_image_names_them) {
  fixture f;
  auto base = make_layer("base", packing::gzip);
  auto one = make_layout(f.at("one"), "one",
                         {base, make_layer("one top", packing::gzip)});
  auto two = make_layout(f.at("two"), "two",
                         {base, make_layer("two top", packing::plain)});
  auto a = load(f.store(), f.at("one"));
  auto b = load(f.store(), f.at("two"));
  std::string err;
  BOOST_REQUIRE_MESSAGE(f.store().remove(a.id, err), err);
  auto left = blob_files(f.store());
  BOOST_TEST(left == blobs_of(two));
  BOOST_TEST(left.count(hex(one.layer_digests[0])) == 1u);
  BOOST_TEST(
      contains_none(left, {hex(one.layer_digests[1]), hex(one.config_digest),
                           hex(one.manifest_digest)}));
  BOOST_REQUIRE_MESSAGE(f.store().remove(b.id, err), err);
  BOOST_TEST(blob_files(f.store()).empty());
}

// ---- crash safety and old stores -------------------------------------------

BOOST_AUTO_TEST_CASE(open_removes_blobs_no_image_names) {
  fixture f;
  auto l =
      make_layout(f.at("img"), "kept", {make_layer("kept", packing::gzip)});
  load(f.store(), f.at("img"));
  // What a removal that committed and then crashed leaves: an unnamed file.
  auto stray = std::string(64, 'a');
  write(f.root / "blobs" / "sha256" / stray, "left over");
  f.open();
  BOOST_TEST(blob_files(f.store()) == blobs_of(l));
}

// What a killed pull left (a work directory, an unpacked layer no image
// records) is gone from tmp/ and layers/ as soon as the store is open, and
// from the disk once the background deletion is done; what images use
// stays.
BOOST_AUTO_TEST_CASE(open_moves_leftovers_away_then_deletes_them) {
  fixture f;
  auto l =
      make_layout(f.at("img"), "kept", {make_layer("kept", packing::gzip)});
  load(f.store(), f.at("img"));
  auto layers_before = std::distance(fs::directory_iterator{f.root / "layers"},
                                     fs::directory_iterator{});
  for (auto* dir : {"tmp/work-abc123/diff/usr/bin", "layers/"
                    "0123456789abcdef0123456789abcdef0123456789abcdef01234567"
                    "89abcdef/diff/etc"}) {
    fs::create_directories(f.root / dir);
    for (int i = 0; i < 200; ++i)
      write(f.root / dir / ("f" + std::to_string(i)), "x");
  }
  f.open();
  BOOST_TEST(fs::is_empty(f.root / "tmp"));
  BOOST_TEST(std::distance(fs::directory_iterator{f.root / "layers"},
                           fs::directory_iterator{}) == layers_before);
  // The deletion runs on its own thread: wait for it to finish.
  for (int i = 0; i < 600 && fs::exists(f.root / "trash"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  BOOST_TEST(!fs::exists(f.root / "trash"));
  BOOST_TEST(blob_files(f.store()) == blobs_of(l));
}

BOOST_AUTO_TEST_CASE(commit_refuses_an_image_whose_blob_went) {
  fixture f;
  make_layout(f.at("img"), "vanishing", {make_layer("gone", packing::gzip)});
  std::vector<image_record> out;
  std::string err;
  BOOST_REQUIRE_MESSAGE(
      load_images(f.store(), {f.at("img").string(), ""}, quiet(), out, err),
      err);
  fs::remove(f.store().blob_path(out[0].layers[0].blob));
  BOOST_TEST(!f.store().commit_image(out[0], err));
  BOOST_TEST(err.find("was removed while the image was stored") !=
                 std::string::npos,
             err);
  BOOST_TEST(f.store().count() == 0);
}

// A store written before image_blobs: the layer records the gzip blob, the
// second image's manifest names the plain one. Opening fills image_blobs
// from the manifests, so the plain blob is neither taken for a leftover nor
// kept after its image goes.
BOOST_AUTO_TEST_CASE(store_from_before_image_blobs_is_migrated) {
  fixture f;
  auto gz = make_layout(f.at("gz"), "old gzip",
                        {make_layer("old layer", packing::gzip)});
  auto plain = make_layout(f.at("plain"), "old plain",
                           {make_layer("old layer", packing::plain)});
  auto a = load(f.store(), f.at("gz"));
  auto b = load(f.store(), f.at("plain"));
  {
    // As the code before image_blobs left it.
    database db;
    std::string err;
    BOOST_REQUIRE_MESSAGE(db.open((f.root / "state.db").string(), err), err);
    BOOST_REQUIRE_MESSAGE(
        db.exec("DROP TABLE image_blobs; PRAGMA user_version = 0;", err), err);
  }
  f.open();
  auto all = blobs_of(gz);
  all.merge(blobs_of(plain));
  BOOST_TEST(blob_files(f.store()) == all);
  {
    database db;
    std::string err;
    BOOST_REQUIRE_MESSAGE(db.open((f.root / "state.db").string(), err), err);
    statement v{db, "PRAGMA user_version"};
    BOOST_REQUIRE(v.step());
    BOOST_TEST(v.integer(0) == 1);
  }

  std::string err;
  BOOST_REQUIRE_MESSAGE(f.store().remove(b.id, err), err);
  BOOST_TEST(blob_files(f.store()) == blobs_of(gz));
  BOOST_REQUIRE_MESSAGE(f.store().remove(a.id, err), err);
  BOOST_TEST(blob_files(f.store()).empty());
}
