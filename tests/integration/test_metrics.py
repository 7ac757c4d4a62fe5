"""test_metrics.py -- GET /metrics on the gateway (admin token) and on webhooks-svc
(METRICS_BIND:METRICS_PORT), each scraped before and after known work and parsed whole by the
Prometheus client library's own text parser (Debian python3-prometheus-client). Every counter
must move by exactly what was done: the deliveries and attempts of one event whose targets
answer 2xx, 4xx, 5xx and 3xx, time out, refuse the connection or are blocked by the address
policy (cross-checked with what the target saw and what the API recorded); the requests the
gateway answered, by route and code; /ip requests refused by the rate limit."""

import os
import socket
import sys
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'delivery'))

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from delivery_helpers import DeliveryCase, harness, main, poll_until  # noqa: E402
from harness import IntegrationCase  # noqa: E402

CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'
ROUTES = {'register', 'list', 'get', 'update', 'delete', 'trigger', 'event', 'deliveries',
          'secret', 'rotate', 'retry', 'health', 'metrics', 'unknown'}
CODES = {'200', '201', '202', '204', '400', '401', '404', '405', '413', '429', '500', '503',
         '504', 'other'}
RESULTS = ('2xx', '4xx', '5xx', 'timeout', 'connect_error', 'blocked', 'other')

# name -> type of every family each process must serve (the parser's names: a counter's
# family drops its _total, which its samples keep).
SVC_FAMILIES = {'webhooks_deliveries': 'counter', 'webhooks_delivery_attempts': 'counter',
                'webhooks_delivery_duration_seconds': 'histogram', 'webhooks_in_flight': 'gauge',
                'webhooks_retries_waiting': 'gauge', 'webhooks_events': 'counter',
                'webhooks_store_batch_duration_seconds': 'histogram',
                'webhooks_records_failed': 'counter'}
GW_FAMILIES = {'webhooks_http_requests': 'counter',
               'webhooks_http_request_duration_seconds': 'histogram',
               'webhooks_ip_rate_limited': 'counter'}


class Scrape:
    """One /metrics text, parsed: the families and every sample by (name, sorted labels)."""

    def __init__(self, text):
        self.text = text
        self.families = {}
        self.samples = {}
        for fam in text_string_to_metric_families(text):
            self.families[fam.name] = fam
            for s in fam.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if key in self.samples:
                    raise AssertionError('sample %r twice' % (key,))
                self.samples[key] = s.value

    def get(self, name, **labels):
        """The sample's value; 0 when absent (a series that never moved may be left out)."""
        return self.samples.get((name, tuple(sorted(labels.items()))), 0.0)

    def series(self, name):
        """labels dict (as a sorted tuple) -> value, for every sample of that name."""
        return {k[1]: v for k, v in self.samples.items() if k[0] == name}


def delta(after, before, name):
    """Per series: after - before, only where it moved."""
    a, b = after.series(name), before.series(name)
    out = {}
    for k in set(a) | set(b):
        d = a.get(k, 0.0) - b.get(k, 0.0)
        if d != 0:
            out[k] = d
    return out


def labels(**kw):
    return tuple(sorted(kw.items()))


class MetricsAssertions:
    """Checks of the format shared by both processes."""

    def assertWellFormed(self, scrape, families):
        for name, kind in families.items():
            self.assertIn(name, scrape.families, 'family %s missing:\n%s' % (name, scrape.text))
            fam = scrape.families[name]
            self.assertEqual(fam.type, kind, name)
            self.assertTrue(fam.documentation.strip(), '%s has no HELP' % name)
        self.assertEqual(set(scrape.families), set(families), 'unexpected families')
        for line in scrape.text.splitlines():
            if line.startswith('# TYPE ') and line.endswith(' counter'):
                self.assertTrue(line.split()[2].endswith('_total'), line)
        for fam in scrape.families.values():
            if fam.type == 'counter':
                for s in fam.samples:
                    self.assertTrue(s.name.endswith('_total'), s)
                    self.assertGreaterEqual(s.value, 0, s)
                    self.assertEqual(s.value, int(s.value), s)
            if fam.type == 'histogram':
                self.assertHistogram(fam)

    def assertHistogram(self, fam):
        """Buckets cumulative and ascending, ending in +Inf equal to _count, per series."""
        per = {}
        for s in fam.samples:
            key = tuple(sorted((k, v) for k, v in s.labels.items() if k != 'le'))
            per.setdefault(key, {'buckets': [], 'sum': None, 'count': None})
            if s.name == fam.name + '_bucket':
                per[key]['buckets'].append((float(s.labels['le']), s.value))
            elif s.name == fam.name + '_sum':
                per[key]['sum'] = s.value
            elif s.name == fam.name + '_count':
                per[key]['count'] = s.value
            else:
                self.fail('unexpected sample %r in %s' % (s, fam.name))
        for key, h in per.items():
            les = [le for le, _ in h['buckets']]
            self.assertEqual(les, sorted(les), (fam.name, key))
            self.assertEqual(les[-1], float('inf'), (fam.name, key))
            counts = [c for _, c in h['buckets']]
            self.assertEqual(counts, sorted(counts), 'not cumulative: %s %r' % (fam.name, key))
            self.assertEqual(counts[-1], h['count'], (fam.name, key))
            self.assertIsNotNone(h['sum'], (fam.name, key))
            self.assertGreaterEqual(h['sum'], 0, (fam.name, key))


