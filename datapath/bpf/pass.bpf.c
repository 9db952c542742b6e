// SPDX-License-Identifier: GPL-2.0
// XDP_PASS, nothing else. Labs attach it to the far end of a veth whose near end runs tcphop in
// native mode: veth delivers XDP_TX frames only to a peer that has an XDP program.
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>

SEC("xdp")
int xdp_pass(struct xdp_md *ctx)
{
	return XDP_PASS;
}

char LICENSE[] SEC("license") = "GPL";
