"""Exponential backoff with full jitter, for reconnecting and retrying.

Each delay is a random value in ``[0, min(cap, base * factor**attempt)]`` ("full jitter"):
many devices that lost the same server do not come back in lock step.

Example::

    >>> import random
    >>> b = Backoff(base=1.0, cap=30.0, rng=random.Random(7))
    >>> [round(b.next_delay(), 2) for _ in range(4)]  # doctest: +SKIP
    [0.32, 0.3, 3.05, 2.6]
    >>> b.reset()  # after a connection that worked
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Delays for successive failed attempts; :meth:`reset` after a success.

    ``base`` is the ceiling of the first delay, ``factor`` how fast the ceiling grows,
    ``cap`` the largest ceiling, ``floor`` the smallest delay ever returned (so a tight
    loop never spins).
    """

    base: float = 0.5
    cap: float = 30.0
    factor: float = 2.0
    floor: float = 0.05
    rng: random.Random = field(default_factory=random.Random)
    attempt: int = 0

    def __post_init__(self) -> None:
        if self.base <= 0 or self.cap < self.base or self.factor < 1 or self.floor < 0:
            raise ValueError("need 0 < base <= cap, factor >= 1 and floor >= 0")

    def ceiling(self, attempt: int) -> float:
        """The largest delay for the given attempt number (0-based)."""
        # cap the exponent too: factor**attempt overflows a float after ~1000 attempts
        return min(self.cap, self.base * self.factor ** min(attempt, 64))

    def next_delay(self) -> float:
        """The delay before the next attempt; counts the attempt."""
        delay = self.rng.uniform(0.0, self.ceiling(self.attempt))
        self.attempt += 1
        return max(self.floor, delay)

    def reset(self) -> None:
        self.attempt = 0
