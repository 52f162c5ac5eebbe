// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * sluice datapath: the entry programs. Logic lives in lib/<subsystem>.h; this file only wires
 * the steps together and owns each program's single exit, which counts the verdict.
 */
#include "lib/common.h"
#include "lib/maps.bpf.h"
#include "lib/parse.h"
#include "lib/nat.h"
#include "lib/conntrack.h"
#include "lib/lb.h"
#include "lib/reject.h"

char LICENSE[] SEC("license") = "Dual BSD/GPL";

static __always_inline void lb_count(__u32 stat, __u32 len, __u32 svc_id)
{
	struct lb_svc_stat_value *s;
	struct lb_stat_value *v;

	v = bpf_map_lookup_elem(&lb_stats_v3, &stat);
	if (v) {
		v->packets++;
		v->bytes += len;
	}
	if (!svc_id)
		return;
	s = bpf_map_lookup_elem(&lb_svc_stats_v1, &svc_id);
	if (!s)
		return;
	switch (stat) {
	case LB_STAT_FWD_NEW:
		s->new_flows++;
		/* fall through */
	case LB_STAT_FWD_ESTABLISHED:
		s->fwd_packets++;
		s->fwd_bytes += len;
		break;
	case LB_STAT_REPLY:
		s->reply_packets++;
		s->reply_bytes += len;
		break;
	case LB_STAT_REJECT:
		s->rejected++;
		break;
	}
}

/* A FORWARD hit that must pick again: the flow ended, or its backend is gone. */
static __always_inline bool lb_ct_renew(const struct lb_pkt *p, const struct lb_tuple *t,
					const struct lb_ct_state *st, const struct lb_ct_nat *nat,
					__u64 now)
{
	bool syn = p->proto == IPPROTO_TCP &&
		   (p->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) == LB_TCP_SYN;
	struct lb_backend_info b = {};

	if (!lb_ct_alive(t, st, nat, now))
		return true;
	/* A new SYN on a closed tuple is a new connection (port reuse), not a retransmit. */
	if (syn && (st->flags & (LB_CT_F_RST | LB_CT_F_FIN_FWD | LB_CT_F_FIN_REPLY)))
		return true;
	/*
	 * UDP has no end, so a removed backend would blackhole the flow forever (kube-proxy
	 * deletes such UDP conntrack entries); TCP keeps its backend to drain gracefully.
	 */
	if ((p->proto == IPPROTO_UDP || syn) &&
	    !lb_backend_get(p->family, st->backend_id, st->svc_id, &b))
		return true;
	return false;
}

/*
 * A client talking directly to a pod (not to a service) from a port that an earlier service
 * flow to the same pod used: that flow's REPLY entry would turn the pod's answers into ones from
 * the VIP and the client's socket would drop them. A bare TCP SYN, or any UDP datagram, from
 * client:port straight to backend:port proves the old flow is over, so both its entries go.
 * Costs one lookup per TCP SYN and per UDP datagram that is not for a service.
 */
static __always_inline void lb_ct_forget_reply(const struct lb_pkt *p, const struct lb_tuple *t)
{
	struct lb_tuple rev = { .s = t->d, .d = t->s, .sport = t->dport, .dport = t->sport,
				.proto = t->proto, .family = t->family };
	struct lb_ct_state *st;
	struct lb_ct_nat nat;
	struct lb_tuple fwd;

	if (p->proto == IPPROTO_TCP && (p->tcp_flags & (LB_TCP_SYN | LB_TCP_ACK)) != LB_TCP_SYN)
		return;
	st = lb_ct_lookup(&rev, &nat);
	if (!st || st->dir != LB_CT_REPLY)
		return;
	lb_ct_peer(&fwd, &rev, st, &nat);
	lb_ct_delete(&fwd);
	lb_ct_delete(&rev);
}

