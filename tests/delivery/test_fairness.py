"""test_fairness.py -- a host that hangs cannot hold every transfer slot: with the per-host
limit (MAX_IN_FLIGHT_PER_HOST, by default half of MAX_IN_FLIGHT) the other hosts' deliveries
keep flowing while its transfers wait for their timeout."""

import time

from delivery_helpers import DeliveryCase, Target, main

HANGING = 10
GOOD = 40


class FairnessTest(DeliveryCase):
    # 4 slots, so at most 2 per host by default; a hanging attempt lasts 4 s.
    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 4, 'MAX_IN_FLIGHT_PER_HOST': None,
                                 'DELIVERY_TIMEOUT_MS': 4000, 'MAX_RETRIES': 0}}

    def test_a_hanging_host_does_not_starve_the_others(self):
        slow = Target(name='hanging-target').start()
        self.addCleanup(slow.stop)
        self.stack.procs.append(slow.proc)
        # The hanging host's webhooks come first in id order, so they are taken first.
        for i in range(HANGING):
            self.register(slow.url('/hang/h%d' % i))
        for i in range(GOOD):
            self.register('/ok/g%d' % i)
        t0 = time.monotonic()
        ev, _ = self.trigger()
        self.target.wait(lambda st: st['total'] >= GOOD, 3.0,
                         'the %d deliveries to the healthy host' % GOOD)
        # Without the limit the first 4 hanging transfers take every slot for 4 s, twice.
        self.assertLess(time.monotonic() - t0, 3.0)
        self.assertEqual(slow.stats()['peakInFlight'], 2, slow.stats())
        s = self.wait_event(ev['eventId'], 30)
        self.assertEqual((s['succeeded'], s['failed'], s['pending']), (GOOD, HANGING, 0), s)


class NoLimitTest(DeliveryCase):
    """With the limit off, one host may take every slot (what a single-receiver setup wants)."""
    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 4, 'MAX_IN_FLIGHT_PER_HOST': 0}}

    def test_zero_lets_one_host_use_every_slot(self):
        for i in range(8):
            self.register('/slow/500/n%d' % i)
        ev, _ = self.trigger()
        self.wait_event(ev['eventId'], 20)
        self.assertEqual(self.target.stats()['peakInFlight'], 4, self.target.stats())


if __name__ == '__main__':
    main()
