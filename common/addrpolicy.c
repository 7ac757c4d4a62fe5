/* addrpolicy.c -- which network addresses a webhook may be delivered to (see addrpolicy.h).
 *
 * The blocks are those of the IANA IPv4 and IPv6 Special-Purpose Address Registries that are
 * not globally reachable, plus multicast and the old deprecated ones. IPv6 is judged by an
 * allow-list: only global unicast (2000::/3) can be public, less the special blocks inside it,
 * so that every block outside it (::, ::1, ::/96, 64:ff9b::/96, 100::/64, fc00::/7, fe80::/10,
 * fec0::/10, ff00::/8 ...) is refused without having to be listed. */
#include "addrpolicy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"

struct block {
	unsigned char addr[16];
	unsigned prefix;
	const char *kind;
};

/* IPv4, most specific first where blocks nest. */
static const struct block v4_blocks[] = {
    {{255, 255, 255, 255}, 32, "broadcast"},
    {{0, 0, 0, 0}, 8, "\"this network\""},
    {{10, 0, 0, 0}, 8, "private"},
    {{100, 64, 0, 0}, 10, "shared (carrier-grade NAT)"},
    {{127, 0, 0, 0}, 8, "loopback"},
    {{169, 254, 0, 0}, 16, "link-local"},
    {{172, 16, 0, 0}, 12, "private"},
    {{192, 0, 0, 0}, 24, "reserved (IETF protocol assignments)"},
    {{192, 0, 2, 0}, 24, "documentation"},
    {{192, 88, 99, 0}, 24, "reserved (6to4 relay)"},
    {{192, 168, 0, 0}, 16, "private"},
    {{198, 18, 0, 0}, 15, "benchmarking"},
    {{198, 51, 100, 0}, 24, "documentation"},
    {{203, 0, 113, 0}, 24, "documentation"},
    {{224, 0, 0, 0}, 4, "multicast"},
    {{240, 0, 0, 0}, 4, "reserved"},
};

/* IPv6 blocks inside 2000::/3 that are not public. */
static const struct block v6_blocks[] = {
    {{0x20, 0x01, 0x00, 0x02, 0x00, 0x00}, 48, "benchmarking"},
    {{0x20, 0x01, 0x00, 0x00}, 32, "reserved (Teredo)"},
    {{0x20, 0x01, 0x00, 0x10}, 28, "reserved (ORCHID)"},
    {{0x20, 0x01, 0x0d, 0xb8}, 32, "documentation"},
    {{0x20, 0x02}, 16, "reserved (6to4)"},
    {{0x3f, 0xff, 0x00}, 20, "documentation"},
};

static bool in_prefix(const unsigned char *addr, const unsigned char *net, unsigned prefix)
{
	unsigned whole = prefix / 8, rest = prefix % 8;
	if (memcmp(addr, net, whole) != 0)
		return false;
	if (rest == 0)
		return true;
	unsigned char mask = (unsigned char)(0xff << (8 - rest));
	return (addr[whole] & mask) == (net[whole] & mask);
}

static bool is_v4_mapped(const unsigned char *a)
{
	static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return memcmp(a, mapped, sizeof(mapped)) == 0;
}

/* An IPv4-mapped IPv6 address becomes the IPv4 address it carries. */
static void unmap(int *family, const unsigned char **addr)
{
	if (*family == AF_INET6 && is_v4_mapped(*addr)) {
		*family = AF_INET;
		*addr += 12;
	}
}

const char *addr_special(int family, const unsigned char *addr)
{
	unmap(&family, &addr);
	if (family == AF_INET) {
		for (size_t i = 0; i < sizeof(v4_blocks) / sizeof(v4_blocks[0]); i++)
			if (in_prefix(addr, v4_blocks[i].addr, v4_blocks[i].prefix))
				return v4_blocks[i].kind;
		return NULL;
	}
	if (family != AF_INET6)
		return "not an IP";
	static const unsigned char zero[16], one[16] = {[15] = 1};
	static const unsigned char nat64[16] = {0x00, 0x64, 0xff, 0x9b};
	if ((addr[0] & 0xe0) != 0x20) {
		/* Outside global unicast: name the common ones, the rest is reserved. */
		if (memcmp(addr, zero, 16) == 0)
			return "unspecified";
		if (memcmp(addr, one, 16) == 0)
			return "loopback";
		if ((addr[0] & 0xfe) == 0xfc)
			return "private (unique local)";
		if (addr[0] == 0xfe && (addr[1] & 0xc0) == 0x80)
			return "link-local";
		if (addr[0] == 0xff)
			return "multicast";
		if (in_prefix(addr, nat64, 48))
			return "reserved (NAT64)";
		return "reserved";
	}
	for (size_t i = 0; i < sizeof(v6_blocks) / sizeof(v6_blocks[0]); i++)
		if (in_prefix(addr, v6_blocks[i].addr, v6_blocks[i].prefix))
			return v6_blocks[i].kind;
	return NULL;
}

