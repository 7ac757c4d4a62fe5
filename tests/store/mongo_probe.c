/* mongo_probe.c -- runs store calls read from stdin and prints each result, for the wire tests.
 *
 * Usage: mongo_probe STORE_URL. Prints "open rc=0 backend=NAME ms=T" (or the error) and then
 * reads one command per line, runs it and prints one line per command on stdout:
 *
 *   get ID                  -> get rc=R [id=.. url=.. created=.. updated=..] ms=T
 *   list AFTER|- LIMIT      -> list rc=R n=N ids=a,b,.. ms=T
 *   meta                    -> meta rc=R webhooks=N last_id=ID|- ms=T
 *   event ID                -> event rc=R [id=.. ip=.. created=.. targets=.. succeeded=..
 *                              failed=.. fanned=.. items=.. done=0|1] ms=T
 *   states EVENT ID[,ID..]  -> states rc=R states=S1,.. ms=T, each S "-" (not found) or
 *                              STATUS/ATTEMPTS
 *   deliveries EVENT AFTER|- LIMIT
 *                           -> deliveries rc=R n=N ms=T, then N lines
 *                              "delivery ID WEBHOOK STATUS URL ATTEMPTS-JSON"
 *   failed EVENT AFTER|- LIMIT
 *                           -> failed rc=R n=N list=ID/WEBHOOK/ATTEMPTS,.. ms=T
 *   members EVENT ITEM      -> members rc=R found=0|1 [n=N end=ID|- last=0|1 ids=a,b,..|-]
 *                              ms=T
 *   prune CUTOFF MAX-ROWS   -> prune rc=R events=N deliveries=M ms=T
 *   apply N                 -> apply rc=R results=r1,.. created=c1,.. ms=T
 *     followed by N lines, one op each:
 *       insert ID CREATED UPDATED URL | update ID UPDATED URL | delete ID
 *       event_insert ID IP CREATED TARGETS | event_item EVENT ITEM DELIVERIES LAST(0|1)
 *       [END|- ID,ID,..|-] (members: as many ids as DELIVERIES, at most PROBE_MEMBERS)
 *       attempt EVENT DELIVERY WEBHOOK NUMBER AT HTTP-STATUS STATUS DURATION URL|- [ERROR...]
 *       (URL "-": not sent, as jsqueue.c records a delivery whose webhook is gone)
 *   quit (or end of input)  -> exits 0 after store_destroy
 *
 * A failed call ends its line with " err=<message>". ms is the call's duration, so the test can
 * check that every call returns within its timeouts. */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store.h"
#include "timeutil.h"

#define MAX_BATCH     1000
#define PROBE_MEMBERS 8    /* members of one event_item op at most */
#define MAX_STATES    2500 /* more than the MongoDB backend asks for in one find */

static void finish(int rc, int64_t start_ms, const char *err)
{
	printf(" ms=%lld", (long long)(time_mono_ms() - start_ms));
	if (rc != 0)
		printf(" err=%s", err);
	printf("\n");
	fflush(stdout);
}

