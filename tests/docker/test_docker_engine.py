"""test_docker_engine.py BUILD_DIR -- the project's images built and run on a real Docker engine
(ctest docker_engine, label docker).

scripts/docker-local.sh provides the engine (the one that answers, else a private dockerd in
BUILD_DIR/docker-engine-test that never touches the host's network: no bridge, no iptables, no
ip_forward) and the debian:bookworm(-slim) base images (debootstrap, cached as tarballs in
BUILD_DIR/docker-cache between runs). The test builds webhooks-gateway, webhooks-svc and
webhooks-nats under a tag of its own, then:
  1. images: each runs as a non-root user; the runtime images hold no compiler and no -dev
     package (dpkg inside), while the build stage does (so the check can fail);
  2. docker run, host networking, free loopback ports: NATS with JetStream and authorization
     (an anonymous client is refused), webhooks-svc on SQLite in a volume, the gateway; each
     turns healthy by its image's HEALTHCHECK;
  3. the README walk-through: register, read, list, update, delete, /ip, the delivery at a
     target on 127.0.0.1 (its signature verified with the webhook's secret), the event and its
     deliveries, /healthz;
  4. docker stop of webhooks-svc while a delivery is pending (its target fails until then): a
     clean exit 0, /healthz 503; docker start: healthy again, every delivery of the event ends
     succeeded under its one webhook-id, and nothing stored before is lost;
  5. docker-compose: docker-compose.yml with docker/compose.local.yml (the local NATS image,
     SQLite, host networking), `up --build --no-deps nats webhooks-svc webhooks-gateway`: the
     services turn healthy in their depends_on order with the file's authorization, resource
     limits, log rotation and restart policy applied; /healthz and one delivery.
Cleanup is unconditional: a finally block, SIGTERM and SIGINT, and a guard process outside this
process tree (ctest kills the tree on a timeout) that cleans up after this process if it dies
first. It removes the containers, volumes, compose project, images and base images the test
made (the base tarballs stay), the engine it started and that engine's data. The host's links,
addresses, routes, forwarding sysctls and iptables rules must be the same afterwards.
Exit 77 (skipped) when no engine answers and this is not root (starting one needs root).
"""

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

SRC = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
LOCAL = os.path.join(SRC, 'scripts', 'docker-local.sh')
TARGET = os.path.join(SRC, 'tests', 'docker', 'target.py')
DOCKER = os.environ.get('DOCKER') or ('/usr/bin/docker' if os.path.exists('/usr/bin/docker') else 'docker')
UUID_RE = re.compile(r'^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$')
# Packages of a compiler or linker (gcc-12-base and libgcc-s1 are runtime libraries).
COMPILER_RE = re.compile(r'^(gcc|g\+\+|cpp|c\+\+|clang|llvm|tcc|binutils|build-essential|make|'
                         r'cmake)(-\d+(\.\d+)?)?(-[a-z0-9_]+-linux-gnu)?$')
T0 = time.monotonic()


class Failure(Exception):
    pass


def log(msg):
    print('[%6.1fs] %s' % (time.monotonic() - T0, msg), flush=True)


def check(cond, msg):
    if not cond:
        raise Failure(msg)


def run(argv, env=None, timeout=120, ok=True, cwd=None):
    """argv's stdout (stripped); Failure with its output when it exits non-zero and ok."""
    try:
        r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                           stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise Failure('%s did not finish within %d s' % (' '.join(argv[:4]), timeout))
    if ok and r.returncode != 0:
        raise Failure('%s exited %d:\n%s%s' % (' '.join(argv), r.returncode, r.stdout[-3000:],
                                               r.stderr[-3000:]))
    return r.stdout.strip() if ok else r


