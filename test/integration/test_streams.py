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
import threading
import time

import ctrfx
import harness
from ctrfx import LONG

LINE = re.compile(r"^(\S+) (stdout|stderr) ([PF]) (.*)$", re.S)


# An AddressSanitizer build holds freed memory in quarantine (256 MB by
# default), which is not what the memory checks here measure.
if "quarantine_size_mb" not in os.environ.get("ASAN_OPTIONS", ""):
    os.environ["ASAN_OPTIONS"] = ":".join(
        x for x in (os.environ.get("ASAN_OPTIONS", ""), "quarantine_size_mb=0") if x)


def setUpModule():
    ctrfx.require_root_and_images()


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


class StreamTest(ctrfx.ContainerTest):
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
        cid = self.run_ctr(["sh", "-c", "for i in 1 2 3; do echo $i; sleep 0.3; done; sleep 30"])
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
        cid = self.run_ctr(["sh", "-c", "while :; do echo tick; sleep 0.1; done"])
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
        self.assertGreater(st["cpu"], 0.0)
        self.assertLess(st["cpu"], 210.0)
        self.assertGreater(st["mem_usage"], 0)
        self.assertGreater(st["mem_limit"], st["mem_usage"])
        self.assertGreaterEqual(st["pids"], 1)
        conn = self.d.connect(timeout=LONG)
        conn.call("io.podman.GetContainerStats", {"name": cid}, more=True)
        samples = [conn.recv(timeout=5) for _ in range(3)]
        for s in samples:
            self.assertTrue(s.get("continues"))
        # Each sample's cpu is the share of a core used since the previous
        # one (system_nano carries the sample's clock), not since the start.
        for prev, cur in zip(samples[1:], samples[2:]):
            p, c = prev["parameters"]["container"], cur["parameters"]["container"]
            want = (c["cpu_nano"] - p["cpu_nano"]) * 100.0 / (c["system_nano"] - p["system_nano"])
            self.assertGreater(c["system_nano"] - p["system_nano"], 0.5e9)
            self.assertAlmostEqual(c["cpu"], want, delta=0.5)
            self.assertGreater(c["cpu"], 0.0)
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
        cid = self.run_ctr(["sh", "-c", "sleep 60 & sleep 60; echo done"])
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
        cid = self.run_ctr(["sleep", "60"])
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

    def say(self, text, expect, fd=1):
        """Sends `text` to the input; whether `expect` then shows on `fd`."""
        self.send(0, text)
        return self.read_until(lambda: expect in self.out[fd])

    def finish(self):
        """Reads to the end of the attach and closes it; how it ended."""
        self.read_until(lambda: False)
        self.conn.close()
        return self.end


class Attach(StreamTest):
    def addresses(self):
        self.port = harness.free_tcp_port()
        return [self.default_address, "tcp:127.0.0.1:%d" % self.port]

    def attach(self, cid, **options):
        """An attach over TCP whose upgrade was accepted."""
        a = AttachClient(harness.Conn("tcp:127.0.0.1:%d" % self.port,
                                      timeout=LONG), cid, **options)
        self.assertOk(a.reply)
        return a

    def test_interactive_shell_over_tcp(self):
        cid = self.create(["sh"], interactive=True)
        a = self.attach(cid, start=True)
        self.assertTrue(a.say("echo hello from $((6*7))\n", b"hello from 42"))
        self.assertTrue(a.say("echo to-stderr >&2\n", b"to-stderr", fd=2))
        a.send(0, "exit 4\n")
        self.assertEqual(a.finish(), "4")
        self.assertEqual(self.wait(cid), 4)

    def test_end_of_input_ends_stdin(self):
        """Frame 2 closes the container's stdin: `cat` sees EOF and exits."""
        cid = self.create(["cat"], interactive=True)
        a = self.attach(cid, start=True)
        self.assertTrue(a.say("line one\n", b"line one"))
        a.send(0, "no newline")
        a.send(2, "")
        self.assertEqual(a.finish(), "0")
        self.assertEqual(a.out[1], b"line one\nno newline")

    def test_tty_resize_and_detach(self):
        cid = self.create(["sh"], interactive=True, tty=True)
        a = self.attach(cid, start=True, detach_keys="ctrl-x,q")
        a.send(1, "33 101")
        time.sleep(0.2)
        self.assertTrue(a.say("stty size\n", b"33 101"))
        a.send(0, "\x18q")
        self.assertEqual(a.finish(), "detached")
        self.assertEqual(self.state(cid), "running")
        # Attach again to the running container, then end its input.
        b = self.attach(cid, start=False)
        b.send(0, "exit 3\n")
        self.assertEqual(b.finish(), "3")

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
        self.assertEqual(self.state(cid), "created")
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
