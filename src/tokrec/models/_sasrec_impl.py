"""PyTorch pieces of the text-aware SASRec: the item table (text adaptor + optional ID embeddings),
the causal transformer, its training batches and loss (trained by :class:`tokrec.training.Trainer`),
and scoring.

Shapes: ``B`` batch, ``L`` max sequence length, ``N`` catalog items, ``D`` text-vector dimension,
``H`` hidden size, ``E`` adaptor experts. Item rows are shifted by one inside the network so that
index 0 is padding.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from tokrec.models.signals import AGE_EDGES_DAYS, recency_weights
from tokrec.training import autocast

#: Time-gap buckets of the input events: 0 = unknown (the first event, padding, or no timestamps; a zero
#: embedding), 1 = the same second as the previous event, 2 + floor(log2(gap in seconds)) after that,
#: capped (2**25 s is about a year).
N_GAP_BUCKETS = 28


def gap_buckets(timestamps: np.ndarray) -> np.ndarray:
    """Bucket ids ``(n,)`` int64 of the gap between each event and the one before it (0 for the first)."""
    t = np.asarray(timestamps, dtype=np.int64)
    out = np.zeros(len(t), dtype=np.int64)
    if len(t) > 1:
        gap = np.diff(t).astype(np.float64)
        b = np.where(gap <= 0, 1.0, 2.0 + np.floor(np.log2(np.maximum(gap, 1.0))))
        out[1:] = np.minimum(b, N_GAP_BUCKETS - 1).astype(np.int64)
    return out


class Dropout(nn.Module):
    """Inverted dropout drawing its mask from the network's own ``torch.Generator`` (set by
    :func:`set_generator`; the global one when None). Networks trained side by side in threads (a seed
    ensemble) then each draw from their own stream and stay reproducible."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.rand(x.shape, generator=self.generator, device=x.device) >= self.p
        return x * keep.to(x.dtype) * (1.0 / (1.0 - self.p))


def set_generator(net: nn.Module, generator: torch.Generator | None) -> None:
    """Makes every random draw of ``net`` in training (dropout, ID dropout) use ``generator``."""
    if isinstance(net, SASRecNet):
        net.generator = generator
    for m in net.modules():
        if isinstance(m, Dropout):
            m.generator = generator


class ItemTable(nn.Module):
    """Item representations from text vectors (mixture-of-experts adaptor) plus optional ID embeddings.

    Each expert is a parametric whitening layer ``(z - b_e) @ W_e`` as in UniSRec; a softmax gate over
    the text vector mixes them. Items without an ID row (``id_index == 0``: never seen in training,
    or added later) are represented by their text alone.
    """

    def __init__(self, d_text: int, hidden: int, n_ids: int, n_experts: int, text_dropout: float) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(n_experts, d_text))
        self.weight = nn.Parameter(torch.empty(n_experts, d_text, hidden))
        nn.init.xavier_uniform_(self.weight.view(-1, hidden))
        self.gate = nn.Linear(d_text, n_experts) if n_experts > 1 else None
        self.text_dropout = Dropout(text_dropout)
        self.id_emb = nn.Embedding(n_ids + 1, hidden, padding_idx=0) if n_ids > 0 else None
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, std=0.02)
            with torch.no_grad():
                self.id_emb.weight[0].zero_()
        self.norm = nn.LayerNorm(hidden)

    def forward(
        self, z: torch.Tensor, id_index: torch.Tensor, id_keep: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Item table ``(N, H)`` from text vectors ``z`` ``(N, D)`` and ID rows ``id_index`` ``(N,)``.

        Args:
            z: normalised (centred / whitened) text vectors.
            id_index: 1-based ID-embedding row per item, 0 for "no ID" (text only).
            id_keep: optional ``(N,)`` 0/1 mask; 0 drops that item's ID part (ID dropout in training).
        """
        x = self.text_dropout(z)
        # (x - b_e) @ W_e = x @ W_e - b_e @ W_e: one (N, D) x (D, E*H) product instead of an (N, E, D) difference
        n_exp, d, h = self.weight.shape
        flat = self.weight.permute(1, 0, 2).reshape(d, n_exp * h)
        proj = (x @ flat).view(-1, n_exp, h) - torch.einsum("ed,edh->eh", self.bias, self.weight).unsqueeze(0)
        if self.gate is not None:
            w = torch.softmax(self.gate(x), dim=-1)
            out = (proj * w.unsqueeze(-1)).sum(1)
        else:
            out = proj[:, 0]
        if self.id_emb is not None:
            ids = self.id_emb(id_index)
            if id_keep is not None:
                ids = ids * id_keep.unsqueeze(-1)
            out = out + ids
        return self.norm(out)


class _BinBias(torch.autograd.Function):
    """``bias[bins]`` whose backward is one weighted ``bincount``: autograd's indexing backward
    scatters millions of (B, L, N) gradients into a handful of bins, slowly on CPU."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx, bias: torch.Tensor, bins: torch.Tensor
    ) -> torch.Tensor:
        ctx.save_for_backward(bins)
        ctx.n_bins = bias.shape[0]  # type: ignore[attr-defined]
        return bias[bins]

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (bins,) = ctx.saved_tensors  # type: ignore[attr-defined]
        n_bins = ctx.n_bins  # type: ignore[attr-defined]
        g = torch.bincount(bins.reshape(-1), weights=grad.reshape(-1).float(), minlength=n_bins)
        return g.to(grad.dtype), None


