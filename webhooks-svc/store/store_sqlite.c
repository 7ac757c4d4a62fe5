/* store_sqlite.c -- the embedded store: SQLite in WAL mode.
 *
 * One write connection, guarded by a mutex, applies batches of writes in one transaction each
 * (the caller batches concurrent requests: group commit), with synchronous=FULL so that a
 * committed batch survives a crash of the process or the machine. Reads use a pool of
 * connections of their own, which WAL lets run beside the writer without blocking it. */
#include "store_backend.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "log.h"
#include "walbuf.h"

enum stmt_id {
	ST_INSERT,
	ST_ROTATE,
	ST_GIVE_SECRET,
	ST_UPDATE,
	ST_DELETE,
	ST_GET,
	ST_LIST_FIRST,
	ST_LIST_AFTER,
	ST_META_GET,
	ST_META_INSERT,
	ST_META_DELETE,
	ST_EVENT_INSERT,
	ST_EVENT_ITEM,
	ST_ITEM_KEEP,
	ST_ITEM_GET,
	ST_EVENT_EXISTS,
	ST_EVENT_COUNT,
	ST_EVENT_GET,
	ST_PENDING,
	ST_DELIVERY_STATE,
	ST_PRIOR_STATUS,
	ST_ATTEMPT,
	ST_FIRST_ATTEMPT,
	ST_DELIVERIES_FIRST,
	ST_DELIVERIES_AFTER,
	ST_HOOK_OK,
	ST_HOOK_FAILED,
	ST_HOOK_GONE,
	ST_REOPEN,
	ST_FAILED,
	ST_PRUNE_PICK,
	ST_PRUNE_DELIVERIES,
	ST_PRUNE_ITEMS,
	ST_PRUNE_EVENT,
	ST_BEGIN,
	ST_COMMIT,
	ST_ROLLBACK,
	ST__COUNT,
};

/* The statements below spell STORE_DELIVERY_FAILED as 2. */
_Static_assert(STORE_DELIVERY_FAILED == 2, "deliveries.status 2 is failed");

#define STR_(x) #x
#define STR(x)  STR_(x)

/* What read_row reads, in its order. */
#define HOOK_COLUMNS                                                                               \
	"id, target_url, created_ms, updated_ms, secret, old_secret, old_until_ms, "               \
	"disabled_reason, failing_since_ms"

static const char *const stmt_sql[ST__COUNT] = {
    [ST_INSERT] = "INSERT INTO webhooks (id, target_url, created_ms, updated_ms, secret) "
                  "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_ROTATE] = "UPDATE webhooks SET old_secret = secret, old_until_ms = ?3, secret = ?2 "
                  "WHERE id = ?1",
    [ST_GIVE_SECRET] = "UPDATE webhooks SET secret = ?2 WHERE id = ?1 AND secret = ''",
    /* Any update enables the webhook again unless it disables it, and forgets its failures. */
    [ST_UPDATE] = "UPDATE webhooks SET target_url = CASE ?2 WHEN '' THEN target_url ELSE ?2 END, "
                  "updated_ms = ?3, disabled_reason = ?4, failing_since_ms = 0 WHERE id = ?1 "
                  "RETURNING " HOOK_COLUMNS,
    [ST_DELETE] = "DELETE FROM webhooks WHERE id = ?1",
    [ST_GET] = "SELECT " HOOK_COLUMNS " FROM webhooks WHERE id = ?1",
    [ST_LIST_FIRST] = "SELECT " HOOK_COLUMNS " FROM webhooks ORDER BY id LIMIT ?1",
    [ST_LIST_AFTER] = "SELECT " HOOK_COLUMNS " FROM webhooks WHERE id > ?2 ORDER BY id LIMIT ?1",
    [ST_META_GET] = "SELECT n, last_id FROM meta WHERE k = 'webhooks'",
    [ST_META_INSERT] = "UPDATE meta SET n = n + 1, last_id = max(last_id, ?1) "
                       "WHERE k = 'webhooks'",
    [ST_META_DELETE] = "UPDATE meta SET n = n - 1 WHERE k = 'webhooks'",
    [ST_EVENT_INSERT] = "INSERT INTO events (id, ip, created_ms, targets) VALUES (?1, ?2, ?3, ?4)",
    /* Counted once and in chain order: a work item taken again finds items moved on. */
    [ST_EVENT_ITEM] = "UPDATE events SET fanned = fanned + ?3, items = ?2 + 1, done = ?4 "
                      "WHERE id = ?1 AND items = ?2",
    /* Kept in the transaction that counts the item, so that a count is never without them. */
    [ST_ITEM_KEEP] = "INSERT OR IGNORE INTO event_items (event_id, item, end_id, last, members) "
                     "VALUES (?1, ?2, ?3, ?4, ?5)",
    [ST_ITEM_GET] = "SELECT end_id, last, members FROM event_items WHERE event_id = ?1 AND "
                    "item = ?2",
    [ST_EVENT_EXISTS] = "SELECT 1 FROM events WHERE id = ?1",
    [ST_EVENT_COUNT] = "UPDATE events SET succeeded = succeeded + ?2, failed = failed + ?3 "
                       "WHERE id = ?1",
    [ST_EVENT_GET] = "SELECT id, ip, created_ms, targets, succeeded, failed, fanned, items, "
                     "done FROM events WHERE id = ?1",
    /* The open events' remaining deliveries, through the partial index events_open (the
     * WHERE is the index's own, word for word, so the planner uses it). */
    [ST_PENDING] = "SELECT coalesce(sum(CASE WHEN done THEN fanned ELSE max(targets, fanned) END"
                   " - succeeded - failed), 0) FROM events "
                   "WHERE done = 0 OR succeeded + failed < fanned",
    [ST_DELIVERY_STATE] = "SELECT status, json_array_length(attempts) FROM deliveries "
                          "WHERE event_id = ?1 AND id = ?2",
    /* A delivery's status, its number of attempts, and whether its last attempt is ?3 (the
     * attempt's own JSON, as ST_ATTEMPT spliced it in before "]"). */
    [ST_PRIOR_STATUS] = "SELECT status, json_array_length(attempts), "
                        "substr(attempts, -1 - length(?3), length(?3)) = ?3 "
                        "FROM deliveries WHERE event_id = ?1 AND id = ?2",
    /* The first attempt creates the delivery; later ones append to its attempts. The
     * attempt is JSON that store_attempt_json made, so it is spliced in as text rather than
     * parsed again. A record without a URL (a retry dropped because its webhook was
     * deleted) keeps the URL it had. */
    [ST_ATTEMPT] = "INSERT INTO deliveries (event_id, id, webhook_id, target_url, status, "
                   "attempts) VALUES (?1, ?2, ?3, ?4, ?5, '[' || ?6 || ']') "
                   "ON CONFLICT (event_id, id) DO UPDATE SET status = excluded.status, "
                   "target_url = CASE excluded.target_url WHEN '' THEN target_url "
                   "ELSE excluded.target_url END, "
                   "attempts = substr(attempts, 1, length(attempts) - 1) || ',' || ?6 || ']'",
    /* A first attempt, which usually finds no delivery: it is made at once, and the row is
     * read only when there is one already (see apply_attempt). */
    [ST_FIRST_ATTEMPT] = "INSERT INTO deliveries (event_id, id, webhook_id, target_url, status, "
                         "attempts) VALUES (?1, ?2, ?3, ?4, ?5, '[' || ?6 || ']') "
                         "ON CONFLICT (event_id, id) DO NOTHING",
    [ST_DELIVERIES_FIRST] = "SELECT id, webhook_id, target_url, status, attempts "
                            "FROM deliveries WHERE event_id = ?1 ORDER BY id LIMIT ?2",
    [ST_DELIVERIES_AFTER] = "SELECT id, webhook_id, target_url, status, attempts "
                            "FROM deliveries WHERE event_id = ?1 AND id > ?3 "
                            "ORDER BY id LIMIT ?2",
    /* A webhook's health, kept by its deliveries' final outcomes; each writes only when
     * something changes, so that a healthy webhook costs one lookup per delivery. */
    [ST_HOOK_OK] =
        "UPDATE webhooks SET failing_since_ms = 0 WHERE id = ?1 AND failing_since_ms <> 0",
    [ST_HOOK_FAILED] =
        "UPDATE webhooks SET failing_since_ms = CASE failing_since_ms WHEN 0 THEN ?2 "
        "ELSE failing_since_ms END, disabled_reason = CASE WHEN disabled_reason = '' "
        "AND ?3 > 0 AND failing_since_ms <> 0 AND ?2 - failing_since_ms >= ?3 THEN ?4 "
        "ELSE disabled_reason END WHERE id = ?1 AND (failing_since_ms = 0 OR "
        "(disabled_reason = '' AND ?3 > 0 AND ?2 - failing_since_ms >= ?3))",
    [ST_HOOK_GONE] =
        "UPDATE webhooks SET disabled_reason = ?2 WHERE id = ?1 AND disabled_reason = ''",
    /* A replayed delivery is no longer failed: uncount it (once: its status then changes). */
    [ST_REOPEN] = "UPDATE events SET failed = failed - 1 WHERE id = ?1 AND EXISTS (SELECT 1 FROM "
                  "deliveries WHERE event_id = ?1 AND id = ?2 AND status = 2)",
    [ST_FAILED] = "SELECT id, webhook_id, json_array_length(attempts) FROM deliveries "
                  "WHERE event_id = ?1 AND id > ?3 AND status = 2 ORDER BY id LIMIT ?2",
    /* Retention: the oldest event to prune (through events_created), its deliveries a slice
     * at a time, then the event. */
    [ST_PRUNE_PICK] = "SELECT id FROM events WHERE created_ms < ?1 AND ((done = 1 AND succeeded + "
                      "failed >= fanned) OR created_ms < ?2) ORDER BY created_ms LIMIT 1",
    [ST_PRUNE_DELIVERIES] = "DELETE FROM deliveries WHERE event_id = ?1 AND id IN (SELECT id FROM "
                            "deliveries WHERE event_id = ?1 ORDER BY id LIMIT ?2)",
    [ST_PRUNE_ITEMS] = "DELETE FROM event_items WHERE event_id = ?1 AND item IN (SELECT item "
                       "FROM event_items WHERE event_id = ?1 ORDER BY item LIMIT ?2)",
    [ST_PRUNE_EVENT] = "DELETE FROM events WHERE id = ?1",
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
};

