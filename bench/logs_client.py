#!/usr/bin/env python3
"""Python side of bench/logs.sh: containers, stats watchers and the report.

    logs_client.py create  --berth SOCK --image IMG --shell CMD [--count N] [--start]
    logs_client.py stats   --berth SOCK --pid PID --ids ID... [--watchers 5] [--seconds 10]
    logs_client.py report  DIR

The log streams themselves are followed and checked by berth-logs-follow (C++:
a Python follower would cost more CPU than the daemon it measures). `create`
prints one line per container: its ID and its k8s-file log path. `stats` holds
WATCHERS GetContainerStats calls with `more` per container, each on its own
connection, and reads berthd's CPU time from /proc over a quiet window before
them, the window with them, and a window after they hung up. `report` prints
the table of everything logs.sh left in DIR.
"""

import argparse
import json
import os
import selectors
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lifecycle_client as lc  # noqa: E402  (its varlink client and statistics)

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """utime + stime of the whole process, exited threads included."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


# ---------------------------------------------------------------- create

def cmd_create(args):
    vl = lc.Varlink(args.berth)
    for _ in range(args.count):
        cid = vl.call("io.podman.CreateContainer",
                      {"create": {"image": args.image,
                                  "command": ["sh", "-c", args.shell]}})["container"]
        inspect = json.loads(vl.call("io.podman.InspectContainer", {"name": cid})["container"])
        if args.start:
            vl.call("io.podman.StartContainer", {"name": cid})
        print(cid, inspect["LogPath"])
    vl.close()
    return 0


# ---------------------------------------------------------------- stats

class Watcher:
    """One GetContainerStats call with `more` on a connection of its own."""

    def __init__(self, sock_path, cid):
        self.cid = cid
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(sock_path)
        call = {"method": "io.podman.GetContainerStats", "parameters": {"name": cid},
                "more": True}
        self.sock.sendall(json.dumps(call).encode() + b"\0")
        self.sock.setblocking(False)
        self.pending = b""
        self.replies = []  # arrival times (monotonic)
        self.error = None

    def on_readable(self):
        data = self.sock.recv(1 << 16)
        if not data:
            self.error = self.error or "berthd closed the connection"
            return False
        now = time.monotonic()
        self.pending += data
        while b"\0" in self.pending:
            msg, self.pending = self.pending.split(b"\0", 1)
            reply = json.loads(msg)
            if "error" in reply:
                self.error = "%s: %s" % (reply["error"], json.dumps(reply.get("parameters")))
                return False
            if reply.get("parameters", {}).get("container", {}).get("id") != self.cid:
                self.error = "a reply for another container: %s" % msg[:200]
            self.replies.append(now)
            if not reply.get("continues"):
                self.error = self.error or "the stream ended"
                return False
        return True


def pump(sel, seconds):
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return
        for key, _ in sel.select(left):
            w = key.data
            if not w.on_readable():
                sel.unregister(w.sock)


def cpu_window(pid, seconds, sel=None):
    """berthd's CPU over `seconds`, as a share of one core."""
    t0, c0 = time.monotonic(), cpu_seconds(pid)
    if sel is None:
        time.sleep(seconds)
    else:
        pump(sel, seconds)
    t1, c1 = time.monotonic(), cpu_seconds(pid)
    return {"cpu_s": c1 - c0, "seconds": t1 - t0, "pct": 100 * (c1 - c0) / (t1 - t0)}


