"""Shared helpers for berth's integration suites.

Every suite is run by CTest as

    python3 test_x.py --berthd PATH --berth PATH --goclient PATH [unittest args]

`main()` parses the three paths (anything else goes to unittest), and
`DaemonTest` gives each test a fresh temporary directory, a way to start
berthd in it, and cleanup that stops (or, failing that, kills) only the
daemons the test started. When a test fails, the daemon logs are printed.

Python 3 standard library only.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

ARGS = None  # argparse.Namespace with berthd, berth, goclient

START_TIMEOUT = 15.0  # seconds for a daemon to accept connections
STOP_TIMEOUT = 20.0  # seconds for a daemon to exit after SIGTERM
RECV_TIMEOUT = 15.0  # default wait for one reply


# What the running test holds, for `_on_stop_signal`: daemons still alive
# and temporary directories not yet removed.
_live_daemons = set()
_live_dirs = set()


def _on_stop_signal(sig, frame):
    """The suite itself is being stopped (CTest timeout, ^C): cleanups will
    not run, so kill our own daemons by pid and remove our directories."""
    for d in list(_live_daemons):
        try:
            d.kill()
        except OSError:
            pass
    for path in list(_live_dirs):
        shutil.rmtree(path, ignore_errors=True)
    sys.stderr.write("\ninterrupted by signal %d\n" % sig)
    os._exit(128 + sig)


def main():
    global ARGS
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, _on_stop_signal)
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--berthd", required=True)
    p.add_argument("--berth", required=True)
    p.add_argument("--goclient", required=True)
    ARGS, rest = p.parse_known_args()
    for name in ("berthd", "berth", "goclient"):
        setattr(ARGS, name, os.path.abspath(getattr(ARGS, name)))
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


def raise_nofile_limit():
    """Raises RLIMIT_NOFILE's soft limit to the hard limit; daemons started
    afterwards inherit it. Returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft == resource.RLIM_INFINITY or soft >= hard:
        return soft
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_tcp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- addresses and raw connections ---------------------------------------------


def sockaddr(address):
    """(family, sockaddr) for a varlink address; text after ';' is ignored."""
    address = address.split(";", 1)[0]
    if address.startswith("unix:"):
        path = address[len("unix:"):]
        if path.startswith("@"):
            path = "\0" + path[1:]  # abstract: no trailing NUL
        return socket.AF_UNIX, path
    if address.startswith("tcp:"):
        host, _, port = address[len("tcp:"):].rpartition(":")
        return socket.AF_INET, (host.strip("[]"), int(port))
    raise ValueError("unsupported address: " + address)


class ConnectionClosed(Exception):
    """The peer closed the connection (EOF or reset)."""


