// push_image and search_images against a real docker-registry on
// 127.0.0.1: images are made here, uploaded with registry_client, pulled
// into a store in a temp dir, then pushed and searched for.
#define BOOST_TEST_MODULE push
#include <boost/test/unit_test.hpp>

#include "storage/digest.hpp"
#include "storage/image_config.hpp"
#include "storage/image_store.hpp"
#include "storage/pull.hpp"
#include "storage/push.hpp"
#include "storage/registry.hpp"
#include "storage/search.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <simdjson.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

namespace fs = std::filesystem;
using namespace berth::storage;
using namespace std::chrono_literals;

namespace {

constexpr const char* oci_gzip = "application/vnd.oci.image.layer.v1.tar+gzip";
constexpr const char* oci_plain = "application/vnd.oci.image.layer.v1.tar";
constexpr const char* oci_zstd = "application/vnd.oci.image.layer.v1.tar+zstd";
constexpr const char* docker_gzip =
    "application/vnd.docker.image.rootfs.diff.tar.gzip";
constexpr const char* oci_config = "application/vnd.oci.image.config.v1+json";
constexpr const char* docker_config =
    "application/vnd.docker.container.image.v1+json";

// ---- processes and files ---------------------------------------------------

std::string sha256_of(std::string_view data) {
  sha256 h;
  h.update(data.data(), data.size());
  return h.digest();
}

std::string read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, std::string_view text) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out << text;
}

bool run(const std::string& command) {
  return std::system(command.c_str()) == 0;
}

/// A directory under /tmp, removed with the object.
struct temp_dir {
  fs::path path;
  explicit temp_dir(const std::string& tag) {
    std::string t = "/tmp/berth-unit-push-" + tag + "-XXXXXX";
    if (::mkdtemp(t.data()))
      path = t;
  }
  ~temp_dir() {
    std::error_code ec;
    if (!path.empty())
      fs::remove_all(path, ec);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;
};

sockaddr_in loopback(int port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// A loopback port nobody listens on right now.
int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  auto a = loopback(0);
  socklen_t len = sizeof a;
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bool port_open(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  auto a = loopback(port);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

/// docker-registry serving a temp dir on a free loopback port; it dies
/// with the test process even if that is killed.
class registry_server {
public:
  /// `storage_extra` goes under `storage:`, indented by two; `extra` at
  /// the top level.
  explicit registry_server(const std::string& storage_extra = "",
                           const std::string& extra = "") {
    if (dir_.path.empty()) {
      error_ = "cannot make a temp dir";
      return;
    }
    port_ = free_port();
    auto config = dir_.path / "config.yml";
    write_text(config, "version: 0.1\n"
                       "log:\n  level: error\n  accesslog:\n"
                       "    disabled: true\n"
                       "storage:\n  filesystem:\n    rootdirectory: " +
                           (dir_.path / "data").string() + "\n" +
                           storage_extra + "http:\n  addr: " + address() +
                           "\n" + extra);
    pid_ = spawn({"/usr/bin/docker-registry", "serve", config.string()});
    wait_until_listening();
  }

  ~registry_server() { stop(); }

  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
  const std::string& error() const { return error_; }

private:
  pid_t spawn(const std::vector<std::string>& argv) {
    auto log = dir_.path / "registry.log";
    pid_t pid = ::fork();
    if (pid != 0)
      return pid;
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    ::dup2(fd, 1);
    ::dup2(fd, 2);
    std::vector<char*> args;
    for (auto& a : argv)
      args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    ::_exit(127);
  }

  void wait_until_listening() {
    for (int i = 0; i < 150; ++i) {
      if (port_open(port_))
        return;
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
        pid_ = -1;
        error_ =
            "docker-registry exited: " + read_text(dir_.path / "registry.log");
        return;
      }
      std::this_thread::sleep_for(100ms);
    }
    error_ = "docker-registry did not listen on " + address();
  }

  void stop() {
    if (pid_ <= 0)
      return;
    ::kill(pid_, SIGTERM);
    for (int i = 0; i < 50; ++i) {
      if (::waitpid(pid_, nullptr, WNOHANG) == pid_)
        return;
      std::this_thread::sleep_for(100ms);
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }

  temp_dir dir_{"registry"};
  int port_ = 0;
  pid_t pid_ = -1;
  std::string error_;
};

/// An `auth:` section asking for alice:s3cret from an htpasswd file in
/// `dir` (bcrypt, from htpasswd or python's crypt); empty when neither can
/// make one here.
std::string htpasswd_auth(const fs::path& dir) {
  auto file = (dir / "htpasswd").string();
  std::string script = "import crypt,sys;"
                       "print('alice:'+crypt.crypt('s3cret',"
                       "crypt.mksalt(crypt.METHOD_BLOWFISH,rounds=16)))";
  if (!run("htpasswd -BbnC 4 alice s3cret > " + file + " 2>/dev/null") &&
      !run("python3 -W ignore -c \"" + script + "\" > " + file +
           " 2>/dev/null"))
    return {};
  if (read_text(file).find("alice:$2") != 0)
    return {};
  return "auth:\n  htpasswd:\n    realm: berth\n    path: " + file + "\n";
}

// ---- images made on the spot -----------------------------------------------

enum class compression { gzip, none, zstd };

struct test_layer {
  std::string blob, digest, media_type, diff_id;
};

struct test_image {
  std::vector<test_layer> layers; ///< bottom first
  std::string config, config_digest;
  std::string manifest, manifest_digest, media_type;
  const std::string& layer_digest() const { return layers.at(0).digest; }
};

/// A layer holding one file, `name`, that says `text`.
test_layer make_layer(const std::string& name, const std::string& text,
                      compression c, bool docker) {
  temp_dir dir{"layer"};
  BOOST_REQUIRE(!dir.path.empty());
  fs::create_directories(dir.path / "rootfs");
  write_text(dir.path / "rootfs" / name, text + "\n");
  auto tar = (dir.path / "layer.tar").string();
  BOOST_REQUIRE(run("tar -C " + (dir.path / "rootfs").string() +
                    " --mtime=@0 --owner=0 --group=0 -cf " + tar + " " + name));
  test_layer l;
  l.diff_id = sha256_of(read_text(tar));
  if (c == compression::gzip) {
    BOOST_REQUIRE(run("gzip -n " + tar));
    l.blob = read_text(tar + ".gz");
    l.media_type = docker ? docker_gzip : oci_gzip;
  } else if (c == compression::zstd) {
    BOOST_REQUIRE(run("zstd -q " + tar));
    l.blob = read_text(tar + ".zst");
    l.media_type = oci_zstd;
  } else {
    l.blob = read_text(tar);
    l.media_type = oci_plain;
  }
  l.digest = sha256_of(l.blob);
  return l;
}

std::string descriptor_json(const std::string& media_type,
                            const std::string& digest, size_t size) {
  return R"({"mediaType":")" + media_type + R"(","digest":")" + digest +
         R"(","size":)" + std::to_string(size) + "}";
}