def svc_scrape(testcase, svc):
    """GET /metrics on the service's metrics port: 200, the text format, parsed."""
    r = harness.http_request('127.0.0.1', svc.metrics_port(), 'GET', '/metrics', timeout=10)
    testcase.assertEqual(r.status, 200, r)
    testcase.assertEqual(r.headers.get('Content-Type'), CONTENT_TYPE, r)
    s = Scrape(r.raw.decode('utf-8'))
    testcase.assertWellFormed(s, SVC_FAMILIES)
    return s


def gw_scrape(testcase, gw):
    r = gw.request('GET', '/metrics')
    testcase.assertEqual(r.status, 200, r)
    testcase.assertEqual(r.headers.get('Content-Type'), CONTENT_TYPE, r)
    s = Scrape(r.raw.decode('utf-8'))
    testcase.assertWellFormed(s, GW_FAMILIES)
    for (name, lab), _ in s.samples.items():
        d = dict(lab)
        if 'route' in d:
            testcase.assertIn(d['route'], ROUTES, (name, d))
        if 'code' in d:
            testcase.assertIn(d['code'], CODES, (name, d))
    return s


class SvcMetricsTest(DeliveryCase, MetricsAssertions):
    """One event, eleven webhooks, every kind of attempt result; three attempts at most."""

    # 127.0.0.0/8 while registering (so that 127.0.0.2 is accepted), then only 127.0.0.1: the
    # deliveries to 127.0.0.2 are blocked where the connection is made (direct, not through
    # the harness's dead proxy, whose own address would be the one checked).
    direct = '127.0.0.1,127.0.0.2,localhost,::1'
    stack_options = {'svc_env': {'MAX_RETRIES': 2, 'RETRY_SCHEDULE': '50ms',
                                 'DELIVERY_TIMEOUT_MS': 1000,
                                 'TARGET_ALLOW_CIDRS': '127.0.0.0/8',
                                 'no_proxy': direct, 'NO_PROXY': direct}}

    def test_counters_move_by_exactly_the_deliveries_and_attempts_made(self):
        closed = harness.free_port()  # nothing listens there: connection refused
        plan = [  # (url, attempts by result, outcome)
            ('/ok/a0', {'2xx': 1}, 'succeeded'),
            ('/ok/a1', {'2xx': 1}, 'succeeded'),
            ('/ok/a2', {'2xx': 1}, 'succeeded'),
            ('/fail/1/b0', {'5xx': 1, '2xx': 1}, 'succeeded'),
            ('/fail/1/b1', {'5xx': 1, '2xx': 1}, 'succeeded'),
            ('/status/404/c0', {'4xx': 3}, 'failed'),
            ('/status/500/d0', {'5xx': 3}, 'failed'),
            ('/status/302/e0', {'other': 3}, 'failed'),
            ('/hang/f0', {'timeout': 3}, 'failed'),
            ('http://127.0.0.1:%d/g0' % closed, {'connect_error': 3}, 'failed'),
            ('http://127.0.0.2:%d/h0' % self.target.port, {'blocked': 3}, 'failed'),
        ]
        for url, _, _ in plan:
            self.register(url)
        svc = self.stack.svc
        svc.env['TARGET_ALLOW_CIDRS'] = '127.0.0.1/32'
        svc.restart()
        self.gw.wait_healthy()

        want_attempts = dict.fromkeys(RESULTS, 0)
        want_outcomes = {'succeeded': 0, 'failed': 0}
        for _, attempts, outcome in plan:
            for k, n in attempts.items():
                want_attempts[k] += n
            want_outcomes[outcome] += 1
        total_attempts = sum(want_attempts.values())

        before = svc_scrape(self, svc)
        ev, _ = self.trigger()

        # While the /hang/ delivery's retries wait and run (about 3 s), both gauges show it.
        seen = {'in_flight': 0, 'waiting': 0}

        def gauges_seen():
            s = svc_scrape(self, svc)
            seen['in_flight'] = max(seen['in_flight'], s.get('webhooks_in_flight'))
            seen['waiting'] = max(seen['waiting'], s.get('webhooks_retries_waiting'))
            return seen['in_flight'] >= 1 and seen['waiting'] >= 1
        poll_until(gauges_seen, 20, interval=0.05, what='in_flight and retries_waiting >= 1')

        summary = self.wait_event(ev['eventId'], 30)
        self.assertEqual((summary['succeeded'], summary['failed'], summary['pending']),
                         (want_outcomes['succeeded'], want_outcomes['failed'], 0), summary)

        # A delivery is counted once its end is durable, just after the store says so; the
        # retry messages are acknowledged just after too.
        def settled():
            s = svc_scrape(self, svc)
            ended = sum(delta(s, before, 'webhooks_deliveries_total').values())
            return s if ended >= len(plan) and s.get('webhooks_retries_waiting') == 0 else None
        poll_until(settled, 15, what='every delivery counted and no retry waiting')
        time.sleep(0.3)  # anything counted twice would show now
        after = svc_scrape(self, svc)

        self.assertEqual(delta(after, before, 'webhooks_deliveries_total'),
                         {labels(outcome=k): v for k, v in want_outcomes.items() if v})
        self.assertEqual(delta(after, before, 'webhooks_delivery_attempts_total'),
                         {labels(result=k): v for k, v in want_attempts.items() if v},
                         after.text)
        self.assertEqual(delta(after, before, 'webhooks_events_total'), {(): 1})
        name = 'webhooks_delivery_duration_seconds'
        self.assertEqual(after.get(name + '_count') - before.get(name + '_count'),
                         total_attempts)
        # The three timeouts took about DELIVERY_TIMEOUT_MS each; everything else far less.
        took = after.get(name + '_sum') - before.get(name + '_sum')
        self.assertGreaterEqual(took, 3 * 0.95, 'seconds, not milliseconds: %r' % took)
        self.assertLess(took, 3 * 1.0 + 10, took)
        quick = (after.get(name + '_bucket', le='0.5') - before.get(name + '_bucket', le='0.5'))
        self.assertEqual(quick, total_attempts - want_attempts['timeout'])
        self.assertEqual(after.get('webhooks_in_flight'), 0)
        self.assertEqual(after.get('webhooks_retries_waiting'), 0)
        self.assertEqual(delta(after, before, 'webhooks_records_failed_total'), {})
        batches = 'webhooks_store_batch_duration_seconds_count'
        self.assertGreater(after.get(batches), before.get(batches))

        # The same attempts as the target saw and the API recorded.
        answered = sum(want_attempts[k] for k in ('2xx', '4xx', '5xx', 'other', 'timeout'))
        self.assertEqual(self.target.stats()['total'], answered)
        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual(sum(len(d['attempts']) for d in dels), total_attempts)

    def test_the_endpoint_answers_only_get_metrics_on_loopback(self):
        svc = self.stack.svc
        m = svc.proc.wait_line(r'\bmetrics on (\S+) port (\d+)')
        self.assertEqual(m.group(1), '127.0.0.1')  # METRICS_BIND's default
        port = int(m.group(2))
        r = harness.http_request('127.0.0.1', port, 'GET', '/nope')
        self.assertEqual(r.status, 404, r)
        r = harness.http_request('127.0.0.1', port, 'POST', '/metrics', body='x')
        self.assertEqual(r.status, 405, r)
        self.assertEqual(r.headers.get('Allow'), 'GET, HEAD', r)
        r = harness.http_request('127.0.0.1', port, 'HEAD', '/metrics')
        self.assertEqual((r.status, r.headers.get('Content-Type'), r.raw), (200, CONTENT_TYPE, b''))


