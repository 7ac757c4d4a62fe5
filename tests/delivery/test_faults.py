"""test_faults.py -- the delivery records and the shutdown path under faults (issue 8).

  * the store locked for seconds in the middle of an event (another process holds SQLite's
    write lock longer than the service's busy timeout): the failed batch of attempt records
    is logged and tried again, nothing is sent twice, and the event still ends complete;
  * JetStream out of storage (a full disk, for NATS): GET /ip answers 503 and nothing is
    half-accepted; once JetStream has room again, triggers are taken and delivered;
  * the store's disk full in the middle of an event (the service's file size limit set to 0
    with prlimit: every write to its SQLite files fails, as on a full disk): the service keeps
    running, the records are logged and tried again, a new webhook or trigger is refused with
    an error and leaves nothing behind; once there is room, the event ends complete with each
    target requested once, and new work is taken again;
  * SIGTERM while hundreds of triggers are queued on the service's subscription: it exits 0
    within 5 s without a sanitizer report (no callback may run after what it uses is freed),
    and every trigger that was answered 202 is delivered in full after a restart.
"""

import json
import os
import resource
import sqlite3
import tempfile
import threading
import time
import uuid

from delivery_helpers import DeliveryCase, SANITIZED, main, skip_on_backend

N_LOCKED = 200
LOCK_S = 7.0  # longer than the store's 5 s busy timeout


@skip_on_backend('congodb', "it holds SQLite's write lock on the service's database file; "
                 'MongoDB (and CongoDB) have no lock that another client can hold')
class LockedStoreTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 5}}

    def test_records_wait_for_the_store_and_nothing_is_lost(self):
        hooks = self.register_many_nats([self.target.url('/slow/40/l%03d' % i)
                                         for i in range(N_LOCKED)])
        ev, _ = self.trigger()
        self.target.wait(lambda s: s['total'] >= 10, 10, 'the fan-out under way')
        self.stack.mark()
        db = sqlite3.connect(self.stack.svc.db_path, timeout=10, isolation_level=None)
        try:
            db.execute('BEGIN EXCLUSIVE')
            time.sleep(LOCK_S)
        finally:
            db.execute('ROLLBACK')
            db.close()
        s = self.wait_event(ev['eventId'], 60)
        self.assertEqual((s['targets'], s['succeeded'], s['failed'], s['pending']),
                         (N_LOCKED, N_LOCKED, 0, 0), s)
        logs = self.stack.logs(since_mark=True)
        self.assertRegex(logs, r'store write of \d+ op\(s\) failed .*trying again',
                         'the failed record batch was not logged and retried')
        # Nothing crashed, so nothing was sent twice.
        seen = self.target.by_path()
        self.assertEqual(len(seen), N_LOCKED)
        self.assertTrue(all(len(reqs) == 1 for reqs in seen.values()))
        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual({d['webhookId'] for d in dels}, {h['id'] for h in hooks})
        self.assertTrue(all(d['status'] == 'succeeded' and len(d['attempts']) == 1
                            for d in dels))


class QueuedTriggersAtSigtermTest(DeliveryCase):
    N_TRIGGERS = 600

    def test_sigterm_with_queued_triggers(self):
        hooks = [self.register('/ok/q%d' % i) for i in range(3)]
        answers = {}
        with self.stack.nats_client(timeout=10) as nc:
            replies = []
            for _ in range(self.N_TRIGGERS):
                reply = '%s.%s' % (nc.inbox, uuid.uuid4().hex)
                nc.publish('webhooks.trigger', json.dumps({'ipAddress': '192.0.2.7'}), reply)
                replies.append(reply)
            svc = self.stack.svc
            # SIGTERM once the first answer is in: the rest are still queued then.
            while not answers:
                m = nc.next_msg(nc.inbox_sid, timeout=30)
                if not m.no_responders:
                    answers[m.subject] = m.json()
            stopper = threading.Thread(target=lambda: answers.setdefault(
                'stop', svc.stop(timeout=5.0)))
            stopper.start()
            deadline = time.monotonic() + 8
            while time.monotonic() < deadline and len(answers) - 1 < len(replies):
                try:
                    m = nc.next_msg(nc.inbox_sid, timeout=0.5)
                except Exception:  # noqa: BLE001 - no more replies: the service is gone
                    if not stopper.is_alive():
                        break
                    continue
                if not m.no_responders:
                    answers[m.subject] = m.json()
            stopper.join(10)
        rc, took = answers.pop('stop')
        self.assertEqual(rc, 0)
        self.assertLess(took, 5.0)
        accepted = [a['eventId'] for a in answers.values() if 'eventId' in a]
        refused = [a for a in answers.values() if 'error' in a]
        self.assertTrue(all(a['error']['status'] == 503 for a in refused), refused[:3])
        self.assertGreater(len(accepted), 0, 'no trigger was answered before SIGTERM')
        # Every promise is kept by the next start.
        self.stack.svc.start()
        self.gw.wait_healthy()
        timeout = 120 if SANITIZED else 60
        for eid in accepted:
            s = self.wait_event(eid, timeout)
            self.assertEqual((s['targets'], s['succeeded'], s['failed'], s['pending']),
                             (3, 3, 0, 0), s)
        seen = self.target.by_path()
        for h in hooks:
            path = h['targetUrl'].split(str(self.target.port), 1)[1]
            ids = {r['headers']['webhook-id'] for r in seen[path]}
            # At least once per accepted event, and one delivery id per event.
            self.assertGreaterEqual(len(ids), len(accepted))


