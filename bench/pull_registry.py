#!/usr/bin/env python3
"""Registry side of bench/pull.sh: a docker-registry on 127.0.0.1 (test/fixtures/registry.py)
with the benchmark's images pushed, and optionally N tiny distinct images for ListImages.

    python3 bench/pull_registry.py serve FIXTURES INFO [--debian] [--tiny N]

FIXTURES is a directory built by test/fixtures/images.py. Pushes busybox:latest,
busybox5:latest (and debian:latest with --debian) with skopeo, then (--tiny N) N one-layer
images as tiny:t0000 ... written straight through the registry's HTTP API (a few ms each;
every image differs in its layer, so each has its own config digest = image ID). Writes INFO
(JSON: port, url, registry pid, per image the manifest/config digests and layer count, and
the tiny images' config digests) once everything is pushed, then waits for SIGTERM/SIGINT,
stops the registry and removes its storage (a temp dir under $TMPDIR).
"""

import argparse
import gzip
import hashlib
import http.client
import io
import json
import os
import signal
import sys
import tarfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "test", "fixtures"))

from registry import Registry  # noqa: E402
import images  # noqa: E402

MT_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MT_CONFIG = "application/vnd.oci.image.config.v1+json"
MT_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
EPOCH = 1704067200


def tiny_layer(n):
    """A gzip tar with one small file whose content depends on n."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        data = ("berth bench tiny image %d\n" % n).encode()
        ti = tarfile.TarInfo("tiny.txt")
        ti.size, ti.mtime, ti.mode = len(data), EPOCH, 0o644
        t.addfile(ti, io.BytesIO(data))
    raw = buf.getvalue()
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0) as g:
        g.write(raw)
    return raw, out.getvalue()


def cj(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


class Pusher:
    """Pushes blobs and manifests over one kept-alive HTTP connection (no auth)."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.have = set()

    def _req(self, method, path, body=None, headers=None, want=(200, 201, 202)):
        self.conn.request(method, path, body=body, headers=headers or {})
        r = self.conn.getresponse()
        data = r.read()
        if r.status not in want:
            raise RuntimeError("%s %s -> %d %s" % (method, path, r.status, data[:300]))
        return r

    def blob(self, repo, data):
        dg = "sha256:" + hashlib.sha256(data).hexdigest()
        if dg in self.have:
            return dg, len(data)
        r = self._req("POST", "/v2/%s/blobs/uploads/" % repo, body=b"",
                      headers={"Content-Length": "0"})
        loc = r.getheader("Location")
        if loc.startswith("http"):
            loc = "/" + loc.split("/", 3)[3]
        sep = "&" if "?" in loc else "?"
        self._req("PUT", "%s%sdigest=%s" % (loc, sep, dg), body=data,
                  headers={"Content-Type": "application/octet-stream",
                           "Content-Length": str(len(data))})
        self.have.add(dg)
        return dg, len(data)

    def manifest(self, repo, tag, data):
        self._req("PUT", "/v2/%s/manifests/%s" % (repo, tag), body=data,
                  headers={"Content-Type": MT_MANIFEST, "Content-Length": str(len(data))})


def push_tiny(port, n, repo="tiny", threads=8):
    """Pushes n distinct one-layer images as repo:t0000...; returns {tag: config digest}."""
    out, errors = {}, []

    def worker(k):
        try:
            p = Pusher(port)
            for i in range(k, n, threads):
                raw, gz = tiny_layer(i)
                ldg, lsize = p.blob(repo, gz)
                config = {"created": "2024-01-01T00:00:00Z", "architecture": "amd64",
                          "os": "linux",
                          "config": {"Cmd": ["sh"],
                                     "Labels": {"org.berth.bench": "tiny-%d" % i}},
                          "rootfs": {"type": "layers",
                                     "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
                          "history": [{"created": "2024-01-01T00:00:00Z",
                                       "created_by": "bench"}]}
                cdg, csize = p.blob(repo, cj(config))
                man = {"schemaVersion": 2, "mediaType": MT_MANIFEST,
                       "config": {"mediaType": MT_CONFIG, "digest": cdg, "size": csize},
                       "layers": [{"mediaType": MT_LAYER, "digest": ldg, "size": lsize}]}
                tag = "t%04d" % i
                p.manifest(repo, tag, cj(man))
                out[tag] = cdg
        except Exception as e:  # reported by the caller
            errors.append(e)

    ts = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    if errors:
        raise errors[0]
    return dict(sorted(out.items()))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve")
    s.add_argument("fixtures")
    s.add_argument("info")
    s.add_argument("--debian", action="store_true")
    s.add_argument("--tiny", type=int, default=0)
    a = ap.parse_args(argv)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    fx = images.load(a.fixtures)
    reg = Registry()
    try:
        info = {"port": reg.port, "url": reg.url, "pid": reg.proc.pid, "images": {}}
        names = ["busybox", "busybox5"] + (["debian"] if a.debian else [])
        for name in names:
            target = name + "-oci"
            if target not in fx:
                raise SystemExit("pull_registry.py: %s not built in %s" % (target, a.fixtures))
            t0 = time.time()
            dg = reg.push(os.path.join(a.fixtures, target), name, "latest")
            d = fx[target]
            info["images"][name] = {"manifest": dg, "config": d["config"],
                                    "layers": len(d["layers"]), "size": d["size"],
                                    "push_s": round(time.time() - t0, 2)}
        if a.tiny:
            t0 = time.time()
            info["tiny"] = push_tiny(reg.port, a.tiny)
            info["tiny_push_s"] = round(time.time() - t0, 2)
        with open(a.info + ".tmp", "w") as f:
            json.dump(info, f, indent=1)
        os.replace(a.info + ".tmp", a.info)
        while not stop.wait(0.5):
            if reg.proc.poll() is not None:
                print("pull_registry.py: docker-registry exited:\n" + reg.log(),
                      file=sys.stderr)
                return 1
    finally:
        reg.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
