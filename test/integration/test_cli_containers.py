"""The `berth` container verbs (issue 4, section 6): run, create, start,
stop, kill, restart, pause, unpause, wait, rm, ps, inspect, mount, umount,
diff, export and logs.

Three parts:
- FlagTest: option parsing and usage errors (exit status 125 for run and
  create, as podman's); no server is contacted.
- WireTest: the CLI against a scripted io.podman server in this process:
  what each verb sends and how it shows the replies (log streams, exit
  codes, ps table, export through ReceiveFile).
- ContainerTest: the CLI against the real berthd with real containers of
  the busybox fixture image (loaded from its docker-archive).
"""

import fcntl
import json
import os
import re
import socket
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

CACHE = os.environ.get("BERTH_TEST_FIXTURES", "/var/tmp/berth-test-fixtures")
TIMEOUT = 60.0
IMAGE = "localhost/busybox:latest"  # the name inside busybox-docker.tar

ID1 = "a1" * 32
ID2 = "b2" * 32


def berth(address, *args, timeout=TIMEOUT, env=None):
    return run_tool([harness.ARGS.berth, "--address", address] + list(args),
                    timeout=timeout, env=env)


# =============================================================================
# Option parsing: nothing reaches a server.


class FlagTest(DaemonTest):
    """Usage errors are found before connecting: the address points
    nowhere, so any attempt to connect would fail differently (status 1)."""

    def berth(self, *args):
        return berth("unix:" + self.path("nothing-here.sock"), *args)

    def assertUsage(self, args, status, *fragments):
        p = self.berth(*args)
        self.assertEqual(p.returncode, status, "%s: %s" % (args, p.stderr))
        for f in fragments:
            self.assertIn(f, p.stderr, args)
        self.assertEqual(p.stdout, "", args)

    def test_run_and_create_usage_errors_are_125(self):
        cases = [
            (["run"], "needs an IMAGE"),
            (["create", "-e", "A=1"], "needs an IMAGE"),
            (["run", "--memory", "lots", "img"], "--memory", "lots"),
            (["run", "-m", "-5m", "img"], "--memory"),
            (["run", "-m12q", "img"], "--memory", "12q"),
            (["run", "--memory-swap", "1g", "img"], "needs --memory"),
            (["run", "-m", "1g", "--memory-swap", "512m", "img"],
             "must not be smaller"),
            (["run", "--stop-signal", "NOPE", "img"], "--stop-signal", "NOPE"),
            (["run", "--stop-signal", "0", "img"], "--stop-signal"),
            (["run", "--stop-signal", "65", "img"], "--stop-signal"),
            (["run", "--stop-signal", "RTMIN+31", "img"], "--stop-signal"),
            (["run", "--stop-signal"], "needs a value"),
            (["run", "--bogus", "img"], "unknown option: --bogus"),
            (["run", "-dq", "img"], "unknown option: -q"),
            (["run", "--rm=perhaps", "img"], "true or false"),
            (["run", "--name", "-x", "img"], "--name"),
            (["run", "-v", "/only", "img"], "--volume"),
            (["run", "-v", "/a:relative", "img"], "--volume"),
            (["run", "-v", "/a:/b:rx", "img"], "--volume"),
            (["run", "-w", "relative", "img"], "--workdir"),
            (["run", "--cpus", "0", "img"], "--cpus"),
            (["run", "--cpus", "two", "img"], "--cpus"),
            (["run", "--cpu-shares", "1", "img"], "--cpu-shares"),
            (["run", "--cpuset-cpus", "3-1", "img"], "--cpuset-cpus"),
            (["run", "--pids-limit", "x", "img"], "--pids-limit"),
            (["run", "--blkio-weight", "5", "img"], "--blkio-weight"),
            (["run", "--memory-swappiness", "101", "img"], "--memory-swappiness"),
            (["run", "--oom-score-adj", "1001", "img"], "--oom-score-adj"),
            (["run", "--ulimit", "nofile=10:5", "img"], "--ulimit"),
            (["run", "--ulimit", "bogus=1", "img"], "--ulimit"),
            (["run", "--dns", "1.2.3", "img"], "--dns"),
            (["run", "--add-host", "nohostip", "img"], "--add-host"),
            (["run", "--network", "galaxy", "img"], "--network"),
            (["run", "--pid", "sideways", "img"], "--pid"),
            (["run", "--device", "relative", "img"], "--device"),
            (["run", "--device-read-bps", "/dev/sda", "img"], "--device-read-bps"),
            (["run", "--device-write-iops", "/dev/sda:x", "img"],
             "--device-write-iops"),
            (["run", "--tmpfs", "tmp", "img"], "--tmpfs"),
            (["run", "--sysctl", "novalue", "img"], "--sysctl"),
            (["run", "--log-opt", "max-size=huge", "img"], "--log-opt"),
            (["run", "--entrypoint", "[1,2]", "img"], "--entrypoint"),
            (["run", "--env-file", "/nonexistent/env", "img"], "/nonexistent/env"),
            (["create", "-d", "img"], "no --detach"),
            (["start", "-a", "one", "two"], "one container"),
        ]
        for args, *fragments in cases:
            with self.subTest(args=args):
                self.assertUsage(args, 125, *fragments)

    def test_other_verbs_usage_errors_are_1(self):
        cases = [
            (["start"], "needs a container"),
            (["stop"], "needs a container"),
            (["stop", "-t", "soon", "c"], "invalid timeout"),
            (["restart", "-t"], "needs a number"),
            (["kill", "-s", "BOGUS", "c"], "invalid signal"),
            (["kill", "-s", "99", "c"], "invalid signal"),
            (["kill"], "needs a container"),
            (["pause"], "needs a container"),
            (["unpause", "-x", "c"], "unknown option"),
            (["wait"], "needs a container"),
            (["rm", "--bogus", "c"], "unknown option"),
            (["rm"], "needs a container"),
            (["ps", "--bogus"], "unknown option for ps"),
            (["ps", "--format", "table"], "unknown option for ps"),
            (["inspect"], "needs a container"),
            (["umount"], "needs a container"),
            (["diff"], "needs one container"),
            (["diff", "a", "b"], "needs one container"),
            (["export", "a", "b"], "needs one container"),
            (["logs"], "needs one container"),
        ]
        for args, *fragments in cases:
            with self.subTest(args=args):
                self.assertUsage(args, 1, *fragments)

    def test_export_refuses_a_terminal_only(self):
        # stdout is a pipe here, so the refusal must not trigger; the
        # connection then fails (status 1, no usage hint).
        p = self.berth("export", "c")
        self.assertEqual(p.returncode, 1)
        self.assertNotIn("terminal", p.stderr)

    def test_valid_options_reach_the_connection(self):
        """Everything accepted by the parser fails only at connecting."""
        p = self.berth("run", "-d", "--rm", "-e", "A=1", "--env=B=2", "-l",
                       "k=v", "-v", "/src:/dst:ro,z", "--name", "web.1",
                       "-w", "/srv", "-u", "1000:1000", "-h", "box", "-t",
                       "--entrypoint", '["/bin/sh","-c"]', "--init",
                       "--read-only", "--privileged", "--cap-add", "NET_ADMIN",
                       "--cap-drop", "ALL", "--device", "/dev/null:/dev/n:rw",
                       "--dns", "10.0.0.1", "--dns", "::1", "--dns-search",
                       "example.org", "--dns-option", "ndots:2", "--add-host",
                       "db:10.0.0.2", "--tmpfs", "/run:size=1m", "--sysctl",
                       "net.ipv4.ip_forward=1", "--ulimit", "nofile=100:200",
                       "--network", "container:abc", "--pid", "host", "--ipc",
                       "shareable", "--uts", "host", "--stop-signal",
                       "SIGRTMIN+3", "--stop-timeout", "3", "--group-add",
                       "wheel", "--log-opt", "max-size=10m", "-m", "1.5g",
                       "--memory-reservation", "512MiB", "--memory-swap", "-1",
                       "--memory-swappiness", "0", "--kernel-memory", "64m",
                       "--cpus", "1.5", "--cpu-shares", "512", "--cpu-period",
                       "100000", "--cpu-quota", "50000", "--cpuset-cpus",
                       "0-1,3", "--cpuset-mems", "0", "--pids-limit", "-1",
                       "--blkio-weight", "500", "--device-read-bps",
                       "/dev/sda:1mb", "--device-write-bps", "/dev/sda:2m",
                       "--device-read-iops", "/dev/sda:100",
                       "--device-write-iops", "/dev/sda:200",
                       "--oom-kill-disable", "--oom-score-adj", "-500",
                       "--shm-size", "64m", "img", "sh", "-c", "--memory x")
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertNotIn("Try 'berth help'", p.stderr)


