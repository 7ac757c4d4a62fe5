/* addrpolicy.h -- which network addresses a webhook may be delivered to.
 *
 * By default only public addresses: loopback, private, shared (CGNAT), link-local, multicast,
 * broadcast, documentation, benchmarking, reserved and the other special-purpose blocks of the
 * IANA registries are refused, in IPv4 and IPv6 (an IPv4-mapped IPv6 address is judged as the
 * IPv4 address it carries). ALLOW_PRIVATE_TARGETS=1 allows every address; TARGET_ALLOW_CIDRS
 * allows the blocks it lists. The dispatcher asks at connect time, after DNS, so a name that
 * resolves (or rebinds) to a refused address is refused too; registration asks for literal
 * addresses in URLs. */
#ifndef WEBHOOKS_ADDRPOLICY_H
#define WEBHOOKS_ADDRPOLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>

#define ADDR_POLICY_MAX_CIDRS 64

struct addr_cidr {
	int family; /* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

struct addr_policy {
	bool allow_private; /* every address is allowed */
	size_t n;
	struct addr_cidr cidrs[ADDR_POLICY_MAX_CIDRS];
};

/* Fill p from the two settings: allow_private, and list, comma-separated CIDRs ("10.0.0.0/8",
 * "::1/128", or a bare address for a single one; "" for none). Returns 0, or -EINVAL with a
 * sentence naming the bad entry in err. */
__attribute__((warn_unused_result)) int addr_policy_init(struct addr_policy *p, bool allow_private,
                                                         const char *list, char *err,
                                                         size_t errlen);

/* The kind of special-purpose block addr (4 bytes for AF_INET, 16 for AF_INET6) is in, such
 * as "loopback" or "private", or NULL for a public address. */
const char *addr_special(int family, const unsigned char *addr);

/* Whether p allows a connection to addr. */
bool addr_policy_allows(const struct addr_policy *p, int family, const unsigned char *addr);

/* The same for a socket address; false for a family other than AF_INET and AF_INET6. The
 * address is written as text into text (at least ADDR_TEXT_LEN bytes) when text is not NULL. */
#define ADDR_TEXT_LEN 46
bool addr_policy_allows_sockaddr(const struct addr_policy *p, const struct sockaddr *sa,
                                 char *text);

/* Whether host, a URL's host as libcurl normalises it ("127.0.0.1", "[::1]"), is a literal
 * address that p refuses. The address's text and kind go in what (for the error message). */
bool addr_policy_refuses_literal(const struct addr_policy *p, const char *host, char *what,
                                 size_t whatlen);

#endif
