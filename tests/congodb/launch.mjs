#!/usr/bin/env node
// launch.mjs -- a MongoDB stand-in for the tests: CongoDB, the in-memory MongoDB wire-protocol
// server inside @push.rocks/smartmongo 2.2.0 (installed by scripts/congodb-install.sh), with the
// patches below. It is NOT MongoDB: it keeps everything in memory, has no replica set, journal
// or write concern (writes are acknowledged at once), ignores indexes other than _id's, and
// runs one command at a time. It exists so that webhooks-svc's MongoDB backend runs the store
// contract and the delivery suite where no MongoDB server can be installed.
//
//   node launch.mjs [--host 127.0.0.1] [--port 0] [--modules DIR] [--as-published]
//                   [--log-commands]
//
// It prints "listening <port>" on stdout (0 picks a free port), then "congodb: ready on
// <host>:<port>" on stderr, and runs until SIGTERM or SIGINT. --modules names the node_modules
// folder that holds the package (default: $CONGODB_MODULES, else build/congodb/node_modules of
// this checkout). --as-published starts CongoDB without any patch (tests/congodb/
// test_congodb.py uses it to show that each defect is real); --log-commands logs every command.
// Whatever the flags, a command that fails is logged on stderr.
//
// Patches, as published -> here (each checked by tests/congodb/test_congodb.py):
//  1. _id: a string _id is made an ObjectId (a 24-hex one) or refused with code 11000 (any
//     other string) -> every _id is kept as it was sent (string, ObjectId, number, ...); the
//     storage is keyed by the _id's type and value, as MongoDB's _id index is.
//  2. int64: every integer came back as int32 when it fits, else as a double -> int64 values
//     are read as BigInt and written back as int64; $inc/$mul keep MongoDB's types (int64 stays
//     int64, an int32 that overflows becomes int64). Left as published: an integral double
//     (2.0) is read as a JS number and comes back as int32 (webhooks-svc writes no doubles).
//  3. strings were sorted, and compared by $max/$min, with localeCompare ("a" < "B") -> binary
//     order of code points (MongoDB's default, no collation), and values of different types in
//     MongoDB's type order (null < numbers < strings < objects < arrays < ObjectId < bool < date).
//  And what webhooks-svc's backend needs besides (store_mongo.c):
//  4. queries: mingo compared int64 (BigInt) values as text and never equal to the same number
//     as an int32 -> a matcher of our own ($eq $ne $gt $gte $lt $lte $in $nin $exists $not $and
//     $or $nor $size $all $elemMatch $regex $type $mod, dotted paths through arrays, MongoDB's
//     type bracketing); find/update/delete by _id (equality or $in) look the key up instead of
//     scanning the collection.
//  5. find projections with expressions ({attempts: {$size: {$ifNull: ["$attempts", []]}}})
//     dropped the field -> run through mingo's $project; flag projections keep document order.
//  6. updates: upserts now take the filter's equality fields (with _id) and $setOnInsert with
//     dotted paths, nModified no longer JSON.stringify()s (which throws on BigInt), changing
//     _id is refused (66), $inc on a non-number is refused (14); findAndModify likewise.
//  7. concurrency: commands of different connections interleaved at every await (a $inc could
//     be lost) -> one command at a time, in arrival order. hello: every reply had a new
//     topologyVersion.processId, and an awaitable hello (topologyVersion + maxAwaitTimeMS,
//     libmongoc's streaming server monitor) was answered at once -> one processId for the life
//     of the server, and an awaitable hello is answered after maxAwaitTimeMS, outside the queue,
//     as a server does (so libmongoc's pool takes as long to stop as with MongoDB: up to the
//     monitor's 500 ms poll tick).
//  8. insert: a falsy _id ("" or 0) was replaced by a new ObjectId -> only a missing one is.
//  9. createIndexes: building an index over documents with string _ids (kept by patch 1)
//     threw "doc._id.toHexString is not a function", and an index once made broke every later
//     insert the same way -> createIndexes is checked and acknowledged as MongoDB answers it,
//     and no index is built (queries never used them: patch 4 scans or looks up _id).
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));

function usage(msg) {
  process.stderr.write(`congodb: ${msg}\nusage: node launch.mjs [--host H] [--port N] ` +
    '[--modules DIR] [--as-published] [--log-commands]\n');
  process.exit(2);
}

const opts = {
  host: '127.0.0.1',
  port: 0,
  modules: process.env.CONGODB_MODULES || path.resolve(HERE, '../../build/congodb/node_modules'),
  patched: true,
  logCommands: false,
};
{
  const argv = process.argv.slice(2);
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    if (a === '--host') opts.host = value();
    else if (a === '--port') {
      opts.port = Number(value());
      if (!Number.isInteger(opts.port) || opts.port < 0 || opts.port > 65535) usage('bad --port');
    } else if (a === '--modules') opts.modules = path.resolve(value());
    else if (a === '--as-published') opts.patched = false;
    else if (a === '--log-commands') opts.logCommands = true;
    else usage(`unknown argument ${a}`);
  }
}

const congoDir = path.join(opts.modules, '@push.rocks', 'smartmongo', 'dist_ts', 'congodb');
async function load(rel) {
  try {
    return await import(pathToFileURL(path.join(congoDir, rel)).href);
  } catch (e) {
    process.stderr.write(`congodb: cannot load ${path.join(congoDir, rel)}: ${e.message}\n` +
      'congodb: install it with scripts/congodb-install.sh (ctest runs it as congodb_install)\n');
    process.exit(1);
  }
}
const congo = await load('index.js');
const handlers = await load('server/handlers/index.js');
// The package's own bson and mingo (re-exported), so that instanceof agrees with its code.
const { bson, mingo } = congo.plugins;
const { CongoServer, WireProtocol, CommandRouter, QueryEngine, UpdateEngine,
  AggregationEngine, MemoryStorageAdapter } = congo;
