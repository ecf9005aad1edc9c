"""How long a failed job waits before its next attempt: exponential in the attempt number, capped, with
jitter so that jobs failing together (a provider outage) do not come back together.

The schedule follows Oban's default (`15 + 2^attempt` seconds): 17 s, 19 s, 23 s, 31 s, 47 s, … about
4.5 minutes at attempt 8, capped at `MAXIMUM_SECONDS`. The engines apply it; this module only computes it.
"""

from __future__ import annotations

import random

BASE_SECONDS = 15.0
MAXIMUM_SECONDS = 6 * 3600.0
JITTER = 0.1


def backoff_seconds(attempt: int, *, rng: random.Random | None = None) -> float:
    """The delay after failed attempt number `attempt` (1-based): ±10 % around `15 + 2^attempt`, capped."""
    exponent = min(max(attempt, 1), 32)
    delay = min(BASE_SECONDS + 2.0**exponent, MAXIMUM_SECONDS)
    spread = (rng or random).uniform(-JITTER, JITTER)
    return delay * (1 + spread)