/// An image of `layer_count` layers whose files and config carry `text`,
/// so that every text makes different digests.
test_image make_image(const std::string& text, compression c = {},
                      bool docker = false, int layer_count = 1) {
  test_image img;
  std::string diff_ids, descriptors;
  for (int i = 0; i < layer_count; ++i) {
    auto& l = img.layers.emplace_back(make_layer(
        "file" + std::to_string(i), text + " " + std::to_string(i), c, docker));
    diff_ids += (i ? ",\"" : "\"") + l.diff_id + "\"";
    descriptors +=
        (i ? "," : "") + descriptor_json(l.media_type, l.digest, l.blob.size());
  }
  img.config = R"({"architecture":"amd64","os":"linux",)"
               R"("config":{"Cmd":["/bin/sh"],"Labels":{"text":")" +
               text + R"("}},"rootfs":{"type":"layers","diff_ids":[)" +
               diff_ids + "]}}";
  img.config_digest = sha256_of(img.config);
  img.media_type = docker ? docker_manifest_type : oci_manifest_type;
  img.manifest = R"({"schemaVersion":2,"mediaType":")" + img.media_type +
                 R"(","config":)" +
                 descriptor_json(docker ? docker_config : oci_config,
                                 img.config_digest, img.config.size()) +
                 R"(,"layers":[)" + descriptors + "]}";
  img.manifest_digest = sha256_of(img.manifest);
  return img;
}

registry_options plain_http() {
  registry_options o;
  o.tls_verify = false;
  o.retries = 1;
  o.retry_delay = 10ms;
  o.timeout = 10s;
  return o;
}