class Block(nn.Module):
    """Pre-LayerNorm transformer block. Dropout sits on the residual branches only (no dropout on
    attention probabilities or inside the feed-forward): on CPU, drawing dropout masks dominated the
    step time, and these two add little on sequences this short."""

    def __init__(self, hidden: int, n_heads: int, inner: int, dropout: float) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.ln1 = nn.LayerNorm(hidden)
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.ln2 = nn.LayerNorm(hidden)
        self.ff = nn.Sequential(nn.Linear(hidden, inner), nn.GELU(), nn.Linear(inner, hidden))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """``x`` ``(B, L, H)``; ``mask`` ``(B, 1, L, L)`` bool, True where attention is allowed."""
        b, length, h = x.shape
        q, k, v = (
            self.qkv(self.ln1(x)).view(b, length, 3, self.n_heads, h // self.n_heads).permute(2, 0, 3, 1, 4)
        )
        att = nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        x = x + self.drop(self.proj(att.transpose(1, 2).reshape(b, length, h)))
        return x + self.drop(self.ff(self.ln2(x)))


class SASRecNet(nn.Module):
    """Causal self-attention over item sequences, scored against the item table (tied weights)."""

    def __init__(
        self,
        table: ItemTable,
        hidden: int,
        n_blocks: int,
        n_heads: int,
        inner: int,
        max_len: int,
        dropout: float,
        time_gaps: bool = False,
        item_age: bool = False,
    ) -> None:
        super().__init__()
        self.table = table
        self.max_len = max_len
        #: the random stream of training (dropout, ID dropout); see :func:`set_generator`
        self.generator: torch.Generator | None = None
        self.pos = nn.Embedding(max_len, hidden)
        nn.init.normal_(self.pos.weight, std=0.02)
        #: optional embedding of each input event's gap to the one before it (TiSASRec-style time context;
        #: bucket 0, "unknown", stays a zero vector, so a history without timestamps is still valid input)
        self.gap = nn.Embedding(N_GAP_BUCKETS, hidden, padding_idx=0) if time_gaps else None
        if self.gap is not None:
            nn.init.normal_(self.gap.weight, std=0.02)
            with torch.no_grad():
                self.gap.weight[0].zero_()
        #: optional logit bias by the item's age at the query time (one per age bin, the last for "unknown")
        self.age_bias = nn.Parameter(torch.zeros(len(AGE_EDGES_DAYS) + 2)) if item_age else None
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, n_heads, inner, dropout) for _ in range(n_blocks))
        self.out_norm = nn.LayerNorm(hidden)
        #: logits = scale * <hidden state, item row>; both sides are layer-normalised (norm ~ sqrt(H))
        self.logit_scale = 1.0 / math.sqrt(hidden)

    def age_logits(self, days: torch.Tensor, release: torch.Tensor) -> torch.Tensor:
        """Logit bias ``(..., N)`` by each item's age at each query time: ``days`` ``(...)`` query times
        and ``release`` ``(N,)`` release dates, both in days since the epoch (NaN = unknown).

        The bins are computed once per distinct query day (whole days; the bins are 30 days and wider)
        and gathered by row: a batch has a few hundred distinct days against B * L positions.
        """
        assert self.age_bias is not None
        unknown = len(AGE_EDGES_DAYS) + 1
        flat = days.reshape(-1)
        missing = torch.isnan(flat)
        day = torch.where(missing, torch.full_like(flat, -1e9), torch.floor(flat))
        uniq, inv = torch.unique(day, return_inverse=True)
        age = uniq.unsqueeze(-1) - release  # (U, N)
        edges = torch.as_tensor(AGE_EDGES_DAYS, dtype=age.dtype, device=age.device)
        bins = torch.bucketize(age, edges, right=True)  # the bins of numpy.digitize (signals.age_bins)
        bad = torch.isnan(age) | (uniq <= -1e9).unsqueeze(-1)
        bins = torch.where(bad, torch.full_like(bins, unknown), bins)
        per_day = _BinBias.apply(self.age_bias, bins)  # (U, N)
        return per_day[inv].reshape(*days.shape, release.shape[0])

    def add_age(
        self, logits: torch.Tensor, days: torch.Tensor | None, release: torch.Tensor | None
    ) -> torch.Tensor:
        """``logits`` plus the age bias where the network has one and the times are given."""
        if self.age_bias is None or days is None or release is None:
            return logits
        return logits + self.age_logits(days, release).to(logits.dtype)

    def encode(
        self, seq: torch.Tensor, table: torch.Tensor, gaps: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Hidden states ``(B, L, H)`` for left-padded item-row sequences ``seq`` ``(B, L)`` (-1 = pad);
        ``gaps`` ``(B, L)``: the inputs' gap buckets (:func:`gap_buckets`; ignored without a gap embedding)."""
        b, length = seq.shape
        padded = torch.cat([torch.zeros_like(table[:1]), table], 0)
        x = padded[seq + 1]  # the table is layer-normalised already: no sqrt(H) scaling
        if self.gap is not None and gaps is not None:
            x = x + self.gap(gaps)
        x = self.drop(x + self.pos.weight[self.max_len - length :].unsqueeze(0))
        causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=seq.device))
        allowed = causal.unsqueeze(0) & (seq >= 0).unsqueeze(1)  # (B, L, L)
        eye = torch.eye(length, dtype=torch.bool, device=seq.device).unsqueeze(0)
        allowed = (allowed | eye).unsqueeze(1)  # a padded query attends to itself only: no empty row
        for block in self.blocks:
            x = block(x, allowed)
        return self.out_norm(x)


