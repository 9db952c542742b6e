// SPDX-License-Identifier: GPL-2.0
// tcphop's XDP program, attached to the uplink of every node. Map names and the counter enum
// are mirrored in datapath/layout.py.
//
// Receiver side (every node): IPv4-in-IPv4 packets whose outer source is a trusted scheduler,
// whose outer destination is this node and whose inner destination is a VIP it serves (Katran's
// decap check) are stripped of the outer header and passed to the stack, which serves the inner
// connection on the VIP bound to lo. Encapsulated packets from anyone else or for anything else,
// fragments and malformed encapsulation are dropped and counted. A new SYN of an L7 service
// (`handed`) that finds no socket here for its 4-tuple belongs to a flow the scheduler still
// pins to this node although the handed-off connection is gone (reset from this side: the
// client sent nothing the scheduler saw), and this stack would refuse it: it goes back to the
// scheduler that sent it (outer addresses swapped, XDP_TX, once: BOUNCE_ID), which forgets that
// flow and passes the SYN to its listener. A SYN that finds a live connection here goes to the
// stack, which answers it with a challenge ACK: a forged SYN cannot end a handed-off connection.
//
// Scheduler side (the leader fills `vips`; on other nodes it is empty and everything else
// passes): IPv4/TCP to a VIP service is encapsulated IPv4-in-IPv4 to the chosen server and sent
// back out (XDP_TX), or passed to the local stack when the chosen server is this node. The
// server comes from the flow table, else from the service's Maglev ring (written by the control
// plane from placement weights), and the choice is recorded as a flow. New connections to L7
// services pass to the local listener. A VIP packet that cannot be forwarded is dropped and
// counted, never passed: the local stack would answer with a reset. A deposed leader's tables
// are fenced (VIP_FENCED): known flows are still forwarded, new connections are dropped (for
// L7 VIPs only new SYNs: other packets go to the connections its listener had accepted).
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF
#define RING_SIZE 65537
#define MAX_SERVICES 16
#define MAX_BACKENDS 1024
#define VIP_L7 1
#define VIP_FENCED 2  // this node no longer leads: forward known flows, place nothing new
#define TCP_FIN 0x01
#define TCP_SYN 0x02
#define TCP_RST 0x04
#define TCP_ACK 0x10
// Flow values: the backend index, and this bit once the client sent FIN or RST on the flow.
// Only then may a new SYN with the same 4-tuple replace the flow (port reuse: a fresh choice,
// so a draining server gets no new connection); a SYN on a live flow goes to its server, which
// answers it with a challenge ACK (RFC 5961), so a forged SYN cannot move a connection.
#define FLOW_CLOSING 0x80000000u
#define FLOW_INDEX 0x7FFFFFFFu
#define BOUNCE_ID 0x7468  // the outer IP id of an encapsulated packet a node sent back ("th")

enum stat {
	STAT_PASSED = 0,          // neither encapsulated nor for a VIP service: left to the stack
	STAT_DECAPSULATED = 1,    // outer header stripped, inner packet passed
	STAT_UNTRUSTED = 2,       // encapsulated, but not from a trusted scheduler: dropped
	STAT_DECAP_FRAGMENT = 3,  // encapsulated fragment (cannot be decapsulated): dropped
	STAT_DECAP_MALFORMED = 4, // truncated or bad encapsulation: dropped
	STAT_ENCAPSULATED = 5,    // sent to a server
	STAT_NEW_FLOWS = 6,       // flows recorded
	STAT_TO_LISTENER = 7,     // new connection of an L7 service: to the local listener
	STAT_NO_BACKEND = 8,      // the ring has no server for this service: dropped
	STAT_VIP_FRAGMENT = 9,    // fragment to a VIP: dropped
	STAT_ENCAP_FAILED = 10,   // no room to encapsulate: dropped
	STAT_LOCAL = 11,          // this node is the chosen server: passed to its own stack
	STAT_VIP_REPLY = 12,      // from a VIP service: a reply came through the scheduler (should
	                          // stay 0: servers answer clients directly)
	STAT_DECAP_NOT_MINE = 13, // encapsulated for another node or a VIP this node does not serve
	STAT_FENCED = 14,         // a new connection reached a deposed leader's tables: dropped
	STAT_BOUNCED = 15,        // an L7 SYN no socket here takes: back to the scheduler
	STAT_STALE_FLOW = 16,     // a SYN its flow's server sent back: the flow is forgotten
	STAT_MAX = 17,
};

struct vip_key {
	__u32 addr;  // network order
	__u16 port;  // network order
	__u16 pad;
};

struct vip_meta {
	__u32 service;  // index of the service's ring
	__u32 flags;
};