const { HelloHandler, InsertHandler, FindHandler, UpdateHandler, DeleteHandler,
  IndexHandler } = handlers;

const log = (msg) => process.stderr.write(`congodb: ${msg}\n`);

// ---------------------------------------------------------------------------------------------
// Errors with MongoDB's codes

function mongoError(code, codeName, message, extra = {}) {
  return Object.assign(new Error(message), { code, codeName }, extra);
}
const badValue = (msg) => mongoError(2, 'BadValue', msg);
const typeMismatch = (msg) => mongoError(14, 'TypeMismatch', msg);

function writeError(index, e) {
  const out = { index, code: typeof e.code === 'number' ? e.code : 1,
    errmsg: e.message || 'write failed' };
  if (e.keyPattern) {
    out.keyPattern = e.keyPattern;
    out.keyValue = e.keyValue;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Values: types, comparison, equality

const isPlain = (v) => v !== null && typeof v === 'object' &&
  (Object.getPrototypeOf(v) === Object.prototype || Object.getPrototypeOf(v) === null);
const isNumeric = (v) => typeof v === 'number' || typeof v === 'bigint';
const isRegex = (v) => v instanceof RegExp || v?._bsontype === 'BSONRegExp';
const isInt32 = (n) => Number.isInteger(n) && n >= -2147483648 && n <= 2147483647;

function toRegExp(v, options) {
  if (v instanceof RegExp) return options ? new RegExp(v.source, options) : v;
  if (v?._bsontype === 'BSONRegExp') return new RegExp(v.pattern, (options ?? v.options).replace(/[^imsu]/g, ''));
  return new RegExp(String(v), (options || '').replace(/[^imsu]/g, ''));
}

// MongoDB's order of types (MinKey < null < numbers < strings < objects < arrays < binary data
// < ObjectId < booleans < dates < timestamps < regular expressions < MaxKey).
function typeRank(v) {
  if (v === undefined || v === null) return 1;
  switch (typeof v) {
    case 'number': case 'bigint': return 2;
    case 'string': return 3;
    case 'boolean': return 8;
    default: break;
  }
  if (Array.isArray(v)) return 5;
  if (v instanceof Date) return 9;
  if (v instanceof RegExp) return 11;
  switch (v._bsontype) {
    case 'MinKey': return 0;
    case 'Int32': case 'Double': case 'Long': case 'Decimal128': return 2;
    case 'BSONSymbol': return 3;
    case 'Binary': return 6;
    case 'ObjectId': case 'ObjectID': return 7;
    case 'Timestamp': return 10;
    case 'BSONRegExp': return 11;
    case 'MaxKey': return 12;
    default: return 4;
  }
}

function numValue(v) {
  if (typeof v === 'number' || typeof v === 'bigint') return v;
  switch (v._bsontype) {
    case 'Long': return v.toBigInt();
    case 'Decimal128': return Number(v.toString());
    default: return Number(v.valueOf());
  }
}

function cmpNum(a, b) {
  a = numValue(a);
  b = numValue(b);
  // Mixed BigInt and number compare exactly with < and >; NaN sorts before every number.
  const an = a !== a, bn = b !== b; // eslint-disable-line no-self-compare
  if (an || bn) return an && bn ? 0 : an ? -1 : 1;
  return a < b ? -1 : a > b ? 1 : 0;
}

// Strings in code point order, which is UTF-8 byte order, MongoDB's without a collation. UTF-16
// code units give the same order except that surrogates (U+10000 and up) must come after
// U+E000..U+FFFF: move the code units so that they do.
function cmpStr(a, b) {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i), y = b.charCodeAt(i);
    if (x !== y) {
      if (x >= 0xd800 && y >= 0xd800) {
        x = x >= 0xe000 ? x - 0x800 : x + 0x2000;
        y = y >= 0xe000 ? y - 0x800 : y + 0x2000;
      }
      return x < y ? -1 : 1;
    }
  }
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

function cmpBytes(a, b) {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i] < b[i] ? -1 : 1;
  return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
}

function cmp(a, b) {
  const ra = typeRank(a), rb = typeRank(b);
  if (ra !== rb) return ra < rb ? -1 : 1;
  switch (ra) {
    case 0: case 1: case 12: return 0;
    case 2: return cmpNum(a, b);
    case 3: return cmpStr(String(a.valueOf()), String(b.valueOf()));
    case 4: {
      const ka = Object.keys(a), kb = Object.keys(b);
      for (let i = 0; i < Math.min(ka.length, kb.length); i++) {
        const c = typeRank(a[ka[i]]) - typeRank(b[kb[i]]) || cmpStr(ka[i], kb[i]) || cmp(a[ka[i]], b[kb[i]]);
        if (c) return c < 0 ? -1 : 1;
      }
      return ka.length < kb.length ? -1 : ka.length > kb.length ? 1 : 0;
    }
    case 5: {
      for (let i = 0; i < Math.min(a.length, b.length); i++) {
        const c = cmp(a[i], b[i]);
        if (c) return c;
      }
      return a.length < b.length ? -1 : a.length > b.length ? 1 : 0;
    }
    case 6: {
      const x = a.buffer ?? a, y = b.buffer ?? b;
      if (x.length !== y.length) return x.length < y.length ? -1 : 1;
      if (a.sub_type !== b.sub_type) return a.sub_type < b.sub_type ? -1 : 1;
      return cmpBytes(x, y);
    }
    case 7: return cmpBytes(a.id, b.id);
    case 8: return a === b ? 0 : a ? 1 : -1;
    case 9: return cmpNum(a.getTime(), b.getTime());
    case 10: return cmpNum(a.t, b.t) || cmpNum(a.i, b.i);
    case 11: {
      const x = toRegExp(a), y = toRegExp(b);
      return cmpStr(x.source, y.source) || cmpStr(x.flags, y.flags);
    }
    default: return 0;
  }
}

// Equality as a query means it: numbers of any type by value, everything else by type and value.
const equal = (a, b) => typeRank(a) === typeRank(b) && cmp(a, b) === 0;

