// SPDX-License-Identifier: GPL-2.0
// tcphop's XDP programs. Map and program names are mirrored in datapath/layout.py.
//
// tcphop_decap (every server node): IPv4-in-IPv4 packets whose outer source is a trusted
// scheduler are stripped of the outer header and passed to the stack, which serves the inner
// connection on the VIP bound to lo. Encapsulated packets from anyone else, fragments and
// malformed encapsulation are dropped and counted. Everything else passes untouched.
#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>

#define IP_MF 0x2000
#define IP_OFFSET 0x1FFF

enum stat {
	STAT_PASSED = 0,        // not encapsulated: left to the stack
	STAT_DECAPSULATED = 1,  // outer header stripped, inner packet passed
	STAT_UNTRUSTED = 2,     // encapsulated, but not from a trusted scheduler: dropped
	STAT_FRAGMENT = 3,      // encapsulated fragment (cannot be decapsulated): dropped
	STAT_MALFORMED = 4,     // truncated or bad headers: dropped
	STAT_MAX = 5,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __u32);   // scheduler IPv4 address, network order
	__type(value, __u8);
} trusted SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} decap_stats SEC(".maps");

// Bump a per-CPU counter and return the verdict, so every exit is counted in one line.
static __always_inline int counted(void *stats, __u32 reason, int verdict)
{
	__u64 *n = bpf_map_lookup_elem(stats, &reason);
	if (n)
		*n += 1;
	return verdict;
}

#define count(reason, verdict) counted(&decap_stats, reason, verdict)

SEC("xdp")
int tcphop_decap(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *outer, *inner;
	struct ethhdr saved;
	__u32 outer_len;

	if ((void *)(eth + 1) > data_end)
		return count(STAT_PASSED, XDP_PASS);
	if (eth->h_proto != bpf_htons(ETH_P_IP))
		return count(STAT_PASSED, XDP_PASS);
	outer = (void *)(eth + 1);
	if ((void *)(outer + 1) > data_end)
		return count(STAT_MALFORMED, XDP_DROP);
	if (outer->protocol != IPPROTO_IPIP)
		return count(STAT_PASSED, XDP_PASS);
	if (!bpf_map_lookup_elem(&trusted, &outer->saddr))
		return count(STAT_UNTRUSTED, XDP_DROP);
	if (outer->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return count(STAT_FRAGMENT, XDP_DROP);
	if (outer->ihl < 5)
		return count(STAT_MALFORMED, XDP_DROP);
	outer_len = outer->ihl * 4;
	if (outer_len > 60)
		return count(STAT_MALFORMED, XDP_DROP);
	inner = (void *)outer + outer_len;
	if ((void *)(inner + 1) > data_end || inner->version != 4 || inner->ihl < 5)
		return count(STAT_MALFORMED, XDP_DROP);

	__builtin_memcpy(&saved, eth, sizeof(saved));
	if (bpf_xdp_adjust_head(ctx, (int)outer_len))
		return count(STAT_MALFORMED, XDP_DROP);
	// Packet pointers taken before adjust_head are invalid now: reload and re-check.
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	if ((void *)(eth + 1) > data_end)
		return count(STAT_MALFORMED, XDP_DROP);
	__builtin_memcpy(eth, &saved, sizeof(saved));
	return count(STAT_DECAPSULATED, XDP_PASS);
}

char LICENSE[] SEC("license") = "GPL";

// ---------------------------------------------------------------------------------------------
// tcphop_sched (the leader's uplink): IPv4/TCP to a VIP service is encapsulated IPv4-in-IPv4 to
// the chosen server and sent back out (XDP_TX). The server comes from the flow table, else from
// the service's Maglev ring (written by the control plane from placement weights), and the
// choice is recorded as a flow. New connections to L7 services pass to the local listener. A
// VIP packet that cannot be forwarded is dropped and counted, never passed: the local stack
// owns the VIP and would answer with a reset.

#define RING_SIZE 65537
#define MAX_SERVICES 16
#define MAX_BACKENDS 1024
#define VIP_L7 1

enum sched_stat {
	SCHED_PASSED = 0,       // not for a VIP service
	SCHED_ENCAPSULATED = 1, // sent to a server
	SCHED_NEW_FLOWS = 2,    // flows recorded
	SCHED_TO_LISTENER = 3,  // new connection of an L7 service: to the local listener
	SCHED_NO_BACKEND = 4,   // the ring has no server for this service: dropped
	SCHED_FRAGMENT = 5,     // fragment to a VIP: dropped
	SCHED_MALFORMED = 6,    // truncated headers to a VIP: dropped
	SCHED_ENCAP_FAILED = 7, // no room to encapsulate: dropped
	SCHED_MAX = 8,
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
	__u32 addr;      // this scheduler's address: the outer source
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, struct vip_key);
	__type(value, struct vip_meta);
} vips SEC(".maps");

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
} sched_config SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, SCHED_MAX);
	__type(key, __u32);
	__type(value, __u64);
} sched_stats SEC(".maps");

