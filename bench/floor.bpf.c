// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The floor of the datapath benchmark (bench/datapath_bench.cc): the cheapest program of each
 * hook sluice runs at. What BPF_PROG_TEST_RUN reports for these is the cost of running any
 * program there at all (the test-run loop, its clock reads, the context); sluice's cost per
 * packet is given as a multiple of it, measured side by side with the same packets.
 */
#include <linux/bpf.h>
#include <linux/pkt_cls.h>
#include <bpf/bpf_helpers.h>

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
