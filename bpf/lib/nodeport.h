/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * North-south: what traffic from outside the node needs beyond the translation itself.
 *
 * - Where a backend is: the FIB decides. A route out of a native device (lb_devices_v1) means
 *   another node: the packet leaves from here (XDP_TX / redirect, L2 from the FIB). Anything
 *   else (a pod's veth, a local address) is this node: translate and hand to the stack.
 * - SNAT to another node: source = the egress device's address and a port from
 *   [cfg_snat_port_min, cfg_snat_port_max], taken by inserting the REPLY entry with
 *   BPF_NOEXIST (the conntrack table is the allocator) and refused when a local socket owns the
 *   tuple.
 * - DSR: the service address rides to the backend's node in an IPv4 option or an IPv6
 *   destination option (Cilium's encodings), on a TCP SYN or every UDP datagram; that node
 *   learns a REPLY entry from it and its backend answers the client directly.
 * - ICMP errors quoting a translated packet are translated back, so PMTU discovery and
 *   unreachables reach the real endpoints.
 */
#ifndef SLUICE_BPF_LIB_NODEPORT_H
#define SLUICE_BPF_LIB_NODEPORT_H

#include "lib/common.h"
#include "lib/ctx.h"
#include "lib/maps.bpf.h"
#include "lib/parse.h"
#include "lib/nat.h"
#include "lib/conntrack.h"
#include "lib/reject.h"

#ifndef AF_INET
#define AF_INET 2
#endif
#ifndef AF_INET6
#define AF_INET6 10
#endif

const volatile __u32 cfg_lb_mode = LB_MODE_SNAT;
const volatile __u16 cfg_snat_port_min = LB_SNAT_PORT_MIN;
const volatile __u16 cfg_snat_port_max = LB_SNAT_PORT_MAX;

/* Ports tried for a new SNAT flow before it is dropped (Cilium tries 128 in a wider range). */
#define LB_SNAT_TRIES 16

enum lb_where {
	LB_WHERE_LOCAL = 0,	/* this node: hand to the stack */
	LB_WHERE_REMOTE,	/* out of a native device, L2 filled in */
	LB_WHERE_NEIGH,		/* out of a native device, neighbour unresolved (tc resolves) */
	LB_WHERE_NONE,		/* no route */
	/*
	 * Another node, but the stack sends it: an IPv4 datagram without DF that outgrew the
	 * device (the stack fragments it), or an ICMP error XDP translated whose neighbour is
	 * unresolved (the stack resolves it).
	 */
	LB_WHERE_STACK,
};

struct lb_route {
	__u32 ifindex;
	__u8 smac[ETH_ALEN];
	__u8 dmac[ETH_ALEN];
	__u8 where;
	__u8 local_addr;	/* LB_WHERE_LOCAL because dst is one of this node's addresses */
	__u16 mtu;		/* host: with LB_STAT_DROP_FRAG_NEEDED, the MTU to announce */
};

/* What lb_route_check() may do with a packet to another node. */
enum {
	/* Translated already (an ICMP error): XDP cannot leave it to tc untouched. */
	LB_RC_STACK_ROUTES = 1 << 0,
	/* Check the egress device's MTU, counting the bytes the rewrite adds. */
	LB_RC_MTU = 1 << 1,
	/* The source stays the client's: the stack may fragment an IPv4 datagram without DF. */
	LB_RC_CAN_FRAG = 1 << 2,
};

/* Bytes a DSR option adds to a packet of this family. */
static __always_inline __u32 lb_dsr_room(const struct lb_pkt *p)
{
	return p->family == 4 ? sizeof(struct lb_dsr_opt4) : sizeof(struct lb_dsr_opt6);
}

/*
 * Where a packet from src to dst goes, and by which device and L2 addresses. A subprogram (as
 * the other big steps here): struct bpf_fib_lookup alone is 64 bytes of stack.
 */
static __noinline void lb_route_lookup(void *ctx, enum lb_hook hook, const struct lb_pkt *p,
				       const union lb_addr *dst, struct lb_route *r)
{
	const union lb_addr *src = &p->saddr;
	__u8 family = p->family;
	struct bpf_fib_lookup fib = { .ifindex = p->ifindex };
	__u32 ifindex;
	int rc;

	if (family == 4) {
		fib.family = AF_INET;
		fib.ipv4_src = src->a[0];
		fib.ipv4_dst = dst->a[0];
	} else {
		fib.family = AF_INET6;
		__builtin_memcpy(fib.ipv6_src, src->a, 16);
		__builtin_memcpy(fib.ipv6_dst, dst->a, 16);
	}
	rc = bpf_fib_lookup(ctx, &fib, sizeof(fib), 0);
	/*
	 * tc only: the lookup succeeded but the skb exceeds the device's MTU (is_skb_forwardable,
	 * checked when tot_len is 0). The answer is complete; lb_route_check() decides about size,
	 * counting what the rewrite adds.
	 */
	if (rc == BPF_FIB_LKUP_RET_FRAG_NEEDED && hook != LB_HOOK_XDP)
		rc = BPF_FIB_LKUP_RET_SUCCESS;
	ifindex = fib.ifindex;
	r->ifindex = ifindex;
	r->local_addr = rc == BPF_FIB_LKUP_RET_NOT_FWDED;
	if (rc == BPF_FIB_LKUP_RET_NOT_FWDED) {
		r->where = LB_WHERE_LOCAL;	/* a local address: hostNetwork backend */
		return;
	}
	if (rc != BPF_FIB_LKUP_RET_SUCCESS && rc != BPF_FIB_LKUP_RET_NO_NEIGH) {
		r->where = LB_WHERE_NONE;
		return;
	}
	if (!bpf_map_lookup_elem(&lb_devices_v1, &ifindex)) {
		r->where = LB_WHERE_LOCAL;	/* a pod's device */
		return;
	}
	if (rc == BPF_FIB_LKUP_RET_NO_NEIGH) {
		r->where = LB_WHERE_NEIGH;
		return;
	}
	__builtin_memcpy(r->smac, fib.smac, ETH_ALEN);
	__builtin_memcpy(r->dmac, fib.dmac, ETH_ALEN);
	r->where = LB_WHERE_REMOTE;
}

/*
 * Whether the packet, grown by `growth` bytes, fits the MTU of the device it leaves by. The
 * device's MTU, not the route's: a NIC drops (XDP) or the stack refuses (tc redirect) what
 * exceeds it, silently. On a miss r->mtu is what the sender must drop to: the device's MTU
 * less the growth, never below the family's minimum (RFC 791: 68, RFC 8200: 1280). A GRO
 * packet at tc passes: it is sent as segments (bpf_check_mtu without BPF_MTU_CHK_SEGS).
 */
static __always_inline bool lb_mtu_fits(void *ctx, const struct lb_pkt *p, struct lb_route *r,
					__u32 growth)
{
	__u32 mtu = 0, min = p->family == 4 ? 68 : 1280;

	if (bpf_check_mtu(ctx, r->ifindex, &mtu, (__s32)growth, 0) != BPF_MTU_CHK_RET_FRAG_NEEDED)
		return true;	/* fits, or the device is gone: the send fails and is counted */
	mtu = mtu > growth + min ? mtu - growth : min;
	r->mtu = mtu > 0xffff ? 0xffff : mtu;
	return false;
}

/*
 * Where a translated packet will go, decided before anything is rewritten: XDP leaves what it
 * cannot finish (neighbour unresolved, too big) to tc untouched, and tc answers a packet that
 * does not fit its way out with "fragmentation needed" / "packet too big" (RFC 1191, 8201),
 * which XDP cannot build. flags: LB_RC_*; growth: bytes the rewrite adds (a DSR option).
 */
static __always_inline int lb_route_check(void *ctx, enum lb_hook hook, const struct lb_pkt *p,
					  const union lb_addr *dst, struct lb_route *r,
					  __u32 flags, __u32 growth)
{
	lb_route_lookup(ctx, hook, p, dst, r);
	if (r->where == LB_WHERE_NONE)
		return LB_STAT_DROP_FIB;
	if (r->where == LB_WHERE_NEIGH && hook == LB_HOOK_XDP) {
		if (!(flags & LB_RC_STACK_ROUTES))
			return LB_STAT_PASS_TO_STACK;
		r->where = LB_WHERE_STACK;
	}
	if (r->where == LB_WHERE_LOCAL || r->where == LB_WHERE_STACK || !(flags & LB_RC_MTU) ||
	    lb_mtu_fits(ctx, p, r, growth))
		return LB_CONTINUE;
	if (p->df)
		return hook == LB_HOOK_XDP ? LB_STAT_PASS_TO_STACK : LB_STAT_DROP_FRAG_NEEDED;
	/*
	 * IPv4 without DF may be fragmented on the way, but not here: tc hands it to the stack
	 * once translated (a DSR option has the copy bit, so every fragment carries it). With
	 * SNAT the stack would drop it: a packet from outside with a local source is a martian.
	 */
	if (!(flags & LB_RC_CAN_FRAG))
		return LB_STAT_DROP_TOO_BIG;
	if (hook == LB_HOOK_XDP)
		return LB_STAT_PASS_TO_STACK;
	r->where = LB_WHERE_STACK;
	return LB_CONTINUE;
}

/* The egress device's address of the family: the SNAT source. False when it has none. */
static __always_inline bool lb_snat_addr(__u32 ifindex, __u8 family, union lb_addr *out)
{
	struct lb_device *dev = bpf_map_lookup_elem(&lb_devices_v1, &ifindex);

	if (!dev)
		return false;
	if (family == 4) {
		out->a[0] = dev->addr4;
		return dev->addr4 != 0;
	}
	__builtin_memcpy(out->a, dev->addr6, 16);
	return (out->a[0] | out->a[1] | out->a[2] | out->a[3]) != 0;
}

/* Whether a socket of this node owns local:lport <- remote:rport (listening or connected). */
static __always_inline bool lb_local_socket(void *ctx, __u8 family, __u8 proto,
					    const union lb_addr *local, __be16 lport,
					    const union lb_addr *remote, __be16 rport)
{
	struct bpf_sock_tuple tup = {};
	struct bpf_sock *sk;
	__u32 len;

	if (family == 4) {
		tup.ipv4.saddr = remote->a[0];
		tup.ipv4.daddr = local->a[0];
		tup.ipv4.sport = rport;
		tup.ipv4.dport = lport;
		len = sizeof(tup.ipv4);
	} else {
		__builtin_memcpy(tup.ipv6.saddr, remote->a, 16);
		__builtin_memcpy(tup.ipv6.daddr, local->a, 16);
		tup.ipv6.sport = rport;
		tup.ipv6.dport = lport;
		len = sizeof(tup.ipv6);
	}
	if (proto == IPPROTO_TCP)
		sk = bpf_sk_lookup_tcp(ctx, &tup, len, BPF_F_CURRENT_NETNS, 0);
	else
		sk = bpf_sk_lookup_udp(ctx, &tup, len, BPF_F_CURRENT_NETNS, 0);
	if (!sk)
		return false;
	bpf_sk_release(sk);
	return true;
}

/*
 * Takes a SNAT port for a flow to backend:bport from snat:<port> by inserting the REPLY entry
 * `reply` (its dport is the port) with BPF_NOEXIST. Start from a hash of the client's tuple so
 * concurrent flows spread over the range. 0 when none was free. A dry run (constant `dry`)
 * only looks: the first port whose REPLY entry is free, nothing inserted.
 */
static __always_inline __be16 lb_snat_search(void *ctx, struct lb_tuple *reply,
					     const struct lb_ct_state *st,
					     const struct lb_ct_nat *nat, __u32 seed, bool dry)
{
	__u32 span = (__u32)cfg_snat_port_max - cfg_snat_port_min + 1;
	int i;

	if (cfg_snat_port_max < cfg_snat_port_min)
		return 0;
#pragma clang loop unroll(disable)
	for (i = 0; i < LB_SNAT_TRIES; i++) {
		__be16 port = bpf_htons((__u16)(cfg_snat_port_min + (seed + i * 7919) % span));

		reply->dport = port;
		if (lb_local_socket(ctx, reply->family, reply->proto, &reply->d, port, &reply->s,
				    reply->sport))
			continue;
		if (dry ? !lb_ct_lookup(reply, NULL) : lb_ct_write(reply, st, nat, BPF_NOEXIST) == 0)
			return port;
	}
	return 0;
}

static __noinline __be16 lb_snat_take(void *ctx, struct lb_tuple *reply,
					   const struct lb_ct_state *st, const struct lb_ct_nat *nat,
					   __u32 seed)
{
	return lb_snat_search(ctx, reply, st, nat, seed, false);
}

/* sluicectl trace: which port lb_snat_take() would take now. */
static __noinline __be16 lb_snat_peek(void *ctx, struct lb_tuple *reply, __u32 seed)
{
	return lb_snat_search(ctx, reply, NULL, NULL, seed, true);
}

/*
 * Inserts the DSR option after the fixed IPv4/IPv6 header of a packet whose translation is
 * done. IPv4: ihl 5 -> 7 and a new header checksum; IPv6: a destination options header (the
 * packet has no extension header, checked by the caller). The L4 checksum does not change:
 * neither pseudo header counts options. 0 or -1.
 */
static __noinline int lb_dsr_insert(void *ctx, enum lb_hook hook, const struct lb_pkt *p,
					 const union lb_addr *vip, __be16 vport)
{
	__u32 room = lb_dsr_room(p);
	struct ethhdr eth;

	if (hook == LB_HOOK_XDP) {
		/* Grow at the front, then move Ethernet + fixed L3 header forward. */
		if (lb_load(ctx, hook, 0, &eth, sizeof(eth)) < 0 ||
		    bpf_xdp_adjust_head(ctx, -(int)room) < 0 ||
		    lb_store(ctx, hook, 0, &eth, sizeof(eth)) < 0)
			return -1;
		if (p->family == 4) {
			struct iphdr ip;

			if (lb_load(ctx, hook, ETH_HLEN + room, &ip, sizeof(ip)) < 0 ||
			    lb_store(ctx, hook, ETH_HLEN, &ip, sizeof(ip)) < 0)
				return -1;
		} else {
			struct ipv6hdr ip6;

			if (lb_load(ctx, hook, ETH_HLEN + room, &ip6, sizeof(ip6)) < 0 ||
			    lb_store(ctx, hook, ETH_HLEN, &ip6, sizeof(ip6)) < 0)
				return -1;
		}
	} else if (bpf_skb_adjust_room(ctx, room, BPF_ADJ_ROOM_NET, 0) < 0) {
		return -1;	/* BPF_ADJ_ROOM_NET: room right after the fixed L3 header */
	}

	if (p->family == 4) {
		struct {
			struct iphdr ip;
			struct lb_dsr_opt4 opt;
		} h;

		if (lb_load(ctx, hook, ETH_HLEN, &h.ip, sizeof(h.ip)) < 0)
			return -1;
		h.ip.ihl = 7;
		h.ip.tot_len = bpf_htons(bpf_ntohs(h.ip.tot_len) + room);
		h.ip.check = 0;
		h.opt.type = LB_DSR_OPT4_TYPE;
		h.opt.len = sizeof(h.opt);
		h.opt.port = vport;
		h.opt.addr = vip->a[0];
		h.ip.check = lb_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&h, sizeof(h), 0));
		return lb_store(ctx, hook, ETH_HLEN, &h, sizeof(h)) < 0 ? -1 : 0;
	} else {
		struct {
			struct ipv6hdr ip6;
			struct lb_dsr_opt6 opt;
		} h = {};

		if (lb_load(ctx, hook, ETH_HLEN, &h.ip6, sizeof(h.ip6)) < 0)
			return -1;
		h.opt.nexthdr = h.ip6.nexthdr;
		h.opt.hdrlen = sizeof(h.opt) / 8 - 1;
		h.opt.opt_type = LB_DSR_OPT6_TYPE;
		h.opt.opt_len = sizeof(h.opt) - 6;	/* after type and length, less 2 Pad1 */
		__builtin_memcpy(h.opt.addr, vip->a, 16);
		h.opt.port = vport;
		h.ip6.nexthdr = IPPROTO_DSTOPTS;
		h.ip6.payload_len = bpf_htons(bpf_ntohs(h.ip6.payload_len) + room);
		return lb_store(ctx, hook, ETH_HLEN, &h, sizeof(h)) < 0 ? -1 : 0;
	}
}

