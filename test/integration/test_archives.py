"""berthd's image archive methods (issue 3, items 3-5): LoadImage,
ImageSave + ReceiveFile, ExportImage, ImportImage, PullImage from archive
transports, PushImage and SearchImages against a loopback registry, and the
`berth` verbs load, save, import, push and search.

Fixtures come from test/fixtures/images.py (built once into a cache dir);
one docker-registry serves the module; every test gets its own berthd (and
a second, fresh one where a round trip needs it).
"""

import gzip
import hashlib
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time

import harness
from harness import DaemonTest, run_tool

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))

import images  # noqa: E402  (test/fixtures/images.py)
from registry import Registry  # noqa: E402  (test/fixtures/registry.py)

CACHE = os.environ.get("BERTH_TEST_FIXTURES", "/var/tmp/berth-test-fixtures")
TIMEOUT = 60.0
OCI_TAR = "application/vnd.oci.image.layer.v1.tar"
OCI_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
DOCKER_GZIP = "application/vnd.docker.image.rootfs.diff.tar.gzip"

FX = None   # fixtures.json of images.py
REG = None  # the module's registry


def setUpModule():
    global FX, REG
    harness.raise_nofile_limit()
    FX = images.build(CACHE, quiet=True)
    REG = Registry()
    REG.push(os.path.join(CACHE, "busybox-oci"), "busybox", "latest")
    REG.push(os.path.join(CACHE, "busybox5-oci"), "busybox5", "latest")


def tearDownModule():
    if REG is not None:
        REG.stop()


def fixture(name):
    return os.path.join(CACHE, name)


def config_id(oci_name):
    return FX[oci_name]["config"].split(":", 1)[1]


def read_exact(conn, n, timeout=TIMEOUT):
    """n raw bytes from a harness.Conn (after an upgrade reply)."""
    deadline = time.monotonic() + timeout
    while len(conn.buf) < n:
        conn._fill(deadline)
    data, conn.buf = conn.buf[:n], conn.buf[n:]
    return data


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


class ArchiveTest(DaemonTest):
    """A berthd per test whose registries.conf searches the registry."""

    def setUp(self):
        super().setUp()
        with open(self.path("registries.conf"), "w") as f:
            f.write('unqualified-search-registries = ["%s"]\n\n'
                    '[[registry]]\nlocation = "%s"\ninsecure = true\n'
                    % (REG.url, REG.url))
        self.d = self.start_daemon()

    def conn(self, d=None):
        return (d or self.d).connect(timeout=TIMEOUT)

    def call(self, method, params=None, d=None):
        with self.conn(d) as c:
            return c.request("io.podman." + method, params or {}, timeout=TIMEOUT)

    def ok(self, method, params=None, d=None):
        return self.assertOk(self.call(method, params, d))

    def stream(self, method, params, more=True, d=None, conn=None):
        """All replies of a streaming call; checks the `more` rules and
        returns (final reply, every log line)."""
        if conn is None:
            with self.conn(d) as c:
                return self.stream(method, params, more, d, c)
        flags = {"more": True} if more else {}
        conn.call("io.podman." + method, params, **flags)
        logs, n = [], 0
        while True:
            r = conn.recv(TIMEOUT)
            n += 1
            if "error" in r:
                self.assertNotIn("continues", r)
                return r, logs
            reply = r["parameters"]["reply"]
            for line in reply.get("logs") or []:
                self.assertTrue(line.endswith("\n"), line)
                logs.append(line)
            if not r.get("continues"):
                return r, logs
            self.assertTrue(more, "continues without more: %r" % r)
            self.assertEqual(reply.get("id", ""), "", r)
            self.assertLess(n, 500, "a stream without throttling")

    def final_id(self, reply):
        self.assertNotIn("error", reply, "reply: %r" % (reply,))
        self.assertFalse(reply.get("continues", False))
        return reply["parameters"]["reply"]["id"]

    def upload(self, path, conn):
        """SendFile over `conn` (upgraded); returns the server's path."""
        with open(path, "rb") as f:
            data = f.read()
        r = conn.request("io.podman.SendFile", {"type": "", "length": len(data)},
                         upgrade=True)
        handle = self.assertOk(r)["file_handle"]
        conn.send_raw(data)
        self.assertEqual(read_exact(conn, len(handle) + 1), (handle + ":").encode())
        return handle

    def receive(self, path, conn, delete=True):
        r = conn.request("io.podman.ReceiveFile", {"path": path, "delete": delete},
                         upgrade=True)
        n = self.assertOk(r)["len"]
        return read_exact(conn, n)

    def load(self, path, d=None, more=True, name=""):
        """Uploads and loads `path`; returns the final id."""
        with self.conn(d) as c:
            handle = self.upload(path, c)
            r, logs = self.stream("LoadImage", {"name": name, "inputFile": handle,
                                                "quiet": False, "deleteFile": True},
                                  more, conn=c)
            self.assertFalse(os.path.exists(handle), "LoadImage left its input")
            return self.final_id(r)

    def save(self, name, fmt, more_tags=(), d=None, compress=False):
        """ImageSave + ReceiveFile; returns the archive's bytes."""
        with self.conn(d) as c:
            r, logs = self.stream("ImageSave", {"options": {
                "name": name, "format": fmt, "output": "/ignored", "outputType": "",
                "moreTags": list(more_tags), "quiet": False, "compress": compress}},
                conn=c)
            path = self.final_id(r)
            self.assertTrue(path.startswith(os.path.join(self.root, "uploads")), path)
            self.assertFalse(os.path.exists("/ignored"))
            data = self.receive(path, c)
            self.assertFalse(os.path.exists(path), "ReceiveFile delete=true kept it")
            # the connection is usable afterwards
            self.assertVersionReply(c.request("io.podman.GetVersion"))
            return data

    def images(self, d=None):
        return self.ok("ListImages", d=d)["images"] or []

    def inspect(self, name, d=None):
        return json.loads(self.ok("InspectImage", {"name": name}, d=d)["image"])

    def assertNoImages(self, d=None):
        self.assertEqual(self.images(d), [])
        root = self.root if d is None or d is self.d else self.path("d2", "root")
        self.assertEqual(listdir(os.path.join(root, "tmp")), [], "store tmp not clean")
        self.assertEqual(listdir(os.path.join(root, "layers")), [], "layers left behind")

    def blob_files(self):
        return set(listdir(os.path.join(self.root, "blobs", "sha256")))

    def assertGzipDir(self, path, layer_type, n_layers):
        """A "dir:" directory whose every layer is gzip, as its manifest
        says, under its digest, unpacking to the config's diff ID."""
        with open(os.path.join(path, "manifest.json"), "rb") as f:
            manifest = json.load(f)
        with open(os.path.join(path, manifest["config"]["digest"][7:]), "rb") as f:
            diff_ids = json.load(f)["rootfs"]["diff_ids"]
        self.assertEqual(len(manifest["layers"]), n_layers)
        for layer, diff_id in zip(manifest["layers"], diff_ids):
            self.assertEqual(layer["mediaType"], layer_type)
            with open(os.path.join(path, layer["digest"][7:]), "rb") as f:
                data = f.read()
            self.assertEqual(data[:2], b"\x1f\x8b", layer["digest"])
            self.assertEqual("sha256:" + hashlib.sha256(data).hexdigest(), layer["digest"])
            self.assertEqual(layer["size"], len(data))
            self.assertEqual("sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest(),
                             diff_id)
        return manifest

    def layout_manifest(self, path):
        """The one manifest of the OCI layout at `path`."""
        with open(os.path.join(path, "index.json"), "rb") as f:
            digest = json.load(f)["manifests"][0]["digest"]
        with open(os.path.join(path, "blobs", "sha256", digest[7:]), "rb") as f:
            return json.load(f)

    def fresh_daemon(self):
        return self.start_daemon(addresses=["unix:" + self.path("d2.sock")], name="d2")

    def skopeo_inspect(self, ref):
        p = run_tool(["skopeo", "inspect", "--raw", ref])
        self.assertEqual(p.returncode, 0, "skopeo inspect %s: %s" % (ref, p.stderr))
        return json.loads(p.stdout)

    def berth(self, *args, d=None):
        argv = [harness.ARGS.berth, "--address", (d or self.d).address] + list(args)
        return run_tool(argv, timeout=TIMEOUT)

    def berth_io(self, args, stdin=subprocess.DEVNULL, text=True):
        """berth with a given stdin (a file), stdout not a terminal."""
        argv = [harness.ARGS.berth, "--address", self.d.address] + list(args)
        return subprocess.run(argv, stdin=stdin, capture_output=True, text=text,
                              timeout=TIMEOUT)


