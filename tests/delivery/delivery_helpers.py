"""delivery_helpers.py -- shared pieces of the delivery tests (tests/delivery/).

Reuses tests/integration/harness.py (nats-server, webhooks-svc, webhooks-gateway, cleanup,
sanitizer checks) without changing it, and adds:

  * Target: the real webhook-target (tests/target/) as a harness.Proc, so it is cleaned up and
    checked for sanitizer reports like the other processes, with a keep-alive client for its
    control API (/_control/stats, /_control/requests, /_control/reset);
  * ScriptedServer: a tiny stdlib HTTP server for answers webhook-target cannot give (a 3xx
    with a Location pointing at the target, so "redirects are not followed" is observable; a
    503 or 500 with Retry-After; a large body);
  * DeliveryCase: an IntegrationCase with a target per test (or per class) and helpers to
    register webhooks (one by one over HTTP, or thousands pipelined over raw NATS), trigger
    GET /ip, wait for an event to finish (its summary is polled: nothing signals it), read
    every page of its deliveries, and group what the target saw by path;
  * the store backend: SQLite (the harness's own), or with WEBHOOKS_TEST_BACKEND=congodb a
    CongoDB per test class (tests/congodb/launch.mjs, a MongoDB stand-in): every webhooks-svc
    then gets STORE_URL=mongodb://... in place of its sqlite: URL, one database per SQLite file
    it would have had (the same file, the same database: two instances sharing a file share a
    database, a restart keeps its data), and skip_on_backend() skips what cannot run there.

Environment (set by ctest): WEBHOOKS_BIN_DIR, NATS_SERVER; for the CongoDB runs also
WEBHOOKS_TEST_BACKEND=congodb, CONGODB_LAUNCHER (launch.mjs), CONGODB_MODULES (its node_modules)
and NODE (the node binary).
"""

import datetime
import hashlib
import http.client
import http.server
import json
import os
import re
import shutil
import sys
import tempfile
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'integration'))

import harness  # noqa: E402
from harness import IntegrationCase, UUID_RE, RFC3339_UTC_RE, poll_until  # noqa: E402,F401

# Generous slack for timing checks: sanitizer builds are several times slower.
SANITIZED = os.environ.get('WEBHOOKS_SANITIZED') == '1'  # set by CMake with WEBHOOKS_SANITIZE
SLACK = 0.35 if SANITIZED else 0.15


# The store every webhooks-svc of the delivery tests runs on: 'sqlite' (the harness's default)
# or 'congodb' (see CongoDB below).
BACKEND = os.environ.get('WEBHOOKS_TEST_BACKEND', 'sqlite')
if BACKEND not in ('sqlite', 'congodb'):
    raise RuntimeError('WEBHOOKS_TEST_BACKEND=%r: expected sqlite or congodb' % BACKEND)


def skip_on_backend(backend, reason):
    """Skip a test (or a class) when the suite runs on that backend, saying why."""
    return unittest.skipIf(BACKEND == backend, 'not on %s: %s' % (backend, reason))


def parse_rfc3339(text):
    """RFC 3339 UTC ("...Z", optional fraction) -> aware datetime."""
    fmt = '%Y-%m-%dT%H:%M:%S.%f%z' if '.' in text else '%Y-%m-%dT%H:%M:%S%z'
    return datetime.datetime.strptime(text.replace('Z', '+0000'), fmt)


# ---------------------------------------------------------------------------------------------
# webhook-target

