"""Logged bandit feedback: what a logging policy showed, where, with which propensity, and the reward."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tokrec.errors import DataError


@dataclass
class BanditLog:
    """Logged bandit feedback.

    Attributes:
        action: ``(n,)`` int, the action taken (0 .. n_actions-1).
        reward: ``(n,)`` float.
        pscore: ``(n,)`` float in (0, 1], the logging policy's probability of ``action``.
        position: ``(n,)`` int, the slot the action was shown in (zeros when there is one slot).
        n_actions: number of actions.
        context: ``(n, d)`` float features of each round (for reward models and policies), optional.
    """

    action: np.ndarray
    reward: np.ndarray
    pscore: np.ndarray
    position: np.ndarray
    n_actions: int
    context: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.action = np.asarray(self.action, dtype=np.int64)
        self.reward = np.asarray(self.reward, dtype=np.float64)
        self.pscore = np.asarray(self.pscore, dtype=np.float64)
        self.position = np.asarray(self.position, dtype=np.int64)
        n = len(self.action)
        for name in ("reward", "pscore", "position"):
            if len(getattr(self, name)) != n:
                raise DataError(f"bandit log: {name} has {len(getattr(self, name))} rounds, action has {n}")
        if n == 0:
            raise DataError("bandit log: no rounds")
        if self.action.min() < 0 or self.action.max() >= self.n_actions:
            raise DataError(f"bandit log: actions must lie in 0..{self.n_actions - 1}", column="action")
        if not ((self.pscore > 0) & (self.pscore <= 1)).all():
            bad = int(np.flatnonzero(~((self.pscore > 0) & (self.pscore <= 1)))[0])
            raise DataError(
                f"bandit log: propensity {self.pscore[bad]} not in (0, 1]", row=bad, column="pscore"
            )
        if self.position.min() < 0:
            raise DataError("bandit log: negative position", column="position")
        if self.context is not None and len(self.context) != n:
            raise DataError(f"bandit log: context has {len(self.context)} rows, action has {n}")

    @property
    def n_rounds(self) -> int:
        return len(self.action)

    @property
    def n_positions(self) -> int:
        return int(self.position.max()) + 1

    def subset(self, rows: np.ndarray) -> BanditLog:
        """The rounds ``rows`` as a new log."""
        return BanditLog(
            self.action[rows],
            self.reward[rows],
            self.pscore[rows],
            self.position[rows],
            self.n_actions,
            None if self.context is None else self.context[rows],
        )
