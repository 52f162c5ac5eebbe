/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Service lookup and backend choice. A frontend is a master entry (slot 0) plus one entry per
 * usable backend (slots 1..count); the agent writes the master last, so a reader sees either
 * the old or the new backend set, never a half-written one. Choosing costs the master lookup,
 * one slot lookup and one backend lookup, whatever the number of backends.
 */
#ifndef SLUICE_BPF_LIB_LB_H
#define SLUICE_BPF_LIB_LB_H

#include "lib/common.h"
#include "lib/maps.bpf.h"
#include "lib/parse.h"

struct lb_backend_info {
	union lb_addr addr;
	__be16 port;
	__u8 pick;		/* enum lb_trace_pick: how lb_select_backend() chose it */
	__u32 id;
};

/* Maglev (lb_maglev_v2): table size and the flow hash's seed, the same on every node. */
const volatile __u32 cfg_maglev_size = LB_MAGLEV_DEFAULT_SIZE;
const volatile __u32 cfg_maglev_seed0 = 0x71dcda46;
const volatile __u32 cfg_maglev_seed1 = 0x92505688;

static __always_inline struct lb_svc_value *lb_svc_lookup(const struct lb_pkt *p, __u16 slot,
							  __u8 scope)
{
	if (p->family == 4) {
		struct lb4_svc_key k = { .vip = p->daddr.a[0], .port = p->dport, .slot = slot,
					 .proto = p->proto, .scope = scope };

		return bpf_map_lookup_elem(&lb4_services_v1, &k);
	} else {
		struct lb6_svc_key k = { .port = p->dport, .slot = slot, .proto = p->proto,
					 .scope = scope };

		__builtin_memcpy(k.vip, p->daddr.a, 16);
		return bpf_map_lookup_elem(&lb6_services_v1, &k);
	}
}

/* The backend with this id, if it still belongs to svc_id (ids are never shared). */
static __always_inline bool lb_backend_get(__u8 family, __u32 id, __u32 svc_id,
					   struct lb_backend_info *b)
{
	if (family == 4) {
		struct lb4_backend *be = bpf_map_lookup_elem(&lb4_backends_v1, &id);

		if (!be || be->svc_id != svc_id)
			return false;
		b->addr.a[0] = be->addr;
		b->port = be->port;
	} else {
		struct lb6_backend *be = bpf_map_lookup_elem(&lb6_backends_v1, &id);

		if (!be || be->svc_id != svc_id)
			return false;
		__builtin_memcpy(b->addr.a, be->addr, 16);
		b->port = be->port;
	}
	b->id = id;
	return true;
}

/*
 * ClientIP affinity is keyed by the client's address; at the socket (netns_cookie != 0), where
 * connect() runs before a source address is chosen, by the client's network namespace instead.
 */
static __always_inline struct lb_affinity_value *lb_affinity_lookup(const struct lb_pkt *p,
								    __u32 svc_id,
								    __u64 netns_cookie)
{
	if (netns_cookie) {
		struct lb_sock_affinity_key k = { .netns_cookie = netns_cookie, .svc_id = svc_id };

		return bpf_map_lookup_elem(&lb_sock_affinity_v1, &k);
	}
	if (p->family == 4) {
		struct lb4_affinity_key k = { .client = p->saddr.a[0], .svc_id = svc_id };

		return bpf_map_lookup_elem(&lb4_affinity_v1, &k);
	} else {
		struct lb6_affinity_key k = { .svc_id = svc_id };

		__builtin_memcpy(k.client, p->saddr.a, 16);
		return bpf_map_lookup_elem(&lb6_affinity_v1, &k);
	}
}

static __always_inline void lb_affinity_update(const struct lb_pkt *p, __u32 svc_id,
					       __u32 backend_id, __u64 now, __u64 netns_cookie)
{
	struct lb_affinity_value v = { .last_used_ns = now, .backend_id = backend_id };

	if (p->dry_run)
		return;
	if (netns_cookie) {
		struct lb_sock_affinity_key k = { .netns_cookie = netns_cookie, .svc_id = svc_id };

		bpf_map_update_elem(&lb_sock_affinity_v1, &k, &v, BPF_ANY);
	} else if (p->family == 4) {
		struct lb4_affinity_key k = { .client = p->saddr.a[0], .svc_id = svc_id };

		bpf_map_update_elem(&lb4_affinity_v1, &k, &v, BPF_ANY);
	} else {
		struct lb6_affinity_key k = { .svc_id = svc_id };

		__builtin_memcpy(k.client, p->saddr.a, 16);
		bpf_map_update_elem(&lb6_affinity_v1, &k, &v, BPF_ANY);
	}
}

