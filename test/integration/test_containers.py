"""berthd's containers (issue 4): real OCI containers under conmon, made
from the busybox fixture image, driven through the io.podman methods, and
the fault classes of shared/cases (C02, C05-C09, C11).

Needs root (namespaces, overlayfs, cgroups), conmon and runc.
"""

import concurrent.futures
import glob
import io
import json
import os
import re
import signal
import socket
import subprocess
import tarfile
import threading
import time

import ctrfx
import harness
from ctrfx import IMAGE, LONG
from harness import DaemonTest


def setUpModule():
    ctrfx.require_root_and_images()


def zombies_of(pid):
    """Children of `pid` that are zombies."""
    out = []
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            with open(stat) as f:
                text = f.read()
        except OSError:
            continue
        rest = text[text.rfind(")") + 2:].split()
        if rest[0] == "Z" and int(rest[1]) == pid:
            out.append(stat)
    return out


def mounts_under(path):
    with open("/proc/self/mountinfo") as f:
        return [line.split()[4] for line in f if line.split()[4].startswith(path)]


def berth_cgroups():
    """Container cgroups left under /berth in any v1 hierarchy."""
    left = []
    for d in glob.glob("/sys/fs/cgroup/*/berth/*"):
        if os.path.isdir(d):
            left.append(d)
    return left


class ContainerTest(ctrfx.ContainerTest):
    """A daemon with the busybox image loaded."""

    def logs(self, cid):
        lines = self.ok("GetContainerLogs", {"name": cid})["container"] or []
        out = ""
        for line in lines:
            parts = line.split(" ", 3)
            text = parts[3] if len(parts) > 3 else ""
            out += text[:-1] if text.endswith("\n") else text
            if parts[2] == "F":
                out += "\n"
        return out


