// The pull path end to end against a real HTTP server on loopback (a small
// Python registry written for these cases, since docker-registry cannot be
// told to cut a transfer or serve a bad layer): layers are unpacked while
// they download, and what the unpacker saw only counts when it is exactly
// the verified blob.
#define BOOST_TEST_MODULE pull
#include <boost/test/unit_test.hpp>

#include "storage/image_store.hpp"
#include "storage/pull.hpp"
#include "support.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

using namespace berth::storage;
using namespace std::chrono_literals;
namespace fs = std::filesystem;

namespace {

// One image per repository; the layer is a gzip tar of `big` (3 MB of
// random bytes, so the stream takes many chunks) and `etc/hello`.
//   steady   served as is
//   cut      the first GET of the layer stops half way (the client retries)
//   hostile  the layer's tar puts a file under a path that is a file
//   corrupt  one byte of the layer flipped (digest mismatch)
const char* server_py = R"PY(
import gzip, hashlib, io, json, os, random, sys, tarfile, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

def tar_of(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()

def digest(b):
    return "sha256:" + hashlib.sha256(b).hexdigest()

big = random.Random(7).randbytes(3 << 20)
good_tar = tar_of([("big", big), ("etc/hello", b"hello\n")])
bad_tar = tar_of([("f", b"x"), ("f/x", b"y")])

def image(tar, flip=False):
    layer = gzip.compress(tar, mtime=0)
    blob = bytearray(layer)
    if flip:
        blob[len(blob) // 2] ^= 0xff
    config = json.dumps({"architecture": "amd64", "os": "linux",
        "created": "2026-01-01T00:00:00Z", "config": {},
        "rootfs": {"type": "layers", "diff_ids": [digest(tar)]},
        "history": [{"created": "2026-01-01T00:00:00Z"}]}).encode()
    manifest = json.dumps({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": digest(config), "size": len(config)},
        "layers": [{"mediaType":
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(layer), "size": len(layer)}]}).encode()
    return {"manifest": manifest,
            "blobs": {digest(config): config, digest(layer): bytes(blob)},
            "layer": digest(layer)}

images = {"steady": image(good_tar), "cut": image(good_tar),
          "hostile": image(bad_tar), "corrupt": image(good_tar, flip=True)}
lock = threading.Lock()
gets = {}

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def send(self, code, body, ctype="application/octet-stream", cut=False):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if cut:
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def do_GET(self):
        parts = self.path.split("/")
        if self.path == "/v2/":
            return self.send(200, b"{}", "application/json")
        if len(parts) == 5 and parts[2] in images:
            img = images[parts[2]]
            if parts[3] == "manifests":
                return self.send(200, img["manifest"],
                    "application/vnd.oci.image.manifest.v1+json")
            if parts[3] == "blobs" and parts[4] in img["blobs"]:
                first = False
                if parts[4] == img["layer"]:
                    with lock:
                        gets[parts[2]] = gets.get(parts[2], 0) + 1
                        first = gets[parts[2]] == 1
                        with open(os.path.join(os.path.dirname(
                                sys.argv[1]), "gets.json"), "w") as f:
                            json.dump(gets, f, sort_keys=True)
                return self.send(200, img["blobs"][parts[4]],
                                 cut=first and parts[2] == "cut")
        self.send(404, json.dumps({"errors": [{"code": "NAME_UNKNOWN",
            "message": "repository name not known to registry"}]}).encode(),
            "application/json")

server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
with open(sys.argv[1] + ".tmp", "w") as f:
    f.write(str(server.server_port))
os.rename(sys.argv[1] + ".tmp", sys.argv[1])
server.serve_forever()
)PY";

struct server {
  berth::testing::temp_dir dir{"/tmp/berth-unit-pull-"};
  pid_t pid = -1;
  int port = 0;

  server() {
    std::ofstream{dir.path / "server.py"} << server_py;
    auto log = dir.path / "server.log";
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      auto script = (dir.path / "server.py").string();
      auto port_file = (dir.path / "port").string();
      ::execlp("python3", "python3", script.c_str(), port_file.c_str(),
               nullptr);
      ::_exit(127);
    }
    for (int i = 0; i < 200 && !fs::exists(dir.path / "port"); ++i)
      std::this_thread::sleep_for(50ms);
    port = std::atoi(berth::testing::read_file(dir.path / "port").c_str());
  }

  ~server() {
    if (pid > 0) {
      ::kill(pid, SIGTERM);
      ::waitpid(pid, nullptr, 0);
    }
  }

  std::string ref(const std::string& repo) const {
    return "127.0.0.1:" + std::to_string(port) + "/" + repo + ":latest";
  }
};

struct pull_fixture {
  server srv;
  berth::testing::temp_dir root{"/tmp/berth-unit-pull-store-"};
  image_store store;

  pull_fixture() {
    BOOST_TEST_REQUIRE(srv.port > 0,
                       "server did not start: " << berth::testing::read_file(
                           srv.dir.path / "server.log"));
    std::string err;
    BOOST_TEST_REQUIRE(store.open(root.path.string(), err), err);
  }

  bool pull(const std::string& repo, image_record& out, std::string& err) {
    pull_request req;
    req.reference = srv.ref(repo);
    req.tls_verify = false;
    pull_events ev;
    ev.log = [](std::string) {};
    ev.cancelled = [] { return false; };
    return pull_image(store, req, ev, out, err);
  }

