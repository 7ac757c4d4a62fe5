"""test_ssrf.py -- the service as an attacker would use it: webhooks that point at this host, its
network or the cloud's metadata service, in every spelling libcurl accepts; URLs that say one
host and go to another; credentials in URLs. The service here runs with the default address
policy (loopback refused), except where a test says otherwise."""

import base64
from delivery_helpers import DeliveryCase, main

# Every spelling of a refused literal address that libcurl would connect to.
REFUSED = [
    'http://127.0.0.1:%(port)d/x', 'http://2130706433:%(port)d/x', 'http://0x7f000001:%(port)d/x',
    'http://127.1:%(port)d/x', 'http://0177.0.0.1:%(port)d/x', 'http://017700000001:%(port)d/',
    'http://[::1]:%(port)d/x', 'http://[::ffff:127.0.0.1]:%(port)d/x',
    'http://[::ffff:7f00:1]:%(port)d/x', 'http://0:%(port)d/', 'http://0.0.0.0:%(port)d/',
    'http://169.254.169.254/latest/meta-data/', 'http://10.0.0.1/', 'http://172.16.0.1/',
    'http://192.168.0.1/', 'http://100.64.0.1/', 'http://[fd00::1]/', 'http://[fe80::1]/',
    'http://[fe80::1%%25lo]/', 'http://[::]/', 'http://224.0.0.1/', 'http://255.255.255.255/',
    'http://192.0.2.1/', 'http://198.18.0.1/', 'http://[2001:db8::1]/',
    'http://[64:ff9b::7f00:1]/', 'http://[2002:7f00:1::1]/',
    # Full-width digits, which IDNA maps to "127.0.0.1".
    'http://\uff11\uff12\uff17.0.0.1:%(port)d/x',
    'http://user:pw@127.0.0.1:22/',
]


class DefaultPolicyTest(DeliveryCase):
    stack_options = {'svc_env': {'TARGET_ALLOW_CIDRS': None, 'MAX_RETRIES': 1,
                                 'RETRY_SCHEDULE': '50ms'}}

    def post(self, url):
        return self.gw.request('POST', '/webhooks', {'targetUrl': url})

    def test_literal_non_public_addresses_are_refused_at_register_and_update(self):
        ok = self.register('http://example.com/in')  # a name: judged when connecting
        for u in REFUSED:
            url = u % {'port': self.target.port}
            r = self.post(url)
            self.assertEqual(r.status, 400, (url, r))
            self.assertEqual(r.json['error']['code'], 'invalid_argument', r)
            self.assertIn('not a public one', r.json['error']['message'], r)
            r = self.gw.request('PUT', '/webhooks/' + ok['id'], {'newTargetUrl': url})
            self.assertEqual(r.status, 400, (url, r))
        # Nothing was stored but the one webhook, still pointing where it did.
        r = self.gw.request('GET', '/webhooks')
        self.assertEqual([h['targetUrl'] for h in r.json['webhooks']], ['http://example.com/in'])

    def test_a_name_resolving_to_loopback_is_blocked_when_connecting(self):
        # "localhost" is a name: accepted at registration, refused where the socket is made.
        hook = self.register('http://localhost:%d/ssrf' % self.target.port)
        ev, _ = self.trigger()
        summary = self.wait_event(ev['eventId'], 20)
        self.assertEqual((summary['succeeded'], summary['failed'], summary['pending']),
                         (0, 1, 0), summary)
        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual(len(dels), 1)
        self.assertEqual(dels[0]['webhookId'], hook['id'])
        self.assertEqual(len(dels[0]['attempts']), 2, dels)  # retried like any failure
        for a in dels[0]['attempts']:
            self.assertIsNone(a['httpStatus'], a)
            self.assertRegex(a['error'], r'^blocked: (127\.0\.0\.1|::1) is not a public address$')
        self.assertEqual(self.target.stats()['total'], 0, 'the target was reached')

    def test_urls_that_go_elsewhere_than_they_show_are_refused(self):
        for url in ('http://127.0.0.1:%d\\@example.com/' % self.target.port,
                    'http://example.com\\@127.0.0.1/', 'http://example.com:/x',
                    'http://\u2488.example/'):  # DIGIT ONE FULL STOP: IDNA refuses it
            r = self.post(url)
            self.assertEqual(r.status, 400, (url, r))

    def test_urls_are_stored_normalised(self):
        h = self.register('HTTP://Example.COM/a/../b/./c')
        self.assertEqual(h['targetUrl'], 'http://Example.COM/b/c')
        h = self.register('http://b\u00fccher.example/')
        self.assertEqual(h['targetUrl'], 'http://xn--bcher-kva.example/')
        got = self.gw.request('GET', '/webhooks/' + h['id']).json
        self.assertEqual(got['targetUrl'], 'http://xn--bcher-kva.example/')