/// Uploads `img` as repo:tag with the registry client alone.
void upload(registry_client& c, const std::string& repo, const std::string& tag,
            const test_image& img) {
  std::string err;
  for (auto& l : img.layers)
    BOOST_REQUIRE_MESSAGE(c.push_blob(repo, l.digest, l.blob, err), err);
  BOOST_REQUIRE_MESSAGE(c.push_blob(repo, img.config_digest, img.config, err),
                        err);
  BOOST_REQUIRE_MESSAGE(
      c.put_manifest(repo, tag, img.media_type, img.manifest, err), err);
}

void upload(const std::string& registry, const std::string& repo,
            const std::string& tag, const test_image& img) {
  registry_client c(registry, plain_http());
  upload(c, repo, tag, img);
}

manifest fetch_manifest(const std::string& registry, const std::string& repo,
                        const std::string& tag) {
  registry_client c(registry, plain_http());
  manifest m;
  std::string err;
  BOOST_REQUIRE_MESSAGE(c.get_manifest_raw(repo, tag, m, err), err);
  return m;
}

std::string config_media_type(const std::string& manifest_body) {
  simdjson::dom::parser parser;
  std::string_view type;
  if (parser.parse(manifest_body)["config"]["mediaType"].get(type))
    return {};
  return std::string(type);
}

/// Progress lines as a caller collects them; `cancel` stops the work.
struct progress {
  std::mutex mtx;
  std::string text;
  bool cancel = false;

  pull_events events() {
    return {[this](std::string line) {
              std::lock_guard guard{mtx};
              text += line;
            },
            [this] { return cancel; }};
  }
  bool says(const std::string& s) { return text.find(s) != std::string::npos; }
};

std::string short_hex(const std::string& digest) {
  return digest.substr(7, 12);
}

// ---- the shared registry and store -----------------------------------------

struct world {
  static world* current;
  registry_server registry;
  temp_dir root{"store"};
  image_store store;
  std::string error;

  world() {
    error = registry.error();
    if (error.empty() && !store.open(root.path.string(), error))
      error = "opening the store: " + error;
    current = this;
  }
  ~world() { current = nullptr; }
};
world* world::current = nullptr;

world& the_world() {
  BOOST_REQUIRE(world::current);
  BOOST_REQUIRE_MESSAGE(world::current->error.empty(), world::current->error);
  return *world::current;
}

std::string reg() {
  return the_world().registry.address();
}

/// Pulls registry/repo:tag into `store` (the shared one by default).
image_record pull_into(const std::string& ref, image_store* store = nullptr) {
  auto& s = store ? *store : the_world().store;
  pull_request req;
  req.reference = ref;
  req.tls_verify = false;
  progress p;
  image_record rec;
  std::string err;
  BOOST_REQUIRE_MESSAGE(pull_image(s, req, p.events(), rec, err), err);
  BOOST_REQUIRE_MESSAGE(s.commit_image(rec, err), err);
  return rec;
}

/// Uploads `img` as repo:latest and pulls it into the shared store.
image_record seed(const std::string& repo, const test_image& img) {
  upload(reg(), repo, "latest", img);
  return pull_into(reg() + "/" + repo + ":latest");
}

push_request push_to(const std::string& image, const std::string& dest,
                     const std::string& format = "") {
  push_request req;
  req.image = image;
  req.destination = dest;
  req.format = format;
  req.tls_verify = false;
  return req;
}

bool push(const push_request& req, progress& p, std::string& err,
          push_failure& failure) {
  return push_image(the_world().store, req, p.events(), err, failure);
}

void push_ok(const push_request& req, progress& p) {
  std::string err;
  push_failure failure;
  BOOST_REQUIRE_MESSAGE(push(req, p, err, failure), err);
  BOOST_TEST((failure == push_failure::none));
}

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(world);

// ---- push ------------------------------------------------------------------

