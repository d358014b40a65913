"""The `berth` verbs that watch containers (issue 5, item 6): logs with -f,
--tail, --since and -t; stats (once, as JSON, and the live table on a
terminal); top; attach, run -i / -it and start -ai through Attach.

- FlagTest: usage errors; no server is contacted.
- OverUnix and OverTcp: the same tests against the real berthd with
  busybox containers, over its unix socket and over tcp on loopback.

Terminals are pseudo-terminals (pty.fork). Needs root (containers).
"""

import fcntl
import json
import os
import pty
import re
import select
import signal
import struct
import subprocess
import sys
import termios
import time
import unittest

import harness
from harness import DaemonTest, run_tool

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "fixtures"))

import images  # noqa: E402  (test/fixtures/images.py)

CACHE = os.environ.get("BERTH_TEST_FIXTURES", "/var/tmp/berth-test-fixtures")
IMAGE = "localhost/busybox:latest"  # the name inside busybox-docker.tar
TIMEOUT = 60.0  # only against hangs: no assertion depends on timing
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)"

ARCHIVE = None


def setUpModule():
    global ARCHIVE
    if os.geteuid() != 0:
        raise unittest.SkipTest("containers need root")
    harness.raise_nofile_limit()
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".build-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # suites running at once share it
        images.build(CACHE, quiet=True)
    ARCHIVE = os.path.join(CACHE, "busybox-docker.tar")


def berth_argv(address, *args):
    return [harness.ARGS.berth, "--address", address] + list(args)


class Pty:
    """A program on a pseudo-terminal of `rows` x `cols`."""

    def __init__(self, argv, rows=33, cols=101):
        pid, fd = pty.fork()
        if pid == 0:
            try:
                fcntl.ioctl(0, termios.TIOCSWINSZ,
                            struct.pack("HHHH", rows, cols, 0, 0))
                os.execv(argv[0], argv)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.out = b""
        self.status = None

    def _read(self, deadline):
        ready, _, _ = select.select([self.fd], [], [],
                                    max(0, deadline - time.monotonic()))
        if not ready:
            return False
        try:
            chunk = os.read(self.fd, 65536)
        except OSError:  # EIO: the terminal's last user is gone
            chunk = b""
        self.out += chunk
        return bool(chunk)

    def read_until(self, pattern, timeout=TIMEOUT):
        """Reads until `pattern` (bytes regex) is in the output."""
        deadline = time.monotonic() + timeout
        while not re.search(pattern, self.out):
            if time.monotonic() > deadline or not self._read(deadline):
                raise AssertionError("no %r on the terminal; got ...%r"
                                     % (pattern, self.out[-600:]))

    def write(self, data):
        os.write(self.fd, data)

    def wait(self, timeout=TIMEOUT):
        """The exit status (or -signal), reading output meanwhile."""
        deadline = time.monotonic() + timeout
        while self.status is None:
            pid, st = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(st)
                break
            if time.monotonic() > deadline:
                raise AssertionError("still running; output ...%r"
                                     % self.out[-600:])
            if not self._read(min(deadline, time.monotonic() + 0.2)):
                time.sleep(0.05)
        return self.status

    def termios(self):
        return termios.tcgetattr(self.fd)

    def close(self):
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except OSError:
                pass
            self.status = -signal.SIGKILL
        try:
            os.close(self.fd)
        except OSError:
            pass


# =============================================================================
# Usage errors


