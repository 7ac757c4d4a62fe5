"""test_api.py -- the HTTP API of the contract, end to end through NATS and the real service:
every route and status code, the error shape, auth, pagination, bad input, methods, and the
client address for /ip (TRUST_PROXY, IPv6)."""

import concurrent.futures
import datetime
import socket
import time
import unittest
import uuid

import harness
from harness import IntegrationCase, RFC3339_UTC_RE, UUID_RE

UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'


def parse_time(text):
    return datetime.datetime.strptime(text.replace('Z', '+0000'), '%Y-%m-%dT%H:%M:%S.%f%z')


def allow_set(r):
    return {m.strip() for m in r.headers.get('Allow', '').split(',') if m.strip()}


class CrudTest(IntegrationCase):
    """POST, GET, PUT, DELETE /webhooks, GET /ip and GET /healthz on their success paths."""

    def register(self, url):
        r = self.gw.request('POST', '/webhooks', {'targetUrl': url})
        self.assertEqual(r.status, 201, r)
        return r

    def test_register_201_exact_fields(self):
        before = datetime.datetime.now(datetime.timezone.utc)
        r = self.register('https://127.0.0.1:9/hook?a=1')
        after = datetime.datetime.now(datetime.timezone.utc)
        self.assertJson(r)
        # The secret is in this reply and in GET /webhooks/{id}/secret, nowhere else.
        self.assertEqual(set(r.json), {'id', 'targetUrl', 'createdAt', 'secret'})
        self.assertRegex(r.json['secret'], r'^whsec_[A-Za-z0-9+/]{32}$')
        self.assertEqual(len(r.json['id']), 36)
        self.assertRegex(r.json['id'], UUID_RE)
        self.assertEqual(r.json['id'], r.json['id'].lower())
        self.assertEqual(r.json['targetUrl'], 'https://127.0.0.1:9/hook?a=1')
        self.assertRegex(r.json['createdAt'], RFC3339_UTC_RE)
        created = parse_time(r.json['createdAt'])
        slack = datetime.timedelta(seconds=2)
        self.assertTrue(before - slack <= created <= after + slack, (before, created, after))

    def test_ids_are_unique(self):
        ids = {self.register('http://127.0.0.1:9/%d' % i).json['id'] for i in range(20)}
        self.assertEqual(len(ids), 20)

    def test_get_200_with_updated_at(self):
        created = self.register('http://127.0.0.1:9/get').json
        r = self.gw.request('GET', '/webhooks/' + created['id'])
        self.assertEqual(r.status, 200, r)
        self.assertJson(r)
        self.assertWebhook(r.json)
        self.assertEqual(r.json['id'], created['id'])
        self.assertEqual(r.json['targetUrl'], 'http://127.0.0.1:9/get')
        self.assertEqual(r.json['createdAt'], created['createdAt'])
        self.assertGreaterEqual(parse_time(r.json['updatedAt']), parse_time(r.json['createdAt']))

    def check_update(self, key):
        created = self.register('http://127.0.0.1:9/old').json
        old = self.gw.request('GET', '/webhooks/' + created['id']).json
        time.sleep(0.01)  # timestamps have millisecond resolution
        new_url = 'https://127.0.0.1:9/new/' + key
        r = self.gw.request('PUT', '/webhooks/' + created['id'], {key: new_url})
        self.assertEqual(r.status, 200, r)
        self.assertJson(r)
        self.assertWebhook(r.json)
        self.assertEqual(r.json['id'], created['id'])
        self.assertEqual(r.json['targetUrl'], new_url)
        self.assertEqual(r.json['createdAt'], created['createdAt'])
        self.assertGreater(parse_time(r.json['updatedAt']), parse_time(old['updatedAt']))
        got = self.gw.request('GET', '/webhooks/' + created['id'])
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json, r.json)

    def test_update_with_new_target_url(self):
        self.check_update('newTargetUrl')

    def test_update_with_target_url(self):
        self.check_update('targetUrl')

    def test_delete_204_then_404(self):
        hid = self.register('http://127.0.0.1:9/del').json['id']
        r = self.gw.request('DELETE', '/webhooks/' + hid)
        self.assertEqual(r.status, 204, r)
        self.assertEqual(r.raw, b'')
        self.assertError(self.gw.request('GET', '/webhooks/' + hid), 404, 'not_found')
        self.assertError(self.gw.request('DELETE', '/webhooks/' + hid), 404, 'not_found')
        self.assertError(self.gw.request('PUT', '/webhooks/' + hid, {'newTargetUrl': 'http://a.b/'}),
                         404, 'not_found')
        ids = [h['id'] for h in self.gw.list_all()]
        self.assertNotIn(hid, ids)

    def test_list_shape(self):
        hid = self.register('http://127.0.0.1:9/list').json['id']
        r = self.gw.request('GET', '/webhooks?limit=1000')
        self.assertEqual(r.status, 200, r)
        self.assertJson(r)
        self.assertEqual(set(r.json), {'webhooks', 'next'})
        self.assertIsNone(r.json['next'])
        for h in r.json['webhooks']:
            self.assertWebhook(h)
        self.assertIn(hid, [h['id'] for h in r.json['webhooks']])

    def test_ip_202_counts_targets(self):
        n = self.gw.count()
        r = self.gw.request('GET', '/ip', auth=False)
        self.assertEqual(r.status, 202, r)
        self.assertJson(r)
        self.assertEqual(set(r.json), {'ipAddress', 'eventId', 'targets'})
        self.assertEqual(r.json['ipAddress'], '127.0.0.1')
        self.assertRegex(r.json['eventId'], UUID_RE)
        self.assertEqual(r.json['targets'], n)
        self.register('http://127.0.0.1:9/one-more')
        r2 = self.gw.request('GET', '/ip', auth=False)
        self.assertEqual(r2.status, 202, r2)
        self.assertEqual(r2.json['targets'], n + 1)
        self.assertNotEqual(r2.json['eventId'], r.json['eventId'])

    def test_healthz_200(self):
        r = self.gw.request('GET', '/healthz', auth=False)
        self.assertEqual(r.status, 200, r)
        self.assertJson(r)


