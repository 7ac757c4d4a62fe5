"""test_config.py -- configuration of both binaries: --help, bad values (one stderr line naming
the variable, non-zero exit), the required ADMIN_TOKEN, and a few valid edge values."""

import os
import re
import shutil
import tempfile
import unittest

import harness
from harness import IntegrationCase, Proc

GATEWAY_DEFAULTS = {
    'NATS_URL': 'nats://127.0.0.1:4222', 'GATEWAY_BIND': '0.0.0.0', 'GATEWAY_PORT': '8080',
    'ADMIN_TOKEN': 'empty', 'TRUST_PROXY': '0', 'NATS_TIMEOUT_MS': '5000', 'LOG_LEVEL': 'info',
    'IP_RATE_LIMIT': '10/s', 'GATEWAY_MAX_CONNECTIONS_PER_IP': '128',
    'GATEWAY_READ_TIMEOUT_MS': '30000',
}
SVC_DEFAULTS = {
    'NATS_URL': 'nats://127.0.0.1:4222', 'STORE_URL': 'sqlite:data/webhooks.db',
    'MAX_IN_FLIGHT': '10', 'MAX_RETRIES': '5', 'RETRY_SCHEDULE': '1s,5s,30s,2m,10m',
    'DELIVERY_TIMEOUT_MS': '10000', 'LOG_LEVEL': 'info', 'SECRET_ROTATION_GRACE': '24h',
    'RETENTION': '30d', 'DISABLE_AFTER': '5d', 'METRICS_BIND': '127.0.0.1', 'METRICS_PORT': '9090',
    'MAX_PENDING_DELIVERIES': '1000000', 'ACK_WAIT': '30s',
}
FLAGS = {'GATEWAY_PORT': '--port', 'NATS_TIMEOUT_MS': '--nats-timeout-ms', 'LOG_LEVEL': '--log-level',
         'TRUST_PROXY': '--trust-proxy', 'GATEWAY_BIND': '--bind', 'MAX_IN_FLIGHT': '--max-in-flight',
         'RETRY_SCHEDULE': '--retry-schedule', 'STORE_URL': '--store-url', 'NATS_URL': '--nats-url',
         'MAX_RETRIES': '--max-retries', 'DELIVERY_TIMEOUT_MS': '--delivery-timeout-ms',
         'IP_RATE_LIMIT': '--ip-rate-limit', 'GATEWAY_MAX_CONNECTIONS_PER_IP': '--max-connections-per-ip',
         'GATEWAY_READ_TIMEOUT_MS': '--read-timeout-ms', 'SECRET_ROTATION_GRACE': '--secret-rotation-grace',
         'RETENTION': '--retention', 'DISABLE_AFTER': '--disable-after', 'METRICS_BIND': '--metrics-bind',
         'METRICS_PORT': '--metrics-port', 'MAX_PENDING_DELIVERIES': '--max-pending-deliveries',
         'ACK_WAIT': '--ack-wait'}


class ConfigCase(unittest.TestCase):
    """Runs a binary to its exit in a scratch directory, with NATS pointed at a closed port so
    that a binary which wrongly starts harms nothing."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='webhooks-config-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.closed_port = harness.free_port()
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.kill(check=False)

    def base(self, name):
        env = {'NATS_URL': 'nats://127.0.0.1:%d' % self.closed_port, 'LOG_LEVEL': 'info'}
        if name == 'webhooks-gateway':
            env.update({'ADMIN_TOKEN': harness.DEFAULT_TOKEN, 'GATEWAY_BIND': '127.0.0.1',
                        'GATEWAY_PORT': str(harness.free_port())})
        else:
            env['STORE_URL'] = 'sqlite:' + os.path.join(self.dir, 'cfg.db')
        return env

    def run_to_exit(self, name, env, args=(), timeout=10, argv0=None):
        """Returns (exit code, stderr lines of this run, stdout text). With argv0, that
        program is run instead, with the binary's path as its last argument."""
        n = len(self.procs)
        out_path = os.path.join(self.dir, '%s-%d.out' % (name, n))
        argv = [harness.binary(name)] + list(args)
        if argv0 is not None:
            argv = [argv0] + list(args) + [harness.binary(name)]
        p = Proc('%s-%d' % (name, n), argv, harness.base_env(env),
                 self.dir, cwd=self.dir, stdout_path=out_path)
        self.procs.append(p)
        p.start()
        rc = p.wait_exit(timeout)
        p.check_sanitizer()
        with open(out_path, encoding='utf-8', errors='replace') as f:
            stdout = f.read()
        lines = [l.rstrip('\n') for l in p.run_lines() if l.strip()]
        return rc, lines, stdout


