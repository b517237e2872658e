"""``text-sasrec``: a SASRec-style causal transformer whose items are represented by their LM text vectors.

An item's representation is ``LayerNorm(MoE-adaptor([normalised text vector, catalog attributes]) + ID
embedding)``; items that had no training events (or were added later with :meth:`TextSASRec.add_items`)
have no ID embedding and enter from their content alone, without retraining. ID dropout during training
teaches the model to rank text-only items. By default (``new_items="content-map"``) such an item's row
is not the adaptor's text-only row but a ridge regression, fitted after training on the trained items,
from content features ``[text vector, attributes, 1]`` to the rows those items ended with (adaptor + ID
embedding): a new item lands where items with similar content landed, popularity included (on the
ml-100k cold split validation chose it over the adaptor row, 0.415 against 0.393). Training is full-softmax next-item
cross-entropy over the catalog (optionally on one of the next ``target_window`` events), with the epoch
count chosen on a validation event (each user's last training event), then retrained on the full training
sequences for that many epochs (optionally several seeds, averaged). Each input event also carries its time
gap to the previous one (``time_gaps``, log2 buckets, "unknown" where timestamps are missing), validation
and the final network use an exponential moving average of the weights (``ema_decay``), and an optional
logit bias by the item's age at each position's time (``item_age``) uses the catalog's release dates.

Scoring answers one of two questions: "what comes next" (the last position's output; the default, for
leave-last-out) or, with ``score_half_life``, "what fits anywhere in this history" (a recency-weighted
mixture of the next-item distributions after every prefix; for held-out items whose events are spread over
the user's timeline, such as new items in a cold-item split).
"""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.models.base import ModelConfig, Recommender, RuntimeOptions
from tokrec.models.growth import grown
from tokrec.training import (
    Trainer,
    TrainerConfig,
    TrainResult,
    resolve_device,
    resolve_dtype,
    seed_all,
    torch_threads,
)

log = logging.getLogger(__name__)
_T = TypeVar("_T")


