/* fuzz_addrpolicy.c -- libFuzzer: TARGET_ALLOW_CIDRS as addr_policy_init reads it, and the
 * decisions of the policy it makes (common/addrpolicy.c).
 *
 * Input: one byte of flags (bit 0: ALLOW_PRIVATE_TARGETS), 16 bytes of an address to judge,
 * then the list's text. Invariants:
 * - the list is accepted exactly when each comma-separated entry (under 64 bytes) is an
 *   address inet_pton reads, optionally with "/PREFIX" (decimal, at most 32 or 128), and
 *   there are at most
 *   ADDR_POLICY_MAX_CIDRS of them; each block is then the entry's (an IPv4-mapped IPv6 block
 *   of prefix 96 or more as the IPv4 block it carries);
 * - a refusal is one line that names TARGET_ALLOW_CIDRS;
 * - every block's first and last addresses are allowed, and refused as literals by no URL;
 * - the policy allows an address exactly when ALLOW_PRIVATE_TARGETS is on, or the address
 *   (IPv4-mapped ones as IPv4) is public, or it is in a listed block. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdbool.h>

#include "addrpolicy.h"
#include "fuzz_check.h"

static bool in_block(const unsigned char *a, const unsigned char *net, unsigned prefix)
{
	for (unsigned bit = 0; bit < prefix; bit++) {
		unsigned char m = (unsigned char)(0x80 >> (bit % 8));
		if ((a[bit / 8] & m) != (net[bit / 8] & m))
			return false;
	}
	return true;
}

static bool is_mapped(const unsigned char *a)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return memcmp(a, mapped, 12) == 0;
}

/* One entry as the model reads it. */
static bool model_entry(const char *text, size_t len, struct addr_cidr *c)
{
	char buf[64]; /* the parser's bound on an entry: no address is longer */
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	char *slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	memset(c, 0, sizeof(*c));
	if (inet_pton(AF_INET, buf, c->addr) == 1)
		c->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, c->addr) == 1)
		c->family = AF_INET6;
	else
		return false;
	unsigned max = c->family == AF_INET ? 32 : 128;
	c->prefix = max;
	if (slash != NULL) {
		const char *p = slash + 1;
		unsigned long v = 0;
		if (*p == '-')
			p++; /* "-0" is a decimal zero */
		if (*p == '\0' || (slash[1] == '-' && strspn(p, "0") != strlen(p)))
			return false;
		for (; *p != '\0'; p++) {
			if (*p < '0' || *p > '9' || (v = v * 10 + (unsigned long)(*p - '0')) > max)
				return false;
		}
		c->prefix = (unsigned)v;
	}
	if (c->family == AF_INET6 && is_mapped(c->addr) && c->prefix >= 96) {
		memmove(c->addr, c->addr + 12, 4);
		memset(c->addr + 4, 0, 12);
		c->family = AF_INET;
		c->prefix -= 96;
	}
	return true;
}

static void check_block(const struct addr_policy *p, const struct addr_cidr *c, const char *list)
{
	if (c->family == AF_INET6 && is_mapped(c->addr))
		return; /* a mapped block under /96 is judged as IPv4 addresses: it allows none */
	size_t n = c->family == AF_INET ? 4 : 16;
	unsigned char first[16] = {0}, last[16] = {0};
	for (size_t i = 0; i < n; i++) {
		unsigned bits = c->prefix > i * 8 ? c->prefix - (unsigned)i * 8 : 0;
		unsigned char mask = bits >= 8 ? 0xff : (unsigned char)(0xff << (8 - bits));
		first[i] = c->addr[i] & mask;
		last[i] = (unsigned char)(first[i] | (unsigned char)~mask);
	}
	/* The IPv4-mapped addresses of an IPv6 block (of "::/80", say) are judged as IPv4. */
	CHECK((c->family == AF_INET6 && is_mapped(first)) ||
	          addr_policy_allows(p, c->family, first),
	      "the first address of a block of '%s' is not allowed", list);
	CHECK((c->family == AF_INET6 && is_mapped(last)) || addr_policy_allows(p, c->family, last),
	      "the last address of a block of '%s' is not allowed", list);
	char text[INET6_ADDRSTRLEN + 2], host[INET6_ADDRSTRLEN + 2], what[128];
	CHECK(inet_ntop(c->family, last, text, INET6_ADDRSTRLEN) != NULL, "inet_ntop");
	snprintf(host, sizeof(host), c->family == AF_INET ? "%s" : "[%s]", text);
	if (c->family == AF_INET6 && is_mapped(last))
		return; /* ::ffff:a.b.c.d in a v6 block under /96 */
	CHECK(!addr_policy_refuses_literal(p, host, what, sizeof(what)),
	      "%s, in a block of '%s', refused: %s", host, list, what);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 17)
		return 0;
	bool allow_private = data[0] & 1;
	unsigned char probe[16];
	memcpy(probe, data + 1, 16);
	char *list = fuzz_string(data + 17, size - 17, 8192);
	if (list == NULL)
		return 0;

	/* The model. */
	struct addr_cidr want[ADDR_POLICY_MAX_CIDRS + 1];
	size_t n = 0;
	bool ok = true;
	for (const char *at = list; *at != '\0' && ok;) {
		size_t len = strcspn(at, ",");
		ok = n < ADDR_POLICY_MAX_CIDRS && model_entry(at, len, &want[n]);
		n++;
		at += len;
		if (*at == ',' && *++at == '\0')
			ok = false; /* an empty last entry */
	}

	struct addr_policy p;
	char err[256] = "";
	int rc = addr_policy_init(&p, allow_private, list, err, sizeof(err));
	if (!ok) {
		CHECK(rc == -EINVAL, "'%s' accepted", list);
		CHECK(strncmp(err, "TARGET_ALLOW_CIDRS", 18) == 0 && !fuzz_has_control(err),
		      "'%s' refused with '%s'", list, err);
		free(list);
		return 0;
	}
	CHECK(rc == 0, "'%s' refused: %s", list, err);
	CHECK(p.n == n && p.allow_private == allow_private, "'%s': %zu blocks, expected %zu", list,
	      p.n, n);
	for (size_t i = 0; i < n; i++) {
		CHECK(p.cidrs[i].family == want[i].family && p.cidrs[i].prefix == want[i].prefix &&
		          memcmp(p.cidrs[i].addr, want[i].addr, 16) == 0,
		      "'%s': block %zu differs", list, i);
		check_block(&p, &p.cidrs[i], list);
	}

	/* The probe, as IPv4 (its first 4 bytes) and as IPv6. */
	for (int family = AF_INET; family != 0; family = family == AF_INET ? AF_INET6 : 0) {
		int f = family;
		const unsigned char *a = probe;
		if (f == AF_INET6 && is_mapped(a)) {
			f = AF_INET;
			a += 12;
		}
		bool listed = false;
		for (size_t i = 0; i < n; i++)
			listed |= want[i].family == f && in_block(a, want[i].addr, want[i].prefix);
		bool want_allowed = allow_private || addr_special(f, a) == NULL || listed;
		CHECK(addr_policy_allows(&p, family, probe) == want_allowed,
		      "'%s' (private %d) %s the probe", list, allow_private,
		      want_allowed ? "refuses" : "allows");
	}
	free(list);
	return 0;
}
