// registry_client against a real docker-registry on 127.0.0.1 (plain http,
// TLS with client certificates, htpasswd), and against a small python
// server emulating a bearer-token registry. Nothing leaves the loopback.
#define BOOST_TEST_MODULE registry
#include <boost/test/unit_test.hpp>

#include "storage/digest.hpp"
#include "storage/registry.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <simdjson.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <latch>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace fs = std::filesystem;
using namespace berth::storage;
using namespace std::chrono_literals;

namespace {

const char* const registry_binary = "/usr/bin/docker-registry";

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

fs::path make_temp_dir(const char* tag) {
  std::string t = "/tmp/berth-unit-" + std::string(tag) + "-XXXXXX";
  BOOST_REQUIRE(::mkdtemp(t.data()) != nullptr);
  return t;
}

std::string python() {
  return fs::exists("/usr/bin/python3") ? "/usr/bin/python3" : "python3";
}

// A loopback port nobody listens on right now.
int free_port() {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(s, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(s, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(s);
  return ntohs(a.sin_port);
}

bool port_open(int port) {
  int s = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(s, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(s);
  return ok;
}

// A child process, its output in `log`; killed with the test process.
pid_t spawn(const std::vector<std::string>& argv, const fs::path& log) {
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
  ::execvp(args[0], args.data());
  ::_exit(127);
}

void stop_process(pid_t& pid) {
  if (pid <= 0)
    return;
  ::kill(pid, SIGTERM);
  for (int i = 0; i < 50; ++i) {
    if (::waitpid(pid, nullptr, WNOHANG) == pid) {
      pid = -1;
      return;
    }
    std::this_thread::sleep_for(100ms);
  }
  ::kill(pid, SIGKILL);
  ::waitpid(pid, nullptr, 0);
  pid = -1;
}

// docker-registry serving a temp dir on a free loopback port.
struct registry_process {
  fs::path dir;
  int port = 0;
  pid_t pid = -1;
  std::string error;

  ~registry_process() {
    stop_process(pid);
    if (!dir.empty())
      fs::remove_all(dir);
  }

  std::string address() const { return "127.0.0.1:" + std::to_string(port); }
  fs::path root() const { return dir / "data"; }

  // `http_extra` is indented under `http:`, `extra` is top level.
  bool start(const std::string& http_extra = "",
             const std::string& extra = "") {
    if (dir.empty())
      dir = make_temp_dir("registry");
    port = free_port();
    write_text(dir / "config.yml",
               "version: 0.1\n"
               "log:\n  level: error\n  accesslog:\n    disabled: true\n"
               "storage:\n  filesystem:\n    rootdirectory: " +
                   root().string() +
                   "\n  delete:\n    enabled: true\n"
                   "http:\n  addr: " +
                   address() + "\n" + http_extra + extra);
    pid = spawn({registry_binary, "serve", (dir / "config.yml").string()},
                dir / "registry.log");
    for (int i = 0; i < 150; ++i) {
      if (port_open(port))
        return true;
      if (::waitpid(pid, nullptr, WNOHANG) == pid) {
        pid = -1;
        error = "docker-registry exited: " + read_text(dir / "registry.log");
        return false;
      }
      std::this_thread::sleep_for(100ms);
    }
    error = "docker-registry did not listen on " + address();
    return false;
  }
};

registry_options insecure() {
  registry_options o;
  o.tls_verify = false;
  o.retries = 2;
  o.retry_delay = 10ms;
  o.timeout = 10s;
  return o;
}

// The one plain-http registry most tests share; each test uses its own
// repositories.
struct shared_registry {
  static registry_process* server;
  registry_process process;

  shared_registry() {
    process.start();
    server = &process;
  }
  ~shared_registry() { server = nullptr; }
};
registry_process* shared_registry::server = nullptr;

registry_process& plain_registry() {
  BOOST_REQUIRE(shared_registry::server);
  BOOST_REQUIRE_MESSAGE(shared_registry::server->error.empty(),
                        shared_registry::server->error);
  return *shared_registry::server;
}

// A one-layer image made on the spot: a gzip'd tar, its config and an
// OCI (or Docker schema2) manifest.
struct test_image {
  std::string layer, layer_digest;
  std::string config, config_digest;
  std::string manifest, manifest_digest, media_type;
};

test_image make_image(const std::string& arch, bool docker = false) {
  fs::path dir = make_temp_dir("image");
  fs::create_directories(dir / "rootfs");
  write_text(dir / "rootfs" / "hello.txt", "hello from " + arch + "\n");
  BOOST_REQUIRE(run("tar -C " + (dir / "rootfs").string() +
                    " --mtime=@0 --owner=0 --group=0 -cf " +
                    (dir / "layer.tar").string() + " hello.txt"));
  std::string diff_id = sha256_of(read_text(dir / "layer.tar"));
  BOOST_REQUIRE(run("gzip -n " + (dir / "layer.tar").string()));

  test_image img;
  img.layer = read_text(dir / "layer.tar.gz");
  fs::remove_all(dir);
  img.layer_digest = sha256_of(img.layer);
  img.config = R"({"architecture":")" + arch +
               R"(","os":"linux","config":{"Cmd":["/bin/sh"]},)"
               R"("rootfs":{"type":"layers","diff_ids":[")" +
               diff_id + R"("]}})";
  img.config_digest = sha256_of(img.config);
  img.media_type = docker ? docker_manifest_type : oci_manifest_type;
  std::string config_type =
      docker ? "application/vnd.docker.container.image.v1+json"
             : "application/vnd.oci.image.config.v1+json";
  std::string layer_type =
      docker ? "application/vnd.docker.image.rootfs.diff.tar.gzip"
             : "application/vnd.oci.image.layer.v1.tar+gzip";
  img.manifest = R"({"schemaVersion":2,"mediaType":")" + img.media_type +
                 R"(","config":{"mediaType":")" + config_type +
                 R"(","digest":")" + img.config_digest + R"(","size":)" +
                 std::to_string(img.config.size()) +
                 R"(},"layers":[{"mediaType":")" + layer_type +
                 R"(","digest":")" + img.layer_digest + R"(","size":)" +
                 std::to_string(img.layer.size()) + "}]}";
  img.manifest_digest = sha256_of(img.manifest);
  return img;
}