/* Bob Jenkins' lookup3 final mix (as the kernel's jhash_3words), written from the paper. */
static __always_inline __u32 lb_rol32(__u32 x, int k)
{
	return (x << k) | (x >> (32 - k));
}

static __always_inline __u32 lb_jhash3(__u32 a, __u32 b, __u32 c, __u32 init)
{
	a += 0xdeadbeef + init;
	b += 0xdeadbeef + init;
	c += 0xdeadbeef + init;
	c ^= b; c -= lb_rol32(b, 14);
	a ^= c; a -= lb_rol32(c, 11);
	b ^= a; b -= lb_rol32(a, 25);
	c ^= b; c -= lb_rol32(b, 16);
	a ^= c; a -= lb_rol32(c, 4);
	b ^= a; b -= lb_rol32(a, 14);
	c ^= b; c -= lb_rol32(b, 24);
	return c;
}

/*
 * The flow's Maglev hash: client address, port and protocol, not the destination, so a flow
 * hashes the same through every node's NodePort (different node addresses) and every VIP of
 * the service. ClientIP affinity leaves the port out: all of a client's flows share a backend.
 */
static __always_inline __u32 lb_flow_hash(const struct lb_pkt *p, bool affinity)
{
	__u32 ports = affinity ? 0 : (__u32)bpf_ntohs(p->sport) << 16;
	__u32 h = lb_jhash3(p->saddr.a[0], p->saddr.a[1], p->saddr.a[2], cfg_maglev_seed0);

	return lb_jhash3(p->saddr.a[3], ports | p->proto, cfg_maglev_seed1, h);
}

static __always_inline bool lb_maglev_select(const struct lb_pkt *p,
					     const struct lb_svc_value *svc,
					     struct lb_backend_info *b)
{
	__u32 size = cfg_maglev_size;
	__u32 svc_id = svc->svc_id;
	__u32 zero = 0, idx, *ids;
	void *lut;

	if (!size)
		return false;
	lut = bpf_map_lookup_elem(&lb_maglev_v2, &svc_id);
	if (!lut)
		return false;
	ids = bpf_map_lookup_elem(lut, &zero);
	if (!ids)
		return false;
	idx = lb_flow_hash(p, svc->flags & LB_SVC_F_AFFINITY) % size;
	/*
	 * The verifier does not bound a modulo, and clang drops a check it knows is true; hidden
	 * from clang, the check against size (frozen rodata: a known constant, as is the table's
	 * value size, 4 * size) proves the read stays inside the table.
	 */
	asm volatile("" : "+r"(idx));
	if (idx >= size)
		return false;
	return lb_backend_get(p->family, ids[idx], svc_id, b);
}

/* loadBalancerSourceRanges: whether the client may open a flow to svc_id. */
static __always_inline bool lb_src_range_ok(const struct lb_pkt *p, __u32 svc_id)
{
	if (p->family == 4) {
		struct lb4_src_range_key k = { .prefixlen = LB_SRC_RANGE_KEY_PREFIX + 32,
					       .svc_id = svc_id, .addr = p->saddr.a[0] };

		return bpf_map_lookup_elem(&lb4_src_ranges_v1, &k) != NULL;
	} else {
		struct lb6_src_range_key k = { .prefixlen = LB_SRC_RANGE_KEY_PREFIX + 128,
					       .svc_id = svc_id };

		__builtin_memcpy(k.addr, p->saddr.a, 16);
		return bpf_map_lookup_elem(&lb6_src_ranges_v1, &k) != NULL;
	}
}

