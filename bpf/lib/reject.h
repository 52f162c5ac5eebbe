/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * REJECT for a service without usable backends: the packet is rewritten into an answer from
 * the service address and bounced out of the device it came in on, so the client fails at once
 * instead of timing out. A packet too big for its way out to another node is answered the same
 * way, with "fragmentation needed" / "packet too big" (lb_icmp_error with an MTU).
 *
 * UDP gets ICMP (ICMPv6) port unreachable, as kube-proxy sends. TCP gets a RST, the answer of a
 * closed port (RFC 793 3.4): the answer arrives in the same softirq as the client's SYN, while
 * connect() still owns the socket, and the kernel drops ICMP errors for an owned socket
 * (LINUX_MIB_LOCKDROPPEDICMPS, tcp_v4_err/tcp_v6_err) until the SYN is retransmitted a second
 * later, whereas a RST is queued to the socket backlog and refuses the connection at once.
 */
#ifndef SLUICE_BPF_LIB_REJECT_H
#define SLUICE_BPF_LIB_REJECT_H

#include "lib/common.h"
#include "lib/maps.bpf.h"
#include "lib/parse.h"

/*
 * linux/icmp.h drags in libc's socket headers, which do not build for -target bpf; the error
 * header is 8 bytes that RFC 792 fixes for good.
 */
#define ICMP_DEST_UNREACH	3
#define ICMP_PORT_UNREACH	3
#define ICMP_FRAG_NEEDED	4

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

/* The answer's Ethernet header: the request's, addresses swapped. */
static __always_inline int lb_reply_eth(struct __sk_buff *skb, struct ethhdr *eth)
{
	__u8 mac[ETH_ALEN];

	if (bpf_skb_load_bytes(skb, 0, eth, sizeof(*eth)) < 0)
		return -1;
	__builtin_memcpy(mac, eth->h_dest, ETH_ALEN);
	__builtin_memcpy(eth->h_dest, eth->h_source, ETH_ALEN);
	__builtin_memcpy(eth->h_source, mac, ETH_ALEN);
	return 0;
}

/* IPv4 header from the service address back to the client, checksum included. */
static __always_inline void lb4_reply_ip(struct iphdr *ip, const struct lb_pkt *p, __u8 proto,
					 __u16 tot_len, __u8 tos, __u16 frag_off)
{
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = tos;
	ip->tot_len = bpf_htons(tot_len);
	ip->frag_off = bpf_htons(frag_off);
	ip->ttl = 64;
	ip->protocol = proto;
	ip->saddr = p->daddr.a[0];
	ip->daddr = p->saddr.a[0];
	ip->check = lb_csum_fold(bpf_csum_diff(NULL, 0, (__be32 *)ip, sizeof(*ip), 0));
}

/* IPv6 header from the service address back to the client; returns its pseudo-header sum. */
static __always_inline __s64 lb6_reply_ip(struct ipv6hdr *ip6, const struct lb_pkt *p,
					  __u8 nexthdr, __u16 payload_len)
{
	struct lb6_pseudo ph = {};

	ip6->version = 6;
	ip6->payload_len = bpf_htons(payload_len);
	ip6->nexthdr = nexthdr;
	ip6->hop_limit = 64;
	__builtin_memcpy(&ip6->saddr, p->daddr.a, 16);
	__builtin_memcpy(&ip6->daddr, p->saddr.a, 16);
	__builtin_memcpy(ph.saddr, p->daddr.a, 16);
	__builtin_memcpy(ph.daddr, p->saddr.a, 16);
	ph.len = bpf_htonl(payload_len);
	ph.nexthdr = bpf_htonl(nexthdr);
	return bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
}

/*
 * Rewrites the packet into an ICMP (ICMPv6) error to its source, from its destination: port
 * unreachable when mtu is 0, else fragmentation needed (RFC 1191: the next-hop MTU in the low
 * 16 bits) / packet too big (RFC 8201). Returns 0 when it should be redirected back out.
 */