std::string
index_of(const std::vector<std::pair<test_image, std::string>>& entries) {
  std::string body = R"({"schemaVersion":2,"mediaType":")" +
                     std::string(oci_index_type) + R"(","manifests":[)";
  for (size_t i = 0; i < entries.size(); ++i) {
    auto& [img, platform] = entries[i];
    body += (i ? "," : "") + std::string(R"({"mediaType":")") + img.media_type +
            R"(","digest":")" + img.manifest_digest + R"(","size":)" +
            std::to_string(img.manifest.size()) + R"(,"platform":)" + platform +
            "}";
  }
  return body + "]}";
}

// Pushes the layer from a file (through an fd), the config from memory,
// then the manifest under `tag`.
void push_image(registry_client& c, const std::string& repo,
                const std::string& tag, const test_image& img) {
  fs::path dir = make_temp_dir("push");
  write_text(dir / "layer", img.layer);
  int fd = ::open((dir / "layer").c_str(), O_RDONLY);
  BOOST_REQUIRE(fd >= 0);
  std::string err;
  uint64_t last = 0;
  bool ok = c.push_blob(
      repo, img.layer_digest, fd, img.layer.size(),
      [&](uint64_t done, uint64_t) {
        last = done;
        return true;
      },
      err);
  ::close(fd);
  fs::remove_all(dir);
  BOOST_REQUIRE_MESSAGE(ok, err);
  BOOST_TEST(last == img.layer.size());
  BOOST_REQUIRE_MESSAGE(c.push_blob(repo, img.config_digest, img.config, err),
                        err);
  BOOST_REQUIRE_MESSAGE(
      c.put_manifest(repo, tag, img.media_type, img.manifest, err), err);
}

fs::path blob_data(const registry_process& r, const std::string& digest) {
  std::string hex = digest.substr(7);
  return r.root() / "docker/registry/v2/blobs/sha256" / hex.substr(0, 2) / hex /
         "data";
}

// A temp file to fetch blobs into; removed with the object.
struct temp_file {
  fs::path dir = make_temp_dir("blob");
  int fd = ::open((dir / "blob").c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ~temp_file() {
    ::close(fd);
    fs::remove_all(dir);
  }
  std::string text() const { return read_text(dir / "blob"); }
};

} // namespace

BOOST_TEST_GLOBAL_FIXTURE(shared_registry);

// ---- pure functions ------------------------------------------------------

BOOST_AUTO_TEST_CASE(docker_io_endpoint) {
  BOOST_TEST(registry_endpoint("docker.io") == "registry-1.docker.io");
  BOOST_TEST(registry_endpoint("index.docker.io") == "registry-1.docker.io");
  BOOST_TEST(registry_endpoint("quay.io") == "quay.io");
  BOOST_TEST(registry_endpoint("127.0.0.1:5000") == "127.0.0.1:5000");
  BOOST_TEST(registry_endpoint("localhost") == "localhost");
  // Constructing a client reaches nothing.
  registry_client c("docker.io");
  BOOST_TEST(c.base_url() == "https://registry-1.docker.io");
  BOOST_TEST(c.registry() == "docker.io");
}

