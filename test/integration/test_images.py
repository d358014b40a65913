"""berthd's image methods against a real registry on loopback (issue 3;
cases C04 and the image half of C06): PullImage with and without `more`,
what the store looks like afterwards (layers shared, nothing half made, no
escape from hostile layers, a crash mid-pull), the lookups (ListImages,
GetImage, ImageExists, InspectImage, HistoryImage), the mutations (TagImage,
RemoveImage, DeleteUnusedImages, ImagesPrune), GetInfo's image count and
the `berth` image verbs.

Fixtures come from test/fixtures (built once into a cache dir, see
imagefx.py); one docker-registry serves them for the whole module; every
test gets its own berthd with its own --root.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import threading
import time

import harness
import imagefx
from harness import ConnectionClosed, DaemonTest, run_tool

ENV = None  # imagefx.Env for the module

PULL_TIMEOUT = 60.0
HEX64 = re.compile(r"^[0-9a-f]{64}$")
RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


def setUpModule():
    global ENV
    harness.raise_nofile_limit()
    ENV = imagefx.Env.start(
        log=lambda m: sys.stderr.write("test_images: %s\n" % m))


def tearDownModule():
    if ENV is not None:
        ENV.stop()


def listdir(path):
    try:
        return sorted(os.listdir(path))
    except FileNotFoundError:
        return []


class ImageTest(DaemonTest):
    """A berthd per test whose registries.conf searches the module's
    registry; helpers that check the protocol rules of every pull."""

    def setUp(self):
        super().setUp()
        imagefx.registries_conf(self.path("registries.conf"), ENV.registry.url)
        self.d = None

    # --- daemon and calls ----------------------------------------------------
    def daemon(self):
        if self.d is None:
            self.d = self.start_daemon()
        return self.d

    def call(self, method, params=None, conn=None, timeout=PULL_TIMEOUT):
        """One call (its own connection unless given); returns the reply."""
        if conn is not None:
            return conn.request("io.podman." + method, params or {}, timeout=timeout)
        with self.daemon().connect(timeout=timeout) as c:
            return c.request("io.podman." + method, params or {}, timeout=timeout)

    def ok(self, method, params=None, conn=None):
        return self.assertOk(self.call(method, params, conn))

    @property
    def layers_dir(self):
        return os.path.join(self.root, "layers")

    @property
    def store_tmp(self):
        return os.path.join(self.root, "tmp")

    # --- pulls ----------------------------------------------------------------
    def send_pull(self, conn, ref, more=False, tls_verify=False):
        params = {"name": ref}
        if tls_verify is not None:
            params["tlsVerify"] = tls_verify
        flags = {"more": True} if more else {}
        conn.call("io.podman.PullImage", params, **flags)

    def read_pull(self, conn, more, timeout=PULL_TIMEOUT):
        """Every reply of one PullImage, checking the stream rules: only
        calls with `more` see `continues`; an error or a reply without
        `continues` ends it; each `logs` entry is a line ending in \\n."""
        replies = []
        deadline = time.monotonic() + timeout
        while True:
            r = conn.recv(max(0.1, deadline - time.monotonic()))
            replies.append(r)
            if "error" in r:
                self.assertNotIn("continues", r, "an error reply with continues: %r" % r)
                break
            p = r.get("parameters", {})
            self.assertIn("reply", p, "PullImage reply without `reply`: %r" % r)
            logs = p["reply"].get("logs")
            self.assertTrue(logs is None or isinstance(logs, list), r)
            for line in logs or []:
                self.assertIsInstance(line, str)
                self.assertTrue(line.endswith("\n"), "log entry without newline: %r" % line)
            if not r.get("continues"):
                break
            self.assertTrue(more, "`continues` sent to a call without `more`: %r" % r)
            self.assertLess(len(replies), 2000, "PullImage streams without throttling")
        return replies

    def pull_replies(self, ref, more=False, conn=None, tls_verify=False):
        if conn is None:
            with self.daemon().connect(timeout=PULL_TIMEOUT) as c:
                return self.pull_replies(ref, more, c, tls_verify)
        self.send_pull(conn, ref, more, tls_verify)
        return self.read_pull(conn, more)

    def assertPulled(self, replies, want_id=None):
        """The final reply is a success whose id is the image ID."""
        last = replies[-1]
        self.assertNotIn("error", last, "pull failed: %r" % (last,))
        self.assertFalse(last.get("continues", False))
        got = last["parameters"]["reply"].get("id")
        self.assertTrue(got, "empty id on a successful pull: %r" % (last,))
        self.assertRegex(got, HEX64)
        if want_id is not None:
            self.assertEqual(got, want_id)
        return got

    def pull(self, name, tag="latest", more=False, conn=None):
        """Pulls ENV's image `name` and checks its id; returns the id."""
        replies = self.pull_replies(ENV.ref(name, tag), more, conn)
        want = ENV.config_id("busybox" if (name, tag) == ("busybox", "v2s2") else name)
        return self.assertPulled(replies, want)

    def assertPullError(self, replies, *fragments):
        last = replies[-1]
        self.assertEqual(last.get("error"), "io.podman.ErrorOccurred", "reply: %r" % (last,))
        reason = last.get("parameters", {}).get("reason", "")
        for f in fragments:
            self.assertIn(f, reason)
        for r in replies[:-1]:
            self.assertTrue(r.get("continues"), "reply before the error ends the stream: %r"
                            % (r,))
        return reason

    # --- store views ----------------------------------------------------------
    def list_images(self):
        return self.ok("ListImages")["images"] or []

    def inspect(self, name):
        return json.loads(self.ok("InspectImage", {"name": name})["image"])

    def image_layer_dirs(self):
        """Chain IDs of every listed image's layers (from InspectImage)."""
        used = set()
        for img in self.list_images():
            lower = self.inspect(img["id"])["GraphDriver"]["Data"]["LowerDir"]
            for p in lower.split(":"):
                self.assertEqual(os.path.dirname(p), self.layers_dir,
                                 "layer outside ROOT/layers: %s" % p)
                used.add(os.path.basename(p))
        return used

    def assertStoreConsistent(self):
        """Every layer dir belongs to a listed image and vice versa."""
        used = self.image_layer_dirs()
        self.assertEqual(set(listdir(self.layers_dir)), used,
                         "ROOT/layers does not match the images' layers")

    def blob_files(self):
        return set(listdir(os.path.join(self.root, "blobs", "sha256")))

    def image_blobs(self, name, details):
        """The hex names of the blobs a pulled fixture brings: its layers,
        its config and the manifest the store recorded."""
        got = {imagefx.hexid(d) for d in details["layers"]}
        got.add(imagefx.hexid(details["config"]))
        got.add(imagefx.hexid(self.inspect(name)["Digest"]))
        return got

    def assertAnswers(self):
        with self.daemon().connect(timeout=10) as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))


# =============================================================================


