"""test_congodb.py -- what launch.mjs patches in CongoDB, checked through a real driver (PyMongo,
Debian's python3-pymongo): each fix on the patched server, and each defect it fixes on the
same server started --as-published, so that every check is known to catch what it is for.

  * string _ids stay strings (as published: a 24-hex one comes back an ObjectId, any other is
    refused with a duplicate-key error);
  * int64 stays int64 (as published: int32 when it fits, a double when it does not), through
    $inc, $set, $max and $setOnInsert, and an int32 $inc that overflows becomes int64;
  * strings sort and compare ($gt, $max) in code point order, and values of different types in
    MongoDB's type order (as published: localeCompare, "a" < "B");
  * the commands webhooks-svc's MongoDB backend sends (webhooks-svc/store/store_mongo.c), in
    their shapes: ordered inserts stopped by a duplicate, upserts with $max/$setOnInsert/$inc,
    findAndModify with a projection, bulk upserts with $push, an $in find projected with
    {$size: {$ifNull: ...}}, countDocuments, a page by _id range, an {$in: [0, null]} filter;
  * concurrent $inc from many connections lose nothing; hello keeps one topologyVersion and
    answers an awaitable hello after maxAwaitTimeMS.

Run by ctest as congodb_launcher (environment: see congodb.py)."""

import datetime
import threading
import time
import unittest

import pymongo
from bson.int64 import Int64
from bson.objectid import ObjectId
from pymongo import InsertOne, UpdateOne
from pymongo.errors import BulkWriteError, DuplicateKeyError

from congodb import Server

WC = {'w': 'majority', 'journal': True}  # what webhooks-svc asks for


def client(server):
    return pymongo.MongoClient('127.0.0.1', server.port, serverSelectionTimeoutMS=5000,
                               connectTimeoutMS=5000, retryWrites=False, **WC)


class CongoCase(unittest.TestCase):
    flags = ()

    @classmethod
    def setUpClass(cls):
        cls.server = Server(*cls.flags).start()
        cls.client = client(cls.server)

    @classmethod
    def tearDownClass(cls):
        cls.client.close()
        cls.server.stop()

    def setUp(self):
        self.db = self.client['t_' + self._testMethodName[:50]]

    def run(self, result=None):
        before = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > before:
            print('----- congodb log -----\n' + self.server.log())
        return out


# Values that tell the three defects apart.
HEX_ID = '0123456789abcdef01234567'  # a string that looks like an ObjectId
UUID_ID = '4f0c1a2b-0000-4000-8000-000000000001'
BIG = Int64(1796011184000)          # milliseconds since the epoch: beyond int32
SMALL = Int64(5)                    # an int64 that would fit an int32
STRINGS = ['b', 'B', 'a', 'A', '_', 'Z', 'z', '10', '9', '\u00e9', '\uff5e', '\U0001f600',
           '\ufffd', 'ab', 'a-b', 'a:', 'a;']
CODE_POINT_ORDER = sorted(STRINGS)  # Python compares str by code point: MongoDB's order


