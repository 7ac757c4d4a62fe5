"""test_backpressure.py -- /ip when the fleet already holds more deliveries than it may
(MAX_PENDING_DELIVERIES): refused with 429 and Retry-After instead of queueing more, and
accepted again once the backlog has gone down."""

import time

from delivery_helpers import DeliveryCase, main

BOUND = 50


class BackPressureTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_PENDING_DELIVERIES': BOUND, 'MAX_IN_FLIGHT': 5}}

    def ip(self):
        return self.gw.request('GET', '/ip', auth=False)

    def test_over_the_bound_is_429_then_accepted_again(self):
        for i in range(30):
            self.register('/slow/300/b%d' % i)
        # Under the bound when asked, whatever the event's size: 0, then 30 pending.
        first, _ = self.trigger()
        second, _ = self.trigger()
        self.assertEqual((first['targets'], second['targets']), (30, 30))
        # 60 now wait (5 at a time, 300 ms each): over the bound of 50.
        r = self.ip()
        self.assertEqual(r.status, 429, r)
        self.assertEqual(set(r.json), {'error'}, r)
        self.assertEqual(set(r.json['error']), {'code', 'message'}, r)
        self.assertEqual(r.json['error']['code'], 'rate_limited', r)
        self.assertIn('deliveries waiting', r.json['error']['message'])
        after = int(r.headers.get('Retry-After', '0'))
        self.assertTrue(1 <= after <= 60, r)
        # The two accepted events complete; the refused trigger added nothing.
        for ev in (first, second):
            s = self.wait_event(ev['eventId'], 30)
            self.assertEqual((s['succeeded'], s['pending']), (30, 0), s)
        self.assertEqual(self.target.stats()['total'], 60)
        # The backlog is gone: within the next read of it (a second), /ip is accepted again.
        deadline = time.monotonic() + 5
        while True:
            r = self.ip()
            if r.status == 202 or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(r.status, 202, r)


if __name__ == '__main__':
    main()
