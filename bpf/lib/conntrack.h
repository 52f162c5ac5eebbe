/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Per-flow state: two entries per translated flow, each keyed by the tuple its packets carry on
 * the wire (FORWARD: client -> VIP, REPLY: backend -> client), so every packet costs exactly one
 * lookup whichever way it goes. The chosen backend is stored by address as well as by id, so a
 * TCP flow keeps working while its backend drains out of the maps (kube-proxy leaves TCP
 * conntrack alone on endpoint removal for graceful termination).
 */
#ifndef SLUICE_BPF_LIB_CONNTRACK_H
#define SLUICE_BPF_LIB_CONNTRACK_H

#include "lib/common.h"
#include "lib/maps.bpf.h"
#include "lib/parse.h"

/*
 * The datapath's clock: CLOCK_MONOTONIC at tick resolution (bpf_ktime_get_coarse_ns), about 3 ns
 * a read against 23 ns for bpf_ktime_get_ns (bench/: ref_clock, ref_clock_coarse). Timeouts
 * are seconds and last_seen is refreshed once a second, so a tick (1-4 ms) is far below what
 * matters; the agent's sweep compares with CLOCK_MONOTONIC, which is never behind it.
 */
static __always_inline __u64 lb_now(void)
{
	return bpf_ktime_get_coarse_ns();
}

/* Timeouts are rodata so tests and the agent can set them before load. */
const volatile __u64 cfg_ct_tcp_timeout_ns = LB_CT_TCP_TIMEOUT_S * NSEC_PER_SEC;
const volatile __u64 cfg_ct_tcp_close_ns = LB_CT_TCP_CLOSE_S * NSEC_PER_SEC;
const volatile __u64 cfg_ct_tcp_fin_ns = LB_CT_TCP_FIN_S * NSEC_PER_SEC;
const volatile __u64 cfg_ct_udp_timeout_ns = LB_CT_UDP_TIMEOUT_S * NSEC_PER_SEC;

struct lb_tuple {
	union lb_addr s;
	union lb_addr d;
	__be16 sport;
	__be16 dport;
	__u8 proto;
	__u8 family;
};

/* What a conntrack entry says to do, copied out of the family-specific value. */
struct lb_ct_nat {
	union lb_addr addr;	/* FORWARD: backend; REPLY: VIP */
	union lb_addr snat;	/* LB_CT_F_SNAT: FORWARD: new source; REPLY: client to restore */
};

static __always_inline void lb_tuple_of(struct lb_tuple *t, const struct lb_pkt *p)
{
	t->s = p->saddr;
	t->d = p->daddr;
	t->sport = p->sport;
	t->dport = p->dport;
	t->proto = p->proto;
	t->family = p->family;
}

/* The same flow seen the other way: addresses and ports swapped. */
static __always_inline void lb_tuple_reverse(struct lb_tuple *r, const struct lb_tuple *t)
{
	r->s = t->d;
	r->d = t->s;
	r->sport = t->dport;
	r->dport = t->sport;
	r->proto = t->proto;
	r->family = t->family;
}

static __always_inline struct lb_ct_state *lb_ct_lookup(const struct lb_tuple *t,
							struct lb_ct_nat *nat)
{
	if (t->family == 4) {
		struct lb4_ct_key k = { .saddr = t->s.a[0], .daddr = t->d.a[0], .sport = t->sport,
					.dport = t->dport, .proto = t->proto };
		struct lb4_ct_value *v = bpf_map_lookup_elem(&lb4_ct_v2, &k);

		if (!v)
			return NULL;
		if (nat) {
			nat->addr.a[0] = v->nat_addr;
			nat->snat.a[0] = v->snat_addr;
		}
		return &v->state;
	} else {
		struct lb6_ct_key k = { .sport = t->sport, .dport = t->dport, .proto = t->proto };
		struct lb6_ct_value *v;

		__builtin_memcpy(k.saddr, t->s.a, 16);
		__builtin_memcpy(k.daddr, t->d.a, 16);
		v = bpf_map_lookup_elem(&lb6_ct_v2, &k);
		if (!v)
			return NULL;
		if (nat) {
			__builtin_memcpy(nat->addr.a, v->nat_addr, 16);
			__builtin_memcpy(nat->snat.a, v->snat_addr, 16);
		}
		return &v->state;
	}
}

/*
 * Per-CPU buffer for the key and value being written: on the stack they would be 104 bytes
 * in the deepest call chains (new flow -> SNAT port -> write). See lb_work on why per-CPU
 * scratch is safe here.
 */
union lb_ct_buf {
	struct {
		struct lb4_ct_key k;
		struct lb4_ct_value v;
	} v4;
	struct {
		struct lb6_ct_key k;
		struct lb6_ct_value v;
	} v6;
};

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__type(key, __u32);
	__type(value, union lb_ct_buf);
	__uint(max_entries, 1);
} lb_ct_scratch SEC(".maps");

