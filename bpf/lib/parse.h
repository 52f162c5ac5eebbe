/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Packet parsing into struct lb_pkt. Headers in the linear part of the packet are read directly
 * (lb_peek(): a bounds check and a copy, no helper call: every packet pays for parsing); a
 * header beyond it goes through lb_load() (the skb/xdp load helpers):
 * offsets after IPv4 options and IPv6 extension headers are variable, and the helpers
 * bounds-check against the real packet (linear or not), which keeps the verifier simple and
 * never reads past the packet. ICMP errors are parsed too (their quoted packet may belong to a
 * translated flow); on native devices a DSR option is picked up.
 * Every multi-byte field in struct lb_pkt is in network order unless it says otherwise.
 */
#ifndef SLUICE_BPF_LIB_PARSE_H
#define SLUICE_BPF_LIB_PARSE_H

#include "lib/common.h"
#include "lib/ctx.h"

/* More headers than this in a chain is not traffic we translate (pass, counted malformed). */
#define LB_MAX_EXT_HDRS 6

enum lb_frag {
	LB_FRAG_NONE = 0,
	LB_FRAG_FIRST,	/* offset 0, more fragments follow: carries the L4 header */
	LB_FRAG_LATER,	/* offset > 0: no L4 header, ports come from lb*_frags_v1 */
};

/* Parse result that is not a final verdict: go on translating. */
#define LB_CONTINUE (-1)

struct lb_pkt {
	union lb_addr saddr;
	union lb_addr daddr;
	__be16 sport;
	__be16 dport;
	__be32 frag_id;		/* v4: identification (16 bits); v6: fragment header id */
	__u32 l4_off;		/* host: offset of the L4 header from the start of the frame */
	__u32 l3_len;		/* host: IPv4 header incl. options / IPv6 header + extensions */
	__u8 family;		/* 4 or 6 */
	__u8 proto;		/* L4 protocol after extension headers */
	__u8 tcp_flags;		/* byte 13 of the TCP header (FIN 0x01, SYN 0x02, RST 0x04, ACK 0x10) */
	__u8 frag;		/* enum lb_frag */
	__be16 l4_csum;		/* as received; for the RFC 8200 zero-UDP-checksum rule */
	__u8 ip_hl5;		/* IPv4 without options: room for a DSR option can be made */
	__u8 has_dsr;		/* a DSR option names the service (dsr_addr:dsr_port) */
	__u8 df;		/* IPv4 Don't Fragment (IPv6: routers never fragment, always 1) */
	__u8 pad0;
	__be16 dsr_port;
	union lb_addr dsr_addr;
	__u32 icmp_off;		/* host: ICMP error (proto ICMP/ICMPV6): its header's offset */
	__u32 ifindex;		/* host: lb_ifindex(), read by the entry program (see there) */
	/*
	 * A dry run (sluicectl trace, see lb_trace in maps/sluice_abi.h): every map write is
	 * skipped, one predictable branch at each write site.
	 */
	__u8 dry_run;
};

#define LB_TCP_FIN 0x01
#define LB_TCP_SYN 0x02
#define LB_TCP_RST 0x04
#define LB_TCP_ACK 0x10

/*
 * len bytes at off: straight from the packet when they lie in [data, data_end), else by the load
 * helper (a header in a non-linear part). data/data_end come from the entry program's context
 * (lb_run), so the verifier sees packet pointers here.
 */
static __always_inline long lb_peek(void *ctx, enum lb_hook hook, void *data, void *data_end,
				    __u32 off, void *to, __u32 len)
{
	/*
	 * The verifier marks a checked packet range only when the pointer's largest offset plus
	 * len stays within 64 KiB (MAX_PACKET_OFF): bound off well below that. Headers never lie
	 * 4 KiB deep.
	 */
	if (off < 4096 && data + off + len <= data_end) {
		__builtin_memcpy(to, data + off, len);
		return 0;
	}
	return lb_load(ctx, hook, off, to, len);
}