static const char schema_sql[] = "CREATE TABLE IF NOT EXISTS webhooks ("
                                 " id TEXT PRIMARY KEY NOT NULL,"
                                 " target_url TEXT NOT NULL,"
                                 " created_ms INTEGER NOT NULL,"
                                 " updated_ms INTEGER NOT NULL,"
                                 " secret TEXT NOT NULL DEFAULT '',"
                                 " old_secret TEXT NOT NULL DEFAULT '',"
                                 " old_until_ms INTEGER NOT NULL DEFAULT 0,"
                                 " disabled_reason TEXT NOT NULL DEFAULT '',"
                                 " failing_since_ms INTEGER NOT NULL DEFAULT 0"
                                 ") WITHOUT ROWID;"
                                 "CREATE TABLE IF NOT EXISTS events ("
                                 " id TEXT PRIMARY KEY NOT NULL,"
                                 " ip TEXT NOT NULL,"
                                 " created_ms INTEGER NOT NULL,"
                                 " targets INTEGER NOT NULL,"
                                 " succeeded INTEGER NOT NULL DEFAULT 0,"
                                 " failed INTEGER NOT NULL DEFAULT 0,"
                                 " fanned INTEGER NOT NULL DEFAULT 0,"
                                 " items INTEGER NOT NULL DEFAULT 0,"
                                 " done INTEGER NOT NULL DEFAULT 0"
                                 ") WITHOUT ROWID;"
                                 /* Counters kept by the writes, so that nothing on a
                                  * request path counts rows. */
                                 "CREATE TABLE IF NOT EXISTS meta ("
                                 " k TEXT PRIMARY KEY NOT NULL,"
                                 " n INTEGER NOT NULL,"
                                 " last_id TEXT NOT NULL"
                                 ") WITHOUT ROWID;"
                                 /* Keyed by event first: an event's deliveries page as
                                  * one range scan. */
                                 "CREATE TABLE IF NOT EXISTS deliveries ("
                                 " event_id TEXT NOT NULL,"
                                 " id TEXT NOT NULL,"
                                 " webhook_id TEXT NOT NULL,"
                                 " target_url TEXT NOT NULL,"
                                 " status INTEGER NOT NULL,"
                                 " attempts TEXT NOT NULL,"
                                 " PRIMARY KEY (event_id, id)"
                                 ") WITHOUT ROWID;"
                                 /* Each counted work item's members (16 bytes an id), for
                                  * the item taken again after a crash. A rowid table: its
                                  * rows are kilobytes. */
                                 "CREATE TABLE IF NOT EXISTS event_items ("
                                 " event_id TEXT NOT NULL,"
                                 " item INTEGER NOT NULL,"
                                 " end_id TEXT NOT NULL,"
                                 " last INTEGER NOT NULL,"
                                 " members BLOB NOT NULL,"
                                 " PRIMARY KEY (event_id, item)"
                                 ");";

/* The events whose deliveries have not all ended, for store_pending: few at any time, however
 * many are stored. Made after the migration below, which adds the columns it names. */