struct flow_key {
	__u32 src;
	__u32 dst;
	__u16 sport;
	__u16 dport;
};

struct backend {
	__u32 addr;      // server address, network order
	__u8 mac[6];     // next hop towards it (the server, or the router across subnets)
	__u8 pad[2];
};

struct config {
	__u32 addr;      // this node's address: the outer source, and "the chosen server is me"
};

struct placed_key {
	__u32 vip;       // network order
	__u16 port;      // network order
	__u16 pad;
	__u32 server;    // the chosen server's address, network order
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);   // scheduler IPv4 address, network order
	__type(value, __u8);
} trusted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);   // a VIP this node serves (bound on lo), network order
	__type(value, __u8);
} served SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} vips SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct vip_key);  // an L7 service's VIP:port (every node: handoffs arrive here)
	__type(value, __u8);
} handed SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, RING_SIZE * MAX_SERVICES);
	__type(key, __u32);
	__type(value, __u32);  // backend index + 1; 0: no backend
} rings SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, MAX_BACKENDS);
	__type(key, __u32);
	__type(value, struct backend);
} backends SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 1 << 20);
	__type(key, struct flow_key);
	__type(value, __u32);  // backend index
} flows SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct config);
} config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_HASH);
	__uint(max_entries, MAX_SERVICES * MAX_BACKENDS);
	__type(key, struct placed_key);
	__type(value, __u64);  // new connections placed on this server for this VIP:port
} placed SEC(".maps");

struct tcphdr_min {
	__u16 source, dest;
	__u32 seq, ack;
	__u8 off, flags;
};

// A new connection's first packet: SYN without ACK.
static __always_inline int new_syn(const struct tcphdr_min *tcp)
{
	return (tcp->flags & (TCP_SYN | TCP_ACK)) == TCP_SYN;
}

// The flow key of a client's packet to a VIP.
static __always_inline struct flow_key flow_of(const struct iphdr *ip, const struct tcphdr_min *tcp)
{
	struct flow_key fk = {
	    .src = ip->saddr, .dst = ip->daddr, .sport = tcp->source, .dport = tcp->dest};
	return fk;
}

// Bump a per-CPU counter and return the verdict, so every exit is counted in one line.
static __always_inline int count(__u32 reason, int verdict)
{
	__u64 *n = bpf_map_lookup_elem(&stats, &reason);
	if (n)
		*n += 1;
	return verdict;
}

// Count a new connection placed on `server` for a VIP:port (per CPU; a full map counts no more).
static __always_inline void count_placed(__u32 vip, __u16 port, __u32 server)
{
	struct placed_key k = {.vip = vip, .port = port, .pad = 0, .server = server};
	__u64 one = 1, *n = bpf_map_lookup_elem(&placed, &k);

	if (n)
		*n += 1;
	else
		bpf_map_update_elem(&placed, &k, &one, BPF_NOEXIST);
}

// The flow hash: the same 4-tuple always lands in the same ring slot (Python only fills rings).
static __always_inline __u32 flow_hash(const struct flow_key *k)
{
	__u32 h = k->src * 0x9E3779B1u;
	h ^= k->dst + 0x7F4A7C15u + (h << 6) + (h >> 2);
	h ^= ((__u32)k->sport << 16 | k->dport) + 0x85EBCA6Bu + (h << 6) + (h >> 2);
	h ^= h >> 16;
	h *= 0x85EBCA6Bu;
	h ^= h >> 13;
	return h;
}

static __always_inline __u16 csum_fold(__u32 sum)
{
	sum = (sum & 0xFFFF) + (sum >> 16);
	sum = (sum & 0xFFFF) + (sum >> 16);
	return (__u16)~sum;
}

