"""berthd as a service: idle exit, signals, socket files, addresses, socket
activation, many clients, clients that hang up (cases C01, C02, C07)."""

import json
import os
import resource
import signal
import socket
import stat
import threading
import time
import uuid

import harness
from harness import Conn, ConnectionClosed, DaemonTest, free_tcp_port


def setUpModule():
    harness.raise_nofile_limit()


def wait_exit(d, timeout):
    """(status, seconds) of the daemon's exit, status None if it runs on."""
    t0 = time.monotonic()
    rc = d.wait(timeout)
    return rc, time.monotonic() - t0


class IdleTimeoutTest(DaemonTest):
    """C01: idle exit and the stale socket file."""

    def test_idle_exit_after_last_connection(self):
        d = self.start_daemon(extra=["--timeout", "500"])
        c = d.connect()
        try:
            time.sleep(2.0)
            self.assertTrue(d.running(), "exited with a connection open")
            self.assertVersionReply(c.request("io.podman.GetVersion"))
        finally:
            c.close()
        rc, took = wait_exit(d, 10)
        self.assertIsNotNone(rc, "still running 10 s after the last close")
        self.assertEqual(rc, 0)
        # 500 ms timeout plus slack for a loaded machine
        self.assertLess(took, 5.0, "idle exit took %.2f s" % took)
        self.assertFalse(os.path.lexists(self.sock_path),
                         "socket file left behind after idle exit")
        with self.assertRaises(OSError):
            Conn(self.default_address, timeout=2).close()

    def test_idle_exit_with_nobody_connecting(self):
        d = self.start_daemon(extra=["--timeout", "500"])
        rc, _ = wait_exit(d, 10)
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.lexists(self.sock_path))

    def test_no_timeout_stays_up(self):
        d = self.start_daemon()
        time.sleep(1.5)
        self.assertTrue(d.running(), "exited on its own without --timeout")
        with d.connect() as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))
        time.sleep(1.0)
        self.assertTrue(d.running(), "exited on its own without --timeout")

    def test_timeout_zero_stays_up(self):
        d = self.start_daemon(extra=["--timeout", "0"])
        time.sleep(1.0)
        self.assertTrue(d.running())


class SignalTest(DaemonTest):

    def check_signal(self, sig):
        d = self.start_daemon()
        with d.connect() as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))
        self.assertStopsCleanly(d, sig)
        self.assertFalse(os.path.lexists(self.sock_path),
                         "socket file left behind")

    def test_sigterm_idle(self):
        self.check_signal(signal.SIGTERM)

    def test_sigint_idle(self):
        self.check_signal(signal.SIGINT)

    def check_signal_at_startup(self, sig, rounds=20):
        # Once the socket accepts connections, a stop signal must be a clean
        # stop: exit 0 and no socket file left (a service manager may stop
        # the daemon at any moment).
        bad = []
        for i in range(rounds):
            name = "s%d" % i
            addr = "unix:" + self.path(name + ".sock")
            d = self.start_daemon(addresses=[addr], name=name, wait=False)
            harness.connect_when_ready(addr, d.proc, probe=False,
                                       poll_interval=0.0005)
            rc = d.stop(sig)
            if rc is None:
                d.kill()
            if rc != 0 or os.path.lexists(self.path(name + ".sock")):
                bad.append("round %d: status %s, socket file left: %s"
                           % (i, rc, os.path.lexists(self.path(name
                                                               + ".sock"))))
        self.assertEqual(bad, [], "signal %d right after the socket "
                         "accepted connections" % sig)

    def test_sigterm_right_after_listening(self):
        self.check_signal_at_startup(signal.SIGTERM)

    def test_sigint_right_after_listening(self):
        self.check_signal_at_startup(signal.SIGINT)

    def test_sigterm_with_open_connection(self):
        # an idle connection is closed, the daemon exits 0
        d = self.start_daemon()
        c = d.connect()
        self.addCleanup(c.close)
        self.assertVersionReply(c.request("io.podman.GetVersion"))
        self.assertStopsCleanly(d)
        self.assertTrue(c.wait_closed(5), "connection not closed")
        self.assertFalse(os.path.lexists(self.sock_path))

    def test_sigterm_with_pipelined_calls(self):
        # SIGTERM while calls are queued on a connection: the daemon exits
        # 0, and the client sees whole replies (any number of them, in
        # order) and then the close, never a torn message.
        d = self.start_daemon()
        c = d.connect()
        self.addCleanup(c.close)
        self.assertVersionReply(c.request("io.podman.GetVersion"))
        c.send_raw(b'{"method":"io.podman.GetVersion"}\0' * 200)
        self.assertStopsCleanly(d)
        n = 0
        while True:
            try:
                raw = c.recv_raw(10)
            except ConnectionClosed:
                break
            self.assertVersionReply(json.loads(raw))
            n += 1
        self.assertEqual(c.buf, b"", "partial message before the close")
        self.assertLessEqual(n, 200)