# =============================================================================


class LoadTest(ArchiveTest):

    def test_load_docker_and_oci_archives(self):
        bb = config_id("busybox-oci")
        self.assertEqual(self.load(fixture("busybox-docker.tar")), "localhost/busybox:latest")
        imgs = self.images()
        self.assertEqual([i["id"] for i in imgs], [bb])
        self.assertEqual(imgs[0]["repoTags"], ["localhost/busybox:latest"])
        self.assertTrue(imgs[0]["repoDigests"][0].startswith("localhost/busybox@sha256:"))
        # the oci-archive's only ref name is the bare tag "latest": no name
        self.assertEqual(self.load(fixture("busybox-oci.tar"), more=False), bb)
        self.assertEqual(self.load(fixture("busybox5-docker.tar")),
                         "localhost/busybox5:latest")
        ids = sorted(i["id"] for i in self.images())
        self.assertEqual(ids, sorted([bb, config_id("busybox5-oci")]))
        self.assertEqual(self.inspect("busybox5")["Config"]["Cmd"], ["sh"])
        self.assertEqual(listdir(os.path.join(self.root, "tmp")), [])
        self.assertEqual(listdir(os.path.join(self.root, "uploads")), [])

    def test_load_oci_archive_into_fresh_store_and_by_ref(self):
        with self.conn() as c:
            handle = self.upload(fixture("busybox-oci.tar"), c)
            r, _ = self.stream("LoadImage", {"name": "nosuchref", "inputFile": handle,
                                             "quiet": False, "deleteFile": False},
                               conn=c)
            self.assertError(r, "io.podman.ErrorOccurred")
            self.assertIn("nosuchref", r["parameters"]["reason"])
            self.assertTrue(os.path.exists(handle), "deleteFile=false removed the input")
            r, logs = self.stream("LoadImage", {"name": "latest", "inputFile": handle,
                                                "quiet": False, "deleteFile": True},
                                  conn=c)
            self.assertEqual(self.final_id(r), config_id("busybox-oci"))
            self.assertTrue(any("Copying blob" in l for l in logs), logs)
        self.assertFalse(os.path.exists(handle))

    def test_berth_load_verb(self):
        p = self.berth("load", "-i", fixture("busybox5-docker.tar"))
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Loaded image(s): localhost/busybox5:latest", p.stdout)
        with open(fixture("busybox-oci.tar"), "rb") as f:
            p = self.berth_io(["load", "-q"], stdin=f)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(config_id("busybox-oci"), p.stdout)
        ids = sorted(i["id"] for i in self.images())
        self.assertEqual(ids, sorted([config_id("busybox-oci"), config_id("busybox5-oci")]))
        self.assertEqual(listdir(os.path.join(self.root, "uploads")), [])

    def test_load_garbage(self):
        garbage = self.path("garbage.tar")
        with open(garbage, "wb") as f:
            f.write(random.Random(3).randbytes(100000))
        empty = self.path("empty.tar")
        with tarfile.open(empty, "w") as t:
            info = tarfile.TarInfo("hello.txt")
            info.size = 3
            t.addfile(info, io.BytesIO(b"hi\n"))
        for path, words in [(garbage, "not an image archive"),
                            (empty, "neither index.json nor manifest.json")]:
            with self.conn() as c:
                handle = self.upload(path, c)
                r, _ = self.stream("LoadImage", {"name": "", "inputFile": handle,
                                                 "quiet": False, "deleteFile": True},
                                   conn=c)
                self.assertError(r, "io.podman.ErrorOccurred")
                self.assertIn(words, r["parameters"]["reason"])
                self.assertFalse(os.path.exists(handle), "the input stays after a failure")
        r = self.call("LoadImage", {"name": "", "inputFile": self.path("missing.tar"),
                                    "quiet": True, "deleteFile": False})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertNoImages()

    def hostile_docker_archive(self, path, layer_name, extra=()):
        """A docker-archive whose manifest names `layer_name`; `extra` adds
        (TarInfo, bytes) entries first."""
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": ["sha256:" + "0" * 64]}
                          }).encode()
        cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
        manifest = json.dumps([{"Config": cfg_name, "RepoTags": ["localhost/evil:1"],
                                "Layers": [layer_name]}]).encode()
        with tarfile.open(path, "w") as t:
            for info, data in extra:
                t.addfile(info, io.BytesIO(data) if data is not None else None)
            for name, data in [("manifest.json", manifest), (cfg_name, cfg)]:
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))

    def test_hostile_archives(self):
        canary = self.path("host-secret.tar")
        shutil.copy(os.path.join(CACHE, "hostile", "dotdot.tar"), canary)
        escape = "/tmp/berth-arc-escape-%d" % os.getpid()
        self.addCleanup(lambda: os.path.exists(escape) and os.unlink(escape))

        def entry(name, data=b"", type_=tarfile.REGTYPE, link=""):
            info = tarfile.TarInfo(name)
            info.type = type_
            info.linkname = link
            info.size = len(data) if type_ == tarfile.REGTYPE else 0
            return (info, data if type_ == tarfile.REGTYPE else None)

        cases = {
            "dotdot-layer": ("../../etc/passwd", []),
            "absolute-layer": ("/etc/passwd", []),
            "symlink-layer": ("evil/layer.tar",
                              [entry("evil", type_=tarfile.DIRTYPE),
                               entry("evil/layer.tar", type_=tarfile.SYMTYPE,
                                     link=canary)]),
            "climbing-entries": ("layer.tar",
                                 [entry("../x", b"x\n"),
                                  entry("../../../../../../../../.." + escape, b"x\n"),
                                  entry(escape, b"x\n")]),
            "device-layer": ("dev.tar", [entry("dev.tar", type_=tarfile.CHRTYPE)]),
        }
        before = set(listdir(self.tmp))
        for name, (layer, extra) in cases.items():
            path = self.path(name + ".tar")
            self.hostile_docker_archive(path, layer, extra)
            with self.conn() as c:
                handle = self.upload(path, c)
                r, _ = self.stream("LoadImage", {"name": "", "inputFile": handle,
                                                 "quiet": False, "deleteFile": True},
                                   conn=c)
            self.assertError(r, "io.podman.ErrorOccurred")
            os.unlink(path)
            self.assertFalse(os.path.exists(escape), name)
            self.assertEqual(set(listdir(self.tmp)), before, name)
            self.assertFalse(os.path.exists(os.path.join(self.root, "x")), name)
            self.assertFalse(os.path.exists(os.path.join(self.root, "uploads", "x")), name)
        self.assertNoImages()
        # a layer tarball with `..` entries is no image archive either
        with self.conn() as c:
            handle = self.upload(os.path.join(CACHE, "hostile", "dotdot.tar"), c)
            r, _ = self.stream("LoadImage", {"name": "", "inputFile": handle,
                                             "quiet": False, "deleteFile": True}, conn=c)
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertFalse(os.path.exists(os.path.join(self.root, "escape")))
        self.assertFalse(os.path.exists(os.path.join(self.root, "tmp", "escape")))
        self.assertNoImages()