bool addr_policy_allows(const struct addr_policy *p, int family, const unsigned char *addr)
{
	if (p->allow_private)
		return true;
	unmap(&family, &addr);
	if (addr_special(family, addr) == NULL)
		return true;
	for (size_t i = 0; i < p->n; i++)
		if (p->cidrs[i].family == family &&
		    in_prefix(addr, p->cidrs[i].addr, p->cidrs[i].prefix))
			return true;
	return false;
}

bool addr_policy_allows_sockaddr(const struct addr_policy *p, const struct sockaddr *sa, char *text)
{
	const unsigned char *addr;
	if (sa->sa_family == AF_INET)
		addr = (const unsigned char *)&((const struct sockaddr_in *)(const void *)sa)
		           ->sin_addr;
	else if (sa->sa_family == AF_INET6)
		addr = ((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr.s6_addr;
	else {
		if (text != NULL)
			snprintf(text, ADDR_TEXT_LEN, "an address of family %d",
			         (int)sa->sa_family);
		return false;
	}
	if (text != NULL && inet_ntop(sa->sa_family, addr, text, ADDR_TEXT_LEN) == NULL)
		snprintf(text, ADDR_TEXT_LEN, "?");
	return addr_policy_allows(p, sa->sa_family, addr);
}

/* Parse "ADDR" or "ADDR/PREFIX" (the text between commas, with its length). */
static bool parse_cidr(const char *text, size_t len, struct addr_cidr *out)
{
	char buf[64];
	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, text, len);
	buf[len] = '\0';
	char *slash = strchr(buf, '/');
	if (slash != NULL)
		*slash = '\0';
	memset(out->addr, 0, sizeof(out->addr));
	if (inet_pton(AF_INET, buf, out->addr) == 1)
		out->family = AF_INET;
	else if (inet_pton(AF_INET6, buf, out->addr) == 1)
		out->family = AF_INET6;
	else
		return false;
	long max = out->family == AF_INET ? 32 : 128, prefix = max;
	if (slash != NULL && (!cfg_parse_long(slash + 1, &prefix) || prefix < 0 || prefix > max))
		return false;
	out->prefix = (unsigned)prefix;
	/* An IPv4-mapped block is an IPv4 one: addresses are unmapped before they are matched. */
	if (out->family == AF_INET6 && is_v4_mapped(out->addr) && out->prefix >= 96) {
		memmove(out->addr, out->addr + 12, 4);
		memset(out->addr + 4, 0, 12);
		out->family = AF_INET;
		out->prefix -= 96;
	}
	return true;
}

int addr_policy_init(struct addr_policy *p, bool allow_private, const char *list, char *err,
                     size_t errlen)
{
	memset(p, 0, sizeof(*p));
	p->allow_private = allow_private;
	const char *at = list != NULL ? list : "";
	while (*at != '\0') {
		size_t len = strcspn(at, ",");
		if (p->n == ADDR_POLICY_MAX_CIDRS) {
			snprintf(err, errlen, "TARGET_ALLOW_CIDRS: at most %d blocks",
			         ADDR_POLICY_MAX_CIDRS);
			return -EINVAL;
		}
		if (!parse_cidr(at, len, &p->cidrs[p->n])) {
			/* The entry as it came, but on one line (found by fuzz_config). */
			char shown[65];
			size_t k = 0;
			for (; k < len && k < sizeof(shown) - 1; k++)
				shown[k] =
				    (unsigned char)at[k] < 0x20 || at[k] == 0x7f ? '?' : at[k];
			shown[k] = '\0';
			snprintf(err, errlen,
			         "TARGET_ALLOW_CIDRS: expected comma-separated CIDRs such as "
			         "10.0.0.0/8 or fd00::/8, got '%s'",
			         shown);
			return -EINVAL;
		}
		p->n++;
		at += len;
		if (*at == ',' && *++at == '\0') {
			snprintf(err, errlen,
			         "TARGET_ALLOW_CIDRS: an empty entry after the last ','");
			return -EINVAL;
		}
	}
	return 0;
}

bool addr_policy_refuses_literal(const struct addr_policy *p, const char *host, char *what,
                                 size_t whatlen)
{
	unsigned char addr[16];
	char buf[64];
	int family;
	size_t len = strlen(host);
	if (len >= 2 && host[0] == '[' && host[len - 1] == ']' && len - 2 < sizeof(buf)) {
		memcpy(buf, host + 1, len - 2);
		buf[len - 2] = '\0';
		buf[strcspn(buf, "%")] = '\0'; /* a zone id: the address is link-local anyway */
		family = AF_INET6;
	} else if (len < sizeof(buf)) {
		memcpy(buf, host, len + 1);
		family = AF_INET;
	} else {
		return false;
	}
	if (inet_pton(family, buf, addr) != 1)
		return false; /* a name: judged at connect time */
	if (addr_policy_allows(p, family, addr))
		return false;
	snprintf(what, whatlen, "%s is a %s address", buf, addr_special(family, addr));
	return true;
}
