"""``fij-scorer``: a learned scorer over the pair features ``F_ij = (R_ij, Z_U, Z_I)``.

The method's linear form ``R_ij = alpha . Z_U + beta . Z_I + gamma`` generalised to

    s(u, i) = w_r * cos(Z_U, Z_I) + (P Z_U) . (Q Z_I) + a . Z_I + c

where ``Z_I`` is the item's LM vector, ``Z_U`` the unit mean of the user's last ``n_last`` item vectors,
``P, Q`` are ``(rank, d)`` (a low-rank bilinear term), ``a`` a ``(d,)`` item term (a text-predicted item
prior), trained with logistic loss on next-item events against ``negatives`` uniformly sampled items per
event (torch, CPU, fixed seed). Every term comes from text, so new items are scored like any other.
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from tokrec.data.dataset import Dataset
from tokrec.features import user_profiles
from tokrec.models import signals as sig
from tokrec.models.base import ModelConfig, Recommender, ThreadOptions


class FijScorerConfig(ModelConfig):
    """Model size and training schedule of :class:`FijScorer` (runtime: ``threads``)."""

    rank: int = Field(32, ge=1)
    n_last: int = Field(5, ge=1)
    negatives: int = Field(4, ge=1)
    epochs: int = Field(3, ge=1)
    batch_size: int = Field(1024, ge=1)
    lr: float = Field(5e-3, gt=0)
    l2: float = Field(1e-6, ge=0)
    seed: int = 0


def _contexts(seqs: list[np.ndarray], z: np.ndarray, n_last: int) -> tuple[np.ndarray, np.ndarray]:
    """For every event after a user's first: the unit mean of the previous ``n_last`` item vectors and
    the event's item. Returns ``(contexts (m, d) float32, targets (m,) int64)``."""
    ctx, tgt = [], []
    for s in seqs:
        if len(s) < 2:
            continue
        cs = np.vstack(
            [np.zeros((1, z.shape[1]), dtype=np.float64), np.cumsum(z[s], axis=0, dtype=np.float64)]
        )
        t = np.arange(1, len(s))
        lo = np.maximum(t - n_last, 0)
        ctx.append(cs[t] - cs[lo])
        tgt.append(s[1:])
    if not ctx:
        return np.zeros((0, z.shape[1]), dtype=np.float32), np.zeros(0, dtype=np.int64)
    return sig.l2_rows(np.vstack(ctx)), np.concatenate(tgt).astype(np.int64)


class FijScorer(Recommender[FijScorerConfig, ThreadOptions]):
    """A scorer over ``F_ij = (R_ij, Z_U, Z_I)`` trained with sampled negatives."""

    name = "fij-scorer"
    needs_item_vectors = True
    scores_new_items = True
    state = ("vectors_", "p_", "q_", "a_", "scalars_")

    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        import torch

        assert item_vectors is not None
        c = self.config
        if self.runtime.threads:
            torch.set_num_threads(self.runtime.threads)
        gen = torch.Generator().manual_seed(c.seed)
        z = sig.l2_rows(np.asarray(item_vectors, dtype=np.float32))
        self.vectors_ = z
        ctx, tgt = _contexts(dataset.sequences(), z, c.n_last)
        d = z.shape[1]
        p = torch.nn.Parameter(torch.randn(c.rank, d, generator=gen) * 0.05)
        q = torch.nn.Parameter(torch.randn(c.rank, d, generator=gen) * 0.05)
        a = torch.nn.Parameter(torch.zeros(d))
        wr = torch.nn.Parameter(torch.tensor([1.0]))
        bias = torch.nn.Parameter(torch.zeros(1))
        params = [p, q, a, wr, bias]
        opt = torch.optim.Adam(params, lr=c.lr, weight_decay=c.l2)
        zt, ct, tt = torch.from_numpy(z), torch.from_numpy(ctx), torch.from_numpy(tgt)
        for _ in range(c.epochs if len(tgt) else 0):
            order = torch.randperm(len(tt), generator=gen)
            for start in range(0, len(order), c.batch_size):
                idx = order[start : start + c.batch_size]
                zu = ct[idx]
                items = torch.cat(
                    [tt[idx, None], torch.randint(0, len(z), (len(idx), c.negatives), generator=gen)], 1
                )
                zi = zt[items]  # (b, 1 + neg, d)
                s = wr * torch.einsum("bd,bkd->bk", zu, zi) + torch.einsum("br,bkr->bk", zu @ p.T, zi @ q.T)
                s = s + zi @ a + bias
                loss = (
                    torch.nn.functional.softplus(-s[:, 0]).mean()
                    + torch.nn.functional.softplus(s[:, 1:]).sum(1).mean()
                )
                opt.zero_grad()
                loss.backward()
                opt.step()
        self.p_ = p.detach().numpy().copy()
        self.q_ = q.detach().numpy().copy()
        self.a_ = a.detach().numpy().copy()
        self.scalars_ = np.array([wr.item(), bias.item()], dtype=np.float32)

    def user_vectors(self, seqs: list[np.ndarray]) -> np.ndarray:
        """``Z_U``: ``(len(seqs), d)`` unit mean of each history's last ``n_last`` item vectors."""
        return user_profiles(seqs, self.vectors_, n_last=self.config.n_last)

    def _score_zu(self, zu: np.ndarray) -> np.ndarray:
        z = self.vectors_
        s = self.scalars_[0] * (zu @ z.T) + (zu @ self.p_.T) @ (z @ self.q_.T).T
        return (s + (z @ self.a_)[None, :] + self.scalars_[1]).astype(np.float32)

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        return self._score_zu(self.user_vectors([self.seen_.get(int(r), empty) for r in user_rows]))

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        return self._score_zu(self.user_vectors([np.asarray(item_rows, dtype=np.int64)]))[0]