# ---- data -----------------------------------------------------------------------------------------


def left_pad(seqs: Sequence[np.ndarray], length: int, fill: float, dtype: type = np.int64) -> np.ndarray:
    """Right-aligned ``(len(seqs), length)`` array (int64 unless ``dtype``) of each sequence's last
    ``length`` entries, ``fill`` before them."""
    out: np.ndarray = np.full((len(seqs), length), fill, dtype=dtype)
    for j, s in enumerate(seqs):
        s = s[-length:]
        if len(s):
            out[j, length - len(s) :] = s
    return out


def _windows(n_inputs: int, max_len: int, shift: int = 0) -> list[tuple[int, int, int]]:
    """``(start, end, first)`` of the ``max_len`` windows cut from ``n_inputs`` inputs: positions
    ``first`` and after of ``inputs[start:end]`` are trained (every input exactly once).

    ``shift`` 0: non-overlapping windows cut from the end. ``shift`` r in ``1..max_len-1`` moves the cuts
    r inputs back: the newest r inputs keep a whole window of context (only its last r positions are
    trained), and the older inputs are cut from ``n_inputs - r``, so window boundaries move between epochs.
    """
    r = shift % max_len if n_inputs > max_len else 0
    head = [(n_inputs - max_len, n_inputs, max_len - r)] if r else []
    return head + [(max(0, end - max_len), end, 0) for end in range(n_inputs - r, 0, -max_len)]


