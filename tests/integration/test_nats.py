"""test_nats.py -- the webhooks.* subjects called directly by a NATS client of our own (raw
protocol over a socket), without the gateway: replies, the error reply shape with its status,
and the queue group."""


import harness
from harness import IntegrationCase, NatsError, UUID_RE

UNKNOWN_ID = '00000000-0000-4000-8000-000000000000'


class SubjectsTest(IntegrationCase):

    def setUp(self):
        super().setUp()
        self.nc = self.stack.nats_client()
        self.addCleanup(self.nc.close)

    def call(self, subject, payload):
        m = self.nc.request(subject, payload, timeout=5)
        self.assertFalse(m.no_responders, 'no responders on %s' % subject)
        self.assertIsNone(m.status, m)
        return m.json()

    def assertReplyError(self, reply, status, code):
        self.assertEqual(set(reply), {'error'}, reply)
        err = reply['error']
        self.assertEqual(set(err), {'code', 'message', 'status'}, reply)
        self.assertEqual(err['code'], code, reply)
        self.assertIs(type(err['status']), int, reply)
        self.assertEqual(err['status'], status, reply)
        self.assertIsInstance(err['message'], str)
        self.assertTrue(err['message'].strip())

    def register(self, url='http://127.0.0.1:9/nats'):
        reply = self.call('webhooks.register', {'targetUrl': url})
        self.assertEqual(set(reply), {'id', 'targetUrl', 'createdAt', 'secret'}, reply)
        self.assertRegex(reply['id'], UUID_RE)
        self.assertEqual(reply['targetUrl'], url)
        return reply

    def test_register_get_update_delete(self):
        created = self.register('http://127.0.0.1:9/a')
        got = self.call('webhooks.get', {'id': created['id']})
        self.assertWebhook(got)
        self.assertEqual(got['targetUrl'], 'http://127.0.0.1:9/a')
        self.assertEqual(got['createdAt'], created['createdAt'])

        up = self.call('webhooks.update', {'id': created['id'], 'newTargetUrl': 'https://127.0.0.1:9/b'})
        self.assertWebhook(up)
        self.assertEqual(up['targetUrl'], 'https://127.0.0.1:9/b')
        self.assertEqual(up['createdAt'], created['createdAt'])
        up2 = self.call('webhooks.update', {'id': created['id'], 'targetUrl': 'https://127.0.0.1:9/c'})
        self.assertEqual(up2['targetUrl'], 'https://127.0.0.1:9/c')
        self.assertEqual(self.call('webhooks.get', {'id': created['id']}), up2)

        deleted = self.call('webhooks.delete', {'id': created['id']})
        self.assertEqual(deleted, {'id': created['id'], 'deleted': True})
        self.assertReplyError(self.call('webhooks.get', {'id': created['id']}), 404, 'not_found')
        self.assertReplyError(self.call('webhooks.delete', {'id': created['id']}), 404, 'not_found')
        self.assertReplyError(self.call('webhooks.update', {'id': created['id'], 'newTargetUrl': 'http://a.b/'}),
                              404, 'not_found')

    def test_list_and_trigger(self):
        ids = sorted(self.register('http://127.0.0.1:9/l%d' % i)['id'] for i in range(5))
        everything = self.call('webhooks.list', {})
        self.assertEqual(set(everything), {'webhooks', 'next'})
        all_ids = [h['id'] for h in everything['webhooks']]
        self.assertEqual(all_ids, sorted(all_ids))
        for i in ids:
            self.assertIn(i, all_ids)
        page = self.call('webhooks.list', {'limit': 2})
        self.assertEqual(len(page['webhooks']), 2)
        self.assertEqual(page['next'], page['webhooks'][1]['id'])
        rest = self.call('webhooks.list', {'limit': 1000, 'after': page['next']})
        self.assertIsNone(rest['next'])
        self.assertEqual([h['id'] for h in page['webhooks'] + rest['webhooks']], all_ids)

        t = self.call('webhooks.trigger', {'ipAddress': '192.0.2.1'})
        self.assertEqual(set(t), {'eventId', 'targets'}, t)
        self.assertRegex(t['eventId'], UUID_RE)
        self.assertEqual(t['targets'], len(all_ids))

    def test_error_replies(self):
        cases = [
            ('webhooks.register', '{"targetUrl": 5}', 400, 'invalid_argument'),
            ('webhooks.register', 'not json', 400, 'invalid_json'),
            ('webhooks.register', '', 400, 'invalid_json'),
            ('webhooks.register', '[]', 400, 'invalid_argument'),
            ('webhooks.register', '{}', 400, 'invalid_argument'),
            ('webhooks.register', '{"targetUrl": null}', 400, 'invalid_argument'),
            ('webhooks.register', '{"targetUrl": "ftp://example.com/"}', 400, 'invalid_argument'),
            ('webhooks.register', '{"targetUrl": "http://"}', 400, 'invalid_argument'),
            ('webhooks.register', '{"targetUrl": "http://127.0.0.1:9/%s"}' % ('a' * 2100), 400,
             'invalid_argument'),
            ('webhooks.get', '{}', 400, 'invalid_argument'),
            ('webhooks.get', '{"id": 5}', 400, 'invalid_argument'),
            ('webhooks.get', '{"id": "abc"}', 404, 'not_found'),
            ('webhooks.get', '{"id": "%s"}' % UNKNOWN_ID, 404, 'not_found'),
            ('webhooks.get', '{"id": "%s"}' % UNKNOWN_ID.upper(), 404, 'not_found'),
            ('webhooks.get', '{', 400, 'invalid_json'),
            ('webhooks.list', '{"limit": 0}', 400, 'invalid_argument'),
            ('webhooks.list', '{"limit": 1001}', 400, 'invalid_argument'),
            ('webhooks.list', '{"limit": "5"}', 400, 'invalid_argument'),
            ('webhooks.list', '{"limit": 1.5}', 400, 'invalid_argument'),
            ('webhooks.list', '{"after": "x"}', 400, 'invalid_argument'),
            ('webhooks.list', '{"after": 5}', 400, 'invalid_argument'),
            ('webhooks.update', '{"id": "%s", "newTargetUrl": "http://a.com/"}' % UNKNOWN_ID, 404, 'not_found'),
            ('webhooks.update', '{"newTargetUrl": "http://a.com/"}', 400, 'invalid_argument'),
            ('webhooks.update', '{"id": "%s"}' % UNKNOWN_ID, 400, 'invalid_argument'),
            ('webhooks.update', '{"id": "%s", "newTargetUrl": 7}' % UNKNOWN_ID, 400, 'invalid_argument'),
            ('webhooks.delete', '{"id": "%s"}' % UNKNOWN_ID, 404, 'not_found'),
            ('webhooks.delete', '{}', 400, 'invalid_argument'),
            ('webhooks.trigger', '{}', 400, 'invalid_argument'),
            ('webhooks.trigger', '{"ipAddress": 5}', 400, 'invalid_argument'),
            ('webhooks.trigger', '{"ipAddress": ""}', 400, 'invalid_argument'),
        ]
        before = self.call('webhooks.list', {'limit': 1000})
        for subject, payload, status, code in cases:
            with self.subTest(subject=subject, payload=payload[:60]):
                self.assertReplyError(self.call(subject, payload), status, code)
        self.assertEqual(self.call('webhooks.list', {'limit': 1000}), before)

    def test_scalar_request_is_invalid_argument(self):
        # Valid JSON that is not an object: the same answer as for an array.
        for payload in ('"x"', '5', 'null', 'true'):
            with self.subTest(payload=payload):
                self.assertReplyError(self.call('webhooks.register', payload), 400, 'invalid_argument')

    def test_message_without_reply_subject_is_harmless(self):
        # A request without a reply subject is still handled (nothing to answer); the
        # service must survive it and go on answering.
        self.nc.publish('webhooks.get', '{"id": "%s"}' % UNKNOWN_ID)
        self.nc.publish('webhooks.register', 'not json')
        self.nc.flush()
        self.assertReplyError(self.call('webhooks.get', {'id': UNKNOWN_ID}), 404, 'not_found')
        self.assertTrue(self.stack.svc.proc.running())

    def test_unknown_subject_has_no_responders(self):
        m = self.nc.request('webhooks.nope', '{}', timeout=5)
        self.assertTrue(m.no_responders, m)


class QueueGroupTest(IntegrationCase):
    """Two service instances in the queue group: each request is answered exactly once."""

    def test_each_request_answered_once(self):
        self.stack.add_service(name='webhooks-svc-2')
        with self.stack.nats_client() as nc:
            n = 40
            for i in range(n):
                nc.publish('webhooks.get', '{"id": "%s"}' % UNKNOWN_ID, reply='%s.q%d' % (nc.inbox, i))
            replies = [nc.next_msg(nc.inbox_sid, timeout=5) for _ in range(n)]
            self.assertEqual(sorted(m.subject for m in replies),
                             sorted('%s.q%d' % (nc.inbox, i) for i in range(n)))
            # No second reply to any of them comes within a generous round trip.
            nc.flush()
            with self.assertRaises(NatsError):
                extra = nc.next_msg(nc.inbox_sid, timeout=0.3)
                self.fail('unexpected extra reply %r' % (extra,))


if __name__ == '__main__':
    harness.main()
