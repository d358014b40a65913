"""Image fixtures for berth's integration suites: the images built by
test/fixtures/images.py (cached across runs), a few more built here, one
loopback registry with all of them pushed, and a throttling TCP proxy that
also records the HTTP requests going through it.

    import imagefx
    env = imagefx.Env.start()        # builds (cached), starts the registry, pushes
    env.ref("busybox")               # "127.0.0.1:PORT/busybox:latest"
    env.config_id("busybox")         # the image ID berthd must report (hex)
    with imagefx.Proxy(env.registry.port, rate=4 << 20) as p:
        p.ref("busybox")             # the same image through the proxy
        p.blob_gets(digest)          # how many GETs of that blob went through
    env.stop()

The fixture cache is $BERTH_TEST_FIXTURES, else /var/tmp/berth-test-fixtures;
the builders reuse what is up to date, so only the first run pays for it.
The Debian image is never built here (too slow for every run).

Python 3 standard library only.
"""

import concurrent.futures
import fcntl
import hashlib
import json
import os
import random
import re
import shutil
import socket
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES_SRC = os.path.join(os.path.dirname(HERE), "fixtures")
sys.path.insert(0, FIXTURES_SRC)

import images  # noqa: E402  (test/fixtures/images.py)
from registry import Registry  # noqa: E402  (test/fixtures/registry.py)

CACHE = os.environ.get("BERTH_TEST_FIXTURES", "/var/tmp/berth-test-fixtures")

# Extra images built here (OCI layout CACHE/test-extra-oci, one tag each):
#   plus         busybox-oci's layer (same blob) + a small second layer
#   corruptible  one small layer no other image has (its blob gets corrupted)
#   big          a small unique layer + one BIG_SIZE layer of random bytes
EXTRA_VERSION = 2
BIG_SIZE = 32 << 20


def _sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _small_config(label):
    return {"Env": [images.PATH_ENV], "Cmd": ["sh"], "Labels": {"org.berth.fixture": label}}


def build_extra(cache):
    """Builds CACHE/test-extra-oci unless up to date; returns its description:
    {tag: {"manifest", "config", "layers", "diff_ids", ...}}."""
    out = os.path.join(cache, "test-extra-oci")
    stamp_path = os.path.join(cache, "test-extra.json")
    key = hashlib.sha256(json.dumps([
        EXTRA_VERSION, BIG_SIZE, _sha256_of(images.__file__),
        _sha256_of(images.BUSYBOX)]).encode()).hexdigest()
    try:
        with open(stamp_path) as f:
            stamp = json.load(f)
        if stamp.get("key") == key and os.path.exists(os.path.join(out, "index.json")):
            return stamp["info"]
    except (OSError, ValueError):
        pass
    tmp = out + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    lay = images.Layout(tmp)
    info = {}
    bb = images.read_busybox()

    base = images.layer_tuple(images.busybox_layer_raw(bb))
    L = images.Layer()
    L.dir("etc")
    L.file("etc/plus", "plus\n")
    desc, det = lay.image([base, images.layer_tuple(L.data())],
                          images.busybox_config("busybox-plus"))
    lay.tag(desc, "plus")
    info["plus"] = det

    L = images.Layer()
    L.dir("data")
    L.file("data/corrupt-me.bin", random.Random(7).randbytes(256 << 10))
    desc, det = lay.image([images.layer_tuple(L.data())], _small_config("corruptible"))
    lay.tag(desc, "corruptible")
    info["corruptible"] = det

    S = images.Layer()
    S.dir("etc")
    S.file("etc/big-marker", "big\n")
    B = images.Layer()
    B.dir("data")
    B.file("data/big.bin", random.Random(11).randbytes(BIG_SIZE))
    desc, det = lay.image([images.layer_tuple(S.data()), images.layer_tuple(B.data())],
                          _small_config("big"))
    lay.tag(desc, "big")
    info["big"] = det
    del B

    lay.finish()
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    with open(stamp_path + ".tmp", "w") as f:
        json.dump({"key": key, "info": info}, f, indent=1)
    os.replace(stamp_path + ".tmp", stamp_path)
    return info