class AllowPrivateTest(DeliveryCase):
    """ALLOW_PRIVATE_TARGETS=1 (and no TARGET_ALLOW_CIDRS) opens every address: a loopback
    literal is accepted at registration and delivered to, and so is a name resolving to it."""
    stack_options = {'svc_env': {'TARGET_ALLOW_CIDRS': None, 'ALLOW_PRIVATE_TARGETS': '1'}}

    def test_private_targets_are_accepted_and_delivered_to(self):
        a = self.register('http://127.0.0.1:%d/ok/literal' % self.target.port)
        b = self.register('http://localhost:%d/ok/name' % self.target.port)
        ev, _ = self.trigger()
        s = self.wait_event(ev['eventId'], 20)
        self.assertEqual((s['succeeded'], s['failed'], s['pending']), (2, 0, 0), s)
        paths = sorted(self.target.by_path())
        self.assertEqual(paths, ['/ok/literal', '/ok/name'])
        self.assertNotEqual(a['id'], b['id'])


class CredentialsTest(DeliveryCase):
    """Userinfo is sent as Basic auth and never shown: replies, delivery records, logs."""
    stack_options = {'svc_env': {'LOG_LEVEL': 'debug'}}

    def test_userinfo_is_sent_and_never_shown(self):
        secret = 'pw-Zq81xK'
        url = 'http://hook-user:%s@127.0.0.1:%d/ok/auth' % (secret, self.target.port)
        shown = 'http://hook-user:***@127.0.0.1:%d/ok/auth' % self.target.port
        token_url = 'http://tok%s@127.0.0.1:%d/ok/token' % (secret, self.target.port)
        h = self.register(url)
        self.assertEqual(h['targetUrl'], shown)
        t = self.register(token_url)
        self.assertEqual(t['targetUrl'], 'http://***@127.0.0.1:%d/ok/token' % self.target.port)
        self.assertEqual(self.gw.request('GET', '/webhooks/' + h['id']).json['targetUrl'], shown)
        listed = self.gw.request('GET', '/webhooks').json['webhooks']
        self.assertEqual(sorted(x['targetUrl'] for x in listed),
                         sorted([shown, t['targetUrl']]))
        updated = self.update(h['id'], url + '2')
        self.assertEqual(updated['targetUrl'], shown + '2')

        ev, _ = self.trigger()
        self.wait_event(ev['eventId'], 20)
        seen = self.target.by_path()
        auth = seen['/ok/auth2'][0]['headers'].get('authorization', '')
        self.assertEqual(auth, 'Basic ' + base64.b64encode(
            ('hook-user:%s' % secret).encode()).decode())
        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual(sorted(d['targetUrl'] for d in dels),
                         sorted([shown + '2', t['targetUrl']]))
        logs = self.stack.logs()
        self.assertNotIn(secret, logs, 'the secret is in a log')
        self.assertIn(shown + '2', logs)  # the debug lines name the target, redacted


if __name__ == '__main__':
    main()
