"""test_basic.py -- what every target receives on GET /ip, and what the event's summary and
delivery pages say about it, checked against what the real webhook-target saw."""

import time

from delivery_helpers import (DeliveryCase, UUID_RE, RFC3339_UTC_RE, parse_rfc3339, SLACK,
                              main)

UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'


class DeliveryBasicsTest(DeliveryCase):
    # Fast retries, so that a wrongly failed delivery ends as "failed" instead of hanging.
    # A short timeout: /hang/ attempts end as errors without an HTTP status.
    stack_options = {'svc_env': {'MAX_RETRIES': 2, 'RETRY_SCHEDULE': '50ms',
                                 'DELIVERY_TIMEOUT_MS': 1200}}

    def test_one_post_per_target_with_exact_body_and_headers(self):
        hooks = [self.register('/slow/800/t%d' % i) for i in range(5)]
        t0 = time.time()
        ev, elapsed = self.trigger()
        t1 = time.time()
        # 202 before the deliveries (0.8 s each) finish.
        self.assertEqual(ev['ipAddress'], '127.0.0.1')
        self.assertEqual(ev['targets'], 5)
        self.assertLess(elapsed, 0.7, 'GET /ip waited for the deliveries')
        early = self.event(ev['eventId'])
        self.assertEqual((early['succeeded'], early['failed'], early['pending']), (0, 0, 5),
                         early)

        summary = self.wait_event(ev['eventId'], 15)
        t2 = time.time()
        self.assertEqual(summary['eventId'], ev['eventId'])
        self.assertEqual(summary['ipAddress'], '127.0.0.1')
        self.assertEqual((summary['targets'], summary['succeeded'], summary['failed'],
                          summary['pending']), (5, 5, 0, 0), summary)
        self.assertRegex(summary['createdAt'], RFC3339_UTC_RE)
        created = parse_rfc3339(summary['createdAt']).timestamp()
        self.assertTrue(t0 - 1 <= created <= t1 + 1, (t0, created, t1))

        seen = self.target.by_path()
        self.assertEqual(set(seen), {'/slow/800/t%d' % i for i in range(5)}, list(seen))
        ids = {}
        for path, reqs in seen.items():
            self.assertEqual(len(reqs), 1, 'exactly one POST to %s: %r' % (path, reqs))
            self.assertDeliveryRequest(reqs[0], ip='127.0.0.1', t0=t0, t1=t2)
            ids[path] = reqs[0]['headers']['webhook-id']
        self.assertEqual(len(set(ids.values())), 5, 'webhook-id must differ per target: %r' % ids)
        self.assertEqual(self.target.stats()['total'], 5)

        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual(len(dels), 5)
        by_hook = {h['id']: h for h in hooks}
        for d in dels:
            hook = by_hook[d['webhookId']]
            path = hook['targetUrl'].split(str(self.target.port), 1)[1]
            self.assertEqual(d['id'], ids[path], d)
            self.assertEqual(d['targetUrl'], hook['targetUrl'])
            self.assertEqual(d['status'], 'succeeded')
            self.assertEqual(len(d['attempts']), 1, d)
            self.assertEqual(d['attempts'][0]['httpStatus'], 200, d)
            self.assertIsNone(d['attempts'][0]['error'], d)
            self.assertGreaterEqual(d['attempts'][0]['durationMs'], 750, d)

    def test_2xx_statuses_are_success_after_one_attempt(self):
        codes = (200, 201, 202, 204, 299)
        for c in codes:
            self.register('/status/%d/s' % c)
        ev, _ = self.trigger()
        summary = self.wait_event(ev['eventId'], 10)
        self.assertEqual((summary['targets'], summary['succeeded'], summary['failed']),
                         (len(codes), len(codes), 0), summary)
        seen = self.target.by_path()
        self.assertEqual({p: len(r) for p, r in seen.items()},
                         {'/status/%d/s' % c: 1 for c in codes})
        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual(sorted(d['attempts'][0]['httpStatus'] for d in dels), list(codes))
        self.assertTrue(all(d['status'] == 'succeeded' and len(d['attempts']) == 1 for d in dels),
                        dels)

    def test_summary_and_pages_match_what_the_target_saw(self):
        # path -> (final status, the HTTP status of each attempt; None: no HTTP answer)
        plan = {
            '/ok/a': ('succeeded', [200]),
            '/status/201/b': ('succeeded', [201]),
            '/status/204/c': ('succeeded', [204]),
            '/status/500/d': ('failed', [500, 500, 500]),
            '/fail/1/e': ('succeeded', [503, 200]),
            '/hang/f': ('failed', [None, None, None]),
            '/status/404/g': ('failed', [404, 404, 404]),
        }
        hooks = {self.register(p)['id']: p for p in plan}
        t0 = time.time()
        ev, _ = self.trigger()
        summary = self.wait_event(ev['eventId'], 15)
        t1 = time.time()
        self.assertEqual((summary['targets'], summary['succeeded'], summary['failed'],
                          summary['pending']), (7, 4, 3, 0), summary)
        seen = self.target.by_path()
        self.assertEqual(set(seen), set(plan))

        everything, pages = self.deliveries(ev['eventId'], limit=3)
        self.assertEqual([len(p) for p in pages], [3, 3, 1])
        ids = [d['id'] for d in everything]
        self.assertEqual(ids, sorted(ids), 'pages are ordered by id')
        self.assertEqual(len(set(ids)), 7)
        self.assertEqual({d['webhookId'] for d in everything}, set(hooks))
        # The same deliveries whatever the page size; default limit gives one page.
        for limit in (1, 7, None, 1000):
            dels, pgs = self.deliveries(ev['eventId'], limit=limit)
            with self.subTest(limit=limit):
                self.assertEqual(dels, everything)
                self.assertEqual(len(pgs), 7 if limit == 1 else 1)

        for d in everything:
            path = hooks[d['webhookId']]
            final, statuses = plan[path]
            reqs = seen[path]
            with self.subTest(path=path):
                self.assertEqual(set(d), {'id', 'webhookId', 'targetUrl', 'status', 'attempts'})
                self.assertRegex(d['id'], UUID_RE)
                self.assertEqual(d['targetUrl'], self.target.url(path))
                self.assertEqual(d['status'], final)
                self.assertEqual(len(reqs), len(statuses), reqs)
                self.assertEqual(len(d['attempts']), len(statuses), d)
                for rq in reqs:
                    self.assertEqual(rq['headers']['webhook-id'], d['id'])
                for i, (a, rq, st) in enumerate(zip(d['attempts'], reqs, statuses)):
                    self.assertTrue({'at', 'httpStatus', 'error', 'durationMs'} <= set(a), a)
                    if 'attempt' in a:
                        self.assertEqual(a['attempt'], i + 1, a)
                    self.assertEqual(a['httpStatus'], st, a)
                    if st is None:
                        self.assertIsInstance(a['error'], str, a)
                        self.assertTrue(a['error'].strip(), a)
                    else:
                        self.assertIsNone(a['error'], a)
                    self.assertIsInstance(a['durationMs'], int, a)
                    self.assertTrue(0 <= a['durationMs'] < 5000, a)
                    if path.startswith('/hang/'):
                        self.assertGreaterEqual(a['durationMs'], 1150, a)
                    self.assertRegex(a['at'], RFC3339_UTC_RE)
                    at = parse_rfc3339(a['at']).timestamp()
                    self.assertTrue(t0 - 1 <= at <= t1 + 1, (t0, a, t1))
                    arrival = rq['arrivalUs'] / 1e6
                    self.assertLess(abs(arrival - at), 0.5 + SLACK, (a, rq['arrivalUs']))
                    body = self.assertDeliveryRequest(rq)
                    # The body's timestamp is the recorded attempt time, in seconds.
                    self.assertEqual(body['timestamp'], int(at), (a, body))

    def test_event_without_targets(self):
        ev, _ = self.trigger()
        self.assertEqual(ev['targets'], 0)
        s = self.wait_event(ev['eventId'], 5)
        self.assertEqual((s['targets'], s['succeeded'], s['failed'], s['pending']), (0, 0, 0, 0))
        dels, pages = self.deliveries(ev['eventId'])
        self.assertEqual((dels, len(pages)), ([], 1))
        self.assertEqual(self.target.stats()['total'], 0)

    def test_errors_404_401_400(self):
        self.register('/ok/x')
        ev, _ = self.trigger()
        eid = ev['eventId']
        self.wait_event(eid, 10)
        for path in ('/events/%s', '/events/%s/deliveries'):
            with self.subTest(path=path):
                # unknown and malformed ids name no event
                for bad in (UNKNOWN_ID, 'nope', eid[:-1], eid + '0', eid.replace('-', '_')):
                    self.assertError(self.gw.request('GET', path % bad), 404, 'not_found')
                # a real event without, or with a wrong, token
                self.assertError(self.gw.request('GET', path % eid, auth=False), 401,
                                 'unauthorized')
                self.assertError(self.gw.request('GET', path % eid, auth='Bearer wrong'), 401,
                                 'unauthorized')
                self.assertError(self.gw.request('GET', path % UNKNOWN_ID, auth=False), 401,
                                 'unauthorized')
                self.assertEqual(self.gw.request('GET', path % eid).status, 200)
        d = '/events/%s/deliveries' % eid
        for q in ('limit=0', 'limit=1001', 'limit=x', 'after=nope'):
            with self.subTest(query=q):
                self.assertError(self.gw.request('GET', d + '?' + q), 400, 'invalid_argument')
        # The NATS subjects answer the same way for an unknown event.
        with self.stack.nats_client() as nc:
            for subject in ('webhooks.event', 'webhooks.deliveries'):
                r = nc.request_json(subject, {'id': UNKNOWN_ID})
                self.assertEqual(r['error']['code'], 'not_found', r)
                self.assertEqual(r['error']['status'], 404, r)


if __name__ == '__main__':
    main()