BOOST_AUTO_TEST_CASE(auth_challenges) {
  auth_challenge c;
  BOOST_TEST(
      parse_auth_challenge(R"(Bearer realm="https://auth.docker.io/token",)"
                           R"(service="registry.docker.io",)"
                           R"(scope="repository:library/busybox:pull,push")",
                           c));
  BOOST_TEST(c.scheme == "bearer");
  BOOST_TEST(c.params["realm"] == "https://auth.docker.io/token");
  BOOST_TEST(c.params["service"] == "registry.docker.io");
  BOOST_TEST(c.params["scope"] == "repository:library/busybox:pull,push");

  BOOST_TEST(parse_auth_challenge(R"(Basic realm="Registry Realm")", c));
  BOOST_TEST(c.scheme == "basic");
  BOOST_TEST(c.params["realm"] == "Registry Realm");

  BOOST_TEST(parse_auth_challenge(
      R"(Bearer Realm=http://x/token, service = "a \"q\" b")", c));
  BOOST_TEST(c.params["realm"] == "http://x/token");
  BOOST_TEST(c.params["service"] == "a \"q\" b");

  BOOST_TEST(!parse_auth_challenge("", c));
  BOOST_TEST(!parse_auth_challenge("realm=x", c));
}

BOOST_AUTO_TEST_CASE(error_reasons) {
  BOOST_TEST(registry_error_reason(
                 404, R"({"errors":[{"code":"MANIFEST_UNKNOWN",)"
                      R"("message":"manifest unknown",)"
                      R"("detail":{"Tag":"x"}}]})") == "manifest unknown");
  BOOST_TEST(
      registry_error_reason(404, R"({"errors":[{"code":"BLOB_UNKNOWN"}]})") ==
      "blob unknown");
  BOOST_TEST(registry_error_reason(
                 400, R"({"errors":[{"code":"A","message":"one"},)"
                      R"({"code":"B","message":"two"}]})") == "one; two");
  BOOST_TEST(
      registry_error_reason(401, R"({"errors":[{"code":"UNAUTHORIZED",)"
                                 R"("message":"authentication required"}]})") ==
      "unauthorized: authentication required");
  BOOST_TEST(registry_error_reason(
                 401, R"({"details":"incorrect username or password"})") ==
             "unauthorized: incorrect username or password");
  BOOST_TEST(registry_error_reason(401, "") ==
             "unauthorized: authentication required");
  BOOST_TEST(registry_error_reason(403, "") ==
             "denied: requested access to the resource is denied");
  BOOST_TEST(registry_error_reason(404, "") == "not found");
  BOOST_TEST(registry_error_reason(502, "Bad Gateway\n<html>") ==
             "unexpected HTTP status 502: Bad Gateway");
}

BOOST_AUTO_TEST_CASE(link_headers) {
  BOOST_TEST(next_link(R"(</v2/_catalog?last=b&n=2>; rel="next")") ==
             "/v2/_catalog?last=b&n=2");
  BOOST_TEST(next_link("<https://r/v2/x/tags/list?n=1>; rel=next") ==
             "https://r/v2/x/tags/list?n=1");
  BOOST_TEST(next_link(R"(</x>; rel="prev")").empty());
  BOOST_TEST(next_link("").empty());
}

BOOST_AUTO_TEST_CASE(platform_choice) {
  std::string d1 = "sha256:" + std::string(64, '1');
  std::string d2 = "sha256:" + std::string(64, '2');
  std::string d3 = "sha256:" + std::string(64, '3');
  std::string list = R"({"manifests":[)"
                     R"({"digest":")" +
                     d1 +
                     R"(","mediaType":"m1","platform":)"
                     R"({"os":"linux","architecture":"arm","variant":"v6"}},)"
                     R"({"digest":")" +
                     d2 +
                     R"(","mediaType":"m2","platform":)"
                     R"({"os":"linux","architecture":"arm","variant":"v7"}},)"
                     R"({"digest":")" +
                     d3 +
                     R"(","mediaType":"m3","platform":)"
                     R"({"os":"linux","architecture":"amd64"}}]})";
  std::string digest, type, err;
  BOOST_TEST(choose_platform_manifest(list, {}, digest, type, err));
  BOOST_TEST(digest == d3);
  BOOST_TEST(type == "m3");
  BOOST_TEST(choose_platform_manifest(list, {"linux", "arm", "v7"}, digest,
                                      type, err));
  BOOST_TEST(digest == d2);
  BOOST_TEST(!choose_platform_manifest(list, {"linux", "arm", "v5"}, digest,
                                       type, err));
  BOOST_TEST(!choose_platform_manifest(list, {"windows", "amd64", ""}, digest,
                                       type, err));
  BOOST_TEST(err == "no image found in manifest list for architecture "
                    "amd64, variant \"\", OS windows");
  BOOST_TEST(!choose_platform_manifest("[]", {}, digest, type, err));
}

// ---- a real docker-registry over plain http ---------------------------

BOOST_AUTO_TEST_CASE(insecure_registry_falls_back_to_http) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  BOOST_TEST(c.base_url() == "https://" + r.address());
  std::string err;
  BOOST_TEST_REQUIRE(c.ping(err), err);
  BOOST_TEST(c.base_url() == "http://" + r.address());
}

BOOST_AUTO_TEST_CASE(verified_tls_never_falls_back) {
  auto& r = plain_registry();
  registry_options o;
  o.retries = 1;
  o.retry_delay = 1ms;
  registry_client c(r.address(), o);
  std::string err;
  BOOST_TEST(!c.ping(err));
  BOOST_TEST_MESSAGE("tls_verify=true against http: " << err);
  BOOST_TEST(err.starts_with("pinging container registry " + r.address()));
  BOOST_TEST(err.find("tlsVerify=false") != std::string::npos);
  BOOST_TEST(c.base_url() == "https://" + r.address());
}

BOOST_AUTO_TEST_CASE(push_then_pull_by_tag_and_digest) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  test_image img = make_image("amd64");
  push_image(c, "test/app", "v1", img);

  std::string err;
  manifest m;
  BOOST_TEST_REQUIRE(c.get_manifest("test/app", "v1", m, err), err);
  BOOST_TEST(m.media_type == oci_manifest_type);
  BOOST_TEST(m.body == img.manifest);
  BOOST_TEST(m.digest == img.manifest_digest);
  BOOST_TEST(m.index_digest.empty());

  manifest by_digest;
  BOOST_TEST_REQUIRE(
      c.get_manifest("test/app", img.manifest_digest, by_digest, err), err);
  BOOST_TEST(by_digest.body == img.manifest);
  BOOST_TEST(by_digest.digest == img.manifest_digest);

  std::string config;
  BOOST_TEST_REQUIRE(c.get_blob("test/app", img.config_digest, config, err),
                     err);
  BOOST_TEST(config == img.config);
  BOOST_TEST(!c.get_blob("test/app", img.config_digest, config, err, 10));
  BOOST_TEST(err.find("larger than 10 bytes") != std::string::npos);

  temp_file out;
  uint64_t seen = 0, total = 0;
  BOOST_TEST_REQUIRE(c.fetch_blob(
                         "test/app", img.layer_digest, out.fd,
                         [&](uint64_t done, uint64_t t) {
                           seen = done;
                           total = t;
                           return true;
                         },
                         err),
                     err);
  BOOST_TEST(out.text() == img.layer);
  BOOST_TEST(seen == img.layer.size());
  BOOST_TEST(total == img.layer.size());
}