class SvcMetricsConfigTest(DeliveryCase, MetricsAssertions):
    stack_auto = False

    def test_an_explicit_port_and_minus_one(self):
        port = harness.free_port()
        st = self.own_stack(svc_env={'METRICS_PORT': port, 'METRICS_BIND': '::1'
                                     if harness.has_ipv6_loopback() else '127.0.0.1'}).start()
        self.assertEqual(st.svc.metrics_port(), port)
        host = '::1' if harness.has_ipv6_loopback() else '127.0.0.1'
        r = harness.http_request(host, port, 'GET', '/metrics')
        self.assertEqual(r.status, 200, r)
        Scrape(r.raw.decode('utf-8'))
        # -1: no server, said at start.
        st.svc.env['METRICS_PORT'] = '-1'
        st.svc.restart()
        st.svc.proc.wait_line(r'metrics: not served \(METRICS_PORT=-1\)')
        self.assertNotIn('metrics on', ''.join(st.svc.proc.run_lines()))

    def test_a_port_in_use_stops_the_start_with_one_line(self):
        with socket.socket() as hold:
            hold.bind(('127.0.0.1', 0))
            hold.listen(1)
            port = hold.getsockname()[1]
            st = self.own_stack(svc_env={'METRICS_PORT': port}, start_svc=False).start()
            st.svc.start(wait=False)
            rc = st.svc.proc.wait_exit(15)
            self.assertEqual(rc, 1)
            self.assertRegex(st.svc.proc.log_text(st.svc.proc.run_start),
                             r'cannot serve metrics on 127\.0\.0\.1 port %d' % port)

    def test_the_bench_switch_counts_nothing(self):
        st = self.own_stack(svc_env={'WEBHOOKS_BENCH_NO_METRICS': '1'}).start()
        self.register('/ok/x')
        ev, _ = self.trigger()
        self.wait_event(ev['eventId'], 15)
        self.target.wait(lambda s: s['total'] == 1, 10, 'the delivery')
        time.sleep(0.3)  # what would have been counted has been by now
        s = svc_scrape(self, st.svc)
        self.assertEqual(s.get('webhooks_deliveries_total', outcome='succeeded'), 0)
        self.assertEqual(s.get('webhooks_events_total'), 0)


