/* walbuf.c -- see walbuf.h.
 *
 * SQLite appends a WAL frame as two writes, its 24-byte header and then its page, and a commit
 * of a group-commit batch is tens of frames: each write a system call. Here a WAL file's writes
 * that follow on from one another are gathered in a buffer (WALBUF_CAP) and written with one
 * pwrite (or a few, for a big commit) before anything could need them on disk or in the file:
 *   - xSync: every commit, since the connection runs with synchronous=FULL (walbuf.h). SQLite
 *     syncs a commit's frames before it publishes the log's new end in the shared wal-index,
 *     so another connection (which reads the log through a file of its own) never reads a
 *     frame that is still here;
 *   - xRead (a checkpoint, or a page spilled earlier in the transaction), xTruncate,
 *     xFileSize and xClose of the WAL file;
 *   - a write that does not follow on, or would overflow the buffer: bytes reach the file in
 *     the order SQLite wrote them.
 * A failed gathered write fails the call that flushed it, as a failed write would have failed
 * SQLite's own write: a commit never succeeds with a frame unwritten. xShmBarrier flushes too
 * (a no-op under FULL) and, having no way to report, keeps a failure for the WAL file's next
 * call. A process that dies with frames in the buffer has not committed them (the sync is part
 * of the commit), so nothing is lost that SQLite had promised. Frames still here when the
 * WAL's write lock is released belong to a transaction rolled back, and are dropped: written
 * later, they could overwrite frames another writer committed meanwhile. Database and journal
 * files, the other locks and the file controls pass straight through. */
#include "walbuf.h"

#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>

#define WALBUF_NAME "webhooks-walbuf"
/* Under the most the default VFS writes with one call (it masks a write's length with 0x1ffff):
 * about 30 frames of 4 KiB pages per pwrite. */
#define WALBUF_CAP (120 * 1024)
/* SQLite's WAL writer lock: the first of the wal-index locks (wal.c's WAL_WRITE_LOCK). */
#define WAL_WRITE_LOCK 0
_Static_assert(WALBUF_CAP < 0x20000, "one pwrite of the default VFS writes at most 0x1ffff bytes");

struct wb_file {
	sqlite3_file base;
	sqlite3_file *real; /* the default VFS's file, right after this struct */
	bool is_wal;
	struct wb_file *db;  /* a WAL file: its database's file, when opened here */
	struct wb_file *wal; /* a database file: its WAL file, while open */
	unsigned char *buf;  /* WALBUF_CAP bytes, made on the first write */
	size_t len;          /* bytes gathered in buf, to go at offset at */
	sqlite3_int64 at;
	int failed; /* a gathered write's failure not reported yet (SQLITE_OK: none) */
};

static sqlite3_vfs wb_vfs;

static sqlite3_vfs *real_vfs(void)
{
	return wb_vfs.pAppData;
}

/* Write what is gathered. Returns the failure of that write, or of one flushed earlier where it
 * could not be reported (once: it is then reported). */
static int wb_flush(struct wb_file *f)
{
	if (f == NULL)
		return SQLITE_OK;
	int rc = f->failed;
	f->failed = SQLITE_OK;
	if (f->len > 0) {
		int wrc = f->real->pMethods->xWrite(f->real, f->buf, (int)f->len, f->at);
		f->len = 0;
		if (rc == SQLITE_OK)
			rc = wrc;
	}
	return rc;
}

static int wb_close(sqlite3_file *file)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = wb_flush(f);
	if (f->db != NULL)
		f->db->wal = NULL;
	if (f->wal != NULL)
		f->wal->db = NULL;
	int crc = f->real->pMethods->xClose(f->real);
	sqlite3_free(f->buf);
	f->buf = NULL;
	return rc != SQLITE_OK ? rc : crc;
}

static int wb_read(sqlite3_file *file, void *p, int n, sqlite3_int64 off)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = wb_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xRead(f->real, p, n, off);
}

static int wb_write(sqlite3_file *file, const void *p, int n, sqlite3_int64 off)
{
	struct wb_file *f = (struct wb_file *)file;
	if (!f->is_wal || n <= 0)
		return f->real->pMethods->xWrite(f->real, p, n, off);
	size_t len = (size_t)n;
	if (f->failed == SQLITE_OK && f->len > 0 && off == f->at + (sqlite3_int64)f->len &&
	    f->len + len <= WALBUF_CAP) {
		memcpy(f->buf + f->len, p, len);
		f->len += len;
		return SQLITE_OK;
	}
	int rc = wb_flush(f);
	if (rc != SQLITE_OK)
		return rc;
	if (f->buf == NULL && len <= WALBUF_CAP)
		f->buf = sqlite3_malloc(WALBUF_CAP);
	if (f->buf == NULL || len > WALBUF_CAP)
		return f->real->pMethods->xWrite(f->real, p, n, off);
	memcpy(f->buf, p, len);
	f->len = len;
	f->at = off;
	return SQLITE_OK;
}