class PatchedTest(CongoCase):

    # -- 1. _id ---------------------------------------------------------------------------

    def test_string_ids_stay_strings(self):
        c = self.db.c
        oid = ObjectId(HEX_ID)
        for _id in (UUID_ID, HEX_ID, oid, 'webhooks', ''):
            self.assertEqual(c.insert_one({'_id': _id, 'k': repr(_id)}).inserted_id, _id)
        # A string and the ObjectId of the same hex are two documents, as in MongoDB.
        self.assertEqual(c.count_documents({}), 5)
        for _id in (UUID_ID, HEX_ID, 'webhooks', ''):
            doc = c.find_one({'_id': _id})
            self.assertIsNotNone(doc, _id)
            self.assertIs(type(doc['_id']), str)
            self.assertEqual(doc['_id'], _id)
        self.assertIs(type(c.find_one({'_id': oid})['_id']), ObjectId)
        with self.assertRaises(DuplicateKeyError) as cm:
            c.insert_one({'_id': UUID_ID})
        self.assertEqual(cm.exception.code, 11000)
        # Updates, upserts and deletes find string ids too.
        self.assertEqual(c.update_one({'_id': UUID_ID}, {'$set': {'x': 1}}).matched_count, 1)
        r = c.update_one({'_id': 'meta'}, {'$set': {'x': 1}}, upsert=True)
        self.assertEqual(r.upserted_id, 'meta')
        self.assertIs(type(c.find_one({'_id': 'meta'})['_id']), str)
        self.assertEqual(c.delete_one({'_id': HEX_ID}).deleted_count, 1)
        self.assertIsNone(c.find_one({'_id': HEX_ID}))
        self.assertIsNotNone(c.find_one({'_id': oid}))

    # -- 2. int64 -------------------------------------------------------------------------

    def assertTypes(self, doc, **types):
        for k, t in types.items():
            self.assertIs(type(doc[k]), t, '%s: %r' % (k, doc))

    def test_int64_stays_int64(self):
        c = self.db.c
        c.insert_one({'_id': 'e', 'big': BIG, 'small': SMALL, 'i32': 7, 'dbl': 2.5,
                      'nested': {'at': BIG}, 'arr': [SMALL, 3]})
        d = c.find_one({'_id': 'e'})
        self.assertTypes(d, big=Int64, small=Int64, i32=int, dbl=float)
        self.assertEqual((d['big'], d['small'], d['i32'], d['dbl']), (BIG, 5, 7, 2.5))
        self.assertIs(type(d['nested']['at']), Int64)
        self.assertEqual([type(x) for x in d['arr']], [Int64, int])
        # Operators keep the types MongoDB keeps.
        c.update_one({'_id': 'e'}, {'$inc': {'small': Int64(1), 'big': 1, 'i32': 1,
                                             'fresh': Int64(3)},
                                    '$set': {'set': Int64(9)}, '$max': {'mx': SMALL}})
        d = c.find_one({'_id': 'e'})
        self.assertTypes(d, small=Int64, big=Int64, i32=int, fresh=Int64, set=Int64, mx=Int64)
        self.assertEqual((d['small'], d['big'], d['i32']), (6, BIG + 1, 8))
        # An int32 that overflows becomes int64; a double stays a double.
        c.update_one({'_id': 'e'}, {'$inc': {'i32': 2 ** 31 - 1, 'dbl': Int64(1)}})
        d = c.find_one({'_id': 'e'})
        self.assertTypes(d, i32=Int64, dbl=float)
        self.assertEqual((d['i32'], d['dbl']), (2 ** 31 + 7, 3.5))
        # An int64 equals the same number of any type in a filter.
        self.assertEqual(c.count_documents({'small': 6}), 1)
        self.assertEqual(c.count_documents({'small': Int64(6)}), 1)
        self.assertEqual(c.count_documents({'small': 6.0}), 1)
        self.assertEqual(c.count_documents({'big': {'$gt': 2 ** 40}}), 1)
        # Upserted counters ($setOnInsert, then $inc) are int64 too.
        c.update_one({'_id': 'm'}, {'$setOnInsert': {'n': Int64(0)}}, upsert=True)
        c.update_one({'_id': 'm'}, {'$inc': {'n': Int64(-1)}})
        d = c.find_one({'_id': 'm'})
        self.assertTypes(d, n=Int64)
        self.assertEqual(d['n'], -1)

    # -- 3. string order ------------------------------------------------------------------

    def test_strings_sort_in_code_point_order(self):
        c = self.db.c
        c.insert_many([{'s': s} for s in STRINGS])
        up = [d['s'] for d in c.find({}, {'s': 1}).sort('s', 1)]
        self.assertEqual(up, CODE_POINT_ORDER)
        down = [d['s'] for d in c.find({}, {'s': 1}).sort('s', -1)]
        self.assertEqual(down, CODE_POINT_ORDER[::-1])
        # Range filters agree with the sort: the paging webhooks-svc does.
        got = [d['s'] for d in c.find({'s': {'$gt': 'Z', '$lt': '\uffff'}}).sort('s', 1)]
        self.assertEqual(got, [s for s in CODE_POINT_ORDER if 'Z' < s < '\uffff'])
        # $max and $min on strings.
        c.insert_one({'_id': 'meta', 'lastId': 'B'})
        c.update_one({'_id': 'meta'}, {'$max': {'lastId': 'a'}})
        self.assertEqual(c.find_one({'_id': 'meta'})['lastId'], 'a')
        c.update_one({'_id': 'meta'}, {'$max': {'lastId': 'Z'}, '$min': {'low': 'x'}})
        self.assertEqual(c.find_one({'_id': 'meta'})['lastId'], 'a')
        c.update_one({'_id': 'meta'}, {'$min': {'low': 'X'}})
        self.assertEqual(c.find_one({'_id': 'meta'})['low'], 'X')

    def test_mixed_types_sort_in_mongodb_order(self):
        c = self.db.c
        when = datetime.datetime(2026, 1, 1)
        oid = ObjectId(HEX_ID)
        values = [True, when, oid, [1], {'a': 1}, 'a', Int64(2), 1.5, 1, None]
        c.insert_many([{'_id': i, 'v': v} for i, v in enumerate(values)])
        c.insert_one({'_id': 99})  # missing sorts as null
        got = [d['_id'] for d in c.find().sort([('v', 1), ('_id', 1)])]
        # null and missing (then by _id), numbers with [1] (an array sorts by its least
        # element ascending: 1, a tie with 1 broken by _id) < 1.5 < 2, string, object,
        # ObjectId, bool, date.
        self.assertEqual(got, [9, 99, 3, 8, 7, 6, 5, 4, 2, 0, 1])

    # -- 4. what webhooks-svc sends -------------------------------------------------------

    def test_ordered_insert_stops_at_a_duplicate(self):
        c = self.db.webhooks
        c.insert_one({'_id': 'h2'})
        with self.assertRaises(BulkWriteError) as cm:
            c.insert_many([{'_id': 'h1'}, {'_id': 'h2'}, {'_id': 'h3'}], ordered=True)
        d = cm.exception.details
        self.assertEqual(d['nInserted'], 1)
        self.assertEqual([(e['index'], e['code']) for e in d['writeErrors']], [(1, 11000)])
        self.assertEqual(sorted(x['_id'] for x in c.find()), ['h1', 'h2'])

    def test_meta_document_updates(self):
        meta = self.db.meta
        # make_meta: $setOnInsert upsert; raise_last_id: $max upsert; add_to_count: $inc.
        r = meta.update_one({'_id': 'webhooks'},
                            {'$setOnInsert': {'n': Int64(0), 'lastId': ''}}, upsert=True)
        self.assertEqual((r.matched_count, r.upserted_id), (0, 'webhooks'))
        r = meta.update_one({'_id': 'webhooks'},
                            {'$setOnInsert': {'n': Int64(42), 'lastId': 'zz'}}, upsert=True)
        self.assertEqual((r.matched_count, r.modified_count, r.upserted_id), (1, 0, None))
        meta.update_one({'_id': 'webhooks'}, {'$max': {'lastId': UUID_ID}}, upsert=True)
        meta.update_one({'_id': 'webhooks'}, {'$max': {'lastId': '0' + UUID_ID[1:]}},
                        upsert=True)
        meta.update_one({'_id': 'webhooks'}, {'$inc': {'n': Int64(3)}})
        d = meta.find_one({'_id': 'webhooks'})
        self.assertEqual(d, {'_id': 'webhooks', 'n': 3, 'lastId': UUID_ID})
        self.assertIs(type(d['n']), Int64)
        # $max on a missing document, upserted.
        meta.update_one({'_id': 'other'}, {'$max': {'lastId': 'x'}}, upsert=True)
        self.assertEqual(meta.find_one({'_id': 'other'}), {'_id': 'other', 'lastId': 'x'})

    def test_find_and_modify_with_projection(self):
        c = self.db.webhooks
        c.insert_one({'_id': 'h', 'targetUrl': 'u1', 'createdAt': BIG, 'updatedAt': BIG})
        got = c.find_one_and_update({'_id': 'h'},
                                    {'$set': {'targetUrl': 'u2', 'updatedAt': BIG + 1}},
                                    projection={'createdAt': 1},
                                    return_document=pymongo.ReturnDocument.AFTER)
        self.assertEqual(got, {'_id': 'h', 'createdAt': BIG})
        self.assertIs(type(got['createdAt']), Int64)
        self.assertEqual(c.find_one({'_id': 'h'})['targetUrl'], 'u2')
        self.assertIsNone(c.find_one_and_update({'_id': 'nope'}, {'$set': {'x': 1}}))

    def test_attempts_bulk_and_states(self):
        d = self.db.deliveries
        ev = 'e1'
        ops = []
        for i in range(5):
            for attempt in (1, 2):
                ops.append(UpdateOne(
                    {'_id': '%s:d%d' % (ev, i)},
                    {'$set': {'status': 1 if attempt == 2 else 0, 'targetUrl': 'u%d' % i},
                     '$setOnInsert': {'eventId': ev, 'deliveryId': 'd%d' % i,
                                      'webhookId': 'h%d' % i},
                     '$push': {'attempts': {'attempt': attempt, 'at': BIG,
                                            'httpStatus': None, 'error': 'x',
                                            'durationMs': 3}}},
                    upsert=True))
        r = d.bulk_write(ops, ordered=True)
        self.assertEqual((r.upserted_count, r.matched_count, r.modified_count), (5, 5, 5))
        d.insert_one({'_id': '%s:old' % ev, 'status': 0})  # no attempts array
        # mongo_delivery_states: $in on _id, projected to status and the number of attempts.
        ids = ['%s:d%d' % (ev, i) for i in (0, 3, 9)] + ['%s:old' % ev]
        got = {x['_id']: x for x in d.find({'_id': {'$in': ids}},
                                           {'status': 1, 'attempts': {
                                               '$size': {'$ifNull': ['$attempts', []]}}})}
        self.assertEqual(got, {'e1:d0': {'_id': 'e1:d0', 'status': 1, 'attempts': 2},
                               'e1:d3': {'_id': 'e1:d3', 'status': 1, 'attempts': 2},
                               'e1:old': {'_id': 'e1:old', 'status': 0, 'attempts': 0}})
        # mongo_list_deliveries: the _id range of one event, in _id order, a page at a time.
        d.insert_one({'_id': 'e0:zz'})
        d.insert_one({'_id': 'e2:aa'})
        page = list(d.find({'_id': {'$gt': ev + ':', '$lt': ev + ';'}}).sort('_id', 1)
                    .limit(3).batch_size(3))
        self.assertEqual([x['_id'] for x in page], ['e1:d0', 'e1:d1', 'e1:d2'])
        self.assertEqual([a['attempt'] for a in page[0]['attempts']], [1, 2])
        self.assertIs(type(page[0]['attempts'][0]['at']), Int64)
        page = list(d.find({'_id': {'$gt': page[-1]['_id'], '$lt': ev + ';'}})
                    .sort('_id', 1).limit(3))
        self.assertEqual([x['_id'] for x in page], ['e1:d3', 'e1:d4', 'e1:old'])

    def test_event_counters(self):
        ev = self.db.events
        ev.insert_one({'_id': 'old', 'targets': Int64(2)})  # written before items existed
        ev.insert_one({'_id': 'new', 'targets': Int64(2), 'items': Int64(0),
                       'fanned': Int64(0), 'succeeded': Int64(0), 'done': False})
        for _id in ('old', 'new'):
            # count_event_item for item 0: items is 0 or missing.
            r = ev.update_one({'_id': _id, 'items': {'$in': [Int64(0), None]}},
                              {'$inc': {'fanned': Int64(2)},
                               '$set': {'items': Int64(1), 'done': True}})
            self.assertEqual(r.matched_count, 1, _id)
            # Taken again: matches nothing.
            r = ev.update_one({'_id': _id, 'items': {'$in': [Int64(0), None]}},
                              {'$inc': {'fanned': Int64(2)}})
            self.assertEqual(r.matched_count, 0, _id)
            r = ev.update_one({'_id': _id, 'items': Int64(1)}, {'$set': {'items': Int64(2)}})
            self.assertEqual(r.matched_count, 1, _id)
        ev.bulk_write([UpdateOne({'_id': 'new'}, {'$inc': {'succeeded': Int64(2)}})])
        d = ev.find_one({'_id': 'new'})
        self.assertEqual((d['fanned'], d['items'], d['succeeded'], d['done']), (2, 2, 2, True))
        self.assertTrue(all(type(d[k]) is Int64 for k in ('fanned', 'items', 'succeeded')))
        self.assertEqual(ev.count_documents({}), 2)
        self.assertEqual(ev.count_documents({'done': True}), 2)

    def test_pages_in_id_order_with_limit_and_no_limit(self):
        c = self.db.webhooks
        ids = ['%08x' % (i * 7919 % 1000) for i in range(300)]
        c.bulk_write([InsertOne({'_id': i}) for i in ids])
        got, after = [], None
        while True:
            f = {'_id': {'$gt': after}} if after else {}
            page = [d['_id'] for d in c.find(f).sort('_id', 1).limit(64).batch_size(64)]
            got += page
            if len(page) < 64:
                break
            after = page[-1]
        self.assertEqual(got, sorted(ids))
        # No limit: the first batch, then getMore.
        self.assertEqual([d['_id'] for d in c.find().sort('_id', -1)], sorted(ids)[::-1])
        self.assertEqual(c.find_one(sort=[('_id', -1)], projection={'_id': 1})['_id'],
                         max(ids))

    # -- 5. concurrency, hello ------------------------------------------------------------

    def test_concurrent_incs_lose_nothing(self):
        c = self.db.c
        c.insert_one({'_id': 'n', 'n': Int64(0)})
        clients = [client(self.server) for _ in range(8)]
        errors = []

        def work(cl):
            try:
                coll = cl[self.db.name].c
                for _ in range(50):
                    coll.update_one({'_id': 'n'}, {'$inc': {'n': Int64(1)}})
            except Exception as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=work, args=(cl,)) for cl in clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        for cl in clients:
            cl.close()
        self.assertEqual(errors, [])
        self.assertEqual(c.find_one({'_id': 'n'})['n'], 400)

    def test_hello_and_awaitable_hello(self):
        admin = self.client.admin
        a = admin.command('hello')
        b = admin.command('hello')
        self.assertEqual(a['topologyVersion'], b['topologyVersion'])
        self.assertIs(type(a['topologyVersion']['counter']), Int64)
        t0 = time.monotonic()
        admin.command({'hello': 1, 'topologyVersion': a['topologyVersion'],
                       'maxAwaitTimeMS': Int64(400)})
        self.assertGreaterEqual(time.monotonic() - t0, 0.35)
        # Other commands are not held up meanwhile (another connection).
        t0 = time.monotonic()
        done = threading.Event()
        th = threading.Thread(target=lambda: (admin.command(
            {'hello': 1, 'topologyVersion': a['topologyVersion'],
             'maxAwaitTimeMS': Int64(1500)}), done.set()))
        th.start()
        time.sleep(0.1)
        self.db.c.insert_one({'x': 1})
        self.assertLess(time.monotonic() - t0, 1.0)
        self.assertFalse(done.is_set())
        th.join(5)
        self.assertTrue(done.is_set())

    # -- 9. createIndexes -----------------------------------------------------------------

    def test_indexes_over_string_ids(self):
        c = self.db.events
        c.insert_many([{'_id': UUID_ID, 'createdAt': BIG, 'open': True},
                       {'_id': HEX_ID, 'createdAt': SMALL}])
        self.assertEqual(c.create_index([('open', 1)], name='open_1', sparse=True), 'open_1')
        self.assertEqual(c.create_index([('createdAt', 1)], name='createdAt_1'), 'createdAt_1')
        # Inserts and queries go on as before.
        c.insert_one({'_id': 'later', 'createdAt': Int64(7)})
        self.assertEqual([d['_id'] for d in c.find({'createdAt': {'$lt': BIG}})
                          .sort('createdAt', 1)], [HEX_ID, 'later'])
        with self.assertRaises(pymongo.errors.OperationFailure):
            self.db.command({'createIndexes': 'events', 'indexes': 'nope'})

    def test_unsupported_operator_is_an_error(self):
        c = self.db.c
        c.insert_one({'x': 1})
        with self.assertRaises(pymongo.errors.OperationFailure) as cm:
            list(c.find({'x': {'$near': [0, 0]}}))
        self.assertIn('not supported by this stand-in', str(cm.exception))


class AsPublishedTest(CongoCase):
    """CongoDB without the patches: each defect the patches fix is there, so the checks above
    would catch it."""

    flags = ('--as-published',)

    def test_string_ids_are_made_object_ids_or_refused(self):
        c = self.db.c
        c.insert_one({'_id': HEX_ID})
        self.assertIs(type(c.find_one()['_id']), ObjectId)
        with self.assertRaises(DuplicateKeyError):
            c.insert_one({'_id': UUID_ID})

    def test_int64_comes_back_int32_or_double(self):
        c = self.db.c
        c.insert_one({'big': BIG, 'small': SMALL})
        d = c.find_one()
        self.assertIs(type(d['big']), float)
        self.assertIs(type(d['small']), int)

    def test_strings_sort_by_locale(self):
        c = self.db.c
        c.insert_many([{'s': s} for s in STRINGS])
        up = [d['s'] for d in c.find().sort('s', 1)]
        self.assertNotEqual(up, CODE_POINT_ORDER)
        self.assertLess(up.index('a'), up.index('B'))  # code point order: 'B' < 'a'


if __name__ == '__main__':
    unittest.main(verbosity=2)