// Equality as a stored document means it (nModified): the same BSON types too.
function sameBson(a, b) {
  if (typeof a !== typeof b) return false;
  if (typeof a === 'number') return Object.is(a, b) || a === b;
  if (a === null || typeof a !== 'object') return a === b;
  if (Array.isArray(a)) return Array.isArray(b) && a.length === b.length && a.every((v, i) => sameBson(v, b[i]));
  if (isPlain(a)) {
    if (!isPlain(b)) return false;
    const ka = Object.keys(a), kb = Object.keys(b);
    return ka.length === kb.length && ka.every((k, i) => k === kb[i] && sameBson(a[k], b[k]));
  }
  return typeRank(a) === typeRank(b) && a.constructor === b.constructor && cmp(a, b) === 0;
}

// A text key of a value, equal for values MongoDB takes as equal (1, 1n and 1.0 alike).
function canonical(v) {
  if (v === undefined) return 'u';
  if (v === null) return 'z';
  switch (typeof v) {
    case 'string': return 's' + JSON.stringify(v);
    case 'number': return 'n' + (Number.isInteger(v) ? BigInt(v).toString() : String(v));
    case 'bigint': return 'n' + v.toString();
    case 'boolean': return v ? 'T' : 'F';
    default: break;
  }
  if (Array.isArray(v)) return '[' + v.map(canonical).join(',') + ']';
  if (v instanceof Date) return 'd' + v.getTime();
  if (v instanceof RegExp) return 'r' + v.toString();
  if (isPlain(v)) return '{' + Object.keys(v).map((k) => JSON.stringify(k) + ':' + canonical(v[k])).join(',') + '}';
  if (v._bsontype === 'ObjectId') return 'o' + v.toHexString();
  if (typeRank(v) === 2) return canonical(numValue(v));
  return 'x' + bson.EJSON.stringify({ v }, { relaxed: false });
}
const idKey = canonical;

// ---------------------------------------------------------------------------------------------
// Queries

const isOperatorObject = (v) => {
  if (!isPlain(v)) return false;
  const k = Object.keys(v);
  return k.length > 0 && k[0][0] === '$';
};

// Every value the path reaches, MongoDB's way: through arrays of documents at any level, and at
// the end both an array and its elements. A path that reaches nothing gives [undefined].
function pathValues(value, parts, i = 0, out = []) {
  if (i === parts.length) {
    out.push(value);
    if (Array.isArray(value)) out.push(...value);
    return out;
  }
  if (Array.isArray(value)) {
    const p = parts[i];
    const before = out.length;
    if (/^\d+$/.test(p) && Number(p) < value.length) pathValues(value[Number(p)], parts, i + 1, out);
    for (const e of value) if (isPlain(e)) pathValues(e[p], parts, i + 1, out);
    if (out.length === before) out.push(undefined);
    return out;
  }
  if (value !== null && typeof value === 'object' && !(value instanceof Date) && !value._bsontype) {
    return pathValues(value[parts[i]], parts, i + 1, out);
  }
  out.push(undefined);
  return out;
}

const eqQuery = (v, arg) => (arg === null ? v === null || v === undefined : v !== undefined && equal(v, arg));

function regexTest(re, v) {
  if (typeof v !== 'string') return isRegex(v) && cmp(v, re) === 0;
  re.lastIndex = 0;
  return re.test(v);
}

const TYPE_NAMES = {
  1: 'double', 2: 'string', 3: 'object', 4: 'array', 5: 'binData', 7: 'objectId', 8: 'bool',
  9: 'date', 10: 'null', 11: 'regex', 16: 'int', 17: 'timestamp', 18: 'long', 19: 'decimal',
  [-1]: 'minKey', 127: 'maxKey',
};
function bsonTypeName(v) {
  if (v === null) return 'null';
  switch (typeof v) {
    case 'string': return 'string';
    case 'boolean': return 'bool';
    case 'bigint': return 'long';
    case 'number': return isInt32(v) ? 'int' : 'double';
    case 'undefined': return 'missing';
    default: break;
  }
  if (Array.isArray(v)) return 'array';
  if (v instanceof Date) return 'date';
  if (v instanceof RegExp) return 'regex';
  return { ObjectId: 'objectId', Binary: 'binData', Timestamp: 'timestamp', BSONRegExp: 'regex',
    Decimal128: 'decimal', Long: 'long', Int32: 'int', Double: 'double', MinKey: 'minKey',
    MaxKey: 'maxKey' }[v._bsontype] ?? 'object';
}
function hasType(v, t) {
  if (Array.isArray(t)) return t.some((x) => hasType(v, x));
  const name = typeof t === 'string' ? t : TYPE_NAMES[Number(t)];
  if (name === 'number') return typeRank(v) === 2;
  return bsonTypeName(v) === name;
}