/* Ports, TCP flags and checksum of a packet that carries its L4 header. */
static __always_inline int lb_parse_l4(void *ctx, enum lb_hook hook, struct lb_pkt *p,
				       void *data, void *data_end)
{
	__u8 tcp[14];
	struct udphdr udp;

	if (p->proto == IPPROTO_TCP) {
		/* A TCP header is at least 20 bytes; anything shorter is corrupt. */
		if (lb_peek(ctx, hook, data, data_end, p->l4_off, tcp, sizeof(tcp)) < 0 ||
		    lb_len(ctx, hook) < p->l4_off + sizeof(struct tcphdr))
			return LB_STAT_PASS_MALFORMED;
		__builtin_memcpy(&p->sport, &tcp[0], 2);
		__builtin_memcpy(&p->dport, &tcp[2], 2);
		p->tcp_flags = tcp[13];
		if (lb_peek(ctx, hook, data, data_end, p->l4_off + 16, &p->l4_csum, 2) < 0)
			return LB_STAT_PASS_MALFORMED;
		return LB_CONTINUE;
	}
	if (lb_peek(ctx, hook, data, data_end, p->l4_off, &udp, sizeof(udp)) < 0)
		return LB_STAT_PASS_MALFORMED;
	p->sport = udp.source;
	p->dport = udp.dest;
	p->l4_csum = udp.check;
	return LB_CONTINUE;
}

static __always_inline int lb4_parse(void *ctx, enum lb_hook hook, struct lb_pkt *p,
				     void *data, void *data_end)
{
	struct iphdr ip;
	__u16 frag_off;

	if (lb_peek(ctx, hook, data, data_end, ETH_HLEN, &ip, sizeof(ip)) < 0 || ip.ihl < 5 ||
	    ip.version != 4)
		return LB_STAT_PASS_MALFORMED;
	p->family = 4;
	p->l3_len = ip.ihl * 4;
	p->l4_off = ETH_HLEN + p->l3_len;
	if (lb_len(ctx, hook) < p->l4_off)
		return LB_STAT_PASS_MALFORMED;
	p->saddr.a[0] = ip.saddr;
	p->daddr.a[0] = ip.daddr;
	p->proto = ip.protocol;
	p->ip_hl5 = ip.ihl == 5;
	if (ip.ihl == 7 && hook != LB_HOOK_POD) {
		struct lb_dsr_opt4 opt;

		/* Only ever the sole option, as lb4_dsr_insert() writes it. */
		if (lb_peek(ctx, hook, data, data_end, ETH_HLEN + sizeof(ip), &opt, sizeof(opt)) == 0 &&
		    opt.type == LB_DSR_OPT4_TYPE && opt.len == sizeof(opt)) {
			p->has_dsr = 1;
			p->dsr_port = opt.port;
			p->dsr_addr.a[0] = opt.addr;
		}
	}
	p->df = !!(bpf_ntohs(ip.frag_off) & 0x4000);	/* IP_DF */
	if (p->proto == IPPROTO_ICMP && !(bpf_ntohs(ip.frag_off) & 0x1fff)) {
		p->icmp_off = p->l4_off;
		return LB_CONTINUE;
	}
	if (p->proto != IPPROTO_TCP && p->proto != IPPROTO_UDP)
		return LB_STAT_PASS;

	frag_off = bpf_ntohs(ip.frag_off);
	p->frag_id = ip.id;
	if (frag_off & 0x1fff) {	/* IP_OFFSET: no L4 header in this piece */
		p->frag = LB_FRAG_LATER;
		return LB_CONTINUE;
	}
	if (frag_off & 0x2000)		/* IP_MF */
		p->frag = LB_FRAG_FIRST;
	return lb_parse_l4(ctx, hook, p, data, data_end);
}

struct lb6_ext {
	__u8 nexthdr;
	__u8 hdrlen;
	__u8 b2;	/* routing: type; fragment: offset high bits */
	__u8 b3;	/* routing: segments left; fragment: offset low bits | M */
	__be32 w1;	/* fragment: identification */
};

