/* test_walbuf.c -- the WAL-gathering VFS (webhooks-svc/store/walbuf.c) keeps SQLite's promises:
 *   - a commit is in the file when it returns: another connection (the default VFS, its own
 *     file descriptors) sees it at once, for commits far smaller and far bigger than the buffer;
 *   - kill -9 of a writer mid-transaction loses no commit it reported, and leaves a database
 *     that passes integrity_check;
 *   - a write that fails (the file size limit: what a full disk does to a write) fails the
 *     commit it belongs to, and the database keeps exactly the commits that succeeded. */
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "walbuf.h"

#define ROW_BYTES 3000 /* about one frame per row with 4 KiB pages */

struct ctx {
	char dir[256];
	char path[300];
};

static int setup(void **state)
{
	struct ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -1;
	const char *tmp = getenv("TMPDIR");
	snprintf(c->dir, sizeof(c->dir), "%s/walbuf-XXXXXX", tmp != NULL ? tmp : "/tmp");
	if (mkdtemp(c->dir) == NULL) {
		free(c);
		return -1;
	}
	snprintf(c->path, sizeof(c->path), "%s/t.db", c->dir);
	*state = c;
	return 0;
}

static int teardown(void **state)
{
	struct ctx *c = *state;
	const char *suffix[] = {"", "-wal", "-shm"};
	for (size_t i = 0; i < 3; i++) {
		char p[320];
		snprintf(p, sizeof(p), "%s%s", c->path, suffix[i]);
		unlink(p);
	}
	rmdir(c->dir);
	free(c);
	return 0;
}

static void exec_ok(sqlite3 *db, const char *sql)
{
	char *msg = NULL;
	int rc = sqlite3_exec(db, sql, NULL, NULL, &msg);
	if (rc != SQLITE_OK)
		fprintf(stderr, "%s: %s\n", sql, msg != NULL ? msg : "?");
	sqlite3_free(msg);
	assert_int_equal(rc, SQLITE_OK);
}

/* The writer as store_sqlite.c opens it: through walbuf, WAL, synchronous=FULL. */
static sqlite3 *open_writer(const char *path)
{
	const char *vfs = walbuf_vfs();
	assert_non_null(vfs);
	sqlite3 *db = NULL;
	int rc = sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, vfs);
	assert_int_equal(rc, SQLITE_OK);
	exec_ok(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;"
	            "CREATE TABLE IF NOT EXISTS t (txn INTEGER NOT NULL, pad BLOB NOT NULL)");
	return db;
}

static sqlite3 *open_reader(const char *path)
{
	sqlite3 *db = NULL;
	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 5000);
	return db;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	int64_t v = sqlite3_column_int64(st, 0);
	sqlite3_finalize(st);
	return v;
}

/* One transaction of rows rows tagged txn; returns the commit's result code. */
static int commit_rows(sqlite3 *db, int txn, int rows)
{
	if (sqlite3_exec(db, "BEGIN", NULL, NULL, NULL) != SQLITE_OK)
		return sqlite3_errcode(db);
	sqlite3_stmt *st = NULL;
	int rc = sqlite3_prepare_v2(db, "INSERT INTO t (txn, pad) VALUES (?1, randomblob(?2))", -1,
	                            &st, NULL);
	for (int i = 0; rc == SQLITE_OK && i < rows; i++) {
		sqlite3_bind_int(st, 1, txn);
		sqlite3_bind_int(st, 2, ROW_BYTES);
		rc = sqlite3_step(st) == SQLITE_DONE ? SQLITE_OK : sqlite3_errcode(db);
		sqlite3_reset(st);
	}
	sqlite3_finalize(st);
	if (rc == SQLITE_OK)
		rc = sqlite3_exec(db, "COMMIT", NULL, NULL, NULL);
	if (rc != SQLITE_OK && !sqlite3_get_autocommit(db))
		sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
	return rc;
}

static void assert_intact(sqlite3 *db)
{
	sqlite3_stmt *st = NULL;
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA integrity_check", -1, &st, NULL),
	                 SQLITE_OK);
	assert_int_equal(sqlite3_step(st), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(st, 0), "ok");
	sqlite3_finalize(st);
}