static int wb_truncate(sqlite3_file *file, sqlite3_int64 size)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = wb_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xTruncate(f->real, size);
}

static int wb_sync(sqlite3_file *file, int flags)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = wb_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xSync(f->real, flags);
}

static int wb_file_size(sqlite3_file *file, sqlite3_int64 *size)
{
	struct wb_file *f = (struct wb_file *)file;
	int rc = wb_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xFileSize(f->real, size);
}

static int wb_lock(sqlite3_file *file, int level)
{
	struct wb_file *f = (struct wb_file *)file;
	return f->real->pMethods->xLock(f->real, level);
}

static int wb_unlock(sqlite3_file *file, int level)
{
	struct wb_file *f = (struct wb_file *)file;
	return f->real->pMethods->xUnlock(f->real, level);
}

static int wb_check_reserved_lock(sqlite3_file *file, int *out)
{
	struct wb_file *f = (struct wb_file *)file;
	return f->real->pMethods->xCheckReservedLock(f->real, out);
}

static int wb_file_control(sqlite3_file *file, int op, void *arg)
{
	struct wb_file *f = (struct wb_file *)file;
	return f->real->pMethods->xFileControl(f->real, op, arg);
}

static int wb_sector_size(sqlite3_file *file)
{
	struct wb_file *f = (struct wb_file *)file;
	return f->real->pMethods->xSectorSize(f->real);
}

static int wb_device_characteristics(sqlite3_file *file)
{
	struct wb_file *f = (struct wb_file *)file;
	return f->real->pMethods->xDeviceCharacteristics(f->real);
}

/* The shared-memory methods are called on the database file; they exist from version 2. */
static bool has_shm(const struct wb_file *f)
{
	return f->real->pMethods->iVersion >= 2 && f->real->pMethods->xShmMap != NULL;
}

static int wb_shm_map(sqlite3_file *file, int page, int size, int extend, void volatile **pp)
{
	struct wb_file *f = (struct wb_file *)file;
	if (!has_shm(f))
		return SQLITE_IOERR_SHMMAP;
	return f->real->pMethods->xShmMap(f->real, page, size, extend, pp);
}

static int wb_shm_lock(sqlite3_file *file, int offset, int n, int flags)
{
	struct wb_file *f = (struct wb_file *)file;
	if (!has_shm(f))
		return SQLITE_IOERR_SHMLOCK;
	if (offset == WAL_WRITE_LOCK && n == 1 &&
	    flags == (SQLITE_SHM_UNLOCK | SQLITE_SHM_EXCLUSIVE) && f->wal != NULL) {
		/* The write transaction is over. A commit's sync wrote its frames; whatever is
		 * still here belongs to one rolled back (pages spilled, then undone), and must
		 * never reach the file: once the lock is free, another writer may commit frames at
		 * the same offsets. */
		f->wal->len = 0;
	}
	return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}

static void wb_shm_barrier(sqlite3_file *file)
{
	struct wb_file *f = (struct wb_file *)file;
	/* Before the WAL's new end is published; under FULL the commit's sync wrote everything
	 * already. A failure cannot be reported here: the WAL file's next call reports it. */
	if (f->wal != NULL && f->wal->len > 0) {
		int rc = wb_flush(f->wal);
		if (rc != SQLITE_OK)
			f->wal->failed = rc;
	}
	if (has_shm(f))
		f->real->pMethods->xShmBarrier(f->real);
}

static int wb_shm_unmap(sqlite3_file *file, int delete_flag)
{
	struct wb_file *f = (struct wb_file *)file;
	if (!has_shm(f))
		return SQLITE_OK;
	return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}

static int wb_fetch(sqlite3_file *file, sqlite3_int64 off, int n, void **pp)
{
	struct wb_file *f = (struct wb_file *)file;
	*pp = NULL;
	if (f->real->pMethods->iVersion < 3 || f->real->pMethods->xFetch == NULL)
		return SQLITE_OK; /* no mapping: SQLite reads instead */
	int rc = wb_flush(f);
	return rc != SQLITE_OK ? rc : f->real->pMethods->xFetch(f->real, off, n, pp);
}

static int wb_unfetch(sqlite3_file *file, sqlite3_int64 off, void *p)
{
	struct wb_file *f = (struct wb_file *)file;
	if (f->real->pMethods->iVersion < 3 || f->real->pMethods->xUnfetch == NULL)
		return SQLITE_OK;
	return f->real->pMethods->xUnfetch(f->real, off, p);
}