static int parse_i64(const char *text, int64_t *out)
{
	char *end;
	if (text == NULL)
		return -EINVAL;
	errno = 0;
	long long v = strtoll(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0')
		return -EINVAL;
	*out = v;
	return 0;
}

static int copy_field(char *dst, size_t cap, const char *src)
{
	size_t len;
	if (src == NULL)
		return -EINVAL;
	len = strlen(src);
	if (len >= cap)
		return -EINVAL;
	memcpy(dst, src, len + 1);
	return 0;
}

static int parse_int(const char *text, int *out)
{
	int64_t v;
	if (parse_i64(text, &v) != 0 || v < INT32_MIN || v > INT32_MAX)
		return -EINVAL;
	*out = (int)v;
	return 0;
}

/* "attempt EVENT DELIVERY WEBHOOK NUMBER AT HTTP-STATUS STATUS DURATION URL|- [ERROR...]" */
static int parse_attempt(char **save, struct store_attempt *a)
{
	const char *url;
	const char *error;
	int status;
	if (copy_field(a->event_id, sizeof(a->event_id), strtok_r(NULL, " \n", save)) != 0 ||
	    copy_field(a->delivery_id, sizeof(a->delivery_id), strtok_r(NULL, " \n", save)) != 0 ||
	    copy_field(a->webhook_id, sizeof(a->webhook_id), strtok_r(NULL, " \n", save)) != 0 ||
	    parse_int(strtok_r(NULL, " \n", save), &a->number) != 0 ||
	    parse_i64(strtok_r(NULL, " \n", save), &a->at_ms) != 0 ||
	    parse_int(strtok_r(NULL, " \n", save), &a->http_status) != 0 ||
	    parse_int(strtok_r(NULL, " \n", save), &status) != 0 ||
	    parse_i64(strtok_r(NULL, " \n", save), &a->duration_ms) != 0)
		return -EINVAL;
	a->status = (enum store_delivery_status)status;
	url = strtok_r(NULL, " \n", save);
	if (url == NULL ||
	    copy_field(a->target_url, sizeof(a->target_url), strcmp(url, "-") == 0 ? "" : url))
		return -EINVAL;
	a->not_sent = strcmp(url, "-") == 0; /* as jsqueue.c records one: without a URL */
	error = strtok_r(NULL, "\n", save);
	return copy_field(a->error, sizeof(a->error), error != NULL ? error : "");
}

/* Parse one op line of an apply (see the top of the file). */
/* "END|- ID,ID,..|-" after an event_item: its members, into members. */
static int parse_members(char **save, struct store_op *op, unsigned char (*members)[ID_BIN_LEN])
{
	const char *end = strtok_r(NULL, " \n", save);
	char *list = strtok_r(NULL, " \n", save);
	if (end == NULL)
		return 0; /* none */
	if (list == NULL ||
	    copy_field(op->item.end, sizeof(op->item.end), strcmp(end, "-") == 0 ? "" : end) != 0)
		return -EINVAL;
	int64_t n = 0;
	char *at = NULL;
	for (char *id = strcmp(list, "-") == 0 ? NULL : strtok_r(list, ",", &at); id != NULL;
	     id = strtok_r(NULL, ",", &at)) {
		if (n == PROBE_MEMBERS || !id_pack(id, members[n]))
			return -EINVAL;
		n++;
	}
	if (n != op->item.deliveries)
		return -EINVAL;
	op->item.members = (const unsigned char(*)[ID_BIN_LEN])members;
	return 0;
}

static int parse_op(char *line, struct store_op *op, unsigned char (*members)[ID_BIN_LEN])
{
	char *save = NULL;
	const char *kind = strtok_r(line, " \n", &save);
	memset(op, 0, sizeof(*op));
	if (kind == NULL)
		return -EINVAL;
	if (strcmp(kind, "attempt") == 0) {
		op->kind = STORE_OP_ATTEMPT;
		return parse_attempt(&save, &op->attempt);
	}
	if (strcmp(kind, "event_insert") == 0) {
		op->kind = STORE_OP_EVENT_INSERT;
		if (copy_field(op->event.id, sizeof(op->event.id), strtok_r(NULL, " \n", &save)) ||
		    copy_field(op->event.ip, sizeof(op->event.ip), strtok_r(NULL, " \n", &save)) ||
		    parse_i64(strtok_r(NULL, " \n", &save), &op->event.created_ms))
			return -EINVAL;
		return parse_i64(strtok_r(NULL, " \n", &save), &op->event.targets);
	}
	if (strcmp(kind, "event_item") == 0) {
		int last = 0;
		op->kind = STORE_OP_EVENT_ITEM;
		if (copy_field(op->item.event_id, sizeof(op->item.event_id),
		               strtok_r(NULL, " \n", &save)) ||
		    parse_i64(strtok_r(NULL, " \n", &save), &op->item.item) ||
		    parse_i64(strtok_r(NULL, " \n", &save), &op->item.deliveries) ||
		    parse_int(strtok_r(NULL, " \n", &save), &last) || (last != 0 && last != 1))
			return -EINVAL;
		op->item.last = last == 1;
		return parse_members(&save, op, members);
	}
	if (copy_field(op->hook.id, sizeof(op->hook.id), strtok_r(NULL, " \n", &save)) != 0)
		return -EINVAL;
	if (strcmp(kind, "insert") == 0) {
		op->kind = STORE_OP_INSERT;
		if (parse_i64(strtok_r(NULL, " \n", &save), &op->hook.created_ms) != 0 ||
		    parse_i64(strtok_r(NULL, " \n", &save), &op->hook.updated_ms) != 0)
			return -EINVAL;
		return copy_field(op->hook.target_url, sizeof(op->hook.target_url),
		                  strtok_r(NULL, " \n", &save));
	}
	if (strcmp(kind, "update") == 0) {
		op->kind = STORE_OP_UPDATE;
		if (parse_i64(strtok_r(NULL, " \n", &save), &op->hook.updated_ms) != 0)
			return -EINVAL;
		return copy_field(op->hook.target_url, sizeof(op->hook.target_url),
		                  strtok_r(NULL, " \n", &save));
	}
	if (strcmp(kind, "delete") == 0) {
		op->kind = STORE_OP_DELETE;
		return 0;
	}
	return -EINVAL;
}

static void run_apply(struct store *s, FILE *in, const char *count_text)
{
	static struct store_op ops[MAX_BATCH];
	static unsigned char members[MAX_BATCH][PROBE_MEMBERS][ID_BIN_LEN];
	char err[STORE_ERR_LEN] = "";
	char *line = NULL;
	size_t cap = 0;
	int64_t n = 0;
	int rc = 0;

	if (parse_i64(count_text, &n) != 0 || n < 0 || n > MAX_BATCH) {
		printf("apply rc=%d err=bad op count\n", -EINVAL);
		fflush(stdout);
		return;
	}
	for (int64_t i = 0; i < n; i++) {
		if (getline(&line, &cap, in) < 0 || parse_op(line, &ops[i], members[i]) != 0) {
			printf("apply rc=%d err=bad op line %lld\n", -EINVAL, (long long)i);
			fflush(stdout);
			free(line);
			return;
		}
		if (ops[i].kind == STORE_OP_UPDATE || ops[i].kind == STORE_OP_DELETE)
			ops[i].hook.created_ms = -1;
		ops[i].result = 1; /* not a value any backend sets */
	}
	free(line);
	int64_t start = time_mono_ms();
	rc = store_apply(s, ops, (size_t)n, err, sizeof(err));
	printf("apply rc=%d results=", rc);
	for (int64_t i = 0; i < n; i++)
		printf("%s%d", i > 0 ? "," : "", ops[i].result);
	printf(" created=");
	for (int64_t i = 0; i < n; i++) {
		bool hook = ops[i].kind == STORE_OP_INSERT || ops[i].kind == STORE_OP_UPDATE ||
		            ops[i].kind == STORE_OP_DELETE;
		printf("%s%lld", i > 0 ? "," : "", hook ? (long long)ops[i].hook.created_ms : -1LL);
	}
	finish(rc, start, err);
}

static void run_members(struct store *s, const char *event_id, const char *item_text)
{
	static struct store_item_members m;
	char err[STORE_ERR_LEN] = "";
	int64_t item = 0;
	if (event_id == NULL || parse_i64(item_text, &item) != 0) {
		printf("members rc=%d err=usage: members EVENT ITEM\n", -EINVAL);
		fflush(stdout);
		return;
	}
	int64_t start = time_mono_ms();
	int rc = store_item_members(s, event_id, item, &m, err, sizeof(err));
	printf("members rc=%d found=%d", rc, m.found ? 1 : 0);
	if (rc == 0 && m.found) {
		printf(" n=%zu end=%s last=%d ids=", m.n, m.end[0] != '\0' ? m.end : "-",
		       m.last ? 1 : 0);
		for (size_t i = 0; i < m.n; i++) {
			char id[ID_LEN + 1];
			id_unpack(m.ids[i], id);
			printf("%s%s", i > 0 ? "," : "", id);
		}
		if (m.n == 0)
			printf("-");
	}
	finish(rc, start, err);
}

static void run_get(struct store *s, const char *id)
{
	static struct store_webhook h;
	char err[STORE_ERR_LEN] = "";
	int64_t start = time_mono_ms();
	int rc = store_get(s, id != NULL ? id : "", &h, err, sizeof(err));
	printf("get rc=%d", rc);
	if (rc == 0)
		printf(" id=%s url=%s created=%lld updated=%lld", h.id, h.target_url,
		       (long long)h.created_ms, (long long)h.updated_ms);
	finish(rc, start, err);
}

static void run_list(struct store *s, const char *after, const char *limit_text)
{
	static struct store_webhook rows[MAX_BATCH];
	char err[STORE_ERR_LEN] = "";
	int64_t limit = 0;
	size_t n = 0;

	if (after == NULL || parse_i64(limit_text, &limit) != 0 || limit < 0 || limit > MAX_BATCH) {
		printf("list rc=%d err=usage: list AFTER|- LIMIT\n", -EINVAL);
		fflush(stdout);
		return;
	}
	int64_t start = time_mono_ms();
	int rc = store_list(s, strcmp(after, "-") == 0 ? NULL : after, (size_t)limit, rows, &n, err,
	                    sizeof(err));
	printf("list rc=%d n=%zu ids=", rc, n);
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i > 0 ? "," : "", rows[i].id);
	finish(rc, start, err);
}