class TextSASRecConfig(ModelConfig):
    """Hyperparameters of :class:`TextSASRec` (runtime options: :class:`TorchOptions`)."""

    hidden: int = Field(64, ge=4)
    n_blocks: int = Field(2, ge=1)
    n_heads: int = Field(2, ge=1)
    inner: int = Field(256, ge=4, description="feed-forward width inside each block")
    max_len: int = Field(50, ge=2)
    dropout: float = Field(0.2, ge=0, lt=1)
    text_dropout: float = Field(0.2, ge=0, lt=1, description="dropout on the text vector before the adaptor")
    n_experts: int = Field(4, ge=1, description="adaptor experts (1 = one linear projection)")
    text_norm: Literal["none", "center", "whiten"] = "center"
    attributes: bool = Field(
        True,
        description=(
            "append catalog attributes (release-date years, multi-valued categories, numeric columns; "
            "see tokrec.models.signals.attribute_features) to the text vector before the adaptor"
        ),
    )
    attr_weight: float = Field(0.5, ge=0, description="scale of the attribute block (rows have unit norm)")
    softmax_items: Literal["trained", "all"] = Field(
        "trained", description="softmax over items with training events only, or the whole catalog"
    )
    target_window: int = Field(
        1,
        ge=1,
        description=(
            "train each position on one of its next T events drawn afresh each epoch (1 = the next event; "
            "larger T teaches longer-range interests, as in PinnerFormer's dense all-action loss)"
        ),
    )
    time_gaps: bool = Field(
        True,
        description=(
            "add an embedding of each input event's time gap to the previous one (log2 buckets; TiSASRec-style "
            "session context); histories given without timestamps (online events) use the 'unknown' bucket"
        ),
    )
    gap_dropout: float = Field(
        0.1, ge=0, le=1, description="with time_gaps: probability of hiding an input's gap in training"
    )
    tie_order: Literal["given", "shuffle"] = Field(
        "given",
        description=(
            "training order of events with the same timestamp: as the log gives them ('given'), or drawn "
            "afresh every epoch ('shuffle': the log's order among ties is often an artifact, such as item id "
            "order, which a sequential model otherwise learns)"
        ),
    )
    window_offset: Literal["end", "random"] = Field(
        "end",
        description=(
            "where long histories are cut into max_len training windows: from the end, the same windows every "
            "epoch ('end'), or from an offset drawn per history every epoch ('random': each event is trained "
            "once per epoch, with a different context length each time; the newest events keep a whole window)"
        ),
    )
    item_age: bool = Field(
        False,
        description=(
            "add a learned logit bias by the item's age at each position's time (that event's timestamp minus "
            "the item's release date from the catalog's date column, in the age bins of the tokrec model): "
            "new releases are watched around their release"
        ),
    )
    new_items: Literal["adaptor", "content-map"] = Field(
        "content-map",
        description=(
            "the table row of an item without training events (a new item): 'adaptor' = the adaptor's "
            "text-only row; 'content-map' = a ridge regression from the item's content features "
            "[text vector, catalog attributes] to the rows (adaptor + ID embedding) the trained items ended "
            "with, fitted after training (CB2CF-style: a new item lands where items with its content landed)"
        ),
    )
    new_item_lambda: float = Field(3.0, gt=0, description="with new_items='content-map': the ridge penalty")
    mask_history: bool = Field(
        False,
        description=(
            "leave the items a user already had out of each training position's softmax (its target "
            "excepted): the ranking leaves them out (exclude_seen, the default), so training spends nothing on "
            "pushing them down; their scores are then untrained, so keep it off where seen items are ranked "
            "(--include-seen, exclude_seen=false) or users come back to items. The tuner turns it on for its "
            "blend part on logs without repeated (user, item) pairs"
        ),
    )
    id_embeddings: bool = True
    id_dropout: float = Field(
        0.3, ge=0, le=1, description="probability of dropping an item's ID part per step"
    )
    lr: float = Field(1e-3, gt=0)
    ema_decay: float = Field(
        0.99,
        ge=0,
        lt=1,
        description=(
            "0 = off; else validate and keep an exponential moving average of the weights (updated every "
            "step with this decay) instead of the last iterate: a smoother validation curve and final network"
        ),
    )
    weight_decay: float = Field(0.0, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(200, ge=1, description="maximum epochs")
    patience: int = Field(10, ge=1, description="epochs without validation gain before stopping")
    max_seconds: float | None = Field(
        None,
        gt=0,
        description=(
            "a time budget for the validation run (None: none): training stops within the step that spends "
            "it and the best epoch so far is the one chosen (with refit='none' its weights are kept); a "
            "refit from scratch then trains that many epochs. The tuner's blend part sets it from its budget"
        ),
    )
    refit: Literal["scratch", "continue", "none"] = Field(
        "scratch",
        description=(
            "after choosing the epoch count on validation: 'scratch' retrains on the full sequences for that "
            "many epochs; 'continue' trains the best checkpoint `continue_epochs` more epochs on the full "
            "sequences (cheap: the model also learns each user's last event); 'none' keeps the best checkpoint"
        ),
    )
    continue_epochs: int = Field(2, ge=1)
    refit_seeds: int = Field(
        2,
        ge=1,
        description=(
            "an ensemble of this many networks (seeds seed, seed+1, ...) whose scores are averaged: with "
            "refit='scratch' each is trained from scratch for the epoch count chosen in one validation run; "
            "with refit='none' each has its own validation run and keeps its best checkpoint (so the "
            "ensemble size can itself be chosen on validation; on ml-100k validation chose 2 over 1). On CPU "
            "the members train side by side, one Python thread each"
        ),
    )
    score_half_life: float | None = Field(
        None,
        gt=0,
        description=(
            "None: score what comes NEXT (the last position's output). A number (events; 1e9 = uniform): "
            "score what fits ANYWHERE in the history, a recency-weighted mixture of the next-item "
            "distributions after every prefix; use it when held-out items are spread over the timeline "
            "(new items whose events span the history) and choose it on validation"
        ),
    )
    seed: int = 42


class TorchOptions(RuntimeOptions):
    """Runtime options of a torch model: where and how it runs, not what it learns (never saved)."""

    device: Literal["auto", "cpu", "cuda"] = "auto"
    dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    threads: int | None = Field(
        2, ge=1, description="torch CPU threads while fitting/scoring (None: leave as is)"
    )
    progress: bool = False


class TextSASRec(Recommender[TextSASRecConfig, TorchOptions]):
    """Text-aware SASRec (see module docstring). Scores new items from their text vectors."""

    name = "text-sasrec"
    scores_new_items = True
    needs_item_vectors = True
    reads_order = True
    #: options that change only how a fitted network scores (see ``Recommender.with_scoring``)
    scoring_options = frozenset({"score_half_life", "new_items", "new_item_lambda"})

    def __init__(self, *args: Any, **kwargs: Any) -> None:  # the arguments of Recommender.__init__
        super().__init__(*args, **kwargs)
        self.item_vectors_: np.ndarray | None = None
        self.text_mean_: np.ndarray | None = None
        self.text_proj_: np.ndarray | None = None
        self.item_attrs_: np.ndarray | None = None
        #: the catalog's attribute rows as ``attribute_features`` gives them (unscaled), for the content map
        self.content_attrs_: np.ndarray | None = None
        self.id_index_: np.ndarray | None = None
        #: with ``time_gaps`` or ``item_age``: each known user's event timestamps, aligned with ``seen_``
        self.seen_times_: dict[int, np.ndarray] = {}
        #: with ``item_age``: each item's release date in days since the epoch (NaN = unknown)
        self.release_days_: np.ndarray | None = None
        self._age_init: np.ndarray | None = None
        self.net_: Any = None
        #: further networks of a seed ensemble (``refit_seeds`` > 1); their scores are averaged with net_'s
        self.extra_nets_: list[Any] = []
        self.best_epoch_: int = 0
        self.history_: list[dict[str, float]] = []
        self.fit_seconds_: float = 0.0
        self._table_cache: dict[int, Any] = {}

    # ---- runtime helpers -------------------------------------------------------------------
    def _threads(self) -> contextlib.AbstractContextManager[None]:
        return torch_threads(self.runtime.threads)

    def _normalise(self, vectors: np.ndarray) -> np.ndarray:
        """The adaptor's input: normalised text vectors, then the (scaled) attribute block if any."""
        assert self.text_mean_ is not None and self.text_proj_ is not None
        z = ((vectors - self.text_mean_) @ self.text_proj_).astype(np.float32)
        if self.item_attrs_ is not None and self.item_attrs_.shape[1]:
            z = np.hstack([z, self.item_attrs_]).astype(np.float32)
        return z

    def _fit_attributes(self, dataset: Dataset) -> None:
        from tokrec.models.signals import attribute_features, l2_rows

        self.item_attrs_ = None
        attrs, _ = attribute_features(dataset.items)
        # the content map's attribute block (kept whether or not the adaptor sees attributes)
        self.content_attrs_ = attrs.astype(np.float32) if attrs.shape[1] else None
        if not self.config.attributes:
            return
        if attrs.shape[1] == 0:
            log.info("text-sasrec: the catalog has no usable attribute columns; text vectors only")
            return
        self.item_attrs_ = (l2_rows(attrs) * self.config.attr_weight).astype(np.float32)

    def _fit_text_norm(self, vectors: np.ndarray) -> None:
        d = vectors.shape[1]
        mode = self.config.text_norm
        self.text_mean_ = vectors.mean(0).astype(np.float32) if mode != "none" else np.zeros(d, np.float32)
        if mode == "whiten":
            xc = vectors - self.text_mean_
            cov = xc.T @ xc / max(len(xc) - 1, 1)
            vals, vecs = np.linalg.eigh(cov.astype(np.float64))
            vals = np.maximum(vals, 0) + 1e-3 * vals.max()
            self.text_proj_ = (vecs @ np.diag(vals**-0.5) @ vecs.T).astype(np.float32) / np.sqrt(d)
        else:
            self.text_proj_ = np.eye(d, dtype=np.float32)

    def _build_net(self, d_text: int, n_ids: int) -> Any:
        from tokrec.models._sasrec_impl import ItemTable, SASRecNet

        c = self.config
        table = ItemTable(d_text, c.hidden, n_ids if c.id_embeddings else 0, c.n_experts, c.text_dropout)
        return SASRecNet(
            table, c.hidden, c.n_blocks, c.n_heads, c.inner, c.max_len, c.dropout, c.time_gaps, c.item_age
        )

    # ---- fitting ---------------------------------------------------------------------------
    def _fit(self, dataset: Dataset, item_vectors: np.ndarray | None) -> None:
        assert item_vectors is not None
        c = self.config
        if c.hidden % c.n_heads:
            raise ConfigError(f"text-sasrec: hidden ({c.hidden}) must be divisible by n_heads ({c.n_heads})")
        vectors = np.asarray(item_vectors, dtype=np.float32)
        if not np.isfinite(vectors).all():
            raise ConfigError("text-sasrec: item_vectors contain NaN or inf")
        self.item_vectors_ = vectors.copy()
        self._fit_text_norm(vectors)
        self._fit_attributes(dataset)
        all_seqs = dataset.sequences()
        seqs = [s for s in all_seqs if len(s)]
        self.seen_times_ = {}
        times: list[np.ndarray] | None = None
        if c.time_gaps or c.item_age or c.tie_order == "shuffle":
            self.seen_times_ = {u: t for u, t in enumerate(dataset.timestamp_sequences()) if len(t)}
            times = [self.seen_times_[u] for u, s in enumerate(all_seqs) if len(s)]
        self.release_days_ = None
        self._age_init = None
        if c.item_age:
            self._fit_age(dataset)
        counts = np.bincount(
            np.concatenate(seqs) if seqs else np.empty(0, np.int64), minlength=dataset.n_items
        )
        self.id_index_ = np.zeros(dataset.n_items, dtype=np.int64)
        trained = np.flatnonzero(counts > 0)
        self.id_index_[trained] = np.arange(1, len(trained) + 1)
        start = time.perf_counter()
        with self._threads():
            self._fit_torch(seqs, len(trained), times)
        self.fit_seconds_ = time.perf_counter() - start
        self._table_cache = {}

    def _fit_age(self, dataset: Dataset) -> None:
        """Release dates from the catalog, and the age bias's starting point: the log event rate by item age
        at each user's last event (``signals.age_log_rates``; the unknown bin at 0), which is what the
        bias alone would learn; training moves it from there."""
        from tokrec.models.signals import age_log_rates, attribute_features

        release = attribute_features(dataset.items)[1]
        if np.isnan(release).all():
            log.warning("text-sasrec: item_age is on but the catalog has no release-date column; no effect")
        self.release_days_ = (release / 86400.0).astype(np.float32)
        x = dataset.interaction_matrix()
        latest = max((int(t[-1]) for t in self.seen_times_.values()), default=0)
        user_time = np.array(
            [self.seen_times_[u][-1] if u in self.seen_times_ else latest for u in range(dataset.n_users)],
            dtype=np.int64,
        )
        rates = age_log_rates(x, user_time, release, np.flatnonzero(np.asarray(x.sum(axis=0)).ravel() > 0))
        self._age_init = (rates - rates[-1]).astype(np.float32)

    def _side(
        self, times: Sequence[np.ndarray | None] | None
    ) -> tuple[list[np.ndarray] | None, list[np.ndarray] | None]:
        """Per-history side inputs from event timestamps (None where unknown): gap buckets (with
        ``time_gaps``) and times in days (with ``item_age``)."""
        from tokrec.models._sasrec_impl import gap_buckets

        if times is None or not (self.config.time_gaps or self.config.item_age):
            return None, None
        gaps = days = None
        if self.config.time_gaps:
            gaps = [np.zeros(0, np.int64) if t is None else gap_buckets(t) for t in times]
        if self.config.item_age:
            days = [np.zeros(0, np.float32) if t is None else (t / 86400.0).astype(np.float32) for t in times]
        return gaps, days

    def _release(self, device: Any) -> Any:
        import torch

        return None if self.release_days_ is None else torch.from_numpy(self.release_days_).to(device)

    def _fit_torch(self, seqs: list[np.ndarray], n_ids: int, times: list[np.ndarray] | None) -> None:
        """Chooses the epoch count on each user's last event (a validation run per seed with
        ``refit='none'``, else one), then refits as ``config.refit`` says; every run is a
        :class:`tokrec.training.Trainer` fit of :class:`NextItemLoss` batches."""
        import torch

        from tokrec.evaluation.metrics import score_matrix_metrics  # numpy only: no cycle
        from tokrec.models._sasrec_impl import score_histories

        c = self.config
        device = resolve_device(self.runtime.device, what="text-sasrec")
        dtype = resolve_dtype(self.runtime.dtype, device)
        assert self.item_vectors_ is not None and self.id_index_ is not None
        z = torch.from_numpy(self._normalise(self.item_vectors_)).to(device)
        id_index = torch.from_numpy(self.id_index_).to(device)
        val_rows = [j for j, s in enumerate(seqs) if len(s) >= 3]
        val_hist = [seqs[j][:-1] for j in val_rows]
        val_tgt = np.array([seqs[j][-1] for j in val_rows], dtype=np.int64)
        gaps, days = self._side(times)
        val_times = None if times is None else [times[j][:-1] for j in val_rows]
        val_gaps = None if gaps is None else [gaps[j][:-1] for j in val_rows]
        val_days = None if days is None else [days[j][:-1] for j in val_rows]
        release = self._release(device)
        init_lock = threading.Lock()

        def start(seed_offset: int, desc: str) -> tuple[Trainer, np.random.Generator]:
            with init_lock:  # the weights come from the global torch seed: one network at a time
                net, rng = self._init_training(z.shape[1], n_ids, device, seed_offset)
            cfg = TrainerConfig.model_validate(
                {
                    "epochs": c.epochs,
                    "optimizer": "adam",
                    "lr": c.lr,
                    "weight_decay": c.weight_decay,
                    "ema_decay": c.ema_decay,
                    "monitor": "val_ndcg10",
                    "mode": "max",
                    "patience": c.patience,
                    "restore_best": c.refit != "scratch",  # 'scratch' keeps only the epoch count
                    "max_seconds": c.max_seconds if desc == "validation" else None,
                    "progress": self.runtime.progress,
                    "desc": f"text-sasrec ({desc}, seed {c.seed + seed_offset})",
                }
            )
            return Trainer(net, cfg, device=device, dtype=dtype), rng

        def data(net: Any, rng: np.random.Generator, hists: list[np.ndarray], g: Any, d: Any, t: Any) -> Any:
            return self._next_item_loss(net, rng, z, id_index, release, (hists, g, d, t), device, dtype)

        def validate(net: Any) -> dict[str, float]:
            """NDCG@10 of each user's last training event given the events before it."""
            with torch.no_grad():
                net.eval()
                table = net.table(z, id_index)
            side = {"gaps": val_gaps, "days": val_days, "release": release}
            scores = score_histories(net, table, val_hist, batch_size=512, device=device, dtype=dtype, **side)
            return {"val_ndcg10": score_matrix_metrics(scores, val_tgt, exclude=val_hist)["ndcg@10"]}

        def validation_run(seed_offset: int) -> tuple[Trainer, np.random.Generator, TrainResult]:
            """One network trained on the histories without their last event, validated every epoch on
            that event until ``patience`` epochs pass without a gain."""
            trainer, rng = start(seed_offset, "validation")
            loss = data(trainer.module, rng, val_hist, val_gaps, val_days, val_times)
            return trainer, rng, trainer.fit(loss.batches, loss, validate)

        n_val_runs = c.refit_seeds if c.refit == "none" else 1
        runs = self._side_by_side([functools.partial(validation_run, j) for j in range(n_val_runs)], device)
        trainer, rng, result = runs[0]
        self.best_epoch_, self.history_ = result.best_epoch, result.history
        net = trainer.trained
        self.extra_nets_ = []
        if c.refit == "none":  # an ensemble of best checkpoints: each seed had its own validation run
            self.extra_nets_ = [other.trained.to("cpu").eval() for other, _, _ in runs[1:]]
        elif self.best_epoch_ > 0 and c.refit == "continue":
            loss = data(trainer.module, rng, seqs, gaps, days, times)
            trainer.fit(loss.batches, loss, epochs=c.continue_epochs)
            net = trainer.trained
        elif self.best_epoch_ > 0:

            def refit_member(j: int) -> Any:
                member, member_rng = start(j, "refit from scratch")
                loss = data(member.module, member_rng, seqs, gaps, days, times)
                member.fit(loss.batches, loss, epochs=self.best_epoch_)
                return member.trained.to("cpu").eval()

            members = self._side_by_side(
                [functools.partial(refit_member, j) for j in range(c.refit_seeds)], device
            )
            net, self.extra_nets_ = members[0], members[1:]
        self.net_ = net.to("cpu").eval()

    def _next_item_loss(
        self,
        net: Any,
        rng: np.random.Generator,
        z: Any,
        id_index: Any,
        release: Any,
        data: tuple[list[np.ndarray], list[np.ndarray] | None, list[np.ndarray] | None, Any],
        device: Any,
        dtype: str,
    ) -> Any:
        """The training windows of these histories and of their side inputs (``data``: histories, gap
        buckets, days, timestamps), as a ``NextItemLoss``; re-cut every epoch with ``tie_order='shuffle'``
        or ``window_offset='random'``."""
        import torch

        from tokrec.models._sasrec_impl import (
            EpochWindows,
            NextItemLoss,
            earlier_items,
            gap_windows,
            shuffle_ties,
            side_windows,
            training_windows,
        )

        c = self.config
        hists, gaps, days, times = data
        out_items, remap = self._softmax_items()

        def cut(seqs: list[np.ndarray], shifts: np.ndarray | None) -> EpochWindows:
            inputs, targets = training_windows(seqs, c.max_len, c.target_window, shifts)
            return EpochWindows(
                inputs,
                remap(targets),
                None if gaps is None else gap_windows(gaps, c.max_len, shifts),
                None if days is None else side_windows(days, c.max_len, np.nan, np.float32, shifts),
                earlier_items(seqs, c.max_len, shifts) if c.mask_history else None,
            )

        def resample(r: np.random.Generator) -> EpochWindows:
            seqs = hists if c.tie_order == "given" else shuffle_ties(hists, times, r)
            shifts = r.integers(0, c.max_len, len(hists)) if c.window_offset == "random" else None
            return cut(seqs, shifts)

        first = cut(hists, None)
        varies = c.tie_order == "shuffle" or c.window_offset == "random"
        return NextItemLoss(
            net,
            z,
            id_index,
            first.inputs,
            first.targets,
            batch_size=c.batch_size,
            id_dropout=c.id_dropout,
            rng=rng,
            device=device,
            dtype=dtype,
            out_items=None if out_items is None else torch.from_numpy(out_items).to(device),
            gap_inputs=first.gap_inputs,
            gap_dropout=c.gap_dropout,
            day_inputs=first.day_inputs,
            release=release,
            resample=resample if varies else None,
            earlier=first.earlier,
        )

    def _side_by_side(self, jobs: list[Callable[[], _T]], device: Any) -> list[_T]:
        """Runs independent trainings (the members of a seed ensemble) at the same time on CPU, each in
        its own Python thread with its share of the torch threads (PyTorch's kernels release the GIL).
        On ml-100k's two-network refit this cut the longest fit from 964 s (one after the other, two
        threads each) to 842 s (BENCHMARKS.md). Results in job order; on a GPU, or with one thread, one
        after the other."""
        import torch

        workers = min(len(jobs), self.runtime.threads or torch.get_num_threads())
        if workers <= 1 or device.type != "cpu":
            return [job() for job in jobs]
        old = torch.get_num_threads()
        share = max(1, old // workers)

        def run(job: Callable[[], _T]) -> _T:
            torch.set_num_threads(share)  # OpenMP's thread count is per calling thread
            return job()

        torch.set_num_threads(share)
        try:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                return list(pool.map(run, jobs))
        finally:
            torch.set_num_threads(old)

    def _softmax_items(self) -> tuple[np.ndarray | None, Any]:
        """Rows the softmax runs over (None = all) and a function mapping target rows to positions."""
        assert self.id_index_ is not None
        if self.config.softmax_items == "all":
            return None, lambda t: t
        out = np.flatnonzero(self.id_index_ > 0)
        pos = np.full(len(self.id_index_), -100, dtype=np.int64)
        pos[out] = np.arange(len(out))

        def remap(t: np.ndarray) -> np.ndarray:
            return np.where(t >= 0, pos[np.maximum(t, 0)], -100)

        return out, remap

    def _init_training(
        self, d_text: int, n_ids: int, device: Any, seed_offset: int = 0
    ) -> tuple[Any, np.random.Generator]:
        """A new network on ``device`` and the numpy generator of its training, both from the seed
        ``seed + seed_offset``; training's torch draws come from the network's own generator."""
        import torch

        from tokrec.models._sasrec_impl import set_generator

        rng = seed_all(self.config.seed + seed_offset)
        net = self._build_net(d_text, n_ids)
        # training's random draws come from the network's own stream (networks may train side by side)
        set_generator(net, torch.Generator(device=device).manual_seed(self.config.seed + seed_offset))
        if net.age_bias is not None and self._age_init is not None:
            with torch.no_grad():
                net.age_bias.copy_(torch.from_numpy(self._age_init))
        return net.to(device), rng

    # ---- scoring ---------------------------------------------------------------------------
    def _nets(self) -> list[Any]:
        return [self.net_, *self.extra_nets_]

    def _table(self, member: int = 0) -> Any:
        """The item table of network ``member`` (0 = ``net_``), cached until the items change."""
        import torch

        if member not in self._table_cache:
            assert self.item_vectors_ is not None and self.id_index_ is not None
            net = self._nets()[member]
            with torch.no_grad():
                net.eval()
                z = torch.from_numpy(self._normalise(self.item_vectors_))
                table = net.table(z, torch.from_numpy(self.id_index_))
            if self.config.new_items == "content-map":
                table = self._map_new_rows(table)
            self._table_cache[member] = table
        return self._table_cache[member]

    def content_features(self) -> np.ndarray:
        """The content map's input per item: the ``tokrec`` model's item features ``F_i = [unit text
        vector, 0.3 * attributes, 1]`` (:func:`tokrec.models.signals.content_features`), float64."""
        from tokrec.models.signals import content_features

        assert self.item_vectors_ is not None
        return content_features(self.item_vectors_, self.content_attrs_).astype(np.float64)

    def _map_new_rows(self, table: Any) -> Any:
        """Replaces the rows of items without training events (``id_index == 0``) by a ridge regression,
        fitted on the trained items, from their content features to their table rows."""
        import torch

        from tokrec.models.signals import ridge

        assert self.id_index_ is not None
        new = self.id_index_ == 0
        if not new.any() or new.all():
            return table
        f = self.content_features()
        rows = table.numpy().astype(np.float64)
        w = ridge(f[~new], rows[~new], self.config.new_item_lambda)
        out = table.clone()
        out[torch.from_numpy(np.flatnonzero(new))] = torch.from_numpy((f[new] @ w).astype(np.float32))
        return out

    def _score_seqs(
        self, histories: Sequence[np.ndarray], times: Sequence[np.ndarray | None] | None = None
    ) -> np.ndarray:
        """Scores of every item after each history (``times``: their event timestamps, None = unknown); a
        seed ensemble averages its members' scores (logits, or log-mixtures with ``score_half_life``)."""
        import torch

        from tokrec.models._sasrec_impl import score_histories

        cpu = torch.device("cpu")
        gaps, days = self._side(times)
        hl = self.config.score_half_life
        side = {"gaps": gaps, "days": days, "release": self._release(cpu), "device": cpu, "dtype": "float32"}
        total: np.ndarray | None = None
        with self._threads():
            for j, net in enumerate(self._nets()):
                s = score_histories(
                    net, self._table(j), histories, batch_size=512 if hl is None else 64, half_life=hl, **side
                )
                total = s if total is None else total + s
        assert total is not None
        return total / len(self._nets()) if len(self._nets()) > 1 else total

    def _score_users(self, user_rows: np.ndarray) -> np.ndarray:
        empty = np.empty(0, dtype=np.int64)
        histories = [self.seen_.get(int(u), empty) for u in user_rows]
        times = [self.seen_times_.get(int(u)) for u in user_rows] if self.seen_times_ else None
        return self._score_seqs(histories, times)

    def user_timestamps(self, user_row: int) -> np.ndarray | None:
        return self.seen_times_.get(int(user_row))

    def with_histories(self, dataset: Dataset) -> TextSASRec:
        """A copy that shares this fitted model's networks but knows ``dataset``'s users,
        histories and timestamps (the same item catalog, in the same order); this model is unchanged.

        For a network fitted on a leave-last-out validation split cut from ``dataset`` (each user's last
        event held out), the copy scores each user from the whole history, the held-out event included:
        that event was missing only as a training target, so the network need not be trained again (the
        tuner reuses its blend part this way, :func:`tokrec.tuning.fit_tuned`)."""
        self._check_fitted()
        assert self.item_vocab_ is not None
        if dataset.item_vocab.to_list() != self.item_vocab_.to_list():
            raise ConfigError(
                "with_histories: the dataset's item catalog is not the one the model was fitted on"
            )
        clone = copy.copy(self)
        clone.user_vocab_ = dataset.user_vocab
        clone.seen_ = {u: s for u, s in enumerate(dataset.sequences()) if len(s)}
        if self.config.time_gaps or self.config.item_age:
            clone.seen_times_ = {u: t for u, t in enumerate(dataset.timestamp_sequences()) if len(t)}
        clone._table_cache = {}
        return clone

    def _score_history(self, item_rows: np.ndarray, timestamps: np.ndarray | None = None) -> np.ndarray:
        rows = np.asarray(item_rows, dtype=np.int64)
        times = None
        if timestamps is not None:
            if len(timestamps) != len(rows):
                raise ConfigError(f"{len(timestamps)} timestamps for a history of {len(rows)} items")
            times = [np.asarray(timestamps, dtype=np.int64)]
        return self._score_seqs([rows], times)[0]

    # ---- new items -------------------------------------------------------------------------
    def add_items(
        self,
        item_ids: Sequence[str],
        item_vectors: np.ndarray,
        item_attributes: np.ndarray | None = None,
        item_release: np.ndarray | None = None,
        *,
        items: Any | None = None,
    ) -> None:
        """Adds items (or replaces the text vectors of known ones) from their text vectors alone.

        ``items`` (the catalog rows, as the service passes them to every model) is not read: text-sasrec
        takes attribute rows and release dates as arrays (``item_attributes``, ``item_release``).

        Args:
            item_ids: external ids, one per row of ``item_vectors``.
            item_vectors: ``(len(item_ids), D)`` vectors from the same encoder used in ``fit``.
            item_attributes: for a catalog with attribute columns, the new items' attribute rows in the
                layout :func:`tokrec.models.signals.attribute_features` gave the fitted catalog (unscaled;
                ``content_attrs_.shape[1]`` columns; used by the adaptor with ``attributes=True`` and by
                the content map); None gives new items a zero block (text only) and leaves known items'
                attributes as they are.
            item_release: for a model fitted with ``item_age=True``, the items' release dates (epoch
                seconds, NaN = unknown); None leaves new items' release unknown (the "unknown" age bin).

        New items get no ID embedding, so they are scored from their content (with ``new_items=
        'content-map'``, through the map fitted on the trained items' rows); no retraining happens.
        """
        self._check_fitted()
        assert self.item_vocab_ is not None and self.item_vectors_ is not None and self.id_index_ is not None
        vectors = np.asarray(item_vectors, dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape != (len(item_ids), self.item_vectors_.shape[1]):
            raise ConfigError(
                f"add_items: expected item_vectors of shape ({len(item_ids)}, {self.item_vectors_.shape[1]}), got {vectors.shape}"
            )
        if not np.isfinite(vectors).all():
            raise ConfigError("add_items: item_vectors contain NaN or inf")
        # every check before the first change: a refused call leaves the model as it was
        given = days = None
        fitted_attrs = self.content_attrs_ if self.content_attrs_ is not None else self.item_attrs_
        if fitted_attrs is not None and item_attributes is not None:
            given = np.asarray(item_attributes, dtype=np.float32)
            p = fitted_attrs.shape[1]
            if given.shape != (len(item_ids), p):
                raise ConfigError(
                    f"add_items: expected item_attributes of shape ({len(item_ids)}, {p}), got {given.shape}"
                )
        if self.release_days_ is not None and item_release is not None:
            rel = np.asarray(item_release, dtype=np.float64)
            if rel.shape != (len(item_ids),):
                raise ConfigError(
                    f"add_items: expected item_release of shape ({len(item_ids)},), got {rel.shape}"
                )
            days = (rel / 86400.0).astype(np.float32)
        vocab, rows = self.item_vocab_.appended(item_ids)  # this model's vocabulary is not changed
        n_new = len(vocab) - len(self.item_vocab_)
        self.item_vectors_ = grown(self.item_vectors_, n_new, rows, vectors)
        self.id_index_ = grown(self.id_index_, n_new, rows, None)
        if self.content_attrs_ is not None:  # new items without given attributes get a zero block
            self.content_attrs_ = grown(self.content_attrs_, n_new, rows, given)
        if self.item_attrs_ is not None:
            from tokrec.models.signals import l2_rows

            scaled = None if given is None else l2_rows(given) * self.config.attr_weight
            self.item_attrs_ = grown(self.item_attrs_, n_new, rows, scaled)
        if self.release_days_ is not None:
            self.release_days_ = grown(self.release_days_, n_new, rows, days, np.nan)
        self.item_vocab_ = vocab
        self._table_cache = {}

    # ---- persistence -----------------------------------------------------------------------
    state = (
        "item_vectors_",
        "text_mean_",
        "text_proj_",
        "id_index_",
        "item_attrs_",
        "content_attrs_",
        "release_days_",
        "seen_times_",
        "best_epoch_",
        "history_",
        "fit_seconds_",
        "net_",  # the networks last: rebuilding them needs the item vectors' and attributes' widths
        "extra_nets_",
    )

    def _encode_state(self, field: str, value: Any) -> Any:
        if field == "net_":
            return _weights(value)
        if field == "extra_nets_":
            return [_weights(net) for net in value]
        return value

    def _decode_state(self, field: str, value: Any) -> Any:
        if field == "net_":
            return self._restore_net(value)
        if field == "extra_nets_":
            return [self._restore_net(w) for w in value]
        return value

    def _restore_net(self, weights: dict[str, np.ndarray]) -> Any:
        """A network with the saved ``weights`` (built from the widths they and the restored item arrays
        imply)."""
        import torch

        assert self.item_vectors_ is not None
        ids = weights.get("table.id_emb.weight")
        n_attrs = 0 if self.item_attrs_ is None else self.item_attrs_.shape[1]
        net = self._build_net(self.item_vectors_.shape[1] + n_attrs, 0 if ids is None else len(ids) - 1)
        net.load_state_dict({k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in weights.items()})
        return net.eval()

    def _reset_caches(self) -> None:
        self._table_cache = {}


def _weights(net: Any) -> dict[str, np.ndarray]:
    """A network's weights as float32 numpy arrays (its ``state_dict``)."""
    return {k: v.detach().cpu().float().numpy() for k, v in net.state_dict().items()}
