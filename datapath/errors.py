"""Errors of the data plane.

    DatapathError
    └── InterfaceNotFound   a named interface does not exist (in this network namespace)

pyroute2's NetlinkError and OSError from sockets and ioctls are translated here.
"""

from __future__ import annotations


class DatapathError(Exception):
    """Base of every data-plane error."""


class InterfaceNotFound(DatapathError):
    pass