static __always_inline int lb6_parse(void *ctx, enum lb_hook hook, struct lb_pkt *p,
				     void *data, void *data_end)
{
	struct ipv6hdr ip6;
	struct lb6_ext ext;
	__u32 off = ETH_HLEN + sizeof(struct ipv6hdr);
	__u8 nh;
	int i;

	if (lb_peek(ctx, hook, data, data_end, ETH_HLEN, &ip6, sizeof(ip6)) < 0 || ip6.version != 6)
		return LB_STAT_PASS_MALFORMED;
	p->family = 6;
	p->df = 1;
	__builtin_memcpy(p->saddr.a, &ip6.saddr, 16);
	__builtin_memcpy(p->daddr.a, &ip6.daddr, 16);
	nh = ip6.nexthdr;

#pragma unroll
	for (i = 0; i < LB_MAX_EXT_HDRS; i++) {
		if (nh == IPPROTO_TCP || nh == IPPROTO_UDP)
			break;
		if (nh == IPPROTO_ICMPV6 && p->frag != LB_FRAG_LATER) {
			p->proto = nh;
			p->l4_off = off;
			p->l3_len = off - ETH_HLEN;
			p->icmp_off = off;
			return LB_CONTINUE;
		}
		if (nh != IPPROTO_HOPOPTS && nh != IPPROTO_DSTOPTS && nh != IPPROTO_ROUTING &&
		    nh != IPPROTO_FRAGMENT && nh != IPPROTO_AH)
			return LB_STAT_PASS;	/* ICMPv6, no next header, ESP, ... */
		if (lb_peek(ctx, hook, data, data_end, off, &ext, sizeof(ext)) < 0)
			return LB_STAT_PASS_MALFORMED;
		if (nh == IPPROTO_FRAGMENT) {
			__u16 fo = ((__u16)ext.b2 << 8) | ext.b3;

			p->frag_id = ext.w1;
			if (fo & 0xfff8)
				p->frag = LB_FRAG_LATER;
			else if (fo & 1)
				p->frag = LB_FRAG_FIRST;
			off += 8;
		} else if (nh == IPPROTO_AH) {
			off += ((__u32)ext.hdrlen + 2) * 4;	/* RFC 4302: 4-octet units minus 2 */
		} else {
			/* ext.b2/b3 are the first option's type and length (lb6_dsr_insert). */
			if (nh == IPPROTO_DSTOPTS && hook != LB_HOOK_POD &&
			    ext.b2 == LB_DSR_OPT6_TYPE && ext.hdrlen == 2) {
				struct lb_dsr_opt6 opt;

				if (lb_peek(ctx, hook, data, data_end, off, &opt, sizeof(opt)) == 0 &&
				    opt.opt_len == 18) {
					p->has_dsr = 1;
					p->dsr_port = opt.port;
					__builtin_memcpy(p->dsr_addr.a, opt.addr, 16);
				}
			}
			/*
			 * RFC 8200 4.4: with segments left the address in daddr is only the next
			 * hop, not the final destination, so the tuple must not be translated.
			 */
			if (nh == IPPROTO_ROUTING && ext.b3 != 0)
				return LB_STAT_PASS_ROUTING_HDR;
			off += ((__u32)ext.hdrlen + 1) * 8;
		}
		nh = ext.nexthdr;
	}
	if (nh != IPPROTO_TCP && nh != IPPROTO_UDP)
		return nh == IPPROTO_HOPOPTS || nh == IPPROTO_DSTOPTS || nh == IPPROTO_ROUTING ||
		       nh == IPPROTO_FRAGMENT || nh == IPPROTO_AH ?
			       LB_STAT_PASS_MALFORMED : LB_STAT_PASS;
	p->proto = nh;
	p->l4_off = off;
	p->l3_len = off - ETH_HLEN;
	if (p->frag == LB_FRAG_LATER)
		return LB_CONTINUE;
	return lb_parse_l4(ctx, hook, p, data, data_end);
}

/* Returns LB_CONTINUE for a TCP/UDP packet to consider, else the enum lb_stat to count. */
static __noinline int lb_parse(void *ctx, enum lb_hook hook, struct lb_pkt *p, void *data,
				    void *data_end)
{
	__be16 proto;

	if (lb_peek(ctx, hook, data, data_end, 12, &proto, sizeof(proto)) < 0)
		return LB_STAT_PASS_MALFORMED;
	if (proto == bpf_htons(ETH_P_IP))
		return lb4_parse(ctx, hook, p, data, data_end);
	if (proto == bpf_htons(ETH_P_IPV6))
		return lb6_parse(ctx, hook, p, data, data_end);
	return LB_STAT_PASS;
}

#endif