class KillDuringLoadTest(ArchiveTest):

    def big_archive(self, path):
        """A docker-archive: one 64 MiB layer of random bytes, then two small
        ones (unpacked in parallel, they are stored long before the big)."""
        layers = []
        for i, size in enumerate([64 << 20, 1000, 2000]):
            buf = io.BytesIO()
            with tarfile.open(fileobj=buf, mode="w") as t:
                info = tarfile.TarInfo("data%d.bin" % i)
                info.size = size
                t.addfile(info, io.BytesIO(random.Random(i).randbytes(size)))
            layers.append(buf.getvalue())
        diff_ids = ["sha256:" + hashlib.sha256(l).hexdigest() for l in layers]
        cfg = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                          "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        cfg_name = hashlib.sha256(cfg).hexdigest() + ".json"
        names = [d.split(":")[1] + ".tar" for d in diff_ids]
        manifest = json.dumps([{"Config": cfg_name, "RepoTags": ["localhost/big:1"],
                                "Layers": names}]).encode()
        with tarfile.open(path, "w") as t:
            for name, data in [("manifest.json", manifest), (cfg_name, cfg)] + \
                    list(zip(names, layers)):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
        return cfg_name.split(".")[0]

    def test_sigkill_mid_load(self):
        archive = self.path("big.tar")
        want = self.big_archive(archive)
        layers = os.path.join(self.root, "layers")
        c = self.conn()
        try:
            c.call("io.podman.LoadImage", {"name": "", "inputFile": archive,
                                           "quiet": False, "deleteFile": False},
                   more=True)
            deadline = time.monotonic() + 30
            while not listdir(layers) and time.monotonic() < deadline:
                time.sleep(0.002)
            self.d.exit_expected = True
            self.d.kill()
        finally:
            c.close()
        sys.stderr.write("\n    at the kill: ROOT/layers %d, ROOT/tmp %d entries\n"
                         % (len(listdir(layers)),
                            len(listdir(os.path.join(self.root, "tmp")))))
        self.d = self.start_daemon()
        self.assertNoImages()
        self.assertEqual(self.load(archive), "localhost/big:1")
        self.assertEqual([i["id"] for i in self.images()], [want])
        self.assertEqual(len(listdir(layers)), 3)


