"""test_retries.py -- which answers are failures, how many attempts a delivery gets, how they
are spaced (RETRY_SCHEDULE with its jitter, Retry-After), timeouts, dropped connections and
redirects; every count is what the real webhook-target received."""

import re
import subprocess

from delivery_helpers import DeliveryCase, ScriptedServer, SANITIZED, SLACK, harness, main

MAX_RETRIES = 3
ATTEMPTS = MAX_RETRIES + 1
TIMEOUT_MS = 300


class RetryOutcomesTest(DeliveryCase):
    """One event to targets of every behaviour, on one stack; each test checks one of them."""

    stack_per_test = False
    stack_options = {'svc_env': {'MAX_RETRIES': MAX_RETRIES, 'RETRY_SCHEDULE': '50ms,100ms',
                                 'DELIVERY_TIMEOUT_MS': TIMEOUT_MS}}

    PATHS = ['/status/500/a', '/status/404/b', '/fail/2/c', '/status/201/d', '/status/204/e',
             '/ok/f', '/hang/g', '/close/h', '/status/302/i']
    outcome = None
    redirect = None

    @classmethod
    def tearDownClass(cls):
        try:
            super().tearDownClass()
        finally:
            if cls.redirect is not None:
                cls.redirect.stop()

    def run_event(self):
        """Register every behaviour, trigger once, wait; done once for the class."""
        cls = type(self)
        if cls.outcome is not None:
            return cls.outcome
        location = self.target.url('/ok/redirected')
        cls.redirect = ScriptedServer(lambda path: (302, {'Location': location}, b'')).start()
        hooks = {}
        for p in self.PATHS:
            hooks[self.register(p)['id']] = p
        hooks[self.register(cls.redirect.url('/redirect'))['id']] = 'redirect'
        # Nothing listens there: every attempt is refused.
        refused = 'http://127.0.0.1:%d/refused' % harness.free_port()
        hooks[self.register(refused)['id']] = 'refused'
        ev, _ = self.trigger()
        self.assertEqual(ev['targets'], len(hooks))
        summary = self.wait_event(ev['eventId'], 20)
        dels, _ = self.deliveries(ev['eventId'])
        by_path = {hooks[d['webhookId']]: d for d in dels}
        cls.outcome = (summary, by_path, self.target.by_path())
        return cls.outcome

    def check_failed(self, path, statuses, errors=False):
        summary, dels, seen = self.run_event()
        d = dels[path]
        got = seen.get(path, [])
        self.assertEqual(len(got), ATTEMPTS, 'POSTs received by %s (at ms, peer port): %r; '
                         'recorded attempts: %r' % (
                             path, [((r['arrivalUs'] - got[0]['arrivalUs']) // 1000,
                                     r['peerPort']) for r in got], d['attempts']))
        self.assertEqual(d['status'], 'failed', d)
        self.assertEqual([a['httpStatus'] for a in d['attempts']], statuses, d)
        if errors:
            for a in d['attempts']:
                self.assertIsInstance(a['error'], str, d)
        for rq in seen[path]:
            self.assertEqual(rq['headers']['webhook-id'], d['id'])
        return d, seen[path]

    def test_always_500_gives_max_retries_plus_one_attempts(self):
        self.check_failed('/status/500/a', [500] * ATTEMPTS)

    def test_always_404_gives_max_retries_plus_one_attempts(self):
        self.check_failed('/status/404/b', [404] * ATTEMPTS)

    def test_fail_twice_then_success(self):
        _, dels, seen = self.run_event()
        d = dels['/fail/2/c']
        self.assertEqual(len(seen['/fail/2/c']), 3, seen['/fail/2/c'])
        self.assertEqual(d['status'], 'succeeded', d)
        self.assertEqual([a['httpStatus'] for a in d['attempts']], [503, 503, 200], d)

    def test_201_204_200_succeed_at_once(self):
        _, dels, seen = self.run_event()
        for path, code in (('/status/201/d', 201), ('/status/204/e', 204), ('/ok/f', 200)):
            with self.subTest(path=path):
                self.assertEqual(len(seen[path]), 1, seen[path])
                self.assertEqual(dels[path]['status'], 'succeeded')
                self.assertEqual([a['httpStatus'] for a in dels[path]['attempts']], [code])

    def test_same_webhook_id_on_every_retry_and_distinct_per_target(self):
        _, dels, seen = self.run_event()
        ids = {}
        for path, reqs in seen.items():
            if path == '/ok/redirected':
                continue
            with self.subTest(path=path):
                hdr = {rq['headers']['webhook-id'] for rq in reqs}
                self.assertEqual(len(hdr), 1, 'one webhook-id for all retries of %s' % path)
                ids[path] = hdr.pop()
                self.assertEqual(ids[path], dels[path]['id'])
                for rq in reqs:
                    self.assertDeliveryRequest(rq)
        self.assertEqual(len(set(ids.values())), len(ids), ids)
        rd = {h['webhook-id'] for _, _, h, _ in self.redirect.hits}
        self.assertEqual(rd, {dels['redirect']['id']})

    def test_hang_times_out_after_delivery_timeout_and_is_retried(self):
        d, reqs = self.check_failed('/hang/g', [None] * ATTEMPTS, errors=True)
        for a in d['attempts']:
            self.assertRegex(a['error'], re.compile('time', re.I), a)
            self.assertGreaterEqual(a['durationMs'], TIMEOUT_MS - 20, a)
            self.assertLess(a['durationMs'], TIMEOUT_MS + 1000 * SLACK + 200, a)
        # Each retry arrives after the timeout plus the (jittered) schedule.
        for g, delay in zip(self.gaps(reqs), (0.05, 0.1, 0.1)):
            self.assertGreaterEqual(g, TIMEOUT_MS / 1000 + 0.8 * delay - 0.01, self.gaps(reqs))
            self.assertLess(g, TIMEOUT_MS / 1000 + 1.2 * delay + 2 * SLACK, self.gaps(reqs))

    def test_dropped_connection_is_retried_once_per_attempt(self):
        # /close/ reads the POST and closes without an answer. Exactly MAX_RETRIES + 1 POSTs
        # may reach it, and each must be a recorded attempt.
        d, reqs = self.check_failed('/close/h', [None] * ATTEMPTS, errors=True)
        self.assertEqual(len(d['attempts']), len(reqs))

    def test_refused_connection_is_retried(self):
        _, dels, _ = self.run_event()
        d = dels['refused']
        self.assertEqual(d['status'], 'failed', d)
        self.assertEqual(len(d['attempts']), ATTEMPTS, d)
        for a in d['attempts']:
            self.assertIsNone(a['httpStatus'], d)
            self.assertIsInstance(a['error'], str, d)
            self.assertTrue(a['error'].strip(), d)

    def test_3xx_is_a_failure_and_not_followed(self):
        self.check_failed('/status/302/i', [302] * ATTEMPTS)
        summary, dels, seen = self.run_event()
        d = dels['redirect']
        self.assertEqual(len(self.redirect.hits), ATTEMPTS, self.redirect.hits)
        self.assertEqual(d['status'], 'failed', d)
        self.assertEqual([a['httpStatus'] for a in d['attempts']], [302] * ATTEMPTS, d)
        self.assertNotIn('/ok/redirected', seen, 'the redirect was followed')

    def test_summary_counts(self):
        summary, dels, seen = self.run_event()
        self.assertEqual((summary['targets'], summary['succeeded'], summary['failed'],
                          summary['pending']), (len(self.PATHS) + 2, 4, 7, 0), summary)
        self.assertEqual(sum(d['status'] == 'succeeded' for d in dels.values()), 4)
        self.assertEqual(sum(d['status'] == 'failed' for d in dels.values()), 7)


