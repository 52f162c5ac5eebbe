/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Includes and small helpers every datapath file needs. UAPI headers only, no vmlinux.h. */
#ifndef SLUICE_BPF_LIB_COMMON_H
#define SLUICE_BPF_LIB_COMMON_H

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/in6.h>
#include <linux/ip.h>
#include <linux/ipv6.h>
#include <linux/icmpv6.h>
#include <linux/tcp.h>
#include <linux/udp.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#include "maps/sluice_abi.h"

/* No libc under -target bpf. */
typedef _Bool bool;
#define true 1
#define false 0

#define NSEC_PER_SEC 1000000000ULL

/*
 * An address of either family: IPv4 lives in a[0], a[1..3] stay zero, so one comparison and
 * one copy routine serve both and a v4 address never equals a v6 one that isn't v4-mapped.
 */
union lb_addr {
	__be32 a[4];
};

static __always_inline bool lb_addr_eq(const union lb_addr *x, const union lb_addr *y)
{
	return ((x->a[0] ^ y->a[0]) | (x->a[1] ^ y->a[1]) | (x->a[2] ^ y->a[2]) |
		(x->a[3] ^ y->a[3])) == 0;
}

static __always_inline void lb_addr_copy(__be32 *dst, const __be32 *src, __u8 family)
{
	dst[0] = src[0];
	if (family == 6) {
		dst[1] = src[1];
		dst[2] = src[2];
		dst[3] = src[3];
	}
}

/*
 * Whether more than `span` ns lie between `then` and `now` (CLOCK_MONOTONIC). Signed: a stamp a
 * little ahead of `now` is fresh, not 584 years old. That happens when it came from a finer
 * clock than lb_now()'s tick-resolution one (a test, or entries an earlier build wrote with
 * bpf_ktime_get_ns() that an upgraded program reads).
 */
static __always_inline bool lb_older_than(__u64 now, __u64 then, __u64 span)
{
	return (__s64)(now - then) > (__s64)span;
}

/* Folds a 32-bit one's complement sum (as bpf_csum_diff returns it) into a checksum field. */
static __always_inline __u16 lb_csum_fold(__s64 sum)
{
	__u64 s = (__u64)sum;

	s = (s & 0xffffffff) + (s >> 32);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	s = (s & 0xffff) + (s >> 16);
	return (__u16)~s;
}

#endif