/*
 * On the backend's node: a packet client -> backend carrying a DSR option. The REPLY entry
 * backend -> client makes the backend's answers leave from the service address (pod devices
 * translate them). Written only when missing or different: UDP carries the option every time.
 * st, nat and rt are the caller's scratch (stack depth); st->last_seen_ns holds the time.
 */
static __noinline int lb_dsr_learn(const struct lb_pkt *p, const struct lb_tuple *t,
				   struct lb_ct_state *st, struct lb_ct_nat *nat,
				   struct lb_tuple *rt)
{
	__u64 now = st->last_seen_ns;
	struct lb_ct_state *old;

	lb_tuple_reverse(rt, t);
	old = lb_ct_lookup(rt, nat);
	if (old && old->dir == LB_CT_REPLY && old->nat_port == p->dsr_port &&
	    lb_addr_eq(&nat->addr, &p->dsr_addr)) {
		if (!p->dry_run && lb_older_than(now, old->last_seen_ns, LB_CT_REFRESH_S * NSEC_PER_SEC))
			old->last_seen_ns = now;
		return LB_STAT_DSR_LEARNT;
	}
	__builtin_memset(st, 0, sizeof(*st));
	__builtin_memset(nat, 0, sizeof(*nat));
	st->dir = LB_CT_REPLY;
	st->flags = LB_CT_F_DSR;
	st->nat_port = p->dsr_port;
	st->created_ns = now;
	st->last_seen_ns = now;
	nat->addr = p->dsr_addr;
	if (!p->dry_run && lb_ct_write(rt, st, nat, BPF_ANY) < 0)
		return LB_STAT_DROP_CT_INSERT;
	return LB_STAT_DSR_LEARNT;
}