static __always_inline int lb_new_flow(struct __sk_buff *skb, struct lb_pkt *p,
				       const struct lb_tuple *t, bool replace, __u64 now,
				       __u32 *svc_id)
{
	struct lb_backend_info b = {};
	struct lb_ct_state st = {};
	struct lb_ct_nat nat = {};
	struct lb_tuple rt;
	struct lb_svc_value *svc;
	bool hairpin;

	svc = lb_svc_lookup(p, 0);
	if (!svc) {
		lb_ct_forget_reply(p, t);
		return LB_STAT_PASS;
	}
	*svc_id = svc->svc_id;
	if (p->frag == LB_FRAG_LATER)
		return LB_STAT_PASS_FRAG_UNKNOWN;
	if (lb_udp6_zero_csum(p))
		return LB_STAT_DROP_UDP6_ZERO_CSUM;
	if (svc->count == 0) {
		/*
		 * Endpoints exist, none that this frontend's traffic policy may use: kube-proxy
		 * drops silently. Neither verdict leaves conntrack state, so the first packet after
		 * endpoints appear picks a backend (no stale "no endpoint" flow, kubernetes#48370).
		 */
		if (svc->flags & LB_SVC_F_DROP_EMPTY)
			return LB_STAT_DROP_NO_LOCAL_ENDPOINT;
		return lb_reject(skb, p) < 0 ? LB_STAT_DROP_ICMP_FAILED : LB_STAT_REJECT;
	}
	if (!lb_select_backend(p, svc, now, &b))
		return LB_STAT_DROP_NO_BACKEND;

	/* Pod to its own service, answered by itself: without SNAT it would drop its own reply. */
	hairpin = lb_addr_eq(&b.addr, &p->saddr);

	st.dir = LB_CT_FORWARD;
	st.flags = hairpin ? LB_CT_F_SNAT : 0;
	st.nat_port = b.port;
	st.backend_id = b.id;
	st.svc_id = svc->svc_id;
	st.created_ns = now;
	st.last_seen_ns = now;
	nat.addr = b.addr;
	if (hairpin)
		nat.hairpin = p->daddr;
	/*
	 * BPF_NOEXIST: two CPUs may race on a flow's first packets (a resolver's parallel A/AAAA
	 * queries share a socket); the loser adopts the winner's backend.
	 */
	if (lb_ct_write(t, &st, &nat, replace ? BPF_ANY : BPF_NOEXIST) < 0) {
		struct lb_ct_state *won = lb_ct_lookup(t, &nat);

		if (!won || won->dir != LB_CT_FORWARD)
			return LB_STAT_DROP_CT_INSERT;
		st = *won;
		b.addr = nat.addr;
		b.port = won->nat_port;
		hairpin = won->flags & LB_CT_F_SNAT;
	} else {
		lb_ct_peer(&rt, t, &st, &nat);
		st.dir = LB_CT_REPLY;
		st.nat_port = p->dport;
		nat.addr = p->daddr;
		nat.hairpin = p->saddr;
		if (lb_ct_write(&rt, &st, &nat, BPF_ANY) < 0) {
			lb_ct_delete(t);
			return LB_STAT_DROP_CT_INSERT;
		}
		if (hairpin)
			nat.hairpin = p->daddr;
	}
	if (p->frag == LB_FRAG_FIRST)
		lb_frag_remember(p);
	if (lb_xlate_fwd(skb, p, &b.addr, b.port, hairpin, &p->daddr) < 0)
		return LB_STAT_DROP_REWRITE;
	return LB_STAT_FWD_NEW;
}

/* A packet of a known flow, either way: translate it as its conntrack entry says. */
static __always_inline int lb_ct_xlate(struct __sk_buff *skb, const struct lb_pkt *p,
				       const struct lb_tuple *t, struct lb_ct_state *st,
				       const struct lb_ct_nat *nat, __u64 now, __u32 *svc_id)
{
	bool hairpin = st->flags & LB_CT_F_SNAT;
	int err;

	*svc_id = st->svc_id;
	if (lb_udp6_zero_csum(p))
		return LB_STAT_DROP_UDP6_ZERO_CSUM;
	lb_ct_touch(t, p, st, nat, now);
	if (p->frag == LB_FRAG_FIRST)
		lb_frag_remember(p);
	if (st->dir == LB_CT_REPLY)
		err = lb_xlate_reply(skb, p, &nat->addr, st->nat_port, hairpin, &nat->hairpin);
	else
		err = lb_xlate_fwd(skb, p, &nat->addr, st->nat_port, hairpin, &nat->hairpin);
	if (err < 0)
		return LB_STAT_DROP_REWRITE;
	return st->dir == LB_CT_REPLY ? LB_STAT_REPLY : LB_STAT_FWD_ESTABLISHED;
}

static __always_inline int lb_handle(struct __sk_buff *skb, struct lb_pkt *p, __u32 *svc_id)
{
	struct lb_ct_nat nat = {};
	struct lb_ct_state *st;
	struct lb_tuple t;
	bool replace = false;
	__u64 now;

	if (p->frag == LB_FRAG_LATER && !lb_frag_recall(p))
		return LB_STAT_PASS_FRAG_UNKNOWN;
	lb_tuple_of(&t, p);
	now = bpf_ktime_get_ns();

	st = lb_ct_lookup(&t, &nat);
	if (st && st->dir == LB_CT_FORWARD && lb_ct_renew(p, &t, st, &nat, now)) {
		struct lb_tuple old_reply;

		/* The old backend's reply entry would rewrite unrelated traffic later. */
		lb_ct_peer(&old_reply, &t, st, &nat);
		lb_ct_delete(&old_reply);
		replace = true;
	} else if (st && (st->dir == LB_CT_FORWARD || lb_ct_alive(&t, st, &nat, now))) {
		return lb_ct_xlate(skb, p, &t, st, &nat, now, svc_id);
	} else if (st) {
		replace = true;	/* an expired REPLY entry holds the tuple: overwrite it */
	}
	return lb_new_flow(skb, p, &t, replace, now, svc_id);
}

SEC("tc")
int lb_pod_ingress(struct __sk_buff *skb)
{
	struct lb_pkt p = {};
	__u32 svc_id = 0;
	int stat, ret;

	stat = lb_parse(skb, &p);
	if (stat == LB_CONTINUE)
		stat = lb_handle(skb, &p, &svc_id);

	if (stat == LB_STAT_REJECT)
		ret = bpf_redirect(skb->ifindex, 0);	/* back out to the client's veth */
	else if (stat >= LB_STAT_DROP_FIRST)
		ret = TC_ACT_SHOT;
	else
		ret = TC_ACT_OK;
	lb_count(stat, skb->len, svc_id);
	return ret;
}
