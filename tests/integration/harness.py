"""harness.py -- real processes for integration tests: nats-server, webhooks-svc, webhooks-gateway.

Everything listens on loopback ports picked at run time. Each process's stderr is read by a
thread that copies it to a log file and wakes whoever waits for a line (the service's "ready",
the gateway's "listening on"), so startup waits are event-driven with a deadline; only port
readiness is polled. Every process is put in its own process group and is killed by the test's
tearDown, by an atexit hook, on SIGTERM/SIGINT of the runner, and by the kernel if the runner
dies (PR_SET_PDEATHSIG; start processes from the main thread, since that signal follows the
thread that forked). A process whose stderr shows a sanitizer report fails the test.

Children get a dead loopback proxy for every URL that is not loopback (see base_env): targets
registered by a test are delivered only on this machine; a delivery sink on 127.0.0.1 or ::1
is reached directly.

Environment: WEBHOOKS_BIN_DIR (where webhooks-svc and webhooks-gateway are) and NATS_SERVER
(the nats-server binary), both set by ctest. INTEG_KEEP_LOGS=1 keeps every work directory.

The pieces:
  Stack(svc_env=..., gw_env=..., nats_timeout_ms=..., ...).start()
      .nats (NatsServer), .svc (Service), .gateway (Gateway), .add_service(), .add_gateway(),
      .nats_client() (nats_client.NatsClient), .logs(), .close()
  NatsServer / Service / Gateway: start(wait=True), wait_ready(), stop() (SIGTERM; exit 0
      within 5 s, no sanitizer report), kill() (SIGKILL to the group), restart();
      .proc (Proc: pause/resume/signal/wait_line/log_text); Service.metrics_port() (its
      METRICS_PORT is 0 unless a test sets it: the port it picked, from its log)
  Gateway.request(method, path, body, headers, auth) -> Response, unpacking as
      (status, headers, parsed JSON or raw bytes); http_request()/raw_http() for any server
  IntegrationCase: a unittest.TestCase with a Stack per class or per test, log printing on
      failure, and assertError/assertWebhook/assertJson

Typical use:

    class MyTest(harness.IntegrationCase):
        stack_options = {'svc_env': {'MAX_RETRIES': '0'}}

        def test_x(self):
            status, headers, body = self.gw.request('GET', '/healthz', auth=False)

    if __name__ == '__main__':
        harness.main()
"""

import atexit
import ctypes
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

from nats_client import NatsClient, NatsError  # noqa: F401 (re-exported for tests)

BIN_DIR = os.environ.get('WEBHOOKS_BIN_DIR', '')
NATS_SERVER = os.environ.get('NATS_SERVER', '') or shutil.which('nats-server') or 'nats-server'
SANITIZER_MARKERS = ('ERROR: AddressSanitizer', 'runtime error:', 'LeakSanitizer')
DEFAULT_TOKEN = 'integration-test-token-0123456789abcdef'
DEAD_PROXY = 'http://127.0.0.1:9'  # see base_env
START_TIMEOUT = 15.0   # generous: sanitizer builds start slowly
STOP_TIMEOUT = 5.0     # the contract's limit for a clean exit on SIGTERM

UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
RFC3339_UTC_RE = re.compile(r'^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$')


def binary(name):
    """Absolute path of one of the project's binaries."""
    if not BIN_DIR:
        raise RuntimeError('WEBHOOKS_BIN_DIR is not set (ctest sets it)')
    path = os.path.join(BIN_DIR, name)
    if not os.access(path, os.X_OK):
        raise RuntimeError('%s is not an executable; build first' % path)
    return path


def free_port(host='127.0.0.1'):
    """A TCP port that was free a moment ago: bind to port 0, read it, close."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def has_ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(('::1', 0))
        return True
    except OSError:
        return False


def wait_port(host, port, timeout, proc=None):
    """Poll until host:port accepts a TCP connection (no event exists for this)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            pass
        if proc is not None and proc.poll() is not None:
            raise ProcessDied('%s exited with %s before accepting connections\n%s'
                              % (proc.name, proc.returncode, proc.log_text()))
        if time.monotonic() >= deadline:
            raise TimeoutError('%s:%d did not accept connections within %.1fs' % (host, port, timeout))
        time.sleep(0.02)