class FlagTest(DaemonTest):
    """The address points nowhere: reaching a server would fail with
    status 1 and no usage hint."""

    def test_usage_errors(self):
        address = "unix:" + self.path("nothing-here.sock")
        cases = [
            (["logs"], 1, "needs one container"),
            (["logs", "a", "b"], 1, "needs one container"),
            (["logs", "--tail", "x", "c"], 1, "--tail"),
            (["logs", "--tail", "-2", "c"], 1, "--tail"),
            (["logs", "--tail"], 1, "needs a value"),
            (["logs", "--since", "yesterday", "c"], 1, "--since"),
            (["logs", "--since", "10parsecs", "c"], 1, "--since"),
            (["logs", "-fx", "c"], 1, "unknown option"),
            (["stats", "--bogus"], 1, "unknown option for stats"),
            (["stats", "--format", "table"], 1, "unknown option for stats"),
            (["top"], 1, "needs a container"),
            (["top", "c", "-ef"], 1, "unknown option for top"),
            (["attach"], 125, "needs one container"),
            (["attach", "a", "b"], 125, "needs one container"),
            (["attach", "--detach-keys"], 125, "needs a value"),
            (["attach", "--sig-proxy=false", "c"], 125, "unknown option"),
            (["start", "-ai", "a", "b"], 125, "one container"),
            (["start", "--detach-keys", "q", "c"], 1, "needs -i"),
            (["run", "--detach-keys", "", IMAGE], 125, "--detach-keys"),
        ]
        for args, status, fragment in cases:
            with self.subTest(args=args):
                p = run_tool(berth_argv(address, *args), timeout=TIMEOUT)
                self.assertEqual(p.returncode, status, p.stderr)
                self.assertIn(fragment, p.stderr)
                self.assertIn("Try 'berth help'", p.stderr)
                self.assertEqual(p.stdout, "")

    def test_valid_options_reach_the_connection(self):
        address = "unix:" + self.path("nothing-here.sock")
        for args in (["logs", "-ft", "--tail=3", "--since", "1h30m", "c"],
                     ["logs", "-tf", "--since=2024-01-02T03:04:05.5+01:00",
                      "c"],
                     ["logs", "--follow", "--timestamps", "--since",
                      "2024-01-02", "c"],
                     ["stats", "--no-stream", "--format=json", "a", "b"],
                     ["top", "c", "pid,user", "args"],
                     ["attach", "--no-stdin", "--detach-keys=ctrl-x,q", "c"],
                     ["run", "-it", "--detach-keys", "ctrl-a,b", IMAGE, "sh"]):
            with self.subTest(args=args):
                p = run_tool(berth_argv(address, *args), timeout=TIMEOUT)
                self.assertEqual(p.returncode, 1, p.stderr)
                self.assertNotIn("Try 'berth help'", p.stderr)


# =============================================================================
# The real daemon


