// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The floor of the datapath benchmark (bench/datapath_bench.cc): the cheapest program of each
 * hook sluice runs at. What BPF_PROG_TEST_RUN reports for these is the cost of running any
 * program there at all (the test-run loop, its clock reads, the context); sluice's cost per
 * packet is given as a multiple of it, measured side by side with the same packets.
 *
 * References beside it, measured the same way, say what the least an established flow needs
 * costs on the machine: one read of the clock sluice stamps flows with (and of the coarse clock
 * it could use), and one lookup that hits in an LRU hash of conntrack's key, value and size.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

#include "maps/sluice_abi.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

SEC("xdp")
int floor_xdp(struct xdp_md *ctx)
{
	return XDP_PASS;
}

SEC("tc")
int floor_tc(struct __sk_buff *skb)
{
	return TC_ACT_OK;
}

SEC("tc")
int ref_clock(struct __sk_buff *skb)
{
	/* The verdict depends on the value, so the call cannot be dropped. */
	return bpf_ktime_get_ns() ? TC_ACT_OK : TC_ACT_SHOT;
}

/* The clock a coarse timestamp would read instead (CLOCK_MONOTONIC_COARSE, tick resolution). */
SEC("tc")
int ref_clock_coarse(struct __sk_buff *skb)
{
	return bpf_ktime_get_coarse_ns() ? TC_ACT_OK : TC_ACT_SHOT;
}

/* Not pinned: private to the bench process. The bench writes the one key the program reads. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__type(key, struct lb4_ct_key);
	__type(value, struct lb4_ct_value);
	__uint(max_entries, LB_MAX_CT_ENTRIES);
} ref_ct SEC(".maps");

SEC("tc")
int ref_ct_lookup(struct __sk_buff *skb)
{
	struct lb4_ct_key k = { .saddr = 0x0200fa0a, .daddr = 0x0a00600a, .sport = 0xe803,
				.dport = 0x5000, .proto = 6 };

	return bpf_map_lookup_elem(&ref_ct, &k) ? TC_ACT_OK : TC_ACT_SHOT;
}