static __noinline int lb_ct_write(const struct lb_tuple *t, const struct lb_ct_state *st,
				  const struct lb_ct_nat *nat, __u64 flags)
{
	__u32 zero = 0;
	union lb_ct_buf *b = bpf_map_lookup_elem(&lb_ct_scratch, &zero);

	if (!b)
		return -1;
	__builtin_memset(b, 0, sizeof(*b));
	if (t->family == 4) {
		b->v4.k.saddr = t->s.a[0];
		b->v4.k.daddr = t->d.a[0];
		b->v4.k.sport = t->sport;
		b->v4.k.dport = t->dport;
		b->v4.k.proto = t->proto;
		b->v4.v.state = *st;
		b->v4.v.nat_addr = nat->addr.a[0];
		b->v4.v.snat_addr = nat->snat.a[0];
		return bpf_map_update_elem(&lb4_ct_v2, &b->v4.k, &b->v4.v, flags);
	}
	__builtin_memcpy(b->v6.k.saddr, t->s.a, 16);
	__builtin_memcpy(b->v6.k.daddr, t->d.a, 16);
	b->v6.k.sport = t->sport;
	b->v6.k.dport = t->dport;
	b->v6.k.proto = t->proto;
	b->v6.v.state = *st;
	__builtin_memcpy(b->v6.v.nat_addr, nat->addr.a, 16);
	__builtin_memcpy(b->v6.v.snat_addr, nat->snat.a, 16);
	return bpf_map_update_elem(&lb6_ct_v2, &b->v6.k, &b->v6.v, flags);
}

static __always_inline void lb_ct_delete(const struct lb_tuple *t)
{
	if (t->family == 4) {
		struct lb4_ct_key k = { .saddr = t->s.a[0], .daddr = t->d.a[0], .sport = t->sport,
					.dport = t->dport, .proto = t->proto };

		bpf_map_delete_elem(&lb4_ct_v2, &k);
	} else {
		struct lb6_ct_key k = { .sport = t->sport, .dport = t->dport, .proto = t->proto };

		__builtin_memcpy(k.saddr, t->s.a, 16);
		__builtin_memcpy(k.daddr, t->d.a, 16);
		bpf_map_delete_elem(&lb6_ct_v2, &k);
	}
}

/*
 * The tuple of the other direction of the flow an entry belongs to, from the packet that hit
 * it. FORWARD (client:cp -> VIP:vp) pairs with REPLY (backend:bp -> client:cp, or with SNAT
 * -> snat_addr:snat_port, behind which the client was hidden).
 */
static __always_inline void lb_ct_peer(struct lb_tuple *peer, const struct lb_tuple *t,
				       const struct lb_ct_state *st, const struct lb_ct_nat *nat)
{
	bool snat = st->flags & LB_CT_F_SNAT;

	peer->proto = t->proto;
	peer->family = t->family;
	if (st->dir == LB_CT_FORWARD) {
		peer->s = nat->addr;
		peer->d = snat ? nat->snat : t->s;
		peer->sport = st->nat_port;
		peer->dport = snat ? st->snat_port : t->sport;
	} else {
		peer->s = snat ? nat->snat : t->d;
		peer->d = nat->addr;
		peer->sport = snat ? st->snat_port : t->dport;
		peer->dport = st->nat_port;
	}
}

static __always_inline bool lb_ct_expired(const struct lb_ct_state *st, __u8 proto, __u64 now)
{
	return lb_older_than(now, st->last_seen_ns,
			     lb_ct_timeout_ns(st->flags, proto, cfg_ct_tcp_timeout_ns,
					      cfg_ct_tcp_close_ns, cfg_ct_tcp_fin_ns,
					      cfg_ct_udp_timeout_ns));
}

/*
 * Whether the flow an entry belongs to is still alive. last_seen is refreshed only on the entry
 * a packet hits, so a one-way sender (statsd, syslog) keeps its FORWARD entry fresh while the
 * REPLY entry ages, and a server push does the opposite: the flow lives while either entry is
 * fresh. The peer is read only when the hit entry itself has expired. The agent's conntrack
 * sweep (agent/datapath/ct_gc.cc) applies the same rule, so it never removes half a live flow.
 */
static __always_inline bool lb_ct_alive(const struct lb_tuple *t, const struct lb_ct_state *st,
					const struct lb_ct_nat *nat, __u64 now)
{
	struct lb_ct_state *pst;
	struct lb_tuple peer;

	if (!lb_ct_expired(st, t->proto, now))
		return true;
	lb_ct_peer(&peer, t, st, nat);
	pst = lb_ct_lookup(&peer, NULL);
	return pst && pst->dir != st->dir && !lb_ct_expired(pst, t->proto, now);
}

/*
 * Refreshes last_seen at most once per LB_CT_REFRESH_S (a write per packet would bounce the
 * entry's cache line between CPUs) and records FIN/RST on both entries of the flow so either
 * direction sees the close. Plain stores: a lost race costs one refresh, never correctness.
 */
static __always_inline void lb_ct_touch(const struct lb_tuple *t, const struct lb_pkt *p,
					struct lb_ct_state *st, const struct lb_ct_nat *nat,
					__u64 now)
{
	__u8 bits = 0;

	if (p->dry_run)
		return;
	if (lb_older_than(now, st->last_seen_ns, LB_CT_REFRESH_S * NSEC_PER_SEC))
		st->last_seen_ns = now;
	if (st->dir == LB_CT_REPLY && !(st->flags & LB_CT_F_SEEN_REPLY))
		st->flags |= LB_CT_F_SEEN_REPLY;
	if (p->proto != IPPROTO_TCP)
		return;
	if (p->tcp_flags & LB_TCP_RST)
		bits |= LB_CT_F_RST;
	if (p->tcp_flags & LB_TCP_FIN)
		bits |= st->dir == LB_CT_FORWARD ? LB_CT_F_FIN_FWD : LB_CT_F_FIN_REPLY;
	if ((st->flags & bits) != bits) {
		struct lb_tuple peer;
		struct lb_ct_state *pst;

		st->flags |= bits;
		lb_ct_peer(&peer, t, st, nat);
		pst = lb_ct_lookup(&peer, NULL);
		if (pst)
			pst->flags |= bits;
	}
}

#endif
