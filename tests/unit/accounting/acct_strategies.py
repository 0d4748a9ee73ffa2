"""Hypothesis strategies and settings shared by the accounting tests.

Every property test uses `PROPERTY` (bounded examples, no example database, no deadline) so
the accounting tests run the same way on every machine and stay fast.
"""

from __future__ import annotations

from fractions import Fraction

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from hashfarm.accounting import FoundBlock, Share

PROPERTY = settings(
    max_examples=40,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

ACCOUNTS = ("alice", "bob", "carol", "dave", "erin")

# Share difficulties as a pool's vardiff makes them: arbitrary floats over a wide range,
# plus round values (powers of two, integers) that make ties and exact edges likely.
difficulties = st.one_of(
    st.floats(min_value=1e-6, max_value=1e6, allow_nan=False, allow_infinity=False),
    st.sampled_from([0.5, 1.0, 2.0, 3.0, 1024.0, 65536.0]),
)


@st.composite
def share_streams(draw: st.DrawFn, min_size: int = 1, max_size: int = 40) -> list[Share]:
    """Accepted shares in ledger order (ids 0..n-1, time increasing)."""
    n = draw(st.integers(min_size, max_size))
    accounts = draw(st.lists(st.sampled_from(ACCOUNTS), min_size=n, max_size=n))
    diffs = draw(st.lists(difficulties, min_size=n, max_size=n))
    return [
        Share(i, a, d, 1000.0 + i, 100)
        for i, (a, d) in enumerate(zip(accounts, diffs, strict=True))
    ]


@st.composite
def histories(
    draw: st.DrawFn, max_shares: int = 40, max_blocks: int = 5
) -> tuple[list[Share], list[FoundBlock]]:
    """A share stream and blocks found at some of its shares (each by that share's account)."""
    shares = draw(share_streams(min_size=1, max_size=max_shares))
    ids = draw(
        st.lists(st.integers(0, len(shares) - 1), unique=True, max_size=max_blocks).map(sorted)
    )
    blocks = []
    for k, sid in enumerate(ids):
        s = shares[sid]
        reward = draw(st.integers(0, 10**9))
        net = draw(st.sampled_from([1.0, 3.5, 100.0, 12345.678]))
        blocks.append(FoundBlock(f"{k:064x}", 200 + k, reward, s.account, sid, s.time, net))
    return shares, blocks


def exact_share(amount: int, weights: dict[str, Fraction]) -> dict[str, Fraction]:
    """Each key's exact (unrounded) part of `amount`."""
    total = sum(weights.values(), Fraction(0))
    return {k: amount * w / total for k, w in weights.items() if w}