/* "event ID" reads the summary, "event_head ID" the event without its counts. */
static void run_event(struct store *s, const char *id, bool head)
{
	static struct store_event ev;
	char err[STORE_ERR_LEN] = "";
	int64_t start = time_mono_ms();
	int rc = (head ? store_get_event_head : store_get_event)(s, id != NULL ? id : "", &ev, err,
	                                                         sizeof(err));
	printf("event rc=%d", rc);
	if (rc == 0)
		printf(
		    " id=%s ip=%s created=%lld targets=%lld succeeded=%lld failed=%lld fanned=%lld"
		    " items=%lld done=%d",
		    ev.id, ev.ip, (long long)ev.created_ms, (long long)ev.targets,
		    (long long)ev.succeeded, (long long)ev.failed, (long long)ev.fanned,
		    (long long)ev.items, ev.done ? 1 : 0);
	finish(rc, start, err);
}

static void run_deliveries(struct store *s, const char *event_id, const char *after,
                           const char *limit_text)
{
	static struct store_delivery rows[MAX_BATCH];
	char err[STORE_ERR_LEN] = "";
	int64_t limit = 0;
	size_t n = 0;

	if (event_id == NULL || after == NULL || parse_i64(limit_text, &limit) != 0 || limit < 0 ||
	    limit > MAX_BATCH) {
		printf("deliveries rc=%d err=usage: deliveries EVENT AFTER|- LIMIT\n", -EINVAL);
		fflush(stdout);
		return;
	}
	int64_t start = time_mono_ms();
	int rc = store_list_deliveries(s, event_id, strcmp(after, "-") == 0 ? NULL : after,
	                               (size_t)limit, rows, &n, err, sizeof(err));
	printf("deliveries rc=%d n=%zu", rc, n);
	finish(rc, start, err);
	for (size_t i = 0; i < n; i++)
		printf("delivery %s %s %d %s %s\n", rows[i].id, rows[i].webhook_id,
		       (int)rows[i].status,
		       rows[i].target_url[0] != '\0' ? rows[i].target_url : "-",
		       rows[i].attempts_json);
	fflush(stdout);
	store_deliveries_free(rows, n);
}