class PullReplyTest(ImageTest):
    """PullImage's reply shapes, with and without `more`."""

    def test_plain_pull_one_reply_with_id(self):
        with self.daemon().connect(timeout=PULL_TIMEOUT) as c:
            replies = self.pull_replies(ENV.ref("busybox"), more=False, conn=c)
            self.assertEqual(len(replies), 1, replies)
            self.assertEqual(set(replies[0]), {"parameters"}, replies[0])
            self.assertEqual(set(replies[0]["parameters"]["reply"]), {"logs", "id"})
            self.assertPulled(replies, ENV.config_id("busybox"))
            self.assertTrue(replies[0]["parameters"]["reply"]["logs"],
                            "a pull without `more` reports no progress at all")
            self.assertTrue(c.nothing_pending(0.5), "data after the final reply")
            # the connection goes on serving
            self.assertOk(c.request("io.podman.ImageExists",
                                    {"name": ENV.ref("busybox")}))

    def test_more_pull_streams_then_final_id(self):
        # Through a slow proxy the pull lasts ~1 s: progress must stream.
        size = sum(ENV.details("busybox5")["layer_sizes"])
        with imagefx.Proxy(ENV.registry.port, rate=size) as px, \
                self.daemon().connect(timeout=PULL_TIMEOUT) as c:
            t0 = time.monotonic()
            replies = self.pull_replies(px.ref("busybox5"), more=True, conn=c)
            took = time.monotonic() - t0
            self.assertPulled(replies, ENV.config_id("busybox5"))
            cont = [r for r in replies if r.get("continues")]
            self.assertGreaterEqual(len(cont), 1, "no progress streamed in a %.1f s pull"
                                    % took)
            for r in cont:
                self.assertNotEqual(r["parameters"]["reply"].get("logs"), [],
                                    "a progress reply with no lines (busy loop?)")
            # throttled: not hundreds of replies for a ~1 s pull
            self.assertLess(len(replies), 5 + 20 * took, "%d replies in %.1f s"
                            % (len(replies), took))
            lines = [l for r in replies for l in r["parameters"]["reply"]["logs"] or []]
            self.assertTrue(any(l.startswith("Copying blob") for l in lines), lines)
            self.assertTrue(c.nothing_pending(0.5), "data after the final reply")

    def test_more_pull_of_stored_image(self):
        self.pull("busybox")
        replies = self.pull_replies(ENV.ref("busybox"), more=True)
        self.assertPulled(replies, ENV.config_id("busybox"))
        self.assertEqual(len(self.list_images()), 1)

    def test_no_temporary_leftovers_after_pull(self):
        self.pull("busybox")
        self.pull("busybox5", more=True)
        self.assertEqual(listdir(self.store_tmp), [],
                         "ROOT/tmp keeps entries after successful pulls")


class PullVarietyTest(ImageTest):
    """Schema 2, zstd, an index, five layers; then every way to name them."""

    def known_digests(self, repo):
        """Manifest digests under which `repo` (a fixture repository name)
        can be fetched from the registry."""
        ds = {d for k, d in ENV.pushed.items() if k.split(":")[0] == repo}
        if repo == "busybox-multi":
            ds.add(ENV.details("busybox-multi")["manifest"])
        return ds

    def test_pull_all_kinds_and_list(self):
        reg = ENV.registry.url
        ids = {"busybox5": self.pull("busybox5")}
        if ENV.has_zstd:
            ids["busybox-zstd"] = self.pull("busybox-zstd", more=True)
        ids["busybox-multi"] = self.pull("busybox-multi")
        ids["busybox-v2s2"] = self.pull("busybox", "v2s2")
        ids["busybox"] = self.pull("busybox", more=True)
        self.assertEqual(ids["busybox-multi"], ids["busybox"],
                         "the index's linux/amd64 image is busybox")
        self.assertEqual(ids["busybox-v2s2"], ids["busybox"])

        imgs = {i["id"]: i for i in self.list_images()}
        self.assertEqual(set(imgs), set(ids.values()))
        want_tags = {
            ids["busybox5"]: {reg + "/busybox5:latest"},
            ids["busybox"]: {reg + "/busybox:latest", reg + "/busybox:v2s2",
                             reg + "/busybox-multi:latest"},
        }
        if ENV.has_zstd:
            want_tags[ids["busybox-zstd"]] = {reg + "/busybox-zstd:latest"}
        for iid, img in imgs.items():
            with self.subTest(image=iid[:12]):
                self.assertEqual(set(img["repoTags"]), want_tags[iid])
                self.assertTrue(img["repoDigests"], img)
                repos = set()
                for rd in img["repoDigests"]:
                    repo, _, dg = rd.partition("@")
                    self.assertRegex(dg, r"^sha256:[0-9a-f]{64}$", rd)
                    self.assertTrue(repo.startswith(reg + "/"), rd)
                    short = repo[len(reg) + 1:]
                    self.assertIn(dg, self.known_digests(short),
                                  "%s does not name a manifest of %s" % (rd, repo))
                    repos.add(repo)
                self.assertEqual(repos, {t.rsplit(":", 1)[0] for t in img["repoTags"]})
                self.assertGreater(img["size"], 0)
                self.assertRegex(img["created"], RFC3339)
                self.assertIsInstance(img["labels"], dict)
                self.assertIn("org.berth.fixture", img["labels"])
                self.assertEqual(img["containers"], 0)
        info = self.ok("GetInfo")["info"]
        self.assertEqual(info["store"]["images"], len(imgs))

    def test_get_image_by_every_kind_of_name(self):
        reg = ENV.registry.url
        b5 = self.pull("busybox5")
        bb = self.pull("busybox")
        for name, want in [(b5, b5), ("sha256:" + b5, b5), (bb, bb),
                           (reg + "/busybox5:latest", b5), (reg + "/busybox5", b5),
                           (reg + "/busybox:latest", bb), ("busybox", bb),
                           ("busybox:latest", bb), ("busybox5", b5)]:
            with self.subTest(name=name):
                img = self.ok("GetImage", {"id": name})["image"]
                self.assertEqual(img["id"], want)
                self.assertEqual(self.ok("ImageExists", {"name": name})["exists"], 0)
        # the shortest unique prefix of each ID
        for iid, other in [(b5, bb), (bb, b5)]:
            n = next(i for i in range(1, 64) if iid[:i] != other[:i])
            for prefix in (iid[:n], iid[:max(n, 12)], "sha256:" + iid[:max(n, 12)]):
                with self.subTest(prefix=prefix):
                    self.assertEqual(self.ok("GetImage", {"id": prefix})["image"]["id"], iid)

    def test_get_by_repo_digest_after_pull_by_tag(self):
        """Each RepoDigests entry names the image back, as does its short
        form; a digest of another manifest does not."""
        b5 = self.pull("busybox5")
        bb = self.pull("busybox")
        digests = self.ok("GetImage", {"id": b5})["image"]["repoDigests"]
        self.assertTrue(digests)
        for name in digests + ["busybox5@" + digests[0].split("@")[1]]:
            with self.subTest(name=name):
                self.assertEqual(self.ok("GetImage", {"id": name})["image"]["id"], b5)
                self.assertEqual(self.ok("ImageExists", {"name": name})["exists"], 0)
        other = self.ok("GetImage", {"id": bb})["image"]["repoDigests"][0].split("@")[1]
        wrong = "busybox5@" + other
        self.assertError(self.call("GetImage", {"id": wrong}), "io.podman.ImageNotFound")
        self.assertEqual(self.ok("ImageExists", {"name": wrong})["exists"], 1)

    def test_pull_and_get_by_digest(self):
        dg = ENV.pushed["busybox5:latest"]
        ref = ENV.ref("busybox5").rsplit(":", 1)[0] + "@" + dg
        b5 = self.assertPulled(self.pull_replies(ref), ENV.config_id("busybox5"))
        img = self.ok("GetImage", {"id": ref})["image"]
        self.assertEqual(img["id"], b5)
        self.assertIn(ref, img["repoDigests"])
        self.assertEqual(self.ok("ImageExists", {"name": ref})["exists"], 0)
        # the index of the multi-arch image, by digest
        idx = ENV.pushed["busybox-multi:latest"]
        ref = ENV.ref("busybox-multi").rsplit(":", 1)[0] + "@" + idx
        self.assertPulled(self.pull_replies(ref), ENV.config_id("busybox-multi"))

    def test_missing_image(self):
        self.pull("busybox")
        for name in ("doesnotexist", "busybox:nosuchtag", ENV.ref("busybox5"),
                     "0" * 64, "sha256:" + "0" * 64):
            with self.subTest(name=name):
                r = self.call("GetImage", {"id": name})
                self.assertEqual(r.get("error"), "io.podman.ImageNotFound", r)
                self.assertEqual(r["parameters"].get("id"), name)
                self.assertIsInstance(r["parameters"].get("reason"), str)
                self.assertEqual(self.ok("ImageExists", {"name": name})["exists"], 1)
                for method, key in (("InspectImage", "name"), ("HistoryImage", "name"),
                                    ("TagImage", "name"), ("RemoveImage", "name")):
                    params = {key: name, "tagged": "x:y"}
                    r = self.call(method, params)
                    self.assertEqual(r.get("error"), "io.podman.ImageNotFound",
                                     "%s: %r" % (method, r))
                    self.assertEqual(r["parameters"].get("id"), name)

    def test_ambiguous_id_prefix(self):
        b5, bb = ENV.config_id("busybox5"), ENV.config_id("busybox")
        candidates = [ENV.config_id(n) for n in ("busybox5", "busybox", "plus",
                                                  "corruptible")]
        if ENV.has_zstd:
            candidates.append(ENV.config_id("busybox-zstd"))
        pair = next(((a, b) for i, a in enumerate(candidates) for b in candidates[i + 1:]
                     if a[0] == b[0]), None)
        if pair is None:
            self.skipTest("no two fixture image IDs share a first hex digit: %s"
                          % [c[:4] for c in candidates])
        names = {b5: "busybox5", bb: "busybox", ENV.config_id("plus"): "plus",
                 ENV.config_id("corruptible"): "corruptible"}
        if ENV.has_zstd:
            names[ENV.config_id("busybox-zstd")] = "busybox-zstd"
        for iid in pair:
            self.pull(names[iid])
        common = os.path.commonprefix(pair)
        r = self.call("GetImage", {"id": common})
        self.assertEqual(r.get("error"), "io.podman.ErrorOccurred", r)
        self.assertIn("more than one", r["parameters"]["reason"])
        r = self.call("InspectImage", {"name": common})
        self.assertEqual(r.get("error"), "io.podman.ErrorOccurred", r)
        r = self.call("ImageExists", {"name": common})
        self.assertNotEqual(r.get("parameters", {}).get("exists"), 0,
                            "an ambiguous prefix exists: %r" % r)

    def test_get_info_counts_images(self):
        self.assertEqual(self.ok("GetInfo")["info"]["store"]["images"], 0)
        self.pull("busybox")
        self.assertEqual(self.ok("GetInfo")["info"]["store"]["images"], 1)
        self.pull("busybox5")
        self.pull("busybox", "v2s2")  # same image: no new one
        info = self.ok("GetInfo")["info"]
        self.assertEqual(info["store"]["images"], 2)
        self.assertEqual(info["store"]["images"], len(self.list_images()))
        self.ok("RemoveImage", {"name": ENV.ref("busybox5")})
        self.assertEqual(self.ok("GetInfo")["info"]["store"]["images"], 1)