static void test_commits_are_seen_at_once_by_another_connection(void **state)
{
	struct ctx *c = *state;
	sqlite3 *w = open_writer(c->path), *r = open_reader(c->path);
	int64_t rows = 0;
	/* 1 row is two writes gathered; 90 rows (about 270 KiB of frames) overflow the buffer
	 * several times within one commit. Enough commits to pass the auto-checkpoint (1000
	 * pages) and start the log over from its beginning more than once. */
	const int sizes[] = {1, 2, 7, 40, 90, 3};
	for (int txn = 0; txn < 120; txn++) {
		int n = sizes[txn % 6];
		assert_int_equal(commit_rows(w, txn, n), SQLITE_OK);
		rows += n;
		assert_int_equal(query_int(r, "SELECT count(*) FROM t"), rows);
		char sql[96];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE txn = %d", txn);
		assert_int_equal(query_int(r, sql), n);
	}
	assert_intact(r);
	sqlite3_close(r);
	assert_int_equal(sqlite3_close(w), SQLITE_OK);
	/* And from scratch, once both are closed. */
	r = open_reader(c->path);
	assert_int_equal(query_int(r, "SELECT count(*) FROM t"), rows);
	assert_intact(r);
	sqlite3_close(r);
}

static void test_kill_9_loses_no_reported_commit(void **state)
{
	struct ctx *c = *state;
	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		close(fds[0]);
		sqlite3 *w = open_writer(c->path);
		for (int txn = 1;; txn++) {
			if (commit_rows(w, txn, 1 + txn % 50) != SQLITE_OK)
				_exit(3);
			if (write(fds[1], &txn, sizeof(txn)) != (ssize_t)sizeof(txn))
				_exit(4);
		}
	}
	close(fds[1]);
	int last = 0, txn;
	while (last < 150 && read(fds[0], &txn, sizeof(txn)) == (ssize_t)sizeof(txn))
		last = txn;
	/* Wherever it is now: most likely inside the next transaction. */
	kill(pid, SIGKILL);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFSIGNALED(status));
	while (read(fds[0], &txn, sizeof(txn)) == (ssize_t)sizeof(txn))
		last = txn; /* reported before the kill landed */
	close(fds[0]);
	assert_true(last >= 150);

	sqlite3 *r = open_reader(c->path);
	assert_intact(r);
	int64_t top = query_int(r, "SELECT max(txn) FROM t");
	assert_true(top >= last);
	for (int t = 1; t <= top; t++) {
		char sql[96];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE txn = %d", t);
		assert_int_equal(query_int(r, sql), 1 + t % 50); /* whole, never in part */
	}
	sqlite3_close(r);
}

/* The rows of commit txn in the write failure test: small ones, and every third one about
 * 180 KiB of frames, more than the buffer holds (a flush inside a write). */
static int rows_of(int txn)
{
	return txn % 3 == 0 ? 60 : 1 + txn % 7;
}