static const char open_index_sql[] = "CREATE INDEX IF NOT EXISTS events_open ON events (id) "
                                     "WHERE done = 0 OR succeeded + failed < fanned;"
                                     /* Retention takes the oldest events first. */
                                     "CREATE INDEX IF NOT EXISTS events_created ON events "
                                     "(created_ms);";

/* What a store made by an older version lacks, added once at open. Counting the webhooks
 * here is the only count(*) the store ever runs. */
static const char migrate_events_sql[] =
    "ALTER TABLE events ADD COLUMN fanned INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE events ADD COLUMN items INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE events ADD COLUMN done INTEGER NOT NULL DEFAULT 0;";
static const char migrate_secrets_sql[] =
    "ALTER TABLE webhooks ADD COLUMN secret TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE webhooks ADD COLUMN old_secret TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE webhooks ADD COLUMN old_until_ms INTEGER NOT NULL DEFAULT 0;";
static const char migrate_health_sql[] =
    "ALTER TABLE webhooks ADD COLUMN disabled_reason TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE webhooks ADD COLUMN failing_since_ms INTEGER NOT NULL DEFAULT 0;";
static const char migrate_meta_sql[] =
    "INSERT OR IGNORE INTO meta (k, n, last_id) "
    "SELECT 'webhooks', count(*), coalesce(max(id), '') FROM webhooks;";

/* Read connections opened with the store: about as many as threads read at once (the API's
 * subscriptions, the two fetchers, the back-pressure and retention tickers). */
#define WARM_READERS 4

/* A connection with its prepared statements. */
struct conn {
	sqlite3 *db;
	sqlite3_stmt *st[ST__COUNT];
	struct conn *next; /* free list of the read pool */
};

struct store_sqlite {
	struct store base;
	char *path;
	pthread_mutex_t write_lock;
	struct conn *writer;
	pthread_mutex_t pool_lock;
	struct conn *idle; /* read connections not in use */
};

static void conn_destroy(struct conn *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < ST__COUNT; i++)
		sqlite3_finalize(c->st[i]);
	sqlite3_close(c->db);
	free(c);
}

static int fail(sqlite3 *db, const char *what, char *err, size_t errlen)
{
	int code = db != NULL ? sqlite3_extended_errcode(db) : SQLITE_ERROR;
	snprintf(err, errlen, "sqlite: %s: %s", what, db != NULL ? sqlite3_errmsg(db) : "failed");
	int primary = code & 0xff;
	return (primary == SQLITE_BUSY || primary == SQLITE_LOCKED || primary == SQLITE_FULL)
	           ? -EAGAIN
	           : -EIO;
}

static bool has_column(sqlite3 *db, const char *table, const char *column)
{
	return sqlite3_table_column_metadata(db, NULL, table, column, NULL, NULL, NULL, NULL,
	                                     NULL) == SQLITE_OK;
}

/* Give every webhook stored by an older version a secret of its own, SECRETS_BATCH at a time
 * in id order (one pass however many there are; a crash midway resumes where it was). */
#define SECRETS_BATCH 1000
static int step_once(sqlite3_stmt *st);
static int give_secrets(sqlite3 *db, char *err, size_t errlen)
{
	sqlite3_stmt *pick = NULL, *set = NULL;
	char after[ID_LEN + 1] = "";
	int rc = sqlite3_prepare_v2(db,
	                            "SELECT id FROM webhooks WHERE id > ?1 AND secret = '' "
	                            "ORDER BY id LIMIT " STR(SECRETS_BATCH),
	                            -1, &pick, NULL);
	if (rc == SQLITE_OK)
		rc = sqlite3_prepare_v2(db, "UPDATE webhooks SET secret = ?2 WHERE id = ?1", -1,
		                        &set, NULL);
	long given = 0;
	for (bool more = true; rc == SQLITE_OK && more;) {
		more = false;
		rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
		sqlite3_bind_text(pick, 1, after, -1, SQLITE_TRANSIENT);
		while (rc == SQLITE_OK && sqlite3_step(pick) == SQLITE_ROW) {
			char secret[SECRET_MAX_LEN + 1];
			const unsigned char *id = sqlite3_column_text(pick, 0);
			snprintf(after, sizeof(after), "%s", id != NULL ? (const char *)id : "");
			if (secret_generate(secret) != 0) {
				rc = SQLITE_ERROR;
				break;
			}
			sqlite3_bind_text(set, 1, after, -1, SQLITE_STATIC);
			sqlite3_bind_text(set, 2, secret, -1, SQLITE_STATIC);
			rc = step_once(set) == SQLITE_DONE ? SQLITE_OK : SQLITE_ERROR;
			more = true;
			given++;
		}
		sqlite3_reset(pick);
		if (rc == SQLITE_OK)
			rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	}
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_finalize(pick);
	sqlite3_finalize(set);
	if (rc != SQLITE_OK) {
		snprintf(err, errlen, "sqlite: giving webhooks their secrets: %s",
		         sqlite3_errmsg(db));
		return -EIO;
	}
	if (given > 0)
		log_info("sqlite: gave %ld webhooks of an older store their signing secrets",
		         given);
	return 0;
}

/* Create the schema, or bring one made by an older version up to date, in one transaction. */
static int migrate(sqlite3 *db, char *err, size_t errlen)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, schema_sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK && !has_column(db, "events", "fanned"))
		rc = sqlite3_exec(db, migrate_events_sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK && !has_column(db, "webhooks", "secret"))
		rc = sqlite3_exec(db, migrate_secrets_sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK && !has_column(db, "webhooks", "disabled_reason"))
		rc = sqlite3_exec(db, migrate_health_sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, migrate_meta_sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, open_index_sql, NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, &msg);
	if (rc == SQLITE_OK)
		return give_secrets(db, err, errlen);
	snprintf(err, errlen, "sqlite: creating the schema: %s", msg != NULL ? msg : "failed");
	sqlite3_free(msg);
	if (!sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return -EIO;
}

/* PRAGMA synchronous as set: 0 OFF, 1 NORMAL, 2 FULL, 3 EXTRA (-1 when it cannot be read). */
static int synchronous_level(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	int level = -1;
	if (sqlite3_prepare_v2(db, "PRAGMA synchronous", -1, &st, NULL) == SQLITE_OK &&
	    sqlite3_step(st) == SQLITE_ROW)
		level = sqlite3_column_int(st, 0);
	sqlite3_finalize(st);
	return level;
}

