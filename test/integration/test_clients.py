"""berthd driven by independent clients: the project's Go client (built on
Debian's varlink/go), Debian's varlink-go-certification and
varlink-go-interface-generator, and the `berth` CLI. Also the certification
interface's strictness, checked by hand over raw sockets."""

import glob
import json
import math
import os
import shutil
import uuid

import harness
from harness import Conn, DaemonTest, free_tcp_port, run_tool

SVC = "org.varlink.service"
CERT = "org.varlink.certification"
CERT_GO = "varlink-go-certification"
IDL_GEN = "varlink-go-interface-generator"


def need_tool(test, name):
    path = shutil.which(name)
    if path is None:
        test.fail("%s not found on PATH (Debian package varlink-go)" % name)
    return path


class GoClientTest(DaemonTest):

    def setUp(self):
        super().setUp()
        if not os.access(harness.ARGS.goclient, os.X_OK):
            self.fail("Go client not built: %s" % harness.ARGS.goclient)
        self.d = self.start_daemon()

    def go(self, *args, timeout=30):
        return run_tool([harness.ARGS.goclient, "-timeout", "20s",
                         "-address", self.d.address] + list(args),
                        timeout=timeout)

    def lines(self, r):
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def test_info(self):
        r = self.go("info")
        self.assertEqual(r.returncode, 0, r.stderr)
        (info,) = self.lines(r)
        for k in ("vendor", "product", "version", "url"):
            self.assertIsInstance(info[k], str)
        self.assertIn(SVC, info["interfaces"])
        self.assertIn("io.podman", info["interfaces"])

    def test_help_and_idl_syntax(self):
        gen = need_tool(self, IDL_GEN)
        r = self.go("help", "io.podman")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^interface io\.podman\s*$")
        workdir = self.path("idl")
        os.mkdir(workdir)
        idl = os.path.join(workdir, "io.podman.varlink")
        with open(idl, "w") as f:
            f.write(r.stdout)
        g = run_tool([gen, idl], cwd=workdir)
        self.assertEqual(g.returncode, 0,
                         "generator rejected the IDL:\n%s%s"
                         % (g.stdout, g.stderr))
        self.assertTrue(glob.glob(os.path.join(workdir, "*.go")),
                        "generator wrote no .go file")

    def test_help_of_builtin_interface(self):
        gen = need_tool(self, IDL_GEN)
        r = self.go("help", SVC)
        self.assertEqual(r.returncode, 0, r.stderr)
        workdir = self.path("idl")
        os.mkdir(workdir)
        idl = os.path.join(workdir, SVC + ".varlink")
        with open(idl, "w") as f:
            f.write(r.stdout)
        g = run_tool([gen, idl], cwd=workdir)
        self.assertEqual(g.returncode, 0, g.stdout + g.stderr)

    def test_call_get_version(self):
        r = self.go("call", "io.podman.GetVersion")
        self.assertEqual(r.returncode, 0, r.stderr)
        (reply,) = self.lines(r)
        self.assertEqual(reply["parameters"]["remote_api_version"], 1)
        self.assertFalse(reply["continues"])

    def test_call_with_parameters(self):
        r = self.go("call", SVC + ".GetInterfaceDescription",
                    '{"interface":"io.podman"}')
        self.assertEqual(r.returncode, 0, r.stderr)
        (reply,) = self.lines(r)
        self.assertIn("interface io.podman", reply["parameters"]["description"])

    def test_call_unknown_method(self):
        r = self.go("call", "io.podman.NoSuchMethod")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        (reply,) = self.lines(r)
        self.assertEqual(reply["error"], SVC + ".MethodNotFound")
        self.assertEqual(reply["parameters"]["method"], "NoSuchMethod")

    def test_call_not_implemented(self):
        r = self.go("call", "io.podman.ListPods")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        (reply,) = self.lines(r)
        self.assertEqual(reply["error"], SVC + ".MethodNotImplemented")

    def test_oneway(self):
        r = self.go("call", "-oneway", "io.podman.GetVersion")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "")
        # and the daemon is fine afterwards
        r = self.go("call", "io.podman.GetVersion")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_more_on_plain_method(self):
        r = self.go("call", "-more", "io.podman.GetVersion")
        self.assertEqual(r.returncode, 0, r.stderr)
        replies = self.lines(r)
        self.assertEqual(len(replies), 1, r.stdout)
        self.assertFalse(replies[0]["continues"])
        self.assertEqual(replies[0]["parameters"]["remote_api_version"], 1)

    def test_raw_then(self):
        r = self.go("call", "-raw", "-then", "io.podman.GetVersion",
                    "io.podman.GetVersion")
        self.assertEqual(r.returncode, 0, r.stderr)
        replies = self.lines(r)
        self.assertEqual(len(replies), 2, r.stdout)
        for reply in replies:
            self.assertEqual(reply["parameters"]["remote_api_version"], 1)

    def test_null_parameters(self):
        r = self.go("call", "-raw", "io.podman.GetVersion", "null")
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_unreachable_address(self):
        r = run_tool([harness.ARGS.goclient, "-timeout", "10s", "-address",
                      "unix:" + self.path("nothing.sock"), "info"])
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)