function matchOps(values, ops, leaf) {
  for (const op of Object.keys(ops)) {
    const arg = ops[op];
    let ok;
    switch (op) {
      case '$eq': ok = values.some((v) => eqQuery(v, arg)); break;
      case '$ne': ok = !values.some((v) => eqQuery(v, arg)); break;
      case '$gt': case '$gte': case '$lt': case '$lte': {
        const want = { $gt: (c) => c > 0, $gte: (c) => c >= 0, $lt: (c) => c < 0, $lte: (c) => c <= 0 }[op];
        if (arg === null) ok = (op === '$gte' || op === '$lte') && values.some((v) => eqQuery(v, null));
        else ok = values.some((v) => v !== undefined && typeRank(v) === typeRank(arg) && want(cmp(v, arg)));
        break;
      }
      case '$in': case '$nin': {
        if (!Array.isArray(arg)) throw badValue(`${op} needs an array`);
        const hit = values.some((v) => arg.some((a) => (isRegex(a) ? regexTest(toRegExp(a), v) : eqQuery(v, a))));
        ok = op === '$in' ? hit : !hit;
        break;
      }
      case '$exists': ok = values.some((v) => v !== undefined) === Boolean(numValueOr(arg)); break;
      case '$not':
        ok = isRegex(arg) ? !values.some((v) => regexTest(toRegExp(arg), v)) : !matchOps(values, arg, leaf);
        break;
      case '$size': ok = leaf.some((v) => Array.isArray(v) && v.length === Number(arg)); break;
      case '$all':
        if (!Array.isArray(arg)) throw badValue('$all needs an array');
        ok = arg.length > 0 && arg.every((a) => values.some((v) => eqQuery(v, a)));
        break;
      case '$elemMatch':
        ok = leaf.some((v) => Array.isArray(v) && v.some((e) => (isOperatorObject(arg) && !isPlain(e)
          ? matchOps([e], arg, [e]) : isPlain(e) && matches(e, arg))));
        break;
      case '$regex': {
        const re = toRegExp(arg, ops.$options);
        ok = values.some((v) => regexTest(re, v));
        break;
      }
      case '$options': ok = true; break;
      case '$type': ok = values.some((v) => v !== undefined && hasType(v, arg)); break;
      case '$mod': {
        const [d, r] = arg.map(Number);
        ok = values.some((v) => typeRank(v) === 2 && Math.trunc(Number(numValue(v))) % d === r);
        break;
      }
      case '$comment': ok = true; break;
      default: throw badValue(`unknown operator: ${op} (not supported by this stand-in)`);
    }
    if (!ok) return false;
  }
  return true;
}
function numValueOr(v) {
  return typeof v === 'bigint' ? Number(v) : v;
}

function matches(doc, filter) {
  for (const key of Object.keys(filter)) {
    const cond = filter[key];
    if (key[0] === '$') {
      switch (key) {
        case '$and': if (!cond.every((f) => matches(doc, f))) return false; break;
        case '$or': if (!cond.some((f) => matches(doc, f))) return false; break;
        case '$nor': if (cond.some((f) => matches(doc, f))) return false; break;
        case '$comment': break;
        default: throw badValue(`unknown top level operator: ${key} (not supported by this stand-in)`);
      }
      continue;
    }
    const parts = key.split('.');
    const values = pathValues(doc, parts);
    if (isRegex(cond)) {
      const re = toRegExp(cond);
      if (!values.some((v) => regexTest(re, v))) return false;
    } else if (isOperatorObject(cond)) {
      // $size and $elemMatch look at the arrays themselves, not at their elements.
      const leaf = cond.$size !== undefined || cond.$elemMatch !== undefined
        ? leafValues(doc, parts) : values;
      if (!matchOps(values, cond, leaf)) return false;
    } else if (!values.some((v) => eqQuery(v, cond))) {
      return false;
    }
  }
  return true;
}
function leafValues(doc, parts) {
  const out = [];
  (function walk(value, i) {
    if (i === parts.length) { out.push(value); return; }
    if (Array.isArray(value)) { for (const e of value) if (isPlain(e)) walk(e[parts[i]], i + 1); return; }
    if (isPlain(value)) walk(value[parts[i]], i + 1);
  })(doc, 0);
  return out;
}

function collection(storage, db, coll) {
  return storage.databases.get(db)?.get(coll);
}

// The documents that may match: by key when the filter fixes _id (a value, {$eq} or {$in}),
// else all of them, in insertion order; then the filter itself.
function select(storage, db, coll, filter) {
  const c = collection(storage, db, coll);
  if (!c) return [];
  filter = filter || {};
  const id = filter._id;
  let docs;
  if (id !== undefined && !isOperatorObject(id) && !isRegex(id)) {
    const d = c.get(idKey(id));
    docs = d ? [d] : [];
  } else if (isOperatorObject(id) && Object.keys(id).length === 1 && id.$eq !== undefined && !isRegex(id.$eq)) {
    const d = c.get(idKey(id.$eq));
    docs = d ? [d] : [];
  } else if (isOperatorObject(id) && Object.keys(id).length === 1 && Array.isArray(id.$in) &&
             !id.$in.some(isRegex)) {
    const seen = new Set();
    docs = [];
    for (const v of id.$in) {
      const k = idKey(v);
      const d = c.get(k);
      if (d && !seen.has(k)) {
        seen.add(k);
        docs.push(d);
      }
    }
  } else {
    docs = Array.from(c.values());
  }
  return Object.keys(filter).length === 0 ? docs : docs.filter((d) => matches(d, filter));
}

function sortSpec(spec) {
  const entries = Array.isArray(spec) ? spec : Object.entries(spec);
  return entries.map(([field, dir]) => {
    if (isPlain(dir)) throw badValue(`sort by ${JSON.stringify(dir)} is not supported by this stand-in`);
    const d = typeof dir === 'string' ? (/^(asc|ascending)$/i.test(dir) ? 1 : -1) : Number(dir);
    if (d !== 1 && d !== -1) throw badValue(`bad sort direction for ${field}`);
    return [field, d];
  });
}

// MongoDB's sort key of one field: a missing field sorts as null; an array by its smallest
// element ascending, its greatest descending.
function sortKey(doc, field, dir) {
  const values = leafValues(doc, field.split('.'));
  let best;
  let any = false;
  for (const v of values) {
    const items = Array.isArray(v) ? (v.length ? v : [undefined]) : [v];
    for (const x of items) {
      if (!any || cmp(x, best) * dir < 0) best = x;
      any = true;
    }
  }
  return any ? best : undefined;
}

function sortDocs(docs, spec) {
  const fields = sortSpec(spec);
  if (fields.length === 0) return docs;
  return docs
    .map((d, i) => ({ d, i, k: fields.map(([f, dir]) => sortKey(d, f, dir)) }))
    .sort((a, b) => {
      for (let j = 0; j < fields.length; j++) {
        const c = cmp(a.k[j], b.k[j]) * fields[j][1];
        if (c) return c;
      }
      return a.i - b.i;
    })
    .map((x) => x.d);
}