class MissingTagTest(ImageTest):
    """C04: pulling a tag that does not exist."""

    def check(self, ref, more):
        with self.daemon().connect(timeout=PULL_TIMEOUT) as c:
            replies = self.pull_replies(ref, more=more, conn=c,
                                        tls_verify=None if "/" not in ref else False)
            if not more:
                self.assertEqual(len(replies), 1, replies)
            reason = self.assertPullError(replies, "manifest unknown")
            self.assertTrue(c.nothing_pending(0.5), "data after the error")
            # the connection and the daemon go on
            self.assertOk(c.request("io.podman.ImageExists", {"name": "busybox"}))
        self.assertTrue(self.d.running(), "berthd died")
        self.assertAnswers()
        self.assertEqual(self.list_images(), [])
        return reason

    def test_missing_tag_plain(self):
        self.check(ENV.ref("busybox", "foobar"), more=False)

    def test_missing_tag_more(self):
        self.check(ENV.ref("busybox", "foobar"), more=True)

    def test_missing_tag_short_name_via_search_registry(self):
        # `busybox:foobar` as in C04, searched in registries.conf's registry
        for more in (False, True):
            with self.subTest(more=more):
                reason = self.check("busybox:foobar", more)
                self.assertIn(ENV.registry.url, reason, "the reason names no registry")

    def test_missing_repository(self):
        r = self.pull_replies(ENV.ref("nosuchrepo"))
        self.assertPullError(r)
        self.assertAnswers()


class CorruptBlobTest(ImageTest):
    """A registry serving a layer whose bytes do not match its digest."""

    def test_digest_mismatch_refused_then_restored(self):
        det = ENV.details("corruptible")
        layer = det["layers"][0]
        ref = ENV.ref("corruptible")
        token = ENV.registry.corrupt_blob(layer)
        try:
            replies = self.pull_replies(ref)
            self.assertPullError(replies, "digest mismatch")
            replies = self.pull_replies(ref, more=True)
            self.assertPullError(replies, "digest mismatch")
            with self.subTest("nothing listed"):
                self.assertEqual(self.list_images(), [])
                self.assertEqual(self.ok("ImageExists", {"name": ref})["exists"], 1)
            with self.subTest("no layer dir"):
                self.assertEqual(listdir(self.layers_dir), [])
            with self.subTest("corrupt blob not stored under its digest"):
                self.assertFalse(os.path.exists(os.path.join(
                    self.root, "blobs", "sha256", imagefx.hexid(layer))))
            with self.subTest("ROOT/tmp empty after the failed pull"):
                self.assertEqual(listdir(self.store_tmp), [])
        finally:
            ENV.registry.restore_blob(token)
        self.assertTrue(ENV.registry.verify_blob(layer))
        self.assertPulled(self.pull_replies(ref), ENV.config_id("corruptible"))
        self.assertEqual([i["id"] for i in self.list_images()],
                         [ENV.config_id("corruptible")])
        self.assertStoreConsistent()