class CertificationTest(DaemonTest):
    """org.varlink.certification behind --varlink-certification."""

    def setUp(self):
        super().setUp()
        self.abstract = "unix:@berth-cert-%s" % uuid.uuid4().hex
        self.tcp = "tcp:127.0.0.1:%d" % free_tcp_port()
        self.addrs = [self.default_address, self.abstract, self.tcp]
        self.d = self.start_daemon(addresses=self.addrs,
                                   extra=["--varlink-certification"])
        for a in self.addrs:
            harness.connect_when_ready(a, self.d.proc)

    def conn(self, address=None):
        c = Conn(address or self.d.address)
        self.addCleanup(c.close)
        return c

    # --- Debian's reference client ------------------------------------------------

    def run_go_certification(self, address):
        tool = need_tool(self, CERT_GO)
        r = run_tool([tool, "-client", "-varlink", address], timeout=60)
        out = r.stdout + r.stderr
        lines = [l.rstrip() for l in r.stdout.splitlines() if l.strip()]
        # Its exit status is always 0: judge its output.
        self.assertTrue(lines, "no output from %s" % CERT_GO)
        self.assertEqual(lines[-1], "End: 'true'",
                         "certification on %s:\n%s" % (address, out))
        failed = [l for l in out.splitlines() if l.rstrip().endswith("failed")]
        self.assertEqual(failed, [], "certification on %s:\n%s"
                         % (address, out))

    def test_go_certification_unix_path(self):
        self.run_go_certification(self.default_address)

    def test_go_certification_abstract(self):
        self.run_go_certification(self.abstract)

    def test_go_certification_tcp(self):
        self.run_go_certification(self.tcp)

    def test_go_certification_address_with_parameters(self):
        self.run_go_certification(self.default_address + ";mode=0666")

    def test_interface_listed_and_described(self):
        c = self.conn()
        p = self.assertOk(c.request(SVC + ".GetInfo"))
        self.assertIn(CERT, p["interfaces"])
        p = self.assertOk(c.request(SVC + ".GetInterfaceDescription",
                                    {"interface": CERT}))
        self.assertRegex(p["description"],
                         r"(?m)^interface org\.varlink\.certification\s*$")

    # --- strictness by hand -------------------------------------------------------

    def start(self, c):
        p = self.assertOk(c.request(CERT + ".Start", {}))
        self.assertIsInstance(p.get("client_id"), str)
        self.assertTrue(p["client_id"])
        return p["client_id"]

    def test_unknown_client_id(self):
        c = self.conn()
        r = c.request(CERT + ".Test01", {"client_id": "no-such-client"})
        self.assertError(r, CERT + ".ClientIdError")

    def test_out_of_order_call(self):
        c = self.conn()
        cid = self.start(c)
        r = c.request(CERT + ".Test02", {"client_id": cid, "bool": True})
        self.assertError(r, CERT + ".CertificationError")
        self.assertIsInstance(r["parameters"].get("wants"), dict)
        self.assertIsInstance(r["parameters"].get("got"), dict)

    def test_test10_without_more(self):
        c = self.conn()
        cid = self.start(c)
        r = c.request(CERT + ".Test10", {"client_id": cid, "mytype": {}})
        self.assertError(r, SVC + ".ExpectedMore")

    def test_wrong_value(self):
        c = self.conn()
        cid = self.start(c)
        p = self.assertOk(c.request(CERT + ".Test01", {"client_id": cid}))
        self.assertIs(p.get("bool"), True)
        r = c.request(CERT + ".Test02", {"client_id": cid, "bool": False})
        self.assertError(r, CERT + ".CertificationError")
        wants, got = r["parameters"].get("wants"), r["parameters"].get("got")
        self.assertIsInstance(wants, dict, r)
        self.assertIsInstance(got, dict, r)
        self.assertIs(wants.get("parameters", {}).get("bool"), True, r)
        self.assertIs(got.get("parameters", {}).get("bool"), False, r)

    def test_wrong_flags(self):
        c = self.conn()
        cid = self.start(c)
        # Test01 sent with `more`: the call as a whole must match
        r = c.request(CERT + ".Test01", {"client_id": cid}, more=True)
        self.assertError(r, CERT + ".CertificationError")

    def test_full_sequence_by_hand(self):
        """The whole protocol as the strict Python reference client runs it,
        with the flags it sends, and every reply checked."""
        c = self.conn(self.tcp)
        cid = self.start(c)

        def call(method, params, **flags):
            params = dict(params, client_id=cid)
            return self.assertOk(c.request(CERT + "." + method, params,
                                           **flags))

        self.assertEqual(call("Test01", {}), {"bool": True})
        self.assertEqual(call("Test02", {"bool": True}), {"int": 1})
        p = call("Test03", {"int": 1})
        self.assertEqual(set(p), {"float"})
        self.assertEqual(p["float"], 1.0)
        # a float that arrives as an integer literal (as Go sends 1.0)
        self.assertEqual(call("Test04", {"float": 1}), {"string": "ping"})
        p = call("Test05", {"string": "ping"})
        self.assertEqual(p, {"bool": False, "int": 2, "float": math.pi,
                             "string": "a lot of string"})
        s = call("Test06", p)
        self.assertEqual(s, {"struct": p})
        m = call("Test07", s)
        self.assertEqual(m, {"map": {"foo": "Foo", "bar": "Bar"}})
        st = call("Test08", m)
        self.assertEqual(st, {"set": {"one": {}, "two": {}, "three": {}}})
        mt = call("Test09", st)["mytype"]
        self.assertEqual(mt["object"], {
            "method": CERT + ".Test09",
            "parameters": {"map": {"foo": "Foo", "bar": "Bar"}}})
        self.assertEqual(mt["enum"], "two")
        self.assertEqual(mt["struct"], {"first": 1, "second": "2"})
        self.assertEqual(mt["array"], ["one", "two", "three"])
        self.assertEqual(mt["dictionary"], {"foo": "Foo", "bar": "Bar"})
        self.assertEqual(mt["stringset"], {"one": {}, "two": {}, "three": {}})
        self.assertIsNone(mt.get("nullable"))
        self.assertIsNone(mt.get("nullable_array_struct"))
        self.assertEqual(mt["interface"], {
            "foo": [None, {"foo": "foo", "bar": "bar"}, None,
                    {"one": "foo", "two": "bar"}],
            "anon": {"foo": True, "bar": False}})
        c.call(CERT + ".Test10", {"client_id": cid, "mytype": mt}, more=True)
        got = []
        for n in range(1, 11):
            r = c.recv()
            self.assertNotIn("error", r, r)
            self.assertEqual(r["parameters"], {"string": "Reply number %d" % n})
            self.assertEqual(bool(r.get("continues")), n < 10, r)
            got.append(r["parameters"]["string"])
        c.call(CERT + ".Test11", {"client_id": cid, "last_more_replies": got},
               oneway=True)
        self.assertEqual(call("End", {}), {"all_ok": True})
        # the id is forgotten after End
        r = c.request(CERT + ".End", {"client_id": cid})
        self.assertError(r, CERT + ".ClientIdError")
        self.assertTrue(c.nothing_pending(0.3), c.buf)

    def test_test11_out_of_order(self):
        # Test11 is oneway in the protocol; sent as a normal call out of
        # order it must get CertificationError, and for an unknown id
        # ClientIdError
        c = self.conn()
        cid = self.start(c)
        r = c.request(CERT + ".Test11", {"client_id": cid,
                                         "last_more_replies": []})
        self.assertError(r, CERT + ".CertificationError")
        r = c.request(CERT + ".Test11", {"client_id": "nope",
                                         "last_more_replies": []})
        self.assertError(r, CERT + ".ClientIdError")