/*
 * Picks the backend for a new flow: the client's affinity backend while it is fresh and still
 * part of the service (kube-proxy: the timer restarts with every new connection), otherwise the
 * Maglev table's (maglev: external traffic to a frontend that has one; a missing table falls
 * back to random) or a slot of the scope, uniformly at random, or from *pick when given (a UDP
 * socket's hash, so its datagrams keep one backend). netns_cookie: affinity by network
 * namespace (socket-LB), 0 = by p->saddr. Caller guarantees svc->count > 0. Returns false if
 * the slot or backend vanished under a concurrent update.
 */
static __always_inline bool lb_choose_backend(const struct lb_pkt *p,
					      const struct lb_svc_value *svc, __u8 scope,
					      bool maglev, __u64 now, __u64 netns_cookie,
					      const __u32 *pick, struct lb_backend_info *b)
{
	bool affinity = svc->flags & LB_SVC_F_AFFINITY;
	struct lb_svc_value *slot;
	__u32 n;

	if (affinity) {
		struct lb_affinity_value *av = lb_affinity_lookup(p, svc->svc_id, netns_cookie);

		if (av &&
		    !lb_older_than(now, av->last_used_ns,
				   (__u64)svc->affinity_timeout * NSEC_PER_SEC) &&
		    lb_backend_get(p->family, av->backend_id, svc->svc_id, b)) {
			b->pick = LB_PICK_AFFINITY;
			goto chosen;
		}
	}
	if (maglev && lb_maglev_select(p, svc, b)) {
		b->pick = LB_PICK_MAGLEV;
		goto chosen;
	}
	n = pick ? *pick : bpf_get_prandom_u32();
	slot = lb_svc_lookup(p, (__u16)(n % svc->count) + 1, scope);
	if (!slot || !lb_backend_get(p->family, slot->backend_id, svc->svc_id, b))
		return false;
	b->pick = LB_PICK_RANDOM;
chosen:
	if (affinity)
		lb_affinity_update(p, svc->svc_id, b->id, now, netns_cookie);
	return true;
}

/* The packet programs' choice: affinity by client address, a random slot. */
static __always_inline bool lb_select_backend(const struct lb_pkt *p,
					      const struct lb_svc_value *svc, __u8 scope,
					      bool maglev, __u64 now, struct lb_backend_info *b)
{
	return lb_choose_backend(p, svc, scope, maglev, now, 0, NULL, b);
}

/*
 * Fragments: only the first carries the ports, so remember them by (addresses, id, protocol)
 * and give later pieces the same tuple. Keys use the addresses as received.
 */
static __always_inline void lb_frag_remember(const struct lb_pkt *p)
{
	struct lb_frag_value v = { .sport = p->sport, .dport = p->dport };

	if (p->dry_run)
		return;
	if (p->family == 4) {
		struct lb4_frag_key k = { .saddr = p->saddr.a[0], .daddr = p->daddr.a[0],
					  .id = (__be16)p->frag_id, .proto = p->proto };

		bpf_map_update_elem(&lb4_frags_v1, &k, &v, BPF_ANY);
	} else {
		struct lb6_frag_key k = { .id = p->frag_id, .proto = p->proto };

		__builtin_memcpy(k.saddr, p->saddr.a, 16);
		__builtin_memcpy(k.daddr, p->daddr.a, 16);
		bpf_map_update_elem(&lb6_frags_v1, &k, &v, BPF_ANY);
	}
}

static __always_inline bool lb_frag_recall(struct lb_pkt *p)
{
	struct lb_frag_value *v;

	if (p->family == 4) {
		struct lb4_frag_key k = { .saddr = p->saddr.a[0], .daddr = p->daddr.a[0],
					  .id = (__be16)p->frag_id, .proto = p->proto };

		v = bpf_map_lookup_elem(&lb4_frags_v1, &k);
	} else {
		struct lb6_frag_key k = { .id = p->frag_id, .proto = p->proto };

		__builtin_memcpy(k.saddr, p->saddr.a, 16);
		__builtin_memcpy(k.daddr, p->daddr.a, 16);
		v = bpf_map_lookup_elem(&lb6_frags_v1, &k);
	}
	if (!v)
		return false;
	p->sport = v->sport;
	p->dport = v->dport;
	return true;
}

#endif
