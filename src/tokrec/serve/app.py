"""The HTTP service: ``create_app(model_dir, settings=...)`` builds a FastAPI app around a model bundle.

Nothing is built at import time. Endpoints (OpenAPI docs at ``/docs``):

- ``POST /recommend`` ``{"user_id": ..., "k": 10}`` or ``{"history": [item ids, oldest first], "k": 10}``,
  optional ``candidates``, ``exclude``, ``exclude_seen``, ``explain``: top-``k`` items with a score and
  ``because`` (similar history items, shared attribute values). Unknown item ids are ignored and
  listed in ``ignored``; a history or candidate list in which NO id is known gets 422. See
  :mod:`tokrec.serve.engine` for how scores are made.
- ``POST /events`` ``{"events": [{"user_id", "item_id", "event", "timestamp", "value"}]}``: logged to
  SQLite, then visible to the next ``/recommend`` at once. Events on unknown items are ignored and
  reported (``ignored``: index, item_id, reason); a batch with no event on a known item gets 422.
- ``POST /items`` ``{"items": [{"item_id": ..., <attributes>}]}``: rendered with the bundle's item
  template, encoded through the embedding cache, logged, and searchable at once. An existing id is
  updated (attributes merged, vector replaced).
- ``GET /items?q=...`` title search, ``GET /items/{id}``, ``GET /items/{id}/similar?k=10`` (an id that
  ends in ``/similar`` is fetched with its slashes encoded, ``%2F``), ``GET /health``, ``GET /metrics``
  (Prometheus text; ``?format=json``), ``GET /`` the web page; ``HEAD /`` and ``HEAD /health`` too.

Safety: with an API key set, the write endpoints need the ``X-API-Key`` header (constant-time
compare); bodies over ``max_body_bytes`` get 413, non-JSON bodies 415, invalid ones (and bodies json
cannot read: not UTF-8, nested too deeply) 422 with the field and reason; lists and ``k`` are capped by the settings. Any unexpected error is logged and
answered as a JSON 500 (a bug: the fuzz test checks none occurs).
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastapi import FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationError, create_model, model_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from tokrec.errors import ConfigError, TokrecError, printable
from tokrec.serve import schemas as S
from tokrec.serve.bundle import Bundle, load_bundle
from tokrec.serve.engine import Engine, EngineOptions
from tokrec.serve.index import ANN_FILE, HNSW_EF_SEARCH, AnnKind, VectorIndex
from tokrec.serve.metrics import Metrics
from tokrec.serve.state import StateLog
from tokrec.serve.store import Event, ItemRecord, make_store

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"
#: endpoints that change state: they need the API key when one is set
WRITE_PATHS = frozenset({"/events", "/items", "/admin/reload"})


class ServeSettings(BaseModel):
    """Server settings (unknown keys are rejected).

    Attributes:
        api_key: when set, ``POST /events`` and ``POST /items`` need this ``X-API-Key``.
        redis_url: share online state through Redis (``redis://host:port/db``); default in memory.
        redis_prefix: key prefix in Redis (one per deployment).
        state_path: the SQLite state log (default ``MODEL_DIR.state.sqlite`` beside the model directory, so
            that a refit, which replaces the directory, never touches the online state).
        persist: keep the state log at all (False: online state is lost on restart).
        ann: force (True) or forbid (False) the ANN index; None: by catalog size (>= 20,000 items).
        ann_kind: ``ivf`` (IVF-Flat, default) or ``hnsw``.
        reload_interval: seconds between checks for a refitted model directory (0: never); a new one is
            loaded beside the running one and swapped in without a restart.
        policy: serve through a bandit policy (:class:`tokrec.bandits.PolicyConfig` fields, e.g.
            ``{"policy": "linucb", "mode": "shared"}``) over the catalog's vectors; it learns from every
            ``POST /events`` (reward: the event's value, 0 for a negative event) in every process, and is
            rebuilt from the state log on restart.
        explore_share: with a policy, the share of each list's slots given to exploration (a request's
            ``explore_share`` overrides it); above 0 needs a policy.
        rerank: re-rank every list (``mmr:W``, ``calibration:W``, ``tail:W``, ..., chained with ``+``;
            :mod:`tokrec.rerank`); a request's ``rerank`` overrides it. Exploration and re-ranking do not
            combine, so a default re-ranker with a policy needs ``explore_share`` 0 (refused otherwise);
            per request, an explicit ``rerank`` or ``explore_share`` wins over the other's server default
            (:meth:`tokrec.serve.engine.Engine.recommend`).
    """

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    api_key: str | None = None
    redis_url: str | None = None
    redis_prefix: str = "tokrec"
    state_path: Path | None = None
    persist: bool = True
    max_body_bytes: int = Field(1_000_000, ge=1024, description="a larger request body gets 413")
    max_k: int = Field(1000, ge=1, description="the largest k a request may ask for (also in the schema)")
    max_history: int = Field(1000, ge=1, description="items in a request's history")
    max_candidates: int = Field(100_000, ge=1, description="items in a request's candidates or exclude")
    max_events: int = Field(10_000, ge=1, description="events in one POST /events")
    max_items: int = Field(1000, ge=1, description="items in one POST /items")
    user_history_window: int = Field(200, ge=1, description="a known user's latest events that a query uses")
    ann: bool | None = None
    ann_kind: AnnKind = "ivf"
    reload_interval: float = Field(2.0, ge=0)
    policy: dict[str, Any] | None = None
    explore_share: float = Field(0.0, ge=0.0, le=1.0)
    rerank: str | None = None
    ef_search: int = Field(HNSW_EF_SEARCH, ge=1, description="HNSW search breadth (ann_kind hnsw)")
    nprobe: int | None = Field(None, ge=1, description="IVF lists searched (None: the index's default)")
    negative_events: list[str] = Field(
        ["dislike", "skip", "hide"], description="event types that only mark an item as seen"
    )
    facets: list[str] | None = Field(
        None, description="item columns a request may filter on (None: found from the catalog)"
    )
    blocked: list[str] = Field([], description="item ids never recommended")
    preload_encoder: bool = Field(
        True,
        description="load and run the encoder for POST /items in a background thread at start-up, so the "
        "first new item does not wait for it (False: on the first new item)",
    )
    cache: str | None = Field(
        "default", description="the embedding cache for items added online (None: no cache)"
    )

    @model_validator(mode="after")
    def _exploration_or_rerank(self) -> ServeSettings:
        from tokrec.rerank import parse_rerank

        parse_rerank(self.rerank, auto=False)  # a bad spec fails at start-up, not on every request
        if self.explore_share > 0 and self.policy is None:
            raise ValueError("explore_share above 0 needs a policy")
        if self.rerank and self.policy is not None and self.explore_share > 0:
            raise ValueError(
                "a default re-ranker (rerank) and a policy's exploration (explore_share above 0) do not "
                "combine: give explore_share 0 to re-rank the policy's lists, or no rerank"
            )
        return self


class Service:
    """Everything a request handler needs; one per app."""

    def __init__(
        self, bundle: Bundle, settings: ServeSettings, *, encoder: Any = None, template: Any = None
    ) -> None:
        self.bundle = bundle.info()  # the engine holds the model and the vectors; nothing else keeps them
        self.settings = settings
        self.metrics = Metrics()
        self.store = make_store(
            settings.redis_url, prefix=settings.redis_prefix, stream=settings.policy is not None
        )
        if not self.store.ping():
            raise ConfigError(f"cannot reach Redis at {settings.redis_url}")
        self.engine = self._make_engine(bundle)
        self.log: StateLog | None = None
        if settings.persist:
            path = state_path(bundle.path, settings.state_path)
            self.log = StateLog(path, fingerprint=bundle.encoder.fingerprint, dim=int(bundle.meta["dim"]))
            if self.store.claim_replay():
                self.engine.replay(_valid_items(self.log.iter_items()), _valid_events(self.log.iter_events()))
        self.engine.sync()
        self._bundle_stamp = _bundle_stamp(bundle.path)
        self._reloading = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        if settings.reload_interval > 0:
            self._watcher = threading.Thread(target=self._watch, name="tokrec-reload", daemon=True)
            self._watcher.start()
        self._encoder = encoder
        #: the encoder's state, reported by /health: lazy (built on the first new item), loading, ready, failed
        self.encoder_state = "ready" if encoder is not None else "lazy"
        self._template = template
        self._encoder_lock = threading.Lock()  # one writer of the catalog, and the encoder built once
        self.fusion = _fusion_of(bundle.path)
        self.started = time.time()
        self.reloads = 0

    def _make_engine(self, bundle: Bundle) -> Engine:
        st = self.settings
        index = VectorIndex(
            bundle.item_vectors,
            ann=st.ann,
            ann_path=bundle.path / ANN_FILE,
            kind=st.ann_kind,
            ef_search=st.ef_search,
            nprobe=st.nprobe,
        )
        opts = EngineOptions(
            user_history_window=st.user_history_window,
            negative_events=tuple(st.negative_events),
            facets=tuple(st.facets) if st.facets is not None else None,
            blocked=tuple(st.blocked),
            explore_share=st.explore_share,
            rerank=st.rerank,
        )
        policy = None
        if st.policy is not None:
            from tokrec.bandits import BanditPolicy

            policy = BanditPolicy(st.policy).fit_items(list(bundle.items["item_id"]), bundle.item_vectors)
        bundle.model.prepare()  # e.g. tokrec's retrieval index, before the first request rather than in it
        return Engine(
            bundle.model, bundle.items, bundle.item_vectors, self.store, opts, index=index, policy=policy
        )

    # ---- model lifecycle -------------------------------------------------------------------------
    def reload(self) -> bool:
        """Loads the model directory again if it was replaced (a refit) and swaps it in; returns whether
        it did. The new engine is built beside the running one (requests keep being answered by the old
        one), takes the items added online from the shared store through the new model's cold path, and
        replaces it in one assignment; online events live in the store and are not touched."""
        with self._reloading:
            stamp = _bundle_stamp(self.bundle.path)
            if stamp is None or stamp == self._bundle_stamp:
                return False
            bundle = load_bundle(self.bundle.path)
            if bundle.encoder.fingerprint != self.bundle.encoder.fingerprint or int(
                bundle.meta["dim"]
            ) != int(self.bundle.meta["dim"]):
                raise ConfigError(
                    "the refitted model uses another encoder: its vectors are not comparable with the online "
                    "items' (restart the service with a new --state to serve it)"
                )
            engine = self._make_engine(bundle)
            engine.sync()
            self.bundle, self.engine, self._bundle_stamp = bundle.info(), engine, stamp
            self.fusion = _fusion_of(bundle.path)
            self.reloads += 1
            log.warning("serving the refitted model in %s (%d items)", bundle.path, engine.n_items)
            return True

    def _watch(self) -> None:
        while not self._stop.wait(self.settings.reload_interval):
            try:
                self.reload()
            except Exception:  # a half-written or broken directory: keep serving the old model
                log.exception("cannot load the refitted model; still serving the previous one")

    # ---- encoding new items ----------------------------------------------------------------------
    def encoder(self) -> Any:
        """The encoder for new items, built on first use; callers hold ``_encoder_lock`` (``POST /items`` and
        the start-up preload), so it is built once."""
        if self._encoder is None:
            self._encoder = _CountingEncoder(self.bundle.make_encoder(), self.metrics)
        return self._encoder

    def preload_encoder(self) -> None:
        """Builds the encoder and runs it once (weights read, kernels initialised: ~3 s for
        all-MiniLM-L6-v2 on 2 cores), so the first ``POST /items`` pays only its own encoding. Run in a
        background thread at start-up; a failure is logged and left to the first new item to report."""
        try:
            with self._encoder_lock:  # a new item arriving meanwhile waits for it rather than loading another
                self.encoder().inner.encode(["tokrec"])  # the inner encoder: not counted as an item's text
        except Exception:
            self.encoder_state = "failed"
            log.exception("could not preload the encoder for new items; POST /items will try again")
        else:
            self.encoder_state = "ready"

    def template(self) -> Any:
        if self._template is None:
            self._template = self.bundle.make_template()
        return self._template

    def encode_items(
        self, frame: pd.DataFrame, vectors: list[dict[str, list[float]] | None] | None = None
    ) -> np.ndarray:
        """Vectors ``(n, d)`` of new items, through the embedding cache; for a fused bundle, fused with the
        items' own vectors of the extra sets where given (``vectors[j]``: set name -> vector), the rest
        predicted from the text as fit did."""
        from tokrec.features import item_vectors

        encoder, template = self.encoder(), self.template()
        self.metrics.inc("embedding_texts_total", len(frame))
        text = np.asarray(
            item_vectors(frame, encoder=encoder, cache=self.settings.cache, template=template),
            dtype=np.float32,
        )
        self.encoder_state = "ready"  # it encodes (after a failed preload too)
        if self.fusion is None:
            return text
        # a bundle fitted with --item-vectors: a set an item does not bring is predicted from its text (or
        # zero), exactly as fit treated catalog items missing from that set
        cfg = self.fusion.config
        given = vectors or [None] * len(frame)
        extras: list[np.ndarray | None] = []
        present: list[np.ndarray | None] = []
        for name, dim in zip(cfg.names, cfg.dims, strict=True):
            block = np.zeros((len(frame), dim), dtype=np.float32)
            mask = np.zeros(len(frame), dtype=bool)
            for j, v in enumerate(given):
                if v and name in v:
                    block[j], mask[j] = v[name], True
            extras.append(block)
            present.append(mask)
        return np.asarray(self.fusion.fuse(text, extras, present), dtype=np.float32)

    def check_vectors(self, vectors: dict[str, list[float]] | None) -> None:
        """Refuses (ConfigError) extra vectors the model was not fitted with, or of the wrong length."""
        if not vectors:
            return
        if self.fusion is None:
            raise ConfigError(
                "vectors: this model was fitted without extra vector sets (tokrec fit --item-vectors)"
            )
        dims = dict(zip(self.fusion.config.names, self.fusion.config.dims, strict=True))
        for name, v in vectors.items():
            if name not in dims:
                raise ConfigError(f"vectors: no set {name[:64]!r} in this model (sets: {', '.join(dims)})")
            if len(v) != dims[name]:
                raise ConfigError(f"vectors[{name!r}]: {len(v)} numbers, the set has {dims[name]}")

    def close(self) -> None:
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        if self.log is not None:
            self.log.close()
        self.store.close()


class _CountingEncoder:
    """Forwards to an encoder and counts the texts that reached it (cache misses)."""

    def __init__(self, inner: Any, metrics: Metrics) -> None:
        self.inner = inner
        self.metrics = metrics

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    @property
    def fingerprint(self) -> str:
        return str(self.inner.fingerprint)

    def encode(self, texts, *, progress: bool = False) -> np.ndarray:
        self.metrics.inc("embedding_encoded_total", len(texts))
        return self.inner.encode(texts, progress=progress)

    def count_tokens(self, texts) -> list[int]:
        return self.inner.count_tokens(texts)

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name == "encode_windows":  # the cache's way in (HFEncoder): counted like encode

            def counted(texts: Any, window: int | None = None) -> Any:
                self.metrics.inc("embedding_encoded_total", len(texts))
                return attr(texts, window)

            return counted
        return attr


def create_app(
    model_dir: str | Path,
    *,
    settings: ServeSettings | dict[str, Any] | None = None,
    encoder: Any = None,
    template: Any = None,
) -> FastAPI:
    """Builds the app around the bundle in ``model_dir``.

    Args:
        model_dir: a directory written by ``tokrec fit``.
        settings: :class:`ServeSettings` or a dict of them.
        encoder: an encoder for new items (default: rebuilt from the bundle's spec on first use).
        template: an item template (default: the bundle's).

    Raises:
        ConfigError: the bundle, settings, state log or Redis are unusable.
    """
    if not isinstance(settings, ServeSettings):
        try:
            settings = ServeSettings(**(settings or {}))
        except Exception as e:
            raise ConfigError(f"invalid serve settings: {e}") from e
    service = Service(load_bundle(model_dir), settings, encoder=encoder, template=template)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.preload_encoder and service._encoder is None:
            service.encoder_state = "loading"
            threading.Thread(target=service.preload_encoder, name="tokrec-encoder", daemon=True).start()
        yield
        service.close()

    app = FastAPI(
        title="tokrec",
        summary="Recommendations from language-model item vectors, with online events and items.",
        version=_version(),
        lifespan=lifespan,
        docs_url=None,  # served below from the swagger-ui-bundle package: /docs works offline
        redoc_url=None,
    )
    app.state.service = service
    _add_handlers(app)
    _add_routes(app, service)
    _add_docs(app)  # before /static: its assets live under /static/docs
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    app.add_middleware(_Guard, service=service)
    return app


def app_from_env() -> FastAPI:
    """The app for ``tokrec serve`` worker processes: the model directory and the settings come from the
    environment (``TOKREC_SERVE_MODEL``, ``TOKREC_SERVE_SETTINGS`` as JSON), set by the command."""
    settings = ServeSettings.model_validate(json.loads(os.environ.get("TOKREC_SERVE_SETTINGS", "{}")))
    limit_math_threads(int(os.environ.get("TOKREC_SERVE_THREADS", "1")))
    return create_app(os.environ["TOKREC_SERVE_MODEL"], settings=settings)


def limit_math_threads(n: int) -> None:
    """Caps the BLAS / OpenMP threads of this process at ``n`` (``tokrec serve --threads``, default 1).

    A request's products are small (a history row, a few thousand candidate rows): a multi-threaded BLAS
    spends more time waking and synchronising threads than computing, and under concurrent requests its
    threads fight the request threads for the same cores (measured: a 3,500 x 410 matrix-vector product
    0.09 ms on one thread, 16 ms with the default threads on a busy 2-core machine). Requests run in
    parallel instead, on uvicorn's thread pool or ``--workers`` processes."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=max(1, int(n)))


def _add_docs(app: FastAPI) -> None:
    """``/docs``: Swagger UI from the ``swagger-ui-bundle`` package's files, not a CDN (works offline)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from swagger_ui_bundle import swagger_ui_path

    app.mount("/static/docs", StaticFiles(directory=str(swagger_ui_path)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> Response:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="tokrec API",
            swagger_js_url="/static/docs/swagger-ui-bundle.js",
            swagger_css_url="/static/docs/swagger-ui.css",
            swagger_favicon_url="/static/docs/favicon-32x32.png",
        )


def _version() -> str:
    from tokrec import __version__

    return __version__


# ---- middleware, errors ------------------------------------------------------------------------
class _Guard:
    """Body-size and content-type limits on writes, and per-route metrics (pure ASGI, cheap)."""

    def __init__(self, app, service: Service) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        status = [500]
        method = scope["method"]

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            early = self._check(scope, method)
            if early is not None:
                await early(scope, receive, send_status)
            else:
                if method in ("POST", "PUT", "PATCH"):
                    receive = _limited(receive, self.service.settings.max_body_bytes)
                await self.app(scope, receive, send_status)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", None) or (
                "/static" if scope["path"].startswith("/static/") else "unmatched"
            )
            self.service.metrics.observe(method, path, status[0], time.perf_counter() - t0)

    def _check(self, scope, method: str) -> Response | None:
        if method not in ("POST", "PUT", "PATCH"):
            return None
        headers = dict(scope["headers"])
        key = self.service.settings.api_key
        if key and scope["path"] in WRITE_PATHS:  # before the body is read or validated
            given = headers.get(b"x-api-key", b"")
            if not hmac.compare_digest(given, key.encode("utf-8")):
                return JSONResponse(
                    {"error": "missing or wrong X-API-Key"},
                    status_code=401,
                    headers={"WWW-Authenticate": "X-API-Key"},
                )
        cl = headers.get(b"content-length")
        if cl is not None:
            try:
                n = int(cl)
            except ValueError:
                return _error(400, "invalid Content-Length header")
            if n > self.service.settings.max_body_bytes:
                return _error(
                    413,
                    f"request body of {n} bytes is over the limit of {self.service.settings.max_body_bytes}",
                )
        ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if ctype != b"application/json":
            shown = ctype.decode("latin-1")[:100] or "none"
            return _error(415, f"Content-Type must be application/json (got {shown})")
        return None


def _limited(receive, limit: int):
    total = [0]

    async def wrapped():
        message = await receive()
        if message["type"] == "http.request":
            total[0] += len(message.get("body", b""))
            if total[0] > limit:
                raise HTTPException(413, f"request body is over the limit of {limit} bytes")
        return message

    return wrapped


def _error(status: int, message: str, detail: Any = None) -> JSONResponse:
    body: dict[str, Any] = {"error": message}
    if detail is not None:
        body["detail"] = detail
    return JSONResponse(body, status_code=status)


def _add_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        detail = []
        for e in exc.errors()[:20]:
            loc = [x if isinstance(x, int | str) else str(x) for x in e.get("loc", ())]
            item = {"loc": loc, "msg": str(e.get("msg", ""))[:300], "type": str(e.get("type", ""))}
            if e.get("type") == "json_invalid" and isinstance(e.get("ctx"), dict):
                at = loc[1] if len(loc) > 1 else "?"
                return _error(422, f"invalid JSON at character {at}: {str(e['ctx'].get('error', ''))[:200]}")
            detail.append(item)
        first = detail[0] if detail else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(x) for x in first["loc"][1:]) or "body"
        return _error(422, f"invalid request: {where}: {first['msg']}", detail)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400 and exc.detail == "There was an error parsing the body":
            # FastAPI's answer to a body json cannot read at all (not UTF-8, nested too deep): invalid JSON
            return _error(422, "invalid JSON: the body is not UTF-8 text, or it is nested too deeply")
        return JSONResponse(
            {"error": str(exc.detail)}, status_code=exc.status_code, headers=getattr(exc, "headers", None)
        )

    @app.exception_handler(TokrecError)
    async def _tokrec(request: Request, exc: TokrecError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error(500, "internal error (logged)")


def _cap(name: str, n: int, limit: int) -> None:
    if n > limit:
        raise HTTPException(422, f"{name}: {n} is over the limit of {limit}")


# ---- routes ------------------------------------------------------------------------------------
def _add_routes(app: FastAPI, service: Service) -> None:
    _add_recommend_route(app, service)
    _add_write_routes(app, service)
    _add_item_routes(app, service)
    _add_ops_routes(app, service)


def _add_recommend_route(app: FastAPI, service: Service) -> None:
    """POST /recommend."""
    st = service.settings
    request_model = _recommend_request(st.max_k)

    def recommend(req: S.RecommendRequest) -> dict[str, Any]:
        """Top-k items for a known user or a visitor's history, with explanations (plain ``def``: FastAPI runs
        it in its thread pool, never on the event loop)."""
        _cap("history length", len(req.history or ()), st.max_history)
        _cap("candidates", len(req.candidates or ()), st.max_candidates)
        _cap("exclude", len(req.exclude or ()), st.max_candidates)
        engine = service.engine
        engine.sync()
        for name, ids in (("history", req.history), ("candidates", req.candidates)):
            if ids and not any(i in engine.row_of for i in ids):
                raise HTTPException(
                    422,
                    f"{name}: none of the {len(ids)} item ids is in the catalog (first: {ids[0][:100]!r})",
                )
        try:
            res = engine.recommend(req)
        except ConfigError as e:  # e.g. a visitor's history for a model that cannot score one
            raise HTTPException(422, str(e)) from e
        items = [
            {
                "item_id": r.item_id,
                "score": r.score,
                "label": r.label,
                "because": r.because,
                "explored": r.explored,
            }
            for r in res.items
        ]
        return {
            "items": items,
            "ignored": res.ignored[:1000],
            "mode": res.mode,
            "history_length": res.history_length,
        }

    recommend.__annotations__ = {"req": request_model, "return": dict[str, Any]}  # this server's max_k
    app.post(
        "/recommend", response_model=S.RecommendResponse, response_model_exclude_none=True, tags=["recommend"]
    )(recommend)


def _recommend_request(max_k: int) -> type[S.RecommendRequest]:
    """The request model with this server's ``max_k`` as ``k``'s bound, so that the OpenAPI schema states
    the limit the server enforces."""
    return create_model(
        "RecommendRequest",
        __base__=S.RecommendRequest,
        k=(StrictInt, Field(10, ge=1, le=max_k, description=f"how many items (at most {max_k})")),
    )


def _add_write_routes(app: FastAPI, service: Service) -> None:
    """POST /events, POST /items and POST /admin/reload (the API key is checked before the body is read,
    in :class:`_Guard`)."""
    st = service.settings

    @app.post("/events", response_model=S.EventsResponse, tags=["write"])
    def events(req: S.EventsRequest) -> dict[str, Any]:
        """Adds behaviour events; the next /recommend for the user reflects them."""
        _cap("events", len(req.events), st.max_events)
        engine = service.engine
        engine.sync()
        now = int(time.time())
        accepted: list[Event] = []
        ignored: list[dict[str, Any]] = []
        for j, e in enumerate(req.events):
            if e.item_id not in engine.row_of:
                ignored.append({"index": j, "item_id": e.item_id, "reason": "unknown item"})
                continue
            ts = e.timestamp if e.timestamp is not None else now
            accepted.append(Event(e.user_id, e.item_id, e.event, int(ts), float(e.value)))
        if not accepted:
            raise HTTPException(
                422,
                f"events: none of the {len(ignored)} events is on an item in the catalog (first: {str(ignored[0]['item_id'])[:100]!r})",
            )
        if service.log is not None:
            service.log.append_events(accepted)
        engine.add_events(accepted)
        service.metrics.inc("events_total", len(accepted))
        return {"accepted": len(accepted), "ignored": ignored[:1000]}

    @app.post("/items", response_model=S.ItemsResponse, tags=["write"])
    def items(req: S.ItemsRequest) -> dict[str, Any]:
        """Adds or updates items; they are searchable and recommendable at once, through the model's cold path."""
        _cap("items", len(req.items), st.max_items)
        with service._encoder_lock:  # one writer at a time: the catalog grows in one order everywhere
            engine = service.engine
            engine.sync()
            latest = {it.item_id: it for it in req.items}  # a repeated id: the last one wins
            try:
                for it in latest.values():
                    service.check_vectors(it.vectors)
            except ConfigError as e:
                raise HTTPException(422, str(e)) from e
            attrs = []
            for item_id, it in latest.items():
                row = engine.row_of.get(item_id)
                base = engine.attributes[row] if row is not None else {}
                attrs.append({**base, **it.attributes()})
            frame = _frame(list(latest), attrs, engine.columns)
            try:
                vectors = service.encode_items(frame, [it.vectors for it in latest.values()])
            except TokrecError as e:
                raise HTTPException(503, f"cannot encode new items: {e}") from e
            records = [ItemRecord(i, a, v) for i, a, v in zip(latest, attrs, vectors, strict=True)]
            added = [i for i in latest if i not in engine.row_of]
            if service.log is not None:
                service.log.add_items(records)
            engine.add_items(records)
        service.metrics.inc("items_added_total", len(added))
        return {"added": added, "updated": [i for i in latest if i not in added], "n_items": engine.n_items}

    @app.post("/admin/reload", tags=["write"])
    def reload() -> dict[str, Any]:
        """Swaps in the model directory if it was refitted (the server also checks by itself every
        ``reload_interval`` seconds)."""
        try:
            changed = service.reload()
        except TokrecError as e:
            raise HTTPException(409, str(e)) from e
        return {"reloaded": changed, "n_items": service.engine.n_items, "reloads": service.reloads}


def _add_item_routes(app: FastAPI, service: Service) -> None:
    """GET /items (search), /items/{id}, /items/{id}/similar (ids may contain ``/``).

    Only a literal ``/similar`` at the end of the URL asks for similar items: an id that itself ends in
    ``/similar`` is fetched with its slashes encoded (``/items/a%2Fsimilar``; the web page encodes every
    id), and its similar items at ``/items/a%2Fsimilar/similar``."""
    st = service.settings

    def detail(item_id: str) -> dict[str, Any]:
        engine = service.engine
        engine.sync()
        row = engine.row_of.get(item_id)
        if row is None:
            raise HTTPException(404, f"unknown item {item_id[:100]!r}")
        return {
            "item_id": item_id,
            "label": engine.labels[row],
            "attributes": _jsonable(engine.attributes[row]),
        }

    @app.get("/items", response_model=S.SearchResponse, tags=["items"])
    def search(q: str = Query("", max_length=200), limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
        """Items whose title contains ``q`` (case-insensitive)."""
        engine = service.engine
        return {"items": [{"item_id": i, "label": lab} for i, lab in engine.search_titles(q, limit)]}

    @app.get(
        "/items/{item_id:path}/similar",
        response_model=S.SimilarResponse,
        response_model_exclude_none=True,
        tags=["items"],
    )
    def similar(request: Request, item_id: str, k: int = Query(10, ge=1, le=st.max_k)) -> Any:
        """Items with the closest vectors to ``item_id``."""
        raw = request.scope.get("raw_path")
        if isinstance(raw, bytes) and not raw.split(b"?")[0].endswith(b"/similar"):
            # "/similar" came encoded (%2Fsimilar): part of the id, not this endpoint
            return JSONResponse(detail(item_id + "/similar"))
        engine = service.engine
        engine.sync()
        if item_id not in engine.row_of:
            raise HTTPException(404, f"unknown item {item_id[:100]!r}")
        recs = engine.similar(item_id, k)
        return {
            "item_id": item_id,
            "items": [
                {"item_id": r.item_id, "score": r.score, "label": r.label, "because": r.because} for r in recs
            ],
        }

    @app.get("/items/{item_id:path}", response_model=S.ItemDetail, tags=["items"])
    def item(item_id: str) -> dict[str, Any]:
        """An item's label and attributes."""
        return detail(item_id)


def _add_ops_routes(app: FastAPI, service: Service) -> None:
    """GET /health, /metrics and the web page."""
    st = service.settings

    @app.get("/health", response_model=S.Health, tags=["ops"])
    def health() -> dict[str, Any]:
        engine = service.engine
        ok = service.store.ping()
        model = engine.model
        return {
            "status": "ok" if ok else "degraded",
            "model": model.name,
            "n_items": engine.n_items,
            "n_model_items": engine.n_model_items,
            "n_users": len(model.user_vocab_),
            "dim": engine.index.dim,
            "retrieval": "ann" if engine.index.uses_ann else "exact",
            "store": service.store.kind,
            "store_ok": ok,
            "events": service.store.n_events() if ok else -1,
            "auth": bool(st.api_key),
            "max_k": st.max_k,
            "encoder": service.encoder_state,
        }

    @app.get("/metrics", tags=["ops"])
    def metrics(format: str = Query("prometheus", pattern="^(prometheus|json)$")) -> Response:
        """Request counts, latency percentiles, cache hits (Prometheus text, or ``?format=json``)."""
        engine = service.engine
        m = service.metrics
        m.gauges.update(
            {
                "catalog_items": engine.n_items,
                "online_items": engine.n_items - engine.n_model_items,
                "model_reloads": service.reloads,
                "policy_updates_refused": engine.policy_refused,
            }
        )
        texts, encoded = (
            m.counters.get("embedding_texts_total", 0.0),
            m.counters.get("embedding_encoded_total", 0.0),
        )
        m.gauges["embedding_cache_hits"] = max(0.0, texts - encoded)
        if format == "json":
            return JSONResponse(m.snapshot())
        return PlainTextResponse(m.prometheus(), media_type="text/plain; version=0.0.4")

    @app.get("/", include_in_schema=False)
    def page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    # HEAD as GET without the body (load balancers' health checks)
    app.add_api_route("/", page, methods=["HEAD"], include_in_schema=False)
    app.add_api_route("/health", health, methods=["HEAD"], include_in_schema=False)


def _valid_items(records: Iterable[ItemRecord]) -> list[ItemRecord]:
    """The logged items whose ids the API accepts now (:func:`schemas.check_id`); the others, logged by an
    older, laxer version, are skipped with a warning rather than replayed."""
    out, skipped, why = [], 0, ""
    for rec in records:
        try:
            S.check_id(rec.item_id)
        except ValueError as e:
            skipped, why = skipped + 1, why or f"item {printable(rec.item_id)}: {e}"
            continue
        out.append(rec)
    if skipped:
        log.warning("state log: skipped %d items the API rejects now (first: %s)", skipped, why)
    return out


def _valid_events(batches: Iterable[list[Event]]) -> Iterator[list[Event]]:
    """The logged events that pass the API's validation now (:class:`schemas.EventIn`: ids, a finite
    ``|value| <= MAX_EVENT_VALUE``); the others, logged by an older, laxer version (e.g. a value of 1e308,
    which overflowed the policy), are skipped with a warning, so that an old log cannot poison a restart."""
    skipped, why = 0, ""
    for batch in batches:
        good = []
        for e in batch:
            try:
                S.EventIn(
                    user_id=e.user_id, item_id=e.item_id, event=e.event, timestamp=e.timestamp, value=e.value
                )
            except ValidationError as err:
                first = err.errors()[0]
                where = ".".join(str(x) for x in first.get("loc", ()))
                skipped, why = skipped + 1, why or f"{where}: {first.get('msg', '')}"
                continue
            good.append(e)
        yield good
    if skipped:
        log.warning(
            "state log: skipped %d events the API rejects now (first: %s)", skipped, printable(why, 200)
        )


def _frame(ids: list[str], attrs: list[dict[str, Any]], columns: list[str]) -> pd.DataFrame:
    """New items as a catalog frame: every catalog column present (None where missing), lists joined with ``|``."""
    rows = []
    for i, a in zip(ids, attrs, strict=True):
        row: dict[str, Any] = {"item_id": i, **{c: None for c in columns}}
        row.update({c: ("|".join(v) if isinstance(v, list) else v) for c, v in a.items() if c != "item_id"})
        rows.append(row)
    frame = pd.DataFrame(rows)
    extra = [c for c in frame.columns if c != "item_id" and c not in columns]
    return frame[["item_id", *columns, *extra]]


def _jsonable(attrs: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k, v in attrs.items():
        try:
            json.dumps(v, allow_nan=False)
            out[k] = v
        except (TypeError, ValueError):
            out[k] = str(v)
    return out


def _fusion_of(model_dir: Path) -> Any:
    """The bundle's item-vector fusion (``tokrec fit --item-vectors``), or None."""
    from tokrec.fusion import FUSION_JSON, ItemFusion

    return ItemFusion.load(model_dir) if (Path(model_dir) / FUSION_JSON).is_file() else None


def state_path(model_dir: Path, given: Path | None = None) -> Path:
    """The state log: ``given``, else ``MODEL_DIR.state.sqlite`` beside the model directory (outside it, so
    that a refit, which replaces the directory, never touches it). A log left inside the directory by an
    older version is moved out once."""
    if given is not None:
        return Path(given)
    model_dir = Path(model_dir)
    path = model_dir.with_name(model_dir.name + ".state.sqlite")
    legacy = model_dir / "state.sqlite"
    if legacy.exists() and not path.exists():
        for suffix in ("", "-wal", "-shm"):
            if Path(str(legacy) + suffix).exists():
                os.replace(str(legacy) + suffix, str(path) + suffix)
        log.warning("moved the state log out of the model directory: %s", path)
    return path


def _bundle_stamp(path: Path) -> tuple[int, int] | None:
    """What changes when the model directory is replaced: its bundle.json's inode and modification time."""
    try:
        st = (Path(path) / "bundle.json").stat()
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns)