class Env:
    """Fixtures + one registry with everything pushed."""

    def __init__(self):
        self.fixtures = None   # fixtures.json of images.py
        self.extra = None      # build_extra()'s dict
        self.registry = None
        self.pushed = {}       # "name:tag" -> manifest (or index) digest

    @classmethod
    def start(cls, log=None):
        env = cls()
        t0 = time.time()
        os.makedirs(CACHE, exist_ok=True)
        with open(os.path.join(CACHE, ".build-lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # suites running at once share the cache
            env.fixtures = images.build(CACHE, quiet=True)
            env.extra = build_extra(CACHE)
        t1 = time.time()
        env.registry = Registry()
        try:
            env._push_all()
        except BaseException:
            env.stop()
            raise
        if log:
            log("fixtures ready in %.1f s, pushed to %s in %.1f s"
                % (t1 - t0, env.registry.url, time.time() - t1))
        return env

    def _push_all(self):
        fx = os.path.join
        jobs = [  # one job per repository: pushes to one repository run in order
            [(fx(CACHE, "busybox-oci"), "busybox", "latest", "oci", "latest", False),
             (fx(CACHE, "busybox-oci"), "busybox", "v2s2", "v2s2", "latest", False)],
            [(fx(CACHE, "busybox5-oci"), "busybox5", "latest", "oci", "latest", False)],
            [(fx(CACHE, "busybox-multi-oci"), "busybox-multi", "latest", "oci", "latest",
              True)],
        ]
        if "busybox-zstd-oci" in self.fixtures:
            jobs.append([(fx(CACHE, "busybox-zstd-oci"), "busybox-zstd", "latest", "oci",
                          "latest", False)])
        for tag in self.fixtures["hostile-oci"]["tags"]:
            jobs.append([(fx(CACHE, "hostile-oci"), "hostile", tag, "oci", tag, False)])
        for tag in self.extra:
            jobs.append([(fx(CACHE, "test-extra-oci"), tag, "latest", "oci", tag, False)])
        # The base blob first, alone: parallel pushes of one blob to several
        # repositories are fine for the registry but waste time.
        first, rest = jobs[0], jobs[1:]

        def run(job):
            out = {}
            for src, name, tag, fmt, src_tag, all_ in job:
                out["%s:%s" % (name, tag)] = self.registry.push(
                    src, name, tag, fmt=fmt, src_tag=src_tag, all_=all_)
            return out

        self.pushed.update(run(first))
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            for res in ex.map(run, rest):
                self.pushed.update(res)

    def stop(self):
        if self.registry is not None:
            self.registry.stop()
            self.registry = None

    # references and expected values
    def ref(self, name, tag="latest"):
        return self.registry.ref(name, tag)

    @property
    def has_zstd(self):
        return "busybox-zstd-oci" in self.fixtures

    def details(self, name):
        """The fixture details (manifest, config, layers, diff_ids) of a
        single-platform image by repository name."""
        if name in self.extra:
            return self.extra[name]
        if name == "busybox-multi":
            return self.fixtures["busybox-multi-oci"]["manifests"]["linux/amd64"]
        if name.startswith("hostile:"):
            return self.fixtures["hostile-oci"]["images"][name.split(":", 1)[1]]
        return self.fixtures[name + "-oci"]

    def config_id(self, name):
        return self.details(name)["config"].split(":", 1)[1]


def hexid(digest):
    return digest.split(":", 1)[1] if ":" in digest else digest


class Proxy:
    """A TCP proxy on 127.0.0.1 in front of a registry. Records the request
    line of every HTTP request (`requests`: (method, path)), and with `rate`
    (bytes/s, per connection; may be changed at any time, None = no limit)
    slows down what the registry sends back."""

    REQUEST_LINE = re.compile(rb"(GET|HEAD|POST|PUT|PATCH|DELETE) (\S+) HTTP/1\.[01]\r\n")

    def __init__(self, target_port, rate=None):
        self.target_port = target_port
        self.rate = rate
        self.requests = []
        self._lock = threading.Lock()
        self._socks = []
        self._closed = False
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def url(self):
        return "127.0.0.1:%d" % self.port

    def ref(self, name, tag="latest"):
        return "%s/%s:%s" % (self.url, name, tag)

    def blob_gets(self, digest):
        with self._lock:
            return sum(1 for m, p in self.requests
                       if m == "GET" and p.split("?")[0].endswith("/blobs/" + digest))

    def _track(self, *socks):
        with self._lock:
            if self._closed:
                for s in socks:
                    s.close()
                return False
            self._socks.extend(socks)
            return True

    def _accept(self):
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), 5)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            if not self._track(client, upstream):
                return
            threading.Thread(target=self._up, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._down, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _half_close(s):
        try:
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def _up(self, src, dst):
        buf = b""
        try:
            while True:
                data = src.recv(1 << 16)
                if not data:
                    break
                buf += data
                while True:
                    m = self.REQUEST_LINE.search(buf)
                    if not m:
                        break
                    with self._lock:
                        self.requests.append((m.group(1).decode(), m.group(2).decode()))
                    buf = buf[m.end():]
                buf = buf[-4096:]
                dst.sendall(data)
        except OSError:
            pass
        self._half_close(dst)

    def _down(self, src, dst):
        try:
            while True:
                rate = self.rate
                size = 1 << 16 if not rate else max(4096, min(1 << 16, rate // 50))
                data = src.recv(size)
                if not data:
                    break
                dst.sendall(data)
                if rate:
                    time.sleep(len(data) / rate)
        except OSError:
            pass
        self._half_close(dst)

    def close(self):
        with self._lock:
            self._closed = True
            socks, self._socks = self._socks, []
        try:
            self._listener.close()
        except OSError:
            pass
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def registries_conf(path, registry_url):
    """A registries.conf (v2) that searches `registry_url` for short names
    and marks it insecure (plain HTTP)."""
    with open(path, "w") as f:
        f.write('unqualified-search-registries = ["%s"]\n\n'
                '[[registry]]\nlocation = "%s"\ninsecure = true\n'
                % (registry_url, registry_url))
