"""test_logs.py -- LOG_FORMAT=json: every line both processes write is one JSON object with ts,
level, program and msg, and the ids a message names are fields of their own."""

import json
import subprocess

import harness
from harness import IntegrationCase


class JsonLogsTest(IntegrationCase):
    stack_options = {'svc_env': {'LOG_FORMAT': 'json', 'LOG_LEVEL': 'debug', 'MAX_RETRIES': 0},
                     'gw_env': {'LOG_FORMAT': 'json', 'LOG_LEVEL': 'debug'}}

    def lines(self, proc):
        out = []
        for line in proc.log_text().splitlines():
            if line.startswith('===== '):  # the harness's own marker between runs
                continue
            out.append(line)
        return out

    def test_every_line_is_a_json_object(self):
        hook = self.gw.register('http://127.0.0.1:9/logs').json  # nothing listens: fails
        r = self.gw.request('GET', '/ip', auth=False)
        self.assertEqual(r.status, 202, r)
        event = r.json['eventId']
        harness.poll_until(lambda: self.gw.request('GET', '/events/' + event).json['pending']
                           == 0, 20, what='the event to end')
        seen = {'event_id': set(), 'webhook_id': set(), 'delivery_id': set()}
        for proc in (self.stack.svc.proc, self.stack.gateways[0].proc):
            lines = self.lines(proc)
            self.assertGreater(len(lines), 0, proc.name)
            for line in lines:
                try:
                    o = json.loads(line)
                except ValueError:
                    self.fail('%s wrote a line that is not JSON: %r' % (proc.name, line))
                self.assertIsInstance(o, dict, line)
                self.assertTrue({'ts', 'level', 'program', 'msg'} <= set(o), line)
                self.assertRegex(o['ts'], r'^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$', line)
                self.assertIn(o['level'], ('error', 'warn', 'info', 'debug'), line)
                self.assertEqual(o['program'], proc.name, line)
                for key in seen:
                    if key in o:
                        seen[key].add(o[key])
                        self.assertIn(o[key], o['msg'])
        self.assertIn(event, seen['event_id'])
        self.assertTrue(seen['delivery_id'], 'no line named a delivery')
        self.assertNotIn(hook['id'], seen['delivery_id'])

    def test_bad_format_stops_the_process(self):
        for binary in ('webhooks-svc', 'webhooks-gateway'):
            env = harness.base_env({'LOG_FORMAT': 'xml', 'ADMIN_TOKEN': 'x' * 20})
            p = subprocess.run([harness.binary(binary)], env=env, capture_output=True,
                               timeout=20)
            self.assertEqual(p.returncode, 2, (binary, p.stderr))
            self.assertIn(b'LOG_FORMAT', p.stderr)
            self.assertEqual(len(p.stderr.strip().splitlines()), 1, p.stderr)


if __name__ == '__main__':
    harness.main()