class SocketFileTest(DaemonTest):

    def test_stale_socket_file(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind(self.sock_path)
        s.close()  # the file stays: nobody listens on it
        self.assertTrue(stat.S_ISSOCK(os.lstat(self.sock_path).st_mode))
        d = self.start_daemon()
        with d.connect() as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))
        self.assertStopsCleanly(d)
        self.assertFalse(os.path.lexists(self.sock_path))

    def test_second_daemon_on_live_path_fails(self):
        first = self.start_daemon()
        ino = os.lstat(self.sock_path).st_ino
        second = self.start_daemon(name="second", wait=False)
        rc = second.wait(15)
        if rc is None:
            second.kill()
            self.fail("second berthd on a live path kept running")
        self.assertNotEqual(rc, 0, "second berthd on a live path succeeded")
        self.assertEqual(os.lstat(self.sock_path).st_ino, ino,
                         "socket file replaced")
        with first.connect() as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))
        self.assertStopsCleanly(first)
        self.assertFalse(os.path.lexists(self.sock_path))

    def test_non_socket_file_is_not_removed(self):
        with open(self.sock_path, "w") as f:
            f.write("precious")
        d = self.start_daemon(wait=False)
        rc = d.wait(15)
        if rc is None:
            d.kill()
            self.fail("berthd started over a regular file")
        self.assertNotEqual(rc, 0)
        with open(self.sock_path) as f:
            self.assertEqual(f.read(), "precious")

    def test_default_socket_mode(self):
        d = self.start_daemon()
        self.assertEqual(stat.S_IMODE(os.lstat(self.sock_path).st_mode),
                         0o600)

    def test_socket_mode_flag(self):
        d = self.start_daemon(extra=["--socket-mode", "0660"])
        self.assertEqual(stat.S_IMODE(os.lstat(self.sock_path).st_mode),
                         0o660)

    def test_missing_parent_directory_is_created(self):
        path = self.path("a", "b", "io.podman")
        d = self.start_daemon(addresses=["unix:" + path])
        self.assertTrue(stat.S_ISSOCK(os.lstat(path).st_mode))


class AddressTest(DaemonTest):

    def test_several_addresses(self):
        abstract = "unix:@berth-it-%s" % uuid.uuid4().hex
        tcp = "tcp:127.0.0.1:%d" % free_tcp_port()
        extra_path = self.path("extra.sock")
        with_params = "unix:%s;mode=0666" % extra_path
        addrs = [self.default_address, abstract, tcp, with_params]
        d = self.start_daemon(addresses=addrs)
        for a in addrs:
            harness.connect_when_ready(a, d.proc)
            with Conn(a) as c:
                self.assertVersionReply(c.request("io.podman.GetVersion"))
                p = self.assertOk(c.request("org.varlink.service.GetInfo"))
                self.assertIn("io.podman", p["interfaces"])
        self.assertTrue(stat.S_ISSOCK(os.lstat(extra_path).st_mode))
        self.assertEqual([n for n in os.listdir(self.tmp) if ";" in n], [],
                         "parameter text became part of a file name")
        self.assertStopsCleanly(d)
        for p in (self.sock_path, extra_path):
            self.assertFalse(os.path.lexists(p), p + " left behind")
        for a in (abstract, tcp):
            with self.assertRaises(OSError):
                Conn(a, timeout=2).close()

    def test_invalid_address_rejected(self):
        argv = self.berthd_argv(addresses=["bogus:thing"])
        r = harness.run_tool(argv, timeout=15)
        self.assertNotEqual(r.returncode, 0)