class Lifecycle(ContainerTest):
    def test_exit_codes(self):
        """C08: the container's own code, 128+signal, 125 as such."""
        self.assertEqual(self.wait(self.run_ctr(["sh", "-c", "exit 3"])), 3)
        self.assertEqual(self.wait(self.run_ctr(["sh", "-c", "exit 125"])), 125)
        cid = self.run_ctr(["sleep", "30"])
        self.ok("KillContainer", {"name": cid, "signal": 9})
        self.assertEqual(self.wait(cid), 137)
        self.assertEqual(self.state(cid), "exited")

    def test_start_failures(self):
        """C08: a directory fails as permission denied, a missing command as
        not found; the container is not left running."""
        for cmd, word in ((["/etc"], "permission denied"),
                          (["/nonexistent"], "no such file")):
            cid = self.create(cmd)
            r = self.call("StartContainer", {"name": cid})
            self.assertError(r, "io.podman.ErrorOccurred")
            self.assertIn(word, r["parameters"]["reason"].lower())
            self.assertNotEqual(self.state(cid), "running")
        # An executable whose interpreter is missing: runc finds out only
        # when it execs it, after the start; the code still says why.
        script = self.path("bad.sh")
        with open(script, "w") as f:
            f.write("#!/no/such/interpreter\n")
        os.chmod(script, 0o755)
        cid = self.create(["/bad.sh"], volumes=[script + ":/bad.sh:ro"])
        r = self.call("StartContainer", {"name": cid})
        if "error" not in r:
            self.assertEqual(self.wait(cid), 127)

    def test_output_and_log(self):
        cid = self.run_ctr(["sh", "-c", "echo hello; echo oops >&2; printf part"])
        self.assertEqual(self.wait(cid), 0)
        lines = self.ok("GetContainerLogs", {"name": cid})["container"]
        self.assertTrue(any(re.match(r"^\S+ stdout F hello\n$", l) for l in lines), lines)
        self.assertTrue(any(re.match(r"^\S+ stderr F oops\n$", l) for l in lines), lines)
        self.assertIn("part", self.logs(cid))

    def test_states_pause_restart(self):
        cid = self.create(["sleep", "60"])
        self.assertEqual(self.state(cid), "configured")
        self.ok("StartContainer", {"name": cid})
        self.assertEqual(self.state(cid), "running")
        r = self.call("StartContainer", {"name": cid})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.ok("PauseContainer", {"name": cid})
        self.assertEqual(self.state(cid), "paused")
        self.assertEqual(json.loads(self.ok("ContainerStateData", {"name": cid})["config"])["state"], 5)
        self.assertError(self.call("PauseContainer", {"name": cid}), "io.podman.ErrorOccurred")
        self.ok("UnpauseContainer", {"name": cid})
        self.assertEqual(self.state(cid), "running")
        self.assertError(self.call("UnpauseContainer", {"name": cid}), "io.podman.ErrorOccurred")
        pid1 = self.ok("GetContainer", {"id": cid})["container"]["namespaces"]["pid"]
        self.ok("RestartContainer", {"name": cid, "timeout": 0})
        self.assertEqual(self.state(cid), "running")
        pid2 = self.ok("GetContainer", {"id": cid})["container"]["namespaces"]["pid"]
        self.assertNotEqual(pid1, pid2)
        r = self.call("RemoveContainer", {"name": cid})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertIn("running", r["parameters"]["reason"])
        self.assertEqual(self.ok("RemoveContainer", {"name": cid, "force": True})["container"], cid)
        self.assertError(self.call("GetContainer", {"id": cid}), "io.podman.ContainerNotFound")

    def test_stop_signal_then_kill(self):
        """C11: the stop signal, then SIGKILL after the timeout; 0 = at once."""
        cid = self.run_ctr(["sh", "-c", 'trap "echo got SIGTERM" TERM; '
                            'while :; do sleep 1; done'])
        time.sleep(0.5)
        t0 = time.monotonic()
        self.assertEqual(self.ok("StopContainer", {"name": cid, "timeout": 3})["container"], cid)
        took = time.monotonic() - t0
        self.assertGreaterEqual(took, 2.5)
        self.assertLess(took, 6.0)
        self.assertIn("got SIGTERM", self.logs(cid))
        self.assertEqual(self.wait(cid), 137)
        # Stopping a stopped container is fine.
        self.ok("StopContainer", {"name": cid, "timeout": 3})
        cid2 = self.run_ctr(["sleep", "60"])
        t0 = time.monotonic()
        self.ok("StopContainer", {"name": cid2, "timeout": 0})
        self.assertLess(time.monotonic() - t0, 2.5)
        self.assertEqual(self.wait(cid2), 137)
        # A configured container cannot be stopped.
        cid3 = self.create(["true"])
        self.assertError(self.call("StopContainer", {"name": cid3, "timeout": 1}),
                         "io.podman.ErrorOccurred")

    def test_stop_signal_from_create(self):
        cid = self.run_ctr(["sh", "-c", 'trap "echo got USR1; exit 7" USR1; '
                            'while :; do sleep 1; done'], stop_signal=10)
        time.sleep(0.5)
        self.ok("StopContainer", {"name": cid, "timeout": 10})
        self.assertEqual(self.wait(cid), 7)
        self.assertIn("got USR1", self.logs(cid))

    def test_kill_signals(self):
        """C11: signals outside 1-64 are refused before the runtime; 37 is
        delivered."""
        cid = self.run_ctr(["sh", "-c", 'trap "echo got 37; exit 4" 37; '
                            'while :; do sleep 1; done'])
        time.sleep(0.5)
        for bad in (0, -1, 65):
            r = self.call("KillContainer", {"name": cid, "signal": bad})
            self.assertError(r, "io.podman.ErrorOccurred")
            self.assertIn("signal", r["parameters"]["reason"])
        self.assertEqual(self.state(cid), "running")
        self.ok("KillContainer", {"name": cid, "signal": 37})
        self.assertEqual(self.wait(cid), 4)
        self.assertIn("got 37", self.logs(cid))
        r = self.call("KillContainer", {"name": cid, "signal": 9})
        self.assertError(r, "io.podman.ErrorOccurred")

    def test_rm_and_wait_after_removal(self):
        """C08: WaitContainer answers the real code after the container was
        removed (rm)."""
        cid = self.create(["sh", "-c", "sleep 0.3; exit 5"], rm=True)
        waiter = self.d.connect(timeout=LONG)
        waiter.send({"method": "io.podman.WaitContainer", "parameters": {"name": cid}})
        self.ok("StartContainer", {"name": cid})
        r = waiter.recv(timeout=LONG)
        waiter.close()
        self.assertEqual(self.assertOk(r)["exitcode"], 5)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and \
                self.ok("ContainerExists", {"name": cid})["exists"] == 0:
            time.sleep(0.05)
        self.assertEqual(self.ok("ContainerExists", {"name": cid})["exists"], 1)
        self.assertEqual(self.wait(cid), 5)
        # Its files go right after it leaves the list.
        gone = os.path.join(self.root, "containers", cid)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and os.path.exists(gone):
            time.sleep(0.05)
        self.assertFalse(os.path.exists(gone))

    def test_waiter_hangs_up(self):
        """C02: a client that hangs up mid-wait leaves the container alone."""
        cid = self.run_ctr(["sleep", "60"])
        w = self.d.connect()
        w.send({"method": "io.podman.WaitContainer",
                "parameters": {"name": cid, "interval": 100}})
        time.sleep(0.2)
        w.close()
        time.sleep(0.3)
        self.assertEqual(self.state(cid), "running")
        self.ok("StopContainer", {"name": cid, "timeout": 0})

    def test_env_user_workdir_hostname(self):
        cid = self.run_ctr(["sh", "-c", 'echo "$FOO $(id -u):$(id -g) $(pwd) $(hostname)"'],
                           env={"FOO": "bar"}, user="app", work_dir="/tmp",
                           hostname="box1")
        self.assertEqual(self.wait(cid), 0)
        self.assertEqual(self.logs(cid).strip(), "bar 1000:1000 /tmp box1")
        bad = self.call("CreateContainer", {"create": {"image": IMAGE, "command": ["true"],
                                                       "net_mode": "bridge"}})
        self.assertError(bad, "io.podman.ErrorOccurred")
        self.assertIn("bridge", bad["parameters"]["reason"])

    def test_args_form_and_missing_image(self):
        """Later clients send image and command in args."""
        cid = self.ok("CreateContainer", {"create": {"args": [IMAGE, "sh", "-c", "exit 9"]}})["container"]
        self.ok("StartContainer", {"name": cid})
        self.assertEqual(self.wait(cid), 9)
        r = self.call("CreateContainer", {"create": {"image": "localhost/nosuch:latest",
                                                     "command": ["true"]}})
        self.assertError(r, "io.podman.ErrorOccurred")

    def test_resources_and_limits(self):
        """cgroup limits from CreateResourceConfig; rlimits clamped to the
        host's hard limits (root lacks CAP_SYS_RESOURCE here)."""
        import resource
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        cid = self.run_ctr(["sh", "-c", "ulimit -n; ulimit -Hn; sleep 30"],
                           resources={"memory": 64 << 20, "pids_limit": 50,
                                      "cpu_shares": 512, "cpu_quota": 50000,
                                      "cpu_period": 100000,
                                      "ulimit": ["nofile=1024:4096"]})
        time.sleep(0.3)

        def cgroup(controller, name):
            for path in glob.glob("/sys/fs/cgroup/%s/berth/%s/%s" % (controller, cid, name)) + \
                    glob.glob("/sys/fs/cgroup/berth/%s/%s" % (cid, name)):
                with open(path) as f:
                    return f.read().strip()
            return None
        self.assertIn(cgroup("memory", "memory.limit_in_bytes") or cgroup("", "memory.max"),
                      (str(64 << 20),))
        self.assertEqual(cgroup("pids", "pids.max"), "50")
        self.assertEqual(cgroup("cpu", "cpu.shares"), "512")
        self.assertEqual(cgroup("cpu", "cpu.cfs_quota_us"), "50000")
        self.assertEqual(self.logs(cid).split()[:2], ["1024", "4096"])
        self.ok("StopContainer", {"name": cid, "timeout": 0})
        # No ulimit asked: podman's defaults, within what this host allows.
        cid = self.run_ctr(["sh", "-c", "ulimit -Hn"])
        self.assertEqual(self.wait(cid), 0)
        self.assertLessEqual(int(self.logs(cid).strip()), hard)
        bad = self.call("CreateContainer", {"create": {"image": IMAGE, "command": ["true"],
                                                       "resources": {"cpus": -1}}})
        self.assertError(bad, "io.podman.ErrorOccurred")

    def test_non_root_user_sees_a_usable_root(self):
        """`/` has the image's mode (0755), not the store's 0700."""
        cid = self.run_ctr(["sh", "-c", "ls -ld / | cut -c1-10; id -u; ls /bin/sh"],
                           user="app")
        self.assertEqual(self.wait(cid), 0)
        self.assertEqual(self.logs(cid).split(), ["drwxr-xr-x", "1000", "/bin/sh"])

    def test_namespace_modes(self):
        """pid, ipc, uts and net: own, host, or another container's."""
        host = self.run_ctr(["sh", "-c", "hostname; ls /proc | grep -c '^[0-9]'"],
                            pid_mode="host", uts_mode="host", net_mode="host")
        self.assertEqual(self.wait(host), 0)
        out = self.logs(host).split()
        self.assertEqual(len(out), 2, out)
        name, procs = out
        self.assertEqual(name, socket.gethostname())
        self.assertGreater(int(procs), 10)  # the host's processes
        first = self.run_ctr(["sh", "-c", "echo $$ > /tmp/pid; sleep 60"], hostname="first")
        time.sleep(0.3)
        joined = self.run_ctr(["sh", "-c", "hostname; ps -o pid,args | grep -c 'sleep 60'; "
                               "cat /proc/net/dev | grep -c :"],
                              pid_mode="container:" + first, uts_mode="container:" + first,
                              net_mode="container:" + first, ipc_mode="container:" + first)
        self.assertEqual(self.wait(joined), 0)
        out = self.logs(joined).split()
        self.assertEqual(out[0], "first")
        self.assertGreaterEqual(int(out[1]), 1)  # sees the other's sleep
        self.assertEqual(out[2], "1")            # loopback only
        own = self.run_ctr(["sh", "-c", "ls /proc | grep -c '^[0-9]'"])
        self.assertEqual(self.wait(own), 0)
        self.assertLessEqual(int(self.logs(own).strip()), 3)
        # Joining a container that does not run fails clearly.
        self.ok("StopContainer", {"name": first, "timeout": 0})
        late = self.create(["true"], pid_mode="container:" + first)
        r = self.call("StartContainer", {"name": late})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertIn("running", r["parameters"]["reason"])

    def test_volume_and_tmpfs(self):
        host = self.path("vol")
        os.makedirs(host)
        with open(os.path.join(host, "in.txt"), "w") as f:
            f.write("from host\n")
        cid = self.run_ctr(["sh", "-c", "cat /data/in.txt; echo out > /data/out.txt; "
                            "grep ' /scratch ' /proc/mounts | cut -d' ' -f3"],
                           volumes=[host + ":/data"], tmpfs=["/scratch"])
        self.assertEqual(self.wait(cid), 0)
        self.assertEqual(self.logs(cid), "from host\ntmpfs\n")
        with open(os.path.join(host, "out.txt")) as f:
            self.assertEqual(f.read(), "out\n")


