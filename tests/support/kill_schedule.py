"""Windows run in child processes and SIGKILLed on a seeded schedule: each kill point of
`crash_child.KILL_POINTS` (the child kills itself there) or a random delay (killed from
outside), shuffled in rounds, so every point is hit and the order differs per seed."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from tests.support.crash_child import KILL_POINTS


def kill_windows(
    ctx: Any,
    target: Callable[..., None],
    runs: int,
    seed: int,
    before: Callable[[int], tuple],
) -> list[str]:
    """Run `runs` windows `target(*before(run), kill_at, kill_on)` in processes of `ctx`
    (`before` moves the data between windows and returns the leading arguments), each killed
    as scheduled; then one more with the last arguments that must complete. Returns the
    kill points that killed a window (at least half of them must)."""
    rng = random.Random(seed)
    points = [*KILL_POINTS, "delay"]
    schedule: list[str] = []
    while len(schedule) < runs:
        rng.shuffle(points)
        schedule += points
    killed = []
    args: tuple = ()
    for run, choice in enumerate(schedule[:runs]):
        args = before(run)
        kill_at = None if choice == "delay" else choice
        kill_on = rng.randint(1, 2) if choice.startswith(("batch", "erp")) else 1
        p = ctx.Process(target=target, args=(*args, kill_at, kill_on))
        p.start()
        p.join(rng.uniform(0.05, 1.0) if choice == "delay" else 60)
        if p.is_alive():
            p.kill()  # SIGKILL
            p.join(10)
        assert p.exitcode in (0, -9), f"child failed with exit code {p.exitcode}"
        if p.exitcode == -9:
            killed.append(choice)
    assert len(killed) >= runs // 2, f"only {killed} of {runs} windows were killed"
    final = ctx.Process(target=target, args=(*args, None, 1))
    final.start()
    final.join(120)
    assert final.exitcode == 0
    return killed