static struct conn *conn_open(const char *path, bool writer, char *err, size_t errlen)
{
	struct conn *c = calloc(1, sizeof(*c));
	if (c == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
	if (writer)
		flags |= SQLITE_OPEN_CREATE;
	/* The writer's WAL appends go out one pwrite per commit (walbuf.h); readers write none. */
	if (sqlite3_open_v2(path, &c->db, flags, writer ? walbuf_vfs() : NULL) != SQLITE_OK) {
		fail(c->db, path, err, errlen);
		goto fail;
	}
	sqlite3_busy_timeout(c->db, 5000);
	/* WAL lets readers run beside the writer; FULL makes every commit durable on disk. */
	const char *pragmas = writer ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	                               "PRAGMA cache_size=-8192;"
	                               "PRAGMA foreign_keys=ON;"
	                             : "PRAGMA foreign_keys=ON;";
	char *msg = NULL;
	if (sqlite3_exec(c->db, pragmas, NULL, NULL, &msg) != SQLITE_OK) {
		snprintf(err, errlen, "sqlite: %s: %s", path, msg != NULL ? msg : "pragma failed");
		sqlite3_free(msg);
		goto fail;
	}
	if (writer && synchronous_level(c->db) < 2) {
		/* walbuf's gathered frames are written by the sync of every commit (FULL). */
		snprintf(err, errlen, "sqlite: %s: the writer needs synchronous=FULL", path);
		goto fail;
	}
	if (writer && migrate(c->db, err, errlen) != 0)
		goto fail;
	for (int i = 0; i < ST__COUNT; i++) {
		if (sqlite3_prepare_v3(c->db, stmt_sql[i], -1, SQLITE_PREPARE_PERSISTENT, &c->st[i],
		                       NULL) != SQLITE_OK) {
			fail(c->db, stmt_sql[i], err, errlen);
			goto fail;
		}
	}
	return c;
fail:
	conn_destroy(c);
	return NULL;
}

static struct conn *reader_take(struct store_sqlite *s, char *err, size_t errlen)
{
	pthread_mutex_lock(&s->pool_lock);
	struct conn *c = s->idle;
	if (c != NULL)
		s->idle = c->next;
	pthread_mutex_unlock(&s->pool_lock);
	/* The pool grows to the number of threads that read at once, which is small. */
	return c != NULL ? c : conn_open(s->path, false, err, errlen);
}

static void reader_give(struct store_sqlite *s, struct conn *c)
{
	pthread_mutex_lock(&s->pool_lock);
	c->next = s->idle;
	s->idle = c;
	pthread_mutex_unlock(&s->pool_lock);
}

static void read_row(sqlite3_stmt *st, struct store_webhook *out)
{
	const unsigned char *id = sqlite3_column_text(st, 0);
	const unsigned char *url = sqlite3_column_text(st, 1);
	snprintf(out->id, sizeof(out->id), "%s", id != NULL ? (const char *)id : "");
	snprintf(out->target_url, sizeof(out->target_url), "%s",
	         url != NULL ? (const char *)url : "");
	out->created_ms = sqlite3_column_int64(st, 2);
	out->updated_ms = sqlite3_column_int64(st, 3);
	const unsigned char *secret = sqlite3_column_text(st, 4);
	const unsigned char *old = sqlite3_column_text(st, 5);
	snprintf(out->secret, sizeof(out->secret), "%s",
	         secret != NULL ? (const char *)secret : "");
	snprintf(out->old_secret, sizeof(out->old_secret), "%s",
	         old != NULL ? (const char *)old : "");
	out->old_until_ms = sqlite3_column_int64(st, 6);
	const unsigned char *reason = sqlite3_column_text(st, 7);
	snprintf(out->disabled_reason, sizeof(out->disabled_reason), "%s",
	         reason != NULL ? (const char *)reason : "");
	out->failing_since_ms = sqlite3_column_int64(st, 8);
}

static int step_once(sqlite3_stmt *st)
{
	int rc = sqlite3_step(st);
	sqlite3_reset(st);
	return rc;
}

/* What one attempt's record changes in its event's outcome counts. */
struct tally {
	int succeeded, failed;
};

static void tally_status(struct tally *t, int status, int sign)
{
	t->succeeded += sign * (status == STORE_DELIVERY_SUCCEEDED);
	t->failed += sign * (status == STORE_DELIVERY_FAILED);
}

/* Bind an attempt to ST_ATTEMPT or ST_FIRST_ATTEMPT (the same parameters). */
static void bind_attempt(sqlite3_stmt *st, const struct store_attempt *a, const char *json)
{
	sqlite3_bind_text(st, 1, a->event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->delivery_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, a->webhook_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 4, a->target_url, -1, SQLITE_STATIC);
	sqlite3_bind_int(st, 5, (int)a->status);
	sqlite3_bind_text(st, 6, json, -1, SQLITE_STATIC);
}

/* Whether attempt a (its JSON json) is the next one of its delivery, read from the delivery's
 * row: 1 when it is (*prior is then the status it replaces), 0 when it is the attempt recorded
 * last (a batch sent again: nothing to do), -EALREADY when the delivery is not open for it
 * (see apply_attempt), or an error. */
static int is_next_attempt(struct conn *c, const struct store_attempt *a, const char *json,
                           int *prior, bool *fatal, char *err, size_t errlen)
{
	sqlite3_stmt *st = c->st[ST_PRIOR_STATUS];
	sqlite3_bind_text(st, 1, a->event_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 2, a->delivery_id, -1, SQLITE_STATIC);
	sqlite3_bind_text(st, 3, json, -1, SQLITE_STATIC);
	int recorded = 0, step = sqlite3_step(st);
	bool same = false;
	*prior = STORE_DELIVERY_PENDING;
	if (step == SQLITE_ROW) {
		*prior = sqlite3_column_int(st, 0);
		recorded = sqlite3_column_int(st, 1);
		same = sqlite3_column_int(st, 2) != 0;
	}
	sqlite3_reset(st);
	if (step != SQLITE_ROW && step != SQLITE_DONE) {
		*fatal = true;
		return fail(c->db, "reading a delivery's status", err, errlen);
	}
	if (same && recorded == a->number)
		return 0;
	bool open = *prior == (a->reopens ? STORE_DELIVERY_FAILED : STORE_DELIVERY_PENDING);
	return open && a->number == recorded + 1 ? 1 : -EALREADY;
}

/* Record one attempt: upsert the delivery, append the attempt, and set *t to what that does to
 * the event's counts: the new status counted, the one it replaces uncounted, so that the
 * counts always follow the deliveries' statuses.
 *
 * An attempt is recorded only as the next one of a delivery still open: its number is one more
 * than the attempts recorded, and the delivery is pending (or failed, for a replay's first
 * attempt). Anything else was sent twice (at-least-once allows that after a crash or a stall:
 * two holders of the same work, each reading the delivery before either recorded): it returns
 * -EALREADY and changes nothing (its sender does not count it). The same attempt recorded
 * again (a batch sent again) changes nothing and returns 0.
 *
 * A first attempt (most of a fan-out's records) is inserted without reading first: when the
 * delivery has no row it is the next attempt, and only a row already there is read. */
static int apply_attempt(struct conn *c, const struct store_attempt *a, struct tally *t,
                         bool *fatal, char *err, size_t errlen)
{
	char json[512];
	store_attempt_json(a, json, sizeof(json));
	*t = (struct tally){0};
	int prior = STORE_DELIVERY_PENDING;
	bool made = false;
	sqlite3_stmt *st;
	if (a->number == 1 && !a->reopens) {
		st = c->st[ST_FIRST_ATTEMPT];
		bind_attempt(st, a, json);
		if (step_once(st) != SQLITE_DONE) {
			*fatal = true;
			return fail(c->db, "recording an attempt", err, errlen);
		}
		made = sqlite3_changes(c->db) == 1;
	}
	if (!made) {
		int next = is_next_attempt(c, a, json, &prior, fatal, err, errlen);
		if (next <= 0)
			return next;
	}
	/* A replay's first attempt (of a failed delivery, as checked): ST_REOPEN uncounts the
	 * failure itself. */
	if (a->reopens)
		prior = STORE_DELIVERY_PENDING;
	tally_status(t, prior, -1);
	tally_status(t, (int)a->status, 1);
	if (a->reopens) {
		st = c->st[ST_REOPEN];
		sqlite3_bind_text(st, 1, a->event_id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, a->delivery_id, -1, SQLITE_STATIC);
		if (step_once(st) != SQLITE_DONE) {
			*fatal = true;
			return fail(c->db, "reopening a delivery", err, errlen);
		}
	}
	if (!made) {
		st = c->st[ST_ATTEMPT];
		bind_attempt(st, a, json);
		if (step_once(st) != SQLITE_DONE) {
			*fatal = true;
			return fail(c->db, "recording an attempt", err, errlen);
		}
	}
	if (a->status == STORE_DELIVERY_PENDING || a->not_sent)
		return 0;
	int rc;
	if (a->status == STORE_DELIVERY_SUCCEEDED) {
		st = c->st[ST_HOOK_OK];
		sqlite3_bind_text(st, 1, a->webhook_id, -1, SQLITE_STATIC);
		rc = step_once(st);
	} else {
		char reason[STORE_REASON_LEN];
		store_streak_reason(a->disable_after_ms, reason);
		st = c->st[ST_HOOK_FAILED];
		sqlite3_bind_text(st, 1, a->webhook_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, a->at_ms);
		sqlite3_bind_int64(st, 3, a->disable_after_ms);
		sqlite3_bind_text(st, 4, reason, -1, SQLITE_TRANSIENT);
		rc = step_once(st);
		if (rc == SQLITE_DONE && a->gone) {
			st = c->st[ST_HOOK_GONE];
			sqlite3_bind_text(st, 1, a->webhook_id, -1, SQLITE_STATIC);
			sqlite3_bind_text(st, 2, STORE_REASON_GONE, -1, SQLITE_STATIC);
			rc = step_once(st);
		}
	}
	if (rc != SQLITE_DONE) {
		*fatal = true;
		return fail(c->db, "recording a webhook's health", err, errlen);
	}
	return 0;
}

/* Add a batch's tallies (t[i] for op i, consumed) to their events' counters: one UPDATE per
 * event per batch, not one per delivery. */
static int count_outcomes(struct conn *c, const struct store_op *ops, size_t n, struct tally *t,
                          char *err, size_t errlen)
{
	for (size_t i = 0; i < n; i++) {
		if (t[i].succeeded == 0 && t[i].failed == 0)
			continue; /* not an attempt, counted with an earlier one, or no change */
		const char *event_id = ops[i].attempt.event_id;
		struct tally sum = {0};
		for (size_t j = i; j < n; j++) {
			if (ops[j].kind != STORE_OP_ATTEMPT ||
			    strcmp(event_id, ops[j].attempt.event_id))
				continue;
			sum.succeeded += t[j].succeeded;
			sum.failed += t[j].failed;
			t[j] = (struct tally){0};
		}
		if (sum.succeeded == 0 && sum.failed == 0)
			continue;
		sqlite3_stmt *st = c->st[ST_EVENT_COUNT];
		sqlite3_bind_text(st, 1, event_id, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 2, sum.succeeded);
		sqlite3_bind_int(st, 3, sum.failed);
		if (step_once(st) != SQLITE_DONE)
			return fail(c->db, "counting outcomes", err, errlen);
	}
	return 0;
}

/* Run one write op inside the open transaction; returns the op's result, or a negative
 * code with err filled when the transaction itself must be abandoned. */
static int apply_op(struct conn *c, struct store_op *op, struct tally *t, bool *fatal, char *err,
                    size_t errlen)
{
	sqlite3_stmt *st;
	int rc;
	*fatal = false;
	switch (op->kind) {
	case STORE_OP_INSERT:
		st = c->st[ST_INSERT];
		sqlite3_bind_text(st, 1, op->hook.id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, op->hook.target_url, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, op->hook.created_ms);
		sqlite3_bind_int64(st, 4, op->hook.updated_ms);
		sqlite3_bind_text(st, 5, op->hook.secret, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		sqlite3_reset(st);
		if (rc == SQLITE_DONE) {
			st = c->st[ST_META_INSERT];
			sqlite3_bind_text(st, 1, op->hook.id, -1, SQLITE_STATIC);
			rc = step_once(st);
			if (rc == SQLITE_DONE)
				return 0;
			break;
		}
		if ((sqlite3_extended_errcode(c->db)) == SQLITE_CONSTRAINT_PRIMARYKEY)
			return -EEXIST;
		break;
	case STORE_OP_ROTATE:
		st = c->st[ST_ROTATE];
		sqlite3_bind_text(st, 1, op->hook.id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, op->hook.secret, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, op->hook.old_until_ms);
		rc = step_once(st);
		if (rc == SQLITE_DONE)
			return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
		break;
	case STORE_OP_GIVE_SECRET:
		st = c->st[ST_GIVE_SECRET];
		sqlite3_bind_text(st, 1, op->hook.id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, op->hook.secret, -1, SQLITE_STATIC);
		rc = step_once(st);
		if (rc != SQLITE_DONE)
			break;
		if (sqlite3_changes(c->db) > 0)
			return 0;
		st = c->st[ST_GET];
		sqlite3_bind_text(st, 1, op->hook.id, -1, SQLITE_STATIC);
		rc = step_once(st);
		if (rc == SQLITE_ROW)
			return 0; /* it had one */
		if (rc == SQLITE_DONE)
			return -ENOENT;
		break;
	case STORE_OP_UPDATE:
		st = c->st[ST_UPDATE];
		sqlite3_bind_text(st, 1, op->hook.id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, op->hook.target_url, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, op->hook.updated_ms);
		sqlite3_bind_text(st, 4, op->hook.disabled_reason, -1, SQLITE_STATIC);
		rc = sqlite3_step(st);
		if (rc == SQLITE_ROW) {
			read_row(st, &op->hook);
			rc = sqlite3_step(st);
		}
		sqlite3_reset(st);
		if (rc == SQLITE_DONE)
			return sqlite3_changes(c->db) > 0 ? 0 : -ENOENT;
		break;
	case STORE_OP_DELETE:
		st = c->st[ST_DELETE];
		sqlite3_bind_text(st, 1, op->hook.id, -1, SQLITE_STATIC);
		rc = step_once(st);
		if (rc == SQLITE_DONE && sqlite3_changes(c->db) == 0)
			return -ENOENT;
		if (rc == SQLITE_DONE)
			rc = step_once(c->st[ST_META_DELETE]);
		if (rc == SQLITE_DONE)
			return 0;
		break;
	case STORE_OP_EVENT_INSERT:
		st = c->st[ST_EVENT_INSERT];
		sqlite3_bind_text(st, 1, op->event.id, -1, SQLITE_STATIC);
		sqlite3_bind_text(st, 2, op->event.ip, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 3, op->event.created_ms);
		sqlite3_bind_int64(st, 4, op->event.targets);
		rc = step_once(st);
		if (rc == SQLITE_DONE)
			return 0;
		if (sqlite3_extended_errcode(c->db) == SQLITE_CONSTRAINT_PRIMARYKEY)
			return -EEXIST;
		break;
	case STORE_OP_EVENT_ITEM:
		st = c->st[ST_EVENT_ITEM];
		sqlite3_bind_text(st, 1, op->item.event_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, op->item.item);
		sqlite3_bind_int64(st, 3, op->item.deliveries);
		sqlite3_bind_int(st, 4, op->item.last ? 1 : 0);
		rc = step_once(st);
		if (rc != SQLITE_DONE)
			break;
		if (sqlite3_changes(c->db) == 0) {
			/* Counted before, or no such event. */
			st = c->st[ST_EVENT_EXISTS];
			sqlite3_bind_text(st, 1, op->item.event_id, -1, SQLITE_STATIC);
			rc = step_once(st);
			if (rc == SQLITE_DONE)
				return -ENOENT;
			if (rc != SQLITE_ROW)
				break;
		}
		if (op->item.members == NULL)
			return 0;
		/* Its members, unless some are kept already (the first kept wins). */
		st = c->st[ST_ITEM_KEEP];
		sqlite3_bind_text(st, 1, op->item.event_id, -1, SQLITE_STATIC);
		sqlite3_bind_int64(st, 2, op->item.item);
		sqlite3_bind_text(st, 3, op->item.end, -1, SQLITE_STATIC);
		sqlite3_bind_int(st, 4, op->item.last ? 1 : 0);
		/* Not a null pointer for none: that would bind NULL, not an empty blob. */
		sqlite3_bind_blob(st, 5,
		                  op->item.deliveries > 0 ? (const void *)op->item.members
		                                          : (const void *)"",
		                  (int)(op->item.deliveries * ID_BIN_LEN), SQLITE_STATIC);
		rc = step_once(st);
		if (rc == SQLITE_DONE)
			return 0;
		break;
	case STORE_OP_ATTEMPT:
		return apply_attempt(c, &op->attempt, t, fatal, err, errlen);
	}
	*fatal = true;
	return fail(c->db, "write", err, errlen);
}

static int sq_apply(struct store *base, struct store_op *ops, size_t n, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = s->writer;
	int rc = 0;
	struct tally *t = calloc(n > 0 ? n : 1, sizeof(*t));
	if (t == NULL) {
		snprintf(err, errlen, "out of memory");
		return -EIO;
	}
	pthread_mutex_lock(&s->write_lock);
	if (step_once(c->st[ST_BEGIN]) != SQLITE_DONE) {
		rc = fail(c->db, "begin", err, errlen);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		bool fatal;
		ops[i].result = apply_op(c, &ops[i], &t[i], &fatal, err, errlen);
		if (fatal) {
			rc = ops[i].result;
			step_once(c->st[ST_ROLLBACK]);
			goto out;
		}
	}
	rc = count_outcomes(c, ops, n, t, err, errlen);
	if (rc != 0) {
		step_once(c->st[ST_ROLLBACK]);
		goto out;
	}
	if (step_once(c->st[ST_COMMIT]) != SQLITE_DONE) {
		rc = fail(c->db, "commit", err, errlen);
		/* A failed COMMIT may leave the transaction open; end it so the next batch can
		 * begin. */
		if (!sqlite3_get_autocommit(c->db))
			step_once(c->st[ST_ROLLBACK]);
	}
out:
	pthread_mutex_unlock(&s->write_lock);
	free(t);
	return rc;
}

static int sq_get(struct store *base, const char *id, struct store_webhook *out, char *err,
                  size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	sqlite3_stmt *st = c->st[ST_GET];
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st);
	int result;
	if (rc == SQLITE_ROW) {
		read_row(st, out);
		result = 0;
	} else if (rc == SQLITE_DONE) {
		snprintf(err, errlen, "no webhook with id %s", id);
		result = -ENOENT;
	} else {
		result = fail(c->db, "get", err, errlen);
	}
	sqlite3_reset(st);
	reader_give(s, c);
	return result;
}

static int sq_list(struct store *base, const char *after, size_t limit, struct store_webhook *out,
                   size_t *n, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	*n = 0;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	bool first = after == NULL || after[0] == '\0';
	sqlite3_stmt *st = c->st[first ? ST_LIST_FIRST : ST_LIST_AFTER];
	sqlite3_bind_int64(st, 1, (sqlite3_int64)limit);
	if (!first)
		sqlite3_bind_text(st, 2, after, -1, SQLITE_STATIC);
	int rc;
	while (*n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW)
		read_row(st, &out[(*n)++]);
	int result = 0;
	if (*n < limit && rc != SQLITE_DONE)
		result = fail(c->db, "list", err, errlen);
	sqlite3_reset(st);
	reader_give(s, c);
	return result;
}

static int sq_meta(struct store *base, struct store_meta *out, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	sqlite3_stmt *st = c->st[ST_META_GET];
	int result = 0;
	if (sqlite3_step(st) == SQLITE_ROW) {
		const unsigned char *last = sqlite3_column_text(st, 1);
		out->webhooks = sqlite3_column_int64(st, 0);
		snprintf(out->last_id, sizeof(out->last_id), "%s",
		         last != NULL ? (const char *)last : "");
	} else {
		result = fail(c->db, "reading the webhook counter", err, errlen);
	}
	sqlite3_reset(st);
	reader_give(s, c);
	return result;
}

static int sq_pending(struct store *base, int64_t *out, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	sqlite3_stmt *st = c->st[ST_PENDING];
	int result = 0;
	if (sqlite3_step(st) == SQLITE_ROW)
		*out = sqlite3_column_int64(st, 0);
	else
		result = fail(c->db, "counting pending deliveries", err, errlen);
	sqlite3_reset(st);
	reader_give(s, c);
	return result;
}

static int sq_delivery_states(struct store *base, const char *event_id,
                              const char (*ids)[ID_LEN + 1], size_t n,
                              struct store_delivery_state *out, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	sqlite3_stmt *st = c->st[ST_DELIVERY_STATE];
	int result = 0;
	/* One read transaction for the lot, not one per row. */
	sqlite3_exec(c->db, "BEGIN", NULL, NULL, NULL);
	sqlite3_bind_text(st, 1, event_id, -1, SQLITE_STATIC);
	for (size_t i = 0; i < n && result == 0; i++) {
		sqlite3_bind_text(st, 2, ids[i], -1, SQLITE_STATIC);
		int rc = sqlite3_step(st);
		out[i] = (struct store_delivery_state){.found = rc == SQLITE_ROW};
		if (rc == SQLITE_ROW) {
			out[i].status = (enum store_delivery_status)sqlite3_column_int(st, 0);
			out[i].attempts = sqlite3_column_int(st, 1);
		} else if (rc != SQLITE_DONE) {
			result = fail(c->db, "reading deliveries", err, errlen);
		}
		sqlite3_reset(st);
	}
	sqlite3_clear_bindings(st);
	sqlite3_exec(c->db, "COMMIT", NULL, NULL, NULL);
	reader_give(s, c);
	return result;
}

static int sq_item_members(struct store *base, const char *event_id, int64_t item,
                           struct store_item_members *out, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	sqlite3_stmt *st = c->st[ST_ITEM_GET];
	sqlite3_bind_text(st, 1, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, item);
	int rc = sqlite3_step(st), result = 0;
	if (rc == SQLITE_ROW) {
		const unsigned char *end = sqlite3_column_text(st, 0);
		const void *members = sqlite3_column_blob(st, 2);
		size_t bytes = (size_t)sqlite3_column_bytes(st, 2);
		if (end == NULL || bytes % ID_BIN_LEN != 0 || bytes / ID_BIN_LEN > STORE_ITEM_MAX) {
			snprintf(err, errlen, "sqlite: event %s item %lld: a malformed membership",
			         event_id, (long long)item);
			result = -EIO;
		} else {
			out->found = true;
			out->last = sqlite3_column_int(st, 1) != 0;
			snprintf(out->end, sizeof(out->end), "%s", (const char *)end);
			out->n = bytes / ID_BIN_LEN;
			if (bytes > 0)
				memcpy(out->ids, members, bytes);
		}
	} else if (rc != SQLITE_DONE) {
		result = fail(c->db, "reading a work item", err, errlen);
	}
	sqlite3_reset(st);
	reader_give(s, c);
	return result;
}

static int sq_get_event(struct store *base, const char *id, bool counts, struct store_event *out,
                        char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	sqlite3_stmt *st = c->st[ST_EVENT_GET];
	sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
	int rc = sqlite3_step(st), result = 0;
	if (rc == SQLITE_ROW) {
		const unsigned char *ip = sqlite3_column_text(st, 1);
		snprintf(out->id, sizeof(out->id), "%s", id);
		snprintf(out->ip, sizeof(out->ip), "%s", ip != NULL ? (const char *)ip : "");
		out->created_ms = sqlite3_column_int64(st, 2);
		out->targets = sqlite3_column_int64(st, 3);
		/* Counters kept with every attempt: as cheap either way, left out for the same
		 * contract as MongoDB's. */
		out->succeeded = counts ? sqlite3_column_int64(st, 4) : 0;
		out->failed = counts ? sqlite3_column_int64(st, 5) : 0;
		out->fanned = sqlite3_column_int64(st, 6);
		out->items = sqlite3_column_int64(st, 7);
		out->done = sqlite3_column_int(st, 8) != 0;
	} else if (rc == SQLITE_DONE) {
		snprintf(err, errlen, "no event with id '%s'", id);
		result = -ENOENT;
	} else {
		result = fail(c->db, "get event", err, errlen);
	}
	sqlite3_reset(st);
	reader_give(s, c);
	return result;
}

static int sq_list_deliveries(struct store *base, const char *event_id, const char *after,
                              size_t limit, struct store_delivery *out, size_t *n, char *err,
                              size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	*n = 0;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	bool first = after == NULL || after[0] == '\0';
	sqlite3_stmt *st = c->st[first ? ST_DELIVERIES_FIRST : ST_DELIVERIES_AFTER];
	sqlite3_bind_text(st, 1, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	if (!first)
		sqlite3_bind_text(st, 3, after, -1, SQLITE_STATIC);
	int rc = SQLITE_DONE, result = 0;
	while (*n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_delivery *d = &out[*n];
		const char *cols[3];
		for (int i = 0; i < 3; i++) {
			const unsigned char *t = sqlite3_column_text(st, i);
			cols[i] = t != NULL ? (const char *)t : "";
		}
		snprintf(d->id, sizeof(d->id), "%s", cols[0]);
		snprintf(d->webhook_id, sizeof(d->webhook_id), "%s", cols[1]);
		snprintf(d->target_url, sizeof(d->target_url), "%s", cols[2]);
		d->status = (enum store_delivery_status)sqlite3_column_int(st, 3);
		const unsigned char *attempts = sqlite3_column_text(st, 4);
		d->attempts_json = strdup(attempts != NULL ? (const char *)attempts : "[]");
		if (d->attempts_json == NULL) {
			snprintf(err, errlen, "out of memory");
			result = -EIO;
			break;
		}
		(*n)++;
	}
	if (result == 0 && *n < limit && rc != SQLITE_DONE)
		result = fail(c->db, "list deliveries", err, errlen);
	sqlite3_reset(st);
	reader_give(s, c);
	if (result != 0) {
		store_deliveries_free(out, *n);
		*n = 0;
	}
	return result;
}

static int sq_failed_deliveries(struct store *base, const char *event_id, const char *after,
                                size_t limit, struct store_failed *out, size_t *n, char *err,
                                size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = reader_take(s, err, errlen);
	if (c == NULL)
		return -EIO;
	sqlite3_stmt *st = c->st[ST_FAILED];
	sqlite3_bind_text(st, 1, event_id, -1, SQLITE_STATIC);
	sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
	sqlite3_bind_text(st, 3, after != NULL ? after : "", -1, SQLITE_STATIC);
	int rc = SQLITE_DONE, result = 0;
	while (*n < limit && (rc = sqlite3_step(st)) == SQLITE_ROW) {
		struct store_failed *f = &out[(*n)++];
		const unsigned char *id = sqlite3_column_text(st, 0);
		const unsigned char *hook = sqlite3_column_text(st, 1);
		snprintf(f->id, sizeof(f->id), "%s", id != NULL ? (const char *)id : "");
		snprintf(f->webhook_id, sizeof(f->webhook_id), "%s",
		         hook != NULL ? (const char *)hook : "");
		f->attempts = sqlite3_column_int(st, 2);
	}
	if (*n < limit && rc != SQLITE_DONE)
		result = fail(c->db, "listing failed deliveries", err, errlen);
	sqlite3_reset(st);
	reader_give(s, c);
	return result;
}

static int sq_prune(struct store *base, int64_t cutoff_ms, size_t max_rows,
                    struct store_pruned *out, char *err, size_t errlen)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	struct conn *c = s->writer;
	int rc = 0;
	pthread_mutex_lock(&s->write_lock);
	if (step_once(c->st[ST_BEGIN]) != SQLITE_DONE) {
		rc = fail(c->db, "begin", err, errlen);
		goto out;
	}
	size_t budget = max_rows;
	while (budget > 0) {
		sqlite3_stmt *st = c->st[ST_PRUNE_PICK];
		sqlite3_bind_int64(st, 1, cutoff_ms);
		sqlite3_bind_int64(st, 2, cutoff_ms - STORE_PRUNE_OPEN_AFTER_MS);
		char id[ID_LEN + 1] = "";
		int step = sqlite3_step(st);
		if (step == SQLITE_ROW) {
			const unsigned char *t = sqlite3_column_text(st, 0);
			snprintf(id, sizeof(id), "%s", t != NULL ? (const char *)t : "");
		}
		sqlite3_reset(st);
		if (step == SQLITE_DONE)
			break; /* nothing older */
		if (step != SQLITE_ROW || id[0] == '\0')
			goto failed;
		st = c->st[ST_PRUNE_DELIVERIES];
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)budget);
		if (step_once(st) != SQLITE_DONE)
			goto failed;
		size_t gone = (size_t)sqlite3_changes(c->db);
		out->deliveries += (int64_t)gone;
		budget -= gone < budget ? gone : budget;
		if (budget == 0 && gone > 0)
			break; /* it may have more: the next call goes on */
		st = c->st[ST_PRUNE_ITEMS];
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		sqlite3_bind_int64(st, 2, (sqlite3_int64)budget);
		if (step_once(st) != SQLITE_DONE)
			goto failed;
		gone = (size_t)sqlite3_changes(c->db);
		budget -= gone < budget ? gone : budget;
		if (budget == 0 && gone > 0)
			break;
		st = c->st[ST_PRUNE_EVENT];
		sqlite3_bind_text(st, 1, id, -1, SQLITE_TRANSIENT);
		if (step_once(st) != SQLITE_DONE)
			goto failed;
		out->events++;
		budget--;
	}
	if (step_once(c->st[ST_COMMIT]) != SQLITE_DONE) {
		rc = fail(c->db, "commit", err, errlen);
		if (!sqlite3_get_autocommit(c->db))
			step_once(c->st[ST_ROLLBACK]);
		*out = (struct store_pruned){0};
	}
	goto out;