static void run_failed(struct store *s, const char *event_id, const char *after,
                       const char *limit_text)
{
	static struct store_failed rows[MAX_BATCH];
	char err[STORE_ERR_LEN] = "";
	int64_t limit = 0;
	size_t n = 0;

	if (event_id == NULL || after == NULL || parse_i64(limit_text, &limit) != 0 || limit < 0 ||
	    limit > MAX_BATCH) {
		printf("failed rc=%d err=usage: failed EVENT AFTER|- LIMIT\n", -EINVAL);
		fflush(stdout);
		return;
	}
	int64_t start = time_mono_ms();
	int rc = store_failed_deliveries(s, event_id, strcmp(after, "-") == 0 ? NULL : after,
	                                 (size_t)limit, rows, &n, err, sizeof(err));
	printf("failed rc=%d n=%zu list=", rc, n);
	for (size_t i = 0; i < n; i++)
		printf("%s%s/%s/%d", i > 0 ? "," : "", rows[i].id, rows[i].webhook_id,
		       rows[i].attempts);
	finish(rc, start, err);
}

static void run_prune(struct store *s, const char *cutoff_text, const char *max_text)
{
	char err[STORE_ERR_LEN] = "";
	int64_t cutoff = 0, max = 0;
	if (parse_i64(cutoff_text, &cutoff) != 0 || parse_i64(max_text, &max) != 0 || max < 1) {
		printf("prune rc=%d err=usage: prune CUTOFF MAX-ROWS\n", -EINVAL);
		fflush(stdout);
		return;
	}
	struct store_pruned p = {-1, -1};
	int64_t start = time_mono_ms();
	int rc = store_prune(s, cutoff, (size_t)max, &p, err, sizeof(err));
	printf("prune rc=%d events=%lld deliveries=%lld", rc, (long long)p.events,
	       (long long)p.deliveries);
	finish(rc, start, err);
}