def free_port():
    """A loopback port free a moment ago, from below the kernel's ephemeral range: a port from
    bind(0) is an ephemeral one, which an outgoing connection (the containers', started before
    the service that will listen on it) may take as its source port in between (a run on record
    failed so: the compose gateway's port taken, "Address already in use")."""
    low = 32768
    try:
        with open('/proc/sys/net/ipv4/ip_local_port_range', encoding='ascii') as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        pass
    rng = secrets.SystemRandom()
    for _ in range(500):
        port = rng.randint(max(1024, low // 2), low - 1)
        with socket.socket() as s:
            try:
                s.bind(('127.0.0.1', port))
            except OSError:
                continue
            return port
    raise Failure('no free loopback port below %d' % low)


def wait_for(what, fn, timeout, interval=0.25):
    """fn()'s first truthy value within timeout seconds, else Failure naming what."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            v = fn()
            if v:
                return v
            last = v
        except Failure as e:
            last = e
        if time.monotonic() > deadline:
            raise Failure('timed out after %d s waiting for %s (last: %s)' % (timeout, what, last))
        time.sleep(interval)


# ---- cleanup: what the test made, recorded as it is made, undone by cleanup() ----

class State:
    """What to undo, kept in a JSON file so that the guard can undo it too."""

    def __init__(self, path):
        self.path = path
        self.d = {'containers': [], 'volumes': [], 'images': [], 'compose': None, 'pids': [],
                  'engine_started': False, 'env': {}, 'engine_dir': '', 'work': ''}

    def save(self):
        tmp = self.path + '.tmp'
        with open(tmp, 'w', encoding='utf-8') as f:
            json.dump(self.d, f)
        os.replace(tmp, self.path)

    def add(self, key, value):
        self.d[key].append(value)
        self.save()


def cleanup(d, say=log):
    """Undo everything d records; every step is attempted whatever the others do."""
    env = dict(os.environ, **d['env'])
    for pid, marker in d['pids']:
        try:
            with open('/proc/%d/cmdline' % pid, 'rb') as f:
                if marker.encode() in f.read():
                    os.kill(pid, signal.SIGTERM)
        except OSError:
            pass

    def quiet(argv, timeout=120):
        try:
            r = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                               stdin=subprocess.DEVNULL, cwd=SRC)
            if r.returncode != 0 and 'No such' not in r.stderr:
                say('cleanup: %s: %s' % (' '.join(argv[:3]), r.stderr.strip()[-300:]))
        except (OSError, subprocess.TimeoutExpired) as e:
            say('cleanup: %s: %s' % (' '.join(argv[:3]), e))

    if d['compose']:
        quiet(d['compose'] + ['down', '--volumes', '--rmi', 'local', '--timeout', '10'], 180)
    if d['containers']:
        quiet([DOCKER, 'rm', '--force', '--volumes'] + d['containers'])
    if d['volumes']:
        quiet([DOCKER, 'volume', 'rm', '--force'] + d['volumes'])
    if d['images']:
        quiet([DOCKER, 'rmi', '--force'] + d['images'])
    if d['engine_started']:
        quiet(['bash', LOCAL, 'stop', '--wipe'], 240)
    if d['work']:
        shutil.rmtree(d['work'], ignore_errors=True)


def guard(pid, state_path):
    """Wait for the test process to end; clean up after it if it left its state behind."""
    while os.path.exists(state_path):
        try:
            with open('/proc/%d/stat' % pid) as f:
                if f.read().rsplit(')', 1)[1].split()[0] == 'Z':
                    break
        except OSError:
            break
        time.sleep(1)
    if os.path.exists(state_path):
        with open(state_path, encoding='utf-8') as f:
            d = json.load(f)
        print('guard: test process %d ended without cleaning up; cleaning up' % pid, flush=True)
        cleanup(d, say=lambda m: print(m, flush=True))
        if os.path.exists(state_path):
            os.unlink(state_path)


# ---- the host's network, which must not change ----

def net_snapshot():
    snap = {}
    strip = re.compile(r'\s+(valid_lft|preferred_lft|expires)\s+\S+')
    for name, argv in (('links', ['ip', '-o', 'link', 'show']), ('addrs', ['ip', '-o', 'addr', 'show']),
                       ('routes', ['ip', 'route', 'show', 'table', 'all']),
                       ('routes6', ['ip', '-6', 'route', 'show', 'table', 'all']),
                       ('iptables', ['iptables', '-S']), ('ip6tables', ['ip6tables', '-S'])):
        if shutil.which(argv[0]):
            r = subprocess.run(argv, capture_output=True, text=True)
            snap[name] = sorted(strip.sub('', line) for line in r.stdout.splitlines())
    for p in ('/proc/sys/net/ipv4/ip_forward', '/proc/sys/net/ipv6/conf/all/forwarding'):
        try:
            with open(p) as f:
                snap[p] = f.read().strip()
        except OSError:
            pass
    return snap


# ---- HTTP and NATS clients ----

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, token=None, timeout=15):
    """(status, parsed JSON or None)."""
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        req.add_header('Content-Type', 'application/json')
    if token:
        req.add_header('Authorization', 'Bearer ' + token)
    try:
        with OPENER.open(req, timeout=timeout) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    except (urllib.error.URLError, OSError) as e:
        raise Failure('%s %s: %s' % (method, url, e))
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw


def nats_connect(port, user=None, password=None):
    """The server's answer to CONNECT + PING: 'PONG' or the -ERR line."""
    with socket.create_connection(('127.0.0.1', port), timeout=5) as s:
        f = s.makefile('rb')
        check(f.readline().startswith(b'INFO '), 'NATS on %d sent no INFO' % port)
        opts = {'verbose': False, 'pedantic': False, 'name': 'docker-engine-test'}
        if user:
            opts.update(user=user, **{'pass': password})
        s.sendall(b'CONNECT ' + json.dumps(opts).encode() + b'\r\nPING\r\n')
        line = f.readline().decode().strip()
        return 'PONG' if line == 'PONG' else line


class Records:
    """The POSTs target.py recorded."""

    def __init__(self, path):
        self.path = path

    def all(self, prefix=''):
        try:
            with open(self.path, encoding='utf-8') as f:
                recs = [json.loads(line) for line in f if line.strip()]
        except FileNotFoundError:
            return []
        return [r for r in recs if r['path'].startswith(prefix)]


def verify_signature(rec, secret):
    """The Standard Webhooks signature of a recorded delivery, under whsec_ secret."""
    h = rec['headers']
    key = base64.b64decode(secret[len('whsec_'):])
    signed = '%s.%s.%s' % (h['webhook-id'], h['webhook-timestamp'], rec['body'])
    want = base64.b64encode(hmac.new(key, signed.encode(), hashlib.sha256).digest()).decode()
    sigs = [s.split(',', 1)[1] for s in h['webhook-signature'].split() if s.startswith('v1,')]
    check(want in sigs, 'webhook-signature %r does not verify under the secret' % h['webhook-signature'])


# ---- the test ----

class EngineTest:
    def __init__(self, build):
        self.build = os.path.abspath(build)
        self.work = tempfile.mkdtemp(prefix='docker-engine-test.')
        self.state = State(os.path.join(self.work, 'state.json'))
        self.state.d['work'] = self.work
        self.tag = 'test-%d-%s' % (os.getpid(), secrets.token_hex(3))
        self.name = 'whtest-%d' % os.getpid()
        self.engine_dir = os.path.join(self.build, 'docker-engine-test')
        self.env = dict(os.environ, DOCKER_LOCAL_DIR=self.engine_dir,
                        DOCKER_LOCAL_CACHE=os.path.join(self.build, 'docker-cache'),
                        IMAGE_TAG=self.tag, DOCKER=DOCKER)
        self.timings = []
        self.token = secrets.token_hex(24)
        self.nats_password = secrets.token_hex(16)
        self.records = Records(os.path.join(self.work, 'target.jsonl'))
        self.images = {}

    def check_net(self, when):
        """The host's network, while the containers run, is what it was before the test."""
        now = net_snapshot()
        changed = [k for k in sorted(set(self.net_before) | set(now)) if self.net_before.get(k) != now.get(k)]
        check(not changed, 'the host network changed %s: %s' % (
            when, '; '.join('%s: %s -> %s' % (k, self.net_before.get(k), now.get(k)) for k in changed)))
        log('host network unchanged %s' % when)

    def docker(self, *args, timeout=120, ok=True):
        return run([DOCKER] + list(args), env=self.env, timeout=timeout, ok=ok)

    def timed(self, what, t0):
        self.timings.append((what, time.monotonic() - t0))
        log('%s: %.0f s' % (what, time.monotonic() - t0))

    # -- engine, base image, images --

    def engine(self):
        t0 = time.monotonic()
        # A private engine a killed run left behind in this directory goes first.
        run(['bash', LOCAL, 'stop', '--wipe'], env=self.env, timeout=240)
        out = run(['bash', LOCAL, 'start'], env=self.env, timeout=240)
        for line in out.splitlines():
            m = re.match(r'export (DOCKER_HOST|DOCKER_LOCAL_STARTED)=(.*)$', line)
            if m:
                self.env[m.group(1)] = m.group(2)
        self.state.d['env'] = {k: self.env[k] for k in ('DOCKER_HOST', 'DOCKER_LOCAL_DIR',
                                                        'DOCKER_LOCAL_CACHE') if k in self.env}
        self.state.d['engine_started'] = 'DOCKER_LOCAL_STARTED' in self.env
        self.state.save()
        log('engine: %s (%s)' % (self.env['DOCKER_HOST'], 'started privately'
                                 if self.state.d['engine_started'] else 'already running'))
        self.timed('engine start', t0)
        t0 = time.monotonic()
        cached = all(os.path.exists(os.path.join(self.env['DOCKER_LOCAL_CACHE'], f)) for f in
                     ('debian-bookworm-minbase-2.tar.gz', 'debian-bookworm-minbase-2-slim.tar.gz'))
        # Record the base tags before they exist, so that a failure halfway removes them too.
        tags = run(['bash', LOCAL, 'base'], env=self.env, timeout=900).split()
        for t in tags:
            self.state.add('images', t)
        self.timed('base image (%s)' % ('imported from the cache' if cached else
                                        'debootstrap, then imported'), t0)

    def build_images(self):
        for n in ('webhooks-gateway', 'webhooks-svc', 'webhooks-nats', 'webhooks-build'):
            self.state.add('images', '%s:%s' % (n, self.tag))
        t0 = time.monotonic()
        out = run(['bash', LOCAL, 'images'], env=self.env, timeout=1200)
        for line in out.splitlines():
            name, size, secs = line.split()
            self.images[name.split(':')[0]] = name
            self.timings.append(('build %s (%d MB)' % (name.split(':')[0], int(size) // 1000000),
                                 float(secs)))
            log('built %s: %d MB in %s s' % (name, int(size) // 1000000, secs))
        check(set(self.images) == {'webhooks-gateway', 'webhooks-svc', 'webhooks-nats'},
              'docker-local.sh images built %s' % sorted(self.images))
        self.timed('images', t0)
        # The build stage alone, from the layers just built: what the runtime check must catch.
        self.docker('build', '--network', 'host', '--target', 'build', '-f',
                    os.path.join(SRC, 'docker', 'gateway.Dockerfile'), '-t',
                    'webhooks-build:%s' % self.tag, SRC, timeout=600)

    def image_contents(self, image):
        """(uid, installed packages, compiler tools on PATH) of image, as its user sees it."""
        script = ('id -u; dpkg-query -W -f \'${db:Status-Abbrev} ${Package}\\n\'; '
                  'for c in cc gcc c++ g++ clang ld as make cmake; do command -v "$c" || true; done')
        out = self.docker('run', '--rm', '--network', 'none', '--entrypoint', '/bin/sh', image,
                          '-c', script)
        lines = out.splitlines()
        pkgs = [ln.split()[1] for ln in lines[1:] if ln.startswith('ii ')]
        tools = [ln for ln in lines[1:] if ln.startswith('/')]
        return int(lines[0]), pkgs, tools

    def check_images(self):
        t0 = time.monotonic()
        uid, pkgs, tools = self.image_contents('webhooks-build:%s' % self.tag)
        bad = [p for p in pkgs if p.endswith('-dev') or COMPILER_RE.match(p)]
        check('gcc' in bad and any(p.endswith('-dev') for p in bad) and tools,
              'the check finds no compiler or -dev package in the build stage: %s %s' % (bad, tools))
        for name, image in sorted(self.images.items()):
            user = self.docker('image', 'inspect', '-f', '{{.Config.User}}', image)
            check(user and user.split(':')[0] not in ('root', '0'), '%s runs as USER %r' % (image, user))
            uid, pkgs, tools = self.image_contents(image)
            check(uid != 0, '%s runs as uid 0' % image)
            bad = [p for p in pkgs if p.endswith('-dev') or COMPILER_RE.match(p)]
            check(not bad and not tools, '%s holds compiler or -dev packages: %s %s' % (image, bad, tools))
            log('%s: USER %s (uid %d), %d packages, no compiler, no -dev package'
                % (image, user, uid, len(pkgs)))
        self.timed('image checks', t0)

    # -- containers --

    def container(self, name, *args):
        self.state.add('containers', name)
        self.docker('run', '--detach', '--name', name, '--network', 'host', *args)
        return name

    def inspect(self, name, fmt):
        return self.docker('inspect', '-f', fmt, name)

    def wait_healthy(self, name, timeout=120, label=None):
        def healthy():
            st = json.loads(self.inspect(name, '{{json .State}}'))
            if not st.get('Running'):
                raise Failure('%s is not running: %s\n%s' % (name, st.get('Status'), self.logs(name)))
            h = st.get('Health') or {}
            if h.get('Status') == 'unhealthy':
                raise Failure('%s is unhealthy: %s\n%s' % (name, h.get('Log'), self.logs(name)))
            return h.get('Status') == 'healthy'
        t0 = time.monotonic()
        try:
            wait_for('%s to be healthy' % name, healthy, timeout, 0.5)
        except Failure as e:
            raise Failure('%s\n%s' % (e, self.logs(name))) from None
        log('%s: healthy after %.1f s' % (label or name, time.monotonic() - t0))

    def logs(self, name):
        r = self.docker('logs', '--tail', '30', name, ok=False)
        return '--- docker logs %s ---\n%s%s' % (name, r.stdout, r.stderr)

    def process_uid(self, name):
        """The uid the container's main process runs as on the host, from docker top."""
        out = self.docker('top', name, '-o', 'pid,uid,comm').splitlines()
        return int(out[1].split()[1])

    def start_target(self):
        port = free_port()
        p = subprocess.Popen([sys.executable, '-B', TARGET, str(port), self.records.path],
                             stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
        self.state.add('pids', [p.pid, TARGET])
        check(p.stdout.readline().strip() == b'ready', 'target.py did not start')
        self.target = 'http://127.0.0.1:%d' % port
        self.control('1')
        log('target: %s' % self.target)

    def control(self, flaky):
        status, body = http('GET', '%s/control?flaky=%s' % (self.target, flaky))
        check(status == 200 and body['flaky'] == (flaky == '1'), 'target control: %s %s' % (status, body))

    def run_containers(self):
        t0 = time.monotonic()
        self.nats_port, self.mon_port, self.gw_port = free_port(), free_port(), free_port()
        p = self.name
        conf = os.path.join(self.work, 'nats.conf')
        with open(conf, 'w', encoding='utf-8') as f:
            f.write('authorization {\n  user: webhooks\n  password: "%s"\n}\n' % self.nats_password)
        os.chmod(conf, 0o644)  # read by the image's user nats; the work directory is 0700
        for v in ('nats-data', 'svc-data'):
            self.state.add('volumes', '%s-%s' % (p, v))
            self.docker('volume', 'create', '%s-%s' % (p, v))
        nats_url = 'nats://webhooks:%s@127.0.0.1:%d' % (self.nats_password, self.nats_port)
        self.nats = self.container(
            p + '-nats', '-v', p + '-nats-data:/data', '-v', conf + ':/etc/nats/auth.conf:ro',
            '--health-cmd', 'wget -q -O /dev/null http://127.0.0.1:%d/healthz' % self.mon_port,
            self.images['webhooks-nats'], '-c', '/etc/nats/auth.conf', '-js', '-sd', '/data',
            '-a', '127.0.0.1', '-p', str(self.nats_port), '-m', str(self.mon_port))
        self.wait_healthy(self.nats)
        check(nats_connect(self.nats_port).startswith('-ERR'), 'NATS lets an anonymous client in')
        check(nats_connect(self.nats_port, 'webhooks', self.nats_password) == 'PONG',
              'NATS refuses the password it was given')
        self.svc = self.container(
            p + '-svc', '-v', p + '-svc-data:/var/lib/webhooks', '-e', 'NATS_URL=' + nats_url,
            '-e', 'TARGET_ALLOW_CIDRS=127.0.0.1/32', '-e', 'RETRY_SCHEDULE=1s,2s,2s,2s,2s',
            '-e', 'METRICS_PORT=0', self.images['webhooks-svc'])
        self.gw = self.container(
            p + '-gw', '-e', 'ADMIN_TOKEN=' + self.token, '-e', 'NATS_URL=' + nats_url,
            '-e', 'GATEWAY_BIND=127.0.0.1', '-e', 'GATEWAY_PORT=%d' % self.gw_port,
            self.images['webhooks-gateway'])
        self.wait_healthy(self.svc)
        self.wait_healthy(self.gw)
        for c in (self.nats, self.svc, self.gw):
            uid = self.process_uid(c)
            check(uid != 0, '%s runs as root' % c)
        log('containers run as uids %s' % [self.process_uid(c) for c in (self.nats, self.svc, self.gw)])
        self.check_net('with the containers running')
        self.timed('docker run: NATS, webhooks-svc, gateway healthy', t0)

    # -- the README walk-through --

    def api(self, method, path, body=None, token=True, base=None):
        return http(method, (base or self.base) + path, body, self.token if token else None)

    def register(self, url):
        status, w = self.api('POST', '/webhooks', {'targetUrl': url})
        check(status == 201, 'POST /webhooks %s: %s %s' % (url, status, w))
        check(UUID_RE.match(w['id']) and w['targetUrl'] == url and w['secret'].startswith('whsec_'),
              'POST /webhooks answered %s' % w)
        return w

    def wait_event(self, eid, succeeded, timeout=60):
        def done():
            status, ev = self.api('GET', '/events/' + eid)
            check(status == 200, 'GET /events/%s: %s %s' % (eid, status, ev))
            check(ev['failed'] == 0, 'event %s has failed deliveries: %s' % (eid, ev))
            return ev if ev['pending'] == 0 and ev['succeeded'] == succeeded else None
        return wait_for('event %s: %d succeeded, none pending' % (eid, succeeded), done, timeout, 0.5)

    def walkthrough(self):
        t0 = time.monotonic()
        self.base = 'http://127.0.0.1:%d' % self.gw_port
        status, body = self.api('GET', '/healthz', token=False)
        check(status == 200, '/healthz: %s %s' % (status, body))
        status, body = self.api('POST', '/webhooks', {'targetUrl': self.target + '/ok/a'}, token=False)
        check(status == 401, 'POST /webhooks without the token: %s' % status)
        self.wa = self.register(self.target + '/ok/a')
        status, w = self.api('GET', '/webhooks/' + self.wa['id'])
        check(status == 200 and w['id'] == self.wa['id'] and w['targetUrl'] == self.wa['targetUrl'],
              'GET /webhooks/{id}: %s %s' % (status, w))
        wb = self.register(self.target + '/ok/b')
        status, w = self.api('PUT', '/webhooks/' + wb['id'], {'newTargetUrl': self.target + '/ok/b2'})
        check(status == 200 and w['targetUrl'] == self.target + '/ok/b2', 'PUT: %s %s' % (status, w))
        status, _ = self.api('DELETE', '/webhooks/' + wb['id'])
        check(status == 204, 'DELETE: %s' % status)
        status, _ = self.api('GET', '/webhooks/' + wb['id'])
        check(status == 404, 'GET of a deleted webhook: %s' % status)
        status, page = self.api('GET', '/webhooks?limit=100')
        check(status == 200 and [w['id'] for w in page['webhooks']] == [self.wa['id']]
              and page['next'] is None, 'GET /webhooks: %s %s' % (status, page))
        status, ev = self.api('GET', '/ip', token=False)
        check(status == 202 and ev['targets'] == 1 and ev['ipAddress'] == '127.0.0.1',
              'GET /ip: %s %s' % (status, ev))
        self.event1 = ev['eventId']
        rec = wait_for('the delivery at /ok/a', lambda: self.records.all('/ok/a'), 30)[0]
        body = json.loads(rec['body'])
        check(body['ipAddress'] == '127.0.0.1' and isinstance(body['timestamp'], int)
              and rec['headers']['webhook-timestamp'] == str(body['timestamp'])
              and rec['headers']['content-type'] == 'application/json',
              'the delivery: %s' % rec)
        verify_signature(rec, self.wa['secret'])
        self.wait_event(self.event1, 1)
        status, page = self.api('GET', '/events/%s/deliveries?limit=100' % self.event1)
        check(status == 200 and len(page['deliveries']) == 1, 'deliveries: %s %s' % (status, page))
        d = page['deliveries'][0]
        check(d['webhookId'] == self.wa['id'] and d['status'] == 'succeeded'
              and d['id'] == rec['headers']['webhook-id'] and d['attempts'][0]['httpStatus'] == 200,
              'the delivery record: %s' % d)
        self.timed('walk-through', t0)

    def stop_start(self):
        t0 = time.monotonic()
        wc = self.register(self.target + '/flaky/c')
        status, ev = self.api('GET', '/ip', token=False)
        check(status == 202 and ev['targets'] == 2, 'GET /ip: %s %s' % (status, ev))
        event2 = ev['eventId']
        wait_for('a failed attempt at /flaky/c', lambda: self.records.all('/flaky/c'), 30)
        wait_for('the delivery at /ok/a', lambda: len(self.records.all('/ok/a')) >= 2, 30)
        status, ev = self.api('GET', '/events/' + event2)
        check(status == 200 and ev['pending'] >= 1, 'nothing pending before the stop: %s' % ev)
        log('event %s before docker stop: %s' % (event2, ev))
        t1 = time.monotonic()
        self.docker('stop', self.svc, timeout=60)
        st = json.loads(self.inspect(self.svc, '{{json .State}}'))
        check(st['ExitCode'] == 0 and not st['OOMKilled'],
              'webhooks-svc did not exit cleanly on docker stop: %s\n%s' % (st, self.logs(self.svc)))
        log('docker stop %s: exit 0 after %.1f s' % (self.svc, time.monotonic() - t1))
        wait_for('/healthz 503 with webhooks-svc stopped',
                 lambda: self.api('GET', '/healthz', token=False)[0] == 503, 30)
        attempts_stopped = len(self.records.all('/flaky/c'))
        self.control('0')
        self.docker('start', self.svc)
        self.wait_healthy(self.svc)
        ev = self.wait_event(event2, 2, 90)
        log('event %s after docker start: %s' % (event2, ev))
        recs = self.records.all('/flaky/c')
        check(recs[-1]['status'] == 200 and len(recs) > attempts_stopped,
              'no successful attempt at /flaky/c after the start: %s' % [r['status'] for r in recs])
        check(len({r['headers']['webhook-id'] for r in recs}) == 1,
              'the retries of one delivery carry different webhook-ids')
        verify_signature(recs[-1], wc['secret'])
        # Nothing stored before the stop is lost.
        status, page = self.api('GET', '/webhooks?limit=100')
        check(sorted(w['id'] for w in page['webhooks']) == sorted([self.wa['id'], wc['id']]),
              'the webhooks after the restart: %s' % page)
        self.wait_event(self.event1, 1, 5)
        status, page = self.api('GET', '/events/%s/deliveries?limit=100' % event2)
        check(sorted(d['status'] for d in page['deliveries']) == ['succeeded', 'succeeded'],
              'the deliveries of %s: %s' % (event2, page))
        self.wait_healthy(self.gw, 60)
        self.timed('docker stop/start of webhooks-svc with a delivery pending', t0)
        for c in (self.gw, self.svc, self.nats):
            self.docker('stop', c, timeout=60)

    # -- docker-compose --

    def compose(self):
        import yaml
        t0 = time.monotonic()
        nats_port, mon_port, gw_port = free_port(), free_port(), free_port()
        # Every variable the two files read, in the environment (it wins over a .env file).
        values = {'ADMIN_TOKEN': self.token, 'NATS_PASSWORD': self.nats_password,
                  'NATS_PORT': str(nats_port), 'NATS_MONITOR_PORT': str(mon_port),
                  'GATEWAY_PORT': str(gw_port), 'WEBHOOKS_NATS_IMAGE': self.images['webhooks-nats'],
                  'TARGET_ALLOW_CIDRS': '127.0.0.1/32', 'LOG_LEVEL': 'info'}
        env = {k: v for k, v in self.env.items() if not k.startswith('COMPOSE_')}
        env.update(values)
        project = self.name.replace('-', '')
        # docker-compose.yml + docker/compose.local.yml, merged by docker-compose (see
        # docker-local.sh compose).
        dc = ['bash', LOCAL, 'compose', '--project-name', project]
        self.state.d['compose'] = dc
        self.state.d['env'].update(values)
        self.state.save()
        run(dc + ['up', '--detach', '--build', '--no-deps', 'nats', 'webhooks-svc',
                  'webhooks-gateway'], env=env, cwd=SRC, timeout=600)
        self.timed('docker-compose up --build (cached layers)', t0)
        self.check_net('with the compose project up')
        with open(os.path.join(SRC, 'docker-compose.yml'), encoding='utf-8') as f:
            spec = yaml.safe_load(f)['services']
        names = {}
        for svc in ('nats', 'webhooks-svc', 'webhooks-gateway'):
            ids = run(dc + ['ps', '-q', svc], env=env, cwd=SRC).split()
            check(len(ids) == 1, 'docker-compose ps %s: %s' % (svc, ids))
            names[svc] = ids[0]
        for svc, cid in names.items():
            self.wait_healthy(cid, 120, 'compose ' + svc)
            host = json.loads(self.inspect(cid, '{{json .HostConfig}}'))
            want = spec[svc]
            lim = want['deploy']['resources']['limits']
            check(host['Memory'] == to_bytes(lim['memory']) and
                  host['NanoCpus'] == int(float(lim['cpus']) * 1e9),
                  '%s: limits %s, not %s' % (svc, (host['Memory'], host['NanoCpus']), lim))
            check(host['LogConfig'] == {'Type': want['logging']['driver'],
                                        'Config': want['logging']['options']},
                  '%s: logging %s, not %s' % (svc, host['LogConfig'], want['logging']))
            check(host['RestartPolicy']['Name'] == want['restart'], '%s: restart %s' % (svc, host['RestartPolicy']))
            check(self.process_uid(cid) != 0 or svc == 'nats', '%s runs as root' % svc)
        # The compose file's own NATS entrypoint: authorization from NATS_PASSWORD, not argv.
        check(nats_connect(nats_port).startswith('-ERR'), 'compose NATS lets an anonymous client in')
        check(nats_connect(nats_port, 'webhooks', self.nats_password) == 'PONG',
              'compose NATS refuses NATS_PASSWORD')
        top = self.docker('top', names['nats'], '-o', 'pid,args')
        check(self.nats_password not in top, 'the NATS password is on the command line: %s' % top)
        base = 'http://127.0.0.1:%d' % gw_port
        status, body = http('GET', base + '/healthz')
        check(status == 200, 'compose /healthz: %s %s' % (status, body))
        w = self.register_at(base, self.target + '/ok/compose')
        status, ev = http('GET', base + '/ip')
        check(status == 202 and ev['targets'] == 1, 'compose GET /ip: %s %s' % (status, ev))
        rec = wait_for('the delivery at /ok/compose', lambda: self.records.all('/ok/compose'), 30)[0]
        verify_signature(rec, w['secret'])
        self.base = base
        self.wait_event(ev['eventId'], 1)
        self.timed('docker-compose: healthy, limits, logging, /healthz, one delivery', t0)
        t1 = time.monotonic()
        run(dc + ['down', '--volumes', '--rmi', 'local', '--timeout', '10'], env=env, cwd=SRC, timeout=180)
        self.state.d['compose'] = None
        self.state.save()
        self.timed('docker-compose down', t1)

    def register_at(self, base, url):
        status, w = http('POST', base + '/webhooks', {'targetUrl': url}, self.token)
        check(status == 201, 'POST /webhooks at %s: %s %s' % (base, status, w))
        return w

    def main(self):
        self.state.save()
        # The guard: setsid -f puts it outside this process tree, in a session of its own.
        with open(os.path.join(self.build, 'docker-engine-test.guard.log'), 'a') as g:
            subprocess.run(['setsid', '-f', sys.executable, '-B', os.path.abspath(__file__),
                            '--guard', str(os.getpid()), self.state.path],
                           stdin=subprocess.DEVNULL, stdout=g, stderr=g, check=True)
        self.engine()
        self.build_images()
        self.check_images()
        self.start_target()
        self.run_containers()
        self.walkthrough()
        self.stop_start()
        self.compose()


def to_bytes(size):
    m = re.fullmatch(r'(\d+)([kKmMgG]?)[bB]?', str(size))
    return int(m.group(1)) * {'': 1, 'k': 1 << 10, 'm': 1 << 20, 'g': 1 << 30}[m.group(2).lower()]


def engine_answers():
    try:
        return subprocess.run([DOCKER, 'version'], capture_output=True, timeout=20).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def main():
    if len(sys.argv) == 4 and sys.argv[1] == '--guard':
        guard(int(sys.argv[2]), sys.argv[3])
        return 0
    if len(sys.argv) != 2:
        print('usage: test_docker_engine.py BUILD_DIR', file=sys.stderr)
        return 2
    if os.geteuid() != 0 and not engine_answers():
        print('SKIP: no Docker engine answers and starting one needs root')
        return 77

    def stop(signum, frame):
        raise SystemExit(128 + signum)
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)

    before = net_snapshot()
    t = EngineTest(sys.argv[1])
    t.net_before = before
    rc = 0
    try:
        t.main()
    except Failure as e:
        log('FAIL: %s' % e)
        rc = 1
    finally:
        t0 = time.monotonic()
        cleanup(t.state.d)
        t.timed('cleanup', t0)
    # The engine is gone: nothing it made may remain on the host.
    after = net_snapshot()
    if after != before:
        for k in sorted(set(before) | set(after)):
            if before.get(k) != after.get(k):
                log('FAIL: the host network changed: %s: %s -> %s' % (k, before.get(k), after.get(k)))
        rc = 1
    left = [ln.split()[4] for ln in open('/proc/self/mountinfo') if t.engine_dir in ln.split()[4]]
    if left:
        log('FAIL: mounts left under %s: %s' % (t.engine_dir, left))
        rc = 1
    print('\ntimings:', flush=True)
    for what, secs in t.timings:
        print('  %-70s %6.1f s' % (what, secs))
    print('  %-70s %6.1f s' % ('total', time.monotonic() - T0), flush=True)
    log('PASS' if rc == 0 else 'FAILED')
    return rc


if __name__ == '__main__':
    sys.exit(main())