class GatewayMetricsTest(IntegrationCase, MetricsAssertions):

    def test_token_required(self):
        r = self.gw.request('GET', '/metrics', auth=False)
        self.assertError(r, 401, 'unauthorized')
        r = self.gw.request('GET', '/metrics', auth='Bearer wrong-token-0123456789')
        self.assertError(r, 401, 'unauthorized')
        r = self.gw.request('HEAD', '/metrics')
        self.assertEqual((r.status, r.headers.get('Content-Type'), r.raw),
                         (200, CONTENT_TYPE, b''))
        r = self.gw.request('POST', '/metrics', {})
        self.assertError(r, 405, 'method_not_allowed')
        self.assertEqual(r.headers.get('Allow'), 'GET, HEAD', r)

    def test_requests_by_route_and_code_move_exactly(self):
        before = gw_scrape(self, self.gw)
        secret_path = '/no-such-route/%s' % uuid.uuid4().hex
        done = [('GET', '/webhooks', True, 200), ('GET', '/webhooks', True, 200),
                ('GET', '/webhooks/' + str(uuid.uuid4()), True, 404),
                ('POST', '/webhooks', True, 400),  # no body
                ('GET', secret_path, True, 404), ('DELETE', '/ip', False, 405),
                ('GET', '/metrics', False, 401), ('GET', '/ip', False, 202),
                ('GET', '/healthz', False, 200)]
        for method, path, auth, status in done:
            r = self.gw.request(method, path, auth=auth)
            self.assertEqual(r.status, status, (method, path, r))
        after = gw_scrape(self, self.gw)
        want = {labels(route='list', code='200'): 2, labels(route='get', code='404'): 1,
                labels(route='register', code='400'): 1, labels(route='unknown', code='404'): 1,
                labels(route='unknown', code='405'): 1, labels(route='metrics', code='401'): 1,
                labels(route='trigger', code='202'): 1, labels(route='health', code='200'): 1,
                # the first scrape, counted once its answer was queued
                labels(route='metrics', code='200'): 1}
        self.assertEqual(delta(after, before, 'webhooks_http_requests_total'), want,
                         after.text)
        per_route = {}
        for k, v in want.items():
            r = dict(k)['route']
            per_route[labels(route=r)] = per_route.get(labels(route=r), 0) + v
        self.assertEqual(delta(after, before, 'webhooks_http_request_duration_seconds_count'),
                         per_route)
        self.assertNotIn('no-such-route', after.text)  # never the raw path
        self.assertEqual(delta(after, before, 'webhooks_ip_rate_limited_total'), {})


class GatewayRateLimitMetricsTest(IntegrationCase, MetricsAssertions):
    # Two /ip at once per caller, then one a minute: the third and later are refused.
    stack_options = {'gw_env': {'IP_RATE_LIMIT': '1/m:2'}}

    def test_refused_ip_requests_are_counted(self):
        before = gw_scrape(self, self.gw)
        svc_before = svc_scrape(self, self.stack.svc)
        codes = [self.gw.request('GET', '/ip', auth=False).status for _ in range(5)]
        self.assertEqual(codes, [202, 202, 429, 429, 429])
        after = gw_scrape(self, self.gw)
        self.assertEqual(delta(after, before, 'webhooks_ip_rate_limited_total'), {(): 3})
        d = delta(after, before, 'webhooks_http_requests_total')
        self.assertEqual(d.get(labels(route='trigger', code='429')), 3, d)
        self.assertEqual(d.get(labels(route='trigger', code='202')), 2, d)
        # Only the accepted ones are events.
        svc_after = svc_scrape(self, self.stack.svc)
        self.assertEqual(delta(svc_after, svc_before, 'webhooks_events_total'), {(): 2})


if __name__ == '__main__':
    main()