class Names(ContainerTest):
    def test_lookup_and_errors(self):
        """C06: error types, resolution order, ambiguous prefixes."""
        r = self.call("GetContainer", {"id": "doesnotexist"})
        self.assertError(r, "io.podman.ContainerNotFound")
        self.assertEqual(r["parameters"]["id"], "doesnotexist")
        self.assertEqual(self.ok("ContainerExists", {"name": "doesnotexist"})["exists"], 1)
        ids = [self.create(["true"]) for _ in range(20)]
        firsts = {}
        for cid in ids:
            firsts.setdefault(cid[0], []).append(cid)
        shared = [v for v in firsts.values() if len(v) > 1][0]
        r = self.call("GetContainer", {"id": shared[0][0]})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertIn("more than one", r["parameters"]["reason"])
        self.assertError(self.call("ContainerExists", {"name": shared[0][0]}),
                         "io.podman.ErrorOccurred")
        # A name equal to another's ID prefix resolves by name.
        target = ids[0]
        named = self.create(["true"], name=target[:6])
        self.assertEqual(self.ok("GetContainer", {"id": target[:6]})["container"]["id"], named)
        self.assertEqual(self.ok("GetContainer", {"id": target})["container"]["id"], target)
        # A one-character prefix resolves when no other container, of this
        # test or any other in this daemon, starts with it.
        everyone = [c["id"] for c in self.ok("ListContainers", {})["containers"]]
        unique = [cid for cid in ids
                  if sum(1 for other in everyone if other[0] == cid[0]) == 1]
        if unique:
            self.assertEqual(self.ok("GetContainer", {"id": unique[0][:1]})["container"]["id"],
                             unique[0])
        self.assertEqual(self.ok("ContainerExists", {"name": target})["exists"], 0)
        self.assertError(self.call("StartContainer", {"name": "nosuch"}),
                         "io.podman.ContainerNotFound")
        self.assertError(self.call("ContainerExists", {"name": ""}), "io.podman.ErrorOccurred")

    def test_one_name_many_creators(self):
        """C09: 20 parallel creates of one name: one wins, 19 name the holder."""
        def create(_):
            with self.d.connect(timeout=LONG) as c:
                return c.request("io.podman.CreateContainer", {"create": {
                    "image": IMAGE, "command": ["true"], "name": "dup"}}, timeout=LONG)
        with concurrent.futures.ThreadPoolExecutor(20) as ex:
            replies = list(ex.map(create, range(20)))
        good = [r for r in replies if "error" not in r]
        bad = [r for r in replies if "error" in r]
        self.assertEqual(len(good), 1, replies)
        holder = good[0]["parameters"]["container"]
        for r in bad:
            self.assertIn("already in use", r["parameters"]["reason"])
            self.assertIn(holder, r["parameters"]["reason"])
        # A create that fails on a bad option gives its name back.
        r = self.call("CreateContainer", {"create": {"image": IMAGE, "command": ["true"],
                                                     "name": "x", "resources": {"ulimit": ["nofile=abc"]}}})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.create(["true"], name="x")
        r = self.call("CreateContainer", {"create": {"image": IMAGE, "command": ["true"],
                                                     "name": "bad/name"}})
        self.assertError(r, "io.podman.ErrorOccurred")

    def test_generated_names(self):
        def create(_):
            with self.d.connect(timeout=LONG) as c:
                return c.request("io.podman.CreateContainer", {"create": {
                    "image": IMAGE, "command": ["true"]}}, timeout=LONG)
        with concurrent.futures.ThreadPoolExecutor(20) as ex:
            replies = list(ex.map(create, range(100)))
        for r in replies:
            self.assertOk(r)
        names = [c["names"] for c in self.ok("ListContainers")["containers"]]
        self.assertEqual(len(names), 100)
        self.assertEqual(len(set(names)), 100)
        for n in names:
            self.assertRegex(n, r"^[a-z]+_[a-z]+\d*$")