def cmd_stats(args):
    out = {"containers": len(args.ids), "watchers": args.watchers * len(args.ids),
           "idle_before": cpu_window(args.pid, args.idle)}
    sel = selectors.DefaultSelector()
    watchers = []
    for cid in args.ids:
        for _ in range(args.watchers):
            w = Watcher(args.berth, cid)
            watchers.append(w)
            sel.register(w.sock, selectors.EVENT_READ, w)
    # Every watcher has its first reply (the samplers run) before the window.
    settle = time.monotonic() + 5
    while time.monotonic() < settle and any(not w.replies and not w.error for w in watchers):
        pump(sel, 0.05)
    t0 = time.monotonic()
    out["watched"] = cpu_window(args.pid, args.seconds, sel)
    t1 = time.monotonic()
    counts = [sum(1 for t in w.replies if t0 <= t < t1) for w in watchers]
    out["replies_in_window"] = {"min": min(counts), "max": max(counts), "sum": sum(counts)}
    out["errors"] = [w.error for w in watchers if w.error][:5]
    for w in watchers:
        w.sock.close()
    sel.close()
    time.sleep(0.5)  # the hang-ups reach berthd, the samplers stop
    out["idle_after"] = cpu_window(args.pid, args.idle)
    # One reply a second: a watcher that missed two or more was starved.
    if min(counts) < int(args.seconds) - 1 and not out["errors"]:
        out["errors"] = ["a watcher got only %d replies in %.0f s" % (min(counts), args.seconds)]
    print(json.dumps(out))
    return 1 if out["errors"] else 0


# ---------------------------------------------------------------- report

MB = 1e6
WORKLOADS = {"A": "MiB of 16-byte lines", "B": "MiB of 64 KiB lines"}
META = {"bytes": 0}  # logs.sh's meta.json: payload bytes of A and of B


def load_runs(d):
    """run-W-ENGINE-R.json (followed, or "alone": no follower) and
    replay-W-ENGINE-R.json (the finished log read again), as logs.sh leaves
    them; a failed run's file is empty."""
    runs = []
    for name in sorted(os.listdir(d)):
        kind = name.split("-", 1)[0]
        if kind not in ("run", "replay") or not name.endswith(".json"):
            continue
        with open(os.path.join(d, name)) as f:
            text = f.read().strip()
        w, eng, r = name[len(kind) + 1:-5].split("-")
        run = json.loads(text) if text else {}
        run.update({"kind": kind, "workload": w, "engine": eng, "round": int(r)})
        runs.append(run)
    return runs


def figures(run):
    """The table's figures of one run (None if it failed)."""
    if "last_write_ns" not in run:
        return None
    span = (run["last_write_ns"] - run["first_write_ns"]) / 1e9
    if run["engine"] == "alone":
        return {"writer_mbs": META["bytes"] / MB / span if span > 0 else None,
                "file_lines": run["file_lines"]}
    wall = run["wall_s"]
    if run["engine"] == "berth":
        growth_kb = run["hwm_after_kb"] - run["rss_before_kb"]
    else:
        growth_kb = run["maxrss_kb"] - run["rss_at_first_line_kb"]
    follow = run["kind"] == "run"
    return {"mbs": run["payload_bytes"] / MB / wall,
            "lps": run["lines"] / wall,
            "writer_mbs": run["expected_bytes"] / MB / span if follow and span > 0 else None,
            "lag_ms": run["lag_ms"] if follow else None,
            "cpu_pct": 100 * run["cpu_s"] / run["cpu_window_s"] if run["cpu_window_s"] else None,
            "cpu_s": run["cpu_s"],
            "rss_mb": growth_kb / 1024,
            "lost": run["expected_lines"] - run["lines"] + run["bad_lines"],
            "file_lines": run.get("file_lines")}


def med(runs, key):
    return lc.median([f[key] for f in runs if f.get(key) is not None])


def summarise(runs, kind, workload, engine):
    chosen = [r for r in runs if (r["kind"], r["workload"], r["engine"]) ==
              (kind, workload, engine)]
    figs = [f for f in map(figures, chosen) if f]
    if not figs:
        return None
    out = {k: med(figs, k) for k in figs[0]}
    if "lost" in out:
        out["lost"] = max(f["lost"] for f in figs)
    out["runs"], out["failed"] = len(figs), len(chosen) - len(figs)
    return out


def better(b, p, key, higher):
    if b is None or p is None or b.get(key) is None or p.get(key) is None:
        return None
    if key == "lost" and b["lost"] == 0 == p["lost"]:
        return True  # nothing lost by either: not behind
    return b[key] > p[key] if higher else b[key] < p[key]