BOOST_AUTO_TEST_CASE(docker_schema2_manifest) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  test_image img = make_image("amd64", true);
  push_image(c, "test/docker", "latest", img);
  std::string err;
  manifest m;
  BOOST_TEST_REQUIRE(c.get_manifest("test/docker", "latest", m, err), err);
  BOOST_TEST(m.media_type == docker_manifest_type);
  BOOST_TEST(m.digest == img.manifest_digest);
}

BOOST_AUTO_TEST_CASE(blob_existence_and_repeated_push) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  test_image img = make_image("amd64");
  std::string err;
  bool exists = true;
  BOOST_TEST_REQUIRE(
      c.blob_exists("test/exists", img.config_digest, exists, err), err);
  BOOST_TEST(!exists);
  push_image(c, "test/exists", "v1", img);
  BOOST_TEST_REQUIRE(
      c.blob_exists("test/exists", img.config_digest, exists, err), err);
  BOOST_TEST(exists);
  // A second push finds the blobs there and uploads nothing.
  push_image(c, "test/exists", "v2", img);
}

BOOST_AUTO_TEST_CASE(missing_tag_says_manifest_unknown) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  push_image(c, "test/missing", "v1", make_image("amd64"));
  std::string err;
  manifest m;
  BOOST_TEST(!c.get_manifest("test/missing", "foobar", m, err));
  BOOST_TEST(err == "reading manifest foobar in " + r.address() +
                        "/test/missing: manifest unknown");
  BOOST_TEST(!c.get_manifest("test/nosuchrepo", "latest", m, err));
  BOOST_TEST_MESSAGE("unknown repository: " << err);
  BOOST_TEST(err.find("unknown") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(missing_blob_says_blob_unknown) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  push_image(c, "test/noblob", "v1", make_image("amd64"));
  std::string missing = sha256_of("not pushed");
  temp_file out;
  std::string err;
  BOOST_TEST(!c.fetch_blob("test/noblob", missing, out.fd, {}, err));
  BOOST_TEST_MESSAGE("missing blob: " << err);
  BOOST_TEST(err.starts_with("fetching blob " + missing + " from " +
                             r.address() + "/test/noblob: "));
  BOOST_TEST(err.find("blob unknown") != std::string::npos);
}

BOOST_AUTO_TEST_CASE(corrupted_blob_is_refused) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  test_image img = make_image("corrupt");
  push_image(c, "test/corrupt", "v1", img);

  fs::path data = blob_data(r, img.layer_digest);
  BOOST_TEST_REQUIRE(fs::exists(data));
  std::string bytes = read_text(data);
  bytes[bytes.size() / 2] ^= 0x01;
  write_text(data, bytes);

  temp_file out;
  std::string err;
  BOOST_TEST(!c.fetch_blob("test/corrupt", img.layer_digest, out.fd, {}, err));
  BOOST_TEST(err == "blob " + img.layer_digest + ": digest mismatch, got " +
                        sha256_of(bytes));
}

BOOST_AUTO_TEST_CASE(progress_can_cancel) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  test_image img = make_image("cancel");
  push_image(c, "test/cancel", "v1", img);
  temp_file out;
  std::string err;
  BOOST_TEST(!c.fetch_blob(
      "test/cancel", img.layer_digest, out.fd,
      [](uint64_t, uint64_t) { return false; }, err));
  BOOST_TEST(err == "fetching blob " + img.layer_digest + " from " +
                        r.address() + "/test/cancel: cancelled");

  // An upload cancelled the same way.
  test_image other = make_image("cancel-push");
  temp_file in;
  write_text(in.dir / "blob", other.layer);
  BOOST_TEST(!c.push_blob(
      "test/cancel", other.layer_digest, in.fd, other.layer.size(),
      [](uint64_t, uint64_t) { return false; }, err));
  BOOST_TEST(err.ends_with(": cancelled"));
}

BOOST_AUTO_TEST_CASE(wrong_digest_push_is_rejected) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  std::string err;
  BOOST_TEST(!c.push_blob("test/wrong", sha256_of("other"), "content", err));
  BOOST_TEST_MESSAGE("wrong digest push: " << err);
  BOOST_TEST(err.find("digest") != std::string::npos);
  BOOST_TEST(!c.push_blob("test/wrong", "sha256:abc", "content", err));
  BOOST_TEST(err.find("invalid repository or digest") != std::string::npos);
  BOOST_TEST(!c.put_manifest("test/wrong", "bad tag",
                             std::string(oci_manifest_type), "{}", err));
}

BOOST_AUTO_TEST_CASE(manifest_index_resolves_to_platform) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  test_image amd = make_image("amd64");
  test_image arm = make_image("arm64");
  push_image(c, "test/multi", "amd64", amd);
  push_image(c, "test/multi", "arm64", arm);
  std::string index = index_of(
      {{arm, R"({"architecture":"arm64","os":"linux","variant":"v8"})"},
       {amd, R"({"architecture":"amd64","os":"linux"})"}});
  std::string err;
  BOOST_TEST_REQUIRE(c.put_manifest("test/multi", "latest",
                                    std::string(oci_index_type), index, err),
                     err);

  manifest m;
  BOOST_TEST_REQUIRE(c.get_manifest("test/multi", "latest", m, err), err);
  BOOST_TEST(m.digest == amd.manifest_digest);
  BOOST_TEST(m.body == amd.manifest);
  BOOST_TEST(m.index_digest == sha256_of(index));

  manifest raw;
  BOOST_TEST_REQUIRE(c.get_manifest_raw("test/multi", "latest", raw, err), err);
  BOOST_TEST(raw.media_type == oci_index_type);
  BOOST_TEST(raw.body == index);

  registry_options o = insecure();
  o.platform = {"linux", "arm64", "v8"};
  registry_client arm_client(r.address(), o);
  BOOST_TEST_REQUIRE(arm_client.get_manifest("test/multi", "latest", m, err),
                     err);
  BOOST_TEST(m.digest == arm.manifest_digest);

  o.platform = {"linux", "s390x", ""};
  registry_client s390x(r.address(), o);
  BOOST_TEST(!s390x.get_manifest("test/multi", "latest", m, err));
  BOOST_TEST(err == "choosing an image from manifest list latest in " +
                        r.address() +
                        "/test/multi: no image found in manifest list for "
                        "architecture s390x, variant \"\", OS linux");
}