def shuffle_ties(
    seqs: Sequence[np.ndarray], times: Sequence[np.ndarray], rng: np.random.Generator
) -> list[np.ndarray]:
    """Each sequence with its events of equal timestamp put in a fresh random order (``times`` sorted,
    aligned with ``seqs``): the log's order among ties is often an artifact (sorted by item id)."""
    out = []
    for s, t in zip(seqs, times, strict=True):
        if len(s) < 2 or not (t[1:] == t[:-1]).any():
            out.append(s)
            continue
        key = rng.random(len(s))
        out.append(s[np.lexsort((key, t))])
    return out


def training_windows(
    seqs: Sequence[np.ndarray],
    max_len: int,
    target_window: int = 1,
    shifts: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Next-item training pairs: inputs ``(W, L)`` (-1 pad) and targets ``(W, L, T)`` (-100 = none).

    Each sequence of length n gives inputs ``s[:-1]``; the targets of position t are the next
    ``target_window`` events ``s[t+1 : t+1+T]`` (T = 1: the next item only). Sequences are cut into
    ``max_len`` windows (:func:`_windows`, ``shifts[i]`` for sequence i; default: from the end) so every
    event of a long history is trained as an input once.
    """
    ins: list[np.ndarray] = []
    outs: list[np.ndarray] = []
    t_w = max(1, target_window)
    for i, s in enumerate(seqs):
        if len(s) < 2:
            continue
        inp = s[:-1]
        ahead = np.full((len(inp), t_w), -100, dtype=np.int64)
        for k in range(t_w):
            nxt = s[1 + k :]
            ahead[: len(nxt), k] = nxt[: len(inp)]
        for start, end, first in _windows(len(inp), max_len, 0 if shifts is None else int(shifts[i])):
            ins.append(inp[start:end])
            o = ahead[start:end].copy() if first else ahead[start:end]
            o[:first] = -100
            outs.append(o)
    if not ins:
        return np.empty((0, max_len), np.int64), np.empty((0, max_len, t_w), np.int64)
    targets = np.full((len(outs), max_len, t_w), -100, dtype=np.int64)
    for j, o in enumerate(outs):
        targets[j, max_len - len(o) :] = o
    return left_pad(ins, max_len, -1), targets


def earlier_items(
    seqs: Sequence[np.ndarray], max_len: int, shifts: np.ndarray | None = None
) -> list[np.ndarray]:
    """Per window of :func:`training_windows` (same order), the items of the history before the
    window's first input: with them and the window's own inputs, every position knows all the items
    its user had before its target. Views into ``seqs``, not copies."""
    return [
        s[:start]
        for i, s in enumerate(seqs)
        if len(s) >= 2
        for start, _, _ in _windows(len(s) - 1, max_len, 0 if shifts is None else int(shifts[i]))
    ]


def seen_mask(
    inputs: torch.Tensor,
    earlier: Sequence[np.ndarray],
    columns: torch.Tensor,
    n_out: int,
    positions: torch.Tensor,
) -> torch.Tensor:
    """``(P, n_out)`` bool at the ``positions`` ``(B, L)`` bool of the windows: True where the softmax
    column's item is among the user's items up to and including that position (the window's inputs
    ``(B, L)``, -1 = pad, and ``earlier``: its items before the window); ``columns`` ``(N,)`` maps
    catalog rows to softmax columns (-1: not in the softmax)."""
    b, length = inputs.shape
    device = inputs.device

    def cols(rows: torch.Tensor) -> torch.Tensor:  # catalog rows (-1 = pad) -> 1 + softmax column, 0 = none
        return torch.where(rows >= 0, columns[rows.clamp_min(0)], -1) + 1

    before = np.full((b, max([1, *map(len, earlier)])), -1, dtype=np.int64)
    for j, items in enumerate(earlier):
        before[j, : len(items)] = items
    prior = torch.zeros(b, n_out + 1, dtype=torch.bool, device=device)
    prior.scatter_(1, cols(torch.from_numpy(before).to(device)), True)
    causal = torch.tril(torch.ones(length, length, dtype=torch.bool, device=device))  # [l, k]: k <= l
    # (B, L, L): each position's inputs up to and including it
    prefix = torch.where(causal.unsqueeze(0), cols(inputs).unsqueeze(1), 0)
    owner = torch.arange(b, device=device).unsqueeze(1).expand(b, length)[positions]
    seen = prior[owner].scatter_(1, prefix[positions], True)
    return seen[:, 1:]


def side_windows(
    values: Sequence[np.ndarray],
    max_len: int,
    fill: float,
    dtype: type = np.int64,
    shifts: np.ndarray | None = None,
) -> np.ndarray:
    """A per-event side input (gap buckets, times) cut into the windows of :func:`training_windows`'
    inputs: ``(W, L)``, ``fill`` for padding; ``values`` aligned with the item sequences."""
    ins = [
        g[:-1][start:end]
        for i, g in enumerate(values)
        if len(g) >= 2
        for start, end, _ in _windows(len(g) - 1, max_len, 0 if shifts is None else int(shifts[i]))
    ]
    return left_pad(ins, max_len, fill, dtype) if ins else np.empty((0, max_len), dtype)


def gap_windows(gaps: Sequence[np.ndarray], max_len: int, shifts: np.ndarray | None = None) -> np.ndarray:
    """The gap buckets ``(W, L)`` of :func:`training_windows`' inputs (same windows, 0 = pad)."""
    return side_windows(gaps, max_len, 0, shifts=shifts)


def pick_targets(targets: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``(B, L)`` targets from ``(B, L, T)``: one of each position's valid next-T items, uniformly."""
    if targets.shape[2] == 1:
        return targets[:, :, 0]
    valid = targets != -100
    n_valid = valid.sum(2)
    k = (rng.random(n_valid.shape) * np.maximum(n_valid, 1)).astype(np.int64)  # valid ones come first
    return np.take_along_axis(targets, k[:, :, None], 2)[:, :, 0]


def batches(n: int, size: int, rng: np.random.Generator | None) -> Iterator[np.ndarray]:
    order = rng.permutation(n) if rng is not None else np.arange(n)
    for start in range(0, n, size):
        yield order[start : start + size]


class EpochWindows(NamedTuple):
    """One epoch's training windows: inputs, targets, the inputs' side values and each window's earlier
    items (None: not used)."""

    inputs: np.ndarray
    targets: np.ndarray
    gap_inputs: np.ndarray | None
    day_inputs: np.ndarray | None
    earlier: list[np.ndarray] | None = None


class NextItemLoss:
    """text-sasrec's training data for :class:`tokrec.training.Trainer`: ``batches(epoch)`` gives the
    windows' row numbers in a fresh random order, ``loss(rows)`` full-softmax next-item cross-entropy.

    ``targets`` ``(W, L, T)``: each step trains on one of the next T items of each position, drawn
    afresh (T = 1: the next item). ``out_items`` restricts the softmax to these item rows (then ``targets`` hold positions in it).
    ``gap_inputs`` ``(W, L)``: the inputs' gap buckets; each is set to "unknown" with probability
    ``gap_dropout``, so that histories without timestamps (online events) stay in distribution.
    ``day_inputs`` ``(W, L)`` (days since the epoch, NaN = pad) and ``release`` ``(N,)`` (days, NaN =
    unknown): the inputs' times and the items' release dates for the age bias. ``earlier``: each
    window's items before it (:func:`earlier_items`); given, each position's softmax leaves out the items
    its user already had (all but its target), as the ranking does. ``resample(rng)``, where
    given, re-cuts the windows at the start of every epoch (ties put in a
    fresh order, windows moved). Random draws: the order, targets, gap dropout and re-cuts from ``rng``,
    ID dropout from the network's own generator.
    """

    def __init__(
        self,
        net: SASRecNet,
        z: torch.Tensor,
        id_index: torch.Tensor,
        inputs: np.ndarray,
        targets: np.ndarray,
        *,
        batch_size: int,
        id_dropout: float,
        rng: np.random.Generator,
        device: torch.device,
        dtype: str,
        out_items: torch.Tensor | None = None,
        gap_inputs: np.ndarray | None = None,
        gap_dropout: float = 0.0,
        day_inputs: np.ndarray | None = None,
        release: torch.Tensor | None = None,
        resample: Callable[[np.random.Generator], EpochWindows] | None = None,
        earlier: list[np.ndarray] | None = None,
    ) -> None:
        self.net, self.z, self.id_index = net, z, id_index
        self.inputs, self.targets = inputs, targets
        self.batch_size, self.id_dropout, self.rng = batch_size, id_dropout, rng
        self.device, self.dtype = device, dtype
        self.out_items = out_items
        self.gap_inputs, self.gap_dropout = gap_inputs, gap_dropout
        self.day_inputs = day_inputs
        self.release = release if release is None or out_items is None else release[out_items]
        self.resample = resample
        self.earlier = earlier
        self.columns: torch.Tensor | None = None
        if earlier is not None:
            n = len(id_index)
            cols = torch.arange(n, device=device)
            if out_items is not None:
                cols = torch.full((n,), -1, dtype=torch.int64, device=device)
                cols[out_items] = torch.arange(len(out_items), device=device)
            self.columns = cols

    def batches(self, epoch: int = 0) -> Iterator[np.ndarray]:
        if self.resample is not None:
            w = self.resample(self.rng)
            self.inputs, self.targets, self.gap_inputs, self.day_inputs = w[:4]
            if self.earlier is not None:
                self.earlier = w.earlier
        return batches(len(self.inputs), self.batch_size, self.rng)

    def __call__(self, idx: np.ndarray) -> tuple[torch.Tensor, int] | None:
        """The mean loss of windows ``idx`` and their count (None: no position has a target)."""
        net, device = self.net, self.device
        inp = torch.from_numpy(self.inputs[idx]).to(device)
        tgt = torch.from_numpy(pick_targets(self.targets[idx], self.rng)).to(device)
        gaps = None
        if self.gap_inputs is not None:
            g = self.gap_inputs[idx]
            if self.gap_dropout > 0:
                g = np.where(self.rng.random(g.shape) < self.gap_dropout, 0, g)
            gaps = torch.from_numpy(g).to(device)
        keep = None
        if self.id_dropout > 0 and net.table.id_emb is not None:
            n = len(self.id_index)
            keep = (torch.rand(n, generator=net.generator, device=device) >= self.id_dropout).float()
        has = tgt != -100  # the softmax runs at positions with a target only (padding is ~25% of them)
        if not bool(has.any()):
            return None
        with autocast(device, self.dtype):
            table = net.table(self.z, self.id_index, keep)
            hid = net.encode(inp, table, gaps)[has]
            out = table if self.out_items is None else table[self.out_items]
            logits = (hid @ out.T) * net.logit_scale
            if self.day_inputs is not None:
                days = torch.from_numpy(self.day_inputs[idx]).to(device)[has]
                logits = net.add_age(logits, days, self.release)
        if self.earlier is not None:
            assert self.columns is not None
            seen = seen_mask(inp, [self.earlier[j] for j in idx], self.columns, logits.shape[1], has)
            target = tgt[has].clamp_min(0)
            seen[torch.arange(len(seen), device=device), target] = False  # a repeated item stays a target
            logits = logits.masked_fill(seen, float("-inf"))
        loss = nn.functional.cross_entropy(logits.float(), tgt[has], ignore_index=-100)
        return loss, len(idx)


class _Query(NamedTuple):
    """How :func:`score_histories` runs: batch size, device, dtype, and the side inputs."""

    batch_size: int
    device: torch.device
    dtype: str
    gaps: Sequence[np.ndarray] | None
    days: Sequence[np.ndarray] | None
    release: torch.Tensor | None


@torch.no_grad()
def score_histories(
    net: SASRecNet,
    table: torch.Tensor,
    histories: Sequence[np.ndarray],
    *,
    batch_size: int,
    device: torch.device,
    dtype: str,
    gaps: Sequence[np.ndarray] | None = None,
    days: Sequence[np.ndarray] | None = None,
    release: torch.Tensor | None = None,
    half_life: float | None = None,
) -> np.ndarray:
    """Scores ``(len(histories), N)`` float32 of every item after each history (oldest first):
    the last position's logits ("what comes next"), or with ``half_life`` the log of a recency-weighted
    mixture of the next-item distributions after every prefix (:func:`_mixture_scores`).

    ``gaps``: each history's gap buckets; ``days``: its event times in days (the last one is the query
    time of the age bias; in the mixture, each position's own); ``release`` ``(N,)``: the items'
    release days (None: unknown)."""
    net.eval()
    q = _Query(batch_size, device, dtype, gaps, days, release)
    if half_life is not None:
        return _mixture_scores(net, table, histories, q, half_life)
    return _next_scores(net, table, histories, q)


def _next_scores(
    net: SASRecNet, table: torch.Tensor, histories: Sequence[np.ndarray], q: _Query
) -> np.ndarray:
    """The last position's logits after each history."""
    batch_size, device, dtype, gaps, days, release = q
    out = np.empty((len(histories), table.shape[0]), dtype=np.float32)
    for start in range(0, len(histories), batch_size):
        chunk = histories[start : start + batch_size]
        seq = torch.from_numpy(left_pad(chunk, net.max_len, -1)).to(device)
        g = None
        if gaps is not None:
            g = torch.from_numpy(left_pad(gaps[start : start + batch_size], net.max_len, 0)).to(device)
        d = None
        if days is not None:
            last = [float(x[-1]) if len(x) else np.nan for x in days[start : start + batch_size]]
            d = torch.tensor(last, dtype=torch.float32, device=device)
        with autocast(device, dtype):
            hid = net.encode(seq, table, g)[:, -1]
            scores = net.add_age((hid @ table.T) * net.logit_scale, d, release)
        out[start : start + len(chunk)] = scores.float().cpu().numpy()
    return out


def _mixture_scores(
    net: SASRecNet, table: torch.Tensor, histories: Sequence[np.ndarray], q: _Query, half_life: float
) -> np.ndarray:
    """Log of a recency-weighted mixture of the next-item distributions after EVERY prefix of each history.

    ``score[u, i] = log sum_t w_t softmax(h_t @ table.T)_i`` with ``w_t`` proportional to
    ``0.5 ** ((n - 1 - t) / half_life)`` (``inf``: uniform): where the last-position score answers
    "what comes next", this answers "what fits anywhere in this user's timeline", which is the
    question when the held-out events of new items are spread over the whole history. Long histories
    are cut into non-overlapping ``max_len`` windows from the end (as in training); each position's own
    time is its query time for the age bias. An empty history gives a row of zeros.
    """
    batch_size, device, dtype, gaps, days, release = q
    length = net.max_len
    windows: list[np.ndarray] = []
    gap_wins: list[np.ndarray] = []
    day_wins: list[np.ndarray] = []
    owner: list[int] = []
    weights: list[np.ndarray] = []
    for u, h in enumerate(histories):
        n = len(h)
        if n == 0:
            continue
        w = recency_weights(n, max(half_life, 1e-9))
        w = w / w.sum()
        for start, end, _ in _windows(n, length):
            windows.append(h[start:end])
            if gaps is not None:
                gap_wins.append(gaps[u][start:end])
            if days is not None:
                day_wins.append(days[u][start:end])
            owner.append(u)
            pad = np.zeros(length, dtype=np.float32)
            pad[length - (end - start) :] = w[start:end]
            weights.append(pad)
    out = torch.zeros((len(histories), table.shape[0]), dtype=torch.float32, device=device)
    for start in range(0, len(windows), batch_size):
        seq = torch.from_numpy(left_pad(windows[start : start + batch_size], length, -1)).to(device)
        wt = torch.from_numpy(np.stack(weights[start : start + batch_size])).to(device)
        g = None
        if gaps is not None:
            g = torch.from_numpy(left_pad(gap_wins[start : start + batch_size], length, 0)).to(device)
        d = None
        if days is not None:
            d = torch.from_numpy(
                left_pad(day_wins[start : start + batch_size], length, np.nan, np.float32)
            ).to(device)
        with autocast(device, dtype):
            hid = net.encode(seq, table, g)
            logits = net.add_age((hid @ table.T) * net.logit_scale, d, release)
        probs = torch.softmax(logits.float(), dim=-1)  # (B, L, N)
        mixed = torch.einsum("bl,bln->bn", wt, probs)
        idx = torch.tensor(owner[start : start + batch_size], device=device)
        out.index_add_(0, idx, mixed)
    empty = np.array([len(h) == 0 for h in histories])
    res = torch.log(out.clamp_min(1e-30)).cpu().numpy()
    res[empty] = 0.0
    return res