BOOST_AUTO_TEST_CASE(oci_image_pushed_as_v2s2_and_oci) {
  auto img = make_image("oci source");
  auto rec = seed("src/oci", img);
  BOOST_TEST(rec.manifest_type == oci_manifest_type);

  progress p;
  push_ok(push_to(reg() + "/src/oci", reg() + "/out/conv:v2s2", "v2s2"), p);
  auto m = fetch_manifest(reg(), "out/conv", "v2s2");
  BOOST_TEST(m.media_type == docker_manifest_type);
  image_manifest im;
  std::string err;
  BOOST_TEST_REQUIRE(parse_image_manifest(m.body, im, err), err);
  BOOST_TEST(im.media_type == docker_manifest_type);
  BOOST_TEST(im.config_digest == img.config_digest);
  BOOST_TEST(config_media_type(m.body) == docker_config);
  BOOST_TEST_REQUIRE(im.layers.size() == 1u);
  BOOST_TEST(im.layers[0].digest == img.layer_digest());
  BOOST_TEST(im.layers[0].media_type == docker_gzip);
  BOOST_TEST(im.layers[0].size == int64_t(img.layers[0].blob.size()));

  // "oci" and "" keep the stored manifest byte for byte.
  for (auto* format : {"oci", ""}) {
    progress q;
    push_ok(push_to(rec.id, reg() + "/out/conv:oci", format), q);
    m = fetch_manifest(reg(), "out/conv", "oci");
    BOOST_TEST(m.media_type == oci_manifest_type);
    BOOST_TEST(m.body == img.manifest);
  }

  // "docker" names v2s2 too; the converted manifest pulls back fine.
  progress q;
  push_ok(push_to(rec.id, reg() + "/out/conv:docker", "docker"), q);
  m = fetch_manifest(reg(), "out/conv", "docker");
  BOOST_TEST(m.media_type == docker_manifest_type);
  temp_dir other{"store2"};
  image_store fresh;
  BOOST_TEST_REQUIRE(fresh.open(other.path.string(), err), err);
  auto back = pull_into(reg() + "/out/conv:docker", &fresh);
  BOOST_TEST(back.id == rec.id);
  BOOST_TEST(back.manifest_type == docker_manifest_type);
}

BOOST_AUTO_TEST_CASE(docker_image_pushed_as_oci) {
  auto img = make_image("docker source", compression::gzip, true);
  auto rec = seed("src/docker", img);
  BOOST_TEST(rec.manifest_type == docker_manifest_type);

  progress p;
  push_ok(push_to(reg() + "/src/docker:latest", reg() + "/out/fromdocker:oci",
                  "oci"),
          p);
  auto m = fetch_manifest(reg(), "out/fromdocker", "oci");
  BOOST_TEST(m.media_type == oci_manifest_type);
  image_manifest im;
  std::string err;
  BOOST_TEST_REQUIRE(parse_image_manifest(m.body, im, err), err);
  BOOST_TEST(im.config_digest == img.config_digest);
  BOOST_TEST(config_media_type(m.body) == oci_config);
  BOOST_TEST_REQUIRE(im.layers.size() == 1u);
  BOOST_TEST(im.layers[0].digest == img.layer_digest());
  BOOST_TEST(im.layers[0].media_type == oci_gzip);

  progress q;
  push_ok(push_to(rec.id, reg() + "/out/fromdocker:same"), q);
  m = fetch_manifest(reg(), "out/fromdocker", "same");
  BOOST_TEST(m.media_type == docker_manifest_type);
  BOOST_TEST(m.digest == img.manifest_digest);
}

BOOST_AUTO_TEST_CASE(new_repository_then_existing_blobs_skipped) {
  auto img = make_image("skip me");
  auto rec = seed("src/skip", img);

  progress first;
  push_ok(push_to(rec.id, reg() + "/out/fresh:1"), first);
  BOOST_TEST_MESSAGE("first push:\n" << first.text);
  BOOST_TEST(first.text.starts_with("Getting image source signatures\n"));
  BOOST_TEST(
      first.says("Copying blob " + short_hex(img.layer_digest()) + " done\n"));
  BOOST_TEST(
      first.says("Copying config " + short_hex(img.config_digest) + " done\n"));
  BOOST_TEST(first.says("Writing manifest to image destination\n"));
  BOOST_TEST(first.text.ends_with("Storing signatures\n"));

  // The repository did not exist before the push.
  registry_client c(reg(), plain_http());
  std::vector<std::string> repos;
  std::string err;
  BOOST_TEST_REQUIRE(c.catalog(repos, 0, err), err);
  BOOST_TEST(
      (std::find(repos.begin(), repos.end(), "out/fresh") != repos.end()));

  progress again;
  push_ok(push_to(rec.id, reg() + "/out/fresh:2"), again);
  BOOST_TEST_MESSAGE("second push:\n" << again.text);
  BOOST_TEST(again.says("Copying blob " + short_hex(img.layer_digest()) +
                        " skipped: already exists\n"));
  BOOST_TEST(again.says("Copying config " + short_hex(img.config_digest) +
                        " skipped: already exists\n"));
  BOOST_TEST(!again.says(" done\n"));
  BOOST_TEST(fetch_manifest(reg(), "out/fresh", "2").digest ==
             img.manifest_digest);
}