BOOST_AUTO_TEST_CASE(catalog_and_tags) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  test_image img = make_image("amd64");
  push_image(c, "test/listed", "a", img);
  push_image(c, "test/listed", "b", img);
  push_image(c, "test/listed", "c", img);

  std::string err;
  std::vector<std::string> tags;
  BOOST_TEST_REQUIRE(c.tags("test/listed", tags, err), err);
  std::sort(tags.begin(), tags.end());
  BOOST_TEST(tags == (std::vector<std::string>{"a", "b", "c"}),
             boost::test_tools::per_element());

  std::vector<std::string> repos;
  BOOST_TEST_REQUIRE(c.catalog(repos, 0, err), err);
  BOOST_TEST(std::count(repos.begin(), repos.end(), "test/listed") == 1);
  BOOST_TEST_REQUIRE(c.catalog(repos, 1, err), err);
  BOOST_TEST(repos.size() == 1u);

  BOOST_TEST(!c.tags("test/nothere", tags, err));
  BOOST_TEST_MESSAGE("tags of unknown repository: " << err);
  BOOST_TEST(
      err.starts_with("listing tags of " + r.address() + "/test/nothere: "));
}

BOOST_AUTO_TEST_CASE(parallel_fetches_through_one_client) {
  auto& r = plain_registry();
  registry_client c(r.address(), insecure());
  std::vector<test_image> imgs;
  for (int i = 0; i < 4; ++i) {
    imgs.push_back(make_image("par" + std::to_string(i)));
    push_image(c, "test/parallel", "v" + std::to_string(i), imgs.back());
  }
  std::atomic<int> good = 0;
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([&, t] {
      auto& img = imgs[t % imgs.size()];
      temp_file out;
      std::string err;
      if (c.fetch_blob("test/parallel", img.layer_digest, out.fd, {}, err) &&
          out.text() == img.layer)
        ++good;
    });
  for (auto& t : threads)
    t.join();
  BOOST_TEST(good.load() == 8);
}

BOOST_AUTO_TEST_CASE(unreachable_registry_is_retried_then_reported) {
  registry_options o = insecure();
  o.retries = 2;
  int port = free_port();
  registry_client c("127.0.0.1:" + std::to_string(port), o);
  std::string err;
  auto start = std::chrono::steady_clock::now();
  BOOST_TEST(!c.ping(err));
  BOOST_TEST_MESSAGE("unreachable: " << err);
  BOOST_TEST(err.find("127.0.0.1") != std::string::npos);
  // 10 ms then 20 ms of backoff.
  BOOST_TEST((std::chrono::steady_clock::now() - start >= 30ms));
}

// ---- htpasswd basic auth on a real docker-registry ----------------------

namespace {

// A bcrypt htpasswd line, from htpasswd or python's crypt module.
std::string htpasswd_line(const std::string& user, const std::string& pw,
                          const fs::path& dir) {
  fs::path out = dir / "htpasswd";
  if (run("command -v htpasswd >/dev/null && htpasswd -BbnC 4 " + user + " " +
          pw + " > " + out.string() + " 2>/dev/null"))
    return read_text(out);
  std::string script = "import crypt,sys;"
                       "print(sys.argv[1]+':'+crypt.crypt(sys.argv[2],"
                       "crypt.mksalt(crypt.METHOD_BLOWFISH,rounds=16)))";
  if (run(python() + " -W ignore -c \"" + script + "\" " + user + " " + pw +
          " > " + out.string() + " 2>/dev/null"))
    return read_text(out);
  return {};
}

// Starts `r` asking for alice:s3cret; false (with a message) when no
// bcrypt hash can be made here.
bool start_with_htpasswd(registry_process& r) {
  r.dir = make_temp_dir("registry-auth");
  std::string line = htpasswd_line("alice", "s3cret", r.dir);
  if (line.find(":$2") == std::string::npos) {
    BOOST_TEST_MESSAGE("skipped: no way to make a bcrypt htpasswd here");
    return false;
  }
  write_text(r.dir / "htpasswd", line);
  BOOST_TEST_REQUIRE(r.start("", "auth:\n  htpasswd:\n    realm: berth\n"
                                 "    path: " +
                                     (r.dir / "htpasswd").string() + "\n"),
                     r.error);
  return true;
}

registry_options as_alice() {
  registry_options o = insecure();
  o.username = "alice";
  o.password = "s3cret";
  return o;
}

// Runs `work(i, err)` on `n` threads released at the same moment, so that
// their first requests leave before any answer came back; the errors of
// those that failed, one per line.
std::string all_at_once(int n,
                        const std::function<bool(int, std::string&)>& work) {
  std::latch start(n);
  std::mutex mu;
  std::string failures;
  std::vector<std::thread> threads;
  for (int i = 0; i < n; ++i)
    threads.emplace_back([&, i] {
      std::string err;
      start.arrive_and_wait();
      if (work(i, err))
        return;
      std::lock_guard lock(mu);
      failures += std::to_string(i) + ": " + err + "\n";
    });
  for (auto& t : threads)
    t.join();
  return failures;
}

} // namespace