class HostileLayerTest(ImageTest):
    """Hostile layer tarballs (test/fixtures hostile/README.md): each pull
    fails cleanly or stays inside ROOT/layers/<id>/diff.

    Layers that try to write THROUGH a symlink to /etc could clobber this
    machine's /etc/passwd if the extractor were wrong, so that daemon runs
    in a private mount namespace where /etc is an overlay whose upper dir
    is in the test's temp dir: any write to /etc lands there, where the test
    sees it, and the real /etc is never touched. Hard links cannot cross
    into an overlay (EXDEV would hide a bug), so the hard-link images are
    pulled by a second daemon without the overlay; a hard link only adds a
    name, and the test checks /etc/shadow's link count."""

    HOST_ABSENT = ["/etc/evil", "/tmp/berth-hostile-chain", "/tmp/berth-hostile-victim",
                   "/escape", "/escape2", "/x", "/tmp/escape", "/tmp/escape2", "/tmp/x",
                   "/etc/escape", "/etc/x"]
    KEEP = "/tmp/berth-hostile-keep"
    HARDLINK = ("hardlink-abs", "hardlink-up", "hardlink-via-symlink")

    def setUp(self):
        super().setUp()
        # the hostile tars name fixed paths in /tmp: one such test at a time
        # on this machine, even across suites run in parallel
        lock = open(os.path.join(imagefx.CACHE, ".hostile-lock"), "w")
        fcntl.flock(lock, fcntl.LOCK_EX)
        self.addCleanup(lock.close)
        self.outcomes = {}
        self.absent = [p for p in self.HOST_ABSENT if not os.path.lexists(p)]
        for p in ("/tmp/berth-hostile-chain", "/tmp/berth-hostile-victim"):
            if os.path.lexists(p):  # left by an earlier broken run
                os.unlink(p)
                self.absent.append(p)
        with open(self.KEEP, "w") as f:
            f.write("keep\n")
        self.addCleanup(lambda: os.path.lexists(self.KEEP) and os.unlink(self.KEEP))
        self.etc_before = {p: self.fingerprint(p) for p in ("/etc/passwd", "/etc/shadow",
                                                             "/etc/group")}

    @staticmethod
    def fingerprint(path):
        try:
            st = os.lstat(path)
            with open(path, "rb") as f:
                digest = hashlib.sha256(f.read()).hexdigest()
        except OSError as e:
            return ("error", e.errno)
        return (st.st_ino, st.st_nlink, st.st_size, st.st_mtime_ns, st.st_mode, digest)

    def overlay_argv(self):
        upper, work = self.path("etc-upper"), self.path("etc-work")
        os.makedirs(upper)
        os.makedirs(work)
        script = ('mount -t overlay berth-test-etc -o lowerdir=/etc,upperdir="$1",'
                  'workdir="$2" /etc || exit 97; shift 2; exec "$@"')
        return ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                upper, work]

    def overlay_works(self):
        if os.geteuid() != 0 or not shutil.which("unshare"):
            return False
        probe = tempfile.mkdtemp(prefix="ovl-", dir=self.tmp)
        os.makedirs(os.path.join(probe, "u"))
        os.makedirs(os.path.join(probe, "w"))
        p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c",
                            'mount -t overlay x -o lowerdir=/etc,upperdir="$1",workdir="$2"'
                            ' /etc && touch /etc/.berth-probe', "sh",
                            os.path.join(probe, "u"), os.path.join(probe, "w")],
                           capture_output=True, text=True)
        ok = p.returncode == 0 and os.path.exists(os.path.join(probe, "u", ".berth-probe")) \
            and not os.path.exists("/etc/.berth-probe")
        shutil.rmtree(probe, ignore_errors=True)
        return ok

    def escapes_in(self, top):
        """Files named like the hostile targets anywhere under `top`, except
        inside layer diff directories (where confined entries belong)."""
        found = []
        names = {"escape", "escape2", "x", "evil", "berth-hostile-chain",
                 "berth-hostile-victim"}
        for dirpath, dirs, files in os.walk(top):
            rel = os.path.relpath(dirpath, self.layers_dir)
            if not rel.startswith(".."):
                dirs[:] = []  # inside ROOT/layers: confined content
                continue
            for n in files + dirs:
                if n in names:
                    found.append(os.path.join(dirpath, n))
        return found

    def check_host(self, tag, upper=None):
        with self.subTest(image=tag, check="host untouched"):
            for p in self.absent:
                self.assertFalse(os.path.lexists(p), "%s: %s was created" % (tag, p))
            self.assertTrue(os.path.exists(self.KEEP), "%s: %s was deleted" % (tag, self.KEEP))
            for p, before in self.etc_before.items():
                self.assertEqual(self.fingerprint(p), before, "%s: %s changed" % (tag, p))
            if upper is not None:
                writes = []
                for dirpath, dirs, files in os.walk(upper):
                    writes += [os.path.join(dirpath, n) for n in dirs + files]
                self.assertEqual(writes, [], "%s wrote into /etc" % tag)
        with self.subTest(image=tag, check="nothing outside the layer dirs"):
            self.assertEqual(self.escapes_in(self.tmp), [])
            extra = set(listdir(self.root)) - {"blobs", "layers", "tmp", "state.db",
                                                 "state.db-wal", "state.db-shm",
                                                 "containers", "containers.db",
                                                 "containers.db-wal", "containers.db-shm",
                                                 "berthd.lock"}
            self.assertEqual(listdir(os.path.join(self.root, "containers")), [])
            self.assertEqual(extra, set(), "unexpected entries in ROOT")
            for n in listdir(self.layers_dir):
                self.assertEqual(listdir(os.path.join(self.layers_dir, n)), ["diff"],
                                 "layer dir %s" % n)

    def pull_hostile(self, tag, upper=None):
        ref = ENV.ref("hostile", tag)
        try:
            replies = self.pull_replies(ref)
        except (ConnectionClosed, socket.timeout) as e:
            self.fail("%s: no reply (%s); daemon running: %s" % (tag, e, self.d.running()))
        last = replies[-1]
        if "error" in last:
            self.assertEqual(last["error"], "io.podman.ErrorOccurred", "%s: %r" % (tag, last))
            self.outcomes[tag] = "refused: " + last["parameters"].get("reason", "")[-160:]
            self.assertEqual(self.ok("ImageExists", {"name": ref})["exists"], 1)
        else:
            iid = self.assertPulled(replies, ENV.config_id("hostile:" + tag))
            info = self.inspect(iid)
            content = []
            for p in info["GraphDriver"]["Data"]["LowerDir"].split(":"):
                diff = os.path.join(p, "diff")
                self.assertTrue(os.path.isdir(diff), p)
                for dirpath, dirs, files in os.walk(diff):
                    content += [os.path.relpath(os.path.join(dirpath, n), diff)
                                for n in sorted(dirs + files)]
            self.outcomes[tag] = "pulled: diff holds %s" % sorted(content)[:6]
        self.assertTrue(self.d.running(), "berthd died pulling %s" % tag)
        self.assertAnswers()
        self.check_host(tag, upper)
        self.assertStoreConsistent()

    def diff_of(self, tag):
        ref = ENV.ref("hostile", tag)
        layers = self.inspect(ref)["RootFS"]["Layers"]
        return os.path.join(self.layers_dir, imagefx.hexid(layers[0]), "diff")

    def report(self):
        sys.stderr.write("\n".join("    hostile %-26s %s" % (t, o)
                                   for t, o in sorted(self.outcomes.items())) + "\n")

    def test_hostile_layers_confined(self):
        tags = [t for t in ENV.fixtures["hostile-oci"]["tags"] if t not in self.HARDLINK]
        upper = None
        if self.overlay_works():
            argv = self.overlay_argv() + self.berthd_argv()
            upper = self.path("etc-upper")
            self.d = self.spawn(argv, [self.default_address])
        elif os.geteuid() == 0:
            self.skipTest("cannot protect /etc with an overlay in a mount namespace "
                          "(unshare/overlayfs unavailable); not pulling layers that "
                          "write through symlinks to /etc as root")
        else:
            self.daemon()
        try:
            for tag in tags:
                self.pull_hostile(tag, upper)
        finally:
            self.report()
        # what a correct extractor keeps when it accepts these
        if self.outcomes.get("setuid", "").startswith("pulled"):
            with self.subTest(check="setuid modes kept"):
                diff = self.diff_of("setuid")
                self.assertEqual(os.lstat(os.path.join(diff, "suid")).st_mode & 0o7777,
                                 0o4755)
                self.assertEqual(os.lstat(os.path.join(diff, "sgid")).st_mode & 0o7777,
                                 0o2755)
                self.assertEqual(os.lstat(os.path.join(diff, "sticky")).st_mode & 0o7777,
                                 0o1777)
        if self.outcomes.get("xattr", "").startswith("pulled"):
            with self.subTest(check="xattr kept"):
                path = os.path.join(self.diff_of("xattr"), "xattr.txt")
                try:
                    self.assertEqual(os.getxattr(path, "user.test"), b"hello")
                except OSError as e:
                    if e.errno not in (95,):  # EOPNOTSUPP: fs without user xattrs
                        raise
        if self.outcomes.get("longname", "").startswith("pulled"):
            self.fail("longname: a 300-byte name component was accepted (truncated?)")
        # `..` entries may be refused or confined (issue 3); a whiteout of
        # `..` has no confined meaning
        for tag in ("whiteout-dotdot",):
            with self.subTest(check="refused", image=tag):
                self.assertTrue(self.outcomes.get(tag, "").startswith("refused"),
                                "%s: %s" % (tag, self.outcomes.get(tag)))

    def test_hostile_hardlinks(self):
        self.daemon()
        shadow = os.lstat("/etc/shadow") if os.path.exists("/etc/shadow") else None
        try:
            for tag in self.HARDLINK:
                self.pull_hostile(tag)
                if self.outcomes[tag].startswith("pulled") and shadow is not None:
                    for dirpath, _, files in os.walk(self.layers_dir):
                        for n in files:
                            st = os.lstat(os.path.join(dirpath, n))
                            self.assertFalse((st.st_dev, st.st_ino) ==
                                             (shadow.st_dev, shadow.st_ino),
                                             "%s: %s is /etc/shadow" % (tag, n))
        finally:
            self.report()
        for tag in ("hardlink-up",):
            self.assertTrue(self.outcomes.get(tag, "").startswith("refused"),
                            "%s: %s" % (tag, self.outcomes.get(tag)))