class EmptyStoreTest(IntegrationCase):
    """A fresh store: the list is empty and /ip has no targets."""

    def test_empty_list(self):
        r = self.gw.request('GET', '/webhooks')
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {'webhooks': [], 'next': None})

    def test_ip_zero_targets(self):
        r = self.gw.request('GET', '/ip', auth=False)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json['targets'], 0)


class EventsTest(IntegrationCase):
    """GET /events/{id} and /events/{id}/deliveries: shapes and status codes (delivery itself
    is tested elsewhere). Targets are a closed loopback port; no retries, so each delivery
    fails after one attempt."""

    stack_options = {'svc_env': {'MAX_RETRIES': '0', 'DELIVERY_TIMEOUT_MS': '1000'}}

    EVENT_KEYS = {'eventId', 'ipAddress', 'createdAt', 'targets', 'succeeded', 'failed', 'pending'}

    def trigger(self):
        r = self.gw.request('GET', '/ip', auth=False)
        self.assertEqual(r.status, 202, r)
        return r.json

    def event(self, eid):
        r = self.gw.request('GET', '/events/' + eid)
        self.assertEqual(r.status, 200, r)
        self.assertJson(r)
        self.assertEqual(set(r.json), self.EVENT_KEYS, r)
        return r.json

    def test_event_without_targets(self):
        for h in self.gw.list_all():
            self.gw.request('DELETE', '/webhooks/' + h['id'])
        t = self.trigger()
        self.assertEqual(t['targets'], 0)
        ev = self.event(t['eventId'])
        self.assertEqual(ev['eventId'], t['eventId'])
        self.assertEqual(ev['ipAddress'], '127.0.0.1')
        self.assertRegex(ev['createdAt'], RFC3339_UTC_RE)
        self.assertEqual((ev['targets'], ev['succeeded'], ev['failed'], ev['pending']), (0, 0, 0, 0))
        r = self.gw.request('GET', '/events/%s/deliveries' % t['eventId'])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.json, {'deliveries': [], 'next': None})

    def test_event_with_targets(self):
        for h in self.gw.list_all():
            self.gw.request('DELETE', '/webhooks/' + h['id'])
        dead = 'http://127.0.0.1:%d/hook' % harness.free_port()
        ids = {self.gw.register(dead + str(i)).json['id']: dead + str(i) for i in range(3)}
        t = self.trigger()
        self.assertEqual(t['targets'], 3)
        ev = self.event(t['eventId'])
        self.assertEqual(ev['targets'], 3)
        self.assertEqual(ev['succeeded'] + ev['failed'] + ev['pending'], 3)
        # Every target is refused and not retried: all three end as failed.
        harness.poll_until(lambda: self.event(t['eventId'])['failed'] == 3, 15,
                           what='three failed deliveries')
        r = self.gw.request('GET', '/events/%s/deliveries' % t['eventId'])
        self.assertEqual(r.status, 200, r)
        self.assertEqual(set(r.json), {'deliveries', 'next'})
        self.assertIsNone(r.json['next'])
        ds = r.json['deliveries']
        self.assertEqual(len(ds), 3)
        for d in ds:
            self.assertEqual(set(d), {'id', 'webhookId', 'targetUrl', 'status', 'attempts'}, d)
            self.assertRegex(d['id'], UUID_RE)
            self.assertEqual(d['targetUrl'], ids[d['webhookId']])
            self.assertEqual(d['status'], 'failed')
            self.assertIsInstance(d['attempts'], list)
            self.assertEqual(len(d['attempts']), 1, d)
        self.assertEqual(sorted(d['webhookId'] for d in ds), sorted(ids))
        # Paging: limit and after like /webhooks.
        p1 = self.gw.request('GET', '/events/%s/deliveries?limit=2' % t['eventId']).json
        self.assertEqual(len(p1['deliveries']), 2)
        self.assertEqual(p1['next'], p1['deliveries'][-1]['id'])
        p2 = self.gw.request('GET', '/events/%s/deliveries?limit=2&after=%s'
                             % (t['eventId'], p1['next'])).json
        self.assertEqual(len(p2['deliveries']), 1)
        self.assertIsNone(p2['next'])
        self.assertEqual({d['id'] for d in p1['deliveries'] + p2['deliveries']}, {d['id'] for d in ds})
        for v in ('0', '1001', 'abc'):
            with self.subTest(limit=v):
                self.assertError(self.gw.request('GET', '/events/%s/deliveries?limit=%s' % (t['eventId'], v)),
                                 400, 'invalid_argument')
        self.assertError(self.gw.request('GET', '/events/%s/deliveries?after=nope' % t['eventId']),
                         400, 'invalid_argument')

    def test_unknown_event_404(self):
        for eid in (str(uuid.uuid4()), 'abc', str(uuid.uuid4()).upper()):
            with self.subTest(id=eid):
                self.assertError(self.gw.request('GET', '/events/' + eid), 404, 'not_found')
                self.assertError(self.gw.request('GET', '/events/%s/deliveries' % eid), 404, 'not_found')

    def test_event_methods(self):
        t = self.trigger()
        for method, path in (('DELETE', '/events/' + t['eventId']),
                             ('POST', '/events/%s/deliveries' % t['eventId'])):
            with self.subTest(method=method, path=path):
                r = self.gw.request(method, path)
                self.assertError(r, 405, 'method_not_allowed')
                self.assertEqual(allow_set(r), {'GET', 'HEAD'})