failed:
	rc = fail(c->db, "pruning old events", err, errlen);
	step_once(c->st[ST_ROLLBACK]);
	*out = (struct store_pruned){0};
out:
	pthread_mutex_unlock(&s->write_lock);
	return rc;
}

static void sq_destroy(struct store *base)
{
	struct store_sqlite *s = (struct store_sqlite *)base;
	while (s->idle != NULL) {
		struct conn *c = s->idle;
		s->idle = c->next;
		conn_destroy(c);
	}
	conn_destroy(s->writer);
	pthread_mutex_destroy(&s->write_lock);
	pthread_mutex_destroy(&s->pool_lock);
	free(s->path);
	free(s);
}

static const struct store_vtable sqlite_vt = {
    .name = "sqlite",
    .destroy = sq_destroy,
    .apply = sq_apply,
    .get = sq_get,
    .list = sq_list,
    .meta = sq_meta,
    .delivery_states = sq_delivery_states,
    .item_members = sq_item_members,
    .get_event = sq_get_event,
    .pending = sq_pending,
    .list_deliveries = sq_list_deliveries,
    .failed_deliveries = sq_failed_deliveries,
    .prune = sq_prune,
};

/* Create the directories leading to path, like mkdir -p on its dirname. */
static int make_parents(const char *path, char *err, size_t errlen)
{
	char buf[PATH_MAX];
	size_t len = strlen(path);
	if (len >= sizeof(buf)) {
		snprintf(err, errlen, "sqlite: path too long");
		return -ENAMETOOLONG;
	}
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p != '\0'; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0750) != 0 && errno != EEXIST) {
			snprintf(err, errlen, "sqlite: cannot create directory %s: %s", buf,
			         strerror(errno));
			return -errno;
		}
		*p = '/';
	}
	return 0;
}

