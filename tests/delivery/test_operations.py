"""test_operations.py -- day-two operations (issue 11): endpoint health (a 410 disables a webhook
at once, DISABLE_AFTER of nothing but failures disables it, PUT enables it again), replay of
an event's failed deliveries (POST /events/{id}/retry), and retention (RETENTION prunes old
events and their delivery records, and nothing newer). Every count is what the real
webhook-target received or what the API shows."""

import os
import sqlite3
import time

from delivery_helpers import DeliveryCase, BACKEND, harness, main

UUID_ZERO = '00000000-0000-4000-8000-000000000000'


class EndpointHealthTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_RETRIES': 3, 'RETRY_SCHEDULE': '50ms',
                                 'DISABLE_AFTER': '1500ms'}}

    def get(self, hook_id):
        r = self.gw.request('GET', '/webhooks/' + hook_id)
        self.assertEqual(r.status, 200, r)
        self.assertEqual(set(r.json), {'id', 'targetUrl', 'createdAt', 'updatedAt', 'disabled',
                                       'disabledReason'}, r)
        return r.json

    def run_event(self):
        ev, _ = self.trigger()
        return self.wait_event(ev['eventId'], 20), ev['eventId']

    def test_a_410_disables_at_once_and_put_enables_again(self):
        gone = self.register('/status/410/gone')['id']
        ok = self.register('/ok/fine')['id']
        self.assertEqual(self.get(gone)['disabled'], False)
        self.assertIsNone(self.get(gone)['disabledReason'])

        s, eid = self.run_event()
        self.assertEqual((s['targets'], s['succeeded'], s['failed']), (2, 1, 1), s)
        # One attempt and no retry: 410 means stop.
        self.assertEqual(len(self.target.by_path()['/status/410/gone']), 1)
        dels = {d['webhookId']: d for d in self.deliveries(eid)[0]}
        self.assertEqual([a['httpStatus'] for a in dels[gone]['attempts']], [410])
        h = self.get(gone)
        self.assertTrue(h['disabled'], h)
        self.assertIn('410', h['disabledReason'])
        self.assertFalse(self.get(ok)['disabled'])
        # In the list too.
        listed = {w['id']: w for w in self.gw.request('GET', '/webhooks').json['webhooks']}
        self.assertTrue(listed[gone]['disabled'])

        # Disabled: the next event has no delivery for it at all.
        s, eid = self.run_event()
        self.assertEqual((s['targets'], s['succeeded'], s['failed']), (1, 1, 0), s)
        self.assertEqual(len(self.target.by_path()['/status/410/gone']), 1)
        self.assertEqual([d['webhookId'] for d in self.deliveries(eid)[0]], [ok])

        # {"enabled": true} enables it again, with its URL kept.
        r = self.gw.request('PUT', '/webhooks/' + gone, {'enabled': True})
        self.assertEqual(r.status, 200, r)
        self.assertEqual((r.json['disabled'], r.json['disabledReason']), (False, None), r)
        self.assertEqual(r.json['targetUrl'], self.target.url('/status/410/gone'))
        self.run_event()
        self.assertEqual(len(self.target.by_path()['/status/410/gone']), 2)
        self.assertTrue(self.get(gone)['disabled'])

        # A new URL enables it too.
        h = self.update(gone, '/ok/fixed')
        self.assertFalse(h['disabled'], h)
        s, _ = self.run_event()
        self.assertEqual((s['targets'], s['succeeded'], s['failed']), (2, 2, 0), s)
        self.assertEqual(len(self.target.by_path()['/ok/fixed']), 1)

    def test_enabled_false_disables_and_bad_values_are_400(self):
        hid = self.register('/ok/manual')['id']
        r = self.gw.request('PUT', '/webhooks/' + hid, {'enabled': False})
        self.assertEqual(r.status, 200, r)
        self.assertTrue(r.json['disabled'])
        s, _ = self.run_event()
        self.assertEqual(s['targets'], 0, s)
        self.assertNotIn('/ok/manual', self.target.by_path())
        for body in ({'enabled': 'yes'}, {'enabled': 1}, {}):
            r = self.gw.request('PUT', '/webhooks/' + hid, body)
            self.assertEqual(r.status, 400, (body, r))
        self.assertTrue(self.get(hid)['disabled'], 'a refused update changed the webhook')

    def test_nothing_but_failures_for_disable_after_disables(self):
        bad = self.register('/status/500/always')['id']
        flaky = self.register('/fail/4/flaky')['id']  # fails its first delivery, then recovers
        ok = self.register('/ok/steady')['id']
        t0 = time.monotonic()
        s, _ = self.run_event()
        self.assertEqual((s['succeeded'], s['failed']), (1, 2), s)
        # One failed delivery is not enough, however long ago the webhook was registered.
        for hid in (bad, flaky, ok):
            self.assertFalse(self.get(hid)['disabled'])
        time.sleep(max(0.0, 1.6 - (time.monotonic() - t0)))
        s, _ = self.run_event()
        self.assertEqual((s['succeeded'], s['failed']), (2, 1), s)
        h = self.get(bad)
        self.assertTrue(h['disabled'], h)
        self.assertIn('DISABLE_AFTER', h['disabledReason'])
        # flaky succeeded this time: its run of failures is over.
        self.assertFalse(self.get(flaky)['disabled'])
        self.assertFalse(self.get(ok)['disabled'])
        n = len(self.target.by_path()['/status/500/always'])
        s, _ = self.run_event()
        self.assertEqual(s['targets'], 2, s)
        self.assertEqual(len(self.target.by_path()['/status/500/always']), n)