class LayerSharingTest(ImageTest):
    """Layers shared between images are stored once and counted."""

    def test_shared_base_layer(self):
        # plus = busybox's layer (same blob and diff ID) + one more
        bb = self.pull("busybox")
        plus = self.pull("plus")
        base = imagefx.hexid(ENV.details("busybox")["diff_ids"][0])
        self.assertEqual(imagefx.hexid(ENV.details("plus")["diff_ids"][0]), base)
        self.assertEqual(len(listdir(self.layers_dir)), len(ENV.details("plus")["layers"]))
        self.assertIn(base, listdir(self.layers_dir))
        self.assertStoreConsistent()
        bb_blobs = self.image_blobs("busybox", ENV.details("busybox"))
        self.assertEqual(self.ok("RemoveImage", {"name": ENV.ref("plus")})["image"], plus)
        self.assertEqual(listdir(self.layers_dir), [base])
        # the shared layer's blob stays with busybox, plus's own ones go
        self.assertEqual(self.blob_files(), bb_blobs)
        self.assertTrue(os.path.isfile(os.path.join(self.layers_dir, base, "diff", "bin",
                                                    "busybox")))
        self.assertEqual(self.inspect("busybox")["Id"], bb)
        self.assertStoreConsistent()

    def test_zstd_and_gzip_share_the_unpacked_layer(self):
        if not ENV.has_zstd:
            self.skipTest("busybox-zstd not built (no zstd command)")
        self.pull("busybox")
        self.pull("busybox-zstd")
        bb_blobs = self.image_blobs("busybox", ENV.details("busybox"))
        zstd_blobs = self.image_blobs("busybox-zstd", ENV.details("busybox-zstd"))
        # same diff ID, two compressions: one layer dir, both blobs
        self.assertEqual(len(listdir(self.layers_dir)), 1)
        self.assertEqual(self.blob_files(), bb_blobs | zstd_blobs)
        self.ok("RemoveImage", {"name": ENV.ref("busybox-zstd")})
        self.assertEqual(len(listdir(self.layers_dir)), 1)
        self.assertStoreConsistent()
        # the zstd blob went with the last image naming it
        self.assertEqual(self.blob_files(), bb_blobs)
        self.ok("RemoveImage", {"name": ENV.ref("busybox")})
        self.assertEqual(listdir(self.layers_dir), [])
        self.assertEqual(self.blob_files(), set())

        # the other way round: the layer keeps the zstd image's blob
        self.pull("busybox")
        self.pull("busybox-zstd")
        self.ok("RemoveImage", {"name": ENV.ref("busybox")})
        self.assertEqual(self.blob_files(), zstd_blobs)
        self.assertStoreConsistent()
        self.d.stop()
        self.d = self.start_daemon()
        self.assertEqual(self.blob_files(), zstd_blobs)
        self.ok("RemoveImage", {"name": ENV.ref("busybox-zstd")})
        self.assertEqual(self.blob_files(), set())

    def test_busybox_and_busybox5(self):
        # busybox5's first layer is busybox WITHOUT /etc (not busybox's
        # layer), so the two share nothing: 1 + 5 layer dirs
        bb = self.pull("busybox")
        self.pull("busybox5")
        want = set(ENV.details("busybox")["diff_ids"]) | set(ENV.details("busybox5")["diff_ids"])
        self.assertEqual(len(listdir(self.layers_dir)), len(want))
        self.assertStoreConsistent()
        self.ok("RemoveImage", {"name": ENV.ref("busybox5")})
        self.assertEqual(listdir(self.layers_dir),
                         [imagefx.hexid(ENV.details("busybox")["diff_ids"][0])])
        self.assertEqual(self.inspect(bb)["Id"], bb)
        self.assertStoreConsistent()

    def test_busybox5_tree_after_whiteouts(self):
        self.pull("busybox5")
        lower = self.inspect("busybox5")["GraphDriver"]["Data"]["LowerDir"].split(":")
        self.assertEqual(len(lower), 5)
        diffs = [os.path.join(p, "diff") for p in lower]  # top layer first

        def is_whiteout(p):
            try:
                st = os.lstat(p)
            except OSError:
                return False
            return (st.st_mode & 0o170000) == 0o020000 and st.st_rdev == 0

        def is_opaque(p):
            try:
                return os.getxattr(p, "trusted.overlay.opaque",
                                   follow_symlinks=False) == b"y"
            except OSError:
                return False

        def lookup(rel):
            """overlayfs' view of `rel` over the layer diffs (top first)."""
            parts = rel.split("/")
            for d in diffs:
                ancestors = [os.path.join(d, *parts[:i]) for i in range(1, len(parts))]
                if any(is_whiteout(a) for a in ancestors):
                    return None
                p = os.path.join(d, rel)
                if os.path.lexists(p):
                    return None if is_whiteout(p) else p
                if any(is_opaque(a) for a in ancestors):
                    return None
            return None

        exp = ENV.fixtures["busybox5-oci"]["expected"]
        for rel, kind in exp["present"].items():
            with self.subTest(present=rel):
                p = lookup(rel)
                self.assertIsNotNone(p, "%s missing" % rel)
                if kind.startswith("symlink:"):
                    self.assertEqual(os.readlink(p), kind.split(":", 1)[1])
                elif kind == "dir":
                    self.assertTrue(os.path.isdir(p))
                else:
                    self.assertTrue(os.path.isfile(p) and not os.path.islink(p))
        for rel, text in exp["contents"].items():
            with self.subTest(contents=rel):
                with open(lookup(rel)) as f:
                    self.assertEqual(f.read(), text)
        for rel in exp["absent"]:
            with self.subTest(absent=rel):
                self.assertIsNone(lookup(rel), "%s still visible" % rel)
        for a, b in exp["hardlinks"]:
            with self.subTest(hardlink=a):
                self.assertTrue(os.path.samefile(lookup(a), lookup(b)))


