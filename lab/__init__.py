"""The lab: a whole tcphop cluster on one machine, in network namespaces, for the README's demo,
the tests and the benchmarks. It drives the cluster through the SDK and its processes.

    netns.py        namespaces and veths: a flat LAN (NetLab) and the routed lab (RoutedLab:
                    client, router, nodes over subnets)
    netcluster.py   tcphopd nodes on the flat LAN (election and VIP tests, failover bench)
    state.py        what a running lab is (lab.json): light, for clusterctl to find it
    lifecycle.py    lab up / down: embedded etcd, tcphopd (XDP) and services in namespaces
    testservice.py  the HTTP test service (also a HandoffListener application)
    demo.py         `clusterctl lab demo`: traffic through the VIP, handovers, failures
"""