BOOST_AUTO_TEST_CASE(layers_pushed_in_parallel_keep_their_order) {
  auto img = make_image("five layers", compression::gzip, false, 5);
  auto rec = seed("src/multi", img);
  BOOST_TEST_REQUIRE(rec.layers.size() == 5u);

  progress p;
  push_ok(push_to(rec.id, reg() + "/out/multi:1", "v2s2"), p);
  for (auto& l : img.layers)
    BOOST_TEST(p.says("Copying blob " + short_hex(l.digest) + " done\n"));
  image_manifest im;
  std::string err;
  auto m = fetch_manifest(reg(), "out/multi", "1");
  BOOST_TEST_REQUIRE(parse_image_manifest(m.body, im, err), err);
  BOOST_TEST_REQUIRE(im.layers.size() == 5u);
  for (size_t i = 0; i < 5; ++i) {
    BOOST_TEST(im.layers[i].digest == img.layers[i].digest);
    BOOST_TEST(im.layers[i].media_type == docker_gzip);
  }

  temp_dir other{"store4"};
  image_store fresh;
  BOOST_TEST_REQUIRE(fresh.open(other.path.string(), err), err);
  auto back = pull_into(reg() + "/out/multi:1", &fresh);
  BOOST_TEST(back.id == rec.id);
}

BOOST_AUTO_TEST_CASE(destination_defaults_to_the_image_name) {
  auto img = make_image("named");
  auto rec = seed("src/named", img);
  auto& store = the_world().store;
  std::string err;
  BOOST_TEST_REQUIRE(store.tag(rec.id, reg() + "/out/named:v1", err), err);

  progress p;
  push_ok(push_to(reg() + "/out/named:v1", ""), p);
  BOOST_TEST(fetch_manifest(reg(), "out/named", "v1").digest ==
             img.manifest_digest);

  // A short name goes where the stored name it matched lives.
  progress q;
  push_ok(push_to("out/named:v1", ""), q);
  BOOST_TEST(q.says("skipped: already exists"));

  // An ID says nothing about where to go when the image has two names.
  progress r;
  push_failure failure;
  BOOST_TEST(!push(push_to(rec.id, ""), r, err, failure));
  BOOST_TEST((failure == push_failure::invalid_request));
  BOOST_TEST(err == "image " + rec.id + " has 2 names; name the destination");
}

BOOST_AUTO_TEST_CASE(missing_image_and_bad_requests) {
  progress p;
  std::string err;
  push_failure failure;
  BOOST_TEST(!push(push_to("nosuch/image:latest", reg() + "/out/x:1"), p, err,
                   failure));
  BOOST_TEST((failure == push_failure::image_not_found));
  BOOST_TEST(err.find("no such image") != std::string::npos);

  auto rec = seed("src/bad", make_image("bad requests"));
  BOOST_TEST(
      !push(push_to(rec.id, reg() + "/out/x:1", "v2s1"), p, err, failure));
  BOOST_TEST((failure == push_failure::invalid_request));
  BOOST_TEST(err == "unsupported manifest format v2s1");

  BOOST_TEST(!push(push_to(rec.id, reg() + "/out/x:1", "v3"), p, err, failure));
  BOOST_TEST((failure == push_failure::invalid_request));
  BOOST_TEST(err.starts_with("unknown manifest format \"v3\""));

  auto digest = "sha256:" + std::string(64, 'a');
  BOOST_TEST(
      !push(push_to(rec.id, reg() + "/out/x@" + digest), p, err, failure));
  BOOST_TEST((failure == push_failure::invalid_request));
  BOOST_TEST(err.ends_with("cannot push to a reference with a digest"));

  BOOST_TEST(!push(push_to(rec.id, "Not A Reference"), p, err, failure));
  BOOST_TEST((failure == push_failure::invalid_request));
  BOOST_TEST(p.text.empty());
}