class Many(ContainerTest):
    def test_hundred_clients(self):
        """C07: 100 clients create and start at once; every one gets its
        replies; exactly 100 containers afterwards; the list is cheap (C05)."""
        def one(i):
            with self.d.connect(timeout=LONG) as c:
                r1 = c.request("io.podman.CreateContainer", {"create": {
                    "image": IMAGE, "command": ["sh", "-c", "exit %d" % (i % 3)],
                    "name": "c%d" % i}}, timeout=LONG)
                if "error" in r1:
                    return r1, None
                r2 = c.request("io.podman.StartContainer", {"name": "c%d" % i}, timeout=LONG)
                return r1, r2
        with concurrent.futures.ThreadPoolExecutor(100) as ex:
            results = list(ex.map(one, range(100)))
        for r1, r2 in results:
            self.assertOk(r1)
            self.assertOk(r2)
        listed = self.ok("ListContainers")["containers"]
        self.assertEqual(len(listed), 100)
        self.assertEqual(sorted(c["names"] for c in listed),
                         sorted("c%d" % i for i in range(100)))
        for i in range(100):
            self.assertEqual(self.wait("c%d" % i), i % 3)
        listed = self.ok("ListContainers")["containers"]
        self.assertTrue(all(c["status"] == "exited" for c in listed))
        self.assertTrue(all(c["rootfssize"] == 0 for c in listed))
        removed = self.ok("DeleteStoppedContainers")["containers"]
        self.assertEqual(len(removed), 100)
        self.assertEqual(self.ok("ListContainers")["containers"], [])

    def test_cycles_leave_nothing(self):
        """Run/remove cycles leave no zombie, fd, mount or cgroup behind."""
        # Warm up first: the first calls open files that stay open.
        cid = self.run_ctr(["true"])
        self.wait(cid)
        self.ok("RemoveContainer", {"name": cid})
        fds_before = len(os.listdir("/proc/%d/fd" % self.d.pid))
        ids = set()
        for i in range(int(os.environ.get("BERTH_CYCLES", "500"))):
            cid = self.run_ctr(["true"])
            ids.add(cid)
            self.assertEqual(self.wait(cid), 0)
            self.ok("RemoveContainer", {"name": cid})
        time.sleep(0.3)
        self.assertEqual(zombies_of(self.d.pid), [])
        self.assertLessEqual(len(os.listdir("/proc/%d/fd" % self.d.pid)), fds_before + 2)
        self.assertEqual(mounts_under(self.root), [])
        left = [d for d in berth_cgroups() if os.path.basename(d) in ids]
        self.assertEqual(left, [])
        self.assertEqual(os.listdir(os.path.join(self.root, "containers")), [])
        self.assertEqual(os.listdir(self.path("run", "exits")), [])
        self.assertEqual(os.listdir(self.path("run", "runc")), [])