class RetrySpacingTest(DeliveryCase):
    """Arrival gaps follow RETRY_SCHEDULE (+-20%, the last delay repeating) and a 429's
    Retry-After, capped at twice the scheduled delay."""

    stack_options = {'svc_env': {'MAX_RETRIES': 3, 'RETRY_SCHEDULE': '200ms,700ms,400ms'}}

    def test_schedule_and_retry_after(self):
        for i in range(10):
            self.register('/status/500/s%d' % i)
        # 429 with Retry-After: 1 twice, then 200. First retry: 1 s > 2 x 200 ms -> 400 ms
        # exactly; second: 1 s < 2 x 700 ms -> 1 s exactly (no jitter on either).
        self.register('/retry-after/1/2/r')
        ev, _ = self.trigger()
        summary = self.wait_event(ev['eventId'], 20)
        self.assertEqual((summary['succeeded'], summary['failed']), (1, 10), summary)
        seen = self.target.by_path()

        firsts = []
        for i in range(10):
            reqs = seen['/status/500/s%d' % i]
            self.assertEqual(len(reqs), 4, reqs)
            g = self.gaps(reqs)
            with self.subTest(target=i, gaps=g):
                for gap, delay in zip(g, (0.2, 0.7, 0.4)):
                    self.assertGreaterEqual(gap, 0.8 * delay - 0.005, g)
                    self.assertLessEqual(gap, 1.2 * delay + SLACK, g)
            firsts.append(g[0])
        if not SANITIZED:
            # +-20% at random: ten delays of 160..240 ms are not all the same.
            self.assertGreater(max(firsts) - min(firsts), 0.015, firsts)

        reqs = seen['/retry-after/1/2/r']
        self.assertEqual(len(reqs), 3, reqs)
        g = self.gaps(reqs)
        # Ignoring Retry-After would give 160..240 ms and 560..840 ms; obeying it without the
        # cap would give 1 s for the first gap.
        self.assertGreaterEqual(g[0], 0.395, g)
        self.assertLessEqual(g[0], 0.4 + SLACK, g)
        self.assertGreaterEqual(g[1], 0.995, g)
        self.assertLessEqual(g[1], 1.0 + SLACK, g)
        dels, _ = self.deliveries(ev['eventId'])
        d = [x for x in dels if x['targetUrl'].endswith('/retry-after/1/2/r')][0]
        self.assertEqual([a['httpStatus'] for a in d['attempts']], [429, 429, 200], d)
        self.assertEqual(d['status'], 'succeeded')


