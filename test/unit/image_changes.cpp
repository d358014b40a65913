// image_store: its image count and generation move with every committed
// change to images and names, and stay put for reads, so views cached by
// generation (ListImages) and the shared count (GetInfo) are never stale.
#define BOOST_TEST_MODULE image_changes
#include <boost/test/unit_test.hpp>

#include "support.hpp"

#include "storage/digest.hpp"
#include "storage/image_store.hpp"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

using namespace berth::storage;
using berth::testing::temp_dir;

namespace {

struct store_fixture {
  temp_dir root{"/tmp/berth-image-store-"};
  std::shared_ptr<std::atomic<int64_t>> shared =
      std::make_shared<std::atomic<int64_t>>(-1);
  image_store store{shared};

  store_fixture() {
    std::string err;
    BOOST_REQUIRE_MESSAGE(store.open(root.path.string(), err), err);
  }

  /// Stores a config blob carrying `label` and commits an image of one
  /// layer made from it under `names`; returns the image ID.
  std::string add(const std::string& label, std::vector<std::string> names) {
    auto config = R"({"architecture":"amd64","os":"linux",)"
                  R"("config":{"Labels":{"test":")" +
                  label +
                  R"("}},"rootfs":{"type":"layers",)"
                  R"("diff_ids":[]}})";
    sha256 h;
    h.update(config.data(), config.size());
    auto digest = h.digest();
    std::string err;
    auto file = store.make_temp_dir(err) + "/config";
    BOOST_REQUIRE_MESSAGE(err.empty(), err);
    std::ofstream{file} << config;
    BOOST_REQUIRE_MESSAGE(store.put_blob(digest, file, err), err);
    // The store refuses an image whose files are missing: the manifest
    // blob and the layer directory are put in place too.
    auto manifest = "manifest of " + label;
    sha256 mh;
    mh.update(manifest.data(), manifest.size());
    auto mfile = store.make_temp_dir(err) + "/manifest";
    std::ofstream{mfile} << manifest;
    BOOST_REQUIRE_MESSAGE(store.put_blob(mh.digest(), mfile, err), err);
    image_record img;
    img.id = h.hex();
    img.names = std::move(names);
    img.manifest_digest = mh.digest();
    img.manifest_type = "application/vnd.oci.image.manifest.v1+json";
    img.created = "2024-01-01T00:00:00Z";
    img.layers.push_back({img.id.substr(0, 32) + img.id.substr(0, 32),
                          "sha256:" + img.id, "sha256:" + img.id,
                          "application/vnd.oci.image.layer.v1.tar+gzip", 10});
    auto layer = store.make_temp_dir(err);
    BOOST_REQUIRE(std::filesystem::create_directory(layer + "/diff"));
    BOOST_REQUIRE_MESSAGE(
        store.put_layer(img.layers[0].chain_id, layer, err), err);
    BOOST_REQUIRE_MESSAGE(store.commit_image(img, err), err);
    return img.id;
  }

  /// Image ID -> its names, as the store lists them.
  std::map<std::string, std::set<std::string>> listed() {
    std::map<std::string, std::set<std::string>> out;
    for (auto& img : store.list())
      out[img.id] = {img.names.begin(), img.names.end()};
    return out;
  }

  /// The count after a change agrees with the list, in the store and in
  /// the counter it shares.
  void check_count(int64_t want) {
    BOOST_TEST(store.count() == want);
    BOOST_TEST(shared->load() == want);
    BOOST_TEST(store.list().size() == size_t(want));
  }
};

using names = std::set<std::string>;

} // namespace

BOOST_FIXTURE_TEST_CASE(open_counts_what_is_stored, store_fixture) {
  check_count(0);
  add("a", {"example.org/a:1"});
  add("b", {});
  image_store again;
  std::string err;
  BOOST_REQUIRE_MESSAGE(again.open(root.path.string(), err), err);
  BOOST_TEST(again.count() == 2);
}

BOOST_FIXTURE_TEST_CASE(count_follows_commits_and_removals, store_fixture) {
  auto a = add("a", {"example.org/a:1"});
  check_count(1);
  // The same image again only gains a name.
  add("a", {"example.org/a:2"});
  check_count(1);
  auto b = add("b", {"example.org/b:1"});
  check_count(2);
  std::string err;
  BOOST_TEST_REQUIRE(store.remove(a, err), err);
  check_count(1);
  BOOST_TEST_REQUIRE(store.remove(b, err), err);
  check_count(0);
}

BOOST_FIXTURE_TEST_CASE(reads_leave_the_generation, store_fixture) {
  auto a = add("a", {"example.org/a:1"});
  auto before = store.generation();
  image_record img;
  std::string why;
  BOOST_TEST(store.list().size() == 1u);
  BOOST_TEST(store.get(a, img));
  BOOST_TEST(int(store.resolve("example.org/a:1", img, why)) ==
             int(lookup::found));
  BOOST_TEST(int(store.resolve("nothing", img, why)) == int(lookup::not_found));
  BOOST_TEST(store.count() == 1);
  BOOST_TEST(store.has_layer(img.layers.at(0).chain_id));
  BOOST_TEST(store.generation() == before);
}

BOOST_FIXTURE_TEST_CASE(every_change_moves_the_generation, store_fixture) {
  std::string err;
  auto step = [&, last = store.generation()](const char* what) mutable {
    BOOST_TEST_INFO("after " << what);
    BOOST_TEST(store.generation() != last);
    last = store.generation();
  };
  auto a = add("a", {"example.org/a:1"});
  step("commit");
  auto b = add("b", {"example.org/b:1"});
  step("commit of another image");
  BOOST_TEST(listed() ==
             (std::map<std::string, names>{{a, {"example.org/a:1"}},
                                           {b, {"example.org/b:1"}}}));

  BOOST_TEST_REQUIRE(store.tag(a, "example.org/a:2", err), err);
  step("tag");
  BOOST_TEST(listed()[a] == (names{"example.org/a:1", "example.org/a:2"}));

  // A name moves from the image that had it.
  BOOST_TEST_REQUIRE(store.tag(b, "example.org/a:1", err), err);
  step("tag moving a name");
  BOOST_TEST(listed()[a] == names{"example.org/a:2"});
  BOOST_TEST(listed()[b] == (names{"example.org/a:1", "example.org/b:1"}));

  BOOST_TEST_REQUIRE(store.untag("example.org/b:1", err), err);
  step("untag");
  BOOST_TEST(listed()[b] == names{"example.org/a:1"});

  add("b", {"example.org/b:2"});
  step("commit adding a name");
  BOOST_TEST(listed()[b] == (names{"example.org/a:1", "example.org/b:2"}));

  BOOST_TEST_REQUIRE(store.remove(a, err), err);
  step("remove");
  BOOST_TEST(listed().count(a) == 0u);
}

BOOST_FIXTURE_TEST_CASE(untag_of_an_unknown_name_changes_nothing,
                        store_fixture) {
  add("a", {"example.org/a:1"});
  auto before = store.generation();
  std::string err;
  BOOST_TEST(!store.untag("example.org/none:1", err));
  BOOST_TEST(err.empty());
  BOOST_TEST(store.generation() == before);
  check_count(1);
}