# =============================================================================
# A scripted io.podman server.


def ok(params, continues=False):
    r = {"parameters": params}
    if continues:
        r["continues"] = True
    return r


def err(name, params):
    return {"error": name, "parameters": params}


def not_implemented(method):
    return err("org.varlink.service.MethodNotImplemented",
               {"method": "io.podman." + method})


class FakePodman:
    """Serves io.podman on a unix socket from a thread. `handlers` maps a
    bare method name to f(params, call) returning a list of replies, or
    (replies, raw bytes to send after the last one) for upgraded calls.
    Every call is recorded in `calls` as (method, params, call message)."""

    def __init__(self, path):
        self.path = path
        self.handlers = {}
        self.calls = []
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.bind(path)
        self.sock.listen(16)
        self.threads = []
        t = threading.Thread(target=self._accept, daemon=True)
        t.start()

    @property
    def address(self):
        return "unix:" + self.path

    def on(self, method, handler):
        self.handlers[method] = handler

    def reply(self, method, *replies):
        self.handlers[method] = lambda params, call: list(replies)

    def called(self, method):
        with self.lock:
            return [(p, c) for m, p, c in self.calls if m == method]

    def methods(self):
        with self.lock:
            return [m for m, _, _ in self.calls]

    def close(self):
        self.sock.close()

    def _accept(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            t.start()

    def _serve(self, conn):
        buf = b""
        with conn:
            while True:
                while b"\0" not in buf:
                    try:
                        chunk = conn.recv(65536)
                    except OSError:
                        return
                    if not chunk:
                        return
                    buf += chunk
                raw, _, buf = buf.partition(b"\0")
                call = json.loads(raw)
                method = call["method"].rsplit(".", 1)[-1]
                params = call.get("parameters", {})
                with self.lock:
                    self.calls.append((method, params, call))
                handler = self.handlers.get(method)
                out = handler(params, call) if handler else [not_implemented(method)]
                extra = b""
                if isinstance(out, tuple):
                    out, extra = out
                try:
                    for r in out:
                        conn.sendall(json.dumps(r).encode() + b"\0")
                    conn.sendall(extra)
                except OSError:
                    return


def log_line(stream, tag, text):
    return "2024-01-01T00:00:00.000000000+00:00 %s %s %s\n" % (stream, tag, text)


class WireTest(DaemonTest):

    def setUp(self):
        super().setUp()
        self.srv = FakePodman(self.path("fake.sock"))
        self.addCleanup(self.srv.close)

    def berth(self, *args):
        return berth(self.srv.address, *args)

    def script_run(self, logs, exitcode=0):
        """Create, start, a `more` log stream of `logs` (a list of reply
        line lists) and WaitContainer answering `exitcode`."""
        self.srv.reply("CreateContainer", ok({"container": ID1}))
        self.srv.reply("StartContainer", ok({"container": ID1}))

        def logs_handler(params, call):
            if not call.get("more"):
                return [ok({"container": [l for part in logs for l in part]})]
            return [ok({"container": part}, True) for part in logs[:-1]] + \
                [ok({"container": logs[-1]})]
        self.srv.on("GetContainerLogs", logs_handler)
        self.srv.reply("WaitContainer", ok({"exitcode": exitcode}))

    def test_run_sends_image_command_and_args(self):
        self.srv.reply("CreateContainer", ok({"container": ID1}))
        self.srv.reply("StartContainer", ok({"container": ID1}))
        p = self.berth("run", "-d", "--rm", "-e", "A=1", "-eB=2", "-l", "k=v",
                       "-v", "/src:/dst:ro", "--name", "web", "-m", "512m",
                       "--memory-swap", "1g", "--stop-signal", "SIGRTMIN+3",
                       "--cpus", "1.5", "--ulimit", "nofile=10:20", "-t",
                       "--device-read-bps", "/dev/sda:1mb", "--network",
                       "none", "busybox", "sh", "-c", "echo hi", "-d")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, ID1 + "\n")
        (params, call), = self.srv.called("CreateContainer")
        c = params["create"]
        self.assertEqual(c["image"], "busybox")
        self.assertEqual(c["command"], ["sh", "-c", "echo hi", "-d"])
        self.assertEqual(c["args"], ["busybox", "sh", "-c", "echo hi", "-d"])
        self.assertEqual(c["env"], {"A": "1", "B": "2"})
        self.assertEqual(c["labels"], {"k": "v"})
        self.assertEqual(c["volumes"], ["/src:/dst:ro"])
        self.assertEqual(c["name"], "web")
        self.assertEqual(c["stop_signal"], 37)
        self.assertEqual(c["stop_timeout"], 10)
        self.assertTrue(c["rm"] and c["detach"] and c["tty"])
        self.assertFalse(c["interactive"])
        self.assertEqual(c["net_mode"], "none")
        res = c["resources"]
        self.assertEqual(res["memory"], 512 << 20)
        self.assertEqual(res["memory_swap"], 1 << 30)
        self.assertEqual(res["memory_swappiness"], -1)
        self.assertEqual(res["cpus"], 1.5)
        self.assertEqual(res["ulimit"], ["nofile=10:20"])
        self.assertEqual(res["device_read_bps"], ["/dev/sda:1mb"])
        self.assertEqual([p["name"] for p, _ in self.srv.called("StartContainer")],
                         [ID1])
        self.assertNotIn("WaitContainer", self.srv.methods())

    def test_env_file_and_inherited_variables(self):
        self.srv.reply("CreateContainer", ok({"container": ID1}))
        env_file = self.path("env")
        with open(env_file, "w") as f:
            f.write("# comment\n\n  SPACED=yes\nEMPTY=\nFROM_FILE=a=b\nINHERITED\n")
        env = dict(os.environ, INHERITED="from berth", PLAIN="also")
        env.pop("NOT_SET", None)
        p = berth(self.srv.address, "create", "--env-file", env_file, "-e",
                  "PLAIN", "-e", "NOT_SET", "-e", "FROM_FILE=override", "img",
                  env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(self.srv.called("CreateContainer")[-1][0]["create"]["env"],
                         {"SPACED": "yes", "EMPTY": "", "FROM_FILE": "override",
                          "INHERITED": "from berth", "PLAIN": "also"})

    def test_signal_names_and_numbers(self):
        self.srv.reply("CreateContainer", ok({"container": ID1}))
        for given, number in [("TERM", 15), ("sigkill", 9), ("SIGUSR1", 10),
                              ("RTMIN", 34), ("RTMAX-2", 62), ("9", 9),
                              ("64", 64)]:
            p = self.berth("create", "--stop-signal", given, "img")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(self.srv.called("CreateContainer")[-1][0]["create"]
                             ["stop_signal"], number, given)

    def test_entrypoint_forms(self):
        self.srv.reply("CreateContainer", ok({"container": ID1}))
        for given, want in [("/bin/sh", ["/bin/sh"]), ("", [""]),
                            ('["/bin/sh","-c"]', ["/bin/sh", "-c"])]:
            p = self.berth("create", "--entrypoint", given, "img")
            self.assertEqual(p.returncode, 0, p.stderr)
            self.assertEqual(self.srv.called("CreateContainer")[-1][0]["create"]
                             ["entrypoint"], want)

    def test_attached_run_streams_output_and_exits_with_code(self):
        self.script_run([[log_line("stdout", "P", "abc")],
                         [log_line("stdout", "F", "def"),
                          log_line("stderr", "F", "oops")],
                         [log_line("stdout", "F", ""),
                          log_line("stdout", "F", "  spaced  ")]], exitcode=3)
        p = self.berth("run", "busybox", "sh", "-c", "echo hi; exit 3")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertEqual(p.stdout, "abcdef\n\n  spaced  \n")
        self.assertEqual(p.stderr, "oops\n")
        (params, call), _ = self.srv.called("GetContainerLogs")
        self.assertEqual(params, {"name": ID1})
        self.assertTrue(call.get("more"))
        # after the exit, the log once more: nothing new, nothing repeated
        # The follow is in place before the start; after the exit, the log
        # once more: nothing new, nothing repeated.
        self.assertEqual(self.srv.methods(), ["CreateContainer", "GetContainerLogs",
                                              "StartContainer", "WaitContainer",
                                              "GetContainerLogs"])

    def test_attached_run_falls_back_when_logs_cannot_stream(self):
        self.script_run([[log_line("stdout", "F", "one"),
                          log_line("stdout", "F", "two")]], exitcode=0)
        self.srv.on("GetContainerLogs", lambda params, call: [
            not_implemented("GetContainerLogs")] if call.get("more") else [
            ok({"container": [log_line("stdout", "F", "one"),
                              log_line("stdout", "F", "two")]})])
        p = self.berth("run", "busybox")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "one\ntwo\n")
        self.assertEqual(self.srv.methods(),
                         ["CreateContainer", "GetContainerLogs", "StartContainer",
                          "WaitContainer", "GetContainerLogs"])

    def test_server_that_does_not_follow(self):
        """A `more` call answered by one final reply while the container
        still runs: what it wrote afterwards is fetched after the exit."""
        self.script_run([[]], exitcode=0)
        lines = [log_line("stdout", "F", "early"), log_line("stdout", "F", "late")]
        answers = iter([[ok({"container": lines[:1]})], [ok({"container": lines})]])
        self.srv.on("GetContainerLogs", lambda params, call: next(answers))
        p = self.berth("run", "busybox")
        self.assertEqual((p.returncode, p.stdout), (0, "early\nlate\n"), p.stderr)

    def test_removed_container_shows_no_error_after_exit(self):
        """run --rm: the daemon may remove the container as soon as it
        exits; its log being gone then is no error."""
        self.script_run([[log_line("stdout", "F", "bye")]], exitcode=0)
        answers = iter([[ok({"container": [log_line("stdout", "F", "bye")]})],
                        [err("io.podman.ContainerNotFound",
                             {"id": ID1, "reason": "no such container"})]])
        self.srv.on("GetContainerLogs", lambda params, call: next(answers))
        p = self.berth("run", "--rm", "busybox")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "bye\n", ""))

    def test_stream_ended_by_error_prints_the_rest_once(self):
        """podman's follow ends with an error once the container stopped;
        what came after the last streamed line is fetched once more."""
        self.script_run([[]], exitcode=7)
        lines = [log_line("stdout", "F", "first"), log_line("stdout", "F", "last")]
        self.srv.on("GetContainerLogs", lambda params, call: [
            ok({"container": lines[:1]}, True),
            err("io.podman.ErrorOccurred", {"reason": ID1 + " is no longer running"})]
            if call.get("more") else [ok({"container": lines})])
        p = self.berth("run", "busybox")
        self.assertEqual(p.returncode, 7, p.stderr)
        self.assertEqual(p.stdout, "first\nlast\n")

    def test_start_failures_map_to_126_127_125(self):
        for reason, status in [
                ('exec: "/etc": is a directory', 126),
                ("open /bin/x: permission denied", 126),
                ('exec: "/nonexistent": stat /nonexistent: no such file or directory',
                 127),
                ('executable file "foo" not found in $PATH', 127),
                ("cgroup setup failed: device or resource busy", 125)]:
            self.srv.calls.clear()
            self.srv.reply("CreateContainer", ok({"container": ID1}))
            self.srv.reply("StartContainer",
                           err("io.podman.ErrorOccurred", {"reason": reason}))
            self.srv.reply("RemoveContainer", ok({"container": ID1}))
            p = self.berth("run", "--rm", "busybox", "/etc")
            self.assertEqual(p.returncode, status, reason)
            self.assertEqual(p.stderr, "Error: %s\n" % reason)
            # --rm: the daemon removes at exit, but this one never ran
            (params, _), = self.srv.called("RemoveContainer")
            self.assertEqual(params, {"name": ID1, "force": True,
                                      "removeVolumes": False})

    def test_create_failure_is_125(self):
        self.srv.reply("CreateContainer", err(
            "io.podman.ErrorOccurred", {"reason": "unable to find 'nosuch' in local storage"}))
        p = self.berth("run", "nosuch")
        self.assertEqual(p.returncode, 125)
        self.assertEqual(p.stderr, "Error: unable to find 'nosuch' in local storage\n")
        p = self.berth("create", "nosuch")
        self.assertEqual(p.returncode, 125)
        self.srv.handlers.clear()
        p = self.berth("run", "-d", "x")
        self.assertEqual(p.returncode, 125, "stdout %r stderr %r calls %r"
                         % (p.stdout, p.stderr, self.srv.methods()))
        self.assertIn("CreateContainer is not implemented", p.stderr)

    def test_start_attach_and_plain_start(self):
        self.script_run([[log_line("stdout", "F", "again")]], exitcode=4)
        p = self.berth("start", "-a", "web")
        self.assertEqual((p.returncode, p.stdout), (4, "again\n"), p.stderr)
        self.assertEqual([c[0]["name"] for c in
                          self.srv.called("WaitContainer")], ["web"])
        p = self.berth("start", "web", "db")
        self.assertEqual((p.returncode, p.stdout), (0, "web\ndb\n"), p.stderr)
        self.srv.reply("StartContainer", err("io.podman.ContainerNotFound",
                                             {"id": "nope", "reason": "no such container"}))
        p = self.berth("start", "nope")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stderr, "Error: no such container\n")

    def test_stop_restart_kill_pause_rm_send_and_print(self):
        for m in ("StopContainer", "RestartContainer", "KillContainer",
                  "PauseContainer", "UnpauseContainer", "RemoveContainer"):
            self.srv.reply(m, ok({"container": ID1}))
        cases = [
            # Without -t: the container's own stop timeout.
            (["stop", "web"], "StopContainer", {"name": "web", "timeout": -1}),
            (["stop", "-t", "3", "web"], "StopContainer", {"name": "web", "timeout": 3}),
            (["restart", "--time=0", "web"], "RestartContainer",
             {"name": "web", "timeout": 0}),
            (["kill", "web"], "KillContainer", {"name": "web", "signal": 9}),
            (["kill", "-s", "HUP", "web"], "KillContainer", {"name": "web", "signal": 1}),
            (["kill", "--signal=SIGRTMIN+3", "web"], "KillContainer",
             {"name": "web", "signal": 37}),
            (["pause", "web"], "PauseContainer", {"name": "web"}),
            (["unpause", "web"], "UnpauseContainer", {"name": "web"}),
            (["rm", "web"], "RemoveContainer",
             {"name": "web", "force": False, "removeVolumes": False}),
            (["rm", "-f", "web"], "RemoveContainer",
             {"name": "web", "force": True, "removeVolumes": False}),
        ]
        for args, method, want in cases:
            with self.subTest(args=args):
                p = self.berth(*args)
                self.assertEqual(p.returncode, 0, p.stderr)
                self.assertEqual(p.stdout, ID1 + "\n")
                self.assertEqual(self.srv.called(method)[-1][0], want)

    def test_errors_of_other_verbs_exit_2_and_continue(self):
        self.srv.on("StopContainer", lambda params, call: [
            ok({"container": ID1})] if params["name"] == "good" else [
            err("io.podman.ContainerNotFound",
                {"id": params["name"], "reason": "no container with name or ID "
                 + params["name"] + " found: no such container"})])
        p = self.berth("stop", "bad", "good")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(p.stdout, ID1 + "\n")
        self.assertEqual(p.stderr, "Error: no container with name or ID bad "
                                   "found: no such container\n")

    def test_wait_prints_each_code(self):
        codes = {"a": 0, "b": 137}
        self.srv.on("WaitContainer", lambda params, call: [
            ok({"exitcode": codes[params["name"]]})])
        p = self.berth("wait", "a", "b")
        self.assertEqual((p.returncode, p.stdout), (0, "0\n137\n"), p.stderr)
        self.assertTrue(all(c[0]["interval"] > 0 for c in self.srv.called("WaitContainer")))

    def container(self, cid, name, status, created):
        return {"id": cid, "image": "localhost/busybox:latest", "imageid": "f" * 64,
                "command": ["sh", "-c", "while true; do sleep 1; done"],
                "createdat": created, "runningfor": "1s", "status": status,
                "ports": [], "rootfssize": 0, "rwsize": 0, "names": name,
                "labels": {}, "mounts": [], "containerrunning": status == "running",
                "namespaces": {"user": "", "uts": "", "pidns": "", "pid": "0",
                               "cgroup": "", "net": "", "mnt": "", "ipc": ""}}

    def test_ps_table_json_and_quiet(self):
        now = time.time()
        fmt = "%Y-%m-%dT%H:%M:%SZ"
        created = time.strftime(fmt, time.gmtime(now - 120))
        ctrs = [self.container(ID1, "web", "running", created),
                self.container(ID2, "job", "exited", created),
                self.container("c3" * 32, "new", "configured", created)]
        self.srv.reply("ListContainers", ok({"containers": ctrs}))
        states = {ID1: {"Status": "running", "ExitCode": 0,
                        "StartedAt": time.strftime(fmt, time.gmtime(now - 30)),
                        "FinishedAt": "0001-01-01T00:00:00Z"},
                  ID2: {"Status": "exited", "ExitCode": 3,
                        "StartedAt": time.strftime(fmt, time.gmtime(now - 100)),
                        "FinishedAt": time.strftime("%Y-%m-%dT%H:%M:%S.123456789+00:00",
                                                    time.gmtime(now - 10 * 3600))}}
        self.srv.on("InspectContainer", lambda params, call: [
            ok({"container": json.dumps({"Id": params["name"],
                                         "State": states[params["name"]]})})])
        p = self.berth("ps")
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.splitlines()
        self.assertEqual(len(lines), 2, p.stdout)
        self.assertEqual(re.split(r"\s{2,}", lines[0]),
                         ["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "NAMES"])
        row = re.split(r"\s{2,}", lines[1])
        self.assertEqual(row[0], ID1[:12])
        self.assertEqual(row[1], "localhost/busybox:latest")
        self.assertEqual(row[2], "sh -c while true;...")
        self.assertEqual(row[3], "2 minutes ago")
        self.assertRegex(row[4], r"^Up 3\d seconds$")
        self.assertEqual(row[5], "web")
        # the header's columns line up with the rows
        self.assertEqual(lines[0].index("NAMES"), lines[1].index("web"))

        p = self.berth("ps", "-a", "--no-trunc")
        rows = [re.split(r"\s{2,}", l) for l in p.stdout.splitlines()[1:]]
        self.assertEqual([r[0] for r in rows], [ID1, ID2, "c3" * 32])
        self.assertEqual(rows[0][2], "sh -c while true; do sleep 1; done")
        self.assertEqual(rows[1][4], "Exited (3) 10 hours ago")
        self.assertEqual(rows[2][4], "Created")

        p = self.berth("ps", "-aq")
        self.assertEqual(p.stdout.split(), [ID1[:12], ID2[:12], "c3" * 6])
        p = self.berth("ps", "-q", "--no-trunc")
        self.assertEqual(p.stdout.split(), [ID1])
        p = self.berth("ps", "-a", "--format", "json")
        self.assertEqual(json.loads(p.stdout), ctrs)
        p = self.berth("ps", "--format=json")
        self.assertEqual(json.loads(p.stdout), ctrs[:1])

    def test_ps_empty_list(self):
        self.srv.reply("ListContainers", ok({"containers": None}))
        p = self.berth("ps", "-a")
        self.assertEqual(p.stdout.splitlines(),
                         ["CONTAINER ID   IMAGE   COMMAND   CREATED   STATUS   NAMES"])
        p = self.berth("ps", "--format", "json")
        self.assertEqual(json.loads(p.stdout), [])

    def test_inspect_prints_an_array_and_falls_back_to_images(self):
        data = {"Id": ID1, "State": {"Status": "running", "Pid": 5},
                "Config": {"Env": ["A=1"], "Labels": None}, "Mounts": []}
        def inspect_container(params, call):
            if params["name"] == "web":
                return [ok({"container": json.dumps(data)})]
            return [err("io.podman.ContainerNotFound",
                        {"id": params["name"], "reason": "no such container"})]

        def inspect_image(params, call):
            if params["name"] == "busybox":
                return [ok({"image": json.dumps({"Id": "img"})})]
            return [err("io.podman.ImageNotFound",
                        {"id": params["name"], "reason": "no such image"})]
        self.srv.on("InspectContainer", inspect_container)
        self.srv.on("InspectImage", inspect_image)
        p = self.berth("inspect", "web", "busybox")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout), [data, {"Id": "img"}])
        self.assertIn('\n    {\n        "Id": ', p.stdout)
        p = self.berth("inspect", "web", "ghost")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(json.loads(p.stdout), [data])
        self.assertEqual(p.stderr, "Error: no such container\n")

    def test_mount_umount_diff_logs(self):
        self.srv.reply("MountContainer", ok({"path": "/var/lib/berth/x/merged"}))
        self.srv.reply("ListContainerMounts", ok({"mounts": {ID1: "/m/1", ID2: "/m/2"}}))
        self.srv.reply("UnmountContainer", ok({}))
        self.srv.reply("ListContainerChanges", ok({"container": {
            "changed": ["/etc", "/etc/passwd"], "added": ["/newfile", "/etc/new"],
            "deleted": ["/etc/hostname"]}}))
        self.srv.reply("GetContainerLogs", ok({"container": [
            log_line("stdout", "F", "out"), log_line("stderr", "P", "er"),
            log_line("stderr", "F", "r")]}))
        p = self.berth("mount", "web")
        self.assertEqual(p.stdout, "/var/lib/berth/x/merged\n")
        p = self.berth("mount")
        self.assertEqual(sorted(p.stdout.splitlines()),
                         [ID1[:12] + " /m/1", ID2[:12] + " /m/2"])
        p = self.berth("umount", "web")
        self.assertEqual((p.returncode, p.stdout), (0, "web\n"))
        self.assertEqual(self.srv.called("UnmountContainer")[-1][0],
                         {"name": "web", "force": False})
        p = self.berth("diff", "web")
        self.assertEqual(p.stdout.splitlines(), [
            "C /etc", "D /etc/hostname", "A /etc/new", "C /etc/passwd", "A /newfile"])
        p = self.berth("diff", "--format", "json", "web")
        self.assertEqual(json.loads(p.stdout)["added"], ["/newfile", "/etc/new"])
        p = self.berth("logs", "web")
        self.assertEqual((p.returncode, p.stdout, p.stderr), (0, "out\n", "err\n"))
        self.assertFalse(self.srv.called("GetContainerLogs")[-1][1].get("more"))

    def test_export_receives_the_file(self):
        payload = bytes(range(256)) * 5000
        self.srv.reply("ExportContainer", ok({"tarfile": "/srv/tmp/export.tar"}))
        self.srv.on("ReceiveFile", lambda params, call: (
            [ok({"len": len(payload)})], payload))
        out = self.path("out.tar")
        p = self.berth("export", "-o", out, "web")
        self.assertEqual(p.returncode, 0, p.stderr)
        with open(out, "rb") as f:
            self.assertEqual(f.read(), payload)
        self.assertEqual(self.srv.called("ExportContainer")[0][0],
                         {"name": "web", "path": ""})
        params, call = self.srv.called("ReceiveFile")[0]
        self.assertEqual(params, {"path": "/srv/tmp/export.tar", "delete": True})
        self.assertTrue(call.get("upgrade"))
        self.assertEqual([f for f in os.listdir(self.tmp) if f.startswith(".berth")], [])
        # to standard output (a pipe here)
        p = subprocess.run([harness.ARGS.berth, "--address", self.srv.address,
                            "export", "web"], capture_output=True, timeout=TIMEOUT)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, payload)


