"""berthd's streams (issue 5): following logs, stats, processes and remote
attach, on real containers from the busybox fixture; and the fault classes
of shared/cases about them (C02, C03, C10).

Needs root (containers).
"""

import concurrent.futures
import glob
import json
import os
import re
import socket
import struct
import sys
import threading
import time
import unittest

import harness
from harness import DaemonTest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))

import images  # noqa: E402  (test/fixtures/images.py)

CACHE = os.environ.get("BERTH_TEST_FIXTURES", "/var/tmp/berth-test-fixtures")
IMAGE = "localhost/busybox:latest"
LONG = 60.0
LINE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) (.*)$", re.S)


def setUpModule():
    if os.geteuid() != 0:
        raise unittest.SkipTest("containers need root")
    harness.raise_nofile_limit()
    images.build(CACHE, quiet=True)


def rss_kb(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def open_fds(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def inotify_watches(pid):
    n = 0
    for info in glob.glob("/proc/%d/fdinfo/*" % pid):
        try:
            with open(info) as f:
                n += sum(1 for line in f if line.startswith("inotify wd:"))
        except OSError:
            pass
    return n


def payload(lines):
    """The text of CRI log lines, partial lines joined."""
    out = ""
    for l in lines:
        m = LINE.match(l)
        assert m, "not a log line: %r" % l
        text = m.group(4)
        if m.group(3) == "F":
            out += text
        else:
            out += text[:-1] if text.endswith("\n") else text
    return out


class StreamTest(DaemonTest):
    extra = ()

    def setUp(self):
        super().setUp()
        self.d = self.start_daemon(addresses=self.addresses(), extra=self.extra)
        self.addCleanup(self.remove_all)
        self.c = self.d.connect(timeout=LONG)
        self.ok("PullImage", {"name": "docker-archive:" +
                              os.path.join(CACHE, "busybox-docker.tar")})

    def addresses(self):
        return [self.default_address]

    def remove_all(self):
        if not self.d.running():
            return
        try:
            with self.d.connect(timeout=LONG) as c:
                r = c.request("io.podman.ListContainers", {}, timeout=LONG)
                for ctr in r.get("parameters", {}).get("containers") or []:
                    c.request("io.podman.RemoveContainer",
                              {"name": ctr["id"], "force": True}, timeout=LONG)
        except (OSError, harness.ConnectionClosed):
            pass

    def call(self, method, params=None, conn=None, timeout=LONG):
        return (conn or self.c).request("io.podman." + method, params or {},
                                        timeout=timeout)

    def ok(self, method, params=None, conn=None, timeout=LONG):
        return self.assertOk(self.call(method, params, conn, timeout))

    def create(self, command, **fields):
        create = {"image": IMAGE, "command": command}
        create.update(fields)
        return self.ok("CreateContainer", {"create": create})["container"]

    def follow(self, cid, conn=None):
        """Starts a follow; returns the connection (first reply read)."""
        conn = conn or self.d.connect(timeout=LONG)
        conn.call("io.podman.GetContainerLogs", {"name": cid}, more=True)
        first = conn.recv(timeout=LONG)
        self.assertTrue(first.get("continues"), first)
        return conn, list(first["parameters"].get("container") or [])

    def drain(self, conn, lines, timeout=LONG):
        """Reads a follow to its final reply; returns the lines and the
        time each reply arrived."""
        while True:
            r = conn.recv(timeout=timeout)
            self.assertNotIn("error", r, r)
            lines.extend(r["parameters"].get("container") or [])
            if not r.get("continues"):
                return lines


class Logs(StreamTest):
    def test_follow_from_first_byte_to_exit(self):
        """C03: both lines, then a final reply without continues; the
        daemon then idles."""
        cid = self.create(["sh", "-c", "echo hi; sleep 1; echo bye"])
        conn, lines = self.follow(cid)
        self.ok("StartContainer", {"name": cid})
        t0 = time.monotonic()
        self.drain(conn, lines)
        self.assertGreater(time.monotonic() - t0, 0.8)
        self.assertEqual(payload(lines), "hi\nbye\n")
        conn.close()
        # No busy loop afterwards.
        with open("/proc/%d/stat" % self.d.pid) as f:
            before = sum(int(x) for x in f.read().split()[13:15])
        time.sleep(1.0)
        with open("/proc/%d/stat" % self.d.pid) as f:
            after = sum(int(x) for x in f.read().split()[13:15])
        self.assertLess(after - before, 10, "berthd used CPU while idle (ticks)")

    def test_stream_and_second_call_do_not_interleave(self):
        """C03: a stream and a call after it on one connection: the call is
        served after the stream ends."""
        cid = self.create(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done; sleep 30"])
        self.ok("StartContainer", {"name": cid})
        conn = self.d.connect(timeout=LONG)
        conn.call("io.podman.GetContainerLogs", {"name": cid}, more=True)
        conn.call("io.podman.StopContainer", {"name": cid, "timeout": 0})
        time.sleep(1.2)
        # Stop it from elsewhere so the stream ends.
        self.ok("StopContainer", {"name": cid, "timeout": 0})
        replies = []
        while True:
            r = conn.recv(timeout=LONG)
            replies.append(r)
            if "continues" not in r and "container" in r.get("parameters", {}) \
                    and isinstance(r["parameters"]["container"], list):
                break
        lines = [l for r in replies for l in r["parameters"]["container"] or []]
        self.assertEqual(payload(lines), "1\n2\n3\n")
        stop = conn.recv(timeout=LONG)
        self.assertEqual(self.assertOk(stop)["container"], cid)
        conn.close()

    def test_hangup_mid_stream_frees_everything(self):
        """C02/C03: closing the connection cancels the stream: fds and
        inotify watches go back to where they were."""
        cid = self.create(["sh", "-c", "while :; do echo tick; sleep 0.1; done"])
        self.ok("StartContainer", {"name": cid})
        time.sleep(0.3)
        fds, watches = open_fds(self.d.pid), inotify_watches(self.d.pid)
        conns = []
        for _ in range(10):
            conn, _ = self.follow(cid)
            conns.append(conn)
        for conn in conns:
            conn.recv(timeout=LONG)
        self.assertGreater(inotify_watches(self.d.pid), watches - 1)
        for conn in conns:
            conn.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and (open_fds(self.d.pid) > fds or
                                               inotify_watches(self.d.pid) > watches):
            time.sleep(0.05)
        self.assertLessEqual(open_fds(self.d.pid), fds)
        self.assertLessEqual(inotify_watches(self.d.pid), watches)
        self.ok("StopContainer", {"name": cid, "timeout": 0})

    def test_fifty_followers_get_every_line_in_order(self):
        cid = self.create(["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line $i; "
                           "i=$((i+1)); [ $((i % 50)) = 0 ] && sleep 0.1; done"])
        conns = [self.follow(cid) for _ in range(50)]
        self.ok("StartContainer", {"name": cid})
        want = "".join("line %d\n" % i for i in range(300))

        def drain(pair):
            conn, lines = pair
            try:
                return payload(self.drain(conn, lines))
            finally:
                conn.close()
        with concurrent.futures.ThreadPoolExecutor(50) as ex:
            got = list(ex.map(drain, conns))
        for text in got:
            self.assertEqual(text, want)

    def test_non_follow_and_partial_lines(self):
        cid = self.create(["sh", "-c", "printf 'no newline'; echo; printf 'a'; "
                           "printf 'b\\n'; echo err >&2"])
        self.ok("StartContainer", {"name": cid})
        self.ok("WaitContainer", {"name": cid})
        lines = self.ok("GetContainerLogs", {"name": cid})["container"]
        self.assertIn("no newline\n", payload(lines))
        self.assertTrue(any(" stderr F err\n" in l for l in lines), lines)
        # A finished container's follow delivers everything and ends.
        conn, first = self.follow(cid)
        self.assertEqual(payload(self.drain(conn, first)), payload(lines))
        conn.close()
        # A configured container has no log yet.
        cid2 = self.create(["true"])
        self.assertEqual(self.ok("GetContainerLogs", {"name": cid2})["container"], [])
        self.assertError(self.call("GetContainerLogs", {"name": "nosuch"}),
                         "io.podman.ContainerNotFound")

    def test_stalled_reader_costs_bounded_memory(self):
        """A reader that stalls while a container writes 200 MB: berthd's
        memory stays bounded, then the reader gets every byte."""
        size = 200 << 20
        cid = self.create(["sh", "-c", "dd if=/dev/zero bs=1048576 count=200 2>/dev/null"
                           " | tr '\\0' 'a'"])
        conn = self.d.connect(timeout=LONG)
        conn.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        conn.call("io.podman.GetContainerLogs", {"name": cid}, more=True)
        conn.recv(timeout=LONG)
        base = rss_kb(self.d.pid)
        self.ok("StartContainer", {"name": cid})
        peak = base
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            peak = max(peak, rss_kb(self.d.pid))
            time.sleep(0.2)
        total = 0
        started = time.monotonic()
        while True:
            r = conn.recv(timeout=LONG)
            self.assertNotIn("error", r, r)
            for l in r["parameters"].get("container") or []:
                m = LINE.match(l)
                total += len(m.group(4)) - (1 if m.group(4).endswith("\n") else 0) \
                    if m.group(3) == "P" else len(m.group(4)) - 1
            peak = max(peak, rss_kb(self.d.pid))
            if not r.get("continues"):
                break
            if time.monotonic() - started > 300:
                self.fail("the stream did not end")
        conn.close()
        self.assertEqual(total, size)
        self.assertLess(peak - base, 64 << 10, "RSS grew by %d KiB" % (peak - base))

    def test_log_size_limit(self):
        """C10: a 10 KB limit holds, also across 50 restarts that start from
        the file's current size."""
        cid = self.create(["sh", "-c", "yes | head -c 1000000"],
                          log_driver_opt=["max-size=10k"])
        self.ok("StartContainer", {"name": cid})
        self.ok("WaitContainer", {"name": cid})
        log = json.loads(self.ok("InspectContainer", {"name": cid})["container"])["LogPath"]
        self.assertLessEqual(os.path.getsize(log), 10000 + 200)
        cid2 = self.create(["sh", "-c", "head -c 1000 /dev/zero | tr '\\0' x; echo"],
                           log_driver_opt=["max-size=10k"])
        log2 = json.loads(self.ok("InspectContainer", {"name": cid2})["container"])["LogPath"]
        for _ in range(50):
            self.ok("StartContainer", {"name": cid2})
            self.ok("WaitContainer", {"name": cid2})
            self.assertLessEqual(os.path.getsize(log2), 10000 + 1200)


class Stats(StreamTest):
    def test_stats_once_and_streamed(self):
        cid = self.create(["sh", "-c", "while :; do :; done"])
        self.assertError(self.call("GetContainerStats", {"name": cid}),
                         "io.podman.NoContainerRunning", {})
        self.assertError(self.call("GetContainerStats", {"name": "nosuch"}),
                         "io.podman.ContainerNotFound")
        self.ok("StartContainer", {"name": cid})
        time.sleep(1.0)
        st = self.ok("GetContainerStats", {"name": cid})["container"]
        self.assertEqual(st["id"], cid)
        self.assertGreater(st["cpu_nano"], 100 * 1000 * 1000)
        self.assertGreater(st["cpu"], 20.0)
        self.assertLess(st["cpu"], 210.0)
        self.assertGreater(st["mem_usage"], 0)
        self.assertGreater(st["mem_limit"], st["mem_usage"])
        self.assertGreaterEqual(st["pids"], 1)
        conn = self.d.connect(timeout=LONG)
        conn.call("io.podman.GetContainerStats", {"name": cid}, more=True)
        samples = [conn.recv(timeout=5) for _ in range(3)]
        for s in samples:
            self.assertTrue(s.get("continues"))
            self.assertGreater(s["parameters"]["container"]["cpu"], 50.0)
        self.ok("StopContainer", {"name": cid, "timeout": 0})
        while True:
            r = conn.recv(timeout=LONG)
            self.assertNotIn("error", r)
            if not r.get("continues"):
                break
        conn.close()
        self.assertError(self.call("GetContainerStats", {"name": cid}),
                         "io.podman.NoContainerRunning", {})

    def test_history_and_processes(self):
        cid = self.create(["sh", "-c", "sleep 60 & sleep 60; echo done"])
        self.ok("StartContainer", {"name": cid})
        time.sleep(0.3)
        first = self.ok("GetContainerStats", {"name": cid})["container"]
        second = self.ok("GetContainerStatsWithHistory",
                         {"previousStats": first})["container"]
        self.assertGreaterEqual(second["cpu_nano"], first["cpu_nano"])
        rows = self.ok("ListContainerProcesses", {"name": cid})["container"]
        self.assertEqual(rows[0].split("\t")[:3], ["USER", "PID", "PPID"])
        self.assertEqual(len(rows), 4, rows)  # sh and two sleeps
        pids = [r.split("\t")[1].strip() for r in rows[1:]]
        self.assertIn("1", pids)
        rows = self.ok("ListContainerProcesses", {"name": cid,
                                                  "opts": ["pid", "args"]})["container"]
        self.assertTrue(any("sleep 60" in r for r in rows), rows)
        self.assertError(self.call("ListContainerProcesses", {"name": cid,
                                                              "opts": ["bogus"]}),
                         "io.podman.ErrorOccurred")
        self.ok("StopContainer", {"name": cid, "timeout": 0})
        self.assertError(self.call("ListContainerProcesses", {"name": cid}),
                         "io.podman.ErrorOccurred")

    def test_stats_watcher_hangs_up(self):
        cid = self.create(["sleep", "60"])
        self.ok("StartContainer", {"name": cid})
        fds = open_fds(self.d.pid)
        conns = []
        for _ in range(5):
            conn = self.d.connect(timeout=LONG)
            conn.call("io.podman.GetContainerStats", {"name": cid}, more=True)
            conn.recv(timeout=5)
            conns.append(conn)
        for conn in conns:
            conn.close()
        time.sleep(1.5)
        self.assertLessEqual(open_fds(self.d.pid), fds)
        self.assertEqual(self.state(cid), "running")

    def state(self, cid):
        return self.ok("GetContainer", {"id": cid})["container"]["status"]


class AttachClient:
    """berth's attach framing over an upgraded varlink connection."""

    def __init__(self, conn, name, start=True, detach_keys=""):
        self.conn = conn
        conn.call("io.podman.Attach", {"name": name, "detachKeys": detach_keys,
                                       "start": start}, upgrade=True)
        self.reply = conn.recv(timeout=LONG)
        self.out = {1: b"", 2: b""}
        self.end = None

    def send(self, kind, data):
        if isinstance(data, str):
            data = data.encode()
        self.conn.send_raw(struct.pack(">BI", kind, len(data)) + data)

    def read_until(self, pred, timeout=LONG):
        deadline = time.monotonic() + timeout
        while not pred() and self.end is None:
            while len(self.conn.buf) < 5 or \
                    len(self.conn.buf) < 5 + struct.unpack(">I", self.conn.buf[1:5])[0]:
                self.conn._fill(deadline)
            kind, n = struct.unpack(">BI", self.conn.buf[:5])
            data, self.conn.buf = self.conn.buf[5:5 + n], self.conn.buf[5 + n:]
            if kind == 3:
                self.end = data.decode()
            else:
                self.out[kind] += data
        return pred()


class Attach(StreamTest):
    def addresses(self):
        self.port = harness.free_tcp_port()
        return [self.default_address, "tcp:127.0.0.1:%d" % self.port]

    def tcp(self):
        return harness.Conn("tcp:127.0.0.1:%d" % self.port, timeout=LONG)

    def test_interactive_shell_over_tcp(self):
        cid = self.create(["sh"], interactive=True)
        a = AttachClient(self.tcp(), cid, start=True)
        self.assertOk(a.reply)
        a.send(0, "echo hello from $((6*7))\n")
        self.assertTrue(a.read_until(lambda: b"hello from 42" in a.out[1]))
        a.send(0, "echo to-stderr >&2\n")
        self.assertTrue(a.read_until(lambda: b"to-stderr" in a.out[2]))
        a.send(0, "exit 4\n")
        a.read_until(lambda: False)
        self.assertEqual(a.end, "4")
        a.conn.close()
        self.assertEqual(self.ok("WaitContainer", {"name": cid})["exitcode"], 4)

    def test_tty_resize_and_detach(self):
        cid = self.create(["sh"], interactive=True, tty=True)
        a = AttachClient(self.tcp(), cid, start=True, detach_keys="ctrl-x,q")
        self.assertOk(a.reply)
        a.send(1, "33 101")
        time.sleep(0.2)
        a.send(0, "stty size\n")
        self.assertTrue(a.read_until(lambda: b"33 101" in a.out[1]))
        a.send(0, "\x18q")
        a.read_until(lambda: False)
        self.assertEqual(a.end, "detached")
        a.conn.close()
        self.assertEqual(self.ok("GetContainer", {"id": cid})["container"]["status"],
                         "running")
        # Attach again to the running container, then end its input.
        b = AttachClient(self.tcp(), cid, start=False)
        self.assertOk(b.reply)
        b.send(0, "exit 3\n")
        b.read_until(lambda: False)
        self.assertEqual(b.end, "3")
        b.conn.close()

    def test_attach_errors(self):
        cid = self.create(["true"])
        r = self.call("Attach", {"name": cid, "detachKeys": "", "start": False})
        self.assertError(r, "io.podman.ErrorOccurred")
        with self.d.connect(timeout=LONG) as c:
            c.call("io.podman.Attach", {"name": cid, "detachKeys": "", "start": False},
                   upgrade=True)
            self.assertError(c.recv(timeout=LONG), "io.podman.ErrorOccurred")
        with self.d.connect(timeout=LONG) as c:
            c.call("io.podman.Attach", {"name": cid, "detachKeys": "ctrl-", "start": True},
                   upgrade=True)
            self.assertError(c.recv(timeout=LONG), "io.podman.ErrorOccurred")
        with self.d.connect(timeout=LONG) as c:
            c.call("io.podman.Attach", {"name": "nosuch", "detachKeys": "", "start": True},
                   upgrade=True)
            self.assertError(c.recv(timeout=LONG), "io.podman.ContainerNotFound")

    def test_get_attach_sockets_prepares_the_container(self):
        cid = self.create(["sh", "-c", "echo attached-out; exit 0"], interactive=False)
        s = self.ok("GetAttachSockets", {"name": cid})["sockets"]
        self.assertEqual(s["container_id"], cid)
        self.assertLessEqual(len(s["io_socket"]), 107)
        self.assertEqual(self.ok("GetContainer", {"id": cid})["container"]["status"],
                         "created")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sock.connect(s["io_socket"])
        self.ok("StartContainer", {"name": cid})
        got = b""
        sock.settimeout(10)
        while True:
            pkt = sock.recv(8193)
            if not pkt:
                break
            if pkt[0] == 2:
                got += pkt[1:]
        sock.close()
        self.assertIn(b"attached-out", got)
        self.assertTrue(os.path.exists(s["control_socket"]))


if __name__ == "__main__":
    harness.main()