class Conn:
    """A raw varlink connection: JSON objects terminated by NUL."""

    def __init__(self, address, timeout=RECV_TIMEOUT):
        family, addr = sockaddr(address)
        self.sock = socket.socket(family, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(addr)
        except BaseException:
            self.sock.close()
            raise
        self.buf = b""
        self.eof = False

    def close(self):
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # sending
    def send(self, msg):
        self.send_raw(json.dumps(msg).encode() + b"\0")

    def send_raw(self, data):
        self.sock.sendall(data)

    def call(self, method, parameters=None, **flags):
        """Sends one call; `parameters` None means no key at all."""
        msg = {"method": method}
        if parameters is not None:
            msg["parameters"] = parameters
        msg.update(flags)
        self.send(msg)

    def request(self, method, parameters=None, timeout=RECV_TIMEOUT, **flags):
        """Sends one call and returns its (first) reply."""
        self.call(method, parameters, **flags)
        return self.recv(timeout)

    # receiving
    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("no complete message in time")
        self.sock.settimeout(remaining)
        try:
            chunk = self.sock.recv(1 << 16)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            raise ConnectionClosed("connection closed by the server")
        self.buf += chunk

    def recv_raw(self, timeout=RECV_TIMEOUT):
        """The bytes of one message, without its NUL."""
        deadline = time.monotonic() + timeout
        while b"\0" not in self.buf:
            if self.eof:
                raise ConnectionClosed("connection closed by the server")
            self._fill(deadline)
        msg, _, self.buf = self.buf.partition(b"\0")
        return msg

    def recv(self, timeout=RECV_TIMEOUT):
        raw = self.recv_raw(timeout)
        msg = json.loads(raw.decode("utf-8"))
        if not isinstance(msg, dict):
            raise AssertionError("reply is not a JSON object: %r" % raw)
        return msg

    def wait_closed(self, timeout=RECV_TIMEOUT):
        """True if the server closes the connection within `timeout` without
        sending anything more; raises AssertionError if data arrives."""
        deadline = time.monotonic() + timeout
        while True:
            if self.buf:
                raise AssertionError("unexpected data before close: %r"
                                     % self.buf[:200])
            try:
                self._fill(deadline)
            except ConnectionClosed:
                return True
            except socket.timeout:
                return False

    def nothing_pending(self, wait=0.3):
        """True if no byte arrives within `wait` seconds (and no EOF)."""
        if self.buf:
            return False
        self.sock.settimeout(wait)
        try:
            chunk = self.sock.recv(1 << 16)
        except socket.timeout:
            return True
        self.buf += chunk
        if not chunk:
            self.eof = True
        return False


def connect_when_ready(address, proc, timeout=START_TIMEOUT, probe=True,
                       poll_interval=0.01):
    """Waits until `address` accepts a connection; fails early if `proc`
    exits meanwhile. With `probe`, also waits for the answer to one call
    (org.varlink.service.GetInfo): an accepted connection only shows that
    the socket listens, an answer that the daemon's loop runs."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("berthd exited with status %s before serving"
                               % proc.returncode)
        try:
            c = Conn(address, timeout=2)
        except OSError as e:
            last = e
            time.sleep(poll_interval)
            continue
        try:
            if probe:
                c.call("org.varlink.service.GetInfo")
                reply = c.recv(max(0.1, deadline - time.monotonic()))
                if "error" in reply:
                    raise RuntimeError("readiness probe on %s failed: %r"
                                       % (address, reply))
            return
        except ConnectionClosed:
            # accepted, then hung up on a valid call: that is no start-up
            # delay, so do not retry
            raise RuntimeError("berthd closed the readiness probe "
                               "connection on %s (GetInfo)" % address)
        except OSError as e:
            last = e
            time.sleep(poll_interval)
        finally:
            c.close()
    raise RuntimeError("%s did not serve in %.0f s: %s"
                       % (address, timeout, last))


# --- daemons -------------------------------------------------------------------


class Daemon:
    """One berthd process started by a test."""

    def __init__(self, proc, log_path, addresses):
        self.proc = proc
        self.pid = proc.pid
        self.log_path = log_path
        self.addresses = addresses
        # set once the test itself waited for or stopped the process; a
        # daemon that exits without that has crashed or quit on its own
        self.exit_expected = False

    @property
    def address(self):
        return self.addresses[0]

    def connect(self, address=None, timeout=RECV_TIMEOUT):
        return Conn(address or self.address, timeout)

    def running(self):
        return self.proc.poll() is None

    def wait(self, timeout):
        """The exit status, or None if still running after `timeout`."""
        self.exit_expected = True
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def send_signal(self, sig):
        if self.proc.poll() is None:
            os.kill(self.pid, sig)

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT):
        """Sends `sig` and returns the exit status (None if it hung)."""
        self.send_signal(sig)
        return self.wait(timeout)

    def kill(self):
        """SIGKILL to this daemon's own pid only, if it still runs."""
        if self.proc.poll() is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError as e:
            return "(no log: %s)" % e


class DaemonTest(unittest.TestCase):
    """Base class: a temporary directory per test and berthd helpers.

    Daemons started with `start_daemon` are stopped with SIGTERM at cleanup
    and must exit with status 0 (unless the test already stopped them);
    one that does not stop is killed by pid and the test fails. Their logs
    are printed if the test failed.
    """

    def setUp(self):
        super().setUp()
        self.tmp = tempfile.mkdtemp(prefix="berth-it-")
        _live_dirs.add(self.tmp)
        self.daemons = []
        self._logs = []
        self.addCleanup(self._cleanup)

    # Runs before the temp dir is removed (cleanups are LIFO).
    def _cleanup(self):
        problems = []
        for d in self.daemons:
            if not d.running() and not d.exit_expected:
                problems.append("berthd %d exited unexpectedly with status "
                                "%s" % (d.pid, d.proc.returncode))
            elif d.running():
                rc = d.stop()
                if rc is None:
                    problems.append("berthd %d did not exit after SIGTERM"
                                    % d.pid)
                    d.kill()
                elif rc != 0:
                    problems.append("berthd %d exited with status %d at "
                                    "cleanup" % (d.pid, rc))
            self._logs.append((d.pid, d.log()))
            _live_daemons.discard(d)
        shutil.rmtree(self.tmp, ignore_errors=True)
        _live_dirs.discard(self.tmp)
        if problems:
            self.fail("; ".join(problems))

    def run(self, result=None):
        before = None
        if result is not None:
            before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if result is not None and \
                len(result.failures) + len(result.errors) != before:
            for pid, text in self._logs:
                sys.stderr.write("\n----- berthd %d log (%s) -----\n%s"
                                 "----- end of log -----\n"
                                 % (pid, self.id(), text))
            sys.stderr.flush()
        return out

    # paths
    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    @property
    def root(self):
        return self.path("root")

    @property
    def sock_path(self):
        return self.path("berthd.sock")

    @property
    def default_address(self):
        return "unix:" + self.sock_path

    def berthd_argv(self, addresses=None, extra=(), name="d"):
        """Command line for a daemon whose state lives in <tmp>/<name>."""
        if addresses is None:
            addresses = [self.default_address]
        root = self.root if name == "d" else self.path(name, "root")
        runroot = self.path("run") if name == "d" else self.path(name, "run")
        argv = [ARGS.berthd, "--root", root, "--runroot", runroot,
                "--registries-conf", self.path("registries.conf"),
                "--log-level", "debug"]
        for a in addresses:
            argv += ["--address", a]
        return argv + list(extra)

    def spawn(self, argv, addresses, name="d", wait=True, **popen):
        """Starts a process (berthd, or a wrapper that execs it) whose
        stderr and stdout go to <tmp>/<name>-<n>.log; with `wait`, waits
        until the first of `addresses` accepts connections."""
        log_path = self.path("%s-%d.log" % (name, len(self.daemons)))
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL,
                                    stdout=log, stderr=log, **popen)
        d = Daemon(proc, log_path, addresses)
        self.daemons.append(d)
        _live_daemons.add(d)
        if wait:
            problem = None
            try:
                connect_when_ready(addresses[0], proc)
            except RuntimeError as e:
                problem = str(e)
            if problem:
                self.fail(problem)
        return d

    def start_daemon(self, addresses=None, extra=(), name="d", wait=True):
        if addresses is None:
            addresses = [self.default_address]
        return self.spawn(self.berthd_argv(addresses, extra, name),
                          addresses, name=name, wait=wait)

    # assertions
    def assertStopsCleanly(self, d, sig=signal.SIGTERM):
        rc = d.stop(sig)
        if rc is None:
            d.kill()
            self.fail("berthd did not exit within %.0f s of signal %d"
                      % (STOP_TIMEOUT, sig))
        self.assertEqual(rc, 0, "berthd exit status after signal %d" % sig)

    def assertError(self, reply, name, parameters=None):
        self.assertEqual(reply.get("error"), name, "reply: %r" % (reply,))
        if parameters is not None:
            self.assertEqual(reply.get("parameters"), parameters,
                             "reply: %r" % (reply,))

    def assertOk(self, reply):
        self.assertNotIn("error", reply, "reply: %r" % (reply,))
        self.assertFalse(reply.get("continues", False),
                         "unexpected continues: %r" % (reply,))
        return reply.get("parameters", {})

    def assertVersionReply(self, reply):
        p = self.assertOk(reply)
        self.assertEqual(p.get("remote_api_version"), 1, "reply: %r" % reply)
        return p


def run_tool(argv, timeout=60, **kw):
    """Runs a client program; returns CompletedProcess with text output."""
    return subprocess.run(argv, stdin=subprocess.DEVNULL,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          timeout=timeout, text=True, **kw)


__all__ = [
    "Conn", "ConnectionClosed", "Daemon", "DaemonTest", "main",
    "raise_nofile_limit", "free_tcp_port", "run_tool", "connect_when_ready",
    "RECV_TIMEOUT", "sockaddr",
]
