"""test_mongo_wire.py -- the MongoDB store on the wire, against a scripted MockupDB server.

Runs the mongo_probe driver (path in env MONGO_PROBE) against MockupDB on a free 127.0.0.1
port. For each store call it asserts the exact command the backend sent (every field, BSON
integer and boolean types included), sends a scripted reply, and asserts what the probe
printed: the call's result code, per-op results, rows and how long the call took.

Run: MONGO_PROBE=build/bin/mongo_probe /usr/bin/python3 tests/store/test_mongo_wire.py
"""

import json
import os
import queue
import socket
import subprocess
import threading
import time
import unittest
import uuid

from bson.int64 import Int64
from mockupdb import MockupDB

PROBE = os.environ.get('MONGO_PROBE', '')
ENOENT, EEXIST, EAGAIN, EIO, EALREADY = -2, -17, -11, -5, -114
WC = {'w': 'majority', 'j': True}
A = 'aaaaaaaa-0000-4000-8000-000000000001'
B = 'bbbbbbbb-0000-4000-8000-000000000002'
C = 'cccccccc-0000-4000-8000-000000000003'
E = 'eeeeeeee-0000-4000-8000-00000000000e'
F = 'ffffffff-0000-4000-8000-00000000000f'
D1 = 'dddddddd-0000-4000-8000-0000000000d1'
D2 = 'dddddddd-0000-4000-8000-0000000000d2'
D3 = 'dddddddd-0000-4000-8000-0000000000d3'
AT_MS, AT = 1700000000000, '2023-11-14T22:13:20.000Z'

# A standalone server (no setName, no logicalSessionTimeoutMinutes): the driver sends no session
# ids and does not retry writes, so each store call is exactly the commands asserted below.
HELLO = {'ismaster': True, 'minWireVersion': 0, 'maxWireVersion': 13}


def typed(value):
    """A comparable form of a BSON value that keeps int32, int64 and bool apart."""
    if isinstance(value, dict):
        return {k: typed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [typed(v) for v in value]
    if isinstance(value, bool):
        return ('bool', value)
    if isinstance(value, Int64):
        return ('int64', int(value))
    if isinstance(value, int):
        return ('int32', value)
    return value


def webhook(hook_id, url, created, updated):
    return {'_id': hook_id, 'targetUrl': url, 'createdAt': Int64(created),
            'updatedAt': Int64(updated)}


def packed(*ids):
    """Webhook ids as a work item's members are kept: 16 bytes each, in order."""
    return b''.join(uuid.UUID(i).bytes for i in ids)


def event(event_id, ip, created, targets, fanned=0, items=0, done=False, legacy=False):
    """An event document; legacy: as an older version stored it, with outcome counters and
    without fanned, items, done."""
    doc = {'_id': event_id, 'ip': ip, 'createdAt': Int64(created), 'targets': Int64(targets)}
    if legacy:
        doc.update(succeeded=Int64(7), failed=Int64(8))
    else:
        doc.update(fanned=Int64(fanned), items=Int64(items), done=done, open=True)
    return doc


def outcomes(*counts):
    """The reply to the outcome count: (status, n) pairs, n as the server sends it."""
    return {'cursor': {'id': Int64(0), 'ns': 'hooksdb.deliveries',
                       'firstBatch': [{'_id': status, 'n': n} for status, n in counts]}}


def hook_doc(hook_id, created):
    """A webhook document as findAndModify returns it (new: true)."""
    return {'_id': hook_id, 'targetUrl': 'https://x/', 'createdAt': Int64(created),
            'updatedAt': Int64(created)}


def attempt(number, http_status, error, duration):
    """An attempt as recorded: the document form of store_attempt_json's object."""
    return {'attempt': number, 'at': AT, 'httpStatus': http_status, 'error': error,
            'durationMs': duration}


def attempt_q(key, doc, status=0):
    """An attempt's selector: its delivery while open for it (status, and the attempts before
    it), or with this very attempt recorded last (a batch sent again); never an orphan (what a
    later attempt inserted when its delivery was gone), in either branch."""
    number = doc['attempt']
    return {'_id': key, '$or': [{'status': status, 'attempts': {'$size': number - 1},
                                 'orphan': {'$exists': False}},
                                {'attempts': {'$size': number},
                                 'attempts.%d' % (number - 1): doc,
                                 'orphan': {'$exists': False}}]}


def attempt_statement(key, hook, status, doc, url='https://t/'):
    """An attempt's upsert. A later attempt (number > 1) marks what it inserts orphan: true, as
    it inserts only when its delivery is gone; a first one inserts its delivery rightly."""
    event_id, _, delivery = key.partition(':')
    on_insert = {'eventId': event_id, 'deliveryId': delivery, 'webhookId': hook}
    if doc['attempt'] > 1:
        on_insert['orphan'] = True
    return {'q': attempt_q(key, doc), 'upsert': True, 'multi': False,
            'u': {'$set': {'status': status, 'targetUrl': url}, '$setOnInsert': on_insert,
                  '$addToSet': {'attempts': doc}}}


def cursor(docs, coll='webhooks'):
    return {'cursor': {'id': Int64(0), 'ns': 'hooksdb.' + coll, 'firstBatch': docs}}


class Probe:
    """The probe process: one command line in, one result line out."""

    def __init__(self, uri):
        self.proc = subprocess.Popen([PROBE, uri], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, bufsize=1)
        self.lines = queue.Queue()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip('\n'))
        self.lines.put(None)

    def send(self, text):
        self.proc.stdin.write(text + '\n')
        self.proc.stdin.flush()

    def result(self, timeout=25):
        """The next result line as a dict: 'cmd', its key=value fields and 'err' if any."""
        try:
            line = self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError('the probe printed nothing within %ss' % timeout)
        if line is None:
            raise AssertionError('the probe exited (%s)' % self.proc.wait())
        head, _, err = line.partition(' err=')
        words = head.split(' ')
        out = {'cmd': words[0], 'line': line}
        for word in words[1:]:
            key, _, val = word.partition('=')
            out[key] = val
        if err:
            out['err'] = err
        return out

    def has_result(self):
        return not self.lines.empty()

    def close(self):
        """Ask the probe to quit; returns its exit status, killing it if it hangs."""
        if self.proc.poll() is None:
            try:
                self.send('quit')
            except (BrokenPipeError, OSError):
                pass
        try:
            status = self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            status = 'killed after hanging at exit'
        self.proc.stdin.close()
        self.reader.join(5)
        self.proc.stdout.close()
        return status


def stop_server(server):
    """server.stop(), without its wait: MockupDB's accept loop looks at its stop flag once a
    second (a select with a 1 s timeout), and stop() joins it; one connection wakes it now."""
    server._stopped = True
    try:
        socket.create_connection(('127.0.0.1', server.port), timeout=1).close()
    except OSError:
        pass  # not listening any more: the loop has ended or will at its next look
    server.stop()