  // Nothing half done may stay behind in the store's work directory.
  void check_no_work_left() {
    BOOST_CHECK(fs::is_empty(root.path / "tmp"));
  }
};

} // namespace

BOOST_AUTO_TEST_CASE(layer_unpacked_while_it_downloads) {
  pull_fixture f;
  image_record img;
  std::string err;
  BOOST_TEST_REQUIRE(f.pull("steady", img, err), err);
  BOOST_TEST_REQUIRE(img.layers.size() == 1u);
  auto diff = fs::path{f.store.layer_path(img.layers[0].chain_id)} / "diff";
  BOOST_CHECK_EQUAL(fs::file_size(diff / "big"), 3u << 20);
  BOOST_CHECK_EQUAL(berth::testing::read_file(diff / "etc/hello"), "hello\n");
  BOOST_CHECK_EQUAL(img.layers[0].size, int64_t((3 << 20) + 6));
  BOOST_CHECK(f.store.has_blob(img.layers[0].blob));
  f.check_no_work_left();
}

// The first transfer of the layer breaks off half way; the retry starts the
// blob over, so the half the unpacker saw is thrown away and the layer is
// unpacked from the whole, verified blob.
BOOST_AUTO_TEST_CASE(retried_transfer_unpacks_the_verified_blob) {
  pull_fixture f;
  image_record img;
  std::string err;
  BOOST_TEST_REQUIRE(f.pull("cut", img, err), err);
  // Two GETs of the layer: the cut one and the retry.
  auto gets = berth::testing::read_file(f.srv.dir.path / "gets.json");
  BOOST_CHECK_MESSAGE(gets.find("\"cut\": 2") != std::string::npos, gets);
  auto diff = fs::path{f.store.layer_path(img.layers[0].chain_id)} / "diff";
  BOOST_CHECK_EQUAL(fs::file_size(diff / "big"), 3u << 20);
  BOOST_CHECK_EQUAL(berth::testing::read_file(diff / "etc/hello"), "hello\n");
  f.check_no_work_left();
}

// A layer whose content cannot be unpacked fails the pull with the
// unpacker's reason (the download, still running, is not left blocked).
BOOST_AUTO_TEST_CASE(unpack_failure_while_downloading) {
  pull_fixture f;
  image_record img;
  std::string err;
  BOOST_CHECK(!f.pull("hostile", img, err));
  BOOST_CHECK_MESSAGE(err.find("entry f/x") != std::string::npos, err);
  f.check_no_work_left();
  BOOST_CHECK(fs::is_empty(f.root.path / "layers"));
}

// A corrupted blob is refused for its digest, even though the unpacker had
// already seen its bytes.
BOOST_AUTO_TEST_CASE(corrupted_blob_refused_for_its_digest) {
  pull_fixture f;
  image_record img;
  std::string err;
  BOOST_CHECK(!f.pull("corrupt", img, err));
  BOOST_CHECK_MESSAGE(err.find("digest mismatch") != std::string::npos, err);
  f.check_no_work_left();
  BOOST_CHECK(fs::is_empty(f.root.path / "layers"));
}

// Short names go to the search registries in order, and to no registry at
// all when none is configured: never to docker.io behind the user's back.
BOOST_AUTO_TEST_CASE(short_names_and_search_registries) {
  pull_fixture f;
  std::string log;
  pull_events ev;
  ev.log = [&](std::string line) { log += line; };
  ev.cancelled = [] { return false; };
  pull_request req;
  req.reference = "steady";
  req.tls_verify = false;
  image_record img;
  std::string err;
  BOOST_CHECK(!pull_image(f.store, req, ev, img, err));
  BOOST_CHECK_EQUAL(err, "image name provided is a short name and no search "
                         "registries are defined in the registries config "
                         "file.");
  BOOST_CHECK_EQUAL(log, "");
  req.reference = "library/steady:latest";
  BOOST_CHECK(!pull_image(f.store, req, ev, img, err));
  BOOST_CHECK(err.starts_with("image name provided is a short name"));

  // A registry nobody answers on, then the server: the second one serves.
  int closed = 0;
  {
    server other; // stopped at the end of this block
    closed = other.port;
  }
  auto here = "127.0.0.1:" + std::to_string(f.srv.port);
  auto nowhere = "127.0.0.1:" + std::to_string(closed);
  req.reference = "steady";
  req.search_registries = {nowhere, here};
  BOOST_TEST_REQUIRE(pull_image(f.store, req, ev, img, err), err);
  BOOST_CHECK(img.names == std::vector<std::string>{here + "/steady:latest"});
  BOOST_CHECK(
      log.starts_with("Trying to pull " + nowhere + "/steady:latest...\n"));
  BOOST_CHECK(log.find("Trying to pull " + here + "/steady:latest...\n") !=
              std::string::npos);
  BOOST_CHECK(log.find("docker.io") == std::string::npos);

  // Every registry tried has its line in the error.
  req.reference = "nosuch";
  BOOST_CHECK(!pull_image(f.store, req, ev, img, err));
  BOOST_CHECK(err.starts_with("pulling " + nowhere + "/nosuch:latest: "));
  BOOST_CHECK(err.find("\npulling " + here + "/nosuch:latest: ") !=
              std::string::npos);
}
