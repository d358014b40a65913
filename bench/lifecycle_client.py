#!/usr/bin/env python3
"""Measuring side of bench/lifecycle.sh: clients and runtime drivers.

    lifecycle_client.py bundle ARCHIVE DIR
    lifecycle_client.py rounds --out FILE --work DIR --bundle DIR [options]
    lifecycle_client.py agent  ...                (internal: crun's side, see Agent)
    lifecycle_client.py fill   (--berth SOCK | --podman SOCK) --count N [--exited K]
    lifecycle_client.py list   (--berth SOCK | --podman SOCK) --calls N [--expect N]
    lifecycle_client.py clean  (--berth SOCK | --podman SOCK)
    lifecycle_client.py call   SOCK METHOD [JSON]
    lifecycle_client.py report DIR

Every measured operation is timed inside this process with perf_counter_ns, from
the first byte sent (or the spawn) to the last byte of the answer (or the exit).
berthd is called over varlink on one kept-alive unix connection; podman's REST
service over HTTP/1.1 on one kept-alive unix connection. Lifecycle replies are
parsed as they come (the next step needs the container ID; a few microseconds);
list replies are read to their last byte and parsed outside the timing.
"""

import argparse
import ctypes
import http.client
import json
import math
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
PODMAN_API = "/v4.3.0/libpod"
CALL_TIMEOUT = 60.0

# Order of the lifecycle rows in the report; each round rotates through them.
TOOLS = ["berth", "process", "runc-run", "crun-run", "conmon-runc", "conmon-crun",
         "podman-run", "podman-rest"]


class BenchError(Exception):
    pass


# What a call to an engine may raise: its own errors, transport trouble, odd replies.
API_ERRORS = (BenchError, OSError, ValueError, KeyError, http.client.HTTPException)


def now_ns():
    return time.perf_counter_ns()


def ms(a, b):
    return (b - a) / 1e6


# ---------------------------------------------------------------- clients

class Varlink:
    """A varlink connection: one call at a time, replies read up to their NUL."""

    def __init__(self, path):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CALL_TIMEOUT)
        self.sock.connect(path)
        self.pending = b""

    def call_raw(self, method, params=None):
        msg = {"method": method}
        if params:
            msg["parameters"] = params
        self.sock.sendall(json.dumps(msg).encode() + b"\0")
        chunks = [self.pending]
        while True:
            data = self.sock.recv(1 << 20)
            if not data:
                raise BenchError("%s: berthd closed the connection" % method)
            nul = data.find(b"\0")
            if nul >= 0:
                chunks.append(data[:nul])
                self.pending = data[nul + 1:]
                return b"".join(chunks)
            chunks.append(data)

    def call(self, method, params=None):
        reply = json.loads(self.call_raw(method, params))
        if "error" in reply:
            raise BenchError("%s: %s %s" % (method, reply["error"],
                                            json.dumps(reply.get("parameters", {}))))
        return reply.get("parameters", {})

    def close(self):
        self.sock.close()


class UnixHTTP(http.client.HTTPConnection):
    def __init__(self, path):
        super().__init__("localhost", timeout=CALL_TIMEOUT)
        self.unix_path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(CALL_TIMEOUT)
        self.sock.connect(self.unix_path)


class PodmanREST:
    """podman's libpod REST API on one kept-alive connection."""

    def __init__(self, path):
        self.conn = UnixHTTP(path)

    def request_raw(self, verb, path, body=None):
        headers = {}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        self.conn.request(verb, PODMAN_API + path, body=data, headers=headers)
        resp = self.conn.getresponse()
        return resp.status, resp.read()

    def request(self, verb, path, body=None, ok=(200, 201, 204)):
        status, data = self.request_raw(verb, path, body)
        if status not in ok:
            raise BenchError("%s %s: HTTP %d: %s" % (verb, path, status,
                                                    data[:300].decode(errors="replace")))
        return json.loads(data) if data else None

    def close(self):
        self.conn.close()


# ---------------------------------------------------------------- bundle