// A find projection (or findAndModify's fields). Flags only (1/0/true/false, no dotted path):
// here, keeping the document's order; anything else (expressions, dotted paths, $slice...):
// mingo's $project, which is the aggregation stage of the same name.
function projectDocs(docs, projection) {
  const spec = {};
  for (const [k, v] of Object.entries(projection)) spec[k] = typeof v === 'bigint' ? Number(v) : v;
  const keys = Object.keys(spec);
  if (keys.length === 0) return docs;
  const isFlag = (v) => typeof v === 'number' || typeof v === 'boolean';
  if (keys.some((k) => !isFlag(spec[k]) || k.includes('.'))) {
    return new mingo.Aggregator([{ $project: spec }]).run(docs).map((d) => ('_id' in d ? idFirst(d) : d));
  }
  const on = (v) => Boolean(v);
  const include = keys.filter((k) => k !== '_id' && on(spec[k]));
  const exclude = keys.filter((k) => k !== '_id' && !on(spec[k]));
  if (include.length && exclude.length) {
    throw mongoError(31254, 'Location31254', 'Cannot do exclusion on a field in inclusion projection');
  }
  const withId = spec._id === undefined || on(spec._id);
  return docs.map((doc) => {
    const out = {};
    for (const k of Object.keys(doc)) {
      if (k === '_id' ? withId : include.length ? include.includes(k) : !exclude.includes(k)) out[k] = doc[k];
    }
    return out;
  });
}

// ---------------------------------------------------------------------------------------------
// Updates

function addNumbers(a, b) {
  a = numValue(a);
  b = numValue(b);
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    // A double involved gives a double; int64 with int32 or int64 gives int64.
    if ((typeof a === 'number' && !Number.isInteger(a)) || (typeof b === 'number' && !Number.isInteger(b))) {
      return Number(a) + Number(b);
    }
    return BigInt(a) + BigInt(b);
  }
  const r = a + b;
  // int32 + int32 that overflows becomes int64, as in MongoDB.
  if (isInt32(a) && isInt32(b) && !isInt32(r)) return BigInt(a) + BigInt(b);
  return r;
}
function mulNumbers(a, b) {
  a = numValue(a);
  b = numValue(b);
  if (typeof a === 'bigint' || typeof b === 'bigint') {
    if ((typeof a === 'number' && !Number.isInteger(a)) || (typeof b === 'number' && !Number.isInteger(b))) {
      return Number(a) * Number(b);
    }
    return BigInt(a) * BigInt(b);
  }
  const r = a * b;
  if (isInt32(a) && isInt32(b) && !isInt32(r)) return BigInt(a) * BigInt(b);
  return r;
}

function deepClone(v) {
  if (v === null || typeof v !== 'object') return v;
  if (Array.isArray(v)) return v.map(deepClone);
  if (v instanceof Date) return new Date(v.getTime());
  if (isPlain(v)) {
    const out = {};
    for (const k of Object.keys(v)) out[k] = deepClone(v[k]);
    return out;
  }
  return v; // bson's value classes (ObjectId, Binary, ...) are never changed in place
}

function setPath(doc, pathStr, value) {
  const parts = pathStr.split('.');
  let cur = doc;
  for (let i = 0; i < parts.length - 1; i++) {
    const p = parts[i];
    if (cur[p] === undefined || cur[p] === null) cur[p] = /^\d+$/.test(parts[i + 1]) && Array.isArray(cur) ? [] : {};
    cur = cur[p];
    if (cur === null || typeof cur !== 'object') {
      throw mongoError(28, 'PathNotViable', `Cannot create field '${parts[i + 1]}' in element {${p}: ...}`);
    }
  }
  cur[parts[parts.length - 1]] = value;
}
function getPath(doc, pathStr) {
  let cur = doc;
  for (const p of pathStr.split('.')) {
    if (cur === null || typeof cur !== 'object') return undefined;
    cur = cur[p];
  }
  return cur;
}

// The document an upsert starts from: the filter's equality conditions (top level, $eq, $and).
function upsertBase(filter, out = {}) {
  for (const [k, v] of Object.entries(filter || {})) {
    if (k === '$and' && Array.isArray(v)) {
      for (const f of v) upsertBase(f, out);
    } else if (k[0] === '$') {
      continue;
    } else if (isOperatorObject(v)) {
      if (v.$eq !== undefined) setPath(out, k, deepClone(v.$eq));
    } else if (!isRegex(v)) {
      setPath(out, k, deepClone(v));
    }
  }
  return out;
}

function idFirst(doc) {
  if (doc._id === undefined) return { _id: new bson.ObjectId(), ...doc };
  const { _id, ...rest } = doc;
  return { _id, ...rest };
}

const isReplacement = (u) => !Array.isArray(u) && !Object.keys(u).some((k) => k[0] === '$');

// The document after update u; throws when the update is not valid for it.
function applyUpdate(doc, u, arrayFilters, inserting) {
  if (Array.isArray(u)) throw badValue('pipeline updates are not supported by this stand-in');
  let out;
  if (isReplacement(u)) {
    if (u._id !== undefined && doc._id !== undefined && !sameBson(u._id, doc._id)) {
      throw mongoError(66, 'ImmutableField', "the (immutable) field '_id' was found to have been altered");
    }
    out = { ...deepClone(u) };
    if (doc._id !== undefined) out._id = doc._id;
    return idFirst(out);
  }
  out = UpdateEngine.applyUpdate(doc, u, arrayFilters);
  if (inserting && u.$setOnInsert) UpdateEngine.applySet(out, u.$setOnInsert);
  if (!inserting && out._id !== doc._id && !sameBson(out._id, doc._id)) {
    throw mongoError(66, 'ImmutableField', "Performing an update on the path '_id' would modify the immutable field '_id'");
  }
  return out;
}