class SaveTest(ArchiveTest):

    def test_save_each_format_and_load_back(self):
        self.load(fixture("busybox5-docker.tar"))
        want = config_id("busybox5-oci")
        d2 = self.fresh_daemon()
        for fmt in ["oci-archive", "", "docker-archive", "oci-dir", "docker-dir"]:
            data = self.save("busybox5", fmt, more_tags=["extra:1"] if fmt else [])
            out = self.path("saved-%s.tar" % (fmt or "default"))
            with open(out, "wb") as f:
                f.write(data)
            if fmt == "docker-archive":
                m = self.skopeo_inspect("docker-archive:" + out)
                self.assertEqual(m["config"]["digest"], "sha256:" + want)
                with tarfile.open(out) as t:
                    manifest = json.load(t.extractfile("manifest.json"))
                self.assertEqual(manifest[0]["RepoTags"],
                                 ["localhost/busybox5:latest", "localhost/extra:1"])
                self.assertEqual(len(manifest[0]["Layers"]), 5)
            elif fmt in ("oci-archive", ""):
                ref = "oci-archive:" + out + (":localhost/busybox5:latest" if fmt else "")
                m = self.skopeo_inspect(ref)
                self.assertEqual(m["config"]["digest"], "sha256:" + want)
                self.assertEqual(m["mediaType"], "application/vnd.oci.image.manifest.v1+json")
            else:
                unpacked = self.path("saved-" + fmt)
                with tarfile.open(out) as t:
                    t.extractall(unpacked)
                m = self.skopeo_inspect("dir:" + unpacked)
                self.assertEqual(m["config"]["digest"], "sha256:" + want)
                self.assertEqual(m["mediaType"], {
                    "oci-dir": "application/vnd.oci.image.manifest.v1+json",
                    "docker-dir": "application/vnd.docker.distribution.manifest.v2+json",
                }[fmt])
            loaded = self.load(out, d=d2)
            if fmt in ("oci-archive", "docker-archive"):
                self.assertEqual(loaded, "localhost/busybox5:latest, localhost/extra:1")
            ids = [i["id"] for i in self.images(d2)]
            self.assertEqual(ids, [want], fmt)
            self.ok("RemoveImage", {"name": want, "force": True}, d=d2)
        self.assertEqual(listdir(os.path.join(self.root, "uploads")), [])
        self.assertEqual(listdir(os.path.join(self.root, "tmp")), [])

    def test_save_errors(self):
        self.load(fixture("busybox-docker.tar"))
        opts = {"name": "busybox", "format": "tarball", "output": "", "outputType": "",
                "moreTags": [], "quiet": False, "compress": False}
        r, _ = self.stream("ImageSave", {"options": opts})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertIn("tarball", r["parameters"]["reason"])
        opts.update(name="nosuchimage", format="oci-archive")
        r, _ = self.stream("ImageSave", {"options": opts})
        self.assertError(r, "io.podman.ImageNotFound")
        self.assertEqual(listdir(os.path.join(self.root, "uploads")), [])

    def test_receive_file_needs_upgrade(self):
        self.load(fixture("busybox-docker.tar"))
        with self.conn() as c:
            r, _ = self.stream("ImageSave", {"options": {
                "name": "busybox", "format": "docker-archive", "output": "",
                "outputType": "", "moreTags": [], "quiet": True, "compress": False}},
                more=False, conn=c)
            path = self.final_id(r)
            r = c.request("io.podman.ReceiveFile", {"path": path, "delete": True})
            self.assertError(r, "io.podman.ErrorOccurred")
            self.assertIn("upgraded connection", r["parameters"]["reason"])
            self.assertTrue(os.path.exists(path))
            data = self.receive(path, c)
        self.assertTrue(data.startswith(b"manifest.json"), data[:100])

    def test_export_image(self):
        self.load(fixture("busybox-docker.tar"))
        bb = config_id("busybox-oci")
        for dest, check in [
                ("oci-archive:%s:mytag" % self.path("e.oci.tar"),
                 "oci-archive:%s:mytag" % self.path("e.oci.tar")),
                ("docker-archive:%s:localhost/exported:2" % self.path("e.docker.tar"),
                 "docker-archive:%s" % self.path("e.docker.tar")),
                ("oci:%s:v1" % self.path("e-oci"), "oci:%s:v1" % self.path("e-oci")),
                ("dir:%s" % self.path("e-dir"), "dir:%s" % self.path("e-dir"))]:
            out = self.ok("ExportImage", {"name": "busybox", "destination": dest,
                                          "compress": False, "tags": ["more:1"]})
            self.assertEqual(out["image"], bb)
            self.assertEqual(self.skopeo_inspect(check)["config"]["digest"], "sha256:" + bb)
        with tarfile.open(self.path("e.docker.tar")) as t:
            self.assertEqual(json.load(t.extractfile("manifest.json"))[0]["RepoTags"],
                             ["localhost/exported:2", "localhost/more:1"])
        # an existing non-empty directory is not overwritten
        r = self.call("ExportImage", {"name": "busybox", "destination":
                                      "oci:%s" % self.path("e-oci"), "compress": False,
                                      "tags": []})
        self.assertError(r, "io.podman.ErrorOccurred")
        r = self.call("ExportImage", {"name": "busybox", "destination": "ftp:/x",
                                      "compress": False, "tags": []})
        self.assertError(r, "io.podman.ErrorOccurred")
        r = self.call("ExportImage", {"name": "nosuch", "destination": "dir:/tmp/nosuch",
                                      "compress": False, "tags": []})
        self.assertError(r, "io.podman.ImageNotFound")
        self.assertEqual([n for n in listdir(self.tmp) if n.startswith(".")], [])

    def test_berth_save_verb(self):
        self.load(fixture("busybox-docker.tar"))
        bb = config_id("busybox-oci")
        out = self.path("b.tar")
        p = self.berth("save", "-o", out, "busybox")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.skopeo_inspect("oci-archive:%s:localhost/busybox:latest"
                                             % out)["config"]["digest"], "sha256:" + bb)
        p = self.berth_io(["save", "-q", "--format", "docker-archive", "busybox",
                           "second:2"], text=False)
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(self.path("stdout.tar"), "wb") as f:
            f.write(p.stdout)
        self.skopeo_inspect("docker-archive:" + self.path("stdout.tar"))
        for fmt in ["oci-dir", "docker-dir"]:
            out = self.path("dir-" + fmt)
            p = self.berth("save", "--format", fmt, "-o", out, "busybox")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(self.skopeo_inspect("dir:" + out)["config"]["digest"],
                             "sha256:" + bb)
        d2 = self.fresh_daemon()
        p = self.berth("load", "-i", self.path("stdout.tar"), d=d2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("localhost/busybox:latest, localhost/second:2", p.stdout)
        self.assertEqual([i["id"] for i in self.images(d2)], [bb])
        self.assertEqual(listdir(os.path.join(self.root, "uploads")), [])


class CompressTest(ArchiveTest):
    """`compress` of ImageSave, ExportImage and berth save: every layer of a
    directory format gzip; archives as they are without it."""

    def test_save_dir_formats_compressed_and_loaded_back(self):
        self.load(fixture("busybox5-docker.tar"))  # layers stored uncompressed
        want = config_id("busybox5-oci")
        d2 = self.fresh_daemon()
        for fmt, layer_type in [("oci-dir", OCI_GZIP), ("docker-dir", DOCKER_GZIP)]:
            with self.subTest(fmt=fmt):
                out = self.path("z-%s.tar" % fmt)
                with open(out, "wb") as f:
                    f.write(self.save("busybox5", fmt, compress=True))
                unpacked = self.path("z-" + fmt)
                with tarfile.open(out) as t:
                    t.extractall(unpacked)
                self.assertGzipDir(unpacked, layer_type, 5)
                self.assertEqual(self.skopeo_inspect("dir:" + unpacked)["config"]["digest"],
                                 "sha256:" + want)
                # loaded back as a tarball and from the directory: the same image
                self.load(out, d=d2)
                self.assertEqual([i["id"] for i in self.images(d2)], [want])
                self.ok("RemoveImage", {"name": want, "force": True}, d=d2)
                r, _ = self.stream("PullImage", {"name": "dir:" + unpacked}, d=d2)
                self.assertEqual(self.final_id(r), want)
                self.ok("RemoveImage", {"name": want, "force": True}, d=d2)
        # an archive ignores it, as podman does: the layers stay as stored
        out = self.path("z.oci.tar")
        with open(out, "wb") as f:
            f.write(self.save("busybox5", "oci-archive", compress=True))
        with tarfile.open(out) as t:
            t.extractall(self.path("z-oci"))
        manifest = self.layout_manifest(self.path("z-oci"))
        self.assertEqual([l["mediaType"] for l in manifest["layers"]], [OCI_TAR] * 5)
        self.assertEqual(listdir(os.path.join(self.root, "uploads")), [])
        self.assertEqual(listdir(os.path.join(self.root, "tmp")), [])

    def test_export_zstd_image_compressed(self):
        if "busybox-zstd-oci" not in FX:
            self.skipTest("busybox-zstd-oci not built (no zstd command)")
        r, _ = self.stream("PullImage", {"name": "oci:" + fixture("busybox-zstd-oci")})
        zid = self.final_id(r)
        self.assertEqual(FX["busybox-zstd-oci"]["layer_media_types"],
                         ["application/vnd.oci.image.layer.v1.tar+zstd"])
        self.ok("ExportImage", {"name": zid, "destination": "dir:" + self.path("e-dir"),
                                "compress": True, "tags": []})
        self.assertGzipDir(self.path("e-dir"), OCI_GZIP, 1)
        self.ok("ExportImage", {"name": zid, "destination": "oci:" + self.path("e-oci"),
                                "compress": True, "tags": []})
        layers = self.layout_manifest(self.path("e-oci"))["layers"]
        self.assertEqual([l["mediaType"] for l in layers], [OCI_GZIP])
        # without compress the zstd layer is written as it is
        self.ok("ExportImage", {"name": zid, "destination": "dir:" + self.path("e-raw"),
                                "compress": False, "tags": []})
        with open(self.path("e-raw", "manifest.json"), "rb") as f:
            raw = json.load(f)
        self.assertEqual(raw["layers"][0]["digest"], FX["busybox-zstd-oci"]["layers"][0])
        # each loads back as the same image
        d2 = self.fresh_daemon()
        for src in ("dir:" + self.path("e-dir"), "oci:" + self.path("e-oci"),
                    "dir:" + self.path("e-raw")):
            r, _ = self.stream("PullImage", {"name": src}, d=d2)
            self.assertEqual(self.final_id(r), zid, src)
            self.ok("RemoveImage", {"name": zid, "force": True}, d=d2)

    def test_berth_save_compress(self):
        self.load(fixture("busybox-docker.tar"))
        bb = config_id("busybox-oci")
        out = self.path("cli-docker-dir")
        p = self.berth("save", "--compress", "--format", "docker-dir", "-o", out, "busybox")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertGzipDir(out, DOCKER_GZIP, 1)
        self.assertEqual(self.skopeo_inspect("dir:" + out)["config"]["digest"], "sha256:" + bb)
        # accepted and ignored with an archive
        out = self.path("cli.tar")
        p = self.berth("save", "--compress", "-o", out, "busybox")
        self.assertEqual(p.returncode, 0, p.stderr)
        m = self.skopeo_inspect("oci-archive:%s:localhost/busybox:latest" % out)
        self.assertEqual([l["mediaType"] for l in m["layers"]], [OCI_TAR])
        p = self.berth("help")
        self.assertIn("--compress", p.stdout[p.stdout.index("  save"):])


class BlobLifetimeTest(ArchiveTest):
    """A blob goes with the last image naming it, whatever compression the
    store recorded for its layer, also in a store made before that was
    recorded."""

    def test_docker_archive_blob_beside_zstd_and_an_old_store(self):
        if "busybox-zstd-oci" not in FX:
            self.skipTest("busybox-zstd-oci not built (no zstd command)")
        zstd, bb = FX["busybox-zstd-oci"], FX["busybox-oci"]
        self.assertEqual(zstd["diff_ids"], bb["diff_ids"])  # one layer, two blobs
        r, _ = self.stream("PullImage", {"name": "oci:" + fixture("busybox-zstd-oci")})
        zid = self.final_id(r)
        self.load(fixture("busybox-docker.tar"))
        plain_layer = bb["diff_ids"][0][7:]  # a docker-archive's layer is plain
        zstd_blobs = {zstd["layers"][0][7:], zstd["config"][7:], zstd["manifest"][7:]}
        self.assertLessEqual(zstd_blobs | {plain_layer, bb["config"][7:]}, self.blob_files())
        self.assertEqual(len(listdir(os.path.join(self.root, "layers"))), 1)

        # The store as berthd wrote it before image_blobs: opening it keeps
        # the plain blob busybox's manifest names (the layer records zstd's).
        self.d.stop()
        db = sqlite3.connect(os.path.join(self.root, "state.db"))
        db.executescript("DROP TABLE image_blobs; PRAGMA user_version = 0;")
        db.close()
        self.d = self.start_daemon()
        self.assertIn(plain_layer, self.blob_files())
        self.save("busybox", "docker-dir")

        self.ok("RemoveImage", {"name": "busybox", "force": False})
        self.assertEqual(self.blob_files(), zstd_blobs)
        self.assertEqual(len(listdir(os.path.join(self.root, "layers"))), 1)
        self.ok("RemoveImage", {"name": zid, "force": False})
        self.assertEqual(self.blob_files(), set())
        self.assertNoImages()


class ImportTest(ArchiveTest):

    def rootfs(self):
        """The busybox root file system as a plain tar (the docker-archive's
        layer)."""
        path = self.path("rootfs.tar")
        with tarfile.open(fixture("busybox-docker.tar")) as t:
            layer = json.load(t.extractfile("manifest.json"))[0]["Layers"][0]
            with open(path, "wb") as f:
                shutil.copyfileobj(t.extractfile(layer), f)
        return path

    def test_import_with_changes(self):
        rootfs = self.rootfs()
        with self.conn() as c:
            src = self.upload(rootfs, c)
            out = self.assertOk(c.request("io.podman.ImportImage", {
                "source": src, "reference": "imported", "message": "from a test",
                "changes": ['CMD ["sh"]', "ENV FOO=bar", "ENV GREETING hello world",
                            "WORKDIR /tmp", "LABEL a=b", "EXPOSE 8080",
                            "STOPSIGNAL SIGINT", "USER app", "VOLUME /data"],
                "delete": True}))
        iid = out["image"]
        self.assertRegex(iid, "^[0-9a-f]{64}$")
        self.assertFalse(os.path.exists(src), "delete=true kept the source")
        img = self.inspect("imported")
        self.assertEqual(img["Id"], iid)
        self.assertEqual(img["RepoTags"], ["localhost/imported:latest"])
        cfg = img["Config"]
        self.assertEqual(cfg["Cmd"], ["sh"])
        self.assertEqual(cfg["Env"], ["FOO=bar", "GREETING=hello world"])
        self.assertEqual(cfg["WorkingDir"], "/tmp")
        self.assertEqual(cfg["Labels"], {"a": "b"})
        self.assertEqual(cfg["ExposedPorts"], {"8080/tcp": {}})
        self.assertEqual(cfg["StopSignal"], "SIGINT")
        self.assertEqual(cfg["User"], "app")
        self.assertEqual(cfg["Volumes"], {"/data": {}})
        self.assertEqual(img["History"][0]["comment"], "from a test")
        with open(rootfs, "rb") as f:
            diff_id = "sha256:" + hashlib.sha256(f.read()).hexdigest()
        self.assertEqual(img["RootFS"]["Layers"], [diff_id])
        # the layer is busybox's own: loading busybox shares it
        self.load(fixture("busybox-docker.tar"))
        self.assertEqual(len(listdir(os.path.join(self.root, "layers"))), 1)
        # unnamed, gzip-compressed, source kept
        gz = self.path("rootfs.tar.gz")
        subprocess.run(["gzip", "-kn", rootfs], check=True)
        out = self.ok("ImportImage", {"source": gz, "reference": "", "message": "",
                                      "changes": [], "delete": False})
        self.assertTrue(os.path.exists(gz))
        dangling = [i for i in self.images() if i["id"] == out["image"]]
        self.assertEqual(dangling[0]["repoTags"], [])
        self.assertEqual(self.inspect(out["image"])["RootFS"]["Layers"], [diff_id])

    def test_import_errors(self):
        rootfs = self.rootfs()
        r = self.call("ImportImage", {"source": rootfs, "reference": "x",
                                      "message": "", "changes": ["RUN rm -rf /"],
                                      "delete": False})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertIn("RUN", r["parameters"]["reason"])
        r = self.call("ImportImage", {"source": self.path("nope.tar"), "reference": "",
                                      "message": "", "changes": [], "delete": False})
        self.assertError(r, "io.podman.ErrorOccurred")
        garbage = self.path("garbage")
        with open(garbage, "wb") as f:
            f.write(b"this is not a tar file at all" * 100)
        r = self.call("ImportImage", {"source": garbage, "reference": "",
                                      "message": "", "changes": [], "delete": True})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertFalse(os.path.exists(garbage))
        self.assertNoImages()

    def test_berth_import_verb(self):
        rootfs = self.rootfs()
        p = self.berth("import", rootfs, "mine:v1", "-c", "CMD [\"sh\"]",
                       "--change", "ENV A=1", "-m", "by berth")
        self.assertEqual(p.returncode, 0, p.stderr)
        iid = p.stdout.strip()
        img = self.inspect("mine:v1")
        self.assertEqual(img["Id"], iid)
        self.assertEqual(img["Config"]["Env"], ["A=1"])
        self.assertTrue(os.path.exists(rootfs))
        self.assertEqual(listdir(os.path.join(self.root, "uploads")), [])


class PullArchiveTest(ArchiveTest):

    def test_pull_from_archive_transports(self):
        bb, bb5 = config_id("busybox-oci"), config_id("busybox5-oci")
        r, logs = self.stream("PullImage", {"name": "docker-archive:" +
                                            fixture("busybox5-docker.tar")})
        self.assertEqual(self.final_id(r), bb5)
        self.assertTrue(logs)
        r, _ = self.stream("PullImage", {"name": "oci-archive:%s:latest"
                                         % fixture("busybox-oci.tar")}, more=False)
        self.assertEqual(self.final_id(r), bb)
        r, _ = self.stream("PullImage", {"name": "oci:%s" % fixture("busybox-multi-oci")})
        self.assertEqual(self.final_id(r), bb)
        self.assertEqual(self.inspect("busybox5")["RepoTags"], ["localhost/busybox5:latest"])
        r, _ = self.stream("PullImage", {"name": "docker-archive:" + self.path("no.tar")})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertEqual(sorted(i["id"] for i in self.images()), sorted([bb, bb5]))


def assertGzipPushed(test, reg, name, tag, layer_type, n_layers):
    """The manifest `reg` holds for name:tag names `n_layers` gzip layers of
    `layer_type`, each blob gzip under its digest and size, unpacking to the
    config's diff ID."""
    _, _, body = reg.manifest(name, tag)
    manifest = json.loads(body)
    with open(reg.blob_path(manifest["config"]["digest"]), "rb") as f:
        diff_ids = json.load(f)["rootfs"]["diff_ids"]
    test.assertEqual(len(manifest["layers"]), n_layers)
    for layer, diff_id in zip(manifest["layers"], diff_ids):
        test.assertEqual(layer["mediaType"], layer_type)
        with open(reg.blob_path(layer["digest"]), "rb") as f:
            data = f.read()
        test.assertEqual(data[:2], b"\x1f\x8b", layer["digest"])
        test.assertEqual(layer["size"], len(data))
        test.assertEqual("sha256:" + hashlib.sha256(gzip.decompress(data)).hexdigest(),
                         diff_id)
    return manifest


class RegistryTest(ArchiveTest):

    def test_push_formats_and_pull_back(self):
        # a docker-archive's layers are stored uncompressed; the registry
        # gets them gzip'd without `compress`, as podman sends them
        self.load(fixture("busybox5-docker.tar"))
        want = config_id("busybox5-oci")
        d2 = self.fresh_daemon()
        for fmt, media, layer_type in [
                ("oci", "application/vnd.oci.image.manifest.v1+json", OCI_GZIP),
                ("v2s2", "application/vnd.docker.distribution.manifest.v2+json",
                 DOCKER_GZIP)]:
            dest = REG.ref("pushed-" + fmt, "t1")
            r, logs = self.stream("PushImage", {
                "name": "busybox5", "tag": dest, "tlsverify": False, "signaturePolicy": "",
                "creds": "", "certDir": "", "compress": False, "format": fmt,
                "removeSignatures": False, "signBy": ""})
            self.assertEqual(self.final_id(r), "")
            self.assertTrue(logs)
            self.assertEqual(REG.manifest("pushed-" + fmt, "t1")[1], media)
            assertGzipPushed(self, REG, "pushed-" + fmt, "t1", layer_type, 5)
            r, _ = self.stream("PullImage", {"name": dest, "tlsVerify": False}, d=d2)
            self.assertEqual(self.final_id(r), want)
        r, _ = self.stream("PushImage", {
            "name": "nosuchimage", "tag": "", "signaturePolicy": "", "creds": "",
            "certDir": "", "compress": False, "format": "", "removeSignatures": False,
            "signBy": ""})
        self.assertError(r, "io.podman.ImageNotFound")
        r, _ = self.stream("PushImage", {
            "name": "busybox5", "tag": REG.ref("x"), "tlsverify": False,
            "signaturePolicy": "", "creds": "", "certDir": "", "compress": False,
            "format": "v2s1", "removeSignatures": False, "signBy": ""})
        self.assertError(r, "io.podman.ErrorOccurred")

    def test_imported_image_pushed_gzip(self):
        rootfs = ImportTest.rootfs(self)
        iid = self.ok("ImportImage", {"source": rootfs, "reference": "imported",
                                      "message": "", "changes": [], "delete": False})["image"]
        for fmt, layer_type in (("", OCI_GZIP), ("v2s2", DOCKER_GZIP)):
            fmt_args = ["--format", fmt] if fmt else []
            p = self.berth("push", "--tls-verify=false", *fmt_args, "imported",
                           REG.ref("imported", fmt or "default"))
            self.assertEqual(p.returncode, 0, p.stderr)
            assertGzipPushed(self, REG, "imported", fmt or "default", layer_type, 1)
        d2 = self.fresh_daemon()
        p = self.berth("pull", "--tls-verify=false", REG.ref("imported", "v2s2"), d=d2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.splitlines()[-1], iid)

    def test_search(self):
        out = self.ok("SearchImages", {"query": "busy", "filter": {"star_count": 0}})
        names = [x["name"] for x in out["results"]]
        self.assertIn(REG.url + "/busybox", names)
        self.assertIn(REG.url + "/busybox5", names)
        for x in out["results"]:
            self.assertEqual(x["registry"], REG.url)
        out = self.ok("SearchImages", {"query": "busy", "limit": 1,
                                       "filter": {"star_count": 0}})
        self.assertEqual(len(out["results"]), 1)
        out = self.ok("SearchImages", {"query": REG.url + "/busybox5",
                                       "filter": {"star_count": 0}})
        self.assertEqual([x["name"] for x in out["results"]], [REG.url + "/busybox5"])
        out = self.ok("SearchImages", {"query": "busy", "filter": {
            "is_official": True, "star_count": 0}})
        self.assertEqual(out["results"], [])

    def test_berth_push_and_search_verbs(self):
        self.load(fixture("busybox-docker.tar"))
        dest = REG.ref("verb-pushed", "v1")
        p = self.berth("push", "--tls-verify=false", "--format", "v2s2", "busybox", dest)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("Writing manifest", p.stdout)
        d2 = self.fresh_daemon()
        p = self.berth("pull", "--tls-verify=false", dest, d=d2)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(config_id("busybox-oci"), p.stdout)
        p = self.berth("push", "--tls-verify=false", "nosuchimage", dest)
        self.assertEqual(p.returncode, 2)
        self.assertIn("ImageNotFound", p.stderr)
        p = self.berth("search", "--limit", "5", "busy")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[0].split(), ["NAME", "DESCRIPTION", "STARS", "OFFICIAL",
                                            "AUTOMATED"])
        found = [l.split()[0] for l in lines[1:]]
        self.assertIn(REG.url + "/busybox", found)
        self.assertIn(REG.url + "/busybox5", found)
        p = self.berth("search", "--filter", "is-official=true", "busy")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(len(p.stdout.splitlines()), 1)


