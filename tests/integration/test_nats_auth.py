"""test_nats_auth.py -- NATS with authorization, as make run and docker-compose start it: both
processes connect with the credentials in NATS_URL, an anonymous client is refused (so nobody
reaches webhooks.* around the admin token), a wrong password is logged as such, and no
password shows in any log. Also the admin token from ADMIN_TOKEN_FILE, and the warning when
it is given on the command line."""

import os
import subprocess
import tempfile

import harness
from harness import IntegrationCase
from nats_client import NatsClient, NatsError

USER, PASSWORD = 'webhooks', 'pw-7Hq2xVv9'


class NatsAuthTest(IntegrationCase):
    stack_auto = False

    def start(self, password=PASSWORD):
        st = self.own_stack(nats_args=('--user', USER, '--pass', PASSWORD), start_svc=False,
                            start_gateway=False)
        st.start()
        url = 'nats://%s:%s@127.0.0.1:%d' % (USER, password, st.nats.port)
        st.svc.env['NATS_URL'] = url
        st.gateway.env['NATS_URL'] = url
        return st

    def test_credentials_in_the_url_work_and_anonymous_is_refused(self):
        st = self.start()
        st.svc.start()
        st.gateway.start()
        st.gateway.wait_healthy()
        gw = st.gateway
        self.assertEqual(gw.request('POST', '/webhooks',
                                    {'targetUrl': 'http://127.0.0.1:9/a'}).status, 201)
        self.assertEqual(gw.request('GET', '/ip', auth=False).status, 202)
        with self.assertRaisesRegex((NatsError, OSError), '(?i)authorization'):
            with NatsClient(port=st.nats.port, timeout=5) as nc:
                nc.request('webhooks.list', '{}', timeout=5)
        with NatsClient(port=st.nats.port, timeout=5, user=USER, password=PASSWORD) as nc:
            self.assertIn('webhooks', nc.request('webhooks.list', '{}', timeout=5).json())
        # (nats-server's own argv line in the harness log holds it: only ours are checked)
        logs = st.svc.proc.log_text() + st.gateway.proc.log_text()
        self.assertNotIn(PASSWORD, logs)
        self.assertIn('%s:***@' % USER, logs)  # the URL is shown, redacted

    def test_a_wrong_password_stops_both_with_a_clear_line(self):
        st = self.start(password='wrong-password-1')
        st.svc.start(wait=False)
        st.gateway.start(wait=False)
        for proc in (st.svc.proc, st.gateway.proc):
            try:
                code = proc.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.fail('%s still runs 20 s after NATS refused it' % proc.name)
            self.assertEqual(code, 1, proc.log_text())
            self.assertRegex(proc.log_text(), r'ERROR [\w-]+: NATS refused our credentials')
            self.assertNotIn('wrong-password-1', proc.log_text())


class StartupChecksTest(IntegrationCase):
    stack_auto = False

    def run_binary(self, binary, env, args=()):
        return subprocess.run([harness.binary(binary)] + list(args),
                              env=harness.base_env(env), capture_output=True, timeout=20)

    def test_nats_creds_must_be_readable(self):
        for binary in ('webhooks-svc', 'webhooks-gateway'):
            p = self.run_binary(binary, {'NATS_CREDS': '/nonexistent/x.creds',
                                         'ADMIN_TOKEN': 't' * 24})
            self.assertEqual(p.returncode, 2, (binary, p.stderr))
            self.assertIn(b'NATS_CREDS', p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)

    def test_admin_token_file(self):
        st = self.own_stack(start_gateway=False)
        st.start()
        with tempfile.NamedTemporaryFile('w', suffix='.token', delete=False) as f:
            f.write('file-token-0123456789abcdef\n')
        self.addCleanup(os.unlink, f.name)
        gw = st.add_gateway({'ADMIN_TOKEN': None, 'ADMIN_TOKEN_FILE': f.name},
                            token='file-token-0123456789abcdef')
        gw.wait_healthy()
        self.assertEqual(gw.request('GET', '/webhooks').status, 200)
        self.assertEqual(gw.request('GET', '/webhooks', auth='Bearer nope').status, 401)
        self.assertNotIn('file-token-0123456789abcdef', gw.proc.log_text())
        # Missing, empty, or both given: exit 2 with one line.
        with tempfile.NamedTemporaryFile('w', delete=False) as empty:
            pass
        self.addCleanup(os.unlink, empty.name)
        for env in ({'ADMIN_TOKEN_FILE': '/nonexistent/token'},
                    {'ADMIN_TOKEN_FILE': empty.name},
                    {'ADMIN_TOKEN_FILE': f.name, 'ADMIN_TOKEN': 'x' * 20},
                    {}):
            p = self.run_binary('webhooks-gateway', dict(env, NATS_URL=st.nats.url))
            self.assertEqual(p.returncode, 2, (env, p.stderr))
            self.assertIn(b'ADMIN_TOKEN', p.stderr)

    def test_token_on_the_command_line_is_warned_about(self):
        st = self.own_stack(start_gateway=False)
        st.start()
        gw = st.add_gateway({'ADMIN_TOKEN': None}, start=False, token='flag-token-0123456789')
        gw.proc.argv = gw.proc.argv + ['--admin-token', 'flag-token-0123456789']
        gw.start()
        self.assertEqual(gw.request('GET', '/webhooks').status, 200)
        self.assertRegex(gw.proc.log_text(), r'WARN webhooks-gateway: --admin-token puts the '
                                             r'token where ps shows it')


if __name__ == '__main__':
    harness.main()
