"""The varlink protocol as berthd speaks it, driven over raw sockets.

See /work/shared/api/varlink-protocol.md (framing, calls, replies, errors,
oneway, pipelining) and wire-names.md (GetVersion, GetInfo).
"""

import json
import random
import socket
import time

import harness
from harness import ConnectionClosed, DaemonTest

SVC = "org.varlink.service"
INVALID = SVC + ".InvalidParameter"
MB = 1 << 20


class ProtocolTest(DaemonTest):

    def setUp(self):
        super().setUp()
        self.d = self.start_daemon()

    def conn(self):
        c = self.d.connect()
        self.addCleanup(c.close)
        return c

    def assertAlive(self):
        """The daemon still runs and answers on a new connection."""
        self.assertTrue(self.d.running(), "berthd is gone")
        with self.d.connect() as c:
            self.assertVersionReply(c.request("io.podman.GetVersion"))

    # --- org.varlink.service ------------------------------------------------------

    def test_service_get_info(self):
        p = self.assertOk(self.conn().request(SVC + ".GetInfo"))
        for key in ("vendor", "product", "version", "url"):
            self.assertIsInstance(p.get(key), str, "%s in %r" % (key, p))
        self.assertIsInstance(p.get("interfaces"), list)
        self.assertIn(SVC, p["interfaces"])
        self.assertIn("io.podman", p["interfaces"])

    def test_interface_description(self):
        p = self.assertOk(self.conn().request(
            SVC + ".GetInterfaceDescription", {"interface": "io.podman"}))
        desc = p.get("description")
        self.assertIsInstance(desc, str)
        self.assertTrue(desc.startswith("#") or
                        desc.startswith("interface io.podman"),
                        "description starts with %r" % desc[:80])
        self.assertRegex(desc, r"(?m)^interface io\.podman\s*$")
        self.assertRegex(desc, r"(?m)^method GetVersion\(\)")

    def test_interface_description_of_unknown_interface(self):
        r = self.conn().request(SVC + ".GetInterfaceDescription",
                                {"interface": "org.example.nope"})
        self.assertError(r, SVC + ".InterfaceNotFound",
                         {"interface": "org.example.nope"})

    # --- errors in the call header ------------------------------------------------

    def test_unknown_interface(self):
        r = self.conn().request("org.example.nope.Method", {})
        self.assertError(r, SVC + ".InterfaceNotFound",
                         {"interface": "org.example.nope"})

    def test_unknown_method(self):
        c = self.conn()
        self.assertError(c.request("io.podman.NoSuchMethod", {}),
                         SVC + ".MethodNotFound", {"method": "NoSuchMethod"})
        self.assertError(c.request(SVC + ".Nope"),
                         SVC + ".MethodNotFound", {"method": "Nope"})

    def test_method_without_dot(self):
        r = self.conn().request("GetVersion")
        self.assertError(r, INVALID, {"parameter": "method"})

    def test_bad_header_values(self):
        c = self.conn()
        for msg, field in (({"parameters": {}}, "method"),
                           ({"method": 5}, "method"),
                           ({"method": ""}, "method"),
                           ({"method": "io.podman.GetVersion", "more": "yes"},
                            "more"),
                           ({"method": "io.podman.GetVersion", "oneway": 1},
                            "oneway")):
            with self.subTest(msg=msg):
                c.send(msg)
                self.assertError(c.recv(), INVALID, {"parameter": field})
        self.assertVersionReply(c.request("io.podman.GetVersion"))

    def test_method_not_implemented(self):
        r = self.conn().request("io.podman.ListPods", {})
        self.assertError(r, SVC + ".MethodNotImplemented",
                         {"method": "io.podman.ListPods"})

    # --- parameter types ----------------------------------------------------------

    def test_wrong_parameter_type(self):
        c = self.conn()
        self.assertError(c.request("io.podman.GetContainer", {"id": 5}),
                         INVALID, {"parameter": "id"})
        self.assertError(c.request("io.podman.GetContainer", {"id": ["x"]}),
                         INVALID, {"parameter": "id"})
        self.assertError(
            c.request(SVC + ".GetInterfaceDescription", {"interface": True}),
            INVALID, {"parameter": "interface"})
        # the connection is still usable after all that
        self.assertVersionReply(c.request("io.podman.GetVersion"))

    def test_wrong_nested_parameter_type(self):
        r = self.conn().request("io.podman.CreateContainer",
                                {"create": {"resources": {"memory": "x"}}})
        self.assertError(r, INVALID,
                         {"parameter": "create.resources.memory"})

    def test_parameters_not_an_object(self):
        c = self.conn()
        for params in ([], "x", 1):
            self.assertError(
                c.request(SVC + ".GetInterfaceDescription", params),
                INVALID, {"parameter": "parameters"})

    def test_integer_out_of_range(self):
        # Valid JSON numbers that no int64 holds: InvalidParameter naming the
        # field, the connection stays open.
        for value in ("9223372036854775808", "-9223372036854775809",
                      "18446744073709551616", "1" + "0" * 30, "1.5"):
            with self.subTest(value=value):
                c = self.conn()
                c.send_raw(b'{"method":"io.podman.KillContainer","parameters":'
                           b'{"name":"x","signal":%s}}\0' % value.encode())
                self.assertError(c.recv(), INVALID, {"parameter": "signal"})
                c.send_raw(b'{"method":"io.podman.CreateContainer",'
                           b'"parameters":{"create":{"resources":'
                           b'{"memory":%s}}}}\0' % value.encode())
                self.assertError(c.recv(), INVALID,
                                 {"parameter": "create.resources.memory"})
                self.assertVersionReply(c.request("io.podman.GetVersion"))

    def test_unknown_parameter_fields_ignored(self):
        c = self.conn()
        self.assertVersionReply(
            c.request("io.podman.GetVersion", {"bogus": 1, "x": {"y": []}}))
        p = self.assertOk(c.request(SVC + ".GetInterfaceDescription",
                                    {"interface": "io.podman", "bogus": True}))
        self.assertIn("interface io.podman", p["description"])

    def test_unknown_header_keys_ignored(self):
        c = self.conn()
        c.send({"method": "io.podman.GetVersion", "parameters": {},
                "com.example.vendor": {"a": [1, 2]}, "zzz": None})
        self.assertVersionReply(c.recv())

    def test_parameters_null_or_absent(self):
        c = self.conn()
        for method in ("io.podman.GetVersion", SVC + ".GetInfo"):
            c.send({"method": method, "parameters": None})
            self.assertOk(c.recv())
            c.send({"method": method})
            self.assertOk(c.recv())
            c.send({"method": method, "parameters": {}})
            self.assertOk(c.recv())

    def test_explicit_false_flags(self):
        c = self.conn()
        c.send({"method": "io.podman.GetVersion", "parameters": {},
                "more": False, "oneway": False, "upgrade": False})
        self.assertVersionReply(c.recv())
        c.send({"method": "io.podman.GetVersion", "more": False})
        self.assertVersionReply(c.recv())

    # --- oneway, more -------------------------------------------------------------

    def test_oneway_gets_no_reply(self):
        c = self.conn()
        # a oneway call to an unknown method: its error is not sent
        c.call("io.podman.NoSuchMethod", {}, oneway=True)
        c.call("org.example.nope.X", oneway=True)
        c.call("NoDot", oneway=True)
        c.call("io.podman.GetContainer", {"id": 5}, oneway=True)
        c.call("io.podman.ListContainers", {}, oneway=True)
        # and a successful one
        c.call("io.podman.GetVersion", oneway=True)
        c.call(SVC + ".GetInterfaceDescription", {"interface": "io.podman"},
               oneway=True)
        self.assertVersionReply(c.request("io.podman.GetVersion"))
        self.assertTrue(c.nothing_pending(0.5), "extra data: %r" % c.buf)

    def test_more_on_plain_method(self):
        c = self.conn()
        r = c.request("io.podman.GetVersion", {}, more=True)
        self.assertVersionReply(r)
        self.assertNotIn("continues", r)
        # exactly one reply: the next message answers the next call
        r = c.request(SVC + ".GetInterfaceDescription",
                      {"interface": "org.example.nope"})
        self.assertError(r, SVC + ".InterfaceNotFound")
        self.assertTrue(c.nothing_pending(0.3), "extra data: %r" % c.buf)

    # --- pipelining and split writes ----------------------------------------------

    def pipeline_batch(self, n, seed):
        """n calls of mixed kinds and the replies expected, in order."""
        rnd = random.Random(seed)
        calls, expected = [], []
        for i in range(n):
            kind = rnd.choice(["version", "nomethod", "noiface", "oneway",
                               "oneway_err", "badparam", "desc"])
            if kind == "version":
                calls.append({"method": "io.podman.GetVersion"})
                expected.append(("ok", "remote_api_version"))
            elif kind == "nomethod":
                calls.append({"method": "io.podman.Nope%d" % i,
                              "parameters": {}})
                expected.append((SVC + ".MethodNotFound",
                                 {"method": "Nope%d" % i}))
            elif kind == "noiface":
                calls.append({"method": SVC + ".GetInterfaceDescription",
                              "parameters": {"interface": "org.x%d" % i}})
                expected.append((SVC + ".InterfaceNotFound",
                                 {"interface": "org.x%d" % i}))
            elif kind == "oneway":
                calls.append({"method": "io.podman.GetVersion",
                              "oneway": True})
            elif kind == "oneway_err":
                calls.append({"method": "io.podman.Nope%d" % i,
                              "oneway": True})
            elif kind == "badparam":
                calls.append({"method": "io.podman.GetContainer",
                              "parameters": {"id": i}})
                expected.append((INVALID, {"parameter": "id"}))
            else:
                calls.append({"method": SVC + ".GetInterfaceDescription",
                              "parameters": {"interface": "io.podman"},
                              "more": False})
                expected.append(("ok", "description"))
        data = b"".join(json.dumps(m).encode() + b"\0" for m in calls)
        return data, expected

    def check_replies(self, c, expected):
        for i, (what, detail) in enumerate(expected):
            r = c.recv()
            if what == "ok":
                p = self.assertOk(r)
                self.assertIn(detail, p, "reply %d: %r" % (i, r))
            else:
                self.assertError(r, what, detail)
        self.assertTrue(c.nothing_pending(0.3), "extra data: %r" % c.buf)

    def test_pipelined_calls_in_one_write(self):
        c = self.conn()
        data, expected = self.pipeline_batch(50, seed=1)
        c.send_raw(data)
        self.check_replies(c, expected)

    def test_large_pipeline_before_reading(self):
        # many calls whose replies exceed the socket buffers before the
        # client reads anything
        c = self.conn()
        call = json.dumps({"method": SVC + ".GetInterfaceDescription",
                           "parameters": {"interface": "io.podman"}})
        n = 200
        c.send_raw((call.encode() + b"\0") * n)
        for _ in range(n):
            self.assertIn("description", self.assertOk(c.recv()))

    def test_call_sent_byte_by_byte(self):
        c = self.conn()
        data = json.dumps({"method": "io.podman.GetVersion",
                           "parameters": {}}).encode() + b"\0"
        for i in range(len(data)):
            c.send_raw(data[i:i + 1])
            time.sleep(0.002)
        self.assertVersionReply(c.recv())

    def test_calls_split_at_arbitrary_boundaries(self):
        c = self.conn()
        data, expected = self.pipeline_batch(20, seed=2)
        rnd = random.Random(3)
        cuts = sorted(rnd.sample(range(1, len(data)), 40))
        pieces = [data[a:b] for a, b in zip([0] + cuts, cuts + [len(data)])]
        for p in pieces:
            c.send_raw(p)
            time.sleep(0.003)
        self.check_replies(c, expected)

    # --- bad input closes the connection ------------------------------------------

    def assertClosedWithoutReply(self, c):
        self.assertTrue(c.wait_closed(harness.RECV_TIMEOUT),
                        "connection still open")

    def test_malformed_json_closes_connection(self):
        other = self.conn()
        self.assertVersionReply(other.request("io.podman.GetVersion"))
        c = self.conn()
        c.send_raw(b'{"method": "io.podman.GetVersion",\0')
        self.assertClosedWithoutReply(c)
        self.assertVersionReply(other.request("io.podman.GetVersion"))
        self.assertAlive()

    def test_non_object_closes_connection(self):
        other = self.conn()
        for data in (b'[{"method": "io.podman.GetVersion"}]\0', b'"x"\0',
                     b"42\0", b"null\0", b"\0"):
            c = self.conn()
            c.send_raw(data)
            self.assertClosedWithoutReply(c)
            self.assertVersionReply(other.request("io.podman.GetVersion"))

    def test_bad_json_after_good_call(self):
        # Calls before the bad message are answered, then the connection
        # closes. Both a reply made on the I/O thread and one from an actor.
        for method in (SVC + ".GetInfo", "io.podman.GetVersion",
                       "io.podman.GetInfo"):
            for bad in (b"{nope}", b"[1]"):
                with self.subTest(method=method, bad=bad):
                    c = self.conn()
                    call = json.dumps({"method": method}).encode() + b"\0"
                    c.send_raw(call + bad + b"\0" + call)
                    self.assertOk(c.recv())
                    self.assertClosedWithoutReply(c)
        self.assertAlive()

    def test_oversized_message_closes_connection(self):
        other = self.conn()
        c = self.conn()
        head = b'{"method":"io.podman.GetVersion","parameters":{"x":"'
        chunk = b"a" * MB
        sent = len(head)
        try:
            c.send_raw(head)
            while sent < 17 * MB:
                c.send_raw(chunk)
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # closed while we were still sending: fine
        self.assertClosedWithoutReply(c)
        self.assertVersionReply(other.request("io.podman.GetVersion"))
        self.assertAlive()

    def test_large_message_under_limit_is_served(self):
        c = self.conn()
        msg = {"method": "io.podman.GetVersion",
               "parameters": {"padding": "a" * (8 * MB)}}
        c.send(msg)
        self.assertVersionReply(c.recv())

    def test_deep_nesting(self):
        c = self.conn()
        depth = 10000
        c.send_raw(b'{"method":"io.podman.GetVersion","parameters":{"x":' +
                   b"[" * depth + b"]" * depth + b"}}\0")
        try:
            r = c.recv()
        except ConnectionClosed:
            pass  # closing is one acceptable answer
        else:
            self.assertIn("error", r, "deep nesting answered: %r" % r)
        self.assertAlive()

    def test_deep_object_nesting(self):
        c = self.conn()
        depth = 10000
        c.send_raw(b'{"method":"io.podman.GetVersion","parameters":' +
                   b'{"a":' * depth + b"1" + b"}" * depth + b"}\0")
        try:
            r = c.recv()
        except ConnectionClosed:
            pass
        else:
            self.assertIn("error", r, "deep nesting answered: %r" % r)
        self.assertAlive()

    def test_invalid_utf8_closes_connection(self):
        for bad in (b"\xff\xfe", b"\xc3\x28", b"\xed\xa0\x80", b"\xc0\xaf"):
            c = self.conn()
            c.send_raw(b'{"method":"io.podman.GetVersion",'
                       b'"parameters":{"x":"' + bad + b'"}}\0')
            self.assertClosedWithoutReply(c)
        self.assertAlive()

    def test_half_close_still_gets_reply(self):
        c = self.conn()
        c.send_raw(b'{"method":"io.podman.GetVersion"}\0'
                   b'{"method":"io.podman.Nope"}\0')
        c.sock.shutdown(socket.SHUT_WR)
        self.assertVersionReply(c.recv())
        self.assertError(c.recv(), SVC + ".MethodNotFound",
                         {"method": "Nope"})
        self.assertTrue(c.wait_closed(), "server kept the connection open")

    def test_half_close_with_partial_message(self):
        c = self.conn()
        c.send_raw(b'{"method":"io.podman.GetVersion"}\0{"method":"io.po')
        c.sock.shutdown(socket.SHUT_WR)
        self.assertVersionReply(c.recv())
        self.assertTrue(c.wait_closed(), "server kept the connection open")
        self.assertAlive()

    # --- io.podman basics ---------------------------------------------------------

    def test_podman_get_version(self):
        p = self.assertVersionReply(self.conn().request("io.podman.GetVersion"))
        self.assertEqual(set(p), {"version", "go_version", "git_commit",
                                  "built", "os_arch", "remote_api_version"})
        for k in ("version", "go_version", "git_commit", "built", "os_arch"):
            self.assertIsInstance(p[k], str, k)
        self.assertTrue(p["version"], "empty version")
        self.assertIs(type(p["remote_api_version"]), int)

    def test_podman_get_info(self):
        p = self.assertOk(self.conn().request("io.podman.GetInfo"))
        info = p.get("info")
        self.assertIsInstance(info, dict, "reply: %r" % p)
        for k in ("host", "store", "podman", "registries",
                  "insecure_registries"):
            self.assertIn(k, info)
        self.assertIsInstance(info["registries"], list)
        self.assertIsInstance(info["insecure_registries"], list)
        self.assertIs(type(info["host"]["cpus"]), int)
        self.assertGreater(info["host"]["cpus"], 0)
        self.assertGreater(info["host"]["mem_total"], 0)
        self.assertEqual(info["store"]["graph_root"], self.root)


if __name__ == "__main__":
    harness.main()