# =============================================================================
# The real daemon with real containers.


def build_fixtures():
    os.makedirs(CACHE, exist_ok=True)
    with open(os.path.join(CACHE, ".build-lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # suites running at once share the cache
        images.build(CACHE, quiet=True)
    return os.path.join(CACHE, "busybox-docker.tar")


ARCHIVE = None


def setUpModule():
    harness.raise_nofile_limit()


class ContainerTest(DaemonTest):
    """A berthd per test with the busybox image loaded."""

    def setUp(self):
        global ARCHIVE
        super().setUp()
        self.d = self.start_daemon()
        if ARCHIVE is None:
            ARCHIVE = build_fixtures()
        p = self.berth("load", "-q", "-i", ARCHIVE)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.names = []
        self.addCleanup(self.remove_containers)

    def remove_containers(self):
        # runs before the daemon is stopped: no container outlives the test
        p = self.berth("ps", "-a", "-q", "--no-trunc")
        for cid in p.stdout.split():
            self.berth("rm", "-f", cid)

    def berth(self, *args, timeout=TIMEOUT):
        return berth(self.d.address, *args, timeout=timeout)

    def ok(self, *args):
        p = self.berth(*args)
        self.assertEqual(p.returncode, 0, "berth %s: %s" % (" ".join(args), p.stderr))
        return p.stdout

    def ps(self, *args):
        return json.loads(self.ok("ps", "--format", "json", *args))

    def wait_until(self, what, condition, timeout=TIMEOUT):
        """Polls `condition` until true; fails naming `what` otherwise."""
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                self.fail("still not the case after %.0f s: %s" % (timeout, what))
            time.sleep(0.1)

    def test_run_prints_output_and_returns_the_exit_code(self):
        p = self.berth("run", "--name", "c1", IMAGE, "sh", "-c",
                       "echo hi; echo oops >&2; exit 3")
        self.assertEqual(p.returncode, 3, p.stderr)
        self.assertEqual(p.stdout, "hi\n")
        self.assertEqual(p.stderr, "oops\n")
        p = self.berth("logs", "c1")
        self.assertEqual((p.stdout, p.stderr), ("hi\n", "oops\n"))

    def test_run_joins_partial_lines(self):
        p = self.berth("run", IMAGE, "sh", "-c", "printf abc; sleep 0.2; echo def; printf tail")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "abcdef\ntail")

    def test_run_rm_leaves_nothing(self):
        p = self.berth("run", "--rm", IMAGE, "echo", "gone")
        self.assertEqual((p.returncode, p.stdout), (0, "gone\n"), p.stderr)
        self.wait_until("the --rm container is removed", lambda: self.ps("-a") == [])
        p = self.berth("run", "--rm", "-d", IMAGE, "true")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.wait_until("the detached --rm container is removed",
                        lambda: self.ps("-a") == [])

    def test_detached_then_ps_stop_rm(self):
        cid = self.ok("run", "-d", "--name", "sleeper", IMAGE, "sleep", "1000").strip()
        self.assertRegex(cid, r"^[0-9a-f]{64}$")
        self.assertEqual(self.ok("ps", "-q").split(), [cid[:12]])
        table = self.ok("ps").splitlines()
        self.assertEqual(len(table), 2)
        self.assertIn("sleeper", table[1])
        self.assertRegex(table[1], r"\bUp\b")
        self.assertEqual(self.ok("stop", "-t", "1", "sleeper").strip(), cid)
        self.assertEqual(self.ok("ps", "-q"), "")
        self.assertRegex(self.ok("ps", "-a"), r"Exited \(\d+\)")
        self.assertEqual(self.ok("rm", "sleeper").strip(), cid)
        self.assertEqual(self.ok("ps", "-a", "-q"), "")

    def test_ps_all_json(self):
        self.ok("create", "--name", "made", IMAGE, "true")
        self.ok("run", "--name", "ran", IMAGE, "true")
        ctrs = {c["names"]: c for c in self.ps("-a")}
        self.assertEqual(set(ctrs), {"made", "ran"})
        self.assertEqual(ctrs["made"]["status"], "configured")
        self.assertIn(ctrs["ran"]["status"], ("exited", "stopped"))
        self.assertEqual(ctrs["ran"]["image"], IMAGE)
        self.assertFalse(ctrs["ran"]["containerrunning"])
        self.assertEqual(self.ps(), [])

    def test_inspect(self):
        cid = self.ok("create", "--name", "insp", "-e", "GREETING=hello",
                      "-l", "team=berth", IMAGE, "sh").strip()
        data = json.loads(self.ok("inspect", "insp"))
        self.assertEqual(len(data), 1)
        self.assertEqual(data[0].get("Id", data[0].get("ID")), cid)
        self.assertIn("GREETING=hello", data[0]["Config"]["Env"])
        self.assertEqual(data[0]["Config"]["Labels"].get("team"), "berth")
        p = self.berth("inspect", "insp", "ghost")
        self.assertEqual(p.returncode, 2)
        self.assertEqual(len(json.loads(p.stdout)), 1)
        self.assertIn("ghost", p.stderr)

    def test_wait_and_start_attach(self):
        self.ok("run", "-d", "--name", "five", IMAGE, "sh", "-c", "exit 5")
        self.assertEqual(self.ok("wait", "five"), "5\n")
        self.ok("create", "--name", "again", IMAGE, "sh", "-c", "echo again; exit 4")
        p = self.berth("start", "-a", "again")
        self.assertEqual((p.returncode, p.stdout), (4, "again\n"), p.stderr)

    def test_kill_9_is_137(self):
        self.ok("run", "-d", "--name", "victim", IMAGE, "sleep", "1000")
        self.ok("kill", "-s", "9", "victim")
        self.assertEqual(self.ok("wait", "victim"), "137\n")

    def test_run_a_directory_is_126(self):
        p = self.berth("run", IMAGE, "/etc")
        self.assertEqual(p.returncode, 126, p.stderr)
        self.assertTrue(p.stderr.startswith("Error: "), p.stderr)

    def test_run_a_missing_command_is_127(self):
        p = self.berth("run", IMAGE, "/nonexistent")
        self.assertEqual(p.returncode, 127, p.stderr)
        self.assertTrue(p.stderr.startswith("Error: "), p.stderr)

    def test_run_a_missing_image_is_125(self):
        p = self.berth("run", "localhost/nosuchimage:latest", "true")
        self.assertEqual(p.returncode, 125, p.stderr)
        self.assertTrue(p.stderr.startswith("Error: "), p.stderr)

    def test_prune_leaves_the_image_of_a_running_container(self):
        self.ok("run", "-d", "--name", "v3run", IMAGE, "sleep", "300")
        for params in ('{"all":true}', '{"all":false}'):
            out = json.loads(self.ok("call", "io.podman.ImagesPrune", params))
            self.assertEqual(out.get("pruned") or [], [], params)
        out = json.loads(self.ok("call", "io.podman.DeleteUnusedImages"))
        self.assertEqual(out.get("images") or [], [])
        self.ok("stop", "-t", "0", "v3run")
        self.ok("start", "v3run")
        self.assertEqual([c["names"] for c in self.ps()], ["v3run"])

    def test_rmi_force_removes_the_containers_of_the_image(self):
        self.ok("run", "-d", "--name", "v3run", IMAGE, "sleep", "300")
        self.ok("create", "--name", "made", IMAGE, "true")
        imgs = json.loads(self.ok("images", "--format", "json"))
        self.assertEqual([i["containers"] for i in imgs], [2])
        p = self.berth("rmi", IMAGE)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("in use by container", p.stderr)
        self.assertEqual(len(self.ps("-a")), 2)
        self.assertEqual(self.ok("rmi", "-f", IMAGE), imgs[0]["id"] + "\n")
        self.assertEqual(self.ps("-a"), [])
        self.assertEqual(self.ok("images", "-q"), "")

    def test_mount_and_umount(self):
        cid = self.ok("create", "--name", "mnt", IMAGE, "true").strip()
        path = self.ok("mount", "mnt").strip()
        self.assertTrue(os.path.isfile(os.path.join(path, "bin", "busybox")), path)
        self.assertIn(cid[:12] + " " + path, self.ok("mount").splitlines())
        self.ok("umount", "mnt")
        self.assertNotIn(cid[:12], self.ok("mount"))

    def test_diff_after_touching_files(self):
        self.ok("run", "--name", "changer", IMAGE, "sh", "-c",
                "touch /newfile && rm /bin/ls && echo x >> /etc/group")
        lines = self.ok("diff", "changer").splitlines()
        for want in ("A /newfile", "D /bin/ls", "C /etc/group"):
            self.assertIn(want, lines)

    def test_export_to_a_file(self):
        self.ok("run", "--name", "exp", IMAGE, "sh", "-c", "echo mark > /marker")
        out = self.path("exp.tar")
        self.ok("export", "-o", out, "exp")
        with tarfile.open(out) as t:
            names = {n.lstrip("./").rstrip("/") for n in t.getnames()}
            self.assertIn("bin/busybox", names)
            self.assertIn("marker", names)
            self.assertEqual(t.extractfile(
                [m for m in t.getmembers() if m.name.lstrip("./") == "marker"][0]
            ).read(), b"mark\n")


if __name__ == "__main__":
    harness.main()