class Target:
    """One webhook-target on 127.0.0.1 (a free port), started as a harness.Proc."""

    def __init__(self, name='webhook-target', args=()):
        self.workdir = tempfile.mkdtemp(prefix='webhooks-target-')
        self.stdout_path = os.path.join(self.workdir, 'target.stdout')
        self.proc = harness.Proc(name, [harness.binary('webhook-target'), '--port', '0'] +
                                 list(args), harness.base_env(), self.workdir,
                                 cwd=self.workdir, stdout_path=self.stdout_path)
        self.port = None
        self._conn = None
        self._lock = threading.Lock()

    def start(self, timeout=harness.START_TIMEOUT):
        self.proc.start()
        # The ports go to stdout (flushed) before "ready" goes to stderr.
        self.proc.wait_line(r'webhook-target: ready', timeout)
        with open(self.stdout_path) as f:
            m = re.search(r'^listening (\d+)$', f.read(), re.M)
        if not m:
            raise AssertionError('webhook-target printed no port:\n' + self.proc.log_text())
        self.port = int(m.group(1))
        harness.wait_port('127.0.0.1', self.port, timeout, self.proc)
        return self

    def url(self, path):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def _control(self, method, path, timeout=30.0):
        """One control request on a kept-alive connection (reopened once if it was closed)."""
        with self._lock:
            for attempt in range(2):
                if self._conn is None:
                    self._conn = http.client.HTTPConnection('127.0.0.1', self.port,
                                                            timeout=timeout)
                try:
                    self._conn.request(method, path, body=b'' if method == 'POST' else None)
                    r = self._conn.getresponse()
                    raw = r.read()
                    if r.status != 200:
                        raise AssertionError('target %s %s: %d %r' % (method, path, r.status,
                                                                      raw[:200]))
                    if r.getheader('Connection', '').lower() == 'close':
                        self._conn.close()
                        self._conn = None
                    return json.loads(raw.decode('utf-8')) if raw else None
                except (http.client.HTTPException, OSError):
                    self._conn.close()
                    self._conn = None
                    if attempt == 1:
                        raise

    def stats(self):
        return self._control('GET', '/_control/stats')

    def requests(self, prefix=None):
        path = '/_control/requests'
        if prefix:
            path += '?path=' + prefix
        return self._control('GET', path)

    def reset(self):
        self._control('POST', '/_control/reset')

    def by_path(self, prefix=None):
        """path -> the requests to it, oldest first."""
        out = {}
        for rq in sorted(self.requests(prefix), key=lambda r: r['arrivalUs']):
            out.setdefault(rq['path'], []).append(rq)
        return out

    def wait(self, pred, timeout, what):
        """Poll the stats (nothing else tells when a request arrived) until pred(stats)."""
        return poll_until(lambda: pred(self.stats()), timeout, interval=0.02, what=what)

    def stop(self):
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        try:
            self.proc.stop()
        finally:
            self.proc.kill(check=False)
            shutil.rmtree(self.workdir, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# A scripted HTTP server, for answers webhook-target cannot give

class ScriptedServer:
    """A stdlib HTTP/1.1 server on 127.0.0.1 whose answer to each request is
    answer(path) -> (status, {header: value}, body bytes). It records every request as
    (arrival time in seconds, path, lower-cased headers, body)."""

    def __init__(self, answer):
        self.hits = []
        self.lock = threading.Lock()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = 'HTTP/1.1'

            def do_POST(self):  # noqa: N802 - the stdlib's naming
                n = int(self.headers.get('Content-Length') or 0)
                body = self.rfile.read(n) if n else b''
                with outer.lock:
                    outer.hits.append((time.time(), self.path,
                                       {k.lower(): v for k, v in self.headers.items()}, body))
                status, headers, out = answer(self.path)
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header('Content-Length', str(len(out)))
                self.end_headers()
                try:
                    self.wfile.write(out)
                except OSError:
                    pass  # the client may stop reading a large body

            do_GET = do_POST  # noqa: N815

            def log_message(self, *args):
                pass

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                # A client that stops reading a large body resets the connection: expected.
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        self.server = Server(('127.0.0.1', 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True,
                                       name='scripted-server')

    def start(self):
        self.thread.start()
        return self

    def url(self, path):
        return 'http://127.0.0.1:%d%s' % (self.port, path)

    def by_path(self):
        with self.lock:
            out = {}
            for h in self.hits:
                out.setdefault(h[1], []).append(h)
            return out

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


# ---------------------------------------------------------------------------------------------
# CongoDB: a MongoDB stand-in for the MongoDB runs

class CongoDB:
    """tests/congodb/launch.mjs on 127.0.0.1 (a free port), as a harness.Proc: cleaned up like
    the other processes, its stderr (failed commands) shown with theirs when a test fails."""

    def __init__(self, name='congodb'):
        launcher = os.environ.get('CONGODB_LAUNCHER') or os.path.join(
            HERE, '..', 'congodb', 'launch.mjs')
        argv = [os.environ.get('NODE') or shutil.which('node') or 'node', launcher, '--port', '0']
        if os.environ.get('CONGODB_MODULES'):
            argv += ['--modules', os.environ['CONGODB_MODULES']]
        self.workdir = tempfile.mkdtemp(prefix='webhooks-congodb-')
        self.stdout_path = os.path.join(self.workdir, 'congodb.stdout')
        self.proc = harness.Proc(name, argv, harness.base_env(), self.workdir, cwd=self.workdir,
                                 stdout_path=self.stdout_path)
        self.port = None

    def start(self, timeout=harness.START_TIMEOUT):
        self.proc.start()
        # The port goes to stdout before "ready" goes to stderr.
        self.proc.wait_line(r'^congodb: ready on ', timeout)
        with open(self.stdout_path) as f:
            m = re.search(r'^listening (\d+)$', f.read(), re.M)
        if not m:
            raise AssertionError('congodb printed no port:\n' + self.proc.log_text())
        self.port = int(m.group(1))
        harness.wait_port('127.0.0.1', self.port, timeout, self.proc)
        return self

    def url(self, db):
        return 'mongodb://127.0.0.1:%d/%s' % (self.port, db)

    def url_for_sqlite(self, path):
        """The database that stands for one SQLite file: the same path, the same database."""
        digest = hashlib.sha1(os.path.realpath(path).encode()).hexdigest()[:24]
        return self.url('wh_' + digest)

    def stop(self):
        try:
            self.proc.stop()
        finally:
            self.proc.kill(check=False)
            shutil.rmtree(self.workdir, ignore_errors=True)


_congodb = None  # the CongoDB of the test class that runs now


def _service_start_on_congodb(start):
    def wrapped(self, *args, **kwargs):
        url = self.env.get('STORE_URL', '')
        if url.startswith('sqlite:'):
            if _congodb is None:
                raise AssertionError('WEBHOOKS_TEST_BACKEND=congodb, and no CongoDB runs for %s'
                                     % self.proc.name)
            self.env['STORE_URL'] = _congodb.url_for_sqlite(url[len('sqlite:'):])
        return start(self, *args, **kwargs)
    return wrapped


if BACKEND == 'congodb':
    # Every webhooks-svc the harness starts (Stack, add_service, restart) gets the database
    # that stands for the SQLite file it was given.
    harness.Service.start = _service_start_on_congodb(harness.Service.start)


# ---------------------------------------------------------------------------------------------
# The test case base class

class DeliveryCase(IntegrationCase):
    """An IntegrationCase with a webhook-target started before the stack: per test when
    stack_per_test is True (the default here), else per class. The target's log is shown
    with the others when a test fails, and a sanitizer report in it fails the test."""

    stack_per_test = True
    target_args = ()
    target = None
    congodb = None

    # -- lifecycle -------------------------------------------------------------------------

    @classmethod
    def setUpClass(cls):
        global _congodb
        if BACKEND == 'congodb':
            cls.congodb = _congodb = CongoDB().start()
        try:
            if not cls.stack_per_test:
                cls.target = Target(args=cls.target_args).start()
            super().setUpClass()
        except BaseException:
            if cls.target is not None:
                cls.target.stop()
                cls.target = None
            cls._stop_congodb()
            raise
        if cls.stack is not None and cls.target is not None:
            cls.stack.procs.append(cls.target.proc)
        if cls.stack is not None and cls.congodb is not None:
            cls.stack.procs.append(cls.congodb.proc)

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            try:
                if not cls.stack_per_test and cls.target is not None:
                    t, cls.target = cls.target, None
                    t.stop()
            finally:
                cls._stop_congodb()

    @classmethod
    def _stop_congodb(cls):
        global _congodb
        c, cls.congodb = cls.congodb, None
        if c is not None:
            _congodb = None
            c.stop()

    def setUp(self):
        if self.stack_per_test:
            self.target = Target(args=self.target_args).start()
            self.addCleanup(self._stop_target)
        super().setUp()
        if self.stack is not None and self.target.proc not in self.stack.procs:
            self.stack.procs.append(self.target.proc)
        self.target.proc.mark = len(self.target.proc.lines)
        if self.congodb is not None:
            if self.stack is not None and self.congodb.proc not in self.stack.procs:
                self.stack.procs.append(self.congodb.proc)
            self.congodb.proc.mark = len(self.congodb.proc.lines)

    def _stop_target(self):
        t, self.target = self.target, None
        if t is not None:
            t.stop()

    # -- webhooks --------------------------------------------------------------------------

    def register(self, path_or_url, gw=None):
        """Register a webhook for a target path (or a full URL); returns its JSON."""
        url = path_or_url if '://' in path_or_url else self.target.url(path_or_url)
        r = (gw or self.gw).request('POST', '/webhooks', {'targetUrl': url})
        self.assertEqual(r.status, 201, r)
        return r.json

    def update(self, hook_id, path_or_url):
        url = path_or_url if '://' in path_or_url else self.target.url(path_or_url)
        r = self.gw.request('PUT', '/webhooks/' + hook_id, {'newTargetUrl': url})
        self.assertEqual(r.status, 200, r)
        return r.json

    def delete(self, hook_id):
        r = self.gw.request('DELETE', '/webhooks/' + hook_id)
        self.assertEqual(r.status, 204, r)

    def register_many_nats(self, urls, chunk=1000, timeout=60.0):
        """Register many webhooks fast: pipelined webhooks.register requests on one raw NATS
        connection, chunk at a time. Returns the replies in the order of urls."""
        out = []
        deadline = time.monotonic() + timeout
        with self.stack.nats_client(timeout=10) as nc:
            for i in range(0, len(urls), chunk):
                part = urls[i:i + chunk]
                replies = []
                for u in part:
                    reply = '%s.%s' % (nc.inbox, uuid.uuid4().hex)
                    nc.publish('webhooks.register', json.dumps({'targetUrl': u}), reply)
                    replies.append(reply)
                got = {}
                while len(got) < len(part):
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise AssertionError('only %d of %d registrations answered in time'
                                             % (len(out) + len(got), len(urls)))
                    m = nc.next_msg(nc.inbox_sid, timeout=left)
                    self.assertFalse(m.no_responders, 'no responders on webhooks.register')
                    got[m.subject] = m.json()
                for reply, u in zip(replies, part):
                    body = got[reply]
                    self.assertNotIn('error', body, body)
                    self.assertEqual(body['targetUrl'], u, body)
                    out.append(body)
        return out

    # -- events ----------------------------------------------------------------------------

    def trigger(self, gw=None, headers=None):
        """GET /ip (public); asserts the 202 and its exact keys; returns (json, elapsed)."""
        r = (gw or self.gw).request('GET', '/ip', auth=False, headers=headers)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(set(r.json), {'ipAddress', 'eventId', 'targets'}, r)
        self.assertRegex(r.json['eventId'], UUID_RE)
        return r.json, r.elapsed

    def event(self, event_id, gw=None):
        r = (gw or self.gw).request('GET', '/events/' + event_id)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(set(r.json), {'eventId', 'ipAddress', 'createdAt', 'targets',
                                       'succeeded', 'failed', 'pending'}, r)
        return r.json

    def wait_event(self, event_id, timeout, pred=None, what=None):
        """Poll GET /events/{id} (nothing pushes its progress) until pred(summary), by default
        until nothing is pending. Returns the summary."""
        pred = pred or (lambda s: s['pending'] == 0)
        last = {}

        def check():
            last['s'] = self.event(event_id)
            return last['s'] if pred(last['s']) else None
        try:
            return poll_until(check, timeout, interval=0.05,
                              what=what or 'event %s with nothing pending' % event_id)
        except TimeoutError as e:
            raise AssertionError('%s; last summary %r' % (e, last.get('s')))

    def deliveries(self, event_id, limit=None, gw=None):
        """Every delivery of the event, following next; returns (deliveries, pages)."""
        out, pages, after = [], [], None
        for _ in range(100000):
            q = []
            if limit is not None:
                q.append('limit=%d' % limit)
            if after:
                q.append('after=' + after)
            path = '/events/%s/deliveries' % event_id + ('?' + '&'.join(q) if q else '')
            r = (gw or self.gw).request('GET', path)
            self.assertEqual(r.status, 200, r)
            self.assertEqual(set(r.json), {'deliveries', 'next'}, r)
            page = r.json['deliveries']
            pages.append(page)
            out.extend(page)
            after = r.json['next']
            if after is None:
                return out, pages
            self.assertTrue(page, 'an empty page with a next: %r' % r.json)
            self.assertEqual(after, page[-1]['id'], 'next is not the last id of the page')
        raise AssertionError('deliveries did not end')

    # -- what the target saw ---------------------------------------------------------------

    def assertDeliveryRequest(self, rq, ip='127.0.0.1', t0=None, t1=None):
        """One request as the contract describes a delivery attempt. Returns its body."""
        self.assertEqual(rq['method'], 'POST', rq)
        h = rq['headers']
        self.assertEqual(h.get('content-type'), 'application/json', rq)
        self.assertRegex(h.get('user-agent', ''), r'^webhooks/\d+\.\d+(\.\d+)?', rq)
        self.assertRegex(h.get('webhook-id', ''), UUID_RE, rq)
        # The whole body goes with the headers: no 100-continue handshake for a small body.
        self.assertNotIn('expect', h, rq)
        self.assertEqual(int(h.get('content-length', -1)), len(rq['body'].encode()), rq)
        body = json.loads(rq['body'])
        self.assertIsInstance(body, dict, rq)
        self.assertEqual(set(body), {'ipAddress', 'timestamp'}, rq)
        self.assertEqual(body['ipAddress'], ip, rq)
        ts = body['timestamp']
        self.assertTrue(isinstance(ts, int) and not isinstance(ts, bool), rq)
        # The attempt's send time, in whole seconds: at or just before its arrival (so a
        # retry carries its own time, not the first attempt's).
        arrival = rq['arrivalUs'] / 1e6
        self.assertLessEqual(ts, int(arrival), rq)
        self.assertGreaterEqual(ts, int(arrival - 0.1 - SLACK), rq)
        if t0 is not None:
            self.assertGreaterEqual(ts, int(t0) - 1, rq)
        if t1 is not None:
            self.assertLessEqual(ts, t1 + 1, rq)
        return body

    @staticmethod
    def gaps(reqs):
        """Seconds between consecutive arrivals."""
        t = [r['arrivalUs'] / 1e6 for r in reqs]
        return [b - a for a, b in zip(t, t[1:])]


def main():
    harness.main()


__all__ = ['harness', 'DeliveryCase', 'Target', 'ScriptedServer', 'CongoDB', 'UUID_RE',
           'RFC3339_UTC_RE', 'parse_rfc3339', 'poll_until', 'SLACK', 'SANITIZED', 'BACKEND',
           'skip_on_backend', 'main', 'unittest']