BOOST_AUTO_TEST_CASE(uncompressed_layers_go_gzipped) {
  auto img = make_image("plain layer", compression::none, false, 2);
  auto rec = seed("src/plain", img);
  std::string err;
  temp_dir other{"store3"};
  image_store fresh;
  BOOST_TEST_REQUIRE(fresh.open(other.path.string(), err), err);

  // Whatever the format, the registry gets gzip: the same bytes each time.
  std::string gzipped;
  for (auto [format, tag, type] : {std::tuple{"", "kept", oci_gzip},
                                   {"oci", "oci", oci_gzip},
                                   {"v2s2", "v2s2", docker_gzip}}) {
    progress p;
    push_ok(push_to(rec.id, reg() + "/out/plain:" + tag, format), p);
    auto m = fetch_manifest(reg(), "out/plain", tag);
    image_manifest im;
    BOOST_TEST_REQUIRE(parse_image_manifest(m.body, im, err), err);
    BOOST_TEST(im.config_digest == img.config_digest);
    BOOST_TEST_REQUIRE(im.layers.size() == 2u);
    for (size_t i = 0; i < 2; ++i) {
      BOOST_TEST(im.layers[i].media_type == type);
      BOOST_TEST(im.layers[i].digest != img.layers[i].digest);
      // The blob the registry holds is gzip of the stored layer.
      registry_client c(reg(), plain_http());
      std::string blob;
      BOOST_TEST_REQUIRE(
          c.get_blob("out/plain", im.layers[i].digest, blob, err), err);
      BOOST_TEST(blob.size() == size_t(im.layers[i].size));
      BOOST_TEST(blob.substr(0, 2) == "\x1f\x8b");
    }
    if (gzipped.empty())
      gzipped = im.layers[0].digest;
    BOOST_TEST(im.layers[0].digest == gzipped);

    // Pulling checks each gzip'd layer against the config's diff_id.
    auto back = pull_into(reg() + "/out/plain:" + tag, &fresh);
    BOOST_TEST(back.id == rec.id);
    BOOST_TEST_REQUIRE(back.layers.size() == 2u);
    for (size_t i = 0; i < 2; ++i)
      BOOST_TEST(back.layers[i].diff_id == rec.layers[i].diff_id);
  }
}

BOOST_AUTO_TEST_CASE(zstd_layers_stay_oci_and_go_gzip_as_v2s2) {
  if (!fs::exists("/usr/bin/zstd")) {
    BOOST_TEST_MESSAGE("skipped: no zstd here");
    return;
  }
  auto img = make_image("zstd layer", compression::zstd);
  auto rec = seed("src/zstd", img);

  progress q;
  push_ok(push_to(rec.id, reg() + "/out/zstd:oci", "oci"), q);
  BOOST_TEST(fetch_manifest(reg(), "out/zstd", "oci").digest ==
             img.manifest_digest);

  // Docker schema 2 has no zstd: the layer is recompressed with gzip.
  progress p;
  push_ok(push_to(rec.id, reg() + "/out/zstd:v2s2", "v2s2"), p);
  auto m = fetch_manifest(reg(), "out/zstd", "v2s2");
  BOOST_TEST(m.media_type == docker_manifest_type);
  image_manifest im;
  std::string err;
  BOOST_TEST_REQUIRE(parse_image_manifest(m.body, im, err), err);
  BOOST_TEST(im.config_digest == img.config_digest);
  BOOST_TEST_REQUIRE(im.layers.size() == 1u);
  BOOST_TEST(im.layers[0].media_type == docker_gzip);
  BOOST_TEST(im.layers[0].digest != img.layer_digest());
  BOOST_TEST(
      p.says("Copying blob " + short_hex(im.layers[0].digest) + " done\n"));

  temp_dir other{"store5"};
  image_store fresh;
  BOOST_TEST_REQUIRE(fresh.open(other.path.string(), err), err);
  auto back = pull_into(reg() + "/out/zstd:v2s2", &fresh);
  BOOST_TEST(back.id == rec.id);
  BOOST_TEST(back.layers.at(0).diff_id == rec.layers.at(0).diff_id);
}