// One update statement: {n, nModified, upsertedId?}.
async function updateStatement(storage, db, coll, spec) {
  const q = spec.q || {};
  const u = spec.u || {};
  let docs = select(storage, db, coll, q);
  if (!spec.multi) docs = docs.slice(0, 1);
  if (docs.length === 0 && spec.upsert) {
    const doc = idFirst(applyUpdate(upsertBase(q), u, spec.arrayFilters, true));
    await storage.insertOne(db, coll, doc);
    return { n: 1, nModified: 0, upsertedId: doc._id };
  }
  let modified = 0;
  for (const doc of docs) {
    const next = applyUpdate(doc, u, spec.arrayFilters, false);
    if (!sameBson(doc, next)) {
      await storage.updateById(db, coll, doc._id, next);
      modified++;
    }
  }
  return { n: docs.length, nModified: modified };
}

// ---------------------------------------------------------------------------------------------
// The patches

function patch() {
  // -- wire: int64 as BigInt; the command's own top-level options as numbers ------------------
  const DESERIALIZE = { useBigInt64: true };
  const normalize = (command) => {
    for (const [k, v] of Object.entries(command)) if (typeof v === 'bigint') command[k] = Number(v);
    if (isPlain(command.cursor) && typeof command.cursor.batchSize === 'bigint') {
      command.cursor.batchSize = Number(command.cursor.batchSize);
    }
    return command;
  };
  WireProtocol.parseOpMsg = function parseOpMsg(buffer, header) {
    let offset = 16;
    const flagBits = buffer.readUInt32LE(offset);
    offset += 4;
    const messageEnd = flagBits & 1 ? header.messageLength - 4 : header.messageLength;
    let command = null;
    const documentSequences = new Map();
    while (offset < messageEnd) {
      const kind = buffer.readUInt8(offset);
      offset += 1;
      if (kind === 0) {
        const size = buffer.readInt32LE(offset);
        command = bson.deserialize(buffer.subarray(offset, offset + size), DESERIALIZE);
        offset += size;
      } else if (kind === 1) {
        const size = buffer.readInt32LE(offset);
        const end = offset + size;
        let p = offset + 4;
        let nameEnd = p;
        while (nameEnd < end && buffer[nameEnd] !== 0) nameEnd++;
        const name = buffer.subarray(p, nameEnd).toString('utf8');
        p = nameEnd + 1;
        const docs = [];
        while (p < end) {
          const docSize = buffer.readInt32LE(p);
          docs.push(bson.deserialize(buffer.subarray(p, p + docSize), DESERIALIZE));
          p += docSize;
        }
        documentSequences.set(name, docs);
        offset = end;
      } else {
        throw new Error(`Unknown section type: ${kind}`);
      }
    }
    if (!command) throw new Error('OP_MSG missing command body section');
    normalize(command);
    return {
      command: {
        commandName: Object.keys(command)[0],
        command,
        database: command.$db || 'admin',
        requestID: header.requestID,
        opCode: header.opCode,
        documentSequences: documentSequences.size > 0 ? documentSequences : undefined,
      },
      bytesConsumed: header.messageLength,
    };
  };
  const parseOpQuery = WireProtocol.parseOpQuery;
  WireProtocol.parseOpQuery = function (buffer, header) {
    // The legacy handshake only (hello/isMaster): as published, then the same normalization.
    const out = parseOpQuery.call(this, buffer, header);
    normalize(out.command.command);
    return out;
  };

  // -- storage: keyed by the _id as it is --------------------------------------------------
  const S = MemoryStorageAdapter.prototype;
  S.insertOne = async function (db, coll, doc) {
    const c = this.ensureCollection(db, coll);
    const stored = idFirst(doc);
    const k = idKey(stored._id);
    if (c.has(k)) {
      throw mongoError(11000, 'DuplicateKey',
        `E11000 duplicate key error collection: ${db}.${coll} index: _id_ dup key: { _id: ${bson.EJSON.stringify(stored._id)} }`,
        { keyPattern: { _id: 1 }, keyValue: { _id: stored._id } });
    }
    c.set(k, stored);
    return stored;
  };
  S.findById = async function (db, coll, id) {
    return this.ensureCollection(db, coll).get(idKey(id)) || null;
  };
  S.updateById = async function (db, coll, id, doc) {
    const c = this.ensureCollection(db, coll);
    const k = idKey(id);
    if (!c.has(k)) return false;
    c.set(k, doc);
    return true;
  };
  S.deleteById = async function (db, coll, id) {
    return this.ensureCollection(db, coll).delete(idKey(id));
  };

  // -- queries, sorts, projections, comparisons --------------------------------------------
  QueryEngine.filter = (docs, filter) => (!filter || Object.keys(filter).length === 0
    ? docs : docs.filter((d) => matches(d, filter)));
  QueryEngine.matches = (doc, filter) => !filter || matches(doc, filter);
  QueryEngine.findOne = (docs, filter) => docs.find((d) => !filter || matches(d, filter)) ?? null;
  QueryEngine.sort = (docs, spec) => (spec ? sortDocs(docs, spec) : docs);
  QueryEngine.project = (docs, projection) => (projection ? projectDocs(docs, projection) : docs);
  QueryEngine.compareValues = cmp;

  const aggregate = AggregationEngine.aggregate;
  AggregationEngine.aggregate = function (docs, pipeline, options) {
    // Leading $match stages (countDocuments sends one) with the same matcher as find.
    let i = 0;
    while (i < (pipeline?.length ?? 0) && Object.keys(pipeline[i])[0] === '$match') {
      docs = docs.filter((d) => matches(d, pipeline[i].$match));
      i++;
    }
    return i === pipeline.length ? docs : aggregate.call(this, docs, pipeline.slice(i), options);
  };

  // -- update operators ------------------------------------------------------------------------
  UpdateEngine.compareValues = cmp;
  UpdateEngine.valuesEqual = equal;
  UpdateEngine.deepClone = deepClone;
  UpdateEngine.applyInc = function (doc, fields) {
    for (const [p, inc] of Object.entries(fields)) {
      if (!isNumeric(inc)) throw typeMismatch(`Cannot increment with non-numeric argument: {${p}: ${String(inc)}}`);
      const cur = getPath(doc, p);
      if (cur !== undefined && typeRank(cur) !== 2) {
        throw typeMismatch(`Cannot apply $inc to a value of non-numeric type. {_id: ${bson.EJSON.stringify(doc._id)}} has the field '${p}' of non-numeric type ${bsonTypeName(cur)}`);
      }
      setPath(doc, p, cur === undefined ? inc : addNumbers(cur, inc));
    }
  };
  UpdateEngine.applyMul = function (doc, fields) {
    for (const [p, factor] of Object.entries(fields)) {
      if (!isNumeric(factor)) throw typeMismatch(`Cannot multiply with non-numeric argument: {${p}: ${String(factor)}}`);
      const cur = getPath(doc, p);
      if (cur !== undefined && typeRank(cur) !== 2) throw typeMismatch(`Cannot apply $mul to a value of non-numeric type '${p}'`);
      setPath(doc, p, mulNumbers(cur === undefined ? (typeof factor === 'bigint' ? 0n : 0) : cur, factor));
    }
  };
  UpdateEngine.applyAddToSet = function (doc, fields) {
    for (const [p, spec] of Object.entries(fields)) {
      let arr = getPath(doc, p);
      if (arr === undefined) setPath(doc, p, (arr = []));
      if (!Array.isArray(arr)) throw typeMismatch(`Cannot apply $addToSet to non-array field '${p}'`);
      const have = new Set(arr.map(canonical));
      const items = isPlain(spec) && Array.isArray(spec.$each) ? spec.$each : [spec];
      for (const it of items) {
        const k = canonical(it);
        if (!have.has(k)) {
          have.add(k);
          arr.push(deepClone(it));
        }
      }
    }
  };
  UpdateEngine.applyPullAll = function (doc, fields) {
    for (const [p, values] of Object.entries(fields)) {
      const arr = getPath(doc, p);
      if (!Array.isArray(arr)) continue;
      if (!Array.isArray(values)) throw badValue('$pullAll requires an array argument');
      const drop = new Set(values.map(canonical));
      const keep = arr.filter((x) => !drop.has(canonical(x)));
      arr.length = 0;
      arr.push(...keep);
    }
  };

  // -- commands ----------------------------------------------------------------------------------
  InsertHandler.prototype.handle = async function ({ storage, database, command, documentSequences }) {
    const coll = command.insert;
    if (typeof coll !== 'string') throw badValue('insert needs a collection name');
    const docs = documentSequences?.get('documents') ?? command.documents ?? [];
    if (!Array.isArray(docs) || docs.length === 0) throw badValue('insert needs documents');
    const ordered = command.ordered !== false;
    const writeErrors = [];
    let n = 0;
    await storage.createCollection(database, coll);
    for (let i = 0; i < docs.length; i++) {
      try {
        await storage.insertOne(database, coll, docs[i]);
        n++;
      } catch (e) {
        writeErrors.push(writeError(i, e));
        if (ordered) break;
      }
    }
    return writeErrors.length ? { ok: 1, n, writeErrors } : { ok: 1, n };
  };

  FindHandler.prototype.handleFind = async function ({ storage, database, command }) {
    const coll = command.find;
    const ns = `${database}.${coll}`;
    let docs = select(storage, database, coll, command.filter);
    if (command.sort) docs = sortDocs(docs, command.sort);
    const skip = Number(command.skip ?? 0);
    let limit = Number(command.limit ?? 0);
    let single = Boolean(command.singleBatch);
    if (limit < 0) {
      limit = -limit;
      single = true;
    }
    if (skip > 0) docs = docs.slice(skip);
    if (limit > 0) docs = docs.slice(0, limit);
    if (command.projection) docs = projectDocs(docs, command.projection);
    const batchSize = command.batchSize === undefined ? 101 : Number(command.batchSize);
    const firstBatch = docs.slice(0, batchSize);
    const rest = docs.slice(batchSize);
    let id = 0n;
    if (rest.length > 0 && !single) {
      id = this.nextCursorId();
      this.cursors.set(id, { id, database, collection: coll, documents: rest, position: 0,
        batchSize, createdAt: new Date() });
    }
    return { ok: 1, cursor: { firstBatch, id: bson.Long.fromBigInt(id), ns } };
  };

  UpdateHandler.prototype.handleUpdate = async function ({ storage, database, command, documentSequences }) {
    const coll = command.update;
    const updates = documentSequences?.get('updates') ?? command.updates ?? [];
    if (!Array.isArray(updates) || updates.length === 0) throw badValue('update needs updates');
    const ordered = command.ordered !== false;
    const writeErrors = [];
    const upserted = [];
    let n = 0, nModified = 0;
    await storage.createCollection(database, coll);
    for (let i = 0; i < updates.length; i++) {
      try {
        const r = await updateStatement(storage, database, coll, updates[i]);
        n += r.n;
        nModified += r.nModified;
        if (r.upsertedId !== undefined) upserted.push({ index: i, _id: r.upsertedId });
      } catch (e) {
        writeErrors.push(writeError(i, e));
        if (ordered) break;
      }
    }
    const out = { ok: 1, n, nModified };
    if (upserted.length) out.upserted = upserted;
    if (writeErrors.length) out.writeErrors = writeErrors;
    return out;
  };

  UpdateHandler.prototype.handleFindAndModify = async function ({ storage, database, command }) {
    const coll = command.findAndModify;
    const { update, fields } = command;
    const remove = Boolean(command.remove);
    if (Boolean(update) === remove) throw badValue('findAndModify needs either update or remove');
    await storage.createCollection(database, coll);
    let docs = select(storage, database, coll, command.query);
    if (command.sort) docs = sortDocs(docs, command.sort);
    const doc = docs[0];
    const shape = (d) => (d && fields ? projectDocs([d], fields)[0] : d ?? null);
    if (remove) {
      if (doc) await storage.deleteById(database, coll, doc._id);
      return { ok: 1, value: shape(doc), lastErrorObject: { n: doc ? 1 : 0 } };
    }
    if (doc) {
      const next = applyUpdate(doc, update, command.arrayFilters, false);
      if (!sameBson(doc, next)) await storage.updateById(database, coll, doc._id, next);
      return { ok: 1, value: shape(command.new ? next : doc),
        lastErrorObject: { n: 1, updatedExisting: true } };
    }
    if (!command.upsert) return { ok: 1, value: null, lastErrorObject: { n: 0, updatedExisting: false } };
    const created = idFirst(applyUpdate(upsertBase(command.query), update, command.arrayFilters, true));
    await storage.insertOne(database, coll, created);
    return { ok: 1, value: command.new ? shape(created) : null,
      lastErrorObject: { n: 1, updatedExisting: false, upserted: created._id } };
  };

  DeleteHandler.prototype.handle = async function ({ storage, database, command, documentSequences }) {
    const coll = command.delete;
    const deletes = documentSequences?.get('deletes') ?? command.deletes ?? [];
    if (!Array.isArray(deletes) || deletes.length === 0) throw badValue('delete needs deletes');
    const ordered = command.ordered !== false;
    const writeErrors = [];
    let n = 0;
    for (let i = 0; i < deletes.length; i++) {
      try {
        let docs = select(storage, database, coll, deletes[i].q);
        if (Number(deletes[i].limit ?? 0) !== 0) docs = docs.slice(0, 1);
        for (const d of docs) if (await storage.deleteById(database, coll, d._id)) n++;
      } catch (e) {
        writeErrors.push(writeError(i, e));
        if (ordered) break;
      }
    }
    return writeErrors.length ? { ok: 1, n, writeErrors } : { ok: 1, n };
  };

  // -- createIndexes: acknowledged, not built --------------------------------------------------
  const known = new Map(); // "db.coll" -> the index names asked for, for numIndexes*
  IndexHandler.prototype.handleCreateIndexes = async function (context) {
    const { storage, database, command } = context;
    const indexes = command.indexes;
    if (!Array.isArray(indexes) || indexes.some((ix) => !isPlain(ix) || !isPlain(ix.key) ||
        typeof ix.name !== 'string')) {
      return { ok: 0, code: 2, codeName: 'BadValue',
        errmsg: 'indexes must be an array of {key, name}' };
    }
    await storage.createCollection(database, command.createIndexes);
    const names = known.get(`${database}.${command.createIndexes}`) ?? new Set(['_id_']);
    known.set(`${database}.${command.createIndexes}`, names);
    const before = names.size;
    for (const ix of indexes) names.add(ix.name);
    return { ok: 1, numIndexesBefore: before, numIndexesAfter: names.size,
      createdCollectionAutomatically: false };
  };

  // -- hello: one processId; awaitable hello waits as a server does ------------------------------
  const processId = new bson.ObjectId();
  const hello = HelloHandler.prototype.handle;
  HelloHandler.prototype.handle = async function (context) {
    const { command } = context;
    const tv = command.topologyVersion;
    if (tv && command.maxAwaitTimeMS !== undefined && tv.processId?.equals?.(processId)) {
      await new Promise((resolve) => setTimeout(resolve, Math.min(Number(command.maxAwaitTimeMS), 60000)).unref());
    }
    const out = await hello.call(this, context);
    out.topologyVersion = { processId, counter: 0n };
    return out;
  };

  // -- one command at a time, in arrival order (hello aside) ---------------------------------------
  const HELLO = new Set(['hello', 'isMaster', 'ismaster']);
  const route = CommandRouter.prototype.route;
  CommandRouter.prototype.route = function (parsed) {
    if (HELLO.has(parsed.commandName)) return route.call(this, parsed);
    const run = () => route.call(this, parsed);
    const p = (this.queue ?? Promise.resolve()).then(run, run);
    this.queue = p.then(() => undefined, () => undefined);
    return p;
  };
}

