"""test_concurrency.py -- MAX_IN_FLIGHT as the target sees it (one event, two at once), and
when the fan-out and its retries read the store (deleted, updated and newly registered
webhooks)."""

import threading
import time

from delivery_helpers import DeliveryCase, SLACK, main


class InFlightCapTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 5}}

    def test_forty_slow_targets_at_most_five_at_once(self):
        for i in range(40):
            self.register('/slow/300/c%d' % i)
        t0 = time.monotonic()
        ev, _ = self.trigger()
        summary = self.wait_event(ev['eventId'], 30)
        elapsed = time.monotonic() - t0
        self.assertEqual((summary['targets'], summary['succeeded'], summary['failed']),
                         (40, 40, 0), summary)
        st = self.target.stats()
        self.assertEqual(st['total'], 40, st)
        self.assertEqual(set(st['byPath'].values()), {1}, st['byPath'])
        self.assertLessEqual(st['peakInFlight'], 5, st)
        self.assertGreaterEqual(st['peakInFlight'], 4, st)
        # 40 x 300 ms through 5 slots: 2.4 s at least, and far less than one at a time.
        self.assertGreaterEqual(elapsed, 2.4 - 0.05)
        self.assertLess(elapsed, 6.0 + 10 * SLACK)

    def test_two_triggers_at_once_share_the_cap(self):
        paths = ['/slow/200/d%d' % i for i in range(40)]
        for p in paths:
            self.register(p)
        barrier = threading.Barrier(2)
        results, errors = [], []

        def fire():
            try:
                barrier.wait(5)
                r = self.gw.request('GET', '/ip', auth=False)
                results.append(r)
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=fire) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(15)
        self.assertFalse(errors, errors)
        self.assertEqual([r.status for r in results], [202, 202], results)
        eids = {r.json['eventId'] for r in results}
        self.assertEqual(len(eids), 2)
        for eid in eids:
            s = self.wait_event(eid, 30)
            self.assertEqual((s['targets'], s['succeeded'], s['failed']), (40, 40, 0), s)
        st = self.target.stats()
        self.assertLessEqual(st['peakInFlight'], 5, st)
        self.assertGreaterEqual(st['peakInFlight'], 4, st)
        self.assertEqual(st['total'], 80, st)
        self.assertEqual(st['byPath'], {p: 2 for p in paths})
        # Two distinct deliveries per target, one per event.
        for p, reqs in self.target.by_path().items():
            self.assertEqual(len({r['headers']['webhook-id'] for r in reqs}), 2, reqs)


class LiveStoreTest(DeliveryCase):
    """With one slot, the fan-out feeds its work item to the dispatcher one delivery at a time
    and reads each webhook again just before: a change made after the trigger to a webhook not
    yet reached is seen (deleted: the delivery ends failed and unsent; updated: the new URL), a
    webhook registered after the trigger never gets the event, and a retry reads its webhook
    again when it is due."""

    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 1, 'MAX_RETRIES': 1,
                                 'RETRY_SCHEDULE': '1s'}}

    def test_deleted_gets_nothing_updated_gets_new_url_new_gets_nothing(self):
        hooks = sorted((self.register('/slow/300/w%d' % i) for i in range(5)),
                       key=lambda h: h['id'])
        paths = {h['id']: h['targetUrl'].split(str(self.target.port), 1)[1] for h in hooks}
        ev, _ = self.trigger()
        # Once the first delivery has reached the target, the work item has been taken (its
        # five webhooks read and counted): it takes 300 ms, and the last two have not been
        # read again yet. (Changed before the item is taken, they would simply not be targets.)
        self.target.wait(lambda st: st['total'] >= 1, 15, 'the first delivery under way')
        deleted, updated = hooks[4], hooks[3]
        self.delete(deleted['id'])
        self.update(updated['id'], '/ok/updated')
        late = self.register('/ok/late')
        self.assertLessEqual(self.target.stats()['total'], 1, 'too slow to test this')
        summary = self.wait_event(ev['eventId'], 15)
        seen = self.target.by_path()
        self.assertNotIn(paths[deleted['id']], seen, 'the deleted webhook got a POST')
        self.assertNotIn(paths[updated['id']], seen, 'the old URL of the updated one got a POST')
        self.assertEqual(len(seen.get('/ok/updated', [])), 1, list(seen))
        self.assertNotIn('/ok/late', seen, 'a webhook registered after the trigger got it')
        for h in hooks[:3]:
            self.assertEqual(len(seen[paths[h['id']]]), 1)
        # Arrivals follow id order, one at a time.
        order = [p for p, _ in sorted(((p, r[0]['arrivalUs']) for p, r in seen.items()),
                                      key=lambda x: x[1])]
        self.assertEqual(order, [paths[h['id']] for h in hooks[:3]] + ['/ok/updated'])
        # The deleted one was a target when the event was triggered: it ends failed, unsent.
        self.assertEqual((summary['targets'], summary['succeeded'], summary['failed'],
                          summary['pending']), (5, 4, 1, 0), summary)
        dels, _ = self.deliveries(ev['eventId'])
        by_hook = {d['webhookId']: d for d in dels}
        self.assertEqual(set(by_hook), {h['id'] for h in hooks})
        self.assertEqual(by_hook[updated['id']]['targetUrl'], self.target.url('/ok/updated'))
        self.assertEqual(seen['/ok/updated'][0]['headers']['webhook-id'],
                         by_hook[updated['id']]['id'])
        gone = by_hook[deleted['id']]
        self.assertEqual(gone['status'], 'failed', gone)
        self.assertEqual([(a['httpStatus'], a['error']) for a in gone['attempts']],
                         [(None, 'not sent: the webhook was deleted')], gone)
        self.assertNotIn(late['id'], by_hook)

    def test_retry_reads_its_webhook_again(self):
        moved = self.register('/status/500/moved')
        gone = self.register('/status/500/gone')
        ev, _ = self.trigger()
        self.target.wait(lambda s: s['total'] == 2, 10, 'both first attempts made')
        self.update(moved['id'], '/ok/moved-here')
        self.delete(gone['id'])
        summary = self.wait_event(ev['eventId'], 15)
        self.assertEqual((summary['targets'], summary['succeeded'], summary['failed'],
                          summary['pending']), (2, 1, 1, 0), summary)
        seen = self.target.by_path()
        self.assertEqual(len(seen['/ok/moved-here']), 1)
        self.assertEqual(len(seen['/status/500/gone']), 1, 'the deleted webhook was retried')
        dels, _ = self.deliveries(ev['eventId'])
        by_hook = {d['webhookId']: d for d in dels}
        self.assertEqual(seen['/ok/moved-here'][0]['headers']['webhook-id'],
                         by_hook[moved['id']]['id'])
        gone_attempts = by_hook[gone['id']]['attempts']
        self.assertEqual(by_hook[gone['id']]['status'], 'failed')
        self.assertEqual(len(gone_attempts), 2, gone_attempts)
        self.assertIn('deleted', gone_attempts[1]['error'])


if __name__ == '__main__':
    main()