class AuthTest(IntegrationCase):
    """Every admin route needs exactly 'Authorization: Bearer <ADMIN_TOKEN>'."""

    def setUp(self):
        super().setUp()
        r = self.gw.register('http://127.0.0.1:9/auth')
        self.hid = r.json['id']

    def bad_headers(self):
        t = self.gw.token
        return [None, '', 'Bearer', 'Bearer ', 'Basic ' + t, 'Token ' + t, t,
                'Bearer wrong-token', 'Bearer ' + t[:-1], 'Bearer ' + t + 'x', 'Bearer ' + t[1:],
                'Bearer x' + t, 'Bearer  ' + t, 'Bearer ' + t.upper(), 'Bearer ' + t + ' ']

    def admin_calls(self):
        h = self.hid
        return [('POST', '/webhooks', {'targetUrl': 'http://127.0.0.1:9/x'}),
                ('GET', '/webhooks', None),
                ('GET', '/webhooks?limit=5', None),
                ('GET', '/webhooks/' + h, None),
                ('PUT', '/webhooks/' + h, {'newTargetUrl': 'http://127.0.0.1:9/evil'}),
                ('DELETE', '/webhooks/' + h, None),
                ('GET', '/events/' + UNKNOWN_ID, None),
                ('GET', '/events/' + UNKNOWN_ID + '/deliveries', None)]

    def test_401_on_every_admin_route(self):
        n = self.gw.count()
        for method, path, body in self.admin_calls():
            for auth in self.bad_headers():
                with self.subTest(method=method, path=path, auth=auth):
                    hdr = {} if auth is None else {'Authorization': auth}
                    r = self.gw.request(method, path, body, headers=hdr, auth=False)
                    self.assertError(r, 401, 'unauthorized')
        # Nothing was created, changed or deleted by the refused requests.
        self.assertEqual(self.gw.count(), n)
        got = self.gw.request('GET', '/webhooks/' + self.hid)
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json['targetUrl'], 'http://127.0.0.1:9/auth')

    def test_right_token_works(self):
        for auth in ('Bearer ' + self.gw.token,):
            r = self.gw.request('GET', '/webhooks/' + self.hid, auth=auth)
            self.assertEqual(r.status, 200, r)

    def test_public_routes_need_no_token(self):
        for auth in (False, 'Bearer wrong', 'Basic abc'):
            with self.subTest(auth=auth):
                r = self.gw.request('GET', '/ip', auth=auth)
                self.assertEqual(r.status, 202, r)
                r = self.gw.request('GET', '/healthz', auth=auth)
                self.assertEqual(r.status, 200, r)


class PaginationTest(IntegrationCase):
    """260 webhooks, paged by id."""

    N = 260

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        gw = cls.stack.gateway

        def reg(i):
            return gw.register('http://127.0.0.1:9/page/%d' % i).json['id']
        with concurrent.futures.ThreadPoolExecutor(8) as ex:
            cls.ids = list(ex.map(reg, range(cls.N)))

    def page(self, query):
        r = self.gw.request('GET', '/webhooks' + query)
        self.assertEqual(r.status, 200, r)
        self.assertJson(r)
        self.assertEqual(set(r.json), {'webhooks', 'next'})
        return r.json

    def test_pages_of_100(self):
        seen, sizes, after = [], [], None
        for _ in range(10):
            p = self.page('?limit=100' + ('&after=' + after if after else ''))
            ids = [h['id'] for h in p['webhooks']]
            sizes.append(len(ids))
            seen.extend(ids)
            if p['next'] is None:
                break
            self.assertEqual(p['next'], ids[-1], 'next must be the last id of the page')
            after = p['next']
        self.assertEqual(sizes, [100, 100, 60])
        self.assertEqual(len(seen), len(set(seen)), 'an id appeared twice')
        self.assertEqual(set(seen), set(self.ids))
        self.assertEqual(seen, sorted(seen), 'pages are not in ascending id order')

    def test_default_limit_is_100(self):
        p = self.page('')
        self.assertEqual(len(p['webhooks']), 100)
        self.assertEqual(p['next'], p['webhooks'][-1]['id'])
        self.assertEqual([h['id'] for h in p['webhooks']], sorted(self.ids)[:100])

    def test_limit_1000_allowed(self):
        p = self.page('?limit=1000')
        self.assertEqual(len(p['webhooks']), self.N)
        self.assertIsNone(p['next'])

    def test_limit_equal_to_count_has_no_next(self):
        p = self.page('?limit=%d' % self.N)
        self.assertEqual(len(p['webhooks']), self.N)
        self.assertIsNone(p['next'])
        p = self.page('?limit=%d' % (self.N - 1))
        self.assertEqual(len(p['webhooks']), self.N - 1)
        last = self.page('?limit=10&after=' + p['next'])
        self.assertEqual([h['id'] for h in last['webhooks']], [max(self.ids)])
        self.assertIsNone(last['next'])

    def test_after_unknown_id(self):
        p = self.page('?limit=1000&after=ffffffff-ffff-ffff-ffff-ffffffffffff')
        self.assertEqual(p, {'webhooks': [], 'next': None})
        p = self.page('?limit=5&after=00000000-0000-0000-0000-000000000000')
        self.assertEqual([h['id'] for h in p['webhooks']], sorted(self.ids)[:5])

    def test_bad_limit_400(self):
        for v in ('0', '1001', '-1', 'abc', '', '1.5', '1e2', '%205', '5x', '99999999999999999999'):
            with self.subTest(limit=v):
                r = self.gw.request('GET', '/webhooks?limit=' + v)
                self.assertError(r, 400, 'invalid_argument')

    def test_bad_after_400(self):
        for v in ('not-a-uuid', UNKNOWN_ID.upper().replace('0', 'A'), UNKNOWN_ID + '0',
                  UNKNOWN_ID[:-1], "x'%20OR%201=1"):
            with self.subTest(after=v):
                r = self.gw.request('GET', '/webhooks?after=' + v)
                self.assertError(r, 400, 'invalid_argument')