COMPARED = (("mbs", "MB/s", True), ("lps", "lines/s", True), ("cpu_s", "CPU s", False),
            ("rss_mb", "RSS growth", False), ("lag_ms", "lag", False), ("lost", "lost", False))
ROW = "%-9s %-7s %8s %11s %9s %8s %8s %7s %9s %7s  %s"


def berth_goals(s):
    return ", ".join([
        "no loss %s" % ("ok" if s["lost"] == 0 else "FAIL"),
        ">= 200 MB/s %s" % lc.verdict(s["mbs"] >= 200),
        "< 1 core %s" % lc.verdict(s["cpu_pct"] is not None and s["cpu_pct"] < 100),
        "RSS < 32 MB %s" % lc.verdict(s["rss_mb"] < 32)])


def report_table(runs, kind, ahead, losses):
    print(ROW % ("workload", "engine", "MB/s", "lines/s", "writer", "lag ms", "CPU %",
                 "CPU s", "RSS +MB", "lost", "goals"))
    print(ROW % tuple("-" * n for n in (9, 7, 8, 11, 9, 8, 8, 7, 9, 7, 30)))
    for w in WORKLOADS:
        b, p = summarise(runs, kind, w, "berth"), summarise(runs, kind, w, "podman")
        label = w
        alone = summarise(runs, kind, w, "alone")
        if alone:
            print(ROW % (w, "none", "", "", lc.fmt(alone["writer_mbs"]), "", "", "", "", "",
                         "conmon alone under berthd, no follower"))
            label = ""
        for eng, s in (("berth", b), ("podman", p)):
            if s is None:
                continue
            if s["lost"]:
                losses.append("%s %s %s: %d lines lost or changed (worst round); the log file"
                              " held %s whole lines" % (kind, w, eng, s["lost"], s["file_lines"]))
            goals = berth_goals(s) if eng == "berth" else ""
            for key, what, higher in COMPARED if eng == "berth" else ():
                verdict = better(b, p, key, higher)
                if verdict is not None:
                    ahead.append(("%s %s %s" % (kind, w, what), verdict))
            failed = " (%d runs failed)" % s["failed"] if s["failed"] else ""
            print(ROW % (label, eng, lc.fmt(s["mbs"]), lc.fmt(s["lps"], 0),
                         lc.fmt(s["writer_mbs"]), lc.fmt(s["lag_ms"]), lc.fmt(s["cpu_pct"]),
                         lc.fmt(s["cpu_s"], 2), lc.fmt(s["rss_mb"]), s["lost"], goals) + failed)
            label = ""


def report_throughput(runs, ahead):
    losses = []
    print("follow: payload bytes / (first line written -> final reply); medians over rounds;"
          " MB = 10^6 bytes")
    report_table(runs, "run", ahead, losses)
    if any(r["kind"] == "replay" for r in runs):
        print()
        print("replay: the finished log read again from its start (berth: GetContainerLogs"
              " with more on the exited container; podman: podman logs), request -> end")
        report_table(runs, "replay", ahead, losses)
    print()
    for w, text in WORKLOADS.items():
        print("  %s: %d %s" % (w, META["bytes"] >> 20, text))
    for text in losses:
        print("  " + text)
    print("  writer: the payload over the span conmon stamped (first to last line), the"
          " ceiling of a follower;\n  lag: final reply (podman: its exit) after conmon read"
          " the last line;\n  CPU: the follower (berthd, or the podman logs process) from"
          " its first line to the end;\n  RSS +: berthd's VmHWM over its VmRSS before the"
          " call (podman logs: its peak over its RSS at the first line)")


