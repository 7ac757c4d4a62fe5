"""test_shutdown.py -- SIGTERM while deliveries are in flight: the service exits 0 within 5 s,
lets short transfers finish, and records the ones it cut short as pending, which is what the
summary and the delivery pages say after a restart."""

from delivery_helpers import DeliveryCase, main, poll_until


class SigtermInFlightTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 4}}

    def test_sigterm_records_cut_short_deliveries_as_pending(self):
        # The fan-out goes in id order, so give the webhooks their behaviour by rank:
        #   h0 h1  answer at once                 -> succeeded before SIGTERM
        #   h2 h3  answer after 8 s               -> cut short: pending
        #   h4 h5  answer after 1.5 s             -> finish during the drain: succeeded
        #   h6 h7  would start when h4/h5 finish  -> never started: pending, no POST
        hooks = sorted((self.register('/ok/placeholder%d' % i) for i in range(8)),
                       key=lambda h: h['id'])
        plan = ['/ok/h0', '/ok/h1', '/slow/8000/h2', '/slow/8000/h3', '/slow/1500/h4',
                '/slow/1500/h5', '/ok/h6', '/ok/h7']
        for h, p in zip(hooks, plan):
            self.update(h['id'], p)
        ev, _ = self.trigger()
        eid = ev['eventId']
        self.assertEqual(ev['targets'], 8)
        self.target.wait(lambda s: s['total'] == 6 and s['inFlight'] == 4, 10,
                         'h0, h1 answered and h2..h5 in flight')
        svc = self.stack.svc
        rc, took = svc.stop(timeout=5.0)  # SIGTERM; asserts exit 0 within 5 s
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0)
        # It waited for h4/h5 (1.5 s), not for h2/h3 (8 s).
        self.assertGreaterEqual(took, 1.0, 'did not let the in-flight transfers finish')
        self.assertEqual(self.target.stats()['total'], 6, 'a transfer started after SIGTERM')

        svc.start()
        self.gw.wait_healthy()
        s = self.event(eid)
        self.assertEqual((s['targets'], s['succeeded'], s['failed'], s['pending']),
                         (8, 4, 0, 4), s)
        dels, _ = self.deliveries(eid)
        by_hook = {d['webhookId']: d for d in dels}
        seen = self.target.by_path()
        for h, p in zip(hooks, plan):
            d = by_hook.get(h['id'])
            with self.subTest(path=p):
                if p.endswith(('h6', 'h7')):
                    self.assertIsNone(d, 'a delivery that never started has no record')
                    self.assertNotIn(p, seen)
                    continue
                self.assertIsNotNone(d, 'no delivery record for %s' % p)
                self.assertEqual(len(seen[p]), 1)
                self.assertEqual(d['id'], seen[p][0]['headers']['webhook-id'])
                self.assertEqual(len(d['attempts']), 1, d)
                if p.startswith('/slow/8000/'):
                    self.assertEqual(d['status'], 'pending', d)
                    self.assertIsNone(d['attempts'][0]['httpStatus'], d)
                    self.assertTrue(d['attempts'][0]['error'], d)
                else:
                    self.assertEqual(d['status'], 'succeeded', d)
                    self.assertEqual(d['attempts'][0]['httpStatus'], 200, d)

    def test_sigterm_with_a_waiting_retry(self):
        # A retry waiting (10 s) holds no transfer: the service exits at once, and the
        # delivery stays pending with its one failed attempt.
        self.stack.svc.env['RETRY_SCHEDULE'] = '10s'
        self.stack.svc.restart()
        self.gw.wait_healthy()
        hook = self.register('/status/500/w')
        ev, _ = self.trigger()
        poll_until(lambda: self.deliveries(ev['eventId'])[0], 10,
                   what='the first attempt recorded')
        rc, took = self.stack.svc.stop(timeout=5.0)
        self.assertEqual(rc, 0)
        self.assertLess(took, 2.5, 'waited for a retry that holds no transfer')
        self.stack.svc.start()
        self.gw.wait_healthy()
        s = self.event(ev['eventId'])
        self.assertEqual((s['targets'], s['succeeded'], s['failed'], s['pending']),
                         (1, 0, 0, 1), s)
        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual(len(dels), 1, dels)
        self.assertEqual(dels[0]['webhookId'], hook['id'])
        self.assertEqual(dels[0]['status'], 'pending', dels)
        self.assertEqual([a['httpStatus'] for a in dels[0]['attempts']], [500], dels)
        self.assertEqual(self.target.stats()['total'], 1)


if __name__ == '__main__':
    main()