# A nats-server configuration whose JetStream has no room for anything.
NO_ROOM_CONF = os.path.join(tempfile.mkdtemp(prefix='webhooks-nats-conf-'), 'no-room.conf')
with open(NO_ROOM_CONF, 'w') as f:
    f.write('jetstream {\n  max_file_store: 1\n  max_memory_store: 1\n}\n')


@skip_on_backend('congodb', "it fills the disk under the service's SQLite files; a MongoDB "
                 "server's disk is the server's")
class StoreFullTest(DeliveryCase):
    stack_options = {'svc_env': {'MAX_IN_FLIGHT': 4}}
    N = 200

    def set_file_limit(self, limit):
        # The soft limit only: raising a hard limit again takes CAP_SYS_RESOURCE.
        resource.prlimit(self.stack.svc.proc.pid, resource.RLIMIT_FSIZE,
                         (limit, resource.RLIM_INFINITY))

    def test_records_wait_for_room_and_nothing_is_lost(self):
        hooks = self.register_many_nats([self.target.url('/slow/50/f%03d' % i)
                                         for i in range(self.N)])
        ev, _ = self.trigger()
        self.target.wait(lambda s: s['total'] >= 20, 10, 'the fan-out under way')
        self.stack.mark()
        self.set_file_limit(0)  # from now on no write to a file of the service succeeds
        self.addCleanup(lambda: self.stack.svc.proc.running() and self.set_file_limit(
            resource.RLIM_INFINITY))
        self.stack.svc.proc.wait_line(r'store write of \d+ op\(s\) failed .*trying again', 10)

        # Refused with an error, and nothing half-made: no webhook, no event.
        r = self.gw.request('POST', '/webhooks', {'targetUrl': self.target.url('/late')})
        self.assertIn(r.status, (500, 503), r)
        r = self.gw.request('GET', '/ip')
        self.assertIn(r.status, (500, 503), r)
        self.assertTrue(self.stack.svc.proc.running(), 'the service died of the full disk')
        self.assertGreater(self.target.stats()['total'], 0)

        # Room again after a few seconds: the records held back go in.
        time.sleep(3)
        self.set_file_limit(resource.RLIM_INFINITY)
        s = self.wait_event(ev['eventId'], 60)
        self.assertEqual((s['targets'], s['succeeded'], s['failed'], s['pending']),
                         (self.N, self.N, 0, 0), s)
        seen = self.target.by_path()
        self.assertEqual(len(seen), self.N)
        twice = [p for p, reqs in seen.items() if len(reqs) != 1]
        self.assertFalse(twice, 'targets requested more than once: %s' % twice[:5])
        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual({d['webhookId'] for d in dels}, {h['id'] for h in hooks})
        self.assertTrue(all(d['status'] == 'succeeded' and len(d['attempts']) == 1
                            for d in dels))
        db = sqlite3.connect('file:%s?mode=ro' % self.stack.svc.db_path, uri=True, timeout=10)
        try:
            self.assertEqual(db.execute('SELECT count(*) FROM webhooks').fetchone()[0], self.N)
            self.assertEqual(db.execute('SELECT id FROM events').fetchall(), [(ev['eventId'],)])
            self.assertEqual(db.execute('PRAGMA integrity_check').fetchone()[0], 'ok')
        finally:
            db.close()

        # And new work is taken again.
        ev2, _ = self.trigger()
        s = self.wait_event(ev2['eventId'], 60)
        self.assertEqual((s['succeeded'], s['pending']), (self.N, 0), s)


class JetStreamFullTest(DeliveryCase):
    stack_options = {'nats_args': ('-c', NO_ROOM_CONF)}

    def test_ip_is_503_while_jetstream_is_full_then_delivers(self):
        hook = self.register('/ok/full')
        r = self.gw.request('GET', '/ip', auth=False)
        self.assertEqual(r.status, 503, r)
        self.assertEqual(r.json['error']['code'], 'unavailable', r)
        self.assertEqual(self.target.stats()['total'], 0)
        # Room again (same port, same store directory): the service sets up its stream and
        # takes triggers; the refused one never turns up.
        self.stack.nats.extra_args = []
        self.stack.nats.restart()
        self.gw.wait_healthy(30)
        ev = None
        deadline = time.monotonic() + 30
        while ev is None and time.monotonic() < deadline:
            r = self.gw.request('GET', '/ip', auth=False)
            if r.status == 202:
                ev = r.json
            else:
                self.assertEqual(r.status, 503, r)
                time.sleep(0.2)
        self.assertIsNotNone(ev, 'no trigger accepted after JetStream had room again')
        s = self.wait_event(ev['eventId'], 30)
        self.assertEqual((s['targets'], s['succeeded'], s['pending']), (1, 1, 0), s)
        reqs = self.target.by_path()['/ok/full']
        self.assertEqual(len(reqs), 1, 'the refused trigger was delivered after all')
        dels, _ = self.deliveries(ev['eventId'])
        self.assertEqual([d['webhookId'] for d in dels], [hook['id']])


if __name__ == '__main__':
    main()