def report_latency(d, ahead):
    lat = {}
    for eng in ("berth", "podman"):
        path = os.path.join(d, "latency-%s.json" % eng)
        if os.path.exists(path):
            with open(path) as f:
                text = f.read().strip()
            lat[eng] = json.loads(text) if text else {}
    if not lat:
        return
    print("latency: a line every 10 ms; client receive time - conmon's timestamp on the line")
    row = "%-7s %6s %8s %8s %8s %7s  %s"
    print(row % ("engine", "lines", "p50 ms", "p99 ms", "max ms", "lost", "goal"))
    print(row % tuple("-" * n for n in (7, 6, 8, 8, 8, 7, 20)))
    for eng, r in lat.items():
        if "p99_ms" not in r:
            print(row % (eng, "-", "-", "-", "-", "-", "FAIL (no result)"))
            continue
        lost = r["expected_lines"] - r["lines"] + r["bad_lines"]
        goal = "p99 < 10 ms %s" % lc.verdict(r["p99_ms"] < 10) if eng == "berth" else ""
        print(row % (eng, r["lines"], lc.fmt(r["p50_ms"], 2), lc.fmt(r["p99_ms"], 2),
                     lc.fmt(r["max_ms"], 2), lost, goal))
    b, p = lat.get("berth", {}), lat.get("podman", {})
    for key in ("p50_ms", "p99_ms"):
        if key in b and key in p:
            ahead.append(("latency %s" % key[:3], b[key] < p[key]))


def report_stats(d):
    path = os.path.join(d, "stats.json")
    if not os.path.exists(path):
        return
    with open(path) as f:
        text = f.read().strip()
    if not text:
        print("stats: FAIL (no result)")
        return
    s = json.loads(text)
    w = s["watched"]
    print("stats: %d watchers (GetContainerStats, more) of %d running containers, each on its"
          " own connection, %.0f s" % (s["watchers"], s["containers"], w["seconds"]))
    print("  berthd CPU %.2f %% of one core (%.2f s)  goal < 5 %% %s;"
          " before the watchers %.2f %%, after they hung up %.2f %%"
          % (w["pct"], w["cpu_s"], lc.verdict(w["pct"] < 5), s["idle_before"]["pct"],
             s["idle_after"]["pct"]))
    r = s["replies_in_window"]
    print("  replies in the window: %d (%d-%d per watcher)%s"
          % (r["sum"], r["min"], r["max"],
             "  FAIL: " + "; ".join(s["errors"]) if s["errors"] else ""))


def cmd_report(args):
    ahead = []
    runs = load_runs(args.dir)
    meta = os.path.join(args.dir, "meta.json")
    if os.path.exists(meta):
        with open(meta) as f:
            META.update(json.load(f))
    if runs:
        report_throughput(runs, ahead)
        print()
    report_latency(args.dir, ahead)
    print()
    report_stats(args.dir)
    if ahead:
        behind = [k for k, ok in ahead if not ok]
        print()
        print("ahead of podman on every figure: %s%s"
              % (lc.verdict(not behind), " (behind on: %s)" % ", ".join(behind) if behind else ""))
    notes = lc.read_text(os.path.join(args.dir, "notes.txt"))
    if notes:
        print()
        print(notes)
    return 0


# ---------------------------------------------------------------- main

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    p = sub.add_parser("create", help="create containers running a shell command")
    p.add_argument("--berth", required=True)
    p.add_argument("--image", default="localhost/busybox:latest")
    p.add_argument("--shell", required=True)
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--start", action="store_true")

    p = sub.add_parser("stats", help="stats watchers and berthd's CPU")
    p.add_argument("--berth", required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--ids", nargs="+", required=True)
    p.add_argument("--watchers", type=int, default=5, help="per container")
    p.add_argument("--seconds", type=float, default=10)
    p.add_argument("--idle", type=float, default=3, help="quiet windows before and after")

    p = sub.add_parser("report", help="the table, from logs.sh's results directory")
    p.add_argument("dir")

    args = ap.parse_args(argv)
    fn = {"create": cmd_create, "stats": cmd_stats, "report": cmd_report}[args.cmd]
    try:
        return fn(args)
    except lc.API_ERRORS as e:
        print("logs_client.py %s: %s" % (args.cmd, e), file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