// The layers are checked and sent three at once; the first of those
// requests go out before any 401 came back.
BOOST_AUTO_TEST_CASE(five_layers_to_a_basic_auth_registry) {
  temp_dir auth{"htpasswd"};
  auto conf = htpasswd_auth(auth.path);
  if (conf.empty()) {
    BOOST_TEST_MESSAGE("skipped: no way to make a bcrypt htpasswd here");
    return;
  }
  registry_server secured{"", conf};
  BOOST_TEST_REQUIRE(secured.error().empty(), secured.error());
  auto img = make_image("five layers, basic auth", compression::gzip, false, 5);
  auto rec = seed("src/basic5", img);

  for (auto* tag : {"1", "2"}) {
    auto req = push_to(rec.id, secured.address() + "/out/five:" + tag);
    req.creds = "alice:s3cret";
    progress p;
    push_ok(req, p);
  }
  registry_options o = plain_http();
  o.username = "alice";
  o.password = "s3cret";
  registry_client c(secured.address(), o);
  manifest m;
  std::string err;
  BOOST_TEST_REQUIRE(c.get_manifest_raw("out/five", "2", m, err), err);
  BOOST_TEST(m.digest == img.manifest_digest);

  // Pulled back with the layers fetched in parallel.
  temp_dir other{"store6"};
  image_store fresh;
  BOOST_TEST_REQUIRE(fresh.open(other.path.string(), err), err);
  pull_request pull;
  pull.reference = secured.address() + "/out/five:1";
  pull.tls_verify = false;
  pull.creds = "alice:s3cret";
  progress p;
  image_record back;
  BOOST_TEST_REQUIRE(pull_image(fresh, pull, p.events(), back, err), err);
  BOOST_TEST(back.id == rec.id);
  BOOST_TEST(back.layers.size() == 5u);

  // Without credentials the registry refuses.
  progress q;
  push_failure failure;
  BOOST_TEST(!push(push_to(rec.id, secured.address() + "/out/five:3"), q, err,
                   failure));
  BOOST_TEST(err.find("unauthorized") != std::string::npos, err);
}

BOOST_AUTO_TEST_CASE(registry_errors_carry_the_reason) {
  auto rec = seed("src/errors", make_image("errors"));

  registry_server readonly{"  maintenance:\n    readonly:\n"
                           "      enabled: true\n"};
  BOOST_TEST_REQUIRE(readonly.error().empty(), readonly.error());
  progress p;
  std::string err;
  push_failure failure;
  BOOST_TEST(!push(push_to(rec.id, readonly.address() + "/out/ro:1"), p, err,
                   failure));
  BOOST_TEST_MESSAGE("read-only registry: " << err);
  BOOST_TEST((failure == push_failure::failed));
  BOOST_TEST(err.starts_with("pushing " + readonly.address() + "/out/ro:1: "));
  BOOST_TEST(err.ends_with("/out/ro: unexpected HTTP status 405: Method not "
                           "allowed"));

  auto closed = "127.0.0.1:" + std::to_string(free_port());
  BOOST_TEST(!push(push_to(rec.id, closed + "/out/gone:1"), p, err, failure));
  BOOST_TEST_MESSAGE("closed port: " << err);
  BOOST_TEST((failure == push_failure::failed));
  BOOST_TEST(err.starts_with("pushing " + closed + "/out/gone:1: "));
}

BOOST_AUTO_TEST_CASE(cancelled_push) {
  auto rec = seed("src/cancel", make_image("cancel"));
  progress p;
  p.cancel = true;
  std::string err;
  push_failure failure;
  BOOST_TEST(!push(push_to(rec.id, reg() + "/out/cancel:1"), p, err, failure));
  BOOST_TEST(err == "pushing " + reg() + "/out/cancel:1: cancelled");
}

// ---- search
// ------------------------------------------------------------------

namespace {

/// A registry of its own holding busybox, busybox5 and alpine.
struct search_fixture {
  registry_server server;
  std::string addr = server.address();

  search_fixture() {
    BOOST_TEST_REQUIRE(server.error().empty(), server.error());
    auto img = make_image("search");
    for (auto* repo : {"busybox", "busybox5", "alpine"})
      upload(addr, repo, "latest", img);
  }

  search_request query(const std::string& text) const {
    search_request req;
    req.query = text;
    req.search_registries = {addr};
    req.insecure_registries = {addr};
    return req;
  }

  std::vector<search_result> results(const search_request& req) const {
    std::vector<search_result> out;
    std::string err;
    BOOST_TEST_REQUIRE(search_images(req, out, err), err);
    return out;
  }
};

} // namespace