BOOST_AUTO_TEST_CASE(basic_auth_htpasswd) {
  registry_process r;
  if (!start_with_htpasswd(r))
    return;

  std::string err;
  registry_client anon(r.address(), insecure());
  BOOST_TEST_REQUIRE(anon.ping(err), err); // 401 still means v2
  manifest m;
  BOOST_TEST(!anon.get_manifest("test/auth", "latest", m, err));
  BOOST_TEST(err == "reading manifest latest in " + r.address() +
                        "/test/auth: unauthorized: authentication required");

  registry_options o = insecure();
  o.username = "alice";
  o.password = "wrong";
  registry_client bad(r.address(), o);
  BOOST_TEST(!bad.get_manifest("test/auth", "latest", m, err));
  BOOST_TEST(err.find("unauthorized") != std::string::npos);

  o.password = "s3cret";
  registry_client good(r.address(), o);
  test_image img = make_image("amd64");
  push_image(good, "test/auth", "latest", img);
  BOOST_TEST_REQUIRE(good.get_manifest("test/auth", "latest", m, err), err);
  BOOST_TEST(m.digest == img.manifest_digest);
  temp_file out;
  BOOST_TEST_REQUIRE(
      good.fetch_blob("test/auth", img.layer_digest, out.fd, {}, err), err);
  BOOST_TEST(out.text() == img.layer);
}

// A fresh client's first requests go out together without credentials and
// all come back 401: each must be retried with them, whichever thread's
// answer turned basic auth on (a push checks its layers so, a pull fetches
// them so).
BOOST_AUTO_TEST_CASE(basic_auth_parallel_first_requests) {
  registry_process r;
  if (!start_with_htpasswd(r))
    return;
  constexpr int n = 8;
  std::vector<test_image> imgs;
  for (int i = 0; i < n; ++i)
    imgs.push_back(make_image("basic" + std::to_string(i)));

  registry_client checker(r.address(), as_alice());
  std::atomic<int> missing = 0;
  BOOST_TEST(
      all_at_once(n, [&](int i, std::string& err) {
        bool exists = true;
        if (!checker.blob_exists("test/par", imgs[i].layer_digest, exists, err))
          return false;
        missing += !exists;
        return true;
      }) == "");
  BOOST_TEST(missing.load() == n);

  registry_client pusher(r.address(), as_alice());
  BOOST_TEST(all_at_once(n, [&](int i, std::string& err) {
               return pusher.push_blob("test/par", imgs[i].layer_digest,
                                       imgs[i].layer, err);
             }) == "");

  registry_client fetcher(r.address(), as_alice());
  BOOST_TEST(all_at_once(n, [&](int i, std::string& err) {
               temp_file out;
               if (!fetcher.fetch_blob("test/par", imgs[i].layer_digest, out.fd,
                                       {}, err))
                 return false;
               if (out.text() == imgs[i].layer)
                 return true;
               err = "the blob came back changed";
               return false;
             }) == "");

  // Wrong credentials stay refused, on every thread.
  registry_options o = as_alice();
  o.password = "wrong";
  registry_client bad(r.address(), o);
  std::atomic<int> refused = 0;
  all_at_once(n, [&](int i, std::string& err) {
    bool exists = false;
    bool ok = bad.blob_exists("test/par", imgs[i].layer_digest, exists, err);
    refused += !ok && err.find("unauthorized") != std::string::npos;
    return ok;
  });
  BOOST_TEST(refused.load() == n);
}

// ---- TLS with a private CA and client certificates ----------------------