class Files(ContainerTest):
    def test_mount_changes_export(self):
        cid = self.run_ctr(["sh", "-c", "echo new > /added.txt; echo x >> /etc/group; "
                            "rm /bin/ls"])
        self.assertEqual(self.wait(cid), 0)
        ch = self.ok("ListContainerChanges", {"name": cid})["container"]
        self.assertIn("/added.txt", ch["added"])
        self.assertIn("/etc/group", ch["changed"])
        self.assertIn("/bin/ls", ch["deleted"])
        path = self.ok("MountContainer", {"name": cid})["path"]
        self.assertTrue(os.path.ismount(path))
        with open(os.path.join(path, "added.txt")) as f:
            self.assertEqual(f.read(), "new\n")
        self.assertEqual(self.ok("ListContainerMounts")["mounts"], {cid: path})
        self.ok("UnmountContainer", {"name": cid, "force": False})
        self.assertFalse(os.path.ismount(path))
        self.assertEqual(self.ok("ListContainerMounts")["mounts"], {})
        out = self.path("export.tar")
        self.assertEqual(self.ok("ExportContainer", {"name": cid, "path": out})["tarfile"], out)
        with tarfile.open(out) as t:
            names = {n.lstrip("./") for n in t.getnames()}
        self.assertIn("added.txt", names)
        self.assertIn("bin/sh", names)
        self.assertNotIn("bin/ls", names)
        self.assertFalse(os.path.ismount(path))
        self.assertError(self.call("MountContainer", {"name": "nosuch"}), "io.podman.ErrorOccurred")

    def test_inspect(self):
        cid = self.create(["sleep", "60"], name="insp", labels={"a": "b"}, env={"K": "V"})
        data = json.loads(self.ok("InspectContainer", {"name": "insp"})["container"])
        self.assertEqual(data["ID"], cid)
        self.assertEqual(data["Name"], "insp")
        self.assertEqual(data["Path"], "sleep")
        self.assertEqual(data["Args"], ["60"])
        self.assertEqual(data["State"]["Status"], "configured")
        self.assertEqual(data["Image"], self.image_id)
        self.assertIn("K=V", data["Config"]["Env"])
        self.assertEqual(data["Config"]["Labels"], {"a": "b"})
        cfg = json.loads(self.ok("ContainerConfig", {"name": cid})["config"])
        self.assertEqual(cfg["id"], cid)
        self.assertEqual(cfg["rootfsImageID"], self.image_id)
        self.ok("StartContainer", {"name": cid})
        st = json.loads(self.ok("ContainerStateData", {"name": cid})["config"])
        self.assertEqual(st["state"], 3)
        self.assertGreater(st["pid"], 0)
        cfg = json.loads(self.ok("ContainerConfig", {"name": cid})["config"])
        self.assertEqual(cfg["spec"]["process"]["args"], ["sleep", "60"])
        data = json.loads(self.ok("ContainerInspectData", {"name": cid})["config"])
        self.assertTrue(data["State"]["Running"])
        g = self.ok("GetContainer", {"id": cid})["container"]
        self.assertEqual(g["command"], ["sleep", "60"])
        self.assertTrue(g["containerrunning"])
        self.assertEqual(g["namespaces"]["pid"], str(st["pid"]))
        self.assertRegex(g["namespaces"]["net"], r"^\d+$")
        self.assertEqual(self.ok("GetContainersByContext", {"latest": True})["containers"], [cid])
        self.assertError(self.call("ContainerArtifacts", {"name": cid, "artifactName": "nope"}),
                         "io.podman.ErrorOccurred")
        info = self.ok("GetInfo")["info"]
        self.assertEqual(info["store"]["containers"], 1)
        r = self.call("RemoveImage", {"name": IMAGE})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertIn(cid, r["parameters"]["reason"])