BOOST_FIXTURE_TEST_CASE(search_the_catalog, search_fixture) {
  auto found = results(query("busy"));
  BOOST_TEST_REQUIRE(found.size() == 2u);
  BOOST_TEST(found[0].name == addr + "/busybox");
  BOOST_TEST(found[1].name == addr + "/busybox5");
  for (auto& r : found) {
    BOOST_TEST(r.registry == addr);
    BOOST_TEST(r.description.empty());
    BOOST_TEST(r.star_count == 0);
    BOOST_TEST(!r.is_official);
    BOOST_TEST(!r.is_automated);
  }

  auto req = query("busy");
  req.limit = 1;
  BOOST_TEST(results(req).size() == 1u);
  req.limit = 0;
  BOOST_TEST(results(req).size() == 2u);

  BOOST_TEST(results(query("")).size() == 3u);
  BOOST_TEST(results(query("nothing")).empty());

  // tlsVerify=false instead of the insecure list.
  req = query("alp");
  req.insecure_registries.clear();
  req.tls_verify = false;
  found = results(req);
  BOOST_TEST_REQUIRE(found.size() == 1u);
  BOOST_TEST(found[0].name == addr + "/alpine");
}

BOOST_FIXTURE_TEST_CASE(search_filters, search_fixture) {
  auto req = query("busy");
  req.is_official = true;
  BOOST_TEST(results(req).empty());
  req.is_official = false;
  BOOST_TEST(results(req).size() == 2u);
  req.is_automated = true;
  BOOST_TEST(results(req).empty());
  req.is_automated = false;
  req.star_count = 1;
  BOOST_TEST(results(req).empty());
  req.star_count = 0;
  BOOST_TEST(results(req).size() == 2u);
}

BOOST_FIXTURE_TEST_CASE(search_a_named_registry, search_fixture) {
  auto req = query(addr + "/busy");
  req.search_registries.clear();
  auto found = results(req);
  BOOST_TEST_REQUIRE(found.size() == 2u);
  BOOST_TEST(found[0].name == addr + "/busybox");
  BOOST_TEST(found[0].registry == addr);

  // Without registries to ask there is nothing to find.
  req = query("busy");
  req.search_registries.clear();
  BOOST_TEST(results(req).empty());
}

BOOST_FIXTURE_TEST_CASE(search_unreachable_registries, search_fixture) {
  auto closed = "127.0.0.1:" + std::to_string(free_port());
  auto req = query("busy");
  req.search_registries = {closed};
  req.insecure_registries.push_back(closed);
  std::vector<search_result> out;
  std::string err;
  BOOST_TEST(!search_images(req, out, err));
  BOOST_TEST_MESSAGE("unreachable: " << err);
  BOOST_TEST(err.starts_with("listing repositories in " + closed + ": "));
  BOOST_TEST(out.empty());

  req.search_registries = {closed, addr};
  auto found = results(req);
  BOOST_TEST_REQUIRE(found.size() == 2u);
  BOOST_TEST(found[0].registry == addr);
}

BOOST_AUTO_TEST_CASE(search_limit_defaults_to_25) {
  registry_server server;
  BOOST_TEST_REQUIRE(server.error().empty(), server.error());
  auto addr = server.address();
  auto img = make_image("many");
  registry_client c(addr, plain_http());
  for (int i = 0; i < 27; ++i)
    upload(c, "many/r" + std::to_string(100 + i), "latest", img);
  search_request req;
  req.query = addr + "/many/r";
  req.tls_verify = false;
  std::vector<search_result> out;
  std::string err;
  BOOST_TEST_REQUIRE(search_images(req, out, err), err);
  BOOST_TEST(out.size() == 25u);
  req.limit = 30;
  BOOST_TEST_REQUIRE(search_images(req, out, err), err);
  BOOST_TEST(out.size() == 27u);
}

BOOST_AUTO_TEST_CASE(search_query_splitting) {
  std::string registry, term;
  split_search_query("127.0.0.1:5000/busy", registry, term);
  BOOST_TEST(registry == "127.0.0.1:5000");
  BOOST_TEST(term == "busy");
  split_search_query("quay.io/x/y", registry, term);
  BOOST_TEST(registry == "quay.io");
  BOOST_TEST(term == "x/y");
  split_search_query("localhost/app", registry, term);
  BOOST_TEST(registry == "localhost");
  split_search_query("user/app", registry, term);
  BOOST_TEST(registry.empty());
  BOOST_TEST(term == "user/app");
  split_search_query("busybox", registry, term);
  BOOST_TEST(registry.empty());
  BOOST_TEST(term == "busybox");
}