class AuthRegistryTest(ArchiveTest):
    """busybox5 (five layers, checked and sent a few at once) pushed to and
    pulled from registries that ask for credentials; the pulls two at a
    time."""

    def round_trip(self, auth):
        reg = Registry(auth=auth)
        self.addCleanup(reg.stop)
        self.load(fixture("busybox5-docker.tar"))
        want = config_id("busybox5-oci")

        def both(run, *args):
            out = [None, None]
            threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, run(i, *args)))
                       for i in range(2)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            return out

        # The pushes go one after the other (each checks and sends its five
        # layers a few at once): docker-registry itself can lose a blob
        # link when two pushes upload the same blob into one repository at
        # the same moment ("blob unknown to registry" on the manifest).
        refs = [reg.ref("five", str(i)) for i in range(2)]
        for ref in refs:
            p = self.berth("push", "--tls-verify=false", "--creds", reg.creds,
                           "busybox5", ref)
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertIn("Writing manifest", p.stdout)
        for i in range(2):
            assertGzipPushed(self, reg, "five", str(i), OCI_GZIP, 5)

        d2 = self.fresh_daemon()
        p = self.berth("pull", "--tls-verify=false", refs[0], d=d2)
        self.assertEqual(p.returncode, 2, p.stdout)
        self.assertIn("unauthorized", p.stderr)
        for p in both(lambda i: self.berth("pull", "--tls-verify=false", "--creds",
                                           reg.creds, refs[i], d=d2)):
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(p.stdout.splitlines()[-1], want)
        self.assertEqual(self.inspect(refs[1], d=d2)["Id"], want)
        return reg

    def test_basic_auth(self):
        self.round_trip("basic")

    def test_token_auth(self):
        reg = self.round_trip("token")
        # one more push, alone: one token for each scope it asks for
        asked = len(reg.token_server.requests)
        p = self.berth("push", "--tls-verify=false", "--creds", reg.creds, "busybox5",
                       reg.ref("five", "again"))
        self.assertEqual(p.returncode, 0, p.stderr)
        fetched = reg.token_server.requests[asked:]
        scopes = [tuple(sc) for sc, _ in fetched]
        self.assertEqual(len(scopes), len(set(scopes)), fetched)
        self.assertTrue(all(who == reg.user for _, who in fetched), fetched)


if __name__ == "__main__":
    harness.main()
