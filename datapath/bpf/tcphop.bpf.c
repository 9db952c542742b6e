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

static __always_inline int count(__u32 reason, int verdict)
{
	__u64 *n = bpf_map_lookup_elem(&decap_stats, &reason);
	if (n)
		*n += 1;
	return verdict;
}

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