class OtherAnswersTest(DeliveryCase):
    """Answers webhook-target cannot give, from a scripted server: Retry-After on a 503 (obeyed,
    capped) and on a 500 (not obeyed), every redirect status with a Location (not followed),
    and a body larger than the 64 KiB the service reads (a 200 is still a success)."""

    stack_options = {'svc_env': {'MAX_RETRIES': 1, 'RETRY_SCHEDULE': '200ms'}}

    def test_other_answers(self):
        location = self.target.url('/ok/followed')
        big = b'x' * (1 << 20)

        def answer(path):
            kind = path.strip('/').split('/')[0]
            if kind == '503ra':
                return 503, {'Retry-After': '1'}, b'{}'
            if kind == '500ra':
                return 500, {'Retry-After': '1'}, b'{}'
            if kind == 'big200':
                return 200, {'Content-Type': 'text/plain'}, big
            if kind == 'big500':
                return 500, {'Content-Type': 'text/plain'}, big
            return int(kind), {'Location': location}, b''
        srv = ScriptedServer(answer).start()
        self.addCleanup(srv.stop)
        redirects = (301, 302, 303, 307, 308)
        paths = ['/503ra/x', '/500ra/x', '/big200/x', '/big500/x'] + \
            ['/%d/x' % c for c in redirects]
        for p in paths:
            self.register(srv.url(p))
        ev, _ = self.trigger()
        summary = self.wait_event(ev['eventId'], 15)
        self.assertEqual((summary['succeeded'], summary['failed']), (1, len(paths) - 1),
                         summary)
        hits = srv.by_path()
        gaps = {p: [b[0] - a[0] for a, b in zip(hits[p], hits[p][1:])] for p in hits}
        counts = {p: len(h) for p, h in hits.items()}
        self.assertEqual(counts, {p: 1 if p == '/big200/x' else 2 for p in paths})
        # 503 + Retry-After 1 s: min(1 s, 2 x 200 ms) = 400 ms exactly (jitter: 160..240).
        self.assertGreaterEqual(gaps['/503ra/x'][0], 0.395, gaps)
        self.assertLessEqual(gaps['/503ra/x'][0], 0.4 + SLACK, gaps)
        # A 500's Retry-After is not obeyed: the jittered schedule.
        self.assertGreaterEqual(gaps['/500ra/x'][0], 0.16 - 0.005, gaps)
        self.assertLessEqual(gaps['/500ra/x'][0], 0.24 + SLACK, gaps)
        self.assertEqual(self.target.stats()['total'], 0, 'a redirect was followed')
        dels, _ = self.deliveries(ev['eventId'])
        by_path = {d['targetUrl'].split(str(srv.port), 1)[1]: d for d in dels}
        self.assertEqual(by_path['/big200/x']['status'], 'succeeded')
        self.assertEqual([a['httpStatus'] for a in by_path['/big200/x']['attempts']], [200])
        self.assertEqual([a['httpStatus'] for a in by_path['/big500/x']['attempts']],
                         [500, 500])
        for c in redirects:
            d = by_path['/%d/x' % c]
            self.assertEqual((d['status'], [a['httpStatus'] for a in d['attempts']]),
                             ('failed', [c, c]), d)