def poll_until(fn, timeout, interval=0.05, what='condition'):
    """Call fn until it returns a true value or the deadline passes; returns that value.
    For waits where nothing signals the change (a reconnect seen only through requests)."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = fn()
            if v:
                return v
        except Exception as e:  # noqa: BLE001 - remembered for the message
            last_exc = e
        if time.monotonic() >= deadline:
            raise TimeoutError('%s not reached within %.1fs (last error: %r)' % (what, timeout, last_exc))
        time.sleep(interval)


class ProcessDied(AssertionError):
    pass


# ---------------------------------------------------------------------------------------------
# Process bookkeeping: everything started is in _live until it has been reaped.

_live = set()
_live_lock = threading.Lock()


def _kill_all_live():
    with _live_lock:
        procs = list(_live)
    for p in procs:
        p.kill(check=False)


atexit.register(_kill_all_live)


def _pdeathsig():
    """In the child before exec: die with SIGKILL when the runner dies, whatever the cause."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - best effort; atexit and tearDown still clean up
        pass


class Proc:
    """One child process with its stderr captured to a log file and scanned line by line."""

    def __init__(self, name, argv, env, log_dir, cwd=None, stdout_path=None):
        self.name = name
        self.stdout_path = stdout_path  # None: stdout is discarded
        self.argv = list(argv)
        self.env = dict(env)
        self.cwd = cwd
        self.log_path = os.path.join(log_dir, '%s.log' % name)
        self.popen = None
        self.lines = []
        self.cond = threading.Condition()
        self.eof = False
        self.reader = None
        self.runs = 0
        self.mark = 0  # index into lines where the current test started

    # -- lifecycle ------------------------------------------------------------------------

    def start(self):
        assert self.popen is None or self.popen.poll() is not None, '%s is running' % self.name
        self.runs += 1
        with self.cond:
            self.eof = False
            self.run_start = len(self.lines)
            self.lines.append('===== %s run %d: %s\n' % (self.name, self.runs, ' '.join(self.argv)))
        out = open(self.stdout_path, 'ab') if self.stdout_path else subprocess.DEVNULL
        try:
            self.popen = subprocess.Popen(
                self.argv, env=self.env, cwd=self.cwd, stdin=subprocess.DEVNULL,
                stdout=out, stderr=subprocess.PIPE, start_new_session=True,
                preexec_fn=_pdeathsig)
        finally:
            if self.stdout_path:
                out.close()
        with _live_lock:
            _live.add(self)
        self.reader = threading.Thread(target=self._read, args=(self.popen,), daemon=True,
                                       name='stderr-' + self.name)
        self.reader.start()
        return self

    def _read(self, popen):
        with open(self.log_path, 'ab') as log:
            for raw in iter(popen.stderr.readline, b''):
                log.write(raw)
                log.flush()
                with self.cond:
                    self.lines.append(raw.decode('utf-8', 'replace'))
                    self.cond.notify_all()
        popen.stderr.close()
        with self.cond:
            self.eof = True
            self.cond.notify_all()

    @property
    def pid(self):
        return self.popen.pid

    @property
    def returncode(self):
        return self.popen.returncode if self.popen else None

    def poll(self):
        return self.popen.poll() if self.popen else 0

    def running(self):
        return self.popen is not None and self.popen.poll() is None

    def _reaped(self):
        # The reader ends at EOF, which comes once every holder of the pipe has exited.
        if self.reader is not None:
            self.reader.join(timeout=5)
        with _live_lock:
            _live.discard(self)

    def wait_line(self, pattern, timeout=START_TIMEOUT, since=None):
        """Wait for a stderr line of this run (or from index since) matching pattern."""
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        i = self.run_start + 1 if since is None else since  # + 1: not the harness's header
        with self.cond:
            while True:
                while i < len(self.lines):
                    m = rx.search(self.lines[i])
                    i += 1
                    if m:
                        return m
                if self.eof:
                    self.popen.wait(timeout=5)
                    raise ProcessDied('%s exited with %s while waiting for /%s/\n%s'
                                      % (self.name, self.popen.returncode, pattern,
                                         self.log_text(self.run_start)))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError('%s: no line matching /%s/ within %.1fs\n%s'
                                       % (self.name, pattern, timeout, self.log_text(self.run_start)))
                self.cond.wait(remaining)

    def signal(self, sig):
        if self.running():
            os.kill(self.popen.pid, sig)

    def pause(self):
        self.signal(signal.SIGSTOP)

    def resume(self):
        self.signal(signal.SIGCONT)

    def stop(self, timeout=STOP_TIMEOUT, expect_code=0):
        """SIGTERM; the process must exit with expect_code (None: any) within timeout.
        Returns the exit code and the seconds it took. Sanitizer reports fail it too."""
        if self.popen is None or self.popen.poll() is not None:
            if self.popen is not None:
                self._reaped()
                self.check_sanitizer()
            return (self.returncode, 0.0)
        os.kill(self.popen.pid, signal.SIGCONT)  # a stopped process cannot handle SIGTERM
        t0 = time.monotonic()
        os.kill(self.popen.pid, signal.SIGTERM)
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(check=False)
            raise AssertionError('%s did not exit within %.1fs of SIGTERM\n%s'
                                 % (self.name, timeout, self.log_text(self.run_start)))
        elapsed = time.monotonic() - t0
        self._reaped()
        self.check_sanitizer()
        if expect_code is not None and rc != expect_code:
            raise AssertionError('%s exited with %s after SIGTERM, expected %s\n%s'
                                 % (self.name, rc, expect_code, self.log_text(self.run_start)))
        return rc, elapsed

    def kill(self, check=True):
        """SIGKILL the whole process group and reap it."""
        if self.popen is None:
            return
        if self.popen.poll() is None:
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
        else:
            # The leader is gone; make sure nothing it left in its group survives.
            try:
                os.killpg(self.popen.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self._reaped()
        if check:
            self.check_sanitizer()

    def wait_exit(self, timeout):
        """Wait for the process to exit on its own; returns its exit code."""
        try:
            rc = self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill(check=False)
            raise AssertionError('%s still running after %.1fs\n%s'
                                 % (self.name, timeout, self.log_text(self.run_start)))
        self._reaped()
        return rc

    # -- logs -----------------------------------------------------------------------------

    def log_text(self, since=0):
        with self.cond:
            return ''.join(self.lines[since:])

    def run_lines(self):
        """The stderr lines of the current (or last) run, without the harness's header."""
        with self.cond:
            return [l for l in self.lines[self.run_start + 1:]]

    def sanitizer_report(self):
        text = self.log_text()
        for marker in SANITIZER_MARKERS:
            if marker in text:
                return marker
        return None

    def check_sanitizer(self):
        marker = self.sanitizer_report()
        if marker is not None:
            raise AssertionError('%s: sanitizer report (%r) in its stderr:\n%s'
                                 % (self.name, marker, self.log_text()))


# What the tests' service allows beyond public addresses: its sinks, all on loopback.
LOOPBACK_CIDRS = '127.0.0.0/8,::1/128'


def base_env(extra=None):
    """The environment for a child: the runner's, minus variables of the contract that
    could leak in from the caller's shell, plus extra."""
    env = dict(os.environ)
    for k in ('NATS_URL', 'GATEWAY_BIND', 'GATEWAY_PORT', 'ADMIN_TOKEN', 'TRUST_PROXY',
              'NATS_TIMEOUT_MS', 'STORE_URL', 'MAX_IN_FLIGHT', 'MAX_RETRIES', 'RETRY_SCHEDULE',
              'DELIVERY_TIMEOUT_MS', 'LOG_LEVEL', 'ALLOW_PRIVATE_TARGETS', 'TARGET_ALLOW_CIDRS',
              'IP_RATE_LIMIT', 'MAX_PENDING_DELIVERIES', 'MAX_IN_FLIGHT_PER_HOST',
              'METRICS_BIND', 'METRICS_PORT', 'WEBHOOKS_BENCH_NO_METRICS'):
        env.pop(k, None)
    # A safety net for deliveries: libcurl sends any target that is not loopback to a proxy
    # on a closed loopback port (without resolving its name), so whatever URL a test
    # registers, no delivery leaves this machine. Loopback targets (sinks) go direct.
    for k in ('http_proxy', 'https_proxy', 'HTTPS_PROXY', 'all_proxy', 'ALL_PROXY', 'HTTP_PROXY'):
        env[k] = DEAD_PROXY
    env['no_proxy'] = env['NO_PROXY'] = '127.0.0.1,localhost,::1'
    # libmongoc (linked into webhooks-svc) creates /dev/shm/mongoc-<pid> before main(); a
    # process killed with -9 leaves it behind, and a later process that gets the same pid
    # prints a warning on stderr. Without shared memory the tests do not depend on what
    # earlier runs on this machine left there (test_config covers the warning itself).
    env['MONGOC_DISABLE_SHM'] = '1'
    # Sanitizer builds: report to stderr and exit non-zero; harmless for normal builds.
    env.setdefault('ASAN_OPTIONS', 'detect_leaks=1:abort_on_error=0')
    env.setdefault('UBSAN_OPTIONS', 'print_stacktrace=1')
    for k, v in (extra or {}).items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = str(v)
    return env


# ---------------------------------------------------------------------------------------------
# HTTP

class Response:
    """An HTTP response: unpacks as (status, headers, body) where body is the parsed JSON when
    the response says application/json and parses, else the raw bytes. Also .raw, .json,
    .elapsed (seconds)."""

    def __init__(self, status, headers, raw, elapsed):
        self.status = status
        self.headers = headers
        self.raw = raw
        self.elapsed = elapsed
        self.json = None
        ctype = headers.get('Content-Type', '') if headers is not None else ''
        if raw and ctype.split(';')[0].strip() == 'application/json':
            try:
                self.json = json.loads(raw.decode('utf-8'))
            except ValueError:
                self.json = None

    @property
    def body(self):
        return self.json if self.json is not None else self.raw

    def __iter__(self):
        return iter((self.status, self.headers, self.body))

    def __repr__(self):
        return 'Response(%s, %r, %r)' % (self.status, dict(self.headers or {}), self.raw[:300])


def http_request(host, port, method, path, body=None, headers=None, timeout=10.0,
                 chunked=False):
    """One request on a fresh connection. body: dict/list (sent as JSON), str, bytes, or for
    chunked=True an iterable of bytes chunks. Returns a Response."""
    hdrs = dict(headers or {})
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
        hdrs.setdefault('Content-Type', 'application/json')
    elif isinstance(body, str):
        body = body.encode('utf-8')
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    t0 = time.monotonic()
    try:
        if chunked:
            hdrs['Transfer-Encoding'] = 'chunked'
            conn.request(method, path, body=body, headers=hdrs, encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=hdrs)
        r = conn.getresponse()
        raw = r.read()
        return Response(r.status, r.headers, raw, time.monotonic() - t0)
    finally:
        conn.close()


def raw_http(host, port, data, timeout=10.0, method='GET'):
    """Send bytes as they are and read one response, tolerating a server that stops reading
    (and closes) before the request is all sent. Returns a Response."""
    family = socket.AF_INET6 if ':' in host else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.settimeout(timeout)
    t0 = time.monotonic()
    try:
        s.connect((host, port))
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass
        r = http.client.HTTPResponse(s, method=method)
        r.begin()
        raw = r.read()
        return Response(r.status, r.headers, raw, time.monotonic() - t0)
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------
# The three processes

class NatsServer:
    """nats-server with JetStream on 127.0.0.1; restart() keeps its port and store dir."""

    def __init__(self, workdir, port=None, extra_args=()):
        self.workdir = workdir
        self.host = '127.0.0.1'
        self.port = port
        self.extra_args = list(extra_args)
        self.proc = None

    @property
    def url(self):
        return 'nats://%s:%d' % (self.host, self.port)

    def start(self, timeout=START_TIMEOUT):
        fixed = self.port is not None
        for attempt in range(3):
            if not fixed:
                self.port = free_port(self.host)
            argv = [NATS_SERVER, '-a', self.host, '-p', str(self.port), '-js',
                    '-sd', os.path.join(self.workdir, 'jetstream')] + self.extra_args
            if self.proc is None:
                self.proc = Proc('nats-server', argv, base_env(), self.workdir)
            else:
                self.proc.argv = argv
            self.proc.start()
            try:
                self.proc.wait_line(r'Server is ready', timeout)
                wait_port(self.host, self.port, timeout, self.proc)
                return self
            except ProcessDied:
                in_use = 'address already in use' in self.proc.log_text(self.proc.run_start)
                self.proc.kill(check=False)
                if fixed and in_use and attempt < 2:
                    # The old listener may linger a moment after a restart.
                    time.sleep(0.2)
                    continue
                if not in_use or attempt == 2:
                    raise
        return self

    def stop(self):
        # nats-server is not ours: it exits 1 on SIGTERM, so any exit code is fine.
        return self.proc.stop(expect_code=None)

    def kill(self):
        self.proc.kill()

    def restart(self):
        if self.proc.running():
            self.stop()
        return self.start()

    def client(self, timeout=5.0):
        return NatsClient(self.host, self.port, timeout=timeout)


class OurBinary:
    """What Service and Gateway share: a Proc in self.proc, and start(timeout) of their own."""

    def stop(self, timeout=STOP_TIMEOUT):
        return self.proc.stop(timeout)

    def kill(self):
        self.proc.kill()

    def restart(self, timeout=START_TIMEOUT):
        if self.proc.running():
            self.stop()
        return self.start(timeout)


class Service(OurBinary):
    """webhooks-svc on an SQLite file in the work dir; restart() keeps the same store."""

    def __init__(self, workdir, nats_url, env=None, name='webhooks-svc', log_level='info'):
        self.workdir = workdir
        self.db_path = os.path.join(workdir, '%s.db' % name)
        # The sinks of the tests are on loopback, which the service refuses by default.
        # Every sink is the one host 127.0.0.1: the per-host limit is off unless a test
        # turns it on (test_fairness.py does). Metrics on a port the service picks (see
        # metrics_port), so that instances side by side do not fight over 9090.
        self.env = {'NATS_URL': nats_url, 'STORE_URL': 'sqlite:' + self.db_path,
                    'LOG_LEVEL': log_level, 'TARGET_ALLOW_CIDRS': LOOPBACK_CIDRS,
                    'MAX_IN_FLIGHT_PER_HOST': '0', 'METRICS_PORT': '0'}
        self.env.update(env or {})
        self.proc = Proc(name, [binary('webhooks-svc')], base_env(self.env), workdir, cwd=workdir)

    def start(self, timeout=START_TIMEOUT, wait=True):
        """Start; with wait, return once it logged that it is subscribed ("ready: ")."""
        self.proc.env = base_env(self.env)
        self.proc.start()
        if wait:
            self.wait_ready(timeout)
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        self.proc.wait_line(r'\bready: ', timeout)

    def metrics_port(self, timeout=START_TIMEOUT):
        """The port this run serves GET /metrics on, as it logged it ("metrics on ADDR port N")."""
        return int(self.proc.wait_line(r'\bmetrics on \S+ port (\d+)', timeout).group(1))


class Gateway(OurBinary):
    """webhooks-gateway on a loopback address; restart() keeps its port."""

    def __init__(self, workdir, nats_url, env=None, bind='127.0.0.1', name='webhooks-gateway',
                 token=DEFAULT_TOKEN, nats_timeout_ms=5000, log_level='info'):
        self.workdir = workdir
        self.host = bind
        self.port = None
        self.token = token
        # Every test calls /ip from 127.0.0.1: the per-caller limit is off unless a test
        # turns it on (test_hardening.py does).
        self.env = {'NATS_URL': nats_url, 'GATEWAY_BIND': bind, 'ADMIN_TOKEN': token,
                    'NATS_TIMEOUT_MS': nats_timeout_ms, 'LOG_LEVEL': log_level,
                    'IP_RATE_LIMIT': '0'}
        self.env.update(env or {})
        self.proc = Proc(name, [binary('webhooks-gateway')], base_env(self.env), workdir,
                         cwd=workdir)

    def start(self, timeout=START_TIMEOUT, wait=True):
        """Start on a free port (or the same port again); with wait, return once it logged
        "listening on ... port N" for that port and accepts connections."""
        fixed = self.port is not None
        for attempt in range(3):
            if not fixed:
                self.port = free_port(self.host)
            self.env['GATEWAY_PORT'] = self.port
            self.proc.env = base_env(self.env)
            self.proc.start()
            if not wait:
                return self
            try:
                self.wait_ready(timeout)
                return self
            except ProcessDied:
                if 'cannot listen' in self.proc.log_text(self.proc.run_start) and attempt < 2:
                    self.proc.kill(check=False)
                    if fixed:
                        time.sleep(0.2)
                    continue
                raise
        return self

    def wait_ready(self, timeout=START_TIMEOUT):
        m = self.proc.wait_line(r'listening on (\S+) port (\d+)', timeout)
        if int(m.group(2)) != self.port:
            raise AssertionError('gateway says port %s, was given %d' % (m.group(2), self.port))
        wait_port(self.host, self.port, timeout, self.proc)

    def auth(self, token=None):
        return {'Authorization': 'Bearer ' + (token if token is not None else self.token)}

    def request(self, method, path, body=None, headers=None, auth=True, timeout=10.0,
                chunked=False):
        """An HTTP request to this gateway; auth=True adds the admin token, False sends none,
        a string sends that exact Authorization header."""
        h = {}
        if auth is True:
            h.update(self.auth())
        elif isinstance(auth, str):
            h['Authorization'] = auth
        h.update(headers or {})
        return http_request(self.host, self.port, method, path, body, h, timeout, chunked)

    def raw(self, data, timeout=10.0, method='GET'):
        return raw_http(self.host, self.port, data, timeout, method)

    # Small conveniences for the webhook routes.
    def register(self, url, expect=201):
        r = self.request('POST', '/webhooks', {'targetUrl': url})
        if expect is not None and r.status != expect:
            raise AssertionError('POST /webhooks %r: %r' % (url, r))
        return r

    def list_all(self, limit=1000):
        """Every webhook, following next; fails on any non-200 page."""
        out, after = [], None
        for _ in range(100000):
            path = '/webhooks?limit=%d' % limit + ('&after=' + after if after else '')
            r = self.request('GET', path)
            if r.status != 200:
                raise AssertionError('GET %s: %r' % (path, r))
            out.extend(r.json['webhooks'])
            after = r.json['next']
            if after is None:
                return out
        raise AssertionError('list did not end')

    def count(self):
        return len(self.list_all())

    def healthy(self):
        try:
            return self.request('GET', '/healthz', auth=False, timeout=2).status == 200
        except OSError:
            return False

    def wait_healthy(self, timeout=START_TIMEOUT):
        poll_until(self.healthy, timeout, what='GET /healthz 200 on %s' % self.name)

    @property
    def name(self):
        return self.proc.name


class Stack:
    """A nats-server, one webhooks-svc and one webhooks-gateway in a temporary directory.
    Options: svc_env/gw_env (extra variables), nats_timeout_ms, token, bind (gateway address),
    log_level, start_svc/start_gateway (False to start them later by hand), nats_args, and
    nats_last (start the service and the gateway first, NATS after them, as at a cold boot)."""

    def __init__(self, svc_env=None, gw_env=None, nats_timeout_ms=5000, token=DEFAULT_TOKEN,
                 bind='127.0.0.1', log_level='info', start_svc=True, start_gateway=True,
                 nats_args=(), nats_last=False):
        self.workdir = tempfile.mkdtemp(prefix='webhooks-integ-')
        self.procs = []
        self.gateways = []
        self.services = []
        self.log_level = log_level
        self.nats = NatsServer(self.workdir, extra_args=nats_args)
        self._opts = dict(svc_env=svc_env, gw_env=gw_env, nats_timeout_ms=nats_timeout_ms,
                          token=token, bind=bind, start_svc=start_svc,
                          start_gateway=start_gateway, nats_last=nats_last)
        self.svc = None
        self.gateway = None

    def start(self):
        o = self._opts
        try:
            if o['nats_last']:
                self.nats.port = free_port(self.nats.host)
            else:
                try:
                    self.nats.start()
                finally:
                    if self.nats.proc is not None:
                        self.procs.append(self.nats.proc)
            wait = not o['nats_last']
            self.svc = self.add_service(o['svc_env'], start=o['start_svc'], wait=wait)
            self.gateway = self.add_gateway(o['gw_env'], bind=o['bind'], token=o['token'],
                                            nats_timeout_ms=o['nats_timeout_ms'],
                                            start=o['start_gateway'], wait=wait)
            if o['nats_last']:
                try:
                    self.nats.start()
                finally:
                    if self.nats.proc is not None:
                        self.procs.insert(0, self.nats.proc)
                if o['start_svc']:
                    self.svc.wait_ready()
                if o['start_gateway']:
                    self.gateway.wait_ready()
            if o['start_svc'] and o['start_gateway']:
                self.gateway.wait_healthy()
        except BaseException:
            sys.stderr.write(self.logs())
            self.close(check=False)
            raise
        return self

    def add_service(self, env=None, start=True, name=None, wait=True):
        name = name or ('webhooks-svc' if not self.services else 'webhooks-svc-%d' % (len(self.services) + 1))
        s = Service(self.workdir, self.nats.url, env, name=name, log_level=self.log_level)
        self.services.append(s)
        self.procs.append(s.proc)
        if start:
            s.start(wait=wait)
        return s

    def add_gateway(self, env=None, bind='127.0.0.1', token=DEFAULT_TOKEN, nats_timeout_ms=5000,
                    start=True, name=None, wait=True):
        name = name or ('webhooks-gateway' if not self.gateways else 'webhooks-gateway-%d' % (len(self.gateways) + 1))
        g = Gateway(self.workdir, self.nats.url, env, bind=bind, name=name, token=token,
                    nats_timeout_ms=nats_timeout_ms, log_level=self.log_level)
        self.gateways.append(g)
        self.procs.append(g.proc)
        if start:
            g.start(wait=wait)
        return g

    def nats_client(self, timeout=5.0):
        return self.nats.client(timeout)

    def mark(self):
        """Remember where each log is, so a failing test prints only what it caused."""
        for p in self.procs:
            p.mark = len(p.lines)

    def logs(self, since_mark=False):
        out = []
        for p in self.procs:
            text = p.log_text(p.mark if since_mark else 0)
            out.append('----- stderr of %s (%s) -----\n%s' % (p.name, p.log_path, text))
        return '\n'.join(out) + '\n'

    def sanitizer_reports(self):
        return [(p.name, m) for p in self.procs for m in [p.sanitizer_report()] if m]

    def close(self, check=True):
        """Stop everything: our binaries with SIGTERM (each must exit 0 within 5 s and leave no
        sanitizer report when check is True), then NATS. Always kills what remains."""
        errors = []
        for p in [g.proc for g in self.gateways] + [s.proc for s in self.services]:
            try:
                if check:
                    p.stop()
                else:
                    p.kill(check=False)
            except AssertionError as e:
                errors.append(str(e))
            finally:
                p.kill(check=False)
        try:
            self.nats.proc and self.nats.proc.kill(check=False)
        finally:
            # The logs are printed with a failure; the files stay only when asked for.
            if os.environ.get('INTEG_KEEP_LOGS') != '1':
                shutil.rmtree(self.workdir, ignore_errors=True)
        if check:
            for p in self.procs:
                m = p.sanitizer_report()
                if m and not any(p.name in e for e in errors):
                    errors.append('%s: sanitizer report (%r):\n%s' % (p.name, m, p.log_text()))
        if errors:
            raise AssertionError('\n'.join(errors))


# ---------------------------------------------------------------------------------------------
# The test case base class

class IntegrationCase(unittest.TestCase):
    """Starts a Stack for the class (stack_per_test = False) or for each test (True), with
    stack_options as keyword arguments; stack_auto = False starts none (a test then calls
    own_stack()). A failing test prints what the processes wrote to stderr during it; a
    sanitizer report in any process's stderr fails the test."""

    stack_options = {}
    stack_per_test = False
    stack_auto = True
    stack = None

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        if cls.stack_auto and not cls.stack_per_test:
            cls.stack = Stack(**cls.stack_options).start()

    @classmethod
    def tearDownClass(cls):
        try:
            if not cls.stack_per_test and cls.stack is not None:
                st, cls.stack = cls.stack, None
                st.close()
        finally:
            super().tearDownClass()

    def setUp(self):
        super().setUp()
        self._last_stack = None
        if self.stack_auto and self.stack_per_test:
            self.addCleanup(self._close_own_stack)
            self.stack = self._last_stack = Stack(**self.stack_options)
            self.stack.start()
        if self.stack is not None:
            self.stack.mark()

    def own_stack(self, **options):
        """A Stack for this test only, not started yet; closed (and checked) after the test."""
        self.stack = self._last_stack = Stack(**options)
        self.addCleanup(self._close_own_stack)
        return self.stack

    def _close_own_stack(self):
        st = self.stack
        if st is not None:
            self.stack = None
            st.close()

    def tearDown(self):
        st = self.stack
        if st is not None:
            reports = st.sanitizer_reports()
            if reports:
                self.fail('sanitizer report(s) %r:\n%s' % (reports, st.logs()))
        super().tearDown()

    def run(self, result=None):
        if result is None:
            return super().run(result)
        before = len(result.failures) + len(result.errors)
        out = super().run(result)
        if len(result.failures) + len(result.errors) > before:
            st = self.stack or getattr(self, '_last_stack', None) or type(self).stack
            if st is not None:
                sys.stderr.write('\n===== process logs for failed %s =====\n%s'
                                 % (self.id(), st.logs(since_mark=True)))
        return out

    # -- assertions shared by the test files ----------------------------------------------

    @property
    def gw(self):
        return self.stack.gateway

    def assertJson(self, r):
        self.assertEqual(r.headers.get('Content-Type', '').split(';')[0].strip(),
                         'application/json', r)
        self.assertIsNotNone(r.json, 'body is not JSON: %r' % (r,))

    def assertError(self, r, status, code):
        """r is an error response with this status and exactly the contract's error shape."""
        self.assertEqual(r.status, status, r)
        self.assertJson(r)
        self.assertEqual(set(r.json.keys()), {'error'}, r)
        err = r.json['error']
        self.assertIsInstance(err, dict, r)
        self.assertEqual(set(err.keys()), {'code', 'message'}, r)
        self.assertEqual(err['code'], code, r)
        self.assertIsInstance(err['message'], str, r)
        self.assertTrue(err['message'].strip(), r)

    def assertWebhook(self, obj, full=True):
        keys = {'id', 'targetUrl', 'createdAt'}
        if full:
            keys |= {'updatedAt', 'disabled', 'disabledReason'}
        self.assertEqual(set(obj.keys()), keys, obj)
        self.assertRegex(obj['id'], UUID_RE)
        self.assertRegex(obj['createdAt'], RFC3339_UTC_RE)
        if full:
            self.assertRegex(obj['updatedAt'], RFC3339_UTC_RE)
            self.assertIsInstance(obj['disabled'], bool, obj)
            self.assertEqual(obj['disabledReason'] is None, not obj['disabled'], obj)


def _on_signal(signum, frame):
    _kill_all_live()
    raise KeyboardInterrupt('signal %d' % signum)


def main():
    """Run the calling module's tests; every child is cleaned up however the run ends."""
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)
    try:
        unittest.main(module='__main__', verbosity=2)
    finally:
        _kill_all_live()
