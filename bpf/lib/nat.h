/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Address and port rewrites with incremental checksum updates.
 *
 * The csum helpers are used instead of writing checksums by hand because they know the skb's
 * checksum state: packets from a local pod's veth are usually CHECKSUM_PARTIAL, where the L4
 * field holds only the pseudo-header sum. BPF_F_PSEUDO_HDR tells the helper an address (part of
 * the pseudo header) changed, so it updates the partial sum; a port change is not pseudo-header
 * data, so in the partial case the helper leaves the field for the device to finish.
 */
#ifndef SLUICE_BPF_LIB_NAT_H
#define SLUICE_BPF_LIB_NAT_H

#include "lib/common.h"
#include "lib/parse.h"

#define LB4_CSUM_OFF	(ETH_HLEN + 10)
#define LB4_SADDR_OFF	(ETH_HLEN + 12)
#define LB4_DADDR_OFF	(ETH_HLEN + 16)
#define LB6_SADDR_OFF	(ETH_HLEN + 8)
#define LB6_DADDR_OFF	(ETH_HLEN + 24)

static __always_inline __u32 lb_l4_csum_off(const struct lb_pkt *p)
{
	return p->l4_off + (p->proto == IPPROTO_TCP ? 16 : 6);
}

/*
 * RFC 768: a UDP checksum of zero means "none" (IPv4) and must stay zero; a computed sum of
 * zero is sent as 0xffff. BPF_F_MARK_MANGLED_0 implements both.
 */
static __always_inline __u64 lb_l4_csum_flags(const struct lb_pkt *p)
{
	return p->proto == IPPROTO_UDP ? BPF_F_MARK_MANGLED_0 : 0;
}

/* RFC 8200 8.1: IPv6 receivers discard UDP with a zero checksum; never "fix" one by NAT. */
static __always_inline bool lb_udp6_zero_csum(const struct lb_pkt *p)
{
	return p->family == 6 && p->proto == IPPROTO_UDP && p->frag != LB_FRAG_LATER &&
	       p->l4_csum == 0;
}

/* Rewrites the source (src) or destination address from -> to. 0 or -1. */
static __always_inline int lb_nat_addr(void *ctx, enum lb_hook hook, const struct lb_pkt *p,
				       bool src, const union lb_addr *from, const union lb_addr *to)
{
	__u32 len = p->family == 4 ? 4 : 16;
	__u32 off = p->family == 4 ? (src ? LB4_SADDR_OFF : LB4_DADDR_OFF) :
				     (src ? LB6_SADDR_OFF : LB6_DADDR_OFF);
	__s64 diff = bpf_csum_diff((__be32 *)from->a, len, (__be32 *)to->a, len, 0);

	/* A later fragment has no L4 header; its datagram's sum was fixed in the first. */
	if (p->frag != LB_FRAG_LATER && p->proto != IPPROTO_ICMP && p->proto != IPPROTO_ICMPV6 &&
	    lb_csum_update(ctx, hook, lb_l4_csum_off(p), diff, false, true,
			   p->proto == IPPROTO_UDP) < 0)
		return -1;
	/* ICMPv6 sums a pseudo header too (RFC 4443 2.3); ICMPv4 does not. */
	if (p->proto == IPPROTO_ICMPV6 &&
	    lb_csum_update(ctx, hook, p->l4_off + 2, diff, false, true, false) < 0)
		return -1;
	if (p->family == 4 && lb_csum_update(ctx, hook, LB4_CSUM_OFF, diff, true, false, false) < 0)
		return -1;
	return lb_store(ctx, hook, off, to->a, len) < 0 ? -1 : 0;
}

/* Rewrites the source (src) or destination port. Callers skip later fragments. 0 or -1. */
static __always_inline int lb_nat_port(void *ctx, enum lb_hook hook, const struct lb_pkt *p,
				       bool src, __be16 from, __be16 to)
{
	if (from == to)
		return 0;
	if (lb_csum_update(ctx, hook, lb_l4_csum_off(p), lb_csum_diff16(from, to), false, false,
			   p->proto == IPPROTO_UDP) < 0)
		return -1;
	return lb_store(ctx, hook, p->l4_off + (src ? 0 : 2), &to, 2) < 0 ? -1 : 0;
}

/*
 * Client -> service: destination becomes the backend; SNAT (hairpin, NodePort to another node)
 * also replaces the client's address and port. The flag is
 * separate from the address because clang turns `cond ? ptr : NULL` into pointer masking, which
 * the verifier rejects.
 */
static __always_inline int lb_xlate_fwd(void *ctx, enum lb_hook hook, const struct lb_pkt *p,
					const union lb_addr *backend, __be16 backend_port,
					bool snat, const union lb_addr *snat_src, __be16 snat_port)
{
	if (lb_nat_addr(ctx, hook, p, false, &p->daddr, backend) < 0)
		return -1;
	if (p->frag != LB_FRAG_LATER &&
	    lb_nat_port(ctx, hook, p, false, p->dport, backend_port) < 0)
		return -1;
	if (!snat)
		return 0;
	if (lb_nat_addr(ctx, hook, p, true, &p->saddr, snat_src) < 0)
		return -1;
	if (p->frag != LB_FRAG_LATER && lb_nat_port(ctx, hook, p, true, p->sport, snat_port) < 0)
		return -1;
	return 0;
}

/* Backend -> client: source becomes the service again; SNAT restores the client. */
static __always_inline int lb_xlate_reply(void *ctx, enum lb_hook hook, const struct lb_pkt *p,
					  const union lb_addr *vip, __be16 vport,
					  bool snat, const union lb_addr *client, __be16 client_port)
{
	if (lb_nat_addr(ctx, hook, p, true, &p->saddr, vip) < 0)
		return -1;
	if (p->frag != LB_FRAG_LATER && lb_nat_port(ctx, hook, p, true, p->sport, vport) < 0)
		return -1;
	if (!snat)
		return 0;
	if (lb_nat_addr(ctx, hook, p, false, &p->daddr, client) < 0)
		return -1;
	if (p->frag != LB_FRAG_LATER &&
	    lb_nat_port(ctx, hook, p, false, p->dport, client_port) < 0)
		return -1;
	return 0;
}

#endif