class CliTest(DaemonTest):
    """The berth command-line client."""

    def setUp(self):
        super().setUp()
        self.d = self.start_daemon()

    def berth(self, *args, address=None):
        env = dict(os.environ)
        env.pop("BERTH_ADDRESS", None)
        env.pop("PODMAN_VARLINK_ADDRESS", None)
        return run_tool([harness.ARGS.berth, "--address",
                         address or self.d.address] + list(args),
                        timeout=30, env=env)

    def server_version(self):
        with self.d.connect() as c:
            return self.assertVersionReply(c.request("io.podman.GetVersion"))

    def test_version(self):
        r = self.berth("version")
        self.assertEqual(r.returncode, 0, r.stderr)
        v = self.server_version()
        self.assertIn(v["version"], r.stdout)
        self.assertRegex(r.stdout, r"(?m)^Server:")
        self.assertRegex(r.stdout, r"(?m)^\s+remote_api_version: 1$")

    def test_address_equals_form_and_env(self):
        r = run_tool([harness.ARGS.berth, "--address=" + self.d.address,
                      "version"], timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        env = dict(os.environ, BERTH_ADDRESS=self.d.address)
        env.pop("PODMAN_VARLINK_ADDRESS", None)
        r = run_tool([harness.ARGS.berth, "version"], timeout=30, env=env)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_info(self):
        r = self.berth("info")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("graph_root: " + self.root, r.stdout)

    def test_call_get_version(self):
        r = self.berth("call", "GetVersion")
        self.assertEqual(r.returncode, 0, r.stderr)
        (line,) = r.stdout.splitlines()
        self.assertEqual(json.loads(line)["remote_api_version"], 1)
        r = self.berth("call", "io.podman.GetVersion", "{}")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["remote_api_version"], 1)

    def test_call_not_implemented(self):
        r = self.berth("call", "io.podman.ListPods")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(SVC + ".MethodNotImplemented", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_call_unknown_method(self):
        r = self.berth("call", "io.podman.Nope")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(SVC + ".MethodNotFound", r.stderr)

    def test_call_oneway(self):
        r = self.berth("call", "--oneway", "GetVersion")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "")

    def test_call_more_on_plain_method(self):
        r = self.berth("call", "--more", "GetVersion")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(len(r.stdout.splitlines()), 1, r.stdout)

    def test_unreachable_daemon(self):
        r = self.berth("version", address="unix:/nonexistent")
        self.assertEqual(r.returncode, 1, r.stdout + r.stderr)
        self.assertTrue(r.stderr.strip())

    def test_help_interface(self):
        r = self.berth("help", "io.podman")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertRegex(r.stdout, r"(?m)^interface io\.podman\s*$")
        self.assertRegex(r.stdout, r"(?m)^method GetVersion\(\)")
        with self.d.connect() as c:
            p = self.assertOk(c.request(SVC + ".GetInterfaceDescription",
                                        {"interface": "io.podman"}))
        self.assertEqual(r.stdout.rstrip("\n"), p["description"].rstrip("\n"))

    def test_help_lists_interfaces(self):
        r = self.berth("help")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("io.podman", r.stdout)
        self.assertIn(SVC, r.stdout)

    def test_help_unknown_interface(self):
        r = self.berth("help", "org.example.nope")
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn(SVC + ".InterfaceNotFound", r.stderr)

    def test_bad_json_argument(self):
        for arg in ("{bad", "[1]", "3"):
            r = self.berth("call", "GetVersion", arg)
            self.assertEqual(r.returncode, 1, "%r: %s" % (arg, r.stderr))

    def test_usage_errors(self):
        r = self.berth()
        self.assertEqual(r.returncode, 1)
        r = self.berth("frobnicate")
        self.assertEqual(r.returncode, 1)
        r = self.berth("call", "--bogus", "GetVersion")
        self.assertEqual(r.returncode, 1)


if __name__ == "__main__":
    harness.main()
