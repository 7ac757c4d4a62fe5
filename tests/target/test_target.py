#!/usr/bin/python3
"""test_target.py -- self-test of webhook-target, the HTTP server tests deliver webhooks to.

Run: python3 test_target.py --binary build/bin/webhook-target  (or WEBHOOK_TARGET=...)
Every process it starts is stopped again, also when a test fails; the target must then exit 0
with nothing from the sanitizers on stderr.
"""

import atexit
import http.client
import json
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

BINARY = os.environ.get("WEBHOOK_TARGET", "")
STARTED = []  # every Popen, so that atexit can stop what a failure left running


def kill_all():
    for proc in STARTED:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


atexit.register(kill_all)


class Target:
    """One running webhook-target and what it printed."""

    def __init__(self, *args, ports=1):
        self.stderr = tempfile.TemporaryFile()
        argv = [BINARY]
        for _ in range(ports):
            argv += ["--port", "0"]
        argv += list(args)
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=self.stderr)
        STARTED.append(self.proc)
        self.ports = self._read_ports(ports)
        self.port = self.ports[0]

    def _read_ports(self, count):
        data = b""
        deadline = time.monotonic() + 15
        while data.count(b"\n") < count:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                err = self.stderr_text()
                self.kill()
                raise RuntimeError("webhook-target did not print its ports: %r %r"
                                   % (data, err))
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    continue
                data += chunk
        ports = []
        for line in data.decode().splitlines():
            word, port = line.split()
            assert word == "listening", line
            ports.append(int(port))
        return ports

    def stderr_text(self):
        self.stderr.seek(0)
        return self.stderr.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM):
        """Stops the target; returns (exit code, stderr)."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode, self.stderr_text()

    def kill(self):
        """Ends the process if it still runs and closes its files; safe to call twice."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc.stdout.close()
        self.stderr.close()

    # -- HTTP helpers --

    def request(self, method, path, body=None, headers=None, port=None):
        conn = http.client.HTTPConnection("127.0.0.1", port or self.port, timeout=10)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            resp = conn.getresponse()
            return resp.status, dict(resp.getheaders()), resp.read()
        finally:
            conn.close()

    def control(self, path, method="GET"):
        status, _, body = self.request(method, "/_control/" + path)
        assert status == 200, (status, body)
        return json.loads(body)

    def stats(self):
        return self.control("stats")

    def records(self, prefix=None):
        return self.control("requests" + ("?path=" + prefix if prefix else ""))

    def reset(self):
        return self.control("reset", method="POST")


SANITIZER_MARKERS = ("AddressSanitizer", "LeakSanitizer", "runtime error", "UndefinedBehavior")


def assert_clean_exit(test, target, sig=signal.SIGTERM):
    code, err = target.stop(sig)
    test.assertEqual(code, 0, err)
    for marker in SANITIZER_MARKERS:
        test.assertNotIn(marker, err)


def connect(port, timeout=10):
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


class Reader:
    """Reads HTTP/1.1 responses off a raw socket, keeping what is left for the next one."""

    def __init__(self, sock):
        self.sock = sock
        self.buf = b""

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def response(self):
        """Returns (status, headers with lower-case names, body)."""
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
        length = int(headers.get("content-length", "0"))
        while len(self.buf) < length:
            self._fill()
        body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def at_eof(self):
        """True when the peer closed with nothing more to read."""
        if self.buf:
            return False
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def raw_request(method, path, body=b"", extra=""):
    head = "%s %s HTTP/1.1\r\nHost: t\r\n%s" % (method, path, extra)
    if body or method == "POST":
        head += "Content-Length: %d\r\n" % len(body)
    return head.encode() + b"\r\n" + body


def wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