class ReplayTest(DeliveryCase):
    # 300 ms between attempts: a series that fails again takes longer than asking twice.
    stack_options = {'svc_env': {'MAX_RETRIES': 1, 'RETRY_SCHEDULE': '300ms'}}

    def retry(self, event_id):
        return self.gw.request('POST', '/events/%s/retry' % event_id)

    def test_replay_sends_exactly_the_failed_ones_again(self):
        # Two attempts each (MAX_RETRIES=1): /fail/2 fails both and succeeds on the replay;
        # /fail/4 fails both series; /ok is never sent again.
        paths = ['/fail/2/a', '/fail/2/b', '/fail/4/c', '/ok/d', '/ok/e']
        hooks = {self.register(p)['id']: p for p in paths}
        ev, _ = self.trigger()
        eid = ev['eventId']
        s = self.wait_event(eid, 20)
        self.assertEqual((s['succeeded'], s['failed'], s['pending']), (2, 3, 0), s)
        before = {d['webhookId']: d for d in self.deliveries(eid)[0]}

        r = self.retry(eid)
        self.assertEqual(r.status, 202, r)
        self.assertEqual(r.json, {'eventId': eid, 'retried': 3})
        # Asked again at once (an impatient admin): whatever is still failed is queued under the
        # same message ids, so nothing is sent twice (the counts below are exact).
        r = self.retry(eid)
        self.assertEqual(r.status, 202, r)
        self.assertLessEqual(r.json['retried'], 3)
        # A replayed delivery shows as failed until its first new attempt ends: wait for the
        # target to have seen the whole new series of the one that fails again.
        self.target.wait(lambda st: st['byPath'].get('/fail/4/c', 0) >= 4, 20,
                         'the replay of /fail/4/c')
        s = self.wait_event(eid, 20, pred=lambda s: s['pending'] == 0 and s['succeeded'] == 4)
        self.assertEqual((s['targets'], s['succeeded'], s['failed']), (5, 4, 1), s)

        seen = self.target.by_path()
        self.assertEqual({p: len(seen[p]) for p in paths},
                         {'/fail/2/a': 3, '/fail/2/b': 3, '/fail/4/c': 4, '/ok/d': 1,
                          '/ok/e': 1})
        after = {d['webhookId']: d for d in self.deliveries(eid)[0]}
        for hid, p in hooks.items():
            d = after[hid]
            # The same delivery, under the same webhook-id, with its attempts numbered on.
            self.assertEqual(d['id'], before[hid]['id'])
            self.assertEqual({rq['headers']['webhook-id'] for rq in seen[p]}, {d['id']})
            self.assertEqual([a['attempt'] for a in d['attempts']],
                             list(range(1, len(seen[p]) + 1)), d)
        self.assertEqual(after[next(h for h, p in hooks.items() if p == '/fail/4/c')]['status'],
                         'failed')

        # Replayed again: only what is still failed.
        r = self.retry(eid)
        self.assertEqual((r.status, r.json.get('retried')), (202, 1), r)
        self.target.wait(lambda st: st['byPath'].get('/fail/4/c', 0) >= 5, 20,
                         'the second replay of /fail/4/c')
        s = self.wait_event(eid, 20, pred=lambda s: s['pending'] == 0 and s['succeeded'] == 5)
        self.assertEqual((s['succeeded'], s['failed']), (5, 0), s)
        r = self.retry(eid)
        self.assertEqual((r.status, r.json.get('retried')), (202, 0), r)
        self.assertEqual(self.target.stats()['total'], 3 + 3 + 5 + 1 + 1)

    def test_replay_errors(self):
        r = self.retry(UUID_ZERO)
        self.assertEqual(r.status, 404, r)
        self.assertEqual(r.json['error']['code'], 'not_found')
        r = self.gw.request('POST', '/events/%s/retry' % UUID_ZERO, auth=False)
        self.assertEqual(r.status, 401, r)
        r = self.gw.request('GET', '/events/%s/retry' % UUID_ZERO)
        self.assertEqual(r.status, 405, r)
        # On NATS too: a malformed request is refused and touches nothing.
        with self.stack.nats_client(timeout=10) as nc:
            rep = nc.request_json('webhooks.retry', '{"id": 5}', timeout=10)
            self.assertEqual(rep['error']['status'], 400, rep)