class HelpTest(ConfigCase):

    def check_help(self, name, defaults):
        for args in (['--help'], ['-h']):
            # --help wins over a bad value elsewhere.
            env = self.base(name)
            env['LOG_LEVEL'] = 'loud'
            rc, err, out = self.run_to_exit(name, env, args)
            self.assertEqual(rc, 0, err)
            for var, default in defaults.items():
                with self.subTest(binary=name, var=var):
                    line = [l for l in out.splitlines() if re.search(r'\b%s\b' % var, l)]
                    self.assertEqual(len(line), 1, out)
                    self.assertIn('(default: %s' % default, line[0])
                    self.assertIn(FLAGS.get(var, '--admin-token'), line[0])

    def test_gateway_help(self):
        self.check_help('webhooks-gateway', GATEWAY_DEFAULTS)

    def test_service_help(self):
        self.check_help('webhooks-svc', SVC_DEFAULTS)


class BadValueTest(ConfigCase):

    def check_bad(self, name, var, value):
        for how in ('env', 'flag', 'flag='):
            with self.subTest(binary=name, var=var, value=value, how=how):
                env, args = self.base(name), []
                if how == 'env':
                    env[var] = value
                elif how == 'flag':
                    args = [FLAGS[var], value]
                else:
                    args = ['%s=%s' % (FLAGS[var], value)]
                rc, err, _ = self.run_to_exit(name, env, args)
                self.assertNotEqual(rc, 0, err)
                self.assertGreater(rc, 0, 'killed by a signal: %r' % err)
                self.assertEqual(len(err), 1, 'expected exactly one stderr line: %r' % err)
                self.assertIn(var, err[0])

    def test_gateway_bad_values(self):
        for var, value in [('GATEWAY_PORT', 'abc'), ('GATEWAY_PORT', '65536'), ('GATEWAY_PORT', '-1'),
                           ('GATEWAY_PORT', ''), ('NATS_TIMEOUT_MS', '-1'), ('NATS_TIMEOUT_MS', '0'),
                           ('NATS_TIMEOUT_MS', '5s'), ('LOG_LEVEL', 'loud'), ('LOG_LEVEL', 'INFO '),
                           ('TRUST_PROXY', 'maybe'), ('TRUST_PROXY', '2'), ('GATEWAY_BIND', 'localhost'),
                           ('GATEWAY_BIND', '999.1.1.1'), ('NATS_URL', 'http://127.0.0.1:4222')]:
            self.check_bad('webhooks-gateway', var, value)

    def test_service_bad_values(self):
        for var, value in [('MAX_IN_FLIGHT', '0'), ('MAX_IN_FLIGHT', 'ten'), ('RETRY_SCHEDULE', '5x'),
                           ('RETRY_SCHEDULE', '1s,,2s'), ('RETRY_SCHEDULE', ''), ('RETRY_SCHEDULE', '-1s'),
                           ('MAX_RETRIES', '-1'), ('DELIVERY_TIMEOUT_MS', 'abc'), ('LOG_LEVEL', 'loud'),
                           ('STORE_URL', 'postgres://x'), ('STORE_URL', 'sqlite:'),
                           ('NATS_URL', 'localhost:4222'), ('ACK_WAIT', '500ms'), ('ACK_WAIT', '2h'),
                           ('ACK_WAIT', '1s,2s'), ('ACK_WAIT', 'soon')]:
            self.check_bad('webhooks-svc', var, value)

    def test_bad_urls_are_shown_without_their_passwords(self):
        for name, var, value in [
                ('webhooks-gateway', 'NATS_URL', 'http://svc:s3cret-pw@127.0.0.1:4222'),
                ('webhooks-svc', 'NATS_URL', 'nats://127.0.0.1:4222,http://svc:s3cret-pw@b:1'),
                ('webhooks-svc', 'STORE_URL', 'postgres://app:s3cret-pw@db/x'),
                ('webhooks-svc', 'STORE_URL', 'mongodb://app:s3cret-pw@/x')]:
            with self.subTest(var=var, value=value):
                env = self.base(name)
                env[var] = value
                rc, err, _ = self.run_to_exit(name, env)
                self.assertGreater(rc, 0, err)
                self.assertTrue(any(var in line for line in err), err)
                self.assertNotIn('s3cret-pw', '\n'.join(err))
                self.assertIn(':***@', '\n'.join(err))

    def test_gateway_requires_admin_token(self):
        for token in (None, ''):
            with self.subTest(token=token):
                env = self.base('webhooks-gateway')
                env['ADMIN_TOKEN'] = token
                rc, err, _ = self.run_to_exit('webhooks-gateway', env)
                self.assertGreater(rc, 0, err)
                self.assertEqual(len(err), 1, err)
                self.assertIn('ADMIN_TOKEN', err[0])

    def test_kill_9_leaves_no_mongoc_segment(self):
        # libmongoc creates /dev/shm/mongoc-<pid> before main() (unless MONGOC_DISABLE_SHM is
        # set), and a process killed with -9 cannot remove it: a later process that got the
        # same pid would then print a libmongoc warning line. The service unlinks the segment
        # as soon as it starts, so a kill -9 leaves nothing behind.
        env = self.base('webhooks-svc')
        env['MONGOC_DISABLE_SHM'] = None  # as a user would run it
        script = ('"$0" 2>svc.err & pid=$!; '
                  'for i in $(seq 1 100); do grep -q ready svc.err 2>/dev/null && break; '
                  'sleep 0.05; done; '
                  'kill -9 $pid; wait $pid; '
                  'if [ -e /dev/shm/mongoc-$pid ]; then rm -f /dev/shm/mongoc-$pid; exit 98; fi; '
                  'grep -q ready svc.err || exit 97; exit 0')
        rc, err, _ = self.run_to_exit('webhooks-svc', env, ['-c', script],
                                      argv0='/bin/sh')
        self.assertNotEqual(rc, 97, 'the service never became ready')
        self.assertNotEqual(rc, 98, 'kill -9 left /dev/shm/mongoc-<pid> behind')
        self.assertEqual(rc, 0, err)

    def test_unknown_flag_and_missing_value(self):
        for name, args, word in (('webhooks-gateway', ['--nope'], '--nope'),
                                 ('webhooks-svc', ['--nope=1'], '--nope'),
                                 ('webhooks-gateway', ['--port'], 'GATEWAY_PORT'),
                                 ('webhooks-svc', ['--max-retries'], 'MAX_RETRIES')):
            with self.subTest(binary=name, args=args):
                rc, err, _ = self.run_to_exit(name, self.base(name), args)
                self.assertGreater(rc, 0, err)
                self.assertEqual(len(err), 1, err)
                self.assertIn(word, err[0])


