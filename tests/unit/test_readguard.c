/* test_readguard.c -- unit tests for gateway/readguard.c on socket pairs: a connection past its
 * deadline is shut down (its peer reads end of file), one whose request was read is not, the
 * next request gets a new deadline, and a closed one is forgotten. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <stdbool.h>
#include <sys/socket.h>
#include <unistd.h>

#include "readguard.h"

#define DEADLINE_MS 100

/* Whether the peer's end reads end of file within ms. */
static bool peer_sees_eof(int peer, int ms)
{
	struct pollfd p = {.fd = peer, .events = POLLIN};
	if (poll(&p, 1, ms) != 1)
		return false;
	char c;
	return recv(peer, &c, 1, MSG_DONTWAIT) == 0;
}

static void pair(int sv[2])
{
	assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
}

static void close_pair(int sv[2])
{
	close(sv[0]);
	close(sv[1]);
}

static void test_cut_when_due(void **state)
{
	(void)state;
	struct readguard *g = readguard_create(DEADLINE_MS);
	assert_non_null(g);
	int a[2], b[2];
	pair(a);
	pair(b);
	struct rg_conn *ca = readguard_opened(g, a[0]);
	struct rg_conn *cb = readguard_opened(g, b[0]);
	assert_non_null(ca);
	assert_non_null(cb);
	/* Both are cut once due, the first opened first; nothing else is. */
	assert_true(peer_sees_eof(a[1], 5000));
	assert_true(peer_sees_eof(b[1], 5000));
	assert_int_equal(readguard_cut_count(g), 2);
	readguard_closed(g, ca);
	readguard_closed(g, cb);
	readguard_destroy(g);
	close_pair(a);
	close_pair(b);
}

static void test_read_then_next(void **state)
{
	(void)state;
	struct readguard *g = readguard_create(DEADLINE_MS);
	int a[2];
	pair(a);
	struct rg_conn *c = readguard_opened(g, a[0]);
	/* Read whole: no deadline while it is answered, however long that takes. */
	readguard_read(g, c);
	assert_false(peer_sees_eof(a[1], 4 * DEADLINE_MS));
	assert_int_equal(readguard_cut_count(g), 0);
	/* Answered: the next request is due within the deadline again. */
	readguard_next(g, c);
	assert_true(peer_sees_eof(a[1], 5000));
	assert_int_equal(readguard_cut_count(g), 1);
	readguard_closed(g, c);
	readguard_destroy(g);
	close_pair(a);
}

static void test_closed_is_forgotten(void **state)
{
	(void)state;
	struct readguard *g = readguard_create(DEADLINE_MS);
	int a[2], b[2];
	pair(a);
	pair(b);
	struct rg_conn *ca = readguard_opened(g, a[0]);
	struct rg_conn *cb = readguard_opened(g, b[0]);
	/* a goes first (its socket stays open here, as a reused descriptor would): never cut. */
	readguard_closed(g, ca);
	assert_true(peer_sees_eof(b[1], 5000));
	assert_false(peer_sees_eof(a[1], 2 * DEADLINE_MS));
	assert_int_equal(readguard_cut_count(g), 1);
	readguard_closed(g, cb);
	readguard_destroy(g);
	close_pair(a);
	close_pair(b);
}

/* A guard that was not made, or a connection it could not record, is a no-op. */
static void test_null(void **state)
{
	(void)state;
	assert_null(readguard_opened(NULL, 0));
	readguard_read(NULL, NULL);
	readguard_next(NULL, NULL);
	readguard_closed(NULL, NULL);
	assert_int_equal(readguard_cut_count(NULL), 0);
	readguard_destroy(NULL);
	struct readguard *g = readguard_create(DEADLINE_MS);
	readguard_read(g, NULL);
	readguard_next(g, NULL);
	readguard_closed(g, NULL);
	readguard_destroy(g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cut_when_due),
	    cmocka_unit_test(test_read_then_next),
	    cmocka_unit_test(test_closed_is_forgotten),
	    cmocka_unit_test(test_null),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