BOOST_AUTO_TEST_CASE(tls_cert_dir_and_client_certificates) {
  registry_process r;
  r.dir = make_temp_dir("registry-tls");
  fs::path pki = r.dir / "pki";
  fs::create_directories(pki);
  std::string p = pki.string();
  // P-256 keys: generated in milliseconds, unlike RSA.
  std::string key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  std::string script =
      "set -e; cd " + p +
      "\n"
      "openssl req -x509 " +
      key +
      " -keyout ca.key -out ca.pem "
      "-days 2 -subj /CN=berth-test-ca\n"
      "openssl req " +
      key +
      " -keyout server.key -out server.csr "
      "-subj /CN=127.0.0.1\n"
      "printf 'subjectAltName=IP:127.0.0.1\\n' > san.ext\n"
      "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -out server.pem -days 2 -extfile san.ext\n"
      "openssl req " +
      key +
      " -keyout client.key -out client.csr "
      "-subj /CN=berth-client\n"
      "openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key "
      "-CAcreateserial -out client.pem -days 2\n";
  if (!run("(" + script + ") >/dev/null 2>&1")) {
    BOOST_TEST_MESSAGE("skipped: openssl could not make certificates");
    return;
  }
  BOOST_TEST_REQUIRE(
      r.start("  tls:\n    certificate: " + p + "/server.pem\n    key: " + p +
              "/server.key\n    clientcas:\n      - " + p + "/ca.pem\n"),
      r.error);

  // The three certificate dirs a user might have.
  fs::path ca_only = r.dir / "certs-ca", full = r.dir / "certs-full",
           client_only = r.dir / "certs-client", broken = r.dir / "broken";
  for (auto& d : {ca_only, full, client_only, broken})
    fs::create_directories(d);
  fs::copy_file(pki / "ca.pem", ca_only / "ca.crt");
  fs::copy_file(pki / "ca.pem", full / "ca.crt");
  for (auto& d : {full, client_only}) {
    fs::copy_file(pki / "client.pem", d / "client.cert");
    fs::copy_file(pki / "client.key", d / "client.key");
  }
  fs::copy_file(pki / "client.pem", broken / "client.cert");

  registry_options o;
  o.retries = 1;
  o.retry_delay = 1ms;
  o.timeout = 10s;
  std::string err;

  registry_client unknown_ca(r.address(), o);
  BOOST_TEST(!unknown_ca.ping(err));
  BOOST_TEST_MESSAGE("unknown CA: " << err);
  BOOST_TEST(unknown_ca.base_url().starts_with("https://"));

  o.cert_dir = ca_only.string();
  registry_client no_client_cert(r.address(), o);
  BOOST_TEST(!no_client_cert.ping(err));
  BOOST_TEST_MESSAGE("no client certificate: " << err);

  o.cert_dir = broken.string();
  registry_client missing_key(r.address(), o);
  BOOST_TEST(!missing_key.ping(err));
  BOOST_TEST(err.find("missing key") != std::string::npos);

  o.cert_dir = full.string();
  registry_client verified(r.address(), o);
  BOOST_TEST_REQUIRE(verified.ping(err), err);
  test_image img = make_image("amd64");
  push_image(verified, "test/tls", "v1", img);
  manifest m;
  BOOST_TEST_REQUIRE(verified.get_manifest("test/tls", "v1", m, err), err);
  BOOST_TEST(m.digest == img.manifest_digest);

  // tls_verify=false skips the server's certificate but stays on https.
  o.tls_verify = false;
  o.cert_dir = client_only.string();
  registry_client unverified(r.address(), o);
  BOOST_TEST_REQUIRE(unverified.get_manifest("test/tls", "v1", m, err), err);
  BOOST_TEST(unverified.base_url() == "https://" + r.address());
}

// ---- a bearer-token registry emulated in python ------------------------

namespace {

const char* const token_server_py = R"PY(
import base64, hashlib, json, os, sys, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse, parse_qs

USER, PASSWORD, TOKEN = "alice", "s3cret", "tok-42"
BLOB = b"berth blob " * 1000
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()
MANIFEST = json.dumps({"schemaVersion": 2,
  "mediaType": "application/vnd.oci.image.manifest.v1+json",
  "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
             "digest": BLOB_DIGEST, "size": len(BLOB)},
  "layers": []}).encode()
WRONG = "sha256:" + "0" * 64
OCI = "application/vnd.oci.image.manifest.v1+json"
lock = threading.Lock()
stats = {"token": 0, "scopes": [], "flaky": 0, "busy": 0, "broken": 0}

def error(code, message):
    return {"errors": [{"code": code, "message": message}]}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, code, body=b"", ctype="application/json", headers=()):
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_GET(self):
        self.route()

    def do_HEAD(self):
        self.route()

    def count(self, key):
        with lock:
            stats[key] += 1
            return stats[key]

    def route(self):
        url = urlparse(self.path)
        path = url.path
        if path == "/stats":
            return self.reply(200, stats)
        if path == "/token":
            return self.token(parse_qs(url.query))
        if path.startswith("/storage/"):
            return self.reply(200, BLOB, "application/octet-stream")
        if self.headers.get("Authorization") != "Bearer " + TOKEN:
            parts = path.split("/")
            scope = ""
            if len(parts) > 3:
                scope = ',scope="repository:%s:pull"' % parts[2]
            challenge = ('Bearer realm="http://127.0.0.1:%d/token",'
                         'service="berth-test"%s'
                         % (self.server.server_port, scope))
            return self.reply(401, error("UNAUTHORIZED",
                                         "authentication required"),
                              headers=[("WWW-Authenticate", challenge)])
        if path == "/v2/":
            return self.reply(200, {})
        if path in ("/v2/app/manifests/latest", "/v2/app/manifests/" + WRONG):
            return self.reply(200, MANIFEST, OCI)
        if path == "/v2/app/blobs/" + BLOB_DIGEST:
            return self.reply(307, b"", headers=[
                ("Location", "/storage/" + BLOB_DIGEST)])
        if path == "/v2/app/tags/list":
            if "last" not in parse_qs(url.query):
                return self.reply(200, {"name": "app", "tags": ["a", "b"]},
                    headers=[("Link",
                              '</v2/app/tags/list?last=b&n=2>; rel="next"')])
            return self.reply(200, {"name": "app", "tags": ["c"]})
        if path == "/v2/flaky/manifests/latest":
            if self.count("flaky") <= 2:
                return self.reply(503, error("UNAVAILABLE", "try later"))
            return self.reply(200, MANIFEST, OCI)
        if path == "/v2/busy/manifests/latest":
            if self.count("busy") <= 1:
                return self.reply(429, error("TOOMANYREQUESTS", "slow down"),
                                  headers=[("Retry-After", "1")])
            return self.reply(200, MANIFEST, OCI)
        if path == "/v2/broken/manifests/latest":
            self.count("broken")
            return self.reply(500, error("UNKNOWN", "storage backend down"))
        if path == "/v2/denied/manifests/latest":
            return self.reply(403, error("DENIED",
                "requested access to the resource is denied"))
        return self.reply(404, error("NAME_UNKNOWN",
                                     "repository name not known to registry"))

    def token(self, q):
        with lock:
            stats["token"] += 1
            stats["scopes"].append(q.get("scope", []))
        creds = base64.b64encode(("%s:%s" % (USER, PASSWORD)).encode())
        if self.headers.get("Authorization") != "Basic " + creds.decode():
            return self.reply(401, {"details":
                                    "incorrect username or password"})
        if q.get("service") != ["berth-test"]:
            return self.reply(400, {"details": "wrong service"})
        return self.reply(200, {"access_token": TOKEN, "expires_in": 300})

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_port))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
)PY";

