"""tcphop's data plane: everything that touches the kernel's network stack.

A leaf library: it imports nothing from `cluster`, `agent` or `cli`.
"""