class ImagesInUse(ContainerTest):
    """An image stays while containers use it, whatever their state:
    ImagesPrune and DeleteUnusedImages pass it by, RemoveImage refuses it
    without force and removes its containers first with force, and
    Image.containers counts them."""

    def import_other(self, reference):
        """Imports a one-file root file system as `reference` ("" for none);
        returns the new image's ID."""
        rootfs = self.path("other.tar")
        with tarfile.open(rootfs, "w") as t:
            data = reference.encode() or b"unnamed"
            info = tarfile.TarInfo("marker")
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
        return self.ok("ImportImage", {"source": rootfs, "reference": reference,
                                       "message": "", "changes": [],
                                       "delete": False})["image"]

    def counts(self):
        return {i["id"]: i["containers"] for i in self.ok("ListImages")["images"]}

    def exists(self, image_id):
        return self.ok("ImageExists", {"name": image_id})["exists"] == 0

    def assertStartsAgain(self, running, created):
        self.ok("StopContainer", {"name": running, "timeout": 0})
        self.assertEqual(self.wait(running), 137)
        self.ok("StartContainer", {"name": running})
        self.assertEqual(self.state(running), "running")
        self.ok("StartContainer", {"name": created})
        self.assertEqual(self.wait(created), 0)

    def test_prune_keeps_images_of_containers(self):
        running = self.run_ctr(["sleep", "300"])
        created = self.create(["true"])
        self.assertEqual(self.ok("ImagesPrune", {"all": True})["pruned"] or [], [])
        # Its name goes to another image: busybox is dangling, yet in use.
        other = self.import_other(IMAGE)
        self.assertEqual(self.ok("GetImage", {"id": self.image_id})["image"]["repoTags"]
                         or [], [])
        self.assertEqual(self.ok("ImagesPrune", {"all": False})["pruned"] or [], [])
        self.assertEqual(self.ok("ImagesPrune", {"all": True})["pruned"], [other])
        self.assertTrue(self.exists(self.image_id))
        self.assertStartsAgain(running, created)
        # Once its containers are gone, it goes.
        for cid in (running, created):
            self.ok("RemoveContainer", {"name": cid, "force": True})
        self.assertEqual(self.ok("ImagesPrune", {"all": False})["pruned"], [self.image_id])
        self.assertFalse(self.exists(self.image_id))

    def test_delete_unused_keeps_images_of_containers(self):
        running = self.run_ctr(["sleep", "300"])
        created = self.create(["true"])
        other = self.import_other("")
        self.assertEqual(self.ok("DeleteUnusedImages")["images"], [other])
        self.assertTrue(self.exists(self.image_id))
        self.assertStartsAgain(running, created)
        self.ok("RemoveContainer", {"name": running, "force": True})
        self.assertEqual(self.ok("DeleteUnusedImages")["images"] or [], [])
        self.ok("RemoveContainer", {"name": created})
        self.assertEqual(self.ok("DeleteUnusedImages")["images"], [self.image_id])

    def test_remove_image_with_force_removes_its_containers(self):
        running = self.run_ctr(["sleep", "300"])
        created = self.create(["true"])
        exited = self.run_ctr(["true"])
        self.assertEqual(self.wait(exited), 0)
        paused = self.run_ctr(["sleep", "300"])
        self.ok("PauseContainer", {"name": paused})
        other = self.import_other("localhost/other:1")
        bystander = self.create(["true"], image="localhost/other:1")
        r = self.call("RemoveImage", {"name": IMAGE, "force": False})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertIn("in use by container", r["parameters"]["reason"])
        self.assertEqual(self.state(running), "running")
        self.assertEqual(self.ok("RemoveImage", {"name": IMAGE, "force": True})["image"],
                         self.image_id)
        left = [c["id"] for c in self.ok("ListContainers")["containers"]]
        self.assertEqual(left, [bystander])
        for cid in (running, created, exited, paused):
            self.assertEqual(self.ok("ContainerExists", {"name": cid})["exists"], 1)
        self.assertFalse(self.exists(self.image_id))
        self.assertEqual(self.counts(), {other: 1})
        self.assertEqual(mounts_under(os.path.join(self.root, "containers")), [])
        # Not there any more: the documented error.
        r = self.call("RemoveImage", {"name": self.image_id, "force": True})
        self.assertError(r, "io.podman.ImageNotFound")
        # The image comes back and serves new containers.
        self.ok("PullImage", {"name": ctrfx.BUSYBOX_ARCHIVE})
        self.assertEqual(self.wait(self.run_ctr(["true"])), 0)

    def test_forced_removals_at_once_all_answer(self):
        """Two forced RemoveImage calls (by name and by ID) with a prune
        between them: each answers, the containers and the image go, and
        nothing stays marked as being removed."""
        running = self.run_ctr(["sleep", "300"])
        created = self.create(["true"])
        calls = [("RemoveImage", {"name": IMAGE, "force": True}),
                 ("RemoveImage", {"name": self.image_id, "force": True}),
                 ("ImagesPrune", {"all": True})]
        def one(mp):
            with self.d.connect(timeout=LONG) as c:
                return self.call(mp[0], mp[1], conn=c, timeout=60)
        with concurrent.futures.ThreadPoolExecutor(len(calls)) as pool:
            replies = list(pool.map(one, calls))
        for (method, _), r in zip(calls, replies):
            with self.subTest(method=method):
                if "error" in r:
                    self.assertIn(r["error"], ("io.podman.ImageNotFound",
                                               "io.podman.ErrorOccurred"), r)
        self.assertTrue(any("error" not in r for r in replies[:2]), replies)
        for cid in (running, created):
            self.assertEqual(self.ok("ContainerExists", {"name": cid})["exists"], 1)
        self.assertFalse(self.exists(self.image_id))
        # The image comes back and serves new containers.
        self.ok("PullImage", {"name": ctrfx.BUSYBOX_ARCHIVE})
        self.assertEqual(self.wait(self.run_ctr(["true"])), 0)

    def test_containers_counted_per_image(self):
        def get_count():
            return self.ok("GetImage", {"id": self.image_id})["image"]["containers"]

        self.assertEqual((self.counts(), get_count()), ({self.image_id: 0}, 0))
        a = self.create(["true"])
        self.assertEqual((self.counts(), get_count()), ({self.image_id: 1}, 1))
        b = self.run_ctr(["sleep", "300"])
        self.assertEqual((self.counts(), get_count()), ({self.image_id: 2}, 2))
        other = self.import_other("localhost/other:1")
        c = self.create(["true"], image="localhost/other:1")
        self.assertEqual(self.counts(), {self.image_id: 2, other: 1})
        self.ok("RemoveContainer", {"name": a})
        self.assertEqual((self.counts(), get_count()), ({self.image_id: 1, other: 1}, 1))
        # A create that fails after finding its image counts nothing.
        r = self.call("CreateContainer", {"create": {
            "image": IMAGE, "command": ["true"], "cap_add": ["NO_SUCH_CAP"]}})
        self.assertError(r, "io.podman.ErrorOccurred")
        self.assertIn("NO_SUCH_CAP", r["parameters"]["reason"])
        self.assertEqual(self.counts(), {self.image_id: 1, other: 1})
        # A restarted daemon counts what it recovers, and prunes accordingly.
        self.c.close()
        self.d.stop()
        self.d.exit_expected = True
        self.d = self.start_daemon(addresses=self.addresses(), extra=self.extra)
        self.c = self.d.connect(timeout=LONG)
        self.assertEqual(self.counts(), {self.image_id: 1, other: 1})
        self.assertEqual(self.ok("ImagesPrune", {"all": True})["pruned"] or [], [])
        self.ok("RemoveContainer", {"name": b, "force": True})
        self.ok("RemoveContainer", {"name": c})
        self.assertEqual((self.counts(), get_count()), ({self.image_id: 0, other: 0}, 0))
        self.assertEqual(self.ok("GetInfo")["info"]["store"]["containers"], 0)