class ConcurrentPullTest(ImageTest):
    """Five clients pull one reference at once: one download."""

    def test_five_clients_one_download(self):
        layer = ENV.details("busybox")["layers"][0]
        config = ENV.details("busybox")["config"]
        size = ENV.details("busybox")["layer_sizes"][0]
        with imagefx.Proxy(ENV.registry.port, rate=size) as px:  # ~1 s
            ref = px.ref("busybox")
            self.daemon()
            conns = [self.d.connect(timeout=PULL_TIMEOUT) for _ in range(5)]
            try:
                for i, c in enumerate(conns):
                    self.send_pull(c, ref, more=(i % 2 == 1))
                results = [None] * 5

                def reader(i):
                    try:
                        results[i] = self.read_pull(conns[i], more=(i % 2 == 1))
                    except BaseException as e:  # reported below
                        results[i] = e

                threads = [threading.Thread(target=reader, args=(i,)) for i in range(5)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join(PULL_TIMEOUT + 5)
            finally:
                for c in conns:
                    c.close()
            ids = set()
            for i, r in enumerate(results):
                self.assertIsInstance(r, list, "client %d: %r" % (i, r))
                ids.add(self.assertPulled(r, ENV.config_id("busybox")))
            self.assertEqual(len(ids), 1)
            self.assertEqual(px.blob_gets(layer), 1,
                             "layer blob GETs through the proxy: %s" % px.requests)
            self.assertLessEqual(px.blob_gets(config), 1)
        self.assertEqual(len(self.list_images()), 1)
        self.assertEqual(len(listdir(self.layers_dir)), 1)

    def test_client_hanging_up_does_not_stop_the_others(self):
        size = ENV.details("busybox5")["layer_sizes"][0]
        with imagefx.Proxy(ENV.registry.port, rate=size) as px:
            ref = px.ref("busybox5")
            self.daemon()
            quitter = self.d.connect(timeout=PULL_TIMEOUT)
            stayer = self.d.connect(timeout=PULL_TIMEOUT)
            try:
                self.send_pull(quitter, ref, more=True)
                self.send_pull(stayer, ref, more=False)
                time.sleep(0.2)
                quitter.close()
                self.assertPulled(self.read_pull(stayer, False), ENV.config_id("busybox5"))
            finally:
                quitter.close()
                stayer.close()
        self.assertEqual(len(self.list_images()), 1)
        self.assertStoreConsistent()


class TagRemoveTest(ImageTest):
    """TagImage, RemoveImage, DeleteUnusedImages, ImagesPrune."""

    def names(self, iid):
        return set(self.ok("GetImage", {"id": iid})["image"]["repoTags"] or [])

    def test_tag_image(self):
        bb = self.pull("busybox")
        self.assertEqual(self.ok("TagImage", {"name": "busybox", "tagged": "mine:1"})["image"],
                         bb)
        self.assertEqual(self.ok("TagImage", {"name": bb[:12], "tagged": "other"})["image"],
                         bb)
        self.assertEqual(self.ok("TagImage", {"name": bb,
                                              "tagged": "example.org/ns/full:2"})["image"], bb)
        self.assertEqual(self.names(bb), {ENV.ref("busybox"), "localhost/mine:1",
                                          "localhost/other:latest",
                                          "example.org/ns/full:2"})
        for name in ("localhost/mine:1", "mine:1", "other", "example.org/ns/full:2"):
            with self.subTest(name=name):
                self.assertEqual(self.ok("GetImage", {"id": name})["image"]["id"], bb)

    def test_invalid_names_refused(self):
        """TagImage, ImageSave's moreTags and ExportImage's tags refuse what
        is not a reference, and store or write nothing."""
        bb = self.pull("busybox")
        before = self.names(bb)
        bad = ["UPPER:Case", "bad tag!", "../../etc:x", "a:b:c:d", "a" * 300,
               "x@sha256:" + "0" * 64, "docker://x:1", ""]
        for name in bad:
            with self.subTest(name=name):
                r = self.call("TagImage", {"name": bb, "tagged": name})
                self.assertError(r, "io.podman.ErrorOccurred")
                self.assertIn("invalid reference format", r["parameters"]["reason"])
        self.assertEqual(self.names(bb), before)
        out = self.path("export-bad.tar")
        r = self.call("ExportImage", {"name": bb, "destination": "docker-archive:" + out,
                                      "compress": False, "tags": ["Bad Tag!"]})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertFalse(os.path.exists(out))
        r = self.call("ImageSave", {"options": {"name": bb, "format": "docker-archive",
                                                "output": "", "outputType": "",
                                                "moreTags": ["x@@y"], "quiet": True,
                                                "compress": False}})
        self.assertError(r, "io.podman.ErrorOccurred")
        uploads = os.path.join(self.root, "uploads")
        self.assertEqual(os.listdir(uploads) if os.path.isdir(uploads) else [], [])

    def test_failed_import_removes_its_upload(self):
        """ImportImage with delete removes the source also when the call
        fails before importing."""
        src = self.path("rootfs.tar")
        subprocess.run(["tar", "-cf", src, "-C", self.path(""), "registries.conf"],
                       check=True)
        r = self.call("ImportImage", {"source": src, "reference": "Bad Ref",
                                      "delete": True, "changes": [], "message": ""})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertFalse(os.path.exists(src))

    def test_tag_moves_between_images(self):
        bb = self.pull("busybox")
        b5 = self.pull("busybox5")
        self.ok("TagImage", {"name": bb, "tagged": "moving:1"})
        self.ok("TagImage", {"name": b5, "tagged": "moving:1"})
        self.assertEqual(self.ok("GetImage", {"id": "moving:1"})["image"]["id"], b5)
        self.assertNotIn("localhost/moving:1", self.names(bb))

    def test_remove_one_name_of_several(self):
        bb = self.pull("busybox")
        self.ok("TagImage", {"name": bb, "tagged": "mine:1"})
        self.ok("TagImage", {"name": bb, "tagged": "mine:2"})
        self.assertEqual(self.ok("RemoveImage", {"name": "localhost/mine:1"})["image"], bb)
        self.assertEqual(self.names(bb), {ENV.ref("busybox"), "localhost/mine:2"})
        self.assertEqual(self.ok("RemoveImage", {"name": "mine:2"})["image"], bb)
        self.assertEqual(self.names(bb), {ENV.ref("busybox")})
        self.assertEqual(self.ok("ImageExists", {"name": bb})["exists"], 0)
        self.assertEqual(len(listdir(self.layers_dir)), 1)

    def test_forced_remove_of_one_name_of_several(self):
        """Naming one of several names removes only that name, with force
        too, as libpod does."""
        bb = self.pull("busybox")
        self.ok("TagImage", {"name": bb, "tagged": "mine:1"})
        self.assertEqual(self.ok("RemoveImage", {"name": "mine:1", "force": True})["image"],
                         bb)
        self.assertEqual(self.names(bb), {ENV.ref("busybox")})
        self.assertEqual(len(listdir(self.layers_dir)), 1)

    def test_remove_by_id_with_several_names(self):
        bb = self.pull("busybox")
        self.ok("TagImage", {"name": bb, "tagged": "mine:1"})
        r = self.call("RemoveImage", {"name": bb, "force": False})
        self.assertEqual(r.get("error"), "io.podman.ErrorOccurred", r)
        self.assertEqual(self.names(bb), {ENV.ref("busybox"), "localhost/mine:1"})
        r = self.call("RemoveImage", {"name": bb[:12]})
        self.assertEqual(r.get("error"), "io.podman.ErrorOccurred", r)
        self.assertEqual(self.ok("RemoveImage", {"name": bb, "force": True})["image"], bb)
        self.assertEqual(self.ok("ImageExists", {"name": bb})["exists"], 1)
        self.assertEqual(self.list_images(), [])
        self.assertEqual(listdir(self.layers_dir), [])

    def test_remove_last_name_removes_image(self):
        bb = self.pull("busybox")
        self.assertEqual(self.ok("RemoveImage", {"name": ENV.ref("busybox")})["image"], bb)
        self.assertEqual(self.list_images(), [])
        self.assertEqual(listdir(self.layers_dir), [])
        self.assertEqual(self.ok("ImageExists", {"name": bb})["exists"], 1)
        # and it can come back
        self.pull("busybox")

    def test_delete_unused_images(self):
        ids = {self.pull("busybox"), self.pull("busybox5")}
        self.ok("TagImage", {"name": "busybox", "tagged": "extra"})
        removed = self.ok("DeleteUnusedImages")["images"]
        self.assertEqual(set(removed), ids)
        self.assertEqual(self.list_images(), [])
        self.assertEqual(listdir(self.layers_dir), [])
        self.assertEqual(self.ok("DeleteUnusedImages")["images"] or [], [])
        self.assertEqual(self.ok("GetInfo")["info"]["store"]["images"], 0)
        self.assertEqual(self.blob_files(), set())

    def test_images_prune(self):
        bb = self.pull("busybox")
        b5 = self.pull("busybox5")
        plus = self.pull("plus")
        # moving busybox's only name to busybox5 leaves busybox dangling
        self.ok("TagImage", {"name": b5, "tagged": ENV.ref("busybox")})
        self.assertEqual(self.names(bb), set())
        self.assertEqual(self.ok("ImagesPrune", {"all": False})["pruned"], [bb])
        self.assertEqual({i["id"] for i in self.list_images()}, {b5, plus})
        # busybox's layer is still used by plus
        self.assertStoreConsistent()
        self.assertEqual(self.ok("ImagesPrune", {"all": False})["pruned"] or [], [])
        self.assertEqual(set(self.ok("ImagesPrune", {"all": True})["pruned"]), {b5, plus})
        self.assertEqual(self.list_images(), [])
        self.assertEqual(listdir(self.layers_dir), [])
        self.assertEqual(self.blob_files(), set())


class InUseRaceTest(ImageTest):
    """Prunes racing container creates: the image a create was given stays
    until the container is recorded (and then while the container lives)."""

    def test_prune_racing_creates(self):
        """Creates and removals on one connection, prunes on another: a
        container that was created always finds its image there. A prune
        that comes first makes the create pull the image again."""
        if os.geteuid() != 0:
            self.skipTest("containers need root")
        ref = ENV.ref("busybox")
        bb = self.pull("busybox")
        missing, errors = [], []
        done = threading.Event()

        def create_and_remove():
            try:
                with self.daemon().connect(timeout=PULL_TIMEOUT) as c:
                    for _ in range(40):
                        cid = self.ok("CreateContainer", {"create": {
                            "image": ref, "command": ["true"]}}, conn=c)["container"]
                        if self.ok("ImageExists", {"name": bb}, conn=c)["exists"] != 0:
                            missing.append(cid)
                        self.ok("RemoveContainer", {"name": cid}, conn=c)
            except Exception as e:  # reported by the main thread
                errors.append(e)
            finally:
                done.set()

        t = threading.Thread(target=create_and_remove)
        t.start()
        pruned = 0
        try:
            with self.daemon().connect(timeout=PULL_TIMEOUT) as c:
                while not done.is_set():
                    pruned += len(self.ok("ImagesPrune", {"all": True}, conn=c)["pruned"]
                                  or [])
        finally:
            t.join()
        self.assertEqual(errors, [])
        self.assertEqual(missing, [])
        self.assertGreater(pruned, 0)
        self.assertStoreConsistent()


class ListChangeTest(ImageTest):
    """ListImages is answered from a reply kept between changes and GetInfo
    from a count kept on every commit: each change must be in the very next
    answer of both, on a connection that listed just before it."""

    def listing(self, conn):
        """Image ID -> sorted names, checked against GetInfo's count."""
        images = self.ok("ListImages", conn=conn)["images"] or []
        count = self.ok("GetInfo", conn=conn)["info"]["store"]["images"]
        self.assertEqual(count, len(images), "GetInfo's count disagrees with the list")
        return {i["id"]: sorted(i["repoTags"] or []) for i in images}

    def rootfs(self):
        """busybox's root file system as a plain tar, for ImportImage."""
        path = self.path("rootfs.tar")
        with tarfile.open(os.path.join(imagefx.CACHE, "busybox-docker.tar")) as t:
            layer = json.load(t.extractfile("manifest.json"))[0]["Layers"][0]
            with open(path, "wb") as f:
                shutil.copyfileobj(t.extractfile(layer), f)
        return path

    def test_every_change_in_the_next_list(self):
        bb_ref, b5_ref = ENV.ref("busybox"), ENV.ref("busybox5")
        with self.daemon().connect(timeout=PULL_TIMEOUT) as c:
            self.assertEqual(self.listing(c), {})

            bb = self.pull("busybox", conn=c)
            want = {bb: [bb_ref]}
            self.assertEqual(self.listing(c), want, "after a pull")
            self.assertEqual(self.listing(c), want, "listed twice")

            self.ok("TagImage", {"name": bb, "tagged": "mine:1"}, conn=c)
            want[bb] = sorted([bb_ref, "localhost/mine:1"])
            self.assertEqual(self.listing(c), want, "after a tag")

            b5 = self.pull("busybox5", conn=c)
            want[b5] = [b5_ref]
            self.assertEqual(self.listing(c), want, "after a second pull")

            self.ok("TagImage", {"name": b5, "tagged": "mine:1"}, conn=c)
            want = {bb: [bb_ref], b5: sorted([b5_ref, "localhost/mine:1"])}
            self.assertEqual(self.listing(c), want, "after a tag moved a name")

            self.assertEqual(self.ok("RemoveImage", {"name": "mine:1"}, conn=c)["image"], b5)
            want[b5] = [b5_ref]
            self.assertEqual(self.listing(c), want, "after an untag")

            self.ok("RemoveImage", {"name": b5_ref}, conn=c)
            del want[b5]
            self.assertEqual(self.listing(c), want, "after rmi")

            archive = os.path.join(imagefx.CACHE, "busybox5-docker.tar")
            r = self.ok("LoadImage", {"name": "", "inputFile": archive, "quiet": True,
                                      "deleteFile": False}, conn=c)
            self.assertEqual(r["reply"]["id"], "localhost/busybox5:latest")
            want[b5] = ["localhost/busybox5:latest"]
            self.assertEqual(self.listing(c), want, "after a load")

            imported = self.ok("ImportImage", {
                "source": self.rootfs(), "reference": "imported", "message": "",
                "changes": [], "delete": False}, conn=c)["image"]
            want[imported] = ["localhost/imported:latest"]
            self.assertEqual(self.listing(c), want, "after an import")

            # Moving busybox's only name away leaves it dangling for the prune.
            self.ok("TagImage", {"name": b5, "tagged": bb_ref}, conn=c)
            want = {bb: [], b5: sorted(["localhost/busybox5:latest", bb_ref]),
                    imported: ["localhost/imported:latest"]}
            self.assertEqual(self.listing(c), want, "after a tag left an image unnamed")
            self.assertEqual(self.ok("ImagesPrune", {"all": False}, conn=c)["pruned"], [bb])
            del want[bb]
            self.assertEqual(self.listing(c), want, "after a prune")

            removed = self.ok("DeleteUnusedImages", conn=c)["images"]
            self.assertEqual(set(removed), {b5, imported})
            self.assertEqual(self.listing(c), {}, "after deleting every image")


class InspectHistoryTest(ImageTest):
    """InspectImage's JSON and HistoryImage's rows."""

    def test_inspect_image(self):
        b5 = self.pull("busybox5")
        det = ENV.details("busybox5")
        for name in (b5, "busybox5", ENV.ref("busybox5")):
            with self.subTest(name=name):
                info = self.inspect(name)
                self.assertEqual(info["Id"], b5)
                self.assertEqual(info["Digest"], det["manifest"])
                self.assertEqual(info["RepoTags"], [ENV.ref("busybox5")])
                self.assertEqual(info["RepoDigests"],
                                 [ENV.ref("busybox5").rsplit(":", 1)[0] + "@" + det["manifest"]])
                self.assertEqual(info["Config"]["Cmd"], ["sh"])
                self.assertEqual(info["Config"]["Labels"]["org.berth.fixture"], "busybox5")
                self.assertIn(images_path_env(), info["Config"]["Env"])
                self.assertEqual(info["RootFS"]["Type"], "layers")
                self.assertEqual(info["RootFS"]["Layers"], det["diff_ids"])
                self.assertEqual(info["GraphDriver"]["Name"], "overlay")
                self.assertEqual(info["Architecture"], "amd64")
                self.assertEqual(info["Os"], "linux")
                self.assertRegex(info["Created"], RFC3339)
                self.assertGreater(info["Size"], 0)
                self.assertEqual(len(info["History"]), 5)

    def test_inspect_index_pull_and_v2s2(self):
        bb = self.pull("busybox", "v2s2")
        info = self.inspect(bb)
        self.assertEqual(info["Digest"], ENV.pushed["busybox:v2s2"])
        self.assertEqual(info["ManifestType"],
                         "application/vnd.docker.distribution.manifest.v2+json")
        self.assertEqual(info["Config"]["Cmd"], ["sh"])

    def test_history(self):
        b5 = self.pull("busybox5")
        self.ok("TagImage", {"name": b5, "tagged": "hist:1"})
        hist = self.ok("HistoryImage", {"name": "busybox5"})["history"]
        self.assertEqual(len(hist), 5)
        self.assertEqual(hist[0]["id"], b5)
        for h in hist[1:]:
            self.assertEqual(h["id"], "<missing>")
        tags = {ENV.ref("busybox5"), "localhost/hist:1"}
        for h in hist:
            self.assertEqual(set(h["tags"]), tags)
            self.assertRegex(h["created"], RFC3339)
            self.assertIsInstance(h["size"], int)
            self.assertIn("comment", h)
        # newest first: the fixture's last history entry is the 5th layer
        self.assertIn("opaque /opq", hist[0]["createdBy"])
        self.assertIn("busybox-static + applet links", hist[-1]["createdBy"])
        self.assertGreater(hist[-1]["size"], 1000000)  # the busybox layer


def images_path_env():
    return imagefx.images.PATH_ENV


class KillDuringPullTest(ImageTest):
    """kill -9 in the middle of a pull; the next start cleans up."""

    def test_sigkill_mid_pull(self):
        det = ENV.details("big")
        small, big = det["layers"]
        big_short = imagefx.hexid(big)[:12]
        small_short = imagefx.hexid(small)[:12]
        with imagefx.Proxy(ENV.registry.port, rate=8 << 20) as px:  # 32 MiB: ~4 s
            ref = px.ref("big")
            d = self.daemon()
            seen = []
            c = d.connect(timeout=PULL_TIMEOUT)
            try:
                self.send_pull(c, ref, more=True)
                # wait for the small layer to be stored and the big one to
                # be partly downloaded, then kill
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline:
                    r = c.recv(30)
                    self.assertNotIn("error", r, r)
                    self.assertTrue(r.get("continues"),
                                    "pull finished before the kill: slow proxy too fast?")
                    seen += r["parameters"]["reply"]["logs"] or []
                    small_done = any(small_short in l and "done" in l for l in seen)
                    big_partial = any(l.startswith("Copying blob " + big_short + " ") and
                                      "/" in l for l in seen)
                    if small_done and big_partial:
                        break
                d.exit_expected = True
                d.kill()
            finally:
                c.close()
            self.assertFalse(d.running())
            layers_at_kill = listdir(self.layers_dir)
            tmp_at_kill = listdir(self.store_tmp)
            sys.stderr.write("\n    at the kill: ROOT/layers %s, ROOT/tmp %d entries\n"
                             % ([l[:12] for l in layers_at_kill], len(tmp_at_kill)))

            # restart on the same root
            self.d = None
            self.daemon()
            self.assertEqual(self.list_images(), [])
            self.assertEqual(self.ok("ImageExists", {"name": ref})["exists"], 1)
            self.assertEqual(listdir(self.store_tmp), [], "ROOT/tmp after restart")
            self.assertEqual(listdir(self.layers_dir), [],
                             "layer dirs without an image after restart")
            self.assertEqual(self.ok("GetInfo")["info"]["store"]["images"], 0)
            # pulling again works (fast now)
            px.rate = None
            self.assertPulled(self.pull_replies(ref), ENV.config_id("big"))
        self.assertEqual([i["id"] for i in self.list_images()], [ENV.config_id("big")])
        self.assertStoreConsistent()
        top = self.inspect("big")["GraphDriver"]["Data"]["LowerDir"].split(":")[0]
        self.assertEqual(os.path.getsize(os.path.join(top, "diff", "data", "big.bin")),
                         imagefx.BIG_SIZE)


class ShortNameTest(ImageTest):
    """A short name with no search registries configured is refused as
    libpod refuses it: no registry is named, none (docker.io least of all)
    is asked."""

    NO_SEARCH = ("image name provided is a short name and no search registries "
                 "are defined in the registries config file.")

    def test_no_search_registries(self):
        self.daemon()
        for conf in ("", "unqualified-search-registries = []\n"):
            # read again for every pull: no restart needed
            with open(self.path("registries.conf"), "w") as f:
                f.write(conf)
            for name in ("busybox", "busybox:latest", "library/busybox"):
                for more in (False, True):
                    with self.subTest(conf=conf, name=name, more=more):
                        replies = self.pull_replies(name, more=more, tls_verify=None)
                        self.assertEqual(self.assertPullError(replies), self.NO_SEARCH)
                        self.assertNotIn("docker.io", json.dumps(replies))
        p = run_tool([harness.ARGS.berth, "--address", self.default_address, "pull",
                      "busybox"], timeout=PULL_TIMEOUT)
        self.assertEqual(p.returncode, 2, p.stdout)
        self.assertIn(self.NO_SEARCH, p.stderr)
        self.assertNotIn("docker.io", p.stdout + p.stderr)
        self.assertEqual(self.list_images(), [])
        # a name with its registry needs no search registries
        self.assertPulled(self.pull_replies(ENV.ref("busybox")), ENV.config_id("busybox"))
        self.assertAnswers()


class CliTest(ImageTest):
    """The `berth` image verbs against the same daemon."""

    def berth(self, *args, timeout=PULL_TIMEOUT):
        return run_tool([harness.ARGS.berth, "--address", self.default_address] + list(args),
                        timeout=timeout)

    def assertRan(self, p, code=0):
        self.assertEqual(p.returncode, code, "exit %d\nstdout: %s\nstderr: %s"
                         % (p.returncode, p.stdout, p.stderr))

    def test_cli_image_verbs(self):
        self.daemon()
        ref = ENV.ref("busybox")
        bb = ENV.config_id("busybox")
        p = self.berth("pull", "--tls-verify=false", ref)
        self.assertRan(p)
        lines = p.stdout.splitlines()
        self.assertEqual(lines[-1], bb)
        self.assertNotIn("\x1b", p.stdout, "terminal escapes when stdout is not a terminal")
        self.assertNotIn("\r", p.stdout)
        self.assertTrue(any(l.startswith("Trying to pull") for l in lines), p.stdout)
        self.assertTrue(any(l.startswith("Copying blob") for l in lines), p.stdout)

        p = self.berth("images")
        self.assertRan(p)
        rows = p.stdout.splitlines()
        self.assertEqual(re.split(r" {3,}", rows[0].strip()),
                         ["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"])
        # Columns stay apart however long the name; CREATED in words.
        cols = [re.split(r" {3,}", r.strip()) for r in rows[1:]]
        self.assertIn(ref.rsplit(":", 1)[0], [c[0] for c in cols], p.stdout)
        for c in cols:
            self.assertEqual(len(c), 5, p.stdout)
            self.assertEqual(c[1:3], ["latest", bb[:12]], p.stdout)
            self.assertTrue(c[3].endswith(" ago"), p.stdout)

        p = self.berth("images", "-q")
        self.assertRan(p)
        self.assertEqual(p.stdout.split(), [bb[:12]])

        p = self.berth("image", "inspect", "busybox")
        self.assertRan(p)
        doc = json.loads(p.stdout)
        self.assertEqual(len(doc), 1)
        self.assertEqual(doc[0]["Id"], bb)
        self.assertEqual(doc[0]["Config"]["Cmd"], ["sh"])

        p = self.berth("history", "busybox")
        self.assertRan(p)
        rows = p.stdout.splitlines()
        self.assertEqual(len(rows), 2, p.stdout)
        self.assertIn(bb[:12], rows[1])

        p = self.berth("tag", "busybox", "clitag:1")
        self.assertRan(p)
        p = self.berth("images")
        self.assertIn("localhost/clitag", p.stdout)

        p = self.berth("rmi", "clitag:1")
        self.assertRan(p)
        self.assertEqual(p.stdout.split(), [bb])
        self.assertNotIn("clitag", self.berth("images").stdout)

        p = self.berth("rmi", bb)
        self.assertRan(p)
        self.assertEqual(self.berth("images", "-q").stdout.split(), [])

        p = self.berth("rmi", "busybox")
        self.assertRan(p, 2)
        self.assertIn("io.podman.ImageNotFound", p.stderr + p.stdout)

    def test_cli_pull_missing_tag(self):
        self.daemon()
        p = self.berth("pull", "--tls-verify=false", ENV.ref("busybox", "foobar"))
        self.assertRan(p, 2)
        self.assertIn("io.podman.ErrorOccurred", p.stderr + p.stdout)
        self.assertIn("manifest unknown", p.stderr + p.stdout)
        self.assertAnswers()

    def test_cli_pull_quiet_prints_only_id(self):
        self.daemon()
        p = self.berth("pull", "-q", "--tls-verify=false", ENV.ref("busybox5"))
        self.assertRan(p)
        self.assertEqual(p.stdout.splitlines(), [ENV.config_id("busybox5")])


if __name__ == "__main__":
    harness.main()