class ValidValueTest(IntegrationCase):
    """Edge values that must be accepted, on a running stack."""

    def test_gateway_port_0_picks_a_port(self):
        gw = harness.Gateway(self.stack.workdir, self.stack.nats.url, name='gateway-port0')
        self.stack.gateways.append(gw)
        self.stack.procs.append(gw.proc)
        gw.env['GATEWAY_PORT'] = 0
        gw.proc.env = harness.base_env(gw.env)
        gw.proc.start()
        m = gw.proc.wait_line(r'listening on 127\.0\.0\.1 port (\d+)')
        gw.port = int(m.group(1))
        self.assertNotEqual(gw.port, 0)
        self.assertEqual(gw.request('GET', '/healthz', auth=False).status, 200)
        gw.stop()

    def test_flags_instead_of_environment(self):
        port = harness.free_port()
        gw = harness.Gateway(self.stack.workdir, 'nats://127.0.0.1:1', name='gateway-flags',
                             token='env-token-is-not-used-0000')
        self.stack.gateways.append(gw)
        self.stack.procs.append(gw.proc)
        gw.proc.argv += ['--nats-url', self.stack.nats.url, '--port=%d' % port,
                         '--admin-token', 'flag-token-0123456789abcdef', '--trust-proxy', 'yes']
        gw.port = port
        gw.proc.start()
        gw.proc.wait_line(r'listening on 127\.0\.0\.1 port %d' % port)
        harness.wait_port('127.0.0.1', port, 10, gw.proc)
        self.assertEqual(gw.request('GET', '/webhooks').status, 401)
        r = gw.request('GET', '/webhooks', auth='Bearer flag-token-0123456789abcdef')
        self.assertEqual(r.status, 200, r)
        r = gw.request('GET', '/ip', headers={'X-Forwarded-For': '192.0.2.44'}, auth=False)
        self.assertEqual(r.json['ipAddress'], '192.0.2.44')
        gw.stop()

    def test_service_edge_values(self):
        svc = self.stack.add_service({'RETRY_SCHEDULE': '500ms,1s,1m,1h', 'MAX_IN_FLIGHT': '1',
                                      'MAX_RETRIES': '0', 'DELIVERY_TIMEOUT_MS': '100',
                                      'LOG_LEVEL': 'debug'}, name='svc-edge')
        self.assertTrue(svc.proc.running())
        svc.stop()


if __name__ == '__main__':
    harness.main()
