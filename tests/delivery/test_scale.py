"""test_scale.py -- 10,000 targets: every one gets exactly one POST, and the event's summary and
delivery pages account for all of them."""

import os
import time

from delivery_helpers import DeliveryCase, main

N = int(os.environ.get('DELIVERY_SCALE_TARGETS', '10000'))


class TenThousandTargetsTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 50, 'MAX_RETRIES': 2,
                                 'RETRY_SCHEDULE': '100ms'}}

    def test_every_target_delivered_exactly_once(self):
        t0 = time.monotonic()
        paths = ['/ok/n%05d' % i for i in range(N)]
        hooks = self.register_many_nats([self.target.url(p) for p in paths])
        self.assertEqual(len({h['id'] for h in hooks}), N)
        t_reg = time.monotonic() - t0

        ev, elapsed = self.trigger()
        self.assertEqual(ev['targets'], N)
        summary = self.wait_event(ev['eventId'], 150)
        t_deliver = time.monotonic() - t0 - t_reg
        self.assertEqual((summary['targets'], summary['succeeded'], summary['failed'],
                          summary['pending']), (N, N, 0, 0), summary)

        st = self.target.stats()
        self.assertEqual(st['total'], N, {k: v for k, v in st.items() if k != 'byPath'})
        self.assertEqual(len(st['byPath']), N)
        self.assertEqual(set(st['byPath'].values()), {1})
        self.assertEqual(set(st['byPath']), set(paths))
        self.assertLessEqual(st['peakInFlight'], 50, st['peakInFlight'])

        # Every delivery record names the webhook-id its target saw.
        seen, ports = {}, set()
        for rq in self.target.requests():
            self.assertNotIn(rq['path'], seen)
            seen[rq['path']] = rq['headers']['webhook-id']
            ports.add(rq['peerPort'])
        # Connections are kept alive and reused: a few per slot, not one per delivery.
        self.assertLessEqual(len(ports), 2 * 50 + 16, 'connections are not reused')
        dels, pages = self.deliveries(ev['eventId'], limit=1000)
        self.assertEqual(len(pages), N // 1000 + (1 if N % 1000 else 0))
        self.assertEqual(len(dels), N)
        url_to_path = {self.target.url(p): p for p in paths}
        for d in dels:
            self.assertEqual(d['status'], 'succeeded', d)
            self.assertEqual(len(d['attempts']), 1, d)
            self.assertEqual(d['id'], seen[url_to_path[d['targetUrl']]], d)
        self.assertEqual(len({d['id'] for d in dels}), N)
        print('\n%d targets: registered in %.1fs, delivered in %.1fs' % (N, t_reg, t_deliver))


if __name__ == '__main__':
    main()