class BadInputTest(IntegrationCase):
    """Refused requests answer the right error and store nothing."""

    def assertNothingStored(self, fn):
        before = sorted(h['id'] for h in self.gw.list_all())
        fn()
        after = sorted(h['id'] for h in self.gw.list_all())
        self.assertEqual(before, after, 'a refused request changed the store')

    def post(self, body, **kw):
        return self.gw.request('POST', '/webhooks', body, headers={'Content-Type': 'application/json'}, **kw)

    def check_post(self, bodies, status, code):
        def run():
            for b in bodies:
                with self.subTest(body=b if len(b) < 100 else b[:100]):
                    self.assertError(self.post(b), status, code)
        self.assertNothingStored(run)

    def test_invalid_json(self):
        self.check_post(['{', '{"targetUrl": "http://a.com/"', 'nope', '{"targetUrl": http://a.com/}',
                         "{'targetUrl': 'http://a.com/'}", '{"targetUrl": "http://a.com/",}',
                         '{"targetUrl":"http://a.com/","targetUrl":"http://b.com/"}',
                         '{"targetUrl": "http://a.com/\\u0000"}', b'{"targetUrl": "http://a.com/\xff"}',
                         '{"targetUrl": "http://a.com/"} trailing'], 400, 'invalid_json')

    def test_empty_body(self):
        self.check_post([''], 400, 'invalid_json')

    def test_array_is_not_an_object(self):
        self.check_post(['[]', '["http://a.com/"]', '[{"targetUrl": "http://a.com/"}]'],
                        400, 'invalid_argument')

    def test_scalar_is_not_an_object(self):
        # Valid JSON that is not an object is an invalid argument, like an array, not
        # invalid JSON.
        self.check_post(['"http://a.com/"', '5', '-1.5', 'null', 'true'], 400, 'invalid_argument')

    def test_wrong_types(self):
        self.check_post(['{"targetUrl": 5}', '{"targetUrl": null}', '{"targetUrl": {}}',
                         '{"targetUrl": {"url": "http://a.com/"}}', '{"targetUrl": ["http://a.com/"]}',
                         '{"targetUrl": true}', '{"targetUrl": 1.5}'], 400, 'invalid_argument')

    def test_missing_target_url(self):
        self.check_post(['{}', '{"url": "http://a.com/"}', '{"targeturl": "http://a.com/"}',
                         '{"newTargetUrl": "http://a.com/"}'], 400, 'invalid_argument')

    def test_not_http_urls(self):
        urls = ['ftp://example.com/x', 'file:///etc/passwd', 'javascript:alert(1)',
                'mailto:a@example.com', 'gopher://example.com/', 'ws://example.com/',
                'example.com/x', 'http:example.com', 'httpx://example.com/']
        self.check_post([{'targetUrl': u} for u in urls], 400, 'invalid_argument')

    def test_malformed_urls(self):
        urls = ['', 'http://', 'https://', 'http:///x', 'http://exa mple.com/', 'http://a.com/ x',
                ' http://a.com/', 'http://a.com/\t', 'http://a.com/\n', '/x', 'x', '//a.com/x',
                'http://:80/', 'http://a.com:0/', 'http://a.com:99999/', 'http://a.com:port/']
        self.check_post([{'targetUrl': u} for u in urls], 400, 'invalid_argument')

    def test_valid_urls_accepted(self):
        # Names that are not loopback are deleted at once: no test delivers off this machine.
        # Each is stored in libcurl's normalised form and shown without credentials.
        for u, shown in (('HTTPS://EXAMPLE.COM/', 'https://EXAMPLE.COM/'),
                         ('http://127.0.0.1:8080/x?y=1#f', None), ('http://[::1]:9/', None),
                         ('https://a.example/?q=%20', None), ('http://localhost/', None),
                         ('http://user:pw@127.0.0.1:9/', 'http://user:***@127.0.0.1:9/')):
            with self.subTest(url=u):
                r = self.post({'targetUrl': u})
                self.assertEqual(r.status, 201, r)
                self.assertEqual(r.json['targetUrl'], shown or u)
                self.assertEqual(self.gw.request('DELETE', '/webhooks/' + r.json['id']).status, 204)

    def url_of_length(self, n):
        base = 'http://127.0.0.1:9/'
        return base + 'a' * (n - len(base))

    def test_url_length_limit(self):
        ok = self.url_of_length(2048)
        self.assertEqual(len(ok.encode()), 2048)
        r = self.post({'targetUrl': ok})
        self.assertEqual(r.status, 201, r)
        got = self.gw.request('GET', '/webhooks/' + r.json['id'])
        self.assertEqual(got.json['targetUrl'], ok)
        self.check_post([{'targetUrl': self.url_of_length(2049)},
                         {'targetUrl': self.url_of_length(4096)}], 400, 'invalid_argument')
        # PUT has the same limit.
        hid = r.json['id']
        bad = self.gw.request('PUT', '/webhooks/' + hid, {'newTargetUrl': self.url_of_length(2049)})
        self.assertError(bad, 400, 'invalid_argument')
        good = self.gw.request('PUT', '/webhooks/' + hid, {'newTargetUrl': ok + ''})
        self.assertEqual(good.status, 200, good)

    def test_body_over_64k_is_413(self):
        big = b'{"targetUrl": "http://a.com/' + b'a' * 70000 + b'"}'
        self.assertEqual(len(big) > 70000, True)

        def run():
            # With Content-Length: refused before the body is read.
            r = self.post(big)
            self.assertError(r, 413, 'payload_too_large')
            hdr = (b'POST /webhooks HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer %s\r\n'
                   b'Content-Type: application/json\r\nContent-Length: %d\r\n\r\n'
                   % (self.gw.token.encode(), len(big)))
            self.assertError(self.gw.raw(hdr + big, method='POST'), 413, 'payload_too_large')
            # Chunked: the size is only known as the body arrives.
            r = self.post(iter([big[i:i + 8192] for i in range(0, len(big), 8192)]), chunked=True)
            self.assertError(r, 413, 'payload_too_large')
            # PUT too.
            hid = self.gw.register('http://127.0.0.1:9/put413').json['id']
            r = self.gw.request('PUT', '/webhooks/' + hid, big)
            self.assertError(r, 413, 'payload_too_large')
            self.assertEqual(self.gw.request('GET', '/webhooks/' + hid).json['targetUrl'],
                             'http://127.0.0.1:9/put413')
            self.gw.request('DELETE', '/webhooks/' + hid)
        self.assertNothingStored(run)
        self.assertTrue(self.gw.healthy())

    def padded(self, size):
        body = b'{"targetUrl": "http://127.0.0.1:9/padded"}'
        return body + b' ' * (size - len(body))

    def test_body_of_exactly_64k_is_read(self):
        for chunked in (False, True):
            with self.subTest(chunked=chunked):
                body = self.padded(65536)
                chunks = iter([body[i:i + 10000] for i in range(0, len(body), 10000)])
                r = self.post(chunks if chunked else body, chunked=chunked)
                self.assertEqual(r.status, 201, r)
                body = self.padded(65537)
                chunks = iter([body[i:i + 10000] for i in range(0, len(body), 10000)])
                r = self.post(chunks if chunked else body, chunked=chunked)
                self.assertError(r, 413, 'payload_too_large')

    def test_huge_chunked_body_is_cut_off(self):
        # Far beyond the limit the gateway stops reading: a 413 or a closed connection, and
        # the gateway goes on serving.
        def run():
            try:
                r = self.post(iter([b'x' * 65536] * 64), chunked=True, timeout=10)
                self.assertError(r, 413, 'payload_too_large')
            except (ConnectionError, OSError):
                pass
        self.assertNothingStored(run)
        self.assertTrue(self.gw.healthy())

    def test_unknown_id_404(self):
        for method, body in (('GET', None), ('PUT', {'newTargetUrl': 'http://a.com/'}), ('DELETE', None)):
            with self.subTest(method=method):
                r = self.gw.request(method, '/webhooks/' + str(uuid.uuid4()), body)
                self.assertError(r, 404, 'not_found')

    def test_malformed_id_404(self):
        hid = self.gw.register('http://127.0.0.1:9/malformed').json['id']
        for bad in ('abc', hid.upper(), hid + 'a', hid[:-1], hid.replace('-', 'x'), 'g' * 36,
                    hid[:8] + hid[9:] + 'a', '%20' + hid):
            for method, body in (('GET', None), ('PUT', {'newTargetUrl': 'http://a.com/'}),
                                 ('DELETE', None)):
                with self.subTest(id=bad, method=method):
                    r = self.gw.request(method, '/webhooks/' + bad, body)
                    self.assertError(r, 404, 'not_found')
        got = self.gw.request('GET', '/webhooks/' + hid)
        self.assertEqual(got.status, 200, got)
        self.assertEqual(got.json['targetUrl'], 'http://127.0.0.1:9/malformed')

    def test_put_bad_body_keeps_url(self):
        hid = self.gw.register('http://127.0.0.1:9/keep').json['id']
        before = self.gw.request('GET', '/webhooks/' + hid).json
        cases = [('', 'invalid_json'), ('{', 'invalid_json'), ('[]', 'invalid_argument'),
                 ('{}', 'invalid_argument'), ('{"newTargetUrl": 5}', 'invalid_argument'),
                 ('{"newTargetUrl": null}', 'invalid_argument'),
                 ('{"targetUrl": {}}', 'invalid_argument'),
                 ('{"newTargetUrl": "ftp://a.com/"}', 'invalid_argument'),
                 ('{"newTargetUrl": "http://"}', 'invalid_argument'),
                 ('{"newTargetUrl": "/relative"}', 'invalid_argument'),
                 ('{"newTargetUrl": ""}', 'invalid_argument')]
        for body, code in cases:
            with self.subTest(body=body):
                r = self.gw.request('PUT', '/webhooks/' + hid, body)
                self.assertError(r, 400, code)
        after = self.gw.request('GET', '/webhooks/' + hid).json
        self.assertEqual(after, before)