// Whether to send back a new SYN (no ACK) of an L7 service that came encapsulated from
// `outer->saddr`: on a node, when no socket here (connection, time-wait or listener) takes it
// and it was not sent back already. On the scheduler never; there, a SYN a node sent back
// (BOUNCE_ID) makes it forget the flow when the flow names that node.
static __always_inline int l7_syn_to_send_back(struct xdp_md *ctx, struct iphdr *outer,
					       struct iphdr *inner)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct tcphdr_min *tcp;
	struct bpf_sock_tuple tuple = {};
	struct bpf_sock *sk;
	struct vip_key vk = {};
	struct vip_meta *meta;
	int bounced;

	if (inner->protocol != IPPROTO_TCP || inner->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return 0;
	tcp = (void *)inner + inner->ihl * 4;
	if ((void *)(tcp + 1) > data_end || !new_syn(tcp))
		return 0;
	vk.addr = inner->daddr;
	vk.port = tcp->dest;
	if (!bpf_map_lookup_elem(&handed, &vk))
		return 0;
	bounced = outer->id == bpf_htons(BOUNCE_ID);
	meta = bpf_map_lookup_elem(&vips, &vk);
	if (meta && (meta->flags & VIP_L7) && !(meta->flags & VIP_FENCED)) {  // the scheduler
		if (!bounced)
			return 0;
		struct flow_key fk = flow_of(inner, tcp);
		__u32 *found = bpf_map_lookup_elem(&flows, &fk);
		if (found) {
			__u32 idx = *found & FLOW_INDEX;
			struct backend *be = bpf_map_lookup_elem(&backends, &idx);
			if (be && be->addr == outer->saddr) {
				bpf_map_delete_elem(&flows, &fk);
				count(STAT_STALE_FLOW, 0);
			}
		}
		return 0;
	}
	if (bounced)
		return 0;
	tuple.ipv4.saddr = inner->saddr;
	tuple.ipv4.daddr = inner->daddr;
	tuple.ipv4.sport = tcp->source;
	tuple.ipv4.dport = tcp->dest;
	sk = (struct bpf_sock *)bpf_skc_lookup_tcp(ctx, &tuple, sizeof(tuple.ipv4),
						    BPF_F_CURRENT_NETNS, 0);
	if (sk) {
		bpf_sk_release(sk);
		return 0;
	}
	return 1;
}

// Send an encapsulated packet back where it came from: outer addresses and MACs swapped (the
// header checksum does not change when its words only swap places), and its id set to BOUNCE_ID
// (checksum updated, RFC 1624), which no node sends back again: two nodes that both hold no
// socket for it (a leader change meanwhile) cannot play it back and forth.
static __always_inline int bounce(struct ethhdr *eth, struct iphdr *outer)
{
	__u8 mac[6];
	__u32 addr = outer->saddr;
	__u32 sum = (__u16)~outer->check + (__u16)~outer->id + bpf_htons(BOUNCE_ID);

	outer->check = csum_fold(sum);
	outer->id = bpf_htons(BOUNCE_ID);
	outer->saddr = outer->daddr;
	outer->daddr = addr;
	__builtin_memcpy(mac, eth->h_source, 6);
	__builtin_memcpy(eth->h_source, eth->h_dest, 6);
	__builtin_memcpy(eth->h_dest, mac, 6);
	return count(STAT_BOUNCED, XDP_TX);
}

// Receiver side: `outer` is an IPv4-in-IPv4 header inside the packet's bounds.
static __always_inline int decapsulate(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *outer)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct iphdr *inner;
	struct ethhdr saved;
	struct config *cfg;
	__u32 outer_len, zero = 0;

	if (!bpf_map_lookup_elem(&trusted, &outer->saddr))
		return count(STAT_UNTRUSTED, XDP_DROP);
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!cfg || outer->daddr != cfg->addr)
		return count(STAT_DECAP_NOT_MINE, XDP_DROP);
	if (outer->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return count(STAT_DECAP_FRAGMENT, XDP_DROP);
	if (outer->ihl < 5)
		return count(STAT_DECAP_MALFORMED, XDP_DROP);
	outer_len = outer->ihl * 4;
	if (outer_len > 60)
		return count(STAT_DECAP_MALFORMED, XDP_DROP);
	inner = (void *)outer + outer_len;
	if ((void *)(inner + 1) > data_end || inner->version != 4 || inner->ihl < 5)
		return count(STAT_DECAP_MALFORMED, XDP_DROP);
	if (!bpf_map_lookup_elem(&served, &inner->daddr))
		return count(STAT_DECAP_NOT_MINE, XDP_DROP);
	if (l7_syn_to_send_back(ctx, outer, inner))
		return bounce(eth, outer);

	__builtin_memcpy(&saved, eth, sizeof(saved));
	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return count(STAT_DECAP_MALFORMED, XDP_DROP);
	// Packet pointers taken before adjust_head are invalid now: reload and re-check.
	eth = (void *)(long)ctx->data;
	if ((void *)(eth + 1) > (void *)(long)ctx->data_end)
		return count(STAT_DECAP_MALFORMED, XDP_DROP);
	__builtin_memcpy(eth, &saved, sizeof(saved));
	return count(STAT_DECAPSULATED, XDP_PASS);
}