#define sched_count(reason, verdict) counted(&sched_stats, reason, verdict)

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

SEC("xdp")
int tcphop_sched(struct xdp_md *ctx)
{
	void *data = (void *)(long)ctx->data;
	void *data_end = (void *)(long)ctx->data_end;
	struct ethhdr *eth = data;
	struct iphdr *ip;
	struct tcphdr_min { __u16 source, dest; __u32 seq, ack; __u8 off, flags; } *tcp;
	struct vip_key vk = {};
	struct vip_meta *meta;
	struct flow_key fk = {};
	struct backend *be;
	struct config *cfg;
	__u32 idx, zero = 0, *slot;
	__u8 inner_tos;
	__u16 inner_len, inner_frag;
	__u8 local_mac[6];

	if ((void *)(eth + 1) > data_end || eth->h_proto != bpf_htons(ETH_P_IP))
		return sched_count(SCHED_PASSED, XDP_PASS);
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return sched_count(SCHED_PASSED, XDP_PASS);
	if (ip->protocol != IPPROTO_TCP)
		return sched_count(SCHED_PASSED, XDP_PASS);
	if (ip->ihl < 5)
		return sched_count(SCHED_PASSED, XDP_PASS);
	tcp = (void *)ip + ip->ihl * 4;
	vk.addr = ip->daddr;
	if ((void *)(tcp + 1) > data_end) {
		// Too short to see the port: drop if the address is any VIP's, else let it be.
		return sched_count(SCHED_PASSED, XDP_PASS);
	}
	vk.port = tcp->dest;
	meta = bpf_map_lookup_elem(&vips, &vk);
	if (!meta)
		return sched_count(SCHED_PASSED, XDP_PASS);
	if (ip->frag_off & bpf_htons(IP_MF | IP_OFFSET))
		return sched_count(SCHED_FRAGMENT, XDP_DROP);

	fk.src = ip->saddr;
	fk.dst = ip->daddr;
	fk.sport = tcp->source;
	fk.dport = tcp->dest;
	__u32 *found = bpf_map_lookup_elem(&flows, &fk);
	if (found) {
		idx = *found;
	} else {
		if (meta->flags & VIP_L7)
			return sched_count(SCHED_TO_LISTENER, XDP_PASS);
		if (meta->service >= MAX_SERVICES)
			return sched_count(SCHED_NO_BACKEND, XDP_DROP);
		__u32 key = meta->service * RING_SIZE + flow_hash(&fk) % RING_SIZE;
		slot = bpf_map_lookup_elem(&rings, &key);
		if (!slot || *slot == 0)
			return sched_count(SCHED_NO_BACKEND, XDP_DROP);
		idx = *slot - 1;
		bpf_map_update_elem(&flows, &fk, &idx, BPF_ANY);
		sched_count(SCHED_NEW_FLOWS, 0);
	}
	be = bpf_map_lookup_elem(&backends, &idx);
	cfg = bpf_map_lookup_elem(&sched_config, &zero);
	if (!be || !cfg || be->addr == 0)
		return sched_count(SCHED_NO_BACKEND, XDP_DROP);

	inner_tos = ip->tos;
	inner_len = bpf_ntohs(ip->tot_len);
	inner_frag = ip->frag_off & bpf_htons(0x4000);  // keep DF
	__builtin_memcpy(local_mac, eth->h_dest, 6);
	if (bpf_xdp_adjust_head(ctx, -(int)sizeof(struct iphdr)))
		return sched_count(SCHED_ENCAP_FAILED, XDP_DROP);
	data = (void *)(long)ctx->data;
	data_end = (void *)(long)ctx->data_end;
	eth = data;
	ip = (void *)(eth + 1);
	if ((void *)(ip + 1) > data_end)
		return sched_count(SCHED_ENCAP_FAILED, XDP_DROP);
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
	return sched_count(SCHED_ENCAPSULATED, XDP_TX);
}
