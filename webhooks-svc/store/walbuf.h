/* walbuf.h -- an SQLite VFS over the default one that gathers a connection's appends to its
 * write-ahead log in memory and writes them with one pwrite when SQLite syncs (or reads the
 * log), instead of two pwrites per page (a frame header, then the page). Everything else goes
 * straight to the default VFS.
 *
 * Only for a connection in WAL mode with synchronous=FULL (or EXTRA), which syncs the log at
 * every commit: that sync is what writes a commit's frames before other connections may read
 * them. Under NORMAL, frames would reach the file only at a later sync or read.
 * store_sqlite.c checks the setting after opening the writer with it. Also only on a file
 * system where a write does not disturb the bytes around it (SQLite's powersafe overwrite, the
 * default VFS's default; not with the URI parameter psow=0): without it SQLite pads a commit's
 * last frame after the sync, and that padding would reach the file only later. */
#ifndef WEBHOOKS_WALBUF_H
#define WEBHOOKS_WALBUF_H

/* The VFS's name for sqlite3_open_v2, registered on the first call (not as the default);
 * NULL when it could not be registered (then open with the default VFS). Thread-safe. */
const char *walbuf_vfs(void);

#endif