class HostileRetryAfterTest(DeliveryCase):
    """Retry-After values a hostile or broken receiver may send: the largest integer, one past
    it, negative, a date far ahead. None overflows (the sanitizer run would abort on it), and
    each waits at most twice the scheduled delay."""

    stack_options = {'svc_env': {'MAX_RETRIES': 1, 'RETRY_SCHEDULE': '300ms'}}
    VALUES = ['9223372036854775807', '99999999999999999999', '-5',
              'Wed, 21 Oct 2099 07:28:00 GMT', '18446744073709551616']

    def test_huge_and_odd_retry_after(self):
        def answer(path):
            i = int(path.rsplit('/', 1)[1])
            seen = len(server.by_path().get(path, []))
            if seen <= 1:
                return 429, {'Retry-After': self.VALUES[i]}, b''
            return 200, {}, b''
        server = ScriptedServer(answer).start()
        self.addCleanup(server.stop)
        for i in range(len(self.VALUES)):
            self.register(server.url('/ra/%d' % i))
        ev, _ = self.trigger()
        s = self.wait_event(ev['eventId'], 20)
        self.assertEqual((s['succeeded'], s['failed']), (len(self.VALUES), 0), s)
        for path, hits in server.by_path().items():
            self.assertEqual(len(hits), 2, (path, hits))
            gap = hits[1][0] - hits[0][0]
            with self.subTest(value=self.VALUES[int(path.rsplit('/', 1)[1])]):
                self.assertLessEqual(gap, 2 * 0.3 * 1.2 + SLACK, gap)


class DefaultsTest(DeliveryCase):
    """MAX_RETRIES defaults to 5: documented by --help and applied."""

    stack_options = {'svc_env': {'RETRY_SCHEDULE': '20ms'}}

    def test_help_documents_the_defaults(self):
        out = subprocess.run([harness.binary('webhooks-svc'), '--help'], capture_output=True,
                             text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out)
        text = out.stdout + out.stderr

        def default(var):
            m = re.search(r'\b%s\b.*\(default: ([^)]*)\)' % var, text)
            self.assertIsNotNone(m, '%s not in --help:\n%s' % (var, text))
            return m.group(1)
        self.assertEqual(default('MAX_RETRIES'), '5')
        self.assertEqual(default('MAX_IN_FLIGHT'), '10')
        self.assertEqual(default('RETRY_SCHEDULE'), '1s,5s,30s,2m,10m')
        self.assertEqual(default('DELIVERY_TIMEOUT_MS'), '10000')

    def test_default_max_retries_gives_six_attempts(self):
        self.register('/status/500/default')
        ev, _ = self.trigger()
        summary = self.wait_event(ev['eventId'], 10)
        self.assertEqual(summary['failed'], 1, summary)
        self.assertEqual(len(self.target.by_path()['/status/500/default']), 6)


if __name__ == '__main__':
    main()