class Durability(DaemonTest):
    """kill -9 of berthd with containers in every state, then a restart; and
    a simulated reboot."""

    def setUp(self):
        super().setUp()
        self.ctr_ids = []
        self.addCleanup(self._last_cleanup)

    def _last_cleanup(self):
        # Whatever daemon runs now removes what the test made.
        for d in self.daemons:
            ctrfx.remove_containers(d, self.ctr_ids)

    def ok(self, c, method, params=None):
        return self.assertOk(c.request("io.podman." + method, params or {},
                                       timeout=LONG))

    def make_states(self, c):
        self.ok(c, "PullImage", {"name": ctrfx.BUSYBOX_ARCHIVE})
        ids = {}
        def create(name, cmd):
            cid = self.ok(c, "CreateContainer", {"create": {
                "image": IMAGE, "command": cmd, "name": name}})["container"]
            self.ctr_ids.append(cid)
            ids[name] = cid
            return cid
        create("configured", ["true"])
        self.ok(c, "StartContainer", {"name": create("running", ["sleep", "300"])})
        self.ok(c, "StartContainer", {"name": create("paused", ["sleep", "300"])})
        self.ok(c, "PauseContainer", {"name": "paused"})
        self.ok(c, "StartContainer", {"name": create("exited", ["sh", "-c", "exit 6"])})
        self.assertEqual(self.ok(c, "WaitContainer", {"name": "exited"})["exitcode"], 6)
        self.ok(c, "StartContainer", {"name": create("dies", ["sh", "-c", "sleep 1; exit 8"])})
        return ids

    def test_kill9_and_restart(self):
        d = self.start_daemon()
        c = d.connect(timeout=LONG)
        ids = self.make_states(c)
        running_pid = self.ok(c, "GetContainer", {"id": "running"})["container"]["namespaces"]["pid"]
        c.close()
        d.kill()
        d.exit_expected = True
        time.sleep(1.5)  # "dies" exits while nobody watches
        d2 = self.start_daemon()
        c = d2.connect(timeout=LONG)
        status = {x["names"]: x for x in self.ok(c, "ListContainers")["containers"]}
        self.assertEqual(status["configured"]["status"], "configured")
        self.assertEqual(status["running"]["status"], "running")
        self.assertEqual(status["running"]["namespaces"]["pid"], running_pid)
        self.assertEqual(status["paused"]["status"], "paused")
        self.assertEqual(status["exited"]["status"], "exited")
        self.assertEqual(self.ok(c, "WaitContainer", {"name": "exited"})["exitcode"], 6)
        self.assertEqual(self.ok(c, "WaitContainer", {"name": "dies"})["exitcode"], 8)
        # Fully managed again.
        self.ok(c, "UnpauseContainer", {"name": "paused"})
        self.ok(c, "StopContainer", {"name": "running", "timeout": 0})
        self.assertEqual(self.ok(c, "WaitContainer", {"name": "running"})["exitcode"], 137)
        self.ok(c, "StartContainer", {"name": "configured"})
        self.assertEqual(self.ok(c, "WaitContainer", {"name": "configured"})["exitcode"], 0)
        self.ok(c, "RemoveContainer", {"name": "paused", "force": True})
        c.close()

    def test_one_daemon_per_store(self):
        self.start_daemon()
        second = self.spawn(self.berthd_argv(addresses=["unix:" + self.path("other.sock")]),
                            ["unix:" + self.path("other.sock")], name="second", wait=False)
        self.assertEqual(second.wait(30), 1)
        self.assertIn("another berthd is using", second.log())

    def test_reboot(self):
        d = self.start_daemon()
        c = d.connect(timeout=LONG)
        ids = self.make_states(c)
        pids = [int(self.ok(c, "GetContainer", {"id": n})["container"]["namespaces"]["pid"])
                for n in ("running", "paused")]
        c.close()
        d.kill()
        d.exit_expected = True
        # A reboot: every container process is gone, the run dir is empty.
        subprocess.run(["runc", "--root", self.path("run", "runc"), "kill", "--all",
                        ids["paused"], "KILL"], capture_output=True)
        subprocess.run(["runc", "--root", self.path("run", "runc"), "resume",
                        ids["paused"]], capture_output=True)
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)
        for cid in ids.values():
            subprocess.run(["runc", "--root", self.path("run", "runc"), "delete", "-f", cid],
                           capture_output=True)
        for m in mounts_under(self.root)[::-1]:
            subprocess.run(["umount", "-l", m])
        import shutil
        shutil.rmtree(self.path("run"))
        d2 = self.start_daemon()
        c = d2.connect(timeout=LONG)
        status = {x["names"]: x["status"] for x in self.ok(c, "ListContainers")["containers"]}
        self.assertEqual(status["running"], "exited")
        self.assertEqual(status["paused"], "exited")
        self.assertEqual(status["configured"], "configured")
        self.ok(c, "StartContainer", {"name": "running"})
        self.ok(c, "StopContainer", {"name": "running", "timeout": 0})
        for name in ids:
            self.ok(c, "RemoveContainer", {"name": name, "force": True})
        self.assertEqual(self.ok(c, "ListContainers")["containers"], [])
        c.close()


if __name__ == "__main__":
    harness.main()