class StreamVerbs:
    """Tests shared by OverUnix and OverTcp; `transport` picks the address
    berth uses (berthd listens on both)."""

    transport = None

    def setUp(self):
        super().setUp()
        tcp = "tcp:127.0.0.1:%d" % harness.free_tcp_port()
        self.d = self.start_daemon(addresses=[self.default_address, tcp])
        self.address = tcp if self.transport == "tcp" else self.default_address
        self.ptys = []
        self.procs = []
        self.ok("load", "-q", "-i", ARCHIVE)
        self.addCleanup(self.remove_containers)
        self.addCleanup(self.stop_programs)

    # --- helpers

    def stop_programs(self):
        for t in self.ptys:
            t.close()
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()

    def remove_containers(self):
        # runs before the daemon is stopped: no container outlives the test
        p = self.berth("ps", "-a", "-q", "--no-trunc")
        for cid in p.stdout.split():
            self.berth("rm", "-f", cid)

    def berth(self, *args, input=None):
        return subprocess.run(berth_argv(self.address, *args), input=input,
                              stdin=None if input is not None else
                              subprocess.DEVNULL,
                              capture_output=True, timeout=TIMEOUT)

    def ok(self, *args):
        p = self.berth(*args)
        self.assertEqual(p.returncode, 0, "berth %s: %s" % (" ".join(args),
                                                           p.stderr))
        return p.stdout.decode()

    def popen(self, *args, **kw):
        p = subprocess.Popen(berth_argv(self.address, *args), **kw)
        self.procs.append(p)
        return p

    def on_pty(self, *args, rows=33, cols=101):
        t = Pty(berth_argv(self.address, *args), rows, cols)
        self.ptys.append(t)
        return t

    def status(self, name):
        for c in json.loads(self.ok("ps", "-a", "--format", "json")):
            if name in (c["names"], c["id"]):
                return c["status"]
        return None

    def assertCooked(self, t):
        """The terminal is back in its usual (canonical, echoing) mode."""
        iflag, oflag, cflag, lflag = t.termios()[:4]
        self.assertEqual(lflag & (termios.ICANON | termios.ECHO | termios.ISIG),
                         termios.ICANON | termios.ECHO | termios.ISIG)
        self.assertTrue(oflag & termios.OPOST)

    def wait_until(self, what, condition):
        deadline = time.monotonic() + TIMEOUT
        while not condition():
            if time.monotonic() > deadline:
                self.fail("still not the case: " + what)
            time.sleep(0.1)

    # --- logs

    def test_logs_follow_sees_new_lines_and_ends_at_exit(self):
        gate = self.path("gate")
        os.mkdir(gate)
        self.ok("run", "-d", "--name", "w", "-v", gate + ":/gate", IMAGE,
                "sh", "-c", "echo first; while [ ! -e /gate/go ]; do "
                "sleep 0.05; done; echo second; echo third >&2; exit 7")
        p = self.popen("logs", "-f", "w", stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        self.assertEqual(p.stdout.readline(), b"first\n")
        # Written only now, after the follow printed the first line.
        open(os.path.join(gate, "go"), "w").close()
        out, err = p.communicate(timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, err)
        self.assertEqual(out, b"second\n")
        self.assertEqual(err, b"third\n")
        self.assertEqual(self.status("w"), "exited")

    def test_logs_follow_of_an_exited_container_and_tail(self):
        p = self.berth("run", "--name", "done", IMAGE, "sh", "-c",
                       "echo one; echo two; echo three >&2; printf four; "
                       "sleep 0.2; echo five")
        self.assertEqual(p.returncode, 0, p.stderr)
        cases = [
            ([], b"one\ntwo\nfourfive\n", b"three\n"),
            (["--tail", "0"], b"", b""),
            (["--tail", "1"], b"fourfive\n", b""),
            (["--tail=2"], b"fourfive\n", b"three\n"),
            (["--tail", "3"], b"two\nfourfive\n", b"three\n"),
            (["--tail", "-1"], b"one\ntwo\nfourfive\n", b"three\n"),
            (["--tail", "100"], b"one\ntwo\nfourfive\n", b"three\n"),
        ]
        for opts, out, err in cases:
            for follow in ([], ["-f"]):
                with self.subTest(opts=opts + follow):
                    p = self.berth("logs", *(follow + opts), "done")
                    self.assertEqual((p.returncode, p.stdout, p.stderr),
                                     (0, out, err))

    def test_logs_since_and_timestamps(self):
        p = self.berth("run", "--name", "t", IMAGE, "sh", "-c",
                       "echo old; sleep 1.2; echo new")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = self.ok("logs", "-t", "t").splitlines()
        self.assertEqual(len(lines), 2, lines)
        for line, text in zip(lines, ("old", "new")):
            self.assertRegex(line, "^" + TIME + " " + text + "$")
        new_at = lines[1].split()[0]
        self.assertEqual(self.ok("logs", "--since", new_at, "t"), "new\n")
        self.assertEqual(self.ok("logs", "-f", "--since", new_at, "t"),
                         "new\n")
        self.assertEqual(self.ok("logs", "--since", "1h", "t"), "old\nnew\n")
        self.assertEqual(self.ok("logs", "--since", "2999-01-01T00:00:00Z",
                                 "t"), "")
        self.assertEqual(self.ok("logs", "--since", "2000-01-01", "t"),
                         "old\nnew\n")
        p = self.berth("logs", "-t", "--tail", "1", "-f", "t")
        self.assertEqual(p.stdout.decode(), lines[1] + "\n")

    def test_logs_of_an_unknown_container(self):
        p = self.berth("logs", "-f", "nosuch")
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"Error: no container with name or ID nosuch",
                      p.stderr)

    # --- stats and top

    def test_stats(self):
        self.ok("run", "-d", "--name", "busy", IMAGE, "sleep", "1000")
        self.ok("run", "--name", "stopped", IMAGE, "true")
        stats = json.loads(self.ok("stats", "--no-stream", "--format",
                                   "json", "busy"))
        self.assertEqual(len(stats), 1)
        s = stats[0]
        for key in ("id", "name", "cpu", "cpu_nano", "system_nano",
                    "mem_usage", "mem_limit", "mem_perc", "net_input",
                    "net_output", "block_output", "block_input", "pids"):
            self.assertIn(key, s)
        self.assertEqual(s["name"], "busy")
        self.assertEqual(s["pids"], 1)
        self.assertGreater(s["mem_limit"], 0)

        table = self.ok("stats", "--no-stream", "busy").splitlines()
        self.assertEqual(len(table), 2, table)
        self.assertEqual(re.split(r"\s{2,}", table[0].strip()),
                         ["ID", "NAME", "CPU %", "MEM USAGE / LIMIT", "MEM %",
                          "NET IO", "BLOCK IO", "PIDS"])
        self.assertRegex(table[1], r"^[0-9a-f]{12}\s+busy\s+\d+\.\d\d%\s+"
                         r"[\d.]+[kMGT]?B / [\d.]+[kMGT]?B\s+\d+\.\d\d%\s+"
                         r"\S+ / \S+\s+\S+ / \S+\s+1$")
        # Without names, every running container.
        every = self.ok("stats", "--no-stream").splitlines()
        self.assertEqual(len(every), 2, every)
        self.assertIn("busy", every[1])
        self.assertEqual([c["name"] for c in json.loads(
            self.ok("stats", "--no-stream", "--format", "json"))], ["busy"])

        for name in ("stopped", "nosuch"):
            p = self.berth("stats", "--no-stream", name)
            self.assertEqual(p.returncode, 2, name)
            self.assertIn(b"Error: ", p.stderr)
            self.assertEqual(p.stdout, b"")
        p = self.berth("stats", "--no-stream", "stopped")
        self.assertIn(b"not running", p.stderr)

    def test_stats_live_on_a_terminal_until_the_container_stops(self):
        self.ok("run", "-d", "--name", "live", IMAGE, "sleep", "1000")
        t = self.on_pty("stats", "live")
        # Drawn at least twice, each time after clearing the screen.
        t.read_until(rb"(?s)(\x1b\[2J\x1b\[H.*MEM USAGE / LIMIT.*live.*){2}")
        self.ok("stop", "-t", "0", "live")
        self.assertEqual(t.wait(), 0, t.out)

    def test_top(self):
        self.ok("run", "-d", "--name", "tp", IMAGE, "sleep", "1000")
        rows = self.ok("top", "tp").splitlines()
        self.assertEqual(rows[0].split(), ["USER", "PID", "PPID", "%CPU",
                                           "ELAPSED", "TTY", "TIME",
                                           "COMMAND"])
        self.assertEqual(len(rows), 2, rows)
        self.assertEqual(rows[1].split()[:3], ["root", "1", "0"])
        self.assertEqual(rows[1].split()[-1], "sleep")
        rows = self.ok("top", "tp", "pid,args", "user").splitlines()
        self.assertEqual([re.split(r"\s{3,}", r) for r in rows],
                         [["PID", "COMMAND", "USER"],
                          ["1", "sleep 1000", "root"]])
        p = self.berth("top", "tp", "bogus")
        self.assertEqual(p.returncode, 2)
        self.assertIn(b"bogus", p.stderr)
        self.ok("stop", "-t", "0", "tp")
        self.assertEqual(self.berth("top", "tp").returncode, 2)

    # --- attach, run -i, run -it, start -ai

    def test_run_i_relays_a_pipe(self):
        p = self.berth("run", "-i", "--rm", IMAGE, "sh",
                       input=b"echo hi; echo oops >&2; exit 3\n")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertEqual(p.stdout, b"hi\n")
        self.assertEqual(p.stderr, b"oops\n")
        self.wait_until("the --rm container is removed",
                        lambda: self.ok("ps", "-a", "-q") == "")

    def test_run_i_ends_the_input(self):
        # cat ends when its input does: the end of stdin reaches it.
        p = self.berth("run", "-i", IMAGE, "cat", input=b"abc\n" * 1000)
        self.assertEqual((p.returncode, p.stdout), (0, b"abc\n" * 1000),
                         p.stderr)
        p = self.berth("run", "-i", IMAGE, "cat")  # stdin is /dev/null
        self.assertEqual((p.returncode, p.stdout), (0, b""), p.stderr)

    def test_run_i_start_failures(self):
        for cmd, status in (("/etc", 126), ("/nonexistent", 127)):
            with self.subTest(cmd=cmd):
                p = self.berth("run", "-i", "--rm", IMAGE, cmd)
                self.assertEqual(p.returncode, status, p.stderr)
                self.assertIn(b"Error: ", p.stderr)
        # --rm: the containers that never ran are gone too.
        self.assertEqual(self.ok("ps", "-a", "-q"), "")
        p = self.berth("run", "-it", "no/such-image")
        self.assertEqual(p.returncode, 125)

    def test_run_it_on_a_terminal_then_detach_and_attach(self):
        t = self.on_pty("run", "-it", "--name", "term", IMAGE, "sh")
        t.read_until(rb"# ")
        t.write(b"stty size\r")
        t.read_until(rb"33 101")
        t.write(b"\x10\x11")  # ctrl-p, ctrl-q
        self.assertEqual(t.wait(), 0, t.out)
        self.assertCooked(t)
        self.assertEqual(self.status("term"), "running")

        # attach, on a terminal of another size, with other detach keys.
        t = self.on_pty("attach", "--detach-keys", "ctrl-x,q", "term",
                        rows=20, cols=70)
        t.write(b"stty size\r")
        t.read_until(rb"20 70")
        # The local terminal is raw while attached ...
        lflag = t.termios()[3]
        self.assertEqual(lflag & (termios.ICANON | termios.ECHO), 0)
        t.write(b"\x18q")
        self.assertEqual(t.wait(), 0, t.out)
        # ... and cooked again once berth is gone.
        self.assertCooked(t)
        self.assertEqual(self.status("term"), "running")

        # attach with a pipe: the container's exit status comes back.
        p = self.berth("attach", "term", input=b"echo again; exit 5\n")
        self.assertEqual(p.returncode, 5, p.stderr)
        self.assertIn(b"again", p.stdout)
        self.assertEqual(self.status("term"), "exited")

    def test_attach_follows_the_terminal_size_and_relays_signals(self):
        self.ok("run", "-d", "-it", "--name", "sig", IMAGE, "sh", "-c",
                "trap 'echo got-INT' INT; "
                "while :; do stty size; sleep 0.05; done")
        t = self.on_pty("attach", "sig", rows=20, cols=70)
        t.read_until(rb"20 70")
        # The local terminal changes size: the container's follows.
        fcntl.ioctl(t.fd, termios.TIOCSWINSZ,
                    struct.pack("HHHH", 25, 90, 0, 0))
        t.read_until(rb"25 90")
        # A first signal goes to the container ...
        os.kill(t.pid, signal.SIGINT)
        t.read_until(rb"got-INT")
        # ... a second one ends berth, its terminal restored.
        os.kill(t.pid, signal.SIGTERM)
        self.assertEqual(t.wait(), -signal.SIGTERM)
        self.assertCooked(t)
        self.assertEqual(self.status("sig"), "running")

    def test_attach_follows_output_without_stdin(self):
        gate = self.path("gate")
        os.mkdir(gate)
        self.ok("run", "-d", "--name", "talker", "-v", gate + ":/gate", IMAGE,
                "sh", "-c", "while [ ! -e /gate/go ]; do echo tick; "
                "sleep 0.05; done; echo out; echo err >&2; exit 9")
        p = self.popen("attach", "--no-stdin", "talker",
                       stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE)
        # A tick shows berth attached; only then does the gate open.
        self.assertEqual(p.stdout.readline(), b"tick\n")
        open(os.path.join(gate, "go"), "w").close()
        out, err = p.communicate(timeout=TIMEOUT)
        self.assertEqual((p.returncode, err), (9, b"err\n"))
        self.assertEqual(out.replace(b"tick\n", b""), b"out\n")

    def test_attach_refusals(self):
        self.ok("create", "--name", "fresh", IMAGE, "true")
        self.ok("run", "--name", "ended", IMAGE, "true")
        for name in ("fresh", "ended", "nosuch"):
            with self.subTest(name=name):
                p = self.berth("attach", name)
                self.assertEqual(p.returncode, 125)
                self.assertIn(b"Error: ", p.stderr)
        p = self.berth("run", "-i", "--detach-keys", "ctrl-", IMAGE, "true")
        self.assertEqual(p.returncode, 125)
        self.assertIn(b"detach", p.stderr)

    def test_start_ai(self):
        self.ok("create", "-i", "--name", "later", IMAGE, "sh")
        p = self.berth("start", "-ai", "later",
                       input=b"echo started; exit 6\n")
        self.assertEqual((p.returncode, p.stdout), (6, b"started\n"),
                         p.stderr)
        # Once more: an exited container starts again.
        p = self.berth("start", "--interactive", "later",
                       input=b"echo again; exit 4\n")
        self.assertEqual((p.returncode, p.stdout), (4, b"again\n"), p.stderr)


class OverUnix(StreamVerbs, DaemonTest):
    transport = "unix"


class OverTcp(StreamVerbs, DaemonTest):
    transport = "tcp"


if __name__ == "__main__":
    harness.main()