struct token_server {
  fs::path dir = make_temp_dir("token-server");
  pid_t pid = -1;
  int port = 0;

  token_server() {
    write_text(dir / "server.py", token_server_py);
    pid =
        spawn({python(), (dir / "server.py").string(), (dir / "port").string()},
              dir / "server.log");
    for (int i = 0; i < 100 && !fs::exists(dir / "port"); ++i)
      std::this_thread::sleep_for(100ms);
    port = std::atoi(read_text(dir / "port").c_str());
  }
  ~token_server() {
    stop_process(pid);
    fs::remove_all(dir);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port); }

  // The server's counters, read with a client of its own.
  simdjson::dom::element stats(simdjson::dom::parser& parser,
                               std::string& body) {
    std::string cmd =
        "curl -s http://" + address() + "/stats > " + (dir / "stats").string();
    BOOST_REQUIRE(run(cmd));
    body = read_text(dir / "stats");
    return parser.parse(body);
  }
};

int64_t server_stat(token_server& s, const char* key) {
  simdjson::dom::parser parser;
  std::string body;
  return int64_t(s.stats(parser, body)[key]);
}

} // namespace

BOOST_AUTO_TEST_CASE(bearer_tokens_redirects_retries) {
  token_server s;
  BOOST_TEST_REQUIRE(s.port > 0, "python server did not start: "
                                     << read_text(s.dir / "server.log"));
  registry_options o = insecure();
  o.username = "alice";
  o.password = "s3cret";
  o.retries = 3;
  registry_client c(s.address(), o);
  std::string err;
  BOOST_TEST_REQUIRE(c.ping(err), err);

  // A token is fetched once per scope and reused.
  manifest m;
  BOOST_TEST_REQUIRE(c.get_manifest("app", "latest", m, err), err);
  BOOST_TEST(m.media_type == oci_manifest_type);
  BOOST_TEST_REQUIRE(c.get_manifest("app", "latest", m, err), err);
  BOOST_TEST(server_stat(s, "token") == 1);

  // The blob answer redirects to "storage"; the digest still holds.
  std::string config;
  std::string blob_digest = m.body.substr(m.body.find("sha256:"), 71);
  BOOST_TEST_REQUIRE(c.get_blob("app", blob_digest, config, err), err);
  BOOST_TEST(config.size() == 11000u);

  // Tags come in two pages joined by a Link header.
  std::vector<std::string> tags;
  BOOST_TEST_REQUIRE(c.tags("app", tags, err), err);
  BOOST_TEST(tags == (std::vector<std::string>{"a", "b", "c"}),
             boost::test_tools::per_element());
  BOOST_TEST(server_stat(s, "token") == 1);

  // A manifest that does not match the digest asked for.
  std::string wrong = "sha256:" + std::string(64, '0');
  BOOST_TEST(!c.get_manifest("app", wrong, m, err));
  BOOST_TEST(err == "reading manifest " + wrong + " in " + s.address() +
                        "/app: digest mismatch, got " + sha256_of(m.body));

  // 503 twice then success; 429 with Retry-After once.
  BOOST_TEST_REQUIRE(c.get_manifest("flaky", "latest", m, err), err);
  BOOST_TEST(server_stat(s, "flaky") == 3);
  BOOST_TEST_REQUIRE(c.get_manifest("busy", "latest", m, err), err);
  BOOST_TEST(server_stat(s, "busy") == 2);

  // Persistent 500: retried, then the registry's own reason.
  BOOST_TEST(!c.get_manifest("broken", "latest", m, err));
  BOOST_TEST(err == "reading manifest latest in " + s.address() +
                        "/broken: storage backend down");
  BOOST_TEST(server_stat(s, "broken") == 4);

  // 4xx answers are final.
  BOOST_TEST(!c.get_manifest("denied", "latest", m, err));
  BOOST_TEST(err == "reading manifest latest in " + s.address() +
                        "/denied: denied: requested access to the resource "
                        "is denied");
  BOOST_TEST(!c.get_manifest("nothing", "latest", m, err));
  BOOST_TEST(err.ends_with("repository name not known to registry"));
}

BOOST_AUTO_TEST_CASE(bearer_token_with_wrong_credentials) {
  token_server s;
  BOOST_TEST_REQUIRE(s.port > 0);
  registry_options o = insecure();
  o.username = "alice";
  o.password = "wrong";
  registry_client c(s.address(), o);
  std::string err;
  manifest m;
  BOOST_TEST(!c.get_manifest("app", "latest", m, err));
  BOOST_TEST(err == "reading manifest latest in " + s.address() +
                        "/app: requesting bearer token from http://" +
                        s.address() +
                        "/token: unauthorized: incorrect username or password");
}

// Threads challenged together wait for one token instead of each fetching
// its own, and every request goes through with it.
BOOST_AUTO_TEST_CASE(bearer_token_fetched_once_for_parallel_requests) {
  token_server s;
  BOOST_TEST_REQUIRE(s.port > 0);
  registry_client c(s.address(), as_alice());
  BOOST_TEST(all_at_once(8, [&](int, std::string& err) {
               manifest m;
               return c.get_manifest("app", "latest", m, err);
             }) == "");
  BOOST_TEST(server_stat(s, "token") == 1);
}
