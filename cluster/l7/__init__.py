"""The L7 handoff (delayed binding): the leader reads a request head, picks a server by the
service's rules, and moves the established TCP connection there with TCP_REPAIR.

    request.py  the strict, bounded HTTP/1.x request-head parser and rule matching (pure;
                patterns are RE2, cluster/pattern.py)
    handoff.py  the scheduler side: VIP listeners, placement, freeze/snapshot, commit
    channel.py  the node-to-node handoff channel: framed messages on one TCP connection per pair
    adopt.py    the receiving side: restore the socket, wait for the commit, deliver it

Words used everywhere: the *packet hop* is the XDP encapsulation (datapath/); the *L7 handoff*
is this package; the *handoff channel* carries its messages; the *Datapath* RPC service answers
questions about a node's datapath; a *handover* is a planned change of leader (election).
"""