static void run_meta(struct store *s)
{
	struct store_meta meta = {.webhooks = -1};
	char err[STORE_ERR_LEN] = "";
	int64_t start = time_mono_ms();
	int rc = store_meta(s, &meta, err, sizeof(err));
	printf("meta rc=%d webhooks=%lld last_id=%s", rc, (long long)meta.webhooks,
	       meta.last_id[0] != '\0' ? meta.last_id : "-");
	finish(rc, start, err);
}

/* "states EVENT ID[,ID..]" */
static void run_states(struct store *s, const char *event_id, char *list)
{
	static char ids[MAX_STATES][ID_LEN + 1];
	static struct store_delivery_state out[MAX_STATES];
	char err[STORE_ERR_LEN] = "";
	char *save = NULL;
	size_t n = 0;

	for (char *id = list != NULL ? strtok_r(list, ",", &save) : NULL; id != NULL;
	     id = strtok_r(NULL, ",", &save)) {
		if (n == MAX_STATES || copy_field(ids[n], sizeof(ids[n]), id) != 0) {
			n = 0;
			break;
		}
		n++;
	}
	if (event_id == NULL || n == 0) {
		printf("states rc=%d err=usage: states EVENT ID[,ID..]\n", -EINVAL);
		fflush(stdout);
		return;
	}
	int64_t start = time_mono_ms();
	int rc = store_delivery_states(s, event_id, ids, n, out, err, sizeof(err));
	printf("states rc=%d states=", rc);
	for (size_t i = 0; i < n; i++) {
		if (out[i].found)
			printf("%s%d/%d", i > 0 ? "," : "", (int)out[i].status, out[i].attempts);
		else
			printf("%s-", i > 0 ? "," : "");
	}
	finish(rc, start, err);
}

int main(int argc, char **argv)
{
	char err[STORE_ERR_LEN] = "";
	char *line = NULL;
	size_t cap = 0;
	struct store *s;

	if (argc != 2) {
		fprintf(stderr, "usage: mongo_probe STORE_URL < commands\n");
		return 2;
	}
	int64_t start = time_mono_ms();
	s = store_open(argv[1], err, sizeof(err));
	if (s == NULL) {
		printf("open rc=-1");
		finish(-1, start, err);
		return 1;
	}
	printf("open rc=0 backend=%s", store_backend(s));
	finish(0, start, err);

	while (getline(&line, &cap, stdin) >= 0) {
		char *save = NULL;
		const char *cmd = strtok_r(line, " \n", &save);
		const char *a1 = strtok_r(NULL, " \n", &save);
		char *a2 = strtok_r(NULL, " \n", &save);
		const char *a3 = strtok_r(NULL, " \n", &save);
		if (cmd == NULL)
			continue;
		if (strcmp(cmd, "quit") == 0)
			break;
		if (strcmp(cmd, "get") == 0)
			run_get(s, a1);
		else if (strcmp(cmd, "list") == 0)
			run_list(s, a1, a2);
		else if (strcmp(cmd, "meta") == 0)
			run_meta(s);
		else if (strcmp(cmd, "states") == 0)
			run_states(s, a1, a2);
		else if (strcmp(cmd, "event") == 0 || strcmp(cmd, "event_head") == 0)
			run_event(s, a1, strcmp(cmd, "event_head") == 0);
		else if (strcmp(cmd, "deliveries") == 0)
			run_deliveries(s, a1, a2, a3);
		else if (strcmp(cmd, "failed") == 0)
			run_failed(s, a1, a2, a3);
		else if (strcmp(cmd, "prune") == 0)
			run_prune(s, a1, a2);
		else if (strcmp(cmd, "members") == 0)
			run_members(s, a1, a2);
		else if (strcmp(cmd, "apply") == 0)
			run_apply(s, stdin, a1);
		else {
			printf("%s rc=%d err=unknown command\n", cmd, -EINVAL);
			fflush(stdout);
		}
	}
	free(line);
	store_destroy(s);
	return 0;
}