def cmd_bundle(args):
    """Unpacks a docker-archive's layers into DIR/rootfs and writes a config like
    `runc spec` makes, running /bin/true without a terminal."""
    rootfs = os.path.join(args.dir, "rootfs")
    os.makedirs(rootfs, exist_ok=True)
    with tarfile.open(args.archive) as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        for layer in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer)) as inner:
                inner.extractall(rootfs, numeric_owner=True)
    spec = subprocess.run(["runc", "spec", "--bundle", args.dir], capture_output=True,
                          text=True)
    if spec.returncode != 0:
        raise BenchError("runc spec: " + spec.stderr.strip())
    path = os.path.join(args.dir, "config.json")
    with open(path) as f:
        config = json.load(f)
    config["process"]["terminal"] = False
    config["process"]["args"] = ["/bin/true"]
    config["root"] = {"path": os.path.abspath(rootfs), "readonly": True}
    with open(path, "w") as f:
        json.dump(config, f, indent=1)
    return 0


# ---------------------------------------------------------------- runtime drivers

libc = ctypes.CDLL(None, use_errno=True)
PR_SET_CHILD_SUBREAPER = 36
IN_CLOSE_WRITE, IN_MOVED_TO, IN_CLOEXEC = 0x8, 0x80, 0o2000000


def become_subreaper():
    # conmon's monitor double-forks away from us; as a subreaper we reap it.
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


def reap(pid):
    try:
        os.waitpid(pid, 0)
    except ChildProcessError:
        pass


def reap_any():
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


class ExitWatch:
    """conmon's exit files, seen through inotify (no polling)."""

    def __init__(self, exits_dir):
        self.dir = exits_dir
        self.fd = libc.inotify_init1(IN_CLOEXEC)
        if self.fd < 0:
            raise BenchError("inotify_init1: " + os.strerror(ctypes.get_errno()))
        if libc.inotify_add_watch(self.fd, exits_dir.encode(),
                                  IN_CLOSE_WRITE | IN_MOVED_TO) < 0:
            raise BenchError("inotify_add_watch %s: %s" %
                             (exits_dir, os.strerror(ctypes.get_errno())))

    def wait(self, cid, timeout=CALL_TIMEOUT):
        path = os.path.join(self.dir, cid)
        deadline = time.monotonic() + timeout
        while not os.path.exists(path):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.fd], [], [], left)[0]:
                raise BenchError("no exit file for %s after %.0f s" % (cid, timeout))
            os.read(self.fd, 65536)
        with open(path) as f:
            return f.read().strip()


