"""test_signatures.py -- every delivery is signed as Standard Webhooks says, checked by the
reference verifier itself (npm standardwebhooks 1.1.1, tests/verifier/verify.mjs, installed by
scripts/verifier-install.sh into VERIFIER_DIR): first attempts, retries, deliveries during a
rotation's grace (two signatures, each secret verifies alone), and what it must refuse: a
tampered body, a wrong secret, a timestamp 6 minutes old. Secrets never show where they must
not: lists, single reads, delivery pages, any log line at debug."""

import base64
import http.client
import json
import os
import shutil
import subprocess
import tempfile

from delivery_helpers import DeliveryCase, main
import harness  # after delivery_helpers, which puts it on the path

HERE = os.path.dirname(os.path.abspath(__file__))
VERIFY = os.path.join(HERE, '..', 'verifier', 'verify.mjs')


def verify(cases):
    """Run the reference verifier over cases; returns its list of {ok, error}."""
    modules = os.environ.get('VERIFIER_DIR')
    if not modules:
        raise AssertionError('VERIFIER_DIR is not set (ctest sets it; see tests/delivery)')
    node = os.environ.get('NODE') or shutil.which('node') or 'node'
    p = subprocess.run([node, VERIFY, modules], input=json.dumps(cases).encode(),
                       capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError('verify.mjs failed: %s' % p.stderr.decode(errors='replace'))
    return json.loads(p.stdout)


def case(secret, rq, body=None, offset=0):
    h = rq['headers']
    return {'secret': secret, 'body': rq['body'] if body is None else body,
            'headers': {k: h[k] for k in ('webhook-id', 'webhook-timestamp',
                                          'webhook-signature')},
            'nowOffsetSeconds': offset}


class SignatureTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_RETRIES': 2, 'RETRY_SCHEDULE': '1500ms',
                                 'LOG_LEVEL': 'debug', 'SECRET_ROTATION_GRACE': '1h'},
                     'gw_env': {'LOG_LEVEL': 'debug'}}

    def nats(self, subject, body):
        with self.stack.nats_client(timeout=10) as nc:
            return nc.request(subject, json.dumps(body), timeout=10).json()

    def test_every_attempt_verifies_and_forgeries_do_not(self):
        own = 'whsec_' + base64.b64encode(os.urandom(32)).decode()
        a = self.register('/ok/a')
        b = self.register('/fail/1/b')  # 503 first, then 200: a retry, signed afresh
        r = self.gw.request('POST', '/webhooks', {'targetUrl': self.target.url('/ok/c'),
                                                   'secret': own})
        self.assertEqual(r.status, 201, r)
        c = r.json
        self.assertEqual(c['secret'], own)
        for h in (a, b):
            self.assertRegex(h['secret'], r'^whsec_[A-Za-z0-9+/]{32}$')
        self.assertNotEqual(a['secret'], b['secret'])
        secrets = {h['id']: h['secret'] for h in (a, b, c)}
        # The secret route of the service gives the same; nothing else shows it.
        for hid, secret in secrets.items():
            self.assertEqual(self.nats('webhooks.secret', {'id': hid}), {'secret': secret})
            got = self.gw.request('GET', '/webhooks/' + hid)
            self.assertNotIn('secret', got.json, got)
        listed = self.gw.request('GET', '/webhooks')
        self.assertNotIn('whsec_', listed.raw.decode(), listed)

        ev, _ = self.trigger()
        s = self.wait_event(ev['eventId'], 20)
        self.assertEqual((s['succeeded'], s['pending']), (3, 0), s)
        by_path = self.target.by_path()
        self.assertEqual(len(by_path['/fail/1/b']), 2, by_path)
        reqs = [(secrets[h['id']], rq) for h, path in ((a, '/ok/a'), (b, '/fail/1/b'),
                                                       (c, '/ok/c'))
                for rq in by_path[path]]
        for _, rq in reqs:
            body = json.loads(rq['body'])
            self.assertEqual(rq['headers']['webhook-timestamp'], str(body['timestamp']))
            self.assertRegex(rq['headers']['webhook-signature'], r'^v1,[A-Za-z0-9+/]{43}=$')
        # The two attempts of b have the same id, their own timestamps, their own signatures.
        b1, b2 = by_path['/fail/1/b']
        self.assertEqual(b1['headers']['webhook-id'], b2['headers']['webhook-id'])
        self.assertNotEqual(b1['headers']['webhook-timestamp'],
                            b2['headers']['webhook-timestamp'])
        self.assertNotEqual(b1['headers']['webhook-signature'],
                            b2['headers']['webhook-signature'])

        results = verify([case(secret, rq) for secret, rq in reqs])
        self.assertEqual(results, [{'ok': True}] * len(reqs), results)
        # The same verifier refuses forgeries of a real request.
        secret, rq = reqs[0]
        forged = verify([
            case(secret, rq, body=rq['body'].replace('127.0.0.1', '127.0.0.2')),
            case(secrets[b['id']], rq),
            case(secret, rq, offset=6 * 60),
        ])
        self.assertEqual([x['ok'] for x in forged], [False, False, False], forged)

        # Never in a delivery page or a log line.
        dels, _ = self.deliveries(ev['eventId'])
        self.assertNotIn('whsec_', json.dumps(dels))
        self.assert_no_secret_in_logs(secrets.values())

    def test_rotation_signs_with_both_during_the_grace(self):
        a = self.register('/ok/rot')
        old = a['secret']
        new = self.nats('webhooks.rotate', {'id': a['id']})
        self.assertRegex(new['secret'], r'^whsec_')
        self.assertNotEqual(new['secret'], old)
        self.assertEqual(self.nats('webhooks.secret', {'id': a['id']}), new)
        ev, _ = self.trigger()
        self.wait_event(ev['eventId'], 20)
        rq = self.target.by_path()['/ok/rot'][0]
        sigs = rq['headers']['webhook-signature'].split(' ')
        self.assertEqual(len(sigs), 2, rq['headers'])
        results = verify([case(new['secret'], rq), case(old, rq)])
        self.assertEqual(results, [{'ok': True}, {'ok': True}], results)

        # A rotation to the caller's own secret; a bad one is refused and changes nothing.
        mine = 'whsec_' + base64.b64encode(os.urandom(24)).decode()
        self.assertEqual(self.nats('webhooks.rotate', {'id': a['id'], 'secret': mine}),
                         {'secret': mine})
        bad = self.nats('webhooks.rotate', {'id': a['id'], 'secret': 'whsec_short'})
        self.assertEqual(bad['error']['code'], 'invalid_argument', bad)
        self.assertEqual(self.nats('webhooks.secret', {'id': a['id']}), {'secret': mine})
        missing = self.nats('webhooks.rotate', {'id': '00000000-0000-4000-8000-000000000000'})
        self.assertEqual(missing['error']['code'], 'not_found', missing)

        self.target.reset()
        ev, _ = self.trigger()
        self.wait_event(ev['eventId'], 20)
        rq = self.target.by_path()['/ok/rot'][0]
        # mine signs, and new (rotated out just now) beside it; old is gone.
        results = verify([case(mine, rq), case(new['secret'], rq), case(old, rq)])
        self.assertEqual([x['ok'] for x in results], [True, True, False], results)
        self.assert_no_secret_in_logs([old, new['secret'], mine])

    def test_a_retry_signs_with_the_secrets_current_when_it_is_sent(self):
        a = self.register('/fail/1/rr')  # 503 first; the retry comes 1.5 s later
        old = a['secret']
        ev, _ = self.trigger()
        self.target.wait(lambda st: st['total'] >= 1, 10, 'the first attempt')
        new = self.nats('webhooks.rotate', {'id': a['id']})['secret']
        s = self.wait_event(ev['eventId'], 20)
        self.assertEqual((s['succeeded'], s['pending']), (1, 0), s)
        first, retry = self.target.by_path()['/fail/1/rr']
        # The first attempt: the old secret alone. The retry, sent after the rotation: the new
        # secret and, in its grace, the old one.
        self.assertEqual(len(first['headers']['webhook-signature'].split(' ')), 1, first)
        self.assertEqual(len(retry['headers']['webhook-signature'].split(' ')), 2, retry)
        results = verify([case(old, first), case(new, first), case(new, retry), case(old, retry)])
        self.assertEqual([x['ok'] for x in results], [True, False, True, True], results)
        self.assert_no_secret_in_logs([old, new])

    def assert_no_secret_in_logs(self, secrets):
        logs = self.stack.logs()
        for secret in secrets:
            self.assertNotIn(secret[6:], logs)

    def test_bad_secrets_at_register(self):
        for secret in ('nope', 'whsec_', 'whsec_' + base64.b64encode(b'x' * 23).decode(),
                       'whsec_' + base64.b64encode(b'x' * 65).decode(), 42):
            r = self.gw.request('POST', '/webhooks', {'targetUrl': self.target.url('/ok/x'),
                                                       'secret': secret})
            self.assertEqual(r.status, 400, (secret, r))
            self.assertEqual(r.json['error']['code'], 'invalid_argument', r)
        self.assertEqual(self.gw.request('GET', '/webhooks').json['webhooks'], [])