class MethodsTest(IntegrationCase):
    """A known path with a wrong method is 405 with Allow; an unknown path is 404."""

    def test_405_with_allow(self):
        hid = self.gw.register('http://127.0.0.1:9/methods').json['id']
        # HEAD is allowed wherever GET is.
        cases = [('PATCH', '/webhooks', {'GET', 'HEAD', 'POST'}),
                 ('DELETE', '/webhooks', {'GET', 'HEAD', 'POST'}),
                 ('PUT', '/webhooks', {'GET', 'HEAD', 'POST'}),
                 ('POST', '/webhooks/' + hid, {'GET', 'HEAD', 'PUT', 'DELETE'}),
                 ('PATCH', '/webhooks/' + hid, {'GET', 'HEAD', 'PUT', 'DELETE'}),
                 ('POST', '/ip', {'GET', 'HEAD'}), ('DELETE', '/ip', {'GET', 'HEAD'}),
                 ('PUT', '/healthz', {'GET', 'HEAD'}), ('POST', '/healthz', {'GET', 'HEAD'})]
        for method, path, allowed in cases:
            with self.subTest(method=method, path=path):
                r = self.gw.request(method, path, '{}' if method in ('POST', 'PUT', 'PATCH') else None)
                self.assertError(r, 405, 'method_not_allowed')
                self.assertEqual(allow_set(r), allowed)
        # Nothing happened to the webhook.
        self.assertEqual(self.gw.request('GET', '/webhooks/' + hid).status, 200)

    def test_unknown_routes_404(self):
        hid = self.gw.register('http://127.0.0.1:9/routes').json['id']
        for method, path in (('GET', '/nope'), ('GET', '/'), ('GET', '/webhooks/' + hid + '/x'),
                             ('DELETE', '/webhooks/' + hid + '/x'), ('GET', '/webhooks/'),
                             ('GET', '/webhook'), ('GET', '/WEBHOOKS'), ('GET', '/ip/x'),
                             ('GET', '/healthz/x'), ('POST', '/nope'), ('GET', '/events'),
                             ('GET', '/events/' + hid + '/x')):
            for auth in (True, False):
                with self.subTest(method=method, path=path, auth=auth):
                    r = self.gw.request(method, path, auth=auth)
                    self.assertError(r, 404, 'not_found')


