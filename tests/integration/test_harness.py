"""test_harness.py -- the harness's own promises, with stand-in processes (/bin/sh): sanitizer
reports fail, a bad exit code fails, a hung process is killed with its whole group, line
waits end at their deadline or when the process dies, and the raw NATS client parses MSG
and HMSG. If these did not hold, the other integration tests could pass by accident."""

import os
import shutil
import tempfile
import time
import unittest

import harness
from harness import Proc, ProcessDied


class ProcTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix='webhooks-harness-')
        self.addCleanup(shutil.rmtree, self.dir, True)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            p.kill(check=False)

    def sh(self, script, name='fake'):
        p = Proc(name, ['/bin/sh', '-c', script], harness.base_env(), self.dir)
        self.procs.append(p)
        return p.start()

    def test_sanitizer_reports_fail(self):
        for marker in ('==1==ERROR: AddressSanitizer: heap-use-after-free',
                       'x.c:3:5: runtime error: signed integer overflow',
                       '==1==ERROR: LeakSanitizer: detected memory leaks'):
            with self.subTest(marker=marker):
                p = self.sh('trap "exit 0" TERM; echo "%s" >&2; echo "ready: x" >&2; '
                            'while :; do sleep 0.05; done' % marker)
                p.wait_line('ready: ', timeout=5)
                with self.assertRaises(AssertionError) as cm:
                    p.stop()
                self.assertIn('sanitizer', str(cm.exception))

    def test_clean_exit_passes_and_bad_exit_fails(self):
        p = self.sh('trap "exit 0" TERM; echo "ready: x" >&2; while :; do sleep 0.05; done')
        p.wait_line('ready: ', timeout=5)
        rc, took = p.stop()
        self.assertEqual(rc, 0)
        p = self.sh('trap "exit 3" TERM; echo "ready: x" >&2; while :; do sleep 0.05; done')
        p.wait_line('ready: ', timeout=5)
        with self.assertRaises(AssertionError):
            p.stop()

    def test_hung_process_and_its_children_are_killed(self):
        p = self.sh('trap "" TERM; sleep 30 & echo "child $!" >&2; '
                    'while :; do sleep 0.05; done')
        child = int(p.wait_line(r'child (\d+)', timeout=5).group(1))
        t0 = time.monotonic()
        with self.assertRaises(AssertionError):
            p.stop(timeout=0.5)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertIsNotNone(p.returncode)
        # The whole process group went: the background child is gone as well.
        harness.poll_until(lambda: not os.path.exists('/proc/%d' % child) or
                           open('/proc/%d/stat' % child).read().split()[2] == 'Z', 5,
                           what='child killed')

    def test_wait_line_deadline_and_death(self):
        p = self.sh('while :; do sleep 0.05; done')
        t0 = time.monotonic()
        with self.assertRaises(TimeoutError):
            p.wait_line('never', timeout=0.3)
        self.assertLess(time.monotonic() - t0, 2)
        p.kill()
        p = self.sh('echo bye >&2; exit 4')
        with self.assertRaises(ProcessDied):
            p.wait_line('never', timeout=5)

    def test_stopped_process_can_be_terminated(self):
        # stop() resumes a SIGSTOPped process first, so a test that paused one still ends.
        p = self.sh('trap "exit 0" TERM; echo "ready: x" >&2; while :; do sleep 0.05; done')
        p.wait_line('ready: ', timeout=5)
        p.pause()
        rc, _ = p.stop()
        self.assertEqual(rc, 0)

    def test_children_get_no_proxy_to_the_outside(self):
        env = harness.base_env({'http_proxy': None})
        self.assertEqual(env.get('https_proxy'), harness.DEAD_PROXY)
        env = harness.base_env()
        self.assertEqual(env['http_proxy'], harness.DEAD_PROXY)
        self.assertIn('127.0.0.1', env['no_proxy'])


class NatsClientTest(harness.IntegrationCase):
    """The raw client against a real nats-server only (no service)."""

    stack_options = {'start_svc': False, 'start_gateway': False}

    def test_pub_sub_request_and_no_responders(self):
        with self.stack.nats_client() as a, self.stack.nats_client() as b:
            sid = b.subscribe('integ.echo')
            b.flush()
            a.publish('integ.echo', b'hello\r\nworld', reply='integ.reply')
            m = b.next_msg(sid, timeout=5)
            self.assertEqual((m.subject, m.reply, m.data), ('integ.echo', 'integ.reply', b'hello\r\nworld'))
            m = a.request('integ.nobody', '{}', timeout=5)
            self.assertTrue(m.no_responders)
            with self.assertRaises(harness.NatsError):
                a.request_json('integ.nobody', {})
            with self.assertRaises(harness.NatsError):
                b.next_msg(sid, timeout=0.2)


if __name__ == '__main__':
    harness.main()
