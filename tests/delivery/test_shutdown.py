"""test_shutdown.py -- SIGTERM while deliveries are in flight: the service exits 0 within 5 s,
lets short transfers finish, hands the rest back to JetStream unrecorded, and the next start
finishes the event: what was cut short is sent again under the same webhook-id, what never
started is sent once, and nothing that ended is sent twice."""

from delivery_helpers import BACKEND, DeliveryCase, main, poll_until

# On the MongoDB backend the exit takes up to 0.5 s more: store_mongo.c's mongo_destroy calls
# mongoc_client_pool_destroy, which waits for libmongoc's streaming server monitor, and that
# thread looks for the shutdown only every 500 ms (its poll tick; any server that sends a
# topologyVersion, as MongoDB 4.4+ does, is monitored that way). Measured: 0.38 s. With it the
# bound no longer tells 2.5 s of drain from 3 s of waiting for h2/h3; that h2/h3 are sent again
# after the restart (checked below) still does.
EXIT_EXTRA_S = 0.5 if BACKEND == 'congodb' else 0.0


class SigtermInFlightTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 4}}

    def test_sigterm_hands_back_and_the_restart_finishes(self):
        # The fan-out goes in id order, so give the webhooks their behaviour by rank:
        #   h0 h1  answer at once                 -> succeeded before SIGTERM
        #   h2 h3  answer after 3 s               -> cut short, sent again after the restart
        #   h4 h5  answer after 1.5 s             -> finish during the drain: succeeded
        #   h6 h7  would start when h4/h5 finish  -> never started before SIGTERM
        hooks = sorted((self.register('/ok/placeholder%d' % i) for i in range(8)),
                       key=lambda h: h['id'])
        plan = ['/ok/h0', '/ok/h1', '/slow/3000/h2', '/slow/3000/h3', '/slow/1500/h4',
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
        # It waited for h4/h5 (1.5 s), not for h2/h3 (3 s).
        self.assertGreaterEqual(took, 1.0, 'did not let the in-flight transfers finish')
        self.assertLess(took, 2.9 + EXIT_EXTRA_S, 'waited for transfers longer than the drain')
        self.assertEqual(self.target.stats()['total'], 6, 'a transfer started after SIGTERM')

        svc.start()
        s = self.wait_event(eid, 20)
        self.assertEqual((s['targets'], s['succeeded'], s['failed'], s['pending']),
                         (8, 8, 0, 0), s)
        dels, _ = self.deliveries(eid)
        by_hook = {d['webhookId']: d for d in dels}
        seen = self.target.by_path()
        for h, p in zip(hooks, plan):
            d = by_hook.get(h['id'])
            with self.subTest(path=p):
                self.assertIsNotNone(d, 'no delivery record for %s' % p)
                self.assertEqual(d['status'], 'succeeded', d)
                # Only the attempts that ended are recorded: one each.
                self.assertEqual([a['httpStatus'] for a in d['attempts']], [200], d)
                # The cut-short ones arrived twice, every POST under the delivery's id.
                self.assertEqual(len(seen[p]), 2 if p.startswith('/slow/3000/') else 1, p)
                self.assertEqual({r['headers']['webhook-id'] for r in seen[p]}, {d['id']})

    def test_sigterm_with_a_waiting_retry(self):
        # A retry waiting (10 s) holds no transfer and waits in JetStream: the service exits
        # at once, and the delivery stays pending with its one failed attempt until the
        # retry is due, whichever instance is running then.
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
