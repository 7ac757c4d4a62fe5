"""test_upgrade.py -- a store written by the version before signatures (no secrets): its
webhooks are given secrets of their own, its events still read, and every delivery to them is
signed and verified by the reference verifier. On SQLite the store is a file that version made
(tests/fixtures/store-before-secrets.db: 3 webhooks, an event whose deliveries all failed); on
MongoDB the same documents are written as that version wrote them."""

import json
import os
import shutil

from delivery_helpers import BACKEND, DeliveryCase, main
from test_signatures import case, verify

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURE = os.path.join(HERE, '..', 'fixtures', 'store-before-secrets.db')
OLD_HOOKS = ['01a23e7b-df95-7000-8300-47a108327ac9', '01a23e7b-df97-7000-bea9-610d0d17e6d3',
             '01a23e7b-df98-7000-a7c7-cfdb7ac06918']
OLD_EVENT = '01a23e7b-df99-7000-9c87-0585082fc24f'


class UpgradeTest(DeliveryCase):
    stack_auto = False

    def start_on_old_store(self):
        st = self.own_stack(start_svc=False)
        st.start()
        svc = st.svc
        if BACKEND == 'congodb':
            self.write_old_documents(svc)
        else:
            shutil.copyfile(FIXTURE, svc.db_path)
        svc.start()
        st.procs.append(self.target.proc)
        return svc

    def write_old_documents(self, svc):
        """The documents the version before secrets wrote for the fixture's webhooks."""
        import pymongo  # Debian's python3-pymongo, for the CongoDB runs only
        url = self.congodb.url_for_sqlite(svc.db_path)
        client = pymongo.MongoClient(url, serverSelectionTimeoutMS=5000)
        try:
            db = client.get_default_database()
            db.webhooks.insert_many([{'_id': h, 'targetUrl': 'http://127.0.0.1:9/old/%d' % i,
                                      'createdAt': 1764808629000 + i,
                                      'updatedAt': 1764808629000 + i}
                                     for i, h in enumerate(OLD_HOOKS)])
        finally:
            client.close()

    def nats(self, subject, body):
        with self.stack.nats_client(timeout=10) as nc:
            return nc.request(subject, json.dumps(body), timeout=10).json()

    def test_old_webhooks_get_secrets_and_signed_deliveries(self):
        svc = self.start_on_old_store()
        if BACKEND != 'congodb':
            # Given at open, once; the old event still reads as it ended.
            svc.proc.wait_line(r'gave 3 webhooks of an older store their signing secrets', 10)
            old = self.event(OLD_EVENT)
            self.assertEqual((old['targets'], old['failed'], old['pending']), (3, 3, 0), old)
        # Point them at the target (an update keeps the secret).
        for i, h in enumerate(OLD_HOOKS):
            self.update(h, '/ok/old%d' % i)
        ev, _ = self.trigger()
        s = self.wait_event(ev['eventId'], 20)
        self.assertEqual((s['targets'], s['succeeded'], s['pending']), (3, 3, 0), s)
        secrets = {h: self.nats('webhooks.secret', {'id': h})['secret'] for h in OLD_HOOKS}
        self.assertEqual(len(set(secrets.values())), 3, secrets)
        for sec in secrets.values():
            self.assertRegex(sec, r'^whsec_[A-Za-z0-9+/]{32}$')
        by_path = self.target.by_path()
        cases = [case(secrets[h], by_path['/ok/old%d' % i][0]) for i, h in enumerate(OLD_HOOKS)]
        results = verify(cases)
        self.assertEqual(results, [{'ok': True}] * 3, results)
        # A restart keeps the same secrets (given once, stored).
        svc.restart()
        again = {h: self.nats('webhooks.secret', {'id': h})['secret'] for h in OLD_HOOKS}
        self.assertEqual(again, secrets)


if __name__ == '__main__':
    main()