class BehaviourTest(unittest.TestCase):
    """The path behaviours, the parser and the control API, on one shared target."""

    @classmethod
    def setUpClass(cls):
        cls.t = Target("--quiet", ports=2)
        cls.addClassCleanup(cls.t.kill)

    @classmethod
    def tearDownClass(cls):
        # The shared target must stop cleanly too, after everything the tests put it through.
        code, err = cls.t.stop()
        if code != 0 or any(marker in err for marker in SANITIZER_MARKERS):
            raise AssertionError("shared webhook-target exited %s:\n%s" % (code, err))

    def setUp(self):
        self.t.reset()

    def test_ok_answers_200_json(self):
        status, headers, body = self.t.request("POST", "/ok/hook-1", body=b'{"a":1}',
                                               headers={"Content-Type": "application/json"})
        self.assertEqual(status, 200)
        self.assertEqual(headers["Content-Type"], "application/json")
        self.assertEqual(json.loads(body), {"ok": True})
        self.assertEqual(self.t.request("GET", "/ok")[0], 200)
        self.assertEqual(self.t.request("GET", "/ok?x=1")[0], 200)

    def test_status_answers_that_status(self):
        for code in (200, 201, 404, 500, 503):
            status, _, body = self.t.request("POST", "/status/%d/s-%d" % (code, code), b"{}")
            self.assertEqual(status, code)
            if code != 200:
                self.assertEqual(json.loads(body), {"status": code})
        sock = connect(self.t.port)
        try:
            sock.sendall(raw_request("GET", "/status/204/nobody"))
            reader = Reader(sock)
            status, headers, body = reader.response()
            self.assertEqual(status, 204)
            self.assertNotIn("content-length", headers)
            self.assertEqual(body, b"")
            # Still usable: a 204 has no body to mistake for the next answer.
            sock.sendall(raw_request("GET", "/ok/after-204"))
            self.assertEqual(reader.response()[0], 200)
        finally:
            sock.close()

    def test_bad_behaviour_arguments_are_400_and_unknown_404(self):
        for path in ("/status/99/x", "/status/600", "/status/abc", "/status", "/fail/x/y",
                     "/retry-after/1", "/slow/-1/x", "/slow/99999999999"):
            self.assertEqual(self.t.request("GET", path)[0], 400, path)
        for path in ("/", "/nothing/here", "/okay", "/hook/1"):
            self.assertEqual(self.t.request("GET", path)[0], 404, path)

    def test_fail_counts_per_exact_path(self):
        got = [self.t.request("POST", "/fail/2/a", b"{}")[0] for _ in range(4)]
        self.assertEqual(got, [503, 503, 200, 200])
        self.assertEqual(self.t.request("POST", "/fail/2/b", b"{}")[0], 503)
        self.assertEqual(self.t.request("POST", "/fail/0/c", b"{}")[0], 200)

    def test_retry_after_sends_header_then_200(self):
        status, headers, _ = self.t.request("POST", "/retry-after/7/2/r", b"{}")
        self.assertEqual((status, headers.get("Retry-After")), (429, "7"))
        self.assertEqual(self.t.request("POST", "/retry-after/7/2/r", b"{}")[0], 429)
        status, headers, _ = self.t.request("POST", "/retry-after/7/2/r", b"{}")
        self.assertEqual(status, 200)
        self.assertNotIn("Retry-After", headers)

    def test_slow_waits_without_blocking_others(self):
        result = {}

        def slow():
            start = time.monotonic()
            result["status"] = self.t.request("POST", "/slow/700/s", b"{}")[0]
            result["elapsed"] = time.monotonic() - start

        worker = threading.Thread(target=slow)
        worker.start()
        try:
            time.sleep(0.1)
            start = time.monotonic()
            self.assertEqual(self.t.request("GET", "/ok/meanwhile")[0], 200)
            self.assertLess(time.monotonic() - start, 0.4)
        finally:
            worker.join(10)
        self.assertEqual(result["status"], 200)
        self.assertGreaterEqual(result["elapsed"], 0.7)
        self.assertLess(result["elapsed"], 3.0)

    def test_hang_never_answers_and_is_abandoned_on_close(self):
        sock = connect(self.t.port, timeout=0.5)
        try:
            sock.sendall(raw_request("POST", "/hang/h", b"{}"))
            with self.assertRaises(socket.timeout):
                sock.recv(1)
            self.assertEqual(self.t.stats()["inFlight"], 1)
        finally:
            sock.close()
        self.assertTrue(wait_for(lambda: self.t.stats()["inFlight"] == 0))
        self.assertEqual(self.t.stats()["byPath"], {"/hang/h": 1})

    def test_close_closes_without_answering(self):
        sock = connect(self.t.port)
        try:
            sock.sendall(raw_request("POST", "/close/c", b"{}"))
            self.assertTrue(Reader(sock).at_eof())
        finally:
            sock.close()
        with self.assertRaises(http.client.RemoteDisconnected):
            self.t.request("GET", "/close/c2")
        stats = self.t.stats()
        self.assertEqual((stats["total"], stats["inFlight"]), (2, 0))

    def test_keep_alive_reuses_one_connection(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.t.port, timeout=10)
        try:
            for i in range(5):
                conn.request("POST", "/ok/ka-%d" % i, body=b"{}")
                resp = conn.getresponse()
                resp.read()
                self.assertEqual(resp.status, 200)
                self.assertFalse(resp.will_close)
            local_port = conn.sock.getsockname()[1]
        finally:
            conn.close()
        peers = {r["peerPort"] for r in self.t.records("/ok/ka-")}
        self.assertEqual(peers, {local_port})

    def test_pipelined_requests_are_answered_in_order(self):
        sock = connect(self.t.port)
        try:
            batch = (raw_request("POST", "/slow/150/p1", b'{"n":1}') +
                     raw_request("POST", "/status/201/p2", b'{"n":2}') +
                     raw_request("GET", "/fail/1/p3") + raw_request("GET", "/fail/1/p3"))
            sock.sendall(batch)
            reader = Reader(sock)
            got = [reader.response()[0] for _ in range(4)]
            self.assertEqual(got, [200, 201, 503, 200])
        finally:
            sock.close()
        paths = [r["path"] for r in self.t.records()]
        self.assertEqual(paths, ["/slow/150/p1", "/status/201/p2", "/fail/1/p3", "/fail/1/p3"])
        self.assertEqual([r["body"] for r in self.t.records()][:2], ['{"n":1}', '{"n":2}'])

    def test_request_split_into_single_bytes(self):
        data = raw_request("POST", "/ok/bytes", b'{"split":true}', "X-Test: yes\r\n")
        sock = connect(self.t.port)
        try:
            for i in range(len(data)):
                sock.send(data[i:i + 1])
                if i % 16 == 0:
                    time.sleep(0.001)
            self.assertEqual(Reader(sock).response()[0], 200)
        finally:
            sock.close()
        (rec,) = self.t.records("/ok/bytes")
        self.assertEqual(rec["body"], '{"split":true}')
        self.assertEqual(rec["headers"]["x-test"], "yes")

    def test_expect_100_continue(self):
        sock = connect(self.t.port)
        try:
            sock.sendall(b"POST /ok/expect HTTP/1.1\r\nHost: t\r\nContent-Length: 9\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            reader = Reader(sock)
            status, _, _ = reader.response()
            self.assertEqual(status, 100)
            sock.sendall(b'{"e":100}')
            self.assertEqual(reader.response()[0], 200)
        finally:
            sock.close()
        self.assertEqual(self.t.records("/ok/expect")[0]["body"], '{"e":100}')

    def test_expect_with_too_large_body_is_refused_before_it_is_sent(self):
        sock = connect(self.t.port)
        try:
            sock.sendall(b"POST /ok/big HTTP/1.1\r\nHost: t\r\nContent-Length: 65537\r\n"
                         b"Expect: 100-continue\r\n\r\n")
            reader = Reader(sock)
            status, headers, _ = reader.response()
            self.assertEqual(status, 413)
            self.assertEqual(headers.get("connection"), "close")
            self.assertTrue(reader.at_eof())
        finally:
            sock.close()
        self.assertEqual(self.t.records(), [])
        self.assertEqual(self.t.stats()["refused"], 1)

    def test_body_limit(self):
        exact = b"x" * 65536
        status, _, _ = self.t.request("POST", "/ok/limit", body=exact)
        self.assertEqual(status, 200)
        self.assertEqual(len(self.t.records("/ok/limit")[0]["body"]), 65536)
        sock = connect(self.t.port)
        try:
            sock.sendall(raw_request("POST", "/ok/over", b"y" * 65537))
            reader = Reader(sock)
            self.assertEqual(reader.response()[0], 413)
            self.assertTrue(reader.at_eof())
        finally:
            sock.close()

    def test_chunked_body_is_decoded(self):
        sock = connect(self.t.port)
        try:
            reader = Reader(sock)
            sock.sendall(b"POST /ok/chunked HTTP/1.1\r\nHost: t\r\n"
                         b"Transfer-Encoding: chunked\r\n\r\n5;ext=1\r\n{\"a\":")
            time.sleep(0.05)
            sock.sendall(b"\r\n3\r\n12}\r\n0\r\nX-Trailer: t\r\n\r\n")
            self.assertEqual(reader.response()[0], 200)
            # The connection stays usable after a chunked body.
            sock.sendall(raw_request("GET", "/ok/after-chunked"))
            self.assertEqual(reader.response()[0], 200)
        finally:
            sock.close()
        self.assertEqual(self.t.records("/ok/chunked")[0]["body"], '{"a":12}')

    def test_chunked_too_large_and_other_codings_are_refused(self):
        cases = [
            (b"POST /ok/c1 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n10001\r\n", 413),
            (b"POST /ok/c2 HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
            (b"POST /ok/c3 HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
             400),
            (b"POST /ok/c4 HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ]
        for data, want in cases:
            sock = connect(self.t.port)
            try:
                sock.sendall(data)
                reader = Reader(sock)
                self.assertEqual(reader.response()[0], want, data)
                self.assertTrue(reader.at_eof())
            finally:
                sock.close()

    def test_malformed_requests_are_refused(self):
        cases = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /ok HTTP/2.0\r\n\r\n", 505),
            (b"GET /ok HTTP/1.1\r\nBad Header: x\r\n\r\n", 400),
            (b"GET /ok HTTP/1.1\r\n folded: x\r\n\r\n", 400),
            (b"GET /ok HTTP/1.1\r\nContent-Length: 1x\r\n\r\n", 400),
            (b"GET /ok HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", 400),
            (b"GET /ok HTTP/1.1\r\nExpect: something\r\n\r\n", 417),
            (b"GET /ok HTTP/1.1\r\nX: " + b"a" * 17000 + b"\r\n\r\n", 431),
        ]
        for data, want in cases:
            sock = connect(self.t.port)
            try:
                sock.sendall(data)
                reader = Reader(sock)
                self.assertEqual(reader.response()[0], want, data[:60])
                self.assertTrue(reader.at_eof())
            finally:
                sock.close()
        stats = self.t.stats()
        self.assertEqual((stats["total"], stats["refused"]), (0, len(cases)))

    def test_http10_and_connection_close(self):
        sock = connect(self.t.port)
        try:
            sock.sendall(b"GET /ok/h10 HTTP/1.0\r\n\r\n")
            reader = Reader(sock)
            status, headers, _ = reader.response()
            self.assertEqual((status, headers.get("connection")), (200, "close"))
            self.assertTrue(reader.at_eof())
        finally:
            sock.close()
        sock = connect(self.t.port)
        try:
            sock.sendall(raw_request("GET", "/ok/cc", extra="Connection: close\r\n") +
                         raw_request("GET", "/ok/never"))
            reader = Reader(sock)
            self.assertEqual(reader.response()[0], 200)
            self.assertTrue(reader.at_eof())
        finally:
            sock.close()
        self.assertEqual(self.t.records("/ok/never"), [])

    def test_records_hold_everything(self):
        before = int(time.time() * 1e6)
        sock = connect(self.t.port)
        try:
            body = b'{"ipAddress":"1.2.3.4","timestamp":1}'
            sock.sendall(b"POST /ok/rec-1 HTTP/1.1\r\nHost: t\r\nContent-Type: application/json"
                         b"\r\nWebhook-Id: abc\r\nX-Dup: 1\r\nx-dup: 2\r\nContent-Length: %d"
                         b"\r\n\r\n%s" % (len(body), body))
            self.assertEqual(Reader(sock).response()[0], 200)
            peer = sock.getsockname()[1]
        finally:
            sock.close()
        after = int(time.time() * 1e6)
        (rec,) = self.t.records()
        self.assertEqual(rec["method"], "POST")
        self.assertEqual(rec["path"], "/ok/rec-1")
        self.assertEqual(rec["port"], self.t.port)
        self.assertEqual(rec["peerPort"], peer)
        self.assertLessEqual(before, rec["arrivalUs"])
        self.assertLessEqual(rec["arrivalUs"], after)
        self.assertEqual(json.loads(rec["body"]), {"ipAddress": "1.2.3.4", "timestamp": 1})
        self.assertEqual(rec["headers"], {"host": "t", "content-type": "application/json",
                                          "webhook-id": "abc", "x-dup": "1, 2",
                                          "content-length": str(len(body))})

    def test_records_of_binary_bodies_stay_valid_json(self):
        body = "é ✓ \"q\" \\ \n".encode() + b"\xff\x00\x01"
        self.assertEqual(self.t.request("POST", "/ok/bin", body=body)[0], 200)
        (rec,) = self.t.records("/ok/bin")
        self.assertEqual(rec["body"], "é ✓ \"q\" \\ \n\u00ff\u0000\u0001")

    def test_stats_and_reset(self):
        for path in ("/ok/a", "/ok/a", "/status/500/b"):
            self.t.request("POST", path, b"{}")
        self.t.request("POST", "/ok/c", b"{}", port=self.t.ports[1])
        stats = self.t.stats()
        self.assertEqual(stats["total"], 4)
        self.assertEqual(stats["inFlight"], 0)
        self.assertEqual(stats["peakInFlight"], 1)
        self.assertEqual(stats["byPath"], {"/ok/a": 2, "/status/500/b": 1, "/ok/c": 1})
        self.assertEqual(stats["byPort"], {str(self.t.ports[0]): 3, str(self.t.ports[1]): 1})
        self.assertIsNotNone(stats["firstArrivalUs"])
        self.assertLessEqual(stats["firstArrivalUs"], stats["lastArrivalUs"])
        self.assertEqual(len(self.t.records()), 4)
        self.assertEqual({r["port"] for r in self.t.records("/ok/c")}, {self.t.ports[1]})
        self.assertEqual(self.t.reset(), {"ok": True})
        stats = self.t.stats()
        self.assertEqual((stats["total"], stats["peakInFlight"], stats["byPath"]), (0, 0, {}))
        self.assertIsNone(stats["firstArrivalUs"])
        self.assertEqual(self.t.records(), [])
        # Reset also restarts the per-path failure counters.
        self.assertEqual(self.t.request("POST", "/fail/1/again", b"{}")[0], 503)
        self.t.reset()
        self.assertEqual(self.t.request("POST", "/fail/1/again", b"{}")[0], 503)

    def test_control_errors(self):
        self.assertEqual(self.t.request("POST", "/_control/stats")[0], 405)
        self.assertEqual(self.t.request("GET", "/_control/reset")[0], 405)
        self.assertEqual(self.t.request("GET", "/_control/nothing")[0], 404)
        self.assertEqual(self.t.stats()["total"], 0)

    def test_peak_in_flight_with_concurrent_slow_requests(self):
        n = 8
        barrier = threading.Barrier(n)
        results = [None] * n

        def one(i):
            conn = http.client.HTTPConnection("127.0.0.1", self.t.port, timeout=10)
            try:
                conn.connect()
                barrier.wait()
                conn.request("POST", "/slow/600/peak-%d" % i, body=b"{}")
                results[i] = conn.getresponse().status
            finally:
                conn.close()

        workers = [threading.Thread(target=one, args=(i,)) for i in range(n)]
        start = time.monotonic()
        for w in workers:
            w.start()
        self.assertTrue(wait_for(lambda: self.t.stats()["inFlight"] == n, timeout=5))
        for w in workers:
            w.join(20)
        elapsed = time.monotonic() - start
        self.assertEqual(results, [200] * n)
        self.assertLess(elapsed, 0.6 * n / 2, "slow requests were served one by one")
        stats = self.t.stats()
        self.assertEqual((stats["inFlight"], stats["peakInFlight"], stats["total"]), (0, n, n))

    def test_listens_on_loopback_only(self):
        pid = self.t.proc.pid

        def socket_inodes():
            out = set()
            for fd in os.listdir("/proc/%d/fd" % pid):
                try:
                    link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
                except OSError:
                    continue
                if link.startswith("socket:["):
                    out.add(link[8:-1])
            return out
        inodes = socket_inodes()
        self.assertTrue(inodes)
        found = {}
        for table in ("tcp", "tcp6", "udp", "udp6", "raw", "raw6"):
            with open("/proc/net/" + table) as f:
                for line in f.readlines()[1:]:
                    cols = line.split()
                    if cols[9] in inodes:
                        found[cols[9]] = (table, cols[1], cols[3])
        # A connection of an earlier test may close between the two reads: only the sockets
        # still open after the tables were read must be in them.
        inodes &= socket_inodes()
        self.assertEqual(set(found) & inodes, inodes, "sockets of an unexpected family")
        listening = set()
        for table, local, state in found.values():
            self.assertEqual(table, "tcp")
            addr, port = local.split(":")
            self.assertEqual(socket.inet_ntoa(bytes.fromhex(addr)[::-1]), "127.0.0.1")
            if state == "0A":
                listening.add(int(port, 16))
        self.assertEqual(listening, set(self.t.ports))


class ProcessTest(unittest.TestCase):
    """Options, --no-record and shutdown, each on a target of its own."""

    def start(self, *args, ports=1):
        target = Target(*args, ports=ports)
        self.addCleanup(target.kill)
        return target

    def test_no_record_keeps_counters_only(self):
        t = self.start("--no-record", "--quiet")
        for i in range(50):
            self.assertEqual(t.request("POST", "/ok/n-%d" % i, b"{}")[0], 200)
        self.assertEqual([t.request("POST", "/fail/1/f", b"{}")[0] for _ in range(2)],
                         [503, 200])
        self.assertEqual(t.records(), [])
        stats = t.stats()
        self.assertEqual(stats["total"], 52)
        self.assertFalse(stats["recording"])
        self.assertEqual(stats["byPort"], {str(t.port): 52})
        self.assertEqual(stats["byPath"], {"/fail/1/f": 2})
        self.assertLessEqual(stats["firstArrivalUs"], stats["lastArrivalUs"])
        assert_clean_exit(self, t, signal.SIGINT)

    def test_shutdown_with_open_connections_is_clean(self):
        t = self.start()
        socks = []
        try:
            for path in ("/hang/x", "/slow/60000/y"):
                sock = connect(t.port)
                sock.sendall(raw_request("POST", path, b'{"z":1}'))
                socks.append(sock)
            idle = connect(t.port)
            socks.append(idle)
            partial = connect(t.port)
            partial.sendall(b"POST /ok/p HTTP/1.1\r\nContent-Length: 10\r\n\r\n{")
            socks.append(partial)
            self.assertTrue(wait_for(lambda: t.stats()["inFlight"] == 2))
            assert_clean_exit(self, t)
        finally:
            for sock in socks:
                sock.close()

    def test_bad_options(self):
        for args in (["--port", "70000"], ["--port", "x"], ["--bogus"]):
            proc = subprocess.run([BINARY] + args, capture_output=True, timeout=10)
            self.assertEqual(proc.returncode, 2, args)
            self.assertIn(b"webhook-target:", proc.stderr)
        proc = subprocess.run([BINARY, "--help"], capture_output=True, timeout=10)
        self.assertEqual(proc.returncode, 0)
        self.assertIn(b"--no-record", proc.stdout)

    def test_busy_port_is_reported(self):
        t = self.start("--quiet")
        proc = subprocess.run([BINARY, "--port", str(t.port)], capture_output=True, timeout=10)
        self.assertEqual(proc.returncode, 1)
        self.assertIn(b"cannot listen", proc.stderr)


def main():
    global BINARY
    args = sys.argv[1:]
    if "--binary" in args:
        i = args.index("--binary")
        BINARY = args[i + 1]
        del args[i:i + 2]
    if not BINARY or not os.access(BINARY, os.X_OK):
        sys.exit("test_target.py: pass --binary PATH or set WEBHOOK_TARGET")
    BINARY = os.path.abspath(BINARY)
    unittest.main(argv=[sys.argv[0]] + args, verbosity=2)


if __name__ == "__main__":
    main()