static void test_a_failed_write_fails_its_commit(void **state)
{
	struct ctx *c = *state;
	sqlite3 *w = open_writer(c->path);
	for (int txn = 1; txn <= 5; txn++)
		assert_int_equal(commit_rows(w, txn, 4), SQLITE_OK);
	assert_int_equal(sqlite3_close(w), SQLITE_OK);

	int fds[2];
	assert_int_equal(pipe(fds), 0);
	pid_t pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		/* Past the limit a write fails with EFBIG instead of the signal: a full disk. */
		close(fds[0]);
		signal(SIGXFSZ, SIG_IGN);
		w = open_writer(c->path);
		struct stat st;
		char wal[320];
		snprintf(wal, sizeof(wal), "%s-wal", c->path);
		if (stat(wal, &st) != 0)
			st.st_size = 0;
		struct rlimit lim = {.rlim_cur = (rlim_t)st.st_size + 400 * 1024,
		                     .rlim_max = RLIM_INFINITY};
		if (setrlimit(RLIMIT_FSIZE, &lim) != 0)
			_exit(5);
		int report[2] = {0, SQLITE_OK}; /* commits that succeeded, the failure */
		for (int txn = 6; txn < 200 && report[1] == SQLITE_OK; txn++) {
			int rc = commit_rows(w, txn, rows_of(txn));
			if (rc == SQLITE_OK)
				report[0]++;
			else
				report[1] = rc;
		}
		if (write(fds[1], report, sizeof(report)) != (ssize_t)sizeof(report))
			_exit(4);
		_exit(0); /* no close: as if it died there */
	}
	close(fds[1]);
	int report[2];
	assert_int_equal(read(fds[0], report, sizeof(report)), (ssize_t)sizeof(report));
	close(fds[0]);
	int status;
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	/* The limit was reached: a commit failed, with a write error. */
	assert_int_not_equal(report[1], SQLITE_OK);
	assert_true((report[1] & 0xff) == SQLITE_FULL || (report[1] & 0xff) == SQLITE_IOERR);
	assert_true(report[0] >= 1);

	/* Exactly the commits that succeeded, and the database is sound and writable again. */
	sqlite3 *r = open_reader(c->path);
	assert_intact(r);
	int last = 5 + report[0];
	assert_int_equal(query_int(r, "SELECT max(txn) FROM t"), last);
	for (int t = 6; t <= last; t++) {
		char sql[96];
		snprintf(sql, sizeof(sql), "SELECT count(*) FROM t WHERE txn = %d", t);
		assert_int_equal(query_int(r, sql), rows_of(t));
	}
	sqlite3_close(r);
	w = open_writer(c->path);
	assert_int_equal(commit_rows(w, 1000, 3), SQLITE_OK);
	assert_int_equal(query_int(w, "SELECT count(*) FROM t WHERE txn = 1000"), 3);
	assert_int_equal(sqlite3_close(w), SQLITE_OK);
}

/* A transaction that spills pages into the log and is then rolled back leaves frames that must
 * never be written: once the write lock is free, another writer commits frames at the same
 * offsets, and this connection's next write or read must not put the old ones over them. */
static void test_rolled_back_frames_never_reach_the_file(void **state)
{
	struct ctx *c = *state;
	sqlite3 *w = open_writer(c->path), *other = open_reader(c->path);
	exec_ok(w, "PRAGMA cache_size=10"); /* a small cache: a big transaction spills */
	assert_int_equal(commit_rows(w, 1, 60), SQLITE_OK);
	/* Every page in the database file, none in the log: undoing the transaction below reads
	 * nothing from the log (a read would write out what is gathered). */
	exec_ok(w, "PRAGMA wal_checkpoint(TRUNCATE)");
	exec_ok(w, "BEGIN; UPDATE t SET pad = randomblob(3000) WHERE txn = 1");
	exec_ok(w, "ROLLBACK");
	/* The other writer (the default VFS) commits over where the rolled-back frames were. */
	assert_int_equal(commit_rows(other, 2, 100), SQLITE_OK);
	/* This connection reads and writes the log again. */
	assert_int_equal(query_int(w, "SELECT count(*) FROM t WHERE txn = 2"), 100);
	assert_int_equal(commit_rows(w, 3, 5), SQLITE_OK);
	assert_int_equal(commit_rows(other, 4, 5), SQLITE_OK);
	assert_int_equal(sqlite3_close(other), SQLITE_OK);
	assert_int_equal(sqlite3_close(w), SQLITE_OK);

	sqlite3 *r = open_reader(c->path);
	assert_intact(r);
	assert_int_equal(query_int(r, "SELECT count(*) FROM t WHERE txn = 1"), 60);
	assert_int_equal(query_int(r, "SELECT count(*) FROM t WHERE txn = 2"), 100);
	assert_int_equal(query_int(r, "SELECT count(*) FROM t WHERE txn = 3"), 5);
	assert_int_equal(query_int(r, "SELECT count(*) FROM t WHERE txn = 4"), 5);
	sqlite3_close(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_commits_are_seen_at_once_by_another_connection,
	                                    setup, teardown),
	    cmocka_unit_test_setup_teardown(test_kill_9_loses_no_reported_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_a_failed_write_fails_its_commit, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rolled_back_frames_never_reach_the_file, setup,
	                                    teardown),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