// Log failed commands (always) and every command (--log-commands).
function logReplies() {
  const route = CommandRouter.prototype.route;
  CommandRouter.prototype.route = async function (parsed) {
    const reply = await route.call(this, parsed);
    const { commandName, command, database } = parsed;
    const target = typeof command[commandName] === 'string' ? `${database}.${command[commandName]}` : database;
    if (reply && reply.ok !== 1) {
      log(`${commandName} ${target}: error ${reply.code} ${reply.codeName}: ${reply.errmsg}`);
    } else if (reply?.writeErrors?.length) {
      const e = reply.writeErrors[0];
      log(`${commandName} ${target}: ${reply.writeErrors.length} write error(s), first at ${e.index}: ${e.code} ${e.errmsg}`);
    } else if (opts.logCommands) {
      log(`${(performance.now() / 1000).toFixed(3)} s: ${commandName} ${target}`);
    }
    return reply;
  };
}

if (opts.patched) patch();
logReplies();

const server = new CongoServer({ host: opts.host, port: opts.port });
try {
  await server.start();
} catch (e) {
  log(`cannot listen on ${opts.host}:${opts.port}: ${e.message}`);
  process.exit(1);
}
const { port } = server.server.address();
process.stdout.write(`listening ${port}\n`);
log(`ready on ${opts.host}:${port} (${opts.patched ? 'patched' : 'as published'}; ` +
  `@push.rocks/smartmongo from ${opts.modules})`);

let stopping = false;
const stop = (sig) => {
  if (stopping) return;
  stopping = true;
  log(`${sig}: stopping`);
  // Connections are closed at once; whatever is in memory is gone, as with a killed server.
  server.stop().finally(() => process.exit(0));
  setTimeout(() => process.exit(0), 2000).unref();
};
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));