/* ICMP error types whose quoted packet may belong to a translated flow. */
#define ICMP_TIME_EXCEEDED	11
#define ICMPV6_DEST_UNREACH	1
#define ICMPV6_PKT_TOOBIG	2
#define ICMPV6_TIME_EXCEED	3

/* One checksummed 16-bit field change inside an ICMP error: field and ICMP sum both follow. */
static __always_inline int lb_icmp_fix16(void *ctx, enum lb_hook hook, __u32 off, __be16 to,
					 __s64 *icmp_diff)
{
	__be16 from;

	if (lb_load(ctx, hook, off, &from, 2) < 0)
		return -1;
	*icmp_diff += lb_csum_diff16(from, to);
	return lb_store(ctx, hook, off, &to, 2) < 0 ? -1 : 0;
}

/*
 * A checksum inside the quote (inner IPv4 header, inner TCP/UDP) gets `diff`; the ICMP sum
 * then follows the checksum field's own change. Skipped when the field is not in the quote
 * (which ends at `end`, the end of the IP datagram) or (UDP) is zero.
 */
static __always_inline int lb_icmp_fix_csum(void *ctx, enum lb_hook hook, __u32 off, __u32 end,
					    __s64 diff, bool udp, __s64 *icmp_diff)
{
	__be16 from, to;

	if (off + 2 > end)
		return 0;
	if (lb_load(ctx, hook, off, &from, 2) < 0)
		return -1;
	if (udp && from == 0)
		return 0;
	to = lb_csum_apply(from, diff);
	if (udp && to == 0)
		to = 0xffff;
	*icmp_diff += lb_csum_diff16(from, to);
	return lb_store(ctx, hook, off, &to, 2) < 0 ? -1 : 0;
}