def pipelined(gw, requests):
    """Send every request (method, path, auth) on one keep-alive connection, the last with
    Connection: close, and return the exact bytes that came back, up to the close."""
    out = b''
    for i, (method, path, auth) in enumerate(requests):
        out += ('%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n' % (method, path, gw.port)).encode()
        if auth:
            out += ('Authorization: Bearer %s\r\n' % gw.token).encode()
        if i == len(requests) - 1:
            out += b'Connection: close\r\n'
        out += b'\r\n'
    s = socket.create_connection((gw.host, gw.port), timeout=10)
    try:
        s.sendall(out)
        data = b''
        while True:
            chunk = s.recv(65536)
            if not chunk:
                return data
            data += chunk
    finally:
        s.close()


class RequestRulesTest(IntegrationCase):
    """The Bearer scheme in any case on every admin route, HEAD wherever GET is (same status
    and headers, not one byte of body), and a malformed id in the path as "no such webhook
    (or event)" after the method rules, not as "no such route"."""

    stack_options = {'svc_env': {'MAX_RETRIES': '0', 'DELIVERY_TIMEOUT_MS': '1000'}}

    def setUp(self):
        super().setUp()
        self.hid = self.gw.register('http://127.0.0.1:9/rules').json['id']
        r = self.gw.request('GET', '/ip', auth=False)
        self.assertEqual(r.status, 202, r)
        self.eid = r.json['eventId']

    def get_paths(self):
        h, e = self.hid, self.eid
        return [('/webhooks', True), ('/webhooks?limit=1', True), ('/webhooks/' + h, True),
                ('/webhooks/%s/secret' % h, True), ('/events/' + e, True),
                ('/events/%s/deliveries' % e, True), ('/healthz', False),
                # Errors too: unknown id, bad query, no token, unknown route, malformed id.
                ('/webhooks/' + UNKNOWN_ID, True), ('/webhooks?limit=0', True),
                ('/webhooks', False), ('/nope', True), ('/events/xyz', True)]

    def test_bearer_scheme_in_any_case_on_every_admin_route(self):
        t = self.gw.token
        paths = [('GET', '/webhooks'), ('GET', '/webhooks/' + self.hid),
                 ('GET', '/webhooks/%s/secret' % self.hid), ('GET', '/events/' + self.eid),
                 ('GET', '/events/%s/deliveries' % self.eid)]
        for scheme in ('bearer', 'BEARER', 'bEARER', 'Bearer'):
            for method, path in paths:
                with self.subTest(scheme=scheme, path=path):
                    r = self.gw.request(method, path, auth='%s %s' % (scheme, t))
                    self.assertEqual(r.status, 200, r)
            r = self.gw.request('PUT', '/webhooks/' + self.hid,
                                {'newTargetUrl': 'http://127.0.0.1:9/' + scheme},
                                auth='%s %s' % (scheme, t))
            self.assertEqual(r.status, 200, r)
            self.assertEqual(r.json['targetUrl'], 'http://127.0.0.1:9/' + scheme)
        # The token itself is still exact: only the scheme's case is free.
        for auth in ('bearer ' + t.swapcase(), 'BEARER ' + t[:-1], 'bearer' + t,
                     'bearerx ' + t, 'bearer\t' + t, 'Basic ' + t):
            with self.subTest(auth=auth):
                self.assertError(self.gw.request('GET', '/webhooks', auth=auth), 401,
                                 'unauthorized')

    def test_head_has_gets_status_and_headers(self):
        for path, auth in self.get_paths():
            with self.subTest(path=path, auth=auth):
                get = self.gw.request('GET', path, auth=auth)
                head = self.gw.request('HEAD', path, auth=auth)
                self.assertEqual(head.status, get.status, (head, get))
                names = ['Content-Type', 'Connection', 'Allow', 'WWW-Authenticate']
                # Content-Length too, unless the message names the method ("no such route:
                # GET /nope"), when the body GET would get differs from HEAD's.
                if b'GET ' not in get.raw:
                    names.append('Content-Length')
                for name in names:
                    self.assertEqual(head.headers.get(name), get.headers.get(name),
                                     (name, head, get))
                self.assertEqual(head.raw, b'', head)
        r = self.gw.request('HEAD', '/ip', auth=False)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.headers.get('Content-Type'), 'application/json', r)

    def test_head_sends_no_body_bytes(self):
        # On one connection a HEAD answer's body would be read as the start of the next
        # response: the bytes after each HEAD answer's headers must be the next status line.
        # (An error answered before the request is read closes the connection, so those are
        # sent one to a connection: nothing may follow their headers before the close.)
        oks = [('HEAD', p, a) for p, a in self.get_paths() if p.startswith(('/webhooks/', '/ev'))
               and 'xyz' not in p and UNKNOWN_ID not in p]
        oks += [('HEAD', '/webhooks', True), ('HEAD', '/healthz', False)]
        sequences = [oks + [('GET', '/healthz', False)]]
        sequences += [[('HEAD', p, a)] for p, a in self.get_paths()]
        for reqs in sequences:
            data = pipelined(self.gw, reqs)
            for method, path, _ in reqs[:-1] if len(reqs) > 1 else reqs:
                with self.subTest(path=path):
                    self.assertTrue(data.startswith(b'HTTP/1.1 '), (path, data[:300]))
                    head, sep, data = data.partition(b'\r\n\r\n')
                    self.assertEqual(sep, b'\r\n\r\n', head)
                    self.assertNotIn(b'chunked', head.lower(), head)
            if len(reqs) > 1:
                self.assertTrue(data.startswith(b'HTTP/1.1 200'), data[:300])
                self.assertTrue(data.endswith(b'{"status":"ok"}'), data[-300:])
            else:
                self.assertEqual(data, b'', reqs)

    def test_405_allow_lists_head_where_get_is(self):
        h, e = self.hid, self.eid
        for method, path, allowed in (
                ('DELETE', '/events/' + e, {'GET', 'HEAD'}),
                ('POST', '/events/%s/deliveries' % e, {'GET', 'HEAD'}),
                ('PUT', '/webhooks/%s/secret' % h, {'GET', 'HEAD'}),
                ('GET', '/webhooks/%s/secret/rotate' % h, {'POST'}),
                ('HEAD', '/webhooks/%s/secret/rotate' % h, {'POST'}),
                ('PATCH', '/webhooks', {'GET', 'HEAD', 'POST'})):
            with self.subTest(method=method, path=path):
                r = self.gw.request(method, path)
                self.assertEqual(r.status, 405, r)
                self.assertEqual(allow_set(r), allowed, r)
                if method != 'HEAD':
                    self.assertError(r, 405, 'method_not_allowed')

    def test_malformed_id_is_no_such_webhook_or_event(self):
        cases = [('GET', '/webhooks/not-a-uuid', 'webhook'),
                 ('PUT', '/webhooks/not-a-uuid', 'webhook'),
                 ('DELETE', '/webhooks/not-a-uuid', 'webhook'),
                 ('GET', '/webhooks/%s/secret' % self.hid.upper(), 'webhook'),
                 ('POST', '/webhooks/%s0/secret/rotate' % self.hid, 'webhook'),
                 ('GET', '/events/xyz', 'event'), ('GET', '/events/xyz/deliveries', 'event'),
                 ('GET', '/events/%s/deliveries' % self.eid[:-1], 'event'),
                 ('GET', '/events/xyz/deliveries?limit=5', 'event')]
        for method, path, what in cases:
            with self.subTest(method=method, path=path):
                body = {'newTargetUrl': 'http://127.0.0.1:9/x'} if method == 'PUT' else None
                r = self.gw.request(method, path, body)
                self.assertError(r, 404, 'not_found')
                msg = r.json['error']['message']
                self.assertIn('no %s with' % what, msg, r)
                self.assertNotIn('route', msg, r)
                head = self.gw.request('HEAD', path) if method == 'GET' else None
                if head is not None:
                    self.assertEqual((head.status, head.raw), (404, b''), head)
        # The same answer as for an unknown well-formed id, apart from the message's detail.
        for path in ('/webhooks/%s', '/events/%s', '/events/%s/deliveries'):
            a = self.gw.request('GET', path % UNKNOWN_ID)
            b = self.gw.request('GET', path % 'xyz')
            self.assertEqual((a.status, a.json['error']['code']),
                             (b.status, b.json['error']['code']), (a, b))
        # The method rules and the token come first; an unknown sub-path is still no route.
        for method, path, allowed in (('POST', '/webhooks/xyz', {'GET', 'HEAD', 'PUT', 'DELETE'}),
                                      ('DELETE', '/events/xyz', {'GET', 'HEAD'}),
                                      ('POST', '/events/xyz/deliveries', {'GET', 'HEAD'}),
                                      ('GET', '/webhooks/xyz/secret/rotate', {'POST'})):
            with self.subTest(method=method, path=path):
                r = self.gw.request(method, path)
                self.assertError(r, 405, 'method_not_allowed')
                self.assertEqual(allow_set(r), allowed, r)
        self.assertError(self.gw.request('GET', '/events/xyz', auth=False), 401, 'unauthorized')
        for path in ('/events/xyz/nothing', '/webhooks/xyz/secret/x', '/webhooks/'):
            r = self.gw.request('GET', path)
            self.assertError(r, 404, 'not_found')
            self.assertIn('no such route', r.json['error']['message'], r)