class Runtimes:
    """The bare runtime and conmon + runtime cycles, for one runtime binary."""

    def __init__(self, opts, runtime):
        self.opts = opts
        self.runtime = runtime
        self.path = shutil.which(runtime) or runtime
        self.root = os.path.join(opts.work, runtime + "-state")
        self.exits = os.path.join(opts.work, runtime + "-exits")
        self.socks = os.path.join(opts.work, runtime + "-socks")
        self.ctrs = os.path.join(opts.work, runtime + "-ctrs")
        for d in (self.root, self.exits, self.socks, self.ctrs):
            os.makedirs(d, exist_ok=True)
        with open(os.path.join(opts.bundle, "config.json")) as f:
            self.config = f.read()
        self.watch = None

    def call(self, *argv):
        r = subprocess.run([self.path, "--root", self.root, *argv], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if r.returncode != 0:
            raise BenchError("%s %s: exit %d: %s" % (self.runtime, argv[0], r.returncode,
                                                     stderr_text(r)))

    def bare_run(self, cid):
        """`RUNTIME run` of the shared bundle: create, start, wait, delete in one."""
        t0 = now_ns()
        r = subprocess.run([self.path, "--root", self.root, "run", "--bundle",
                            self.opts.bundle, cid], stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t1 = now_ns()
        if r.returncode != 0:
            raise BenchError("%s run: exit %d: %s" % (self.runtime, r.returncode, stderr_text(r)))
        return ms(t0, t1), {}

    def conmon_create(self, cid, bundle):
        """conmon with its sync and start pipes, as berthd starts it: returns once
        conmon reported the pid that `RUNTIME create` made."""
        sync_r, sync_w = os.pipe()
        start_r, start_w = os.pipe()
        fds = {sync_r, sync_w, start_r, start_w}
        argv = [self.opts.conmon, "--api-version", "1", "-c", cid, "-u", cid, "-n", cid,
                "-r", self.path, "-b", bundle, "-p", bundle + "/pidfile",
                "-P", bundle + "/conmon.pid", "-l", "k8s-file:" + bundle + "/ctr.log",
                "--exit-dir", self.exits, "--socket-dir-path", self.socks,
                "--log-level", "error", "--runtime-arg", "--root=" + self.root]
        env = {"PATH": PATH, "_OCI_SYNCPIPE": str(sync_w), "_OCI_STARTPIPE": str(start_r)}
        try:
            with open(os.path.join(bundle, "conmon.out"), "wb") as diag:
                p = subprocess.Popen(argv, env=env, pass_fds=(sync_w, start_r),
                                     stdin=subprocess.DEVNULL, stdout=diag, stderr=diag)
            for fd in (sync_w, start_r):
                os.close(fd)
                fds.discard(fd)
            # conmon waits for this byte before it forks its monitor.
            os.write(start_w, b"0")
            if p.wait() != 0:
                raise BenchError("conmon exited with %d: %s"
                                 % (p.returncode, read_text(bundle + "/conmon.out")))
            line = read_line(sync_r, CALL_TIMEOUT)
        finally:
            for fd in fds:
                os.close(fd)
        try:
            pid = json.loads(line)["data"]
        except (ValueError, KeyError, TypeError):
            raise BenchError("conmon answered %r" % line) from None
        if pid <= 0:
            raise BenchError("%s create failed: %s" % (self.runtime, line.strip()))

    def conmon_cycle(self, cid):
        """What berthd does per container: a bundle of its own, conmon, RUNTIME
        start, the exit file (inotify), RUNTIME delete."""
        if self.watch is None:
            self.watch = ExitWatch(self.exits)
        bundle = os.path.join(self.ctrs, cid)
        os.makedirs(bundle)
        with open(os.path.join(bundle, "config.json"), "w") as f:
            f.write(self.config)
        try:
            t0 = now_ns()
            self.conmon_create(cid, bundle)
            t1 = now_ns()
            self.call("start", cid)
            t2 = now_ns()
            code = self.watch.wait(cid)
            t3 = now_ns()
            self.call("delete", cid)
            t4 = now_ns()
        except API_ERRORS:
            subprocess.run([self.path, "--root", self.root, "delete", "--force", cid],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            self.forget(cid, bundle, signal.SIGKILL)
            raise
        self.forget(cid, bundle)
        if code != "0":
            raise BenchError("container %s exited with %s" % (cid, code))
        return ms(t0, t4), {"create": ms(t0, t1), "start": ms(t1, t2),
                            "wait": ms(t2, t3), "delete": ms(t3, t4)}

    def forget(self, cid, bundle, sig=0):
        """Reaps conmon's monitor (our child: we are a subreaper), after sending it
        `sig` if given, and removes what it left."""
        monitor = int(read_text(bundle + "/conmon.pid") or 0)
        if monitor > 0:
            if sig:
                try:
                    os.kill(monitor, sig)
                except ProcessLookupError:
                    pass
            reap(monitor)
        for leftover in (os.path.join(self.exits, cid), os.path.join(self.socks, cid)):
            if os.path.lexists(leftover):
                os.unlink(leftover)
        shutil.rmtree(bundle, ignore_errors=True)


def stderr_text(r):
    return r.stderr.decode(errors="replace").strip()


def read_text(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return ""


def read_line(fd, timeout):
    deadline = time.monotonic() + timeout
    buf = b""
    while not buf.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise BenchError("conmon did not answer on the sync pipe within %.0f s" % timeout)
        data = os.read(fd, 4096)
        if not data:
            break
        buf += data
    return buf.decode(errors="replace")


def plain_process(_cid):
    """/bin/true as a plain process: the spawn cost every CLI-driven row pays."""
    t0 = now_ns()
    r = subprocess.run(["/bin/true"])
    t1 = now_ns()
    if r.returncode != 0:
        raise BenchError("/bin/true exited with %d" % r.returncode)
    return ms(t0, t1), {}


# ---------------------------------------------------------------- engines

class BerthAPI:
    """The container verbs through berthd's io.podman interface."""
    name = "berth"

    def __init__(self, sock):
        self.vl = Varlink(sock)

    def create(self, image):
        return self.vl.call("io.podman.CreateContainer",
                            {"create": {"image": image, "command": ["/bin/true"]}})["container"]

    def start(self, cid):
        self.vl.call("io.podman.StartContainer", {"name": cid})

    def wait(self, cid):
        return self.vl.call("io.podman.WaitContainer", {"name": cid})["exitcode"]

    def remove(self, cid, force=False):
        self.vl.call("io.podman.RemoveContainer", {"name": cid, "force": force})

    def list_raw(self):
        return self.vl.call_raw("io.podman.ListContainers")

    @staticmethod
    def listed(raw):
        doc = json.loads(raw)
        if "error" in doc:
            raise BenchError("ListContainers: %s" % raw[:300].decode(errors="replace"))
        return [c["id"] for c in doc["parameters"]["containers"] or []]

    def close(self):
        self.vl.close()


class PodmanAPI:
    """The same verbs through podman's libpod REST API. Wait is podman's own:
    it polls the state every 250 ms unless told otherwise, as its clients get it."""
    name = "podman"

    def __init__(self, sock):
        self.api = PodmanREST(sock)

    def create(self, image):
        return self.api.request("POST", "/containers/create",
                                {"image": image, "command": ["/bin/true"],
                                 "netns": {"nsmode": "none"}})["Id"]

    def start(self, cid):
        self.api.request("POST", "/containers/%s/start" % cid)

    def wait(self, cid):
        return self.api.request("POST", "/containers/%s/wait" % cid)

    def remove(self, cid, force=False):
        self.api.request("DELETE", "/containers/%s%s" % (cid, "?force=true" if force else ""))

    def list_raw(self):
        status, data = self.api.request_raw("GET", "/containers/json?all=true")
        if status != 200:
            raise BenchError("containers/json: HTTP %d: %s" % (status, data[:300]))
        return data

    @staticmethod
    def listed(raw):
        return [c["Id"] for c in json.loads(raw)]

    def close(self):
        self.api.close()


def engine(args):
    """A new connection to the engine the command line names."""
    return BerthAPI(args.berth) if args.berth else PodmanAPI(args.podman)


class EngineCycle:
    """create, start, wait, remove through an engine's API on one connection."""

    def __init__(self, api, image):
        self.api = api
        self.image = image

    def __call__(self, _cid):
        api = self.api
        t0 = now_ns()
        cid = api.create(self.image)
        t1 = now_ns()
        try:
            api.start(cid)
            t2 = now_ns()
            code = api.wait(cid)
            t3 = now_ns()
            api.remove(cid)
            t4 = now_ns()
        except API_ERRORS:
            # Leave no container behind to skew the list steps.
            try:
                api.remove(cid, force=True)
            except API_ERRORS:
                pass
            raise
        if code != 0:
            raise BenchError("%s: container %s exited with %s" % (api.name, cid, code))
        return ms(t0, t4), {"create": ms(t0, t1), "start": ms(t1, t2),
                            "wait": ms(t2, t3), "remove": ms(t3, t4)}


class PodmanRun:
    def __init__(self, argv, image):
        self.argv = argv + ["run", "--rm", "--network", "none", image, "/bin/true"]

    def __call__(self, _cid):
        t0 = now_ns()
        r = subprocess.run(self.argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE)
        t1 = now_ns()
        if r.returncode != 0:
            raise BenchError("podman run: exit %d: %s" % (r.returncode, stderr_text(r)))
        return ms(t0, t1), {}


# ---------------------------------------------------------------- crun's agent

class Agent:
    """A copy of this program in a private mount namespace without the cgroup v2
    mount, where crun runs; it times each request itself."""

    def __init__(self, opts):
        me = os.path.abspath(__file__)
        argv = ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
                'umount /sys/fs/cgroup/unified || exit 97; exec "$@"', "sh",
                sys.executable, me, "agent", "--work", opts.work, "--bundle", opts.bundle,
                "--conmon", opts.conmon]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(os.path.join(opts.work, "agent.log"), "wb"))
        hello = self.proc.stdout.readline()
        if not hello:
            self.proc.wait()
            raise BenchError("the private mount namespace could not be set up (exit %d): %s"
                             % (self.proc.returncode,
                                read_text(os.path.join(opts.work, "agent.log"))[:300]))

    def run(self, tool, cid):
        self.proc.stdin.write((json.dumps({"tool": tool, "id": cid}) + "\n").encode())
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise BenchError("crun's agent exited")
        r = json.loads(line)
        if "error" in r:
            raise BenchError(r["error"])
        return r["ms"], r["steps"]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait()


def cmd_agent(args):
    become_subreaper()
    crun = Runtimes(args, "crun")
    tools = {"crun-run": crun.bare_run, "conmon-crun": crun.conmon_cycle}
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for line in sys.stdin:
        req = json.loads(line)
        try:
            total, steps = tools[req["tool"]](req["id"])
            out = {"ms": total, "steps": steps}
        except (BenchError, OSError) as e:
            out = {"error": str(e)}
        reap_any()
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
    return 0


# ---------------------------------------------------------------- rounds

def getversion_overhead(sock, calls):
    vl = Varlink(sock)
    out = []
    for _ in range(calls):
        t0 = now_ns()
        vl.call_raw("io.podman.GetVersion")
        out.append((now_ns() - t0) / 1e3)
    vl.close()
    return out


def make_runners(args, skipped):
    """tool name -> function(container ID) -> (total ms, {step: ms}); and crun's
    agent, if it runs."""
    runners = {"process": plain_process}
    if args.berth:
        runners["berth"] = EngineCycle(BerthAPI(args.berth), args.image)
    runc = Runtimes(args, "runc")
    runners["runc-run"] = runc.bare_run
    runners["conmon-runc"] = runc.conmon_cycle
    agent = None
    if args.crun:
        try:
            agent = Agent(args)
            runners["crun-run"] = lambda cid: agent.run("crun-run", cid)
            runners["conmon-crun"] = lambda cid: agent.run("conmon-crun", cid)
        except BenchError as e:
            skipped["crun"] = str(e)
    else:
        skipped["crun"] = args.crun_skip or "not asked for"
    if args.podman_cmd:
        runners["podman-run"] = PodmanRun(json.loads(args.podman_cmd), args.podman_image)
    if args.podman:
        runners["podman-rest"] = EngineCycle(PodmanAPI(args.podman), args.podman_image)
    return runners, agent


def run_rounds(args, runners, names, tools):
    """Warm-up rounds, then the timed ones; a tool that failed three times is
    left out of the rest."""
    for r in range(-args.warmup, args.rounds):
        k = r % len(names)
        for t in names[k:] + names[:k]:
            rec = tools[t]
            if len(rec["errors"]) >= 3:
                continue
            try:
                total, steps = runners[t]("lc%d%s" % (r + args.warmup, t.replace("-", "")))
            except API_ERRORS as e:
                rec["errors"].append("round %d: %s" % (r, e))
                continue
            finally:
                reap_any()
            if r >= 0:
                rec["ms"].append(total)
                for s, v in steps.items():
                    rec["steps"].setdefault(s, []).append(v)
        sys.stderr.write(".")
        sys.stderr.flush()
    sys.stderr.write("\n")


def cmd_rounds(args):
    become_subreaper()
    result = {"tools": {}, "skipped": {}}
    runners, agent = make_runners(args, result["skipped"])
    names = [t for t in TOOLS if t in runners]
    result["order"] = names
    result["tools"] = {t: {"ms": [], "steps": {}, "errors": []} for t in names}
    if args.berth:
        result["getversion_us"] = getversion_overhead(args.berth, args.getversion)
    run_rounds(args, runners, names, result["tools"])
    if args.berth:
        result["getversion_us_after"] = getversion_overhead(args.berth, args.getversion)
    if agent:
        agent.close()
    with open(args.out, "w") as f:
        json.dump(result, f)
    return 0


# ---------------------------------------------------------------- fill, list, clean

def in_parallel(args, items, op):
    """op(api, item) for every item, over args.connections connections; returns
    the results in no particular order and the first error, if any."""
    results, errors = [], []
    lock = threading.Lock()
    todo = iter(items)

    def worker():
        try:
            api = engine(args)
        except API_ERRORS as e:
            with lock:
                errors.append(str(e))
            return
        while not errors:
            with lock:
                item = next(todo, None)
            if item is None:
                break
            try:
                r = op(api, item)
                with lock:
                    results.append(r)
            except API_ERRORS as e:
                with lock:
                    errors.append(str(e))
        api.close()

    threads = [threading.Thread(target=worker) for _ in range(args.connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors[0] if errors else None


def cmd_fill(args):
    """Creates --count containers, then starts the first --exited of them and
    waits for their exits."""
    t0 = now_ns()
    ids, err = in_parallel(args, range(args.count), lambda api, _: api.create(args.image))
    if err:
        raise BenchError("creating containers: " + err)
    api = engine(args)
    for cid in ids[:args.exited]:
        api.start(cid)
        code = api.wait(cid)
        if code != 0:
            raise BenchError("container %s exited with %s" % (cid, code))
    api.close()
    print(json.dumps({"created": len(ids), "exited": args.exited,
                      "seconds": ms(t0, now_ns()) / 1e3}))
    return 0


def cmd_list(args):
    """Sequential list calls on one connection; the first reply and the last
    are parsed (outside the timing) and must hold every container."""
    api = engine(args)
    lat = []
    first = last = b""
    for i in range(args.calls):
        t0 = now_ns()
        last = api.list_raw()
        lat.append((now_ns() - t0) / 1e3)
        if i == 0:
            first = last
    api.close()
    n_first, n_last = len(api.listed(first)), len(api.listed(last))
    out = {"label": args.label, "goal_ms": args.goal_ms, "seed": args.seed,
           "calls": args.calls, "us": lat, "listed": n_last, "bytes": len(last)}
    if args.expect is not None and (n_first != args.expect or n_last != args.expect):
        out["error"] = "listed %d and %d containers, expected %d" % (n_first, n_last,
                                                                    args.expect)
    print(json.dumps(out))
    if "error" in out:
        print(out["error"], file=sys.stderr)
        return 1
    return 0


def cmd_call(args):
    vl = Varlink(args.berth)
    print(json.dumps(vl.call(args.method, json.loads(args.params))))
    vl.close()
    return 0


def cmd_clean(args):
    """Removes every container (force), a few connections at a time."""
    api = engine(args)
    ids = api.listed(api.list_raw())
    api.close()
    done, err = in_parallel(args, ids, lambda api, cid: api.remove(cid, force=True))
    print(json.dumps({"removed": len(done), "of": len(ids), "error": err}))
    return 1 if err else 0


# ---------------------------------------------------------------- report

def median(v):
    s = sorted(v)
    n = len(s)
    if n == 0:
        return None
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def pct(v, p):
    """Nearest-rank percentile."""
    s = sorted(v)
    if not s:
        return None
    return s[max(0, math.ceil(p / 100 * len(s)) - 1)]


def fmt(x, digits=1):
    return "-" if x is None else "%.*f" % (digits, x)


LABELS = {
    "berth": "berth (varlink API, 1 connection)",
    "process": "/bin/true as a plain process",
    "runc-run": "runc run (bundle)",
    "crun-run": "crun run (bundle, private mount ns)",
    "conmon-runc": "conmon + runc",
    "conmon-crun": "conmon + crun (private mount ns)",
    "podman-run": "podman run --rm --network none",
    "podman-rest": "podman REST create/start/wait/rm",
}


def verdict(ok):
    return "ok" if ok else "MISS"


def speed(other, berth):
    """berth's median against another: "2.50x faster" or "1.20x slower"."""
    if other >= berth:
        return "%.2fx faster" % (other / berth)
    return "%.2fx slower" % (berth / other)


def load_results(d):
    """rounds.json, list-N.json (in N order), rss.tsv (containers, label, VmRSS KB,
    VmHWM KB) and notes.txt, as lifecycle.sh leaves them in its results directory."""
    with open(os.path.join(d, "rounds.json")) as f:
        rounds = json.load(f)
    lists = []
    names = [n for n in os.listdir(d) if n.startswith("list-") and n.endswith(".json")]
    for name in sorted(names, key=lambda n: int(n[5:-5])):
        with open(os.path.join(d, name)) as f:
            lists.append(json.load(f))
    rss = []
    for line in read_text(os.path.join(d, "rss.tsv")).splitlines():
        n, label, rss_kb, hwm_kb = line.split("\t")
        rss.append({"n": int(n), "label": label, "rss_kb": int(rss_kb), "hwm_kb": int(hwm_kb)})
    notes = read_text(os.path.join(d, "notes.txt")).splitlines()
    return rounds, lists, rss, notes


def report_rounds(rounds, seed):
    tools = rounds["tools"]
    med = {t: median(r["ms"]) for t, r in tools.items()}
    b = med.get("berth")
    n = max((len(r["ms"]) for r in tools.values()), default=0)
    print("container lifecycle: create + start + wait + remove of /bin/true, no network;"
          " %d rounds, each tool once per round, order rotated" % n)
    row = "%-38s %9s %9s %9s  %-16s %s"
    print(row % ("tool", "median ms", "p90 ms", "min ms", "berth vs this", "goal"))
    print(row % ("-" * 38, "-" * 9, "-" * 9, "-" * 9, "-" * 16, "-" * 20))
    for t in rounds["order"]:
        r, m = tools[t], med[t]
        ratio = goal = ""
        if b is not None and m is not None and t != "berth":
            if t.startswith("podman"):
                ratio = speed(m, b)
                goal = ">= 5x faster %s" % verdict(m >= 5 * b)
            else:
                ratio = "%.2fx its time" % (b / m)
            if t == "conmon-runc":
                goal = "<= 1.3x %s" % verdict(b <= 1.3 * m)
        fails = " FAIL (%d errors)" % len(r["errors"]) if r["errors"] else ""
        print(row % (LABELS.get(t, t), fmt(m), fmt(pct(r["ms"], 90)),
                     fmt(min(r["ms"], default=None)), ratio, goal) + fails)
    if b is not None:
        print(row % ("seed's server (podman 1.2, issue 4)", fmt(seed), "", "", speed(seed, b),
                     ">= 2x faster %s" % verdict(seed >= 2 * b)))
    for why in rounds.get("skipped", {}).values():
        print("crun rows skipped: %s" % why)

    print("steps, median ms (p90):")
    for t in rounds["order"]:
        steps = tools[t]["steps"]
        if steps:
            print("  %-12s %s" % (t, ", ".join("%s %s (%s)" % (s, fmt(median(v)), fmt(pct(v, 90)))
                                              for s, v in steps.items())))
    gv = rounds.get("getversion_us", []) + rounds.get("getversion_us_after", [])
    if gv:
        print("client overhead: a GetVersion round trip on such a connection takes p50 %s us,"
              " p90 %s us (%d calls); a berth cycle makes 4 calls"
              % (fmt(median(gv), 0), fmt(pct(gv, 90), 0), len(gv)))


def report_lists(lists):
    print("list latency: 1 connection, sequential calls, to the last byte of each reply")
    row = "%-44s %5s %8s %8s %9s %9s  %s"
    print(row % ("call", "calls", "p50 ms", "p99 ms", "reply KB", "seed", "goal"))
    print(row % ("-" * 44, "-" * 5, "-" * 8, "-" * 8, "-" * 9, "-" * 9, "-" * 18))
    for entry in lists:
        us = entry.get("us", [])
        p50, p99 = median(us), pct(us, 99)
        goal = ""
        if entry.get("goal_ms"):
            ok = p50 is not None and p50 / 1e3 < entry["goal_ms"]
            goal = "p50 < %g ms %s" % (entry["goal_ms"], verdict(ok))
        fails = "  FAIL: " + entry["error"] if entry.get("error") else ""
        print(row % (entry["label"], len(us), fmt(p50 and p50 / 1e3, 2),
                     fmt(p99 and p99 / 1e3, 2), fmt(entry.get("bytes", 0) / 1024),
                     entry.get("seed", ""), goal) + fails)


def report_memory(rss):
    print("berthd memory (goal: under 100 MB with 1,000 containers)")
    for r in rss:
        rss_mb, hwm_mb = r["rss_kb"] / 1024, r["hwm_kb"] / 1024
        judged = r["n"] >= 1000
        print("  %-48s VmRSS %6.1f MB %-4s  VmHWM %6.1f MB %s"
              % (r["label"], rss_mb, verdict(rss_mb < 100) if judged else "",
                 hwm_mb, verdict(hwm_mb < 100) if judged else ""))


def cmd_report(args):
    rounds, lists, rss, notes = load_results(args.dir)
    report_rounds(rounds, args.seed_ms)
    if lists:
        print()
        report_lists(lists)
    if rss:
        print()
        report_memory(rss)
    if notes:
        print()
        print("\n".join(notes))
    return 0


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("bundle", help="unpack a docker-archive into an OCI bundle")
    p.add_argument("archive")
    p.add_argument("dir")

    p = sub.add_parser("rounds", help="the interleaved lifecycle rounds")
    p.add_argument("--out", required=True)
    p.add_argument("--rounds", type=int, default=30)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--work", required=True, help="directory for runtime state")
    p.add_argument("--bundle", required=True)
    p.add_argument("--conmon", default="/usr/bin/conmon")
    p.add_argument("--berth", help="berthd's socket")
    p.add_argument("--image", default="localhost/busybox:latest")
    p.add_argument("--crun", action="store_true", help="also crun, in a private mount ns")
    p.add_argument("--crun-skip", help="why crun is not measured")
    p.add_argument("--podman", help="podman REST service socket")
    p.add_argument("--podman-cmd", help="JSON argv of podman with its global options")
    p.add_argument("--podman-image", default="localhost/busybox:latest")
    p.add_argument("--getversion", type=int, default=200)

    p = sub.add_parser("agent")
    p.add_argument("--work", required=True)
    p.add_argument("--bundle", required=True)
    p.add_argument("--conmon", default="/usr/bin/conmon")

    for name in ("fill", "list", "clean"):
        p = sub.add_parser(name)
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--berth")
        g.add_argument("--podman")
        p.add_argument("--connections", type=int, default=4)
        if name == "fill":
            p.add_argument("--image", default="localhost/busybox:latest")
            p.add_argument("--count", type=int, required=True)
            p.add_argument("--exited", type=int, default=0)
        if name == "list":
            p.add_argument("--calls", type=int, default=200)
            p.add_argument("--expect", type=int)
            p.add_argument("--label", default="")
            p.add_argument("--goal-ms", type=float)
            p.add_argument("--seed", default="", help="the seed server's figure, as text")

    p = sub.add_parser("call", help="one varlink call; prints the reply's parameters")
    p.add_argument("berth")
    p.add_argument("method")
    p.add_argument("params", nargs="?", default="{}")

    p = sub.add_parser("report", help="the table, from lifecycle.sh's results directory")
    p.add_argument("dir")
    p.add_argument("--seed-ms", type=float, default=137.0)

    args = ap.parse_args(argv)
    fn = {"bundle": cmd_bundle, "rounds": cmd_rounds, "agent": cmd_agent, "fill": cmd_fill,
          "list": cmd_list, "call": cmd_call, "clean": cmd_clean,
          "report": cmd_report}[args.cmd]
    try:
        return fn(args)
    except (BenchError, OSError, http.client.HTTPException) as e:
        print("lifecycle_client.py %s: %s" % (args.cmd, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())