/* Rewrites an address inside the quote: the bytes, the inner checksums and the ICMP sum. */
static __always_inline int lb_icmp_fix_addr(void *ctx, enum lb_hook hook, __u8 family,
					    __u32 off, __u32 end, const union lb_addr *from,
					    const union lb_addr *to, __u32 inner_csum_off,
					    __u32 l4_csum_off, bool udp, __s64 *icmp_diff)
{
	__u32 len = family == 4 ? 4 : 16;
	__s64 diff = bpf_csum_diff((__be32 *)from->a, len, (__be32 *)to->a, len, 0);

	*icmp_diff += diff;
	if (lb_store(ctx, hook, off, to->a, len) < 0)
		return -1;
	if (family == 4 &&
	    lb_icmp_fix_csum(ctx, hook, inner_csum_off, end, diff, false, icmp_diff) < 0)
		return -1;
	return lb_icmp_fix_csum(ctx, hook, l4_csum_off, end, diff, udp, icmp_diff);
}

/*
 * An ICMP error quoting a packet this node translated, either way round. Its tuple reversed
 * is the key of the flow's other entry:
 * - a REPLY entry: the quote is a client's packet as sent on to the backend, so the error came
 *   from the backend's side (a too-small link, the backend's port unreachable). The quote
 *   becomes what the client sent (destination: the service; source: the client, when SNAT
 *   hid it) and, with SNAT, the error itself goes to the client.
 * - a FORWARD entry: the quote is a backend's answer as sent on to the client, so the error
 *   came from the client's side (a router there with a smaller MTU, the client's closed
 *   port). The quote becomes what the backend sent and the error goes to the backend, whose
 *   path MTU discovery then works as well. Not at tc egress (the node's own errors): that
 *   packet is on its way out of a device already and cannot be turned around.
 * Sets *rerouted when the error's destination changed.
 */