static const sqlite3_io_methods wb_methods = {
    .iVersion = 3,
    .xClose = wb_close,
    .xRead = wb_read,
    .xWrite = wb_write,
    .xTruncate = wb_truncate,
    .xSync = wb_sync,
    .xFileSize = wb_file_size,
    .xLock = wb_lock,
    .xUnlock = wb_unlock,
    .xCheckReservedLock = wb_check_reserved_lock,
    .xFileControl = wb_file_control,
    .xSectorSize = wb_sector_size,
    .xDeviceCharacteristics = wb_device_characteristics,
    .xShmMap = wb_shm_map,
    .xShmLock = wb_shm_lock,
    .xShmBarrier = wb_shm_barrier,
    .xShmUnmap = wb_shm_unmap,
    .xFetch = wb_fetch,
    .xUnfetch = wb_unfetch,
};

static int wb_open(sqlite3_vfs *vfs, sqlite3_filename name, sqlite3_file *file, int flags,
                   int *out_flags)
{
	(void)vfs;
	struct wb_file *f = (struct wb_file *)file;
	memset(f, 0, sizeof(*f));
	f->real = (sqlite3_file *)(f + 1);
	int rc = real_vfs()->xOpen(real_vfs(), name, f->real, flags, out_flags);
	if (rc != SQLITE_OK) {
		if (f->real->pMethods != NULL)
			f->real->pMethods->xClose(f->real);
		f->base.pMethods = NULL;
		return rc;
	}
	f->base.pMethods = &wb_methods;
	if ((flags & SQLITE_OPEN_WAL) && name != NULL) {
		f->is_wal = true;
		sqlite3_file *db = sqlite3_database_file_object(name);
		if (db != NULL && db->pMethods == &wb_methods) {
			f->db = (struct wb_file *)db;
			f->db->wal = f;
		}
	}
	return SQLITE_OK;
}

/* The rest is the default VFS's own. */
static int wb_delete(sqlite3_vfs *vfs, const char *name, int sync_dir)
{
	(void)vfs;
	return real_vfs()->xDelete(real_vfs(), name, sync_dir);
}

static int wb_access(sqlite3_vfs *vfs, const char *name, int flags, int *out)
{
	(void)vfs;
	return real_vfs()->xAccess(real_vfs(), name, flags, out);
}

static int wb_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xFullPathname(real_vfs(), name, n, out);
}

static void *wb_dl_open(sqlite3_vfs *vfs, const char *name)
{
	(void)vfs;
	return real_vfs()->xDlOpen(real_vfs(), name);
}

static void wb_dl_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	real_vfs()->xDlError(real_vfs(), n, out);
}

static void (*wb_dl_sym(sqlite3_vfs *vfs, void *lib, const char *sym))(void)
{
	(void)vfs;
	return real_vfs()->xDlSym(real_vfs(), lib, sym);
}

static void wb_dl_close(sqlite3_vfs *vfs, void *lib)
{
	(void)vfs;
	real_vfs()->xDlClose(real_vfs(), lib);
}

static int wb_randomness(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xRandomness(real_vfs(), n, out);
}

static int wb_sleep(sqlite3_vfs *vfs, int us)
{
	(void)vfs;
	return real_vfs()->xSleep(real_vfs(), us);
}

static int wb_current_time(sqlite3_vfs *vfs, double *out)
{
	(void)vfs;
	return real_vfs()->xCurrentTime(real_vfs(), out);
}

static int wb_get_last_error(sqlite3_vfs *vfs, int n, char *out)
{
	(void)vfs;
	return real_vfs()->xGetLastError(real_vfs(), n, out);
}

static int wb_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out)
{
	(void)vfs;
	return real_vfs()->xCurrentTimeInt64(real_vfs(), out);
}

static const char *registered;

static void wb_register(void)
{
	sqlite3_vfs *real = sqlite3_vfs_find(NULL);
	if (real == NULL || real->iVersion < 2 || real->xCurrentTimeInt64 == NULL)
		return;
	wb_vfs = (sqlite3_vfs){
	    .iVersion = 2,
	    .szOsFile = (int)sizeof(struct wb_file) + real->szOsFile,
	    .mxPathname = real->mxPathname,
	    .zName = WALBUF_NAME,
	    .pAppData = real,
	    .xOpen = wb_open,
	    .xDelete = wb_delete,
	    .xAccess = wb_access,
	    .xFullPathname = wb_full_pathname,
	    .xDlOpen = wb_dl_open,
	    .xDlError = wb_dl_error,
	    .xDlSym = wb_dl_sym,
	    .xDlClose = wb_dl_close,
	    .xRandomness = wb_randomness,
	    .xSleep = wb_sleep,
	    .xCurrentTime = wb_current_time,
	    .xGetLastError = wb_get_last_error,
	    .xCurrentTimeInt64 = wb_current_time_int64,
	};
	if (sqlite3_vfs_register(&wb_vfs, 0) == SQLITE_OK)
		registered = WALBUF_NAME;
}

const char *walbuf_vfs(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	(void)pthread_once(&once, wb_register);
	return registered;
}
