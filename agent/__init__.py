"""The node agent: samples load, runs service health checks, reports to the leader.

Runs inside every tcphopd. Imports `cluster` (store, SDK types) and `datapath`; nothing imports it
except the daemon.
"""