static __noinline int lb_icmp_xlate(void *ctx, enum lb_hook hook, struct lb_pkt *p,
					 bool *rerouted)
{
	struct {
		__u8 type;
		__u8 code;
		__be16 csum;
	} icmp;
	__u32 in_l3 = p->icmp_off + 8, in_l4, in_csum_off = 0, l4_csum_off;
	__u32 saddr_off = in_l3 + (p->family == 4 ? 12 : 8);
	__u32 daddr_off = in_l3 + (p->family == 4 ? 16 : 24);
	struct lb_tuple rt = { .family = p->family };
	union lb_addr in_s = {}, in_d = {}, new_s, new_d, outer;
	__be16 ports[2], new_sport, new_dport, ip_len;
	__u32 end = lb_len(ctx, hook);
	struct lb_ct_state *st;
	struct lb_ct_nat nat;
	__s64 icmp_diff = 0;
	bool udp, fwd, snat;

	if (lb_load(ctx, hook, p->icmp_off, &icmp, sizeof(icmp)) < 0)
		return LB_STAT_PASS_MALFORMED;
	/*
	 * The message ends with the IP datagram: bytes after it (link-layer padding) are no part
	 * of the quote, and the ICMP checksum does not cover them.
	 */
	if (lb_load(ctx, hook, ETH_HLEN + (p->family == 4 ? 2 : 4), &ip_len, sizeof(ip_len)) < 0)
		return LB_STAT_PASS_MALFORMED;
	if (ETH_HLEN + (p->family == 4 ? 0 : sizeof(struct ipv6hdr)) + bpf_ntohs(ip_len) < end)
		end = ETH_HLEN + (p->family == 4 ? 0 : sizeof(struct ipv6hdr)) + bpf_ntohs(ip_len);
	if (p->family == 4) {
		struct iphdr ip;

		if (icmp.type != ICMP_DEST_UNREACH && icmp.type != ICMP_TIME_EXCEEDED)
			return LB_STAT_PASS;
		if (lb_load(ctx, hook, in_l3, &ip, sizeof(ip)) < 0 || ip.ihl < 5)
			return LB_STAT_PASS_MALFORMED;
		rt.proto = ip.protocol;
		in_s.a[0] = ip.saddr;
		in_d.a[0] = ip.daddr;
		in_l4 = in_l3 + ip.ihl * 4;
		in_csum_off = in_l3 + 10;
	} else {
		struct ipv6hdr ip6;

		if (icmp.type != ICMPV6_DEST_UNREACH && icmp.type != ICMPV6_PKT_TOOBIG &&
		    icmp.type != ICMPV6_TIME_EXCEED)
			return LB_STAT_PASS;
		if (lb_load(ctx, hook, in_l3, &ip6, sizeof(ip6)) < 0)
			return LB_STAT_PASS_MALFORMED;
		rt.proto = ip6.nexthdr;	/* a quote with extension headers is not ours */
		__builtin_memcpy(in_s.a, &ip6.saddr, 16);
		__builtin_memcpy(in_d.a, &ip6.daddr, 16);
		in_l4 = in_l3 + sizeof(ip6);
	}
	if (rt.proto != IPPROTO_TCP && rt.proto != IPPROTO_UDP)
		return LB_STAT_PASS;
	udp = rt.proto == IPPROTO_UDP;
	/* RFC 792 / 4443: the quote holds at least the first 8 bytes of L4: both ports. */
	if (in_l4 + sizeof(ports) > end || lb_load(ctx, hook, in_l4, ports, sizeof(ports)) < 0)
		return LB_STAT_PASS_MALFORMED;
	rt.s = in_d;
	rt.d = in_s;
	rt.sport = ports[1];
	rt.dport = ports[0];
	st = lb_ct_lookup(&rt, &nat);
	if (!st)
		return LB_STAT_PASS;
	fwd = st->dir == LB_CT_FORWARD;
	if (fwd && hook == LB_HOOK_NODE_OUT)
		return LB_STAT_PASS;
	snat = st->flags & LB_CT_F_SNAT;

	/* What the quoted packet was before this node translated it. */
	new_s = in_s;
	new_d = in_d;
	new_sport = ports[0];
	new_dport = ports[1];
	if (fwd) {
		new_s = nat.addr;
		new_sport = st->nat_port;
		if (snat) {
			new_d = nat.snat;
			new_dport = st->snat_port;
		}
		outer = nat.addr;
	} else {
		new_d = nat.addr;
		new_dport = st->nat_port;
		if (snat) {
			new_s = nat.snat;
			new_sport = st->snat_port;
		}
		outer = nat.snat;
	}

	l4_csum_off = in_l4 + (udp ? 6 : 16);
	if (!lb_addr_eq(&new_s, &in_s) &&
	    lb_icmp_fix_addr(ctx, hook, p->family, saddr_off, end, &in_s, &new_s, in_csum_off,
			     l4_csum_off, udp, &icmp_diff) < 0)
		return LB_STAT_DROP_REWRITE;
	if (!lb_addr_eq(&new_d, &in_d) &&
	    lb_icmp_fix_addr(ctx, hook, p->family, daddr_off, end, &in_d, &new_d, in_csum_off,
			     l4_csum_off, udp, &icmp_diff) < 0)
		return LB_STAT_DROP_REWRITE;
	if (new_sport != ports[0] &&
	    (lb_icmp_fix16(ctx, hook, in_l4, new_sport, &icmp_diff) < 0 ||
	     lb_icmp_fix_csum(ctx, hook, l4_csum_off, end, lb_csum_diff16(ports[0], new_sport),
			      udp, &icmp_diff) < 0))
		return LB_STAT_DROP_REWRITE;
	if (new_dport != ports[1] &&
	    (lb_icmp_fix16(ctx, hook, in_l4 + 2, new_dport, &icmp_diff) < 0 ||
	     lb_icmp_fix_csum(ctx, hook, l4_csum_off, end, lb_csum_diff16(ports[1], new_dport),
			      udp, &icmp_diff) < 0))
		return LB_STAT_DROP_REWRITE;
	if (lb_csum_update(ctx, hook, p->icmp_off + 2, icmp_diff, false, false, false) < 0)
		return LB_STAT_DROP_REWRITE;
	*rerouted = false;
	if (fwd || snat) {
		/* The error goes to the translated endpoint now (ICMPv6: pseudo header sum too). */
		if (lb_nat_addr(ctx, hook, p, false, &p->daddr, &outer) < 0)
			return LB_STAT_DROP_REWRITE;
		p->daddr = outer;
		*rerouted = true;
	}
	return LB_STAT_ICMP_XLATE;
}

#endif