def readme_block(after, lang):
    """The first ```lang block of README.md after the line containing `after`."""
    with open(os.path.join(HERE, '..', '..', 'README.md'), encoding='utf-8') as f:
        text = f.read()
    at = text.index(after)
    start = text.index('```' + lang + '\n', at) + len(lang) + 4
    return text[start:text.index('```', start)]


class ReadmeReceiversTest(DeliveryCase):
    """The README's two receivers ("Verifying deliveries"), run as printed against a real
    delivery: the shell check gives the signature the delivery carries, and the Node receiver
    (port aside) answers 204 to it and 401 to a tampered copy."""

    def test_readme_receivers_verify_a_real_delivery(self):
        a = self.register('/ok/readme')
        ev, _ = self.trigger()
        self.wait_event(ev['eventId'], 20)
        rq = self.target.by_path()['/ok/readme'][0]
        h = rq['headers']
        work = tempfile.mkdtemp(prefix='webhooks-readme-')
        self.addCleanup(shutil.rmtree, work, True)

        # The shell check, in the directory of body.json, with $ID, $TS and $SIG set.
        with open(os.path.join(work, 'body.json'), 'wb') as f:
            f.write(rq['body'].encode())
        env = dict(os.environ, WEBHOOK_SECRET=a['secret'], ID=h['webhook-id'],
                   TS=h['webhook-timestamp'], SIG=h['webhook-signature'])
        p = subprocess.run(['sh', '-euc', readme_block('The same check in plain shell', 'sh')],
                           cwd=work, env=env, capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual('v1,' + p.stdout.decode().strip(), h['webhook-signature'])

        # The Node receiver, saved as receiver.mjs beside the reference library.
        modules = os.environ.get('VERIFIER_DIR')
        self.assertTrue(modules, 'VERIFIER_DIR is not set (ctest sets it; see tests/delivery)')
        os.symlink(os.path.join(modules, 'node_modules'), os.path.join(work, 'node_modules'))
        code = readme_block('A receiver in Node', 'js')
        self.assertIn('.listen(3000)', code)
        port = harness.free_port()
        with open(os.path.join(work, 'receiver.mjs'), 'w') as f:
            f.write(code.replace('.listen(3000)', '.listen(%d)' % port))
        node = os.environ.get('NODE') or shutil.which('node') or 'node'
        proc = subprocess.Popen([node, 'receiver.mjs'], cwd=work, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT,
                                env=dict(os.environ, WEBHOOK_SECRET=a['secret']))
        self.addCleanup(proc.wait)
        self.addCleanup(proc.kill)
        headers = {k: h[k] for k in ('webhook-id', 'webhook-timestamp', 'webhook-signature')}
        headers['Content-Type'] = 'application/json'

        def post(body):
            c = http.client.HTTPConnection('127.0.0.1', port, timeout=5)
            try:
                c.request('POST', '/', body=body.encode(), headers=headers)
                return c.getresponse().status
            finally:
                c.close()
        self.assertEqual(harness.poll_until(lambda: post(rq['body']), 15, interval=0.1,
                                            what='the README receiver answering'), 204)
        self.assertEqual(post(rq['body'].replace('127.0.0.1', '127.0.0.2')), 401)


class SecretRoutesTest(DeliveryCase):
    """The HTTP routes of the secret: GET /webhooks/{id}/secret and POST .../secret/rotate,
    with both processes logging at debug (no secret in any line)."""
    stack_options = {'svc_env': {'LOG_LEVEL': 'debug'}, 'gw_env': {'LOG_LEVEL': 'debug'}}

    def test_secret_routes(self):
        a = self.register('/ok/routes')
        base = '/webhooks/' + a['id'] + '/secret'
        r = self.gw.request('GET', base)
        self.assertEqual((r.status, r.json), (200, {'secret': a['secret']}), r)
        r = self.gw.request('POST', base + '/rotate', {})
        self.assertEqual(r.status, 200, r)
        self.assertEqual(set(r.json), {'secret'}, r)
        self.assertNotEqual(r.json['secret'], a['secret'])
        # No body at all is the same as {}.
        r2 = self.gw.request('POST', base + '/rotate')
        self.assertEqual(r2.status, 200, r2)
        self.assertNotEqual(r2.json['secret'], r.json['secret'])
        mine = 'whsec_' + base64.b64encode(os.urandom(40)).decode()
        r = self.gw.request('POST', base + '/rotate', {'secret': mine})
        self.assertEqual((r.status, r.json), (200, {'secret': mine}), r)
        self.assertEqual(self.gw.request('GET', base).json, {'secret': mine})
        r = self.gw.request('POST', base + '/rotate', {'secret': 'whsec_abc'})
        self.assertEqual((r.status, r.json['error']['code']), (400, 'invalid_argument'), r)
        self.assertEqual(self.gw.request('GET', base).json, {'secret': mine})
        unknown = '/webhooks/00000000-0000-4000-8000-000000000000/secret'
        self.assertEqual(self.gw.request('GET', unknown).status, 404)
        self.assertEqual(self.gw.request('POST', unknown + '/rotate', {}).status, 404)
        self.assertEqual(self.gw.request('GET', base, auth=False).status, 401)
        self.assertEqual(self.gw.request('POST', base + '/rotate', {}, auth=False).status, 401)
        r = self.gw.request('POST', base)
        self.assertEqual((r.status, r.headers.get('Allow')), (405, 'GET, HEAD'), r)
        r = self.gw.request('GET', base + '/rotate')
        self.assertEqual((r.status, r.headers.get('Allow')), (405, 'POST'), r)
        logs = self.stack.logs()
        for secret in (a['secret'], r2.json['secret'], mine):
            self.assertNotIn(secret[6:], logs)


class NoGraceTest(DeliveryCase):
    stack_options = {'svc_env': {'SECRET_ROTATION_GRACE': '0s'}}

    def test_without_grace_only_the_new_secret_signs(self):
        a = self.register('/ok/ng')
        with self.stack.nats_client(timeout=10) as nc:
            new = nc.request('webhooks.rotate', json.dumps({'id': a['id']}), timeout=10).json()
        ev, _ = self.trigger()
        self.wait_event(ev['eventId'], 20)
        rq = self.target.by_path()['/ok/ng'][0]
        self.assertEqual(len(rq['headers']['webhook-signature'].split(' ')), 1, rq)
        results = verify([case(new['secret'], rq), case(a['secret'], rq)])
        self.assertEqual([x['ok'] for x in results], [True, False], results)


if __name__ == '__main__':
    main()
