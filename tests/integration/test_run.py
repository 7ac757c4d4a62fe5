"""test_run.py -- make run (scripts/run.sh) as a developer and a script use it: it starts NATS
with authorization (an anonymous client is refused; the processes connect with the password
kept in data/), and stops all three processes on SIGINT even when started in the background by
a script (SIGINT ignored on entry), and on SIGTERM to its process group."""

import os
import shutil
import signal
import subprocess
import tempfile
import time

import harness
from harness import IntegrationCase
from nats_client import NatsClient, NatsError

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))


def children(pid, names=('nats-server', 'webhooks-svc', 'webhooks-gatewa')):
    """The three processes run.sh started (comm is cut at 15 characters)."""
    p = subprocess.run(['pgrep', '-P', str(pid)], capture_output=True, text=True)
    out = []
    for x in p.stdout.split():
        try:
            with open('/proc/%s/comm' % x) as f:
                if f.read().strip() in names:
                    out.append(int(x))
        except OSError:
            pass
    return out


def alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open('/proc/%d/stat' % pid) as f:
        return f.read().split(') ', 1)[1][0] != 'Z'


class MakeRunTest(IntegrationCase):
    stack_auto = False

    def start_run(self, ignore_sigint, new_session):
        data = tempfile.mkdtemp(prefix='webhooks-run-')
        self.addCleanup(shutil.rmtree, data, True)
        port, nats_port = harness.free_port('127.0.0.1'), harness.free_port('127.0.0.1')
        env = harness.base_env({'DATA_DIR': data, 'GATEWAY_PORT': port, 'NATS_PORT': nats_port,
                                'TARGET_ALLOW_CIDRS': None, 'METRICS_PORT': 0})
        env.pop('WEBHOOKS_RUN_SIGNALS', None)
        build = os.path.dirname(os.environ['WEBHOOKS_BIN_DIR'])

        def preexec():
            if ignore_sigint:  # what a shell does to a background job of a script
                signal.signal(signal.SIGINT, signal.SIG_IGN)

        log = open(os.path.join(data, 'run.log'), 'w')
        p = subprocess.Popen([os.path.join(ROOT, 'scripts', 'run.sh'), build], env=env,
                             stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                             preexec_fn=preexec, start_new_session=new_session)
        self.addCleanup(self.reap, p, log)
        harness.poll_until(lambda: harness.http_request('127.0.0.1', port, 'GET', '/healthz',
                                                        timeout=2).status == 200,
                           30, what='make run healthy')
        return p, data, port, nats_port

    def reap(self, p, log):
        for pid in children(p.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if p.poll() is None:
            p.kill()
            p.wait(10)
        log.close()

    def assert_all_stop(self, p, kids):
        try:
            p.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.fail('run.sh still runs 15 s after the signal')
        deadline = time.monotonic() + 5
        while any(alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual([k for k in kids if alive(k)], [], 'processes left behind')

    def test_nats_needs_the_password_and_sigint_stops_all(self):
        p, data, port, nats_port = self.start_run(ignore_sigint=True, new_session=False)
        kids = children(p.pid)
        self.assertEqual(len(kids), 3, kids)
        with self.assertRaisesRegex((NatsError, OSError), '(?i)authorization'):
            with NatsClient(port=nats_port, timeout=5) as nc:
                nc.request('webhooks.list', '{}', timeout=5)
        with open(os.path.join(data, 'nats-password')) as f:
            password = f.read().strip()
        self.assertEqual(os.stat(os.path.join(data, 'nats-password')).st_mode & 0o077, 0)
        self.assertEqual(os.stat(os.path.join(data, 'nats.conf')).st_mode & 0o077, 0)
        with NatsClient(port=nats_port, timeout=5, user='webhooks', password=password) as nc:
            self.assertIn('webhooks', nc.request('webhooks.list', '{}', timeout=5).json())
        # The password is in no command line.
        for k in kids:
            with open('/proc/%d/cmdline' % k, 'rb') as f:
                self.assertNotIn(password.encode(), f.read())
        os.kill(p.pid, signal.SIGINT)
        self.assert_all_stop(p, kids)

    def test_sigterm_to_the_process_group_stops_all(self):
        p, _, _, _ = self.start_run(ignore_sigint=False, new_session=True)
        kids = children(p.pid)
        self.assertEqual(len(kids), 3, kids)
        os.killpg(p.pid, signal.SIGTERM)
        self.assert_all_stop(p, kids)


if __name__ == '__main__':
    harness.main()
