/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * REJECT for a service without usable backends, as kube-proxy does: the packet is turned into
 * an ICMP (ICMPv6) port unreachable from the service address back to the client and bounced out
 * of the device it came in on. The client's kernel matches the quoted header to the socket, so
 * a TCP connect() fails with ECONNREFUSED at once instead of timing out.
 */
#ifndef SLUICE_BPF_LIB_ICMP_H
#define SLUICE_BPF_LIB_ICMP_H

#include "lib/common.h"
#include "lib/maps.bpf.h"
#include "lib/parse.h"

/*
 * linux/icmp.h drags in libc's socket headers, which do not build for -target bpf; the error
 * header is 8 bytes that RFC 792 fixes for good.
 */
#define ICMP_DEST_UNREACH	3
#define ICMP_PORT_UNREACH	3

struct lb_icmphdr {
	__u8 type;
	__u8 code;
	__sum16 checksum;
	__be32 unused;
};

struct lb4_icmp_err {
	struct iphdr ip;
	struct lb_icmphdr icmp;
};

struct lb6_icmp_err {
	struct ipv6hdr ip6;
	struct icmp6hdr icmp6;
};

/* RFC 8200 8.1 pseudo header for the ICMPv6 checksum. */
struct lb6_pseudo {
	__be32 saddr[4];
	__be32 daddr[4];
	__be32 len;
	__be32 nexthdr;
};

/* Returns 0 when the packet was rewritten into the error and should be redirected. */
static __always_inline int lb_reject(struct __sk_buff *skb, const struct lb_pkt *p)
{
	__u32 zero = 0;
	/* 64-bit on purpose: a 32-bit clamp is lost on the 64-bit register the helper gets. */
	__u64 qlen, hlen;
	struct lb_quote *q;
	struct ethhdr eth;
	__u8 mac[ETH_ALEN];
	__s64 sum;
	union {
		struct lb4_icmp_err v4;
		struct lb6_icmp_err v6;
	} h = {};

	/*
	 * The quote: the original IP header (options and extension headers included) and 8 bytes
	 * of L4 header: RFC 792 asks for exactly that, RFC 4443 2.4(c) for "as much as fits" and
	 * allows less, which keeps the checksum below bounded. Always a multiple of 4 because IPv4
	 * headers are 4-byte and IPv6 extension headers 8-byte multiples.
	 */
	qlen = (__u64)p->l3_len + 8;
	if (qlen > LB_QUOTE_MAX)
		qlen = LB_QUOTE_MAX;
	if (qlen < sizeof(struct iphdr) + 8)
		return -1;
	q = bpf_map_lookup_elem(&lb_scratch, &zero);
	if (!q)
		return -1;
	if (bpf_skb_load_bytes(skb, 0, &eth, sizeof(eth)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN, q->bytes, qlen) < 0)
		return -1;
	__builtin_memcpy(mac, eth.h_dest, ETH_ALEN);
	__builtin_memcpy(eth.h_dest, eth.h_source, ETH_ALEN);
	__builtin_memcpy(eth.h_source, mac, ETH_ALEN);

	if (p->family == 4) {
		hlen = sizeof(struct lb4_icmp_err);
		h.v4.ip.version = 4;
		h.v4.ip.ihl = 5;
		h.v4.ip.tos = 0xc0;	/* IPTOS_PREC_INTERNETCONTROL, as Linux's own errors */
		h.v4.ip.tot_len = bpf_htons(hlen + qlen);
		h.v4.ip.ttl = 64;
		h.v4.ip.protocol = IPPROTO_ICMP;
		h.v4.ip.saddr = p->daddr.a[0];
		h.v4.ip.daddr = p->saddr.a[0];
		h.v4.ip.check = lb_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)&h.v4.ip,
							   sizeof(h.v4.ip), 0));
		h.v4.icmp.type = ICMP_DEST_UNREACH;
		h.v4.icmp.code = ICMP_PORT_UNREACH;
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.v4.icmp, sizeof(h.v4.icmp), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)q->bytes, qlen, sum);
		h.v4.icmp.checksum = lb_csum_fold(sum);
	} else {
		struct lb6_pseudo ph = {};

		hlen = sizeof(struct lb6_icmp_err);
		h.v6.ip6.version = 6;
		h.v6.ip6.payload_len = bpf_htons(sizeof(struct icmp6hdr) + qlen);
		h.v6.ip6.nexthdr = IPPROTO_ICMPV6;
		h.v6.ip6.hop_limit = 64;
		__builtin_memcpy(&h.v6.ip6.saddr, p->daddr.a, 16);
		__builtin_memcpy(&h.v6.ip6.daddr, p->saddr.a, 16);
		h.v6.icmp6.icmp6_type = ICMPV6_DEST_UNREACH;
		h.v6.icmp6.icmp6_code = ICMPV6_PORT_UNREACH;
		__builtin_memcpy(ph.saddr, p->daddr.a, 16);
		__builtin_memcpy(ph.daddr, p->saddr.a, 16);
		ph.len = bpf_htonl(sizeof(struct icmp6hdr) + qlen);
		ph.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.v6.icmp6, sizeof(h.v6.icmp6), sum);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)q->bytes, qlen, sum);
		h.v6.icmp6.icmp6_cksum = lb_csum_fold(sum);
	}

	/* Resize to exactly eth + new headers + quote, then overwrite it all. */
	if (bpf_skb_change_tail(skb, ETH_HLEN + hlen + qlen, 0) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &h, hlen, 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN + hlen, q->bytes, qlen, 0) < 0)
		return -1;
	return 0;
}

#endif