class SocketActivationTest(DaemonTest):

    def spawn_activated(self, lsock, env_extra, pid_expr="$$"):
        """berthd with `lsock` as fd 3; LISTEN_PID is set by a shell that
        then execs berthd, so it equals berthd's pid."""
        lfd = lsock.fileno()

        def child():
            os.dup2(lfd, 3)
            os.set_inheritable(3, True)  # also when lfd was 3 already

        env = dict(os.environ)
        env.update({"LISTEN_FDS": "1", "LISTEN_FDNAMES": "varlink"})
        env.update(env_extra)
        fallback = "unix:" + self.path("fallback.sock")
        argv = ["/bin/sh", "-c", 'LISTEN_PID=%s; export LISTEN_PID; '
                'exec "$0" "$@"' % pid_expr] + \
            self.berthd_argv(addresses=[fallback])
        return argv, env, child, fallback

    def test_socket_activation(self):
        path = self.path("activated.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(16)
        argv, env, child, fallback = self.spawn_activated(lsock, {})
        # close_fds=False: fd 3 must survive; Python's own fds are
        # close-on-exec anyway
        d = self.spawn(argv, ["unix:" + path], env=env, preexec_fn=child,
                       close_fds=False)
        lsock.close()  # the daemon holds the only listening copy now
        with d.connect() as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))
            p = self.assertOk(c.request("org.varlink.service.GetInfo"))
            self.assertIn("io.podman", p["interfaces"])
        self.assertFalse(os.path.lexists(fallback),
                         "listened on --address despite activation")
        self.assertStopsCleanly(d)

    def test_activation_for_another_pid_is_ignored(self):
        path = self.path("activated.sock")
        lsock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        lsock.bind(path)
        lsock.listen(16)
        self.addCleanup(lsock.close)
        argv, env, child, fallback = self.spawn_activated(lsock, {},
                                                          pid_expr="1")
        d = self.spawn(argv, [fallback], env=env, preexec_fn=child,
                       close_fds=False)
        with d.connect() as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))
        self.assertStopsCleanly(d)


class ManyClientsTest(DaemonTest):
    """C07: many clients at once."""

    def test_200_concurrent_clients(self):
        d = self.start_daemon()
        n = 200
        barrier = threading.Barrier(n)
        errors = []
        done = []

        def client(i):
            try:
                with Conn(d.address, timeout=60) as c:
                    barrier.wait(60)
                    self.assertVersionReply(c.request("io.podman.GetVersion",
                                                      timeout=60))
                    p = self.assertOk(c.request("io.podman.GetInfo",
                                                timeout=60))
                    self.assertIn("host", p["info"])
                done.append(i)
            except BaseException as e:  # reported below
                errors.append("client %d: %r" % (i, e))
                barrier.abort()

        threads = [threading.Thread(target=client, args=(i,))
                   for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(errors, [])
        self.assertEqual(len(done), n)

    def test_1000_idle_connections(self):
        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < 1100:
            self.fail("RLIMIT_NOFILE hard limit %d is below 1100" % soft)
        d = self.start_daemon()
        conns = []
        try:
            for _ in range(1000):
                conns.append(Conn(d.address, timeout=60))
            time.sleep(0.5)
            for c in conns:
                c.send_raw(b'{"method":"io.podman.GetVersion"}\0')
            for c in conns:
                self.assertVersionReply(c.recv(60))
        finally:
            for c in conns:
                c.close()
        with d.connect() as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))


class HangUpTest(DaemonTest):
    """C02-style: clients that hang up right after calling."""

    def hang_ups(self, d):
        for i in range(30):
            c = Conn(d.address)
            c.send_raw(b'{"method":"io.podman.GetInfo"}\0')
            c.close()
            # a batch of pipelined calls, then gone
            c = Conn(d.address)
            c.send_raw(b'{"method":"io.podman.GetVersion"}\0' * 50 +
                       b'{"method":"org.varlink.service.GetInterface'
                       b'Description","parameters":{"interface":'
                       b'"io.podman"}}\0' * 20)
            c.close()
            # hang up with a reset (SO_LINGER 0)
            c = Conn(d.address)
            c.send_raw(b'{"method":"io.podman.GetVersion"}\0')
            c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                              b"\1\0\0\0\0\0\0\0")
            c.close()
            # a partial message, then gone
            c = Conn(d.address)
            c.send_raw(b'{"method":"io.podman.Get')
            c.close()

    def test_hang_up_does_not_disturb_others(self):
        d = self.start_daemon()
        other = d.connect()
        self.addCleanup(other.close)
        self.assertVersionReply(other.request("io.podman.GetVersion"))
        self.hang_ups(d)
        self.assertVersionReply(other.request("io.podman.GetVersion"))
        self.assertTrue(d.running())
        with d.connect() as c:
            self.assertOk(c.request("io.podman.GetInfo"))

    def test_connections_drop_to_zero_after_hang_ups(self):
        # With an idle timeout the daemon exits only once every session is
        # gone: proof that hung-up connections were all dropped.
        d = self.start_daemon(extra=["--timeout", "1000"])
        other = d.connect()
        self.hang_ups(d)
        self.assertVersionReply(other.request("io.podman.GetVersion"))
        time.sleep(1.5)
        self.assertTrue(d.running(), "exited with a connection open")
        other.close()
        rc, _ = wait_exit(d, 15)
        self.assertIsNotNone(rc, "still running: hung-up sessions linger")
        self.assertEqual(rc, 0)
        self.assertFalse(os.path.lexists(self.sock_path))


if __name__ == "__main__":
    harness.main()