class TrustProxyTest(IntegrationCase):
    """The caller's IP for /ip: the TCP peer, or X-Forwarded-For's left-most entry only when
    TRUST_PROXY=1."""

    def ip(self, gw, xff=None):
        r = gw.request('GET', '/ip', headers={'X-Forwarded-For': xff} if xff else {}, auth=False)
        self.assertEqual(r.status, 202, r)
        return r.json['ipAddress']

    def test_untrusted_ignores_xff(self):
        for value in ('0', 'false'):
            gw = self.stack.add_gateway({'TRUST_PROXY': value})
            try:
                self.assertEqual(self.ip(gw), '127.0.0.1')
                self.assertEqual(self.ip(gw, '203.0.113.7'), '127.0.0.1')
                self.assertEqual(self.ip(gw, '2001:db8::1, 10.0.0.1'), '127.0.0.1')
            finally:
                gw.stop()
        # The default is not to trust.
        self.assertEqual(self.ip(self.gw, '203.0.113.7'), '127.0.0.1')

    def test_trusted_uses_leftmost(self):
        gw = self.stack.add_gateway({'TRUST_PROXY': '1'})
        try:
            self.assertEqual(self.ip(gw), '127.0.0.1')
            self.assertEqual(self.ip(gw, '203.0.113.7'), '203.0.113.7')
            self.assertEqual(self.ip(gw, '203.0.113.7, 10.0.0.1, 10.0.0.2'), '203.0.113.7')
            self.assertEqual(self.ip(gw, '198.51.100.2,10.0.0.1'), '198.51.100.2')
            self.assertEqual(self.ip(gw, '2001:db8::1, 10.0.0.1'), '2001:db8::1')
            self.assertEqual(self.ip(gw, '  192.0.2.9'), '192.0.2.9')
            # A malformed entry is not an address: the peer's address is used.
            self.assertEqual(self.ip(gw, 'not-an-ip, 10.0.0.1'), '127.0.0.1')
            self.assertEqual(self.ip(gw, '999.1.1.1'), '127.0.0.1')
        finally:
            gw.stop()

    @unittest.skipUnless(harness.has_ipv6_loopback(), 'this machine has no IPv6 loopback (::1)')
    def test_ipv6_client(self):
        gw = self.stack.add_gateway({'TRUST_PROXY': '0'}, bind='::1')
        try:
            self.assertEqual(self.ip(gw), '::1')
            self.assertEqual(self.ip(gw, '203.0.113.7'), '::1')
            r = gw.request('GET', '/healthz', auth=False)
            self.assertEqual(r.status, 200, r)
        finally:
            gw.stop()
        gw = self.stack.add_gateway({'TRUST_PROXY': '1'}, bind='::1')
        try:
            self.assertEqual(self.ip(gw, '2001:db8::7'), '2001:db8::7')
            self.assertEqual(self.ip(gw), '::1')
        finally:
            gw.stop()


if __name__ == '__main__':
    harness.main()