static __noinline int lb_icmp_error(struct __sk_buff *skb, const struct lb_pkt *p, __u32 mtu)
{
	__u32 zero = 0;
	/* 64-bit on purpose: a 32-bit clamp is lost on the 64-bit register the helper gets. */
	__u64 qlen, hlen;
	struct lb_quote *q;
	struct ethhdr eth;
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
	if (lb_reply_eth(skb, &eth) < 0 || bpf_skb_load_bytes(skb, ETH_HLEN, q->bytes, qlen) < 0)
		return -1;

	if (p->family == 4) {
		hlen = sizeof(struct lb4_icmp_err);
		/* tos: IPTOS_PREC_INTERNETCONTROL, as Linux's own ICMP errors */
		lb4_reply_ip(&h.v4.ip, p, IPPROTO_ICMP, hlen + qlen, 0xc0, 0);
		h.v4.icmp.type = ICMP_DEST_UNREACH;
		h.v4.icmp.code = mtu ? ICMP_FRAG_NEEDED : ICMP_PORT_UNREACH;
		h.v4.icmp.unused = bpf_htonl(mtu & 0xffff);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.v4.icmp, sizeof(h.v4.icmp), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)q->bytes, qlen, sum);
		h.v4.icmp.checksum = lb_csum_fold(sum);
	} else {
		hlen = sizeof(struct lb6_icmp_err);
		sum = lb6_reply_ip(&h.v6.ip6, p, IPPROTO_ICMPV6, sizeof(struct icmp6hdr) + qlen);
		h.v6.icmp6.icmp6_type = mtu ? ICMPV6_PKT_TOOBIG : ICMPV6_DEST_UNREACH;
		h.v6.icmp6.icmp6_code = mtu ? 0 : ICMPV6_PORT_UNREACH;
		h.v6.icmp6.icmp6_mtu = bpf_htonl(mtu);
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

struct lb4_rst {
	struct iphdr ip;
	struct tcphdr tcp;
};

struct lb6_rst {
	struct ipv6hdr ip6;
	struct tcphdr tcp;
};

/*
 * RFC 793 3.4, reset generation for a closed port: if the segment has ACK, the RST takes its
 * sequence number from SEG.ACK; otherwise RST|ACK with seq 0 and ack = SEG.SEQ + SEG.LEN (SYN
 * and FIN count one each). Returns 0 when the packet was rewritten and should be redirected.
 */
static __always_inline int lb_tcp_reset(struct __sk_buff *skb, const struct lb_pkt *p)
{
	struct tcphdr in;
	struct ethhdr eth;
	__be16 l3_payload;
	__u32 seg_len;
	__u64 hlen;
	__s64 sum;
	union {
		struct lb4_rst v4;
		struct lb6_rst v6;
	} h = {};
	struct tcphdr rst = {}, *t = &rst;

	if (lb_reply_eth(skb, &eth) < 0 ||
	    bpf_skb_load_bytes(skb, p->l4_off, &in, sizeof(in)) < 0 ||
	    bpf_skb_load_bytes(skb, ETH_HLEN + (p->family == 4 ? 2 : 4), &l3_payload, 2) < 0)
		return -1;

	/* IPv4 total length counts the IP header; IPv6 payload length counts extensions. */
	seg_len = bpf_ntohs(l3_payload) - (p->family == 4 ? p->l3_len : p->l3_len - 40) -
		  in.doff * 4 + in.syn + in.fin;

	t->source = p->dport;
	t->dest = p->sport;
	t->doff = 5;
	t->rst = 1;
	if (in.ack) {
		t->seq = in.ack_seq;
	} else {
		t->ack = 1;
		t->ack_seq = bpf_htonl(bpf_ntohl(in.seq) + seg_len);
	}

	if (p->family == 4)
		h.v4.tcp = rst;
	else
		h.v6.tcp = rst;

	if (p->family == 4) {
		struct {
			__be32 saddr;
			__be32 daddr;
			__u8 zero;
			__u8 proto;
			__be16 len;
		} ph = { .saddr = p->daddr.a[0], .daddr = p->saddr.a[0], .proto = IPPROTO_TCP,
			 .len = bpf_htons(sizeof(struct tcphdr)) };

		hlen = sizeof(struct lb4_rst);
		/* DF, as Linux's own resets */
		lb4_reply_ip(&h.v4.ip, p, IPPROTO_TCP, sizeof(struct lb4_rst), 0, 0x4000);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&ph, sizeof(ph), 0);
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.v4.tcp, sizeof(h.v4.tcp), sum);
		h.v4.tcp.check = lb_csum_fold(sum);
	} else {
		hlen = sizeof(struct lb6_rst);
		sum = lb6_reply_ip(&h.v6.ip6, p, IPPROTO_TCP, sizeof(struct tcphdr));
		sum = bpf_csum_diff(NULL, 0, (__be32 *)&h.v6.tcp, sizeof(h.v6.tcp), sum);
		h.v6.tcp.check = lb_csum_fold(sum);
	}

	if (bpf_skb_change_tail(skb, ETH_HLEN + hlen, 0) < 0)
		return -1;
	if (bpf_skb_store_bytes(skb, 0, &eth, sizeof(eth), 0) < 0 ||
	    bpf_skb_store_bytes(skb, ETH_HLEN, &h, hlen, 0) < 0)
		return -1;
	return 0;
}

static __noinline int lb_reject(struct __sk_buff *skb, const struct lb_pkt *p)
{
	if (p->proto == IPPROTO_TCP)
		return lb_tcp_reset(skb, p);
	return lb_icmp_error(skb, p, 0);
}

#endif