class RetentionTest(DeliveryCase):
    RETENTION_S = 6
    stack_options = {'svc_env': {'RETENTION': '%ds' % RETENTION_S, 'MAX_RETRIES': 0}}

    def test_old_events_and_their_records_are_pruned_and_nothing_newer(self):
        for p in ('/ok/r1', '/ok/r2', '/status/500/r3'):
            self.register(p)
        old, _ = self.trigger()
        self.wait_event(old['eventId'], 20)
        self.assertEqual(len(self.deliveries(old['eventId'])[0]), 3)
        # At least 3 s younger than old: it is checked whole after old is pruned, which a
        # loaded machine may take a while to see.
        time.sleep(3)
        mid, _ = self.trigger()
        self.wait_event(mid['eventId'], 20)

        def gone():
            r = self.gw.request('GET', '/events/' + old['eventId'])
            return r.status == 404
        harness.poll_until(gone, 20, what='the old event pruned')
        # The younger one is still whole: pruned only what was old.
        s = self.event(mid['eventId'])
        self.assertEqual(s['succeeded'] + s['failed'], 3, s)
        self.assertEqual(len(self.deliveries(mid['eventId'])[0]), 3)
        r = self.gw.request('GET', '/events/%s/deliveries' % old['eventId'])
        self.assertEqual(r.status, 404, r)
        if BACKEND == 'sqlite':
            db = sqlite3.connect('file:%s?mode=ro' % self.stack.svc.db_path, uri=True)
            try:
                n = db.execute('SELECT count(*) FROM deliveries WHERE event_id = ?',
                               (old['eventId'],)).fetchone()[0]
            finally:
                db.close()
            self.assertEqual(n, 0)
        self.assertTrue(self.stack.svc.proc.wait_line(r'retention: pruned 1 events and 3 ', 5))
        # The webhooks are not touched.
        self.assertEqual(len(self.gw.request('GET', '/webhooks').json['webhooks']), 3)
        harness.poll_until(lambda: self.gw.request('GET', '/events/' + mid['eventId']).status
                           == 404, 20, what='the second event pruned in its turn')


class ProgressTest(DeliveryCase):
    stack_options = {'svc_env': {'PROGRESS_INTERVAL': '300ms', 'MAX_IN_FLIGHT': 10}}

    def test_a_big_event_logs_its_progress(self):
        small = self.register('/ok/small')['id']
        self.assertTrue(small)
        ev, _ = self.trigger()
        self.wait_event(ev['eventId'], 20)
        # 1,000 more, each held 20 ms with 10 in flight: about 2 s of fan-out.
        self.register_many_nats([self.target.url('/slow/20/p%04d' % i) for i in range(1000)])
        big, _ = self.trigger()
        self.assertEqual(big['targets'], 1001)
        svc = self.stack.svc.proc
        m = svc.wait_line(r'event %s: (\d+) of 1001 delivered \(([\d.]+)%%\), 0 failed; '
                          r'here (\d+)/s' % big['eventId'], 20)
        self.assertLess(int(m.group(1)), 1001)
        self.assertGreater(int(m.group(3)), 0)
        self.wait_event(big['eventId'], 30)
        text = svc.log_text(svc.run_start)
        self.assertNotIn('event %s:' % ev['eventId'], text, 'a small event was reported')


if __name__ == '__main__':
    main()
