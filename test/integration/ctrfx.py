"""Container fixtures for berth's integration suites (test_containers.py,
test_streams.py): the busybox image built by test/fixtures/images.py, and a
daemon test case with it pulled whose containers are all removed at the end.

    import ctrfx

    def setUpModule():
        ctrfx.require_root_and_images()

    class Lifecycle(ctrfx.ContainerTest):
        def test_exit(self):
            cid = self.run_ctr(["sh", "-c", "exit 3"])
            self.assertEqual(self.wait(cid), 3)

Python 3 standard library only.
"""

import os
import sys
import unittest

import harness
from harness import DaemonTest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))

import images  # noqa: E402  (test/fixtures/images.py)

CACHE = os.environ.get("BERTH_TEST_FIXTURES", "/var/tmp/berth-test-fixtures")
IMAGE = "localhost/busybox:latest"
BUSYBOX_ARCHIVE = "docker-archive:" + os.path.join(CACHE, "busybox-docker.tar")
LONG = 60.0


def require_root_and_images():
    """For setUpModule: skips the module without root, raises the open file
    limit and builds the fixture images (cached); returns images.build's
    result."""
    if os.geteuid() != 0:
        raise unittest.SkipTest("containers need root")
    harness.raise_nofile_limit()
    return images.build(CACHE, quiet=True)


def remove_containers(d, ids=None):
    """Force-removes the containers `ids` (every container when None)
    through the daemon `d` if it still runs, so that no container, mount or
    cgroup outlives the test."""
    if not d.running():
        return
    try:
        with d.connect(timeout=LONG) as c:
            if ids is None:
                r = c.request("io.podman.ListContainers", {}, timeout=LONG)
                listed = r.get("parameters", {}).get("containers") or []
                ids = [ctr["id"] for ctr in listed]
            for cid in ids:
                c.request("io.podman.RemoveContainer",
                          {"name": cid, "force": True}, timeout=LONG)
    except (OSError, harness.ConnectionClosed):
        pass


class ContainerTest(DaemonTest):
    """A daemon (self.d, connected as self.c) with the busybox image pulled
    (self.image_id). Subclasses may change the daemon's addresses() and its
    extra arguments."""

    extra = ()

    def setUp(self):
        super().setUp()
        self.d = self.start_daemon(addresses=self.addresses(), extra=self.extra)
        self.addCleanup(self.remove_all)
        self.c = self.d.connect(timeout=LONG)
        p = self.ok("PullImage", {"name": BUSYBOX_ARCHIVE})
        self.image_id = p["reply"]["id"]

    def addresses(self):
        return [self.default_address]

    def remove_all(self):
        remove_containers(self.d)

    def call(self, method, params=None, conn=None, timeout=LONG):
        return (conn or self.c).request("io.podman." + method, params or {},
                                        timeout=timeout)

    def ok(self, method, params=None, conn=None, timeout=LONG):
        return self.assertOk(self.call(method, params, conn, timeout))

    def create(self, command, conn=None, **fields):
        create = {"image": IMAGE, "command": command}
        create.update(fields)
        return self.ok("CreateContainer", {"create": create}, conn)["container"]

    def run_ctr(self, command, **fields):
        cid = self.create(command, **fields)
        self.ok("StartContainer", {"name": cid})
        return cid

    def wait(self, cid):
        return self.ok("WaitContainer", {"name": cid})["exitcode"]

    def state(self, cid):
        return self.ok("GetContainer", {"id": cid})["container"]["status"]