class MongoWireTest(unittest.TestCase):

    maxDiff = None

    def setUp(self):
        self.assertTrue(os.access(PROBE, os.X_OK), 'set MONGO_PROBE to the mongo_probe binary')
        self.server = MockupDB(auto_ismaster=HELLO, request_timeout=20)
        self.port = self.server.run()
        self.probes = []

    def tearDown(self):
        # Stopping the server first ends a call still waiting for a reply (a failed test).
        stop_server(self.server)
        # Every probe must shut down cleanly (exit 0: no hang, no sanitizer report).
        statuses = [p.close() for p in self.probes]
        self.assertEqual(statuses, [0] * len(statuses))

    def start(self, uri=None, expect_open=True):
        probe = Probe(uri or 'mongodb://127.0.0.1:%d/hooksdb' % self.port)
        self.probes.append(probe)
        opened = probe.result(timeout=10)
        self.assertEqual(opened['cmd'], 'open')
        if expect_open:
            self.assertEqual(opened['rc'], '0', opened)
            self.assertEqual(opened['backend'], 'mongodb')
            # Opening does no network I/O, so it is immediate even with the server down.
            self.assertLess(int(opened['ms']), 1000)
        return probe, opened

    def receive(self, expected, db='hooksdb'):
        """Receive the next command and assert it equals expected exactly (plus $db)."""
        request = self.server.receives()
        want = dict(expected)
        want['$db'] = db
        self.assertEqual(typed(dict(request.doc)), typed(want))
        return request

    def apply(self, probe, *ops):
        probe.send('apply %d' % len(ops))
        for op in ops:
            probe.send(op)

    def expect_insert(self, docs, db='hooksdb'):
        return self.receive({'insert': 'webhooks', 'ordered': True, 'writeConcern': WC,
                             'documents': docs}, db)

    def expect_find_and_modify(self, hook_id, url, updated):
        """An update: the new URL, and the webhook enabled again with its failures forgotten;
        the whole webhook comes back (new: true)."""
        return self.receive({'findAndModify': 'webhooks', 'query': {'_id': hook_id},
                             'update': {'$set': {'targetUrl': url,
                                                 'updatedAt': Int64(updated),
                                                 'disabledReason': '',
                                                 'failingSince': Int64(0)}},
                             'new': True, 'writeConcern': WC})

    def expect_delete(self, hook_id):
        return self.receive({'delete': 'webhooks', 'ordered': True, 'writeConcern': WC,
                             'deletes': [{'q': {'_id': hook_id}, 'limit': 1}]})

    def expect_update(self, coll, selector, update, upsert=False):
        statement = {'q': selector, 'u': update}
        if upsert:
            statement['upsert'] = True
        return self.receive({'update': coll, 'ordered': True, 'writeConcern': WC,
                             'updates': [statement]})

    def expect_count(self, db='hooksdb'):
        return self.receive({'aggregate': 'webhooks', 'cursor': {},
                             'pipeline': [{'$match': {}},
                                          {'$group': {'_id': 1, 'n': {'$sum': 1}}}]}, db)

    # The meta document {_id: 'webhooks', n, lastId}.

    def expect_meta_check(self, db='hooksdb'):
        """The once-per-store lookup of the meta document, before its first use."""
        return self.receive({'find': 'meta', 'filter': {'_id': 'webhooks'},
                             'projection': {'_id': 1}, 'limit': Int64(1),
                             'singleBatch': True}, db)

    def meta_exists(self, db='hooksdb'):
        """The meta lookup, answered: the document is there (a store made by this version)."""
        self.expect_meta_check(db).replies(cursor([{'_id': 'webhooks'}], 'meta'))

    def expect_meta_read(self):
        return self.receive({'find': 'meta', 'filter': {'_id': 'webhooks'}, 'limit': Int64(1),
                             'singleBatch': True})

    def expect_raise_last_id(self, hook_id):
        return self.expect_update('meta', {'_id': 'webhooks'}, {'$max': {'lastId': hook_id}},
                                  upsert=True)

    def expect_count_change(self, delta):
        return self.expect_update('meta', {'_id': 'webhooks'}, {'$inc': {'n': Int64(delta)}})

    def expect_greatest_id(self):
        return self.receive({'find': 'webhooks', 'filter': {}, 'sort': {'_id': -1},
                             'projection': {'_id': 1}, 'limit': Int64(1), 'singleBatch': True})

    def expect_item(self, event_id, item, deliveries, last):
        items = {'$in': [Int64(0), None]} if item == 0 else Int64(item)
        return self.expect_update('events', {'_id': event_id, 'items': items},
                                  {'$inc': {'fanned': Int64(deliveries)},
                                   '$set': {'items': Int64(item + 1), 'done': last}})

    def expect_members(self, event_id, item, end, last, ids):
        """A work item's members, kept ($setOnInsert: the first kept wins) before its count."""
        return self.expect_update('eventItems', {'_id': '%s:%d' % (event_id, item)},
                                  {'$setOnInsert': {'eventId': event_id, 'end': end,
                                                    'last': last, 'members': packed(*ids)}},
                                  upsert=True)

    def expect_members_find(self, event_id, item):
        return self.receive({'find': 'eventItems', 'filter': {'_id': '%s:%d' % (event_id, item)},
                             'limit': Int64(1), 'singleBatch': True})

    def expect_event_exists(self, event_id):
        return self.receive({'find': 'events', 'filter': {'_id': event_id},
                             'projection': {'_id': 1}, 'limit': Int64(1), 'singleBatch': True})

    def expect_states(self, keys):
        # An orphan (what a later attempt inserted for a delivery gone) is not a delivery.
        return self.receive({'find': 'deliveries',
                             'filter': {'_id': {'$in': keys}, 'orphan': {'$exists': False}},
                             'projection': {'status': 1, 'attempts': {
                                 '$size': {'$ifNull': ['$attempts', []]}}},
                             'batchSize': len(keys)})

    def expect_index(self):
        """The once-per-store creation of the index that counts an event's outcomes; when
        answered ok, the open-events and events-by-age indexes follow."""
        first = self.receive({'createIndexes': 'deliveries', 'writeConcern': WC, 'indexes': [
            {'key': {'eventId': 1, 'status': 1}, 'name': 'eventId_1_status_1'}]})
        test = self

        class Both:
            def ok(self, **kw):
                first.ok(**kw)
                test.receive({'createIndexes': 'events', 'writeConcern': WC,
                              'indexes': [{'key': {'open': 1}, 'name': 'open_1',
                                           'sparse': True}]}).ok(**kw)
                return test.receive({'createIndexes': 'events', 'writeConcern': WC,
                                     'indexes': [{'key': {'createdAt': 1},
                                                  'name': 'createdAt_1'}]}).ok(**kw)

            def command_err(self, **kw):
                return first.command_err(**kw)
        return Both()

    def expect_health(self, *statements):
        """The webhooks' health after deliveries ended: statements are (webhook id, 'ok') or
        (webhook id, 'failed', at_ms)."""
        updates = []
        for st in statements:
            if st[1] == 'ok':
                updates.append({'q': {'_id': st[0], 'failingSince': {'$gt': Int64(0)}},
                                'u': {'$set': {'failingSince': Int64(0)}}, 'multi': False,
                                'upsert': False})
            else:
                updates.append({'q': {'_id': st[0],
                                      'failingSince': {'$not': {'$gt': Int64(0)}}},
                                'u': {'$set': {'failingSince': Int64(st[2])}},
                                'multi': False, 'upsert': False})
        return self.receive({'update': 'webhooks', 'ordered': True, 'writeConcern': WC,
                             'updates': updates})

    def expect_attempts(self, *statements):
        """One unordered bulk of attempts: statements are (key, webhook id, status, attempt)."""
        return self.receive({'update': 'deliveries', 'ordered': False, 'writeConcern': WC,
                             'updates': [attempt_statement(*st) for st in statements]})

    def expect_orphan_delete(self, *keys):
        """The delete of what refused later attempts may have inserted: only documents marked
        orphan, one deleteMany for the run."""
        return self.receive({'delete': 'deliveries', 'ordered': True, 'writeConcern': WC,
                             'deletes': [{'q': {'_id': {'$in': list(keys)}, 'orphan': True},
                                          'limit': 0}]})

    def expect_outcome_count(self, event_id):
        return self.receive({'aggregate': 'deliveries', 'cursor': {}, 'pipeline': [
            {'$match': {'eventId': event_id}},
            {'$group': {'_id': '$status', 'n': {'$sum': 1}}}]})

    def expect_event_find(self, event_id):
        return self.receive({'find': 'events', 'filter': {'_id': event_id}, 'limit': Int64(1),
                             'singleBatch': True})

    def assert_no_more_commands(self):
        with self.assertRaisesRegex(AssertionError, 'got nothing'):
            self.server.receives(timeout=0.25)

    def assert_nothing_sent(self, seconds=0.5):
        time.sleep(seconds)
        self.assertEqual(self.server.requests_count, 0)

    # Opening.

    def test_open_connects_nothing(self):
        self.start()
        self.assert_nothing_sent()

    def test_open_rejects_a_bad_uri(self):
        probe, opened = self.start('mongodb://', expect_open=False)
        self.assertEqual(opened['rc'], '-1')
        self.assertIn('MongoDB URI', opened['err'])
        self.probes.remove(probe)
        self.assertEqual(probe.close(), 1)

    # Writes.

    def test_insert_sends_the_document_with_majority_journaled_write_concern(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1700000000123 1700000000456 https://example.com/a?x=1' % A)
        self.meta_exists()
        # lastId first, so that it is never behind an inserted id; the counter after.
        self.expect_raise_last_id(A).ok(n=1)
        self.expect_insert([webhook(A, 'https://example.com/a?x=1', 1700000000123,
                                    1700000000456)]).ok(n=1)
        self.expect_count_change(1).ok(n=1)
        got = probe.result()
        self.assertEqual((got['cmd'], got['rc'], got['results']), ('apply', '0', '0'))
        # The meta document is looked up once per store, not per call.
        self.apply(probe, 'insert %s 1 1 https://b/' % B)
        self.expect_raise_last_id(B).ok(n=1)
        self.expect_insert([webhook(B, 'https://b/', 1, 1)]).ok(n=1)
        self.expect_count_change(1).ok(n=1)
        self.assertEqual(probe.result()['results'], '0')
        self.assert_no_more_commands()

    def test_consecutive_inserts_share_one_command(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 3 4 https://b/' % B, 'insert %s 1 2 https://a/' % A)
        self.meta_exists()
        self.expect_raise_last_id(B).ok(n=1)  # the greatest id of the batch, once
        self.expect_insert([webhook(B, 'https://b/', 3, 4),
                            webhook(A, 'https://a/', 1, 2)]).ok(n=2)
        self.expect_count_change(2).ok(n=1)  # one $inc for the batch
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,0'))
        self.assert_no_more_commands()

    def test_duplicate_key_is_eexist_and_the_rest_is_sent_again(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A, 'insert %s 2 2 https://dup/' % A,
                   'insert %s 3 3 https://c/' % C)
        self.meta_exists()
        self.expect_raise_last_id(C).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1), webhook(A, 'https://dup/', 2, 2),
                            webhook(C, 'https://c/', 3, 3)]).ok(
            n=1, writeErrors=[{'index': 1, 'code': 11000,
                               'errmsg': 'E11000 duplicate key error collection'}])
        # Ordered inserts stop at the error: the op after it goes in a command of its own.
        self.expect_insert([webhook(C, 'https://c/', 3, 3)]).ok(n=1)
        self.expect_count_change(2).ok(n=1)  # the duplicate is not counted
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,%d,0' % EEXIST))

    def test_update_uses_find_and_modify_without_upsert_and_returns_created(self):
        probe, _ = self.start()
        self.apply(probe, 'update %s 1700000009999 https://example.com/new' % A)
        request = self.expect_find_and_modify(A, 'https://example.com/new', 1700000009999)
        self.assertNotIn('upsert', request.doc)
        request.ok(lastErrorObject={'n': 1, 'updatedExisting': True},
                   value=hook_doc(A, 1700000000123))
        got = probe.result()
        self.assertEqual((got['rc'], got['results'], got['created']),
                         ('0', '0', '1700000000123'))

    def test_update_of_unknown_id_is_enoent(self):
        probe, _ = self.start()
        self.apply(probe, 'update %s 5 https://x/' % B)
        self.expect_find_and_modify(B, 'https://x/', 5).ok(
            lastErrorObject={'n': 0, 'updatedExisting': False}, value=None)
        got = probe.result()
        self.assertEqual((got['rc'], got['results'], got['created']), ('0', str(ENOENT), '-1'))

    def test_delete(self):
        probe, _ = self.start()
        self.apply(probe, 'delete %s' % A, 'delete %s' % B)
        self.meta_exists()
        self.expect_delete(A).ok(n=1)
        self.expect_delete(B).ok(n=0)
        self.expect_count_change(-1).ok(n=1)  # only what was deleted
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,%d' % ENOENT))
        self.apply(probe, 'delete %s' % B)
        self.expect_delete(B).ok(n=0)
        self.assertEqual(probe.result()['results'], str(ENOENT))
        self.assert_no_more_commands()  # nothing deleted: no $inc

    def test_batch_runs_in_order_with_each_result(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A, 'update %s 2 https://b2/' % B,
                   'delete %s' % C, 'insert %s 3 3 https://c/' % C)
        self.meta_exists()
        self.expect_raise_last_id(C).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1)]).ok(
            n=0, writeErrors=[{'index': 0, 'code': 11000, 'errmsg': 'E11000'}])
        self.expect_find_and_modify(B, 'https://b2/', 2).ok(
            lastErrorObject={'n': 1}, value=hook_doc(B, 77))
        self.expect_delete(C).ok(n=1)
        self.expect_insert([webhook(C, 'https://c/', 3, 3)]).ok(n=1)
        got = probe.result()
        self.assertEqual((got['rc'], got['results'], got['created']),
                         ('0', '%d,0,0,0' % EEXIST, '1,77,-1,3'))
        self.assert_no_more_commands()  # one delete and one insert: the counter is unchanged

    def test_server_error_is_eio(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.meta_exists()
        self.expect_raise_last_id(A).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1)]).command_err(
            code=2, errmsg='BadValue from the mock')
        got = probe.result()
        self.assertEqual(got['rc'], str(EIO))
        self.assertIn('BadValue from the mock', got['err'])
        self.assert_no_more_commands()  # nothing inserted: no $inc

    def test_not_writable_primary_is_eagain(self):
        probe, _ = self.start()
        self.apply(probe, 'delete %s' % A)
        self.meta_exists()
        self.expect_delete(A).command_err(code=10107, errmsg='not primary')
        self.assertEqual(probe.result()['rc'], str(EAGAIN))

    def test_write_concern_error_is_eagain(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.meta_exists()
        self.expect_raise_last_id(A).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1)]).ok(
            n=1, writeConcernError={'code': 64, 'errmsg': 'waiting for replication timed out'})
        # The primary has the webhook, acknowledged or not: it is counted all the same.
        self.expect_count_change(1).ok(n=1)
        got = probe.result()
        self.assertEqual(got['rc'], str(EAGAIN))
        self.apply(probe, 'update %s 2 https://b/' % A)
        self.expect_find_and_modify(A, 'https://b/', 2).ok(
            lastErrorObject={'n': 1}, value=hook_doc(A, 1),
            writeConcernError={'code': 64, 'errmsg': 'waiting for replication timed out'})
        self.assertEqual(probe.result()['rc'], str(EAGAIN))

    def test_failure_midway_fails_the_whole_batch(self):
        probe, _ = self.start()
        self.apply(probe, 'delete %s' % A, 'delete %s' % B, 'delete %s' % C)
        self.meta_exists()
        self.expect_delete(A).ok(n=1)
        self.expect_delete(B).hangup()
        # The delete of A happened: the counter still hears of it, on a new connection.
        self.expect_count_change(-1).ok(n=1)
        got = probe.result()
        self.assertEqual(got['rc'], str(EAGAIN))
        self.assert_no_more_commands()  # the delete of C was never sent

    # Network failures and timeouts.

    def test_closed_connection_is_eagain_and_the_next_call_reconnects(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.meta_exists()
        self.expect_raise_last_id(A).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1)]).hangup()
        got = probe.result()
        self.assertEqual(got['rc'], str(EAGAIN))
        self.assertLess(int(got['ms']), 3000)
        self.assert_no_more_commands()  # not known to be inserted: not counted
        probe.send('meta')
        self.expect_meta_read().replies(
            cursor([{'_id': 'webhooks', 'n': Int64(3), 'lastId': A}], 'meta'))
        got = probe.result()
        self.assertEqual((got['rc'], got['webhooks'], got['last_id']), ('0', '3', A))

    def test_closed_connection_on_a_read_is_eagain(self):
        probe, _ = self.start()
        probe.send('get %s' % A)
        # Reads are retried once on a network error (retryable reads); hang up on each try.
        attempts = 0
        deadline = time.monotonic() + 20
        while not probe.has_result() and time.monotonic() < deadline:
            try:
                request = self.server.receives(timeout=0.5)
            except AssertionError:
                continue
            self.assertEqual(typed(dict(request.doc)),
                             typed({'find': 'webhooks', 'filter': {'_id': A}, 'limit': Int64(1),
                                    'singleBatch': True, '$db': 'hooksdb'}))
            attempts += 1
            request.hangup()
        got = probe.result()
        self.assertEqual(got['rc'], str(EAGAIN))
        self.assertIn(attempts, (1, 2))

    def test_no_reply_times_out_after_the_default_socket_timeout(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.meta_exists()
        self.expect_raise_last_id(A).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1)])  # and never answer
        got = probe.result(timeout=30)
        self.assertEqual(got['rc'], str(EAGAIN))
        # socketTimeoutMS=2000 applied: under the gateway's NATS_TIMEOUT_MS of 5000.
        self.assertGreaterEqual(int(got['ms']), 1900)
        self.assertLess(int(got['ms']), 4500)

    def test_uri_timeouts_and_database_win_over_the_defaults(self):
        probe, _ = self.start('mongodb://127.0.0.1:%d/?socketTimeoutMS=3000' % self.port)
        self.apply(probe, 'delete %s' % A)
        self.meta_exists(db='webhooks')
        self.receive({'delete': 'webhooks', 'ordered': True, 'writeConcern': WC,
                      'deletes': [{'q': {'_id': A}, 'limit': 1}]}, db='webhooks')
        got = probe.result()
        self.assertEqual(got['rc'], str(EAGAIN))
        self.assertGreaterEqual(int(got['ms']), 2900)
        self.assertLess(int(got['ms']), 6000)

    def closed_port(self):
        """A port nobody listens on: bound (so nobody else takes it) but not listening."""
        sock = socket.socket()
        sock.bind(('127.0.0.1', 0))
        self.addCleanup(sock.close)
        return sock.getsockname()[1]

    def test_server_down_fails_after_the_default_selection_timeout(self):
        probe, _ = self.start('mongodb://127.0.0.1:%d' % self.closed_port())
        probe.send('meta')
        got = probe.result(timeout=30)
        self.assertEqual((got['rc'], got['webhooks'], got['last_id']), (str(EAGAIN), '0', '-'))
        self.assertIn('serverselectiontimeoutms', got['err'].lower())
        self.assertGreaterEqual(int(got['ms']), 1300)  # serverSelectionTimeoutMS=1500 applied
        self.assertLess(int(got['ms']), 4000)
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.assertEqual(probe.result(timeout=30)['rc'], str(EAGAIN))

    def test_server_down_with_uri_selection_timeout(self):
        probe, _ = self.start('mongodb://127.0.0.1:%d/?serverSelectionTimeoutMS=800'
                              % self.closed_port())
        probe.send('get %s' % A)
        got = probe.result()
        self.assertEqual(got['rc'], str(EAGAIN))
        self.assertGreaterEqual(int(got['ms']), 700)
        self.assertLess(int(got['ms']), 4000)

    # Reads.

    def test_get(self):
        probe, _ = self.start()
        probe.send('get %s' % A)
        self.receive({'find': 'webhooks', 'filter': {'_id': A}, 'limit': Int64(1),
                      'singleBatch': True}).replies(cursor([webhook(A, 'https://example.com/x', 11, 22)]))
        got = probe.result()
        self.assertEqual((got['rc'], got['id'], got['url'], got['created'], got['updated']),
                         ('0', A, 'https://example.com/x', '11', '22'))

    def test_get_unknown_is_enoent(self):
        probe, _ = self.start()
        probe.send('get %s' % B)
        self.receive({'find': 'webhooks', 'filter': {'_id': B}, 'limit': Int64(1),
                      'singleBatch': True}).replies(cursor([]))
        got = probe.result()
        self.assertEqual(got['rc'], str(ENOENT))
        self.assertIn(B, got['err'])

    def test_get_of_a_malformed_document_is_eio(self):
        probe, _ = self.start()
        probe.send('get %s' % A)
        doc = webhook(A, 'https://x/', 1, 2)
        doc['createdAt'] = 'yesterday'
        self.receive({'find': 'webhooks', 'filter': {'_id': A}, 'limit': Int64(1),
                      'singleBatch': True}).replies(cursor([doc]))
        self.assertEqual(probe.result()['rc'], str(EIO))

    def test_list_pages(self):
        probe, _ = self.start()
        probe.send('list - 2')
        self.receive({'find': 'webhooks', 'filter': {}, 'sort': {'_id': 1},
                      'limit': Int64(2), 'batchSize': 2}).replies(cursor([webhook(A, 'https://a/', 1, 1), webhook(B, 'https://b/', 2, 2)]))
        got = probe.result()
        self.assertEqual((got['rc'], got['n'], got['ids']), ('0', '2', '%s,%s' % (A, B)))

        probe.send('list %s 2' % B)
        self.receive({'find': 'webhooks', 'filter': {'_id': {'$gt': B}}, 'sort': {'_id': 1},
                      'limit': Int64(2), 'batchSize': 2}).replies(cursor([webhook(C, 'https://c/', 3, 3)]))
        got = probe.result()
        self.assertEqual((got['rc'], got['n'], got['ids']), ('0', '1', C))

        probe.send('list %s 2' % C)
        self.receive({'find': 'webhooks', 'filter': {'_id': {'$gt': C}}, 'sort': {'_id': 1},
                      'limit': Int64(2), 'batchSize': 2}).replies(cursor([]))
        got = probe.result()
        self.assertEqual((got['rc'], got['n'], got['ids']), ('0', '0', ''))

    def test_list_with_limit_zero_sends_nothing(self):
        probe, _ = self.start()
        probe.send('list - 0')
        got = probe.result()
        self.assertEqual((got['rc'], got['n']), ('0', '0'))
        self.assert_nothing_sent()

    # The meta document.

    def test_meta_reads_the_counter_document(self):
        probe, _ = self.start()
        probe.send('meta')
        self.meta_exists()
        self.expect_meta_read().replies(
            cursor([{'_id': 'webhooks', 'n': Int64(42), 'lastId': B}], 'meta'))
        got = probe.result()
        self.assertEqual((got['rc'], got['webhooks'], got['last_id']), ('0', '42', B))
        # Checked once: later reads are one find each, and an int32 counter reads as well.
        probe.send('meta')
        self.expect_meta_read().replies(
            cursor([{'_id': 'webhooks', 'n': 7, 'lastId': A}], 'meta'))
        got = probe.result()
        self.assertEqual((got['rc'], got['webhooks'], got['last_id']), ('0', '7', A))
        # Deleted by hand since: nothing is known (and nothing is counted on a read).
        probe.send('meta')
        self.expect_meta_read().replies(cursor([], 'meta'))
        got = probe.result()
        self.assertEqual((got['rc'], got['webhooks'], got['last_id']), ('0', '0', '-'))
        self.assert_no_more_commands()

    def test_meta_of_a_malformed_document_is_eio(self):
        probe, _ = self.start()
        probe.send('meta')
        self.meta_exists()
        self.expect_meta_read().replies(
            cursor([{'_id': 'webhooks', 'n': 'many', 'lastId': B}], 'meta'))
        got = probe.result()
        self.assertEqual((got['rc'], got['webhooks'], got['last_id']), (str(EIO), '0', '-'))

    def test_meta_of_an_older_store_is_made_once_from_its_webhooks(self):
        probe, _ = self.start()
        probe.send('meta')
        self.expect_meta_check().replies(cursor([], 'meta'))
        self.expect_count().replies(cursor([{'_id': 1, 'n': 7}]))
        self.expect_greatest_id().replies(cursor([{'_id': C}]))
        # $setOnInsert: of instances doing this at once, the first one's document stays.
        self.expect_update('meta', {'_id': 'webhooks'},
                           {'$setOnInsert': {'n': Int64(7), 'lastId': C}}, upsert=True).ok(
            n=1, upserted=[{'index': 0, '_id': 'webhooks'}])
        self.expect_meta_read().replies(
            cursor([{'_id': 'webhooks', 'n': Int64(7), 'lastId': C}], 'meta'))
        got = probe.result()
        self.assertEqual((got['rc'], got['webhooks'], got['last_id']), ('0', '7', C))
        # Made once: an insert now goes straight to the counters.
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.expect_raise_last_id(A).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1)]).ok(n=1)
        self.expect_count_change(1).ok(n=1)
        self.assertEqual(probe.result()['results'], '0')
        self.assert_no_more_commands()

    def test_meta_of_an_empty_older_store_starts_at_zero(self):
        probe, _ = self.start()
        self.apply(probe, 'delete %s' % A)
        self.expect_meta_check().replies(cursor([], 'meta'))
        self.expect_count().replies(cursor([]))  # an empty collection: no group at all
        self.expect_greatest_id().replies(cursor([]))
        self.expect_update('meta', {'_id': 'webhooks'},
                           {'$setOnInsert': {'n': Int64(0), 'lastId': ''}}, upsert=True).ok(n=1)
        self.expect_delete(A).ok(n=0)
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', str(ENOENT)))
        self.assert_no_more_commands()

    def test_meta_lookup_failing_fails_the_call_and_is_tried_again(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.expect_meta_check().command_err(code=2, errmsg='BadValue from the mock')
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), (str(EIO), '1'))  # nothing inserted
        self.assert_no_more_commands()
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.meta_exists()
        self.expect_raise_last_id(A).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1)]).ok(n=1)
        self.expect_count_change(1).ok(n=1)
        self.assertEqual(probe.result()['results'], '0')

    def test_raising_last_id_failing_inserts_nothing(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.meta_exists()
        self.expect_raise_last_id(A).command_err(code=10107, errmsg='not primary')
        self.assertEqual(probe.result()['rc'], str(EAGAIN))
        self.assert_no_more_commands()

    def test_counter_change_failing_fails_the_batch(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A)
        self.meta_exists()
        self.expect_raise_last_id(A).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1)]).ok(n=1)
        self.expect_count_change(1).ok(
            n=1, writeConcernError={'code': 64, 'errmsg': 'waiting for replication timed out'})
        self.assertEqual(probe.result()['rc'], str(EAGAIN))

    def test_a_batch_raises_last_id_once_and_changes_the_counter_once(self):
        probe, _ = self.start()
        self.apply(probe, 'insert %s 1 1 https://a/' % A, 'insert %s 3 3 https://c/' % C,
                   'delete %s' % B, 'delete %s' % A, 'update %s 4 https://c2/' % C,
                   'insert %s 2 2 https://b/' % B, 'event_insert %s ::1 5 2' % E)
        self.meta_exists()
        self.expect_raise_last_id(C).ok(n=1)
        self.expect_insert([webhook(A, 'https://a/', 1, 1), webhook(C, 'https://c/', 3, 3)]).ok(
            n=2)
        self.expect_delete(B).ok(n=1)
        self.expect_delete(A).ok(n=1)
        self.expect_find_and_modify(C, 'https://c2/', 4).ok(
            lastErrorObject={'n': 1}, value=hook_doc(C, 3))
        self.expect_insert([webhook(B, 'https://b/', 2, 2)]).ok(n=1)
        self.receive({'insert': 'events', 'ordered': True, 'writeConcern': WC,
                      'documents': [event(E, '::1', 5, 2)]}).ok(n=1)
        self.expect_count_change(1).ok(n=1)  # 3 inserted, 2 deleted; events do not count
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,0,0,0,0,0,0'))
        self.assert_no_more_commands()

    def test_batches_without_webhook_inserts_or_deletes_leave_meta_alone(self):
        probe, _ = self.start()
        self.apply(probe, 'update %s 2 https://b/' % A, 'event_insert %s ::1 5 2' % E,
                   'event_item %s 0 2 1' % E)
        self.expect_find_and_modify(A, 'https://b/', 2).ok(
            lastErrorObject={'n': 1}, value=hook_doc(A, 1))
        self.receive({'insert': 'events', 'ordered': True, 'writeConcern': WC,
                      'documents': [event(E, '::1', 5, 2)]}).ok(n=1)
        self.expect_item(E, 0, 2, True).ok(n=1, nModified=1)
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,0,0'))
        self.assert_no_more_commands()

    # Events and deliveries.

    def test_event_inserts_start_with_nothing_fanned(self):
        probe, _ = self.start()
        self.apply(probe, 'event_insert %s 203.0.113.9 1700000000001 3' % E,
                   'event_insert %s ::1 1700000000002 0' % F)
        self.receive({'insert': 'events', 'ordered': True, 'writeConcern': WC,
                      'documents': [event(E, '203.0.113.9', 1700000000001, 3),
                                    event(F, '::1', 1700000000002, 0)]}).ok(
            n=1, writeErrors=[{'index': 1, 'code': 11000, 'errmsg': 'E11000'}])
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,%d' % EEXIST))
        self.assert_no_more_commands()

    def test_event_items_count_only_the_next_item(self):
        probe, _ = self.start()
        self.apply(probe, 'event_item %s 0 5 0' % E, 'event_item %s 1 3 1' % E,
                   'event_item %s 2 1 0' % F, 'event_item %s 0 1 1' % C)
        # Item 0 also matches an event stored before items existed.
        self.expect_item(E, 0, 5, False).ok(n=1, nModified=1)
        self.expect_item(E, 1, 3, True).ok(n=1, nModified=1)
        # Matched nothing: counted before (or early) when the event exists ...
        self.expect_item(F, 2, 1, False).ok(n=0, nModified=0)
        self.expect_event_exists(F).replies(cursor([{'_id': F}], 'events'))
        # ... and -ENOENT when it does not.
        self.expect_item(C, 0, 1, True).ok(n=0, nModified=0)
        self.expect_event_exists(C).replies(cursor([], 'events'))
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,0,0,%d' % ENOENT))
        self.assert_no_more_commands()

    def test_event_item_keeps_its_members_before_its_count(self):
        probe, _ = self.start()
        self.apply(probe, 'event_item %s 0 2 0 %s %s,%s' % (E, B, A, B),
                   'event_item %s 1 0 1 - -' % E, 'event_item %s 2 1 1' % E)
        self.expect_members(E, 0, B, False, [A, B]).ok(
            n=1, nModified=0, upserted=[{'index': 0, '_id': E + ':0'}])
        self.expect_item(E, 0, 2, False).ok(n=1, nModified=1)
        # None (an item of no members) is kept too; an op without members keeps nothing.
        self.expect_members(E, 1, '', True, []).ok(n=1, nModified=0)
        self.expect_item(E, 1, 0, True).ok(n=1, nModified=1)
        self.expect_item(E, 2, 1, True).ok(n=0, nModified=0)
        self.expect_event_exists(E).replies(cursor([{'_id': E}], 'events'))
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,0,0'))
        self.assert_no_more_commands()

    def test_event_item_members_failing_leaves_it_uncounted(self):
        probe, _ = self.start()
        self.apply(probe, 'event_item %s 0 1 1 %s %s' % (E, A, A))
        self.expect_members(E, 0, A, True, [A]).command_err(code=91, errmsg='shutting down')
        self.assertEqual(probe.result()['rc'], str(EAGAIN))
        self.assert_no_more_commands()  # the count was never sent

    def test_members_read_back_and_malformed_ones_are_eio(self):
        probe, _ = self.start()
        good = {'_id': E + ':0', 'eventId': E, 'end': B, 'last': False, 'members': packed(A, B)}
        probe.send('members %s 0' % E)
        self.expect_members_find(E, 0).replies(cursor([good], 'eventItems'))
        got = probe.result()
        self.assertEqual([got.get(k) for k in ('rc', 'found', 'n', 'end', 'last', 'ids')],
                         ['0', '1', '2', B, '0', A + ',' + B])
        probe.send('members %s 7' % E)
        self.expect_members_find(E, 7).replies(cursor([], 'eventItems'))
        got = probe.result()
        self.assertEqual((got['rc'], got['found']), ('0', '0'))
        for change in ({'members': packed(A) + b'x'}, {'members': b'\0' * 16 * 513},
                       {'members': A}, {'last': 1}, {'end': Int64(5)}, {'end': 'x' * 37},
                       {'members': None}):
            doc = dict(good, **change)
            if change == {'members': None}:
                del doc['members']
            probe.send('members %s 0' % E)
            self.expect_members_find(E, 0).replies(cursor([doc], 'eventItems'))
            got = probe.result()
            self.assertEqual((got['rc'], got['found']), (str(EIO), '0'), change)
        probe.send('members %s 0' % E)
        self.expect_members_find(E, 0).command_err(code=91, errmsg='shutting down')
        self.assertEqual(probe.result()['rc'], str(EAGAIN))

    def test_event_item_failing_fails_the_batch(self):
        probe, _ = self.start()
        self.apply(probe, 'event_item %s 3 1 0' % E, 'event_item %s 4 1 1' % E)
        self.expect_item(E, 3, 1, False).ok(n=0)
        self.expect_event_exists(E).command_err(code=2, errmsg='BadValue from the mock')
        got = probe.result()
        self.assertEqual(got['rc'], str(EIO))
        self.assert_no_more_commands()  # item 4 was never sent
        self.apply(probe, 'event_item %s 4 1 1' % E)
        self.expect_item(E, 4, 1, True).command_err(code=91, errmsg='shutting down')
        self.assertEqual(probe.result()['rc'], str(EAGAIN))

    def test_attempts_upsert_deliveries_in_one_bulk_and_touch_no_event(self):
        probe, _ = self.start()
        self.apply(probe,
                   'attempt %s %s %s 1 %d 500 0 12 https://t.example/h' % (E, D1, A, AT_MS),
                   'attempt %s %s %s 2 %d 200 1 7 https://t.example/h' % (E, D1, A, AT_MS),
                   'attempt %s %s %s 1 %d 0 2 0 - not sent: the webhook was deleted'
                   % (E, D2, B, AT_MS),
                   'attempt %s %s %s 1 %d 0 2 3 https://u/ connection refused'
                   % (F, D1, C, AT_MS))
        # The first batch of attempts of the store makes the index that counts outcomes.
        self.expect_index().ok(numIndexesBefore=1, numIndexesAfter=2)
        on_insert = {'eventId': E, 'deliveryId': D1, 'webhookId': A}
        # One unordered update: each attempt creates or extends its delivery (a bulk statement
        # says multi: false where update_one leaves it out), only while the delivery is open
        # for it. $addToSet: the same attempt sent again is not added twice.
        a1, a2 = attempt(1, 500, None, 12), attempt(2, 200, None, 7)
        a3 = attempt(1, None, 'not sent: the webhook was deleted', 0)
        a4 = attempt(1, None, 'connection refused', 3)
        self.receive({'update': 'deliveries', 'ordered': False, 'writeConcern': WC, 'updates': [
            {'q': attempt_q(E + ':' + D1, a1), 'upsert': True, 'multi': False, 'u': {
                '$set': {'status': 0, 'targetUrl': 'https://t.example/h'},
                '$setOnInsert': on_insert, '$addToSet': {'attempts': a1}}},
            # A later attempt marks what it inserts (its delivery gone): a first one does not.
            {'q': attempt_q(E + ':' + D1, a2), 'upsert': True, 'multi': False, 'u': {
                '$set': {'status': 1, 'targetUrl': 'https://t.example/h'},
                '$setOnInsert': dict(on_insert, orphan=True), '$addToSet': {'attempts': a2}}},
            # Without a URL the recorded one stays (only a new delivery gets an empty one).
            {'q': attempt_q(E + ':' + D2, a3), 'upsert': True, 'multi': False, 'u': {
                '$set': {'status': 2},
                '$setOnInsert': {'eventId': E, 'deliveryId': D2, 'webhookId': B,
                                 'targetUrl': ''},
                '$addToSet': {'attempts': a3}}},
            {'q': attempt_q(F + ':' + D1, a4), 'upsert': True, 'multi': False, 'u': {
                '$set': {'status': 2, 'targetUrl': 'https://u/'},
                '$setOnInsert': {'eventId': F, 'deliveryId': D1, 'webhookId': C},
                '$addToSet': {'attempts': a4}}},
        ]}).ok(n=4, nModified=2, upserted=[{'index': 0, '_id': E + ':' + D1},
                                           {'index': 2, '_id': E + ':' + D2},
                                           {'index': 3, '_id': F + ':' + D1}])
        # Then the webhooks' health by the deliveries that ended (not the one not sent): A
        # succeeded, C failed. No write to the events: their outcomes are counted from their
        # deliveries.
        self.expect_health((A, 'ok'), (C, 'failed', AT_MS)).ok(n=2)
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,0,0,0'))
        self.assert_no_more_commands()

    def test_index_failing_fails_nothing_and_is_not_asked_again_at_once(self):
        probe, _ = self.start()
        self.apply(probe, 'attempt %s %s %s 1 %d 200 1 5 https://t/' % (E, D1, A, AT_MS))
        self.expect_index().command_err(code=13, errmsg='not authorized from the mock')
        a1 = attempt(1, 200, None, 5)
        self.receive({'update': 'deliveries', 'ordered': False, 'writeConcern': WC, 'updates': [
            {'q': attempt_q(E + ':' + D1, a1), 'upsert': True, 'multi': False, 'u': {
                '$set': {'status': 1, 'targetUrl': 'https://t/'},
                '$setOnInsert': {'eventId': E, 'deliveryId': D1, 'webhookId': A},
                '$addToSet': {'attempts': a1}}}]}).ok(n=1)
        self.expect_health((A, 'ok')).ok(n=1)
        self.assertEqual(probe.result()['results'], '0')
        self.apply(probe, 'attempt %s %s %s 1 %d 200 1 5 https://t/' % (E, D2, A, AT_MS))
        request = self.server.receives()
        self.assertEqual(request.command_name, 'update')  # within the minute: no createIndexes
        request.ok(n=1)
        self.expect_health((A, 'ok')).ok(n=1)
        self.assertEqual(probe.result()['results'], '0')

    def test_an_attempt_its_delivery_is_not_open_for_is_refused_and_the_rest_goes_on(self):
        probe, _ = self.start()
        self.apply(probe,
                   'attempt %s %s %s 1 %d 200 1 5 https://t/' % (E, D1, A, AT_MS),
                   'attempt %s %s %s 2 %d 200 1 6 https://t/' % (E, D2, B, AT_MS),
                   'attempt %s %s %s 1 %d 0 2 7 https://t/ refused' % (E, D3, C, AT_MS))
        self.expect_index().ok()
        a1, a2, a3 = (attempt(1, 200, None, 5), attempt(2, 200, None, 6),
                      attempt(1, None, 'refused', 7))
        # D2 is not open for its second attempt (another holder recorded it, or it ended): the
        # upsert's insert of its _id fails. The statements are independent: unordered, the
        # server goes on with D3.
        self.receive({'update': 'deliveries', 'ordered': False, 'writeConcern': WC, 'updates': [
            attempt_statement(E + ':' + D1, A, 1, a1), attempt_statement(E + ':' + D2, B, 1, a2),
            attempt_statement(E + ':' + D3, C, 2, a3)]}).ok(
                n=2, upserted=[{'index': 0, '_id': E + ':' + D1},
                               {'index': 2, '_id': E + ':' + D3}],
                writeErrors=[{'index': 1, 'code': 11000,
                              'errmsg': 'E11000 duplicate key error from the mock'}])
        # A refused later attempt may have met an orphan left behind: only a document with the
        # marker goes (a live delivery has none); the refused first attempt deletes nothing.
        self.expect_orphan_delete(E + ':' + D2).ok(n=0)
        # Health only by the outcomes recorded: A's success and C's failure, not B's.
        self.expect_health((A, 'ok'), (C, 'failed', AT_MS)).ok(n=2)
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '0,%d,0' % EALREADY))
        self.assert_no_more_commands()

    def test_a_later_attempt_of_a_delivery_gone_is_refused_and_its_insert_undone(self):
        probe, _ = self.start()
        self.apply(probe,
                   'attempt %s %s %s 3 %d 200 1 5 https://t/' % (E, D1, A, AT_MS),
                   'attempt %s %s %s 1 %d 200 1 5 https://t/' % (E, D2, B, AT_MS))
        self.expect_index().ok()
        # D1's third attempt marks what it inserts; D2's first does not.
        self.expect_attempts((E + ':' + D1, A, 1, attempt(3, 200, None, 5)),
                             (E + ':' + D2, B, 1, attempt(1, 200, None, 5))).ok(
            # Both inserted: D2's first attempt rightly, D1's third because its delivery is
            # gone (its event pruned meanwhile).
            n=2, upserted=[{'index': 0, '_id': E + ':' + D1},
                           {'index': 1, '_id': E + ':' + D2}])
        self.expect_orphan_delete(E + ':' + D1).ok(n=1)
        self.expect_health((B, 'ok')).ok(n=1)
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '%d,0' % EALREADY))
        self.assert_no_more_commands()

    def test_an_orphan_whose_delete_failed_is_deleted_when_the_batch_is_sent_again(self):
        probe, _ = self.start()
        ops = ('attempt %s %s %s 2 %d 200 1 5 https://t/' % (E, D1, A, AT_MS),
               'attempt %s %s %s 1 %d 200 1 5 https://t/' % (E, D2, B, AT_MS))
        statements = ((E + ':' + D1, A, 1, attempt(2, 200, None, 5)),
                      (E + ':' + D2, B, 1, attempt(1, 200, None, 5)))
        self.apply(probe, *ops)
        self.expect_index().ok()
        self.expect_attempts(*statements).ok(
            n=2, upserted=[{'index': 0, '_id': E + ':' + D1},
                           {'index': 1, '_id': E + ':' + D2}])
        # The delete fails: the orphan stays, and the batch fails (nothing acknowledged).
        self.expect_orphan_delete(E + ':' + D1).command_err(
            code=2, errmsg='BadValue from the mock')
        got = probe.result()
        self.assertEqual(got['rc'], str(EIO))
        self.assert_no_more_commands()
        # Sent again, as the service does: the orphan is no delivery to D1's second attempt
        # (the selector excludes it), so its insert fails with a duplicate key; D2's first
        # attempt is the one recorded. The orphan is deleted now, and the attempt refused.
        self.apply(probe, *ops)
        self.expect_attempts(*statements).ok(
            n=1, nModified=0,
            writeErrors=[{'index': 0, 'code': 11000,
                          'errmsg': 'E11000 duplicate key error from the mock'}])
        self.expect_orphan_delete(E + ':' + D1).ok(n=1)
        self.expect_health((B, 'ok')).ok(n=1)
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '%d,0' % EALREADY))
        self.assert_no_more_commands()

    def test_an_orphan_left_by_a_write_concern_error_is_deleted_when_the_batch_is_sent_again(
            self):
        probe, _ = self.start()
        op = 'attempt %s %s %s 2 %d 200 1 5 https://t/' % (E, D1, A, AT_MS)
        statement = (E + ':' + D1, A, 1, attempt(2, 200, None, 5))
        self.apply(probe, op)
        self.expect_index().ok()
        # Inserted (its delivery gone), but not known durable: -EAGAIN, and no delete yet.
        self.expect_attempts(statement).ok(
            n=1, upserted=[{'index': 0, '_id': E + ':' + D1}],
            writeConcernError={'code': 64, 'errmsg': 'waiting for replication timed out'})
        self.assertEqual(probe.result()['rc'], str(EAGAIN))
        self.assert_no_more_commands()
        self.apply(probe, op)
        self.expect_attempts(statement).ok(
            n=0, writeErrors=[{'index': 0, 'code': 11000,
                               'errmsg': 'E11000 duplicate key error from the mock'}])
        self.expect_orphan_delete(E + ':' + D1).ok(n=1)
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', str(EALREADY)))
        self.assert_no_more_commands()

    def test_refused_later_attempts_share_one_orphan_delete(self):
        probe, _ = self.start()
        self.apply(probe,
                   'attempt %s %s %s 2 %d 200 1 5 https://t/' % (E, D1, A, AT_MS),
                   'attempt %s %s %s 3 %d 200 1 5 https://t/' % (E, D2, B, AT_MS),
                   'attempt %s %s %s 2 %d 200 1 5 https://t/' % (E, D3, C, AT_MS))
        self.expect_index().ok()
        self.expect_attempts((E + ':' + D1, A, 1, attempt(2, 200, None, 5)),
                             (E + ':' + D2, B, 1, attempt(3, 200, None, 5)),
                             (E + ':' + D3, C, 1, attempt(2, 200, None, 5))).ok(
            # D1 inserted (gone), D2 refused (an orphan left before, or another holder's
            # record), D3 recorded.
            n=2, nModified=1, upserted=[{'index': 0, '_id': E + ':' + D1}],
            writeErrors=[{'index': 1, 'code': 11000,
                          'errmsg': 'E11000 duplicate key error from the mock'}])
        self.expect_orphan_delete(E + ':' + D1, E + ':' + D2).ok(n=2)
        self.expect_health((C, 'ok')).ok(n=1)
        got = probe.result()
        self.assertEqual((got['rc'], got['results']), ('0', '%d,%d,0' % (EALREADY, EALREADY)))
        self.assert_no_more_commands()

    def test_any_other_write_error_fails_the_batch(self):
        probe, _ = self.start()
        self.apply(probe,
                   'attempt %s %s %s 1 %d 200 1 5 https://t/' % (E, D1, A, AT_MS),
                   'attempt %s %s %s 1 %d 200 1 5 https://t/' % (E, D2, A, AT_MS))
        self.expect_index().ok()
        request = self.server.receives()
        self.assertEqual((request.command_name, request['update']), ('update', 'deliveries'))
        request.ok(n=0, writeErrors=[
            {'index': 0, 'code': 11000, 'errmsg': 'E11000 dup'},
            {'index': 1, 'code': 2, 'errmsg': 'BadValue from the mock'}])
        self.assertEqual(probe.result()['rc'], str(EIO))
        self.assert_no_more_commands()

    def test_a_duplicate_key_with_a_write_concern_error_is_eagain(self):
        probe, _ = self.start()
        self.apply(probe, 'attempt %s %s %s 2 %d 200 1 5 https://t/' % (E, D1, A, AT_MS))
        self.expect_index().ok()
        request = self.server.receives()
        self.assertEqual((request.command_name, request['update']), ('update', 'deliveries'))
        request.ok(n=0, writeErrors=[{'index': 0, 'code': 11000, 'errmsg': 'E11000 dup'}],
                   writeConcernError={'code': 64, 'errmsg': 'waiting for replication timed out'})
        self.assertEqual(probe.result()['rc'], str(EAGAIN))
        self.assert_no_more_commands()

    def test_a_failed_attempt_bulk_is_eagain(self):
        probe, _ = self.start()
        self.apply(probe, 'attempt %s %s %s 2 %d 200 1 5 https://t/' % (E, D1, A, AT_MS))
        self.expect_index().ok()
        request = self.server.receives()
        self.assertEqual((request.command_name, request['update']), ('update', 'deliveries'))
        request.ok(
            n=1, writeConcernError={'code': 64, 'errmsg': 'waiting for replication timed out'})
        self.assertEqual(probe.result()['rc'], str(EAGAIN))
        self.assert_no_more_commands()

    def test_get_event_counts_outcomes_from_the_deliveries(self):
        probe, _ = self.start()
        probe.send('event %s' % E)
        self.expect_event_find(E).replies(cursor([event(E, '2001:db8::1', 5, 4)], 'events'))
        self.expect_index().ok()
        # Statuses as the server groups them: 0 (pending) counts nowhere; n may be any integer.
        self.expect_outcome_count(E).replies(outcomes((1, 2), (0, 1), (2, Int64(1))))
        got = probe.result()
        self.assertEqual(
            [got[k] for k in ('rc', 'id', 'ip', 'created', 'targets', 'succeeded', 'failed',
                              'fanned', 'items', 'done')],
            ['0', E, '2001:db8::1', '5', '4', '2', '1', '0', '0', '0'])
        # The index is made once per store; an event with no deliveries counts none.
        probe.send('event %s' % E)
        self.expect_event_find(E).replies(
            cursor([event(E, '::1', 5, 4, fanned=9, items=3, done=True)], 'events'))
        self.expect_outcome_count(E).replies(outcomes())
        got = probe.result()
        self.assertEqual([got[k] for k in ('rc', 'succeeded', 'failed', 'fanned', 'items',
                                           'done')], ['0', '0', '0', '9', '3', '1'])
        probe.send('event %s' % F)
        self.expect_event_find(F).replies(cursor([], 'events'))
        self.assertEqual(probe.result()['rc'], str(ENOENT))
        self.assert_no_more_commands()

    def test_get_event_head_reads_only_the_event(self):
        probe, _ = self.start()
        probe.send('event_head %s' % E)
        self.expect_event_find(E).replies(
            cursor([event(E, '::1', 5, 4, fanned=4, items=1)], 'events'))
        got = probe.result()
        self.assertEqual([got[k] for k in ('rc', 'succeeded', 'failed', 'fanned', 'items')],
                         ['0', '0', '0', '4', '1'])
        self.assert_no_more_commands()

    def test_outcome_count_failing_fails_the_summary(self):
        probe, _ = self.start()
        probe.send('event %s' % E)
        self.expect_event_find(E).replies(cursor([event(E, '::1', 5, 4)], 'events'))
        self.expect_index().ok()
        self.expect_outcome_count(E).command_err(code=2, errmsg='BadValue from the mock')
        got = probe.result()
        self.assertEqual(got['rc'], str(EIO))
        self.assertIn('counting outcomes', got['err'])
        probe.send('event %s' % E)
        self.expect_event_find(E).replies(cursor([event(E, '::1', 5, 4)], 'events'))
        self.expect_outcome_count(E).replies(outcomes((1, 'many')))
        self.assertEqual(probe.result()['rc'], str(EIO))

    def test_event_of_an_older_version_ignores_its_counters(self):
        probe, _ = self.start()
        # First an event with all three set, so that a value left over from it would show.
        probe.send('event_head %s' % F)
        self.expect_event_find(F).replies(
            cursor([event(F, '::1', 5, 4, fanned=4, items=2, done=True)], 'events'))
        got = probe.result()
        self.assertEqual([got[k] for k in ('rc', 'fanned', 'items', 'done')],
                         ['0', '4', '2', '1'])
        probe.send('event %s' % E)
        self.expect_event_find(E).replies(cursor([event(E, '::1', 5, 4, legacy=True)], 'events'))
        self.expect_index().ok()
        self.expect_outcome_count(E).replies(outcomes((1, 3)))
        got = probe.result()
        self.assertEqual([got[k] for k in ('rc', 'targets', 'succeeded', 'failed', 'fanned',
                                           'items', 'done')],
                         ['0', '4', '3', '0', '0', '0', '0'])

    def test_event_with_a_malformed_item_field_is_eio(self):
        probe, _ = self.start()
        for field, value in (('done', 1), ('items', 'two'), ('fanned', None)):
            probe.send('event_head %s' % E)
            doc = event(E, '::1', 5, 4)
            doc[field] = value
            self.receive({'find': 'events', 'filter': {'_id': E}, 'limit': Int64(1),
                          'singleBatch': True}).replies(cursor([doc], 'events'))
            self.assertEqual(probe.result()['rc'], str(EIO), field)

    def test_deliveries_page_is_the_range_of_the_event(self):
        probe, _ = self.start()
        probe.send('deliveries %s - 2' % E)
        attempts = [attempt(1, None, 'timeout after 10000 ms', 10000),
                    attempt(2, 204, None, Int64(3))]
        self.receive({'find': 'deliveries',
                      'filter': {'_id': {'$gt': E + ':', '$lt': E + ';'}},
                      'sort': {'_id': 1}, 'limit': Int64(2), 'batchSize': 2}).replies(cursor([
                          {'_id': E + ':' + D1, 'eventId': E, 'deliveryId': D1, 'webhookId': A,
                           'targetUrl': 'https://a/', 'status': 1, 'attempts': attempts},
                          {'_id': E + ':' + D2, 'eventId': E, 'deliveryId': D2, 'webhookId': B,
                           'targetUrl': '', 'status': 0, 'attempts': []}], 'deliveries'))
        got = probe.result()
        self.assertEqual((got['rc'], got['n']), ('0', '2'))
        rows = [probe.result()['line'].split(' ', 5) for _ in range(2)]
        self.assertEqual([r[:5] for r in rows], [['delivery', D1, A, '1', 'https://a/'],
                                                 ['delivery', D2, B, '0', '-']])
        self.assertEqual(json.loads(rows[0][5]), [
            {'attempt': 1, 'at': AT, 'httpStatus': None, 'error': 'timeout after 10000 ms',
             'durationMs': 10000},
            {'attempt': 2, 'at': AT, 'httpStatus': 204, 'error': None, 'durationMs': 3}])
        self.assertEqual(json.loads(rows[1][5]), [])

        probe.send('deliveries %s %s 2' % (E, D2))
        self.receive({'find': 'deliveries',
                      'filter': {'_id': {'$gt': E + ':' + D2, '$lt': E + ';'}},
                      'sort': {'_id': 1}, 'limit': Int64(2), 'batchSize': 2}).replies(
            cursor([], 'deliveries'))
        got = probe.result()
        self.assertEqual((got['rc'], got['n']), ('0', '0'))

    def test_failed_deliveries_are_the_failed_part_of_the_events_range(self):
        probe, _ = self.start()
        probe.send('failed %s %s 3' % (E, D1))
        self.receive({'find': 'deliveries',
                      'filter': {'_id': {'$gt': E + ':' + D1, '$lt': E + ';'}, 'status': 2},
                      'sort': {'_id': 1}, 'limit': Int64(3), 'batchSize': 3,
                      'projection': {'webhookId': 1, 'attempts': {
                          '$size': {'$ifNull': ['$attempts', []]}}}}).replies(cursor([
                              {'_id': E + ':' + D2, 'webhookId': B, 'attempts': 6}],
                              'deliveries'))
        got = probe.result()
        self.assertEqual((got['rc'], got['n'], got['list']), ('0', '1', '%s/%s/6' % (D2, B)))
        probe.send('failed %s - 3' % E)
        self.server.receives().replies(cursor([{'_id': E + ':' + D1, 'attempts': 1}],
                                              'deliveries'))
        self.assertEqual(probe.result()['rc'], str(EIO))  # no webhookId: not ours

    def test_prune_marks_the_event_then_deletes_a_slice_then_the_event(self):
        probe, _ = self.start()
        probe.send('prune 5000 2')
        old_events = {'find': 'events', 'filter': {'createdAt': {'$lt': Int64(5000)}},
                      'sort': {'createdAt': 1}, 'limit': Int64(16)}
        self.receive(old_events).replies(cursor([event(E, '::1', 1000, 3, fanned=3, items=1,
                                                       done=True)], 'events'))
        self.expect_index().ok()
        # Ended? Counted from its deliveries, before any of them is deleted.
        self.expect_outcome_count(E).replies(outcomes((1, 2), (2, 1)))
        self.expect_update('events', {'_id': E}, {'$set': {'pruning': True},
                                                  '$unset': {'open': ''}}).ok(n=1, nModified=1)
        slice_of = {'find': 'deliveries', 'filter': {'_id': {'$gt': E + ':', '$lt': E + ';'}},
                    'sort': {'_id': 1}, 'limit': Int64(2), 'batchSize': 2,
                    'projection': {'_id': 1}}
        self.receive(slice_of).replies(cursor([{'_id': E + ':' + D1}, {'_id': E + ':' + D2}],
                                              'deliveries'))
        self.receive({'delete': 'deliveries', 'ordered': True, 'writeConcern': WC,
                      'deletes': [{'q': {'_id': {'$in': [E + ':' + D1, E + ':' + D2]}},
                                   'limit': 0}]}).ok(n=2)
        got = probe.result()
        self.assertEqual((got['rc'], got['events'], got['deliveries']), ('0', '0', '2'))
        # The next call finds it marked: no count (its deliveries are partly gone), the rest of
        # them, then the event itself.
        probe.send('prune 5000 2')
        doc = event(E, '::1', 1000, 3, fanned=3, items=1, done=True)
        doc['pruning'] = True
        self.receive(old_events).replies(cursor([doc], 'events'))
        self.receive(slice_of).replies(cursor([{'_id': E + ':dddddddd-0000-4000-8000-0000000000d3'}],
                                              'deliveries'))
        self.receive({'delete': 'deliveries', 'ordered': True, 'writeConcern': WC,
                      'deletes': [{'q': {'_id': {'$in': [
                          E + ':dddddddd-0000-4000-8000-0000000000d3']}}, 'limit': 0}]}).ok(n=1)
        # Its work items' members, then the event itself.
        self.receive({'delete': 'eventItems', 'ordered': True, 'writeConcern': WC,
                      'deletes': [{'q': {'_id': {'$gt': E + ':', '$lt': E + ';'}},
                                   'limit': 0}]}).ok(n=1)
        self.receive({'delete': 'events', 'ordered': True, 'writeConcern': WC,
                      'deletes': [{'q': {'_id': E}, 'limit': 1}]}).ok(n=1)
        got = probe.result()
        self.assertEqual((got['rc'], got['events'], got['deliveries']), ('0', '1', '1'))
        self.assert_no_more_commands()

    def test_prune_keeps_an_open_event_and_fails_on_a_server_error(self):
        probe, _ = self.start()
        probe.send('prune 5000 10')
        self.server.receives().replies(cursor([event(E, '::1', 1000, 3, fanned=3, items=1,
                                                     done=True)], 'events'))
        self.expect_index().ok()
        self.expect_outcome_count(E).replies(outcomes((1, 2)))  # one still pending
        got = probe.result()
        self.assertEqual((got['rc'], got['events'], got['deliveries']), ('0', '0', '0'))
        self.assert_no_more_commands()
        probe.send('prune 5000 10')
        self.server.receives().command_err(code=8000, errmsg='boom from the mock')
        self.assertEqual(probe.result()['rc'], str(EIO))

    def test_deliveries_with_a_malformed_document_is_eio(self):
        probe, _ = self.start()
        probe.send('deliveries %s - 2' % E)
        self.receive({'find': 'deliveries',
                      'filter': {'_id': {'$gt': E + ':', '$lt': E + ';'}},
                      'sort': {'_id': 1}, 'limit': Int64(2), 'batchSize': 2}).replies(cursor([
                          {'_id': E + ':' + D1, 'deliveryId': D1, 'webhookId': A,
                           'targetUrl': 'https://a/', 'status': 9, 'attempts': []}],
                          'deliveries'))
        got = probe.result()
        self.assertEqual((got['rc'], got['n']), (str(EIO), '0'))


    # Delivery states.

    def test_delivery_states_in_one_find_of_status_and_attempt_count(self):
        probe, _ = self.start()
        probe.send('states %s %s,%s,%s' % (E, D1, D2, D1))
        self.expect_states([E + ':' + D1, E + ':' + D2, E + ':' + D1]).replies(cursor([
            {'_id': E + ':' + D1, 'status': 2, 'attempts': 5}], 'deliveries'))
        got = probe.result()
        self.assertEqual((got['rc'], got['states']), ('0', '2/5,-,2/5'))
        probe.send('states %s %s,%s' % (E, D2, D1))
        self.expect_states([E + ':' + D2, E + ':' + D1]).replies(cursor([
            {'_id': E + ':' + D1, 'status': 0, 'attempts': 1},
            {'_id': E + ':' + D2, 'status': Int64(1), 'attempts': Int64(2)}], 'deliveries'))
        got = probe.result()
        self.assertEqual((got['rc'], got['states']), ('0', '1/2,0/1'))

    def test_delivery_states_ask_at_most_a_thousand_ids_per_find(self):
        probe, _ = self.start()
        ids = ['%08x-0000-4000-8000-%012x' % (i, i) for i in range(2100)]
        probe.send('states %s %s' % (E, ','.join(ids)))
        for first, count in ((0, 1000), (1000, 1000), (2000, 100)):
            keys = [E + ':' + d for d in ids[first:first + count]]
            self.expect_states(keys).replies(cursor(
                [{'_id': keys[0], 'status': 1, 'attempts': 1},
                 {'_id': keys[-1], 'status': 2, 'attempts': 6}], 'deliveries'))
        got = probe.result()
        states = got['states'].split(',')
        self.assertEqual(len(states), 2100)
        found = {i: s for i, s in enumerate(states) if s != '-'}
        self.assertEqual(found, {0: '1/1', 999: '2/6', 1000: '1/1', 1999: '2/6', 2000: '1/1',
                                 2099: '2/6'})

    def test_delivery_states_of_a_malformed_document_is_eio(self):
        probe, _ = self.start()
        for doc in ({'_id': E + ':' + D1, 'status': 9, 'attempts': 1},
                    {'_id': E + ':' + D1, 'status': 1, 'attempts': 'x'},
                    {'_id': F + ':' + D1, 'status': 1, 'attempts': 1}):
            probe.send('states %s %s' % (E, D1))
            self.expect_states([E + ':' + D1]).replies(cursor([doc], 'deliveries'))
            got = probe.result()
            self.assertEqual((got['rc'], got['states']), (str(EIO), '-'), doc)

    def test_delivery_states_server_error_is_eio(self):
        probe, _ = self.start()
        probe.send('states %s %s' % (E, D1))
        self.expect_states([E + ':' + D1]).command_err(code=2, errmsg='BadValue from the mock')
        got = probe.result()
        self.assertEqual(got['rc'], str(EIO))
        self.assertIn('BadValue from the mock', got['err'])

if __name__ == '__main__':
    unittest.main(verbosity=2)