struct store *store_sqlite_open(const char *path, char *err, size_t errlen)
{
	if (path[0] == '\0') {
		snprintf(err, errlen, "STORE_URL: expected sqlite:PATH with a file path");
		return NULL;
	}
	/* Memory statistics take one process-wide mutex on every allocation, which every
	 * reader thread would contend for. Only possible before SQLite initialises, so a
	 * second store in the same process (tests) keeps whatever the first one set. */
	(void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
	if (!sqlite3_threadsafe()) {
		snprintf(err, errlen, "sqlite: the library was built without thread support");
		return NULL;
	}
	struct store_sqlite *s = calloc(1, sizeof(*s));
	if (s == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	s->base.vt = &sqlite_vt;
	/* glibc's init of a mutex, condition or attribute with these attributes only stores
	 * them: it cannot fail. */
	(void)pthread_mutex_init(&s->write_lock, NULL);
	(void)pthread_mutex_init(&s->pool_lock, NULL);
	s->path = strdup(path);
	if (s->path == NULL) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	if (make_parents(path, err, errlen) != 0)
		goto fail;
	s->writer = conn_open(path, true, err, errlen);
	if (s->writer == NULL)
		goto fail;
	/* Readers opened now, not by the first reads: opening one and preparing its statements
	 * takes milliseconds, which the first event's fan-out would otherwise wait for. */
	for (int i = 0; i < WARM_READERS; i++) {
		struct conn *c = conn_open(path, false, err, errlen);
		if (c == NULL)
			goto fail;
		reader_give(s, c);
	}
	return &s->base;
fail:
	sq_destroy(&s->base);
	return NULL;
}
