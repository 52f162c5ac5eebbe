/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * One datapath for two kinds of context: tc programs get a struct __sk_buff, XDP programs a
 * struct xdp_md. Every function below the entry points takes the context as `void *ctx` plus
 * the hook it runs at; each entry point passes a constant hook and every function is
 * __always_inline, so clang keeps exactly one helper of each pair and the verifier only ever
 * sees calls that are valid for the program type.
 *
 * Packet bytes are read and written through the load/store helpers (bounds-checked against the
 * real packet, linear or not). Checksums: tc uses the csum helpers, which know the skb's
 * checksum state (a local pod's packets are CHECKSUM_PARTIAL); XDP frames come off the wire
 * with complete checksums, which are updated here per RFC 1624.
 */
#ifndef SLUICE_BPF_LIB_CTX_H
#define SLUICE_BPF_LIB_CTX_H

#include "lib/common.h"

enum lb_hook {
	LB_HOOK_POD = 0,	/* tc ingress of a pod-facing device: the pod's outgoing traffic */
	LB_HOOK_XDP,		/* XDP on a native device: traffic from outside the node */
	LB_HOOK_NODE_IN,	/* tc ingress of a native device (no XDP, or what XDP passed on) */
	LB_HOOK_NODE_OUT,	/* tc egress of a native device: what the node itself sends */
};

/* Traffic from outside the node: external traffic policy, Maglev, SNAT/DSR apply. */
static __always_inline bool lb_hook_external(enum lb_hook hook)
{
	return hook == LB_HOOK_XDP || hook == LB_HOOK_NODE_IN;
}

static __always_inline long lb_load(void *ctx, enum lb_hook hook, __u32 off, void *to, __u32 len)
{
	if (hook == LB_HOOK_XDP)
		return bpf_xdp_load_bytes(ctx, off, to, len);
	return bpf_skb_load_bytes(ctx, off, to, len);
}

static __always_inline long lb_store(void *ctx, enum lb_hook hook, __u32 off, const void *from,
				     __u32 len)
{
	if (hook == LB_HOOK_XDP)
		return bpf_xdp_store_bytes(ctx, off, (void *)from, len);
	return bpf_skb_store_bytes(ctx, off, from, len, 0);
}

static __always_inline __u32 lb_len(void *ctx, enum lb_hook hook)
{
	if (hook == LB_HOOK_XDP)
		return bpf_xdp_get_buff_len(ctx);
	return ((struct __sk_buff *)ctx)->len;
}

/*
 * The device the packet arrived on (egress: the device it leaves by). Entry programs only: in
 * a subprogram, where the hook is not a compile-time constant, clang merges the two loads into
 * one from ctx + (12 or 40), which the verifier rejects as a modified context pointer.
 */
static __always_inline __u32 lb_ifindex(void *ctx, enum lb_hook hook)
{
	if (hook == LB_HOOK_XDP)
		return ((struct xdp_md *)ctx)->ingress_ifindex;
	return ((struct __sk_buff *)ctx)->ifindex;
}

/*
 * A one's complement sum of several diffs may pass 32 bits; the csum helpers take a 32-bit
 * __wsum, so fold the carries back in first (end-around carry keeps the sum's value).
 */
static __always_inline __u32 lb_csum_reduce(__s64 sum)
{
	__u64 s = (__u64)sum;

	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffffffff) + (s >> 32);
	return (__u32)s;
}

/* RFC 1624 eqn. 3: HC' = ~(~HC + ~m + m'), where diff already holds ~m + m'. */
static __always_inline __u16 lb_csum_apply(__u16 csum, __s64 diff)
{
	return lb_csum_fold((__u64)lb_csum_reduce(diff) + (__u16)~csum);
}

/* ~m + m' for one 16-bit field, in the form bpf_csum_diff returns. */
static __always_inline __s64 lb_csum_diff16(__be16 from, __be16 to)
{
	return (__u16)~from + (__u32)to;
}

/*
 * Adds diff (~old + new of the changed bytes) to the 16-bit checksum at off. tc: l3 selects
 * the IP header helper, pseudo says the change is part of the L4 pseudo header, udp keeps a
 * zero (absent) UDP checksum zero and sends a computed zero as 0xffff (RFC 768).
 */
static __always_inline int lb_csum_update(void *ctx, enum lb_hook hook, __u32 off, __s64 diff,
					  bool l3, bool pseudo, bool udp)
{
	__u16 csum;

	if (hook != LB_HOOK_XDP) {
		diff = lb_csum_reduce(diff);
		if (l3)
			return bpf_l3_csum_replace(ctx, off, 0, diff, 0) < 0 ? -1 : 0;
		return bpf_l4_csum_replace(ctx, off, 0, diff,
					   (pseudo ? BPF_F_PSEUDO_HDR : 0) |
						   (udp ? BPF_F_MARK_MANGLED_0 : 0)) < 0 ? -1 : 0;
	}
	if (bpf_xdp_load_bytes(ctx, off, &csum, sizeof(csum)) < 0)
		return -1;
	if (udp && csum == 0)
		return 0;
	csum = lb_csum_apply(csum, diff);
	if (udp && csum == 0)
		csum = 0xffff;
	return bpf_xdp_store_bytes(ctx, off, &csum, sizeof(csum)) < 0 ? -1 : 0;
}

#endif