// Scheduler side: `ip` is an IPv4 header inside the packet's bounds.
static __always_inline int schedule(struct xdp_md *ctx, struct ethhdr *eth, struct iphdr *ip)
{
	void *data_end = (void *)(long)ctx->data_end;
	struct tcphdr_min *tcp;
	struct vip_key vk = {};
	struct vip_meta *meta;
	struct flow_key fk = {};
	struct backend *be;
	struct config *cfg;
	__u32 idx, zero = 0, *slot;
	__u8 inner_tos;
	__u16 inner_len, inner_frag;
	__u8 local_mac[6];

	if (ip->protocol != IPPROTO_TCP || ip->ihl < 5)
		return count(STAT_PASSED, XDP_PASS);
	tcp = (void *)ip + ip->ihl * 4;
	if ((void *)(tcp + 1) > data_end)
		return count(STAT_PASSED, XDP_PASS);
	vk.addr = ip->daddr;
	vk.port = tcp->dest;
	meta = bpf_map_lookup_elem(&vips, &vk);
	if (!meta) {
		vk.addr = ip->saddr;
		vk.port = tcp->source;
		if (bpf_map_lookup_elem(&vips, &vk))
			return count(STAT_VIP_REPLY, XDP_PASS);
		return count(STAT_PASSED, XDP_PASS);
	}
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return count(STAT_VIP_FRAGMENT, XDP_DROP);

	fk = flow_of(ip, tcp);
	__u32 *found = bpf_map_lookup_elem(&flows, &fk);
	if (found && new_syn(tcp) && (*found & FLOW_CLOSING)) {
		// A new connection from a client port an earlier one used, after the client closed
		// that one: the old flow is stale. L4: choose again; L7: the listener sees the SYN.
		bpf_map_delete_elem(&flows, &fk);
		found = 0;
	}
	if (found) {
		if ((tcp->flags & (TCP_FIN | TCP_RST)) && !(*found & FLOW_CLOSING))
			*found |= FLOW_CLOSING;
		idx = *found & FLOW_INDEX;
	} else {
		// Fenced L7: only a new SYN is dropped; the rest belongs to connections this node's
		// listener accepted while leading, which it still serves (cluster/l7/handoff.py).
		if ((meta->flags & VIP_FENCED) &&
		    (!(meta->flags & VIP_L7) || new_syn(tcp)))
			return count(STAT_FENCED, XDP_DROP);
		if (meta->flags & VIP_L7)
			return count(STAT_TO_LISTENER, XDP_PASS);
		if (meta->service >= MAX_SERVICES)
			return count(STAT_NO_BACKEND, XDP_DROP);
		__u32 key = meta->service * RING_SIZE + flow_hash(&fk) % RING_SIZE;
		slot = bpf_map_lookup_elem(&rings, &key);
		if (!slot || *slot == 0)
			return count(STAT_NO_BACKEND, XDP_DROP);
		idx = *slot - 1;
		bpf_map_update_elem(&flows, &fk, &idx, BPF_ANY);
		count(STAT_NEW_FLOWS, 0);
	}
	be = bpf_map_lookup_elem(&backends, &idx);
	cfg = bpf_map_lookup_elem(&config, &zero);
	if (!be || !cfg || be->addr == 0)
		return count(STAT_NO_BACKEND, XDP_DROP);
	if (!found)
		count_placed(fk.dst, fk.dport, be->addr);
	if (be->addr == cfg->addr)
		return count(STAT_LOCAL, XDP_PASS);

	inner_tos = ip->tos;
	inner_len = bpf_ntohs(ip->tot_len);
	inner_frag = ip->frag_off & bpf_htons(0x4000);  // keep DF
	__builtin_memcpy(local_mac, eth->h_dest, 6);
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return count(STAT_ENCAP_FAILED, XDP_DROP);
	eth = (void *)(long)ctx->data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > (void *)(long)ctx->data_end)
		return count(STAT_ENCAP_FAILED, XDP_DROP);
	__builtin_memcpy(eth->h_dest, be->mac, 6);
	__builtin_memcpy(eth->h_source, local_mac, 6);
	eth->h_proto = bpf_htons(ETH_P_IP);
	ip->version = 4;
	ip->ihl = 5;
	ip->tos = inner_tos;
	ip->tot_len = bpf_htons(inner_len + sizeof(struct iphdr));
	ip->id = 0;
	ip->frag_off = inner_frag;
	ip->ttl = 64;
	ip->protocol = IPPROTO_IPIP;
	ip->check = 0;
	ip->saddr = cfg->addr;
	ip->daddr = be->addr;
	__u32 sum = 0;
	__u16 *words = (__u16 *)ip;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += words[i];
	ip->check = csum_fold(sum);
	return count(STAT_ENCAPSULATED, XDP_TX);
}

SEC("xdp")
int tcphop_xdp(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return count(STAT_PASSED, XDP_PASS);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return count(STAT_PASSED, XDP_PASS);
	if (ip->protocol == IPPROTO_IPIP)
		return decapsulate(ctx, eth, ip);
	return schedule(ctx, eth, ip);
}

char LICENSE[] SEC("license") = "GPL";
