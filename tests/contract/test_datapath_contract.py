"""One Datapath contract: FakeDatapath here; XdpDatapath, the same cases on a real veth in a
namespace, in tests/netns/test_datapath.py."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from datapath.fake import FakeDatapath
from datapath.protocol import Datapath
from tests.contract.datapath_cases import CASES


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.__name__)
async def test_the_fake_keeps_the_contract(
    case: Callable[[Datapath, str], Awaitable[None]],
) -> None:
    dp = FakeDatapath("10.149.7.2")
    await dp.start()
    await case(dp, "10.149.7.2")
