"""Typed request and response bodies of the HTTP API (pydantic; unknown keys are rejected).

The hard caps here bound what the parser accepts at all; the server's settings (``max_k``,
``max_history`` ...) are checked on top by the endpoints and usually lower.

Ids (``item_id``, ``user_id``, history, candidates, exclude): 1 to 256 characters, not blank after
``strip()`` and without control characters (``\\x00``-``\\x1f``, ``\\x7f``-``\\x9f``, U+2028/U+2029): the
ids the batch loaders accept, so that an exported catalog or event log loads again. Numbers are finite,
and an event's ``value`` lies in [-MAX_EVENT_VALUE, MAX_EVENT_VALUE] (1e6): the reward a bandit policy
learns from (:mod:`tokrec.bandits.policies` refuses larger ones too).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)

from tokrec.errors import _UNPRINTABLE

#: the largest ``|value|`` of an event (the bandit's reward; tokrec.bandits.policies.MAX_ABS_REWARD)
MAX_EVENT_VALUE = 1e6


def check_id(v: str) -> str:
    """An id as the batch loaders accept it: not blank after ``strip()``, no control characters."""
    if not v.strip():
        raise ValueError("an id must not be blank")
    bad = _UNPRINTABLE.search(v)
    if bad is not None:
        raise ValueError(f"an id must not contain control characters (found \\x{ord(bad.group()):02x})")
    return v


ItemId = Annotated[StrictStr, Field(min_length=1, max_length=256), AfterValidator(check_id)]
UserId = Annotated[StrictStr, Field(min_length=1, max_length=256), AfterValidator(check_id)]
HARD_LIST_CAP = 100_000
AttrScalar = StrictStr | StrictInt | StrictFloat | StrictBool | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class RecommendRequest(_Strict):
    """Give exactly one of ``user_id`` or ``history`` (item ids, oldest first)."""

    user_id: UserId | None = None
    history: list[ItemId] | None = Field(None, max_length=HARD_LIST_CAP)
    k: StrictInt = Field(10, ge=1, le=10_000)
    candidates: list[ItemId] | None = Field(None, max_length=HARD_LIST_CAP)
    exclude: list[ItemId] | None = Field(None, max_length=HARD_LIST_CAP)
    exclude_seen: StrictBool = True
    explain: StrictBool = True
    rerank: Annotated[StrictStr, Field(max_length=200)] | None = Field(
        None,
        description="re-rank the list: mmr:W, dpp:W, sdpp:W, calibration:W, popularity:W, propensity:W, tail:W "
        "(W in [0, 1], optionally @N), chained with + (default: the server's; tokrec.rerank)",
    )
    explore_share: StrictFloat | StrictInt | None = Field(
        None,
        ge=0,
        le=1,
        description="with a policy: share of the slots given to exploration (default: the server's). A "
        "request that names a re-ranker (rerank) and no explore_share gets no exploration; one that gives "
        "both, a share above 0 and a re-ranker, gets 422. Above 0 on a server without a policy: 422",
    )

    attributes: (
        dict[Annotated[StrictStr, Field(min_length=1, max_length=64)], Annotated[AttrScalar, Field()]] | None
    ) = Field(
        None,
        max_length=50,
        description='a new user\'s attributes (user-table column -> value, e.g. {"age": 24, "country": '
        '"DE"}): for a query without events that the model\'s user table does not describe, a model '
        "fitted with --user-attributes ranks by the peers they find; otherwise they change nothing",
    )

    @field_validator("attributes")
    @classmethod
    def _short_values(cls, v: dict[str, Any] | None) -> dict[str, Any] | None:
        for key, value in (v or {}).items():
            if isinstance(value, str) and len(value) > 200:
                raise ValueError(f"attribute {key!r}: at most 200 characters")
        return v

    @model_validator(mode="after")
    def _one_of(self) -> RecommendRequest:
        if (self.user_id is None) == (self.history is None):
            raise ValueError("give exactly one of 'user_id' or 'history'")
        return self


class Reason(BaseModel):
    """One reason for a recommendation."""

    kind: Literal["similar_item", "attribute", "explore", "peers"]
    item_id: str | None = None
    label: str | None = None
    similarity: float | None = None
    attribute: str | None = None
    value: str | None = None
    count: int | None = None


class RecommendedItem(BaseModel):
    item_id: str
    score: float
    label: str
    because: list[Reason] = []
    explored: bool = Field(False, description="shown by the policy to learn how it is liked (exploration)")


class RecommendResponse(BaseModel):
    items: list[RecommendedItem]
    ignored: list[str] = Field([], description="unknown item ids in history/candidates/exclude (ignored)")
    mode: str = Field(description="exact, ann or candidates: how the ranked set was chosen")
    history_length: int


class EventIn(_Strict):
    user_id: UserId
    item_id: ItemId
    event: Annotated[StrictStr, Field(min_length=1, max_length=64)] = "interaction"
    timestamp: StrictInt | None = Field(None, ge=0, le=2**62, description="seconds; default: now")
    value: StrictFloat | StrictInt = Field(
        1.0,
        allow_inf_nan=False,
        ge=-MAX_EVENT_VALUE,
        le=MAX_EVENT_VALUE,
        description=f"the event's value, e.g. a rating; a policy's reward (finite, |value| <= {MAX_EVENT_VALUE:g})",
    )

    @field_validator("value", mode="before")
    @classmethod
    def _bounded(cls, v: Any) -> Any:
        # before any conversion: a huge JSON integer (10**400) must not reach float() (OverflowError)
        if isinstance(v, int) and not isinstance(v, bool) and abs(v) > MAX_EVENT_VALUE:
            raise ValueError(f"value must lie in [-{MAX_EVENT_VALUE:g}, {MAX_EVENT_VALUE:g}]")
        return v

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if v != v or v in (float("inf"), float("-inf")):
            raise ValueError("value must be finite")
        return float(v)


class EventsRequest(_Strict):
    events: list[EventIn] = Field(min_length=1, max_length=HARD_LIST_CAP)


class IgnoredEvent(BaseModel):
    index: int
    item_id: str
    reason: str


class EventsResponse(BaseModel):
    accepted: int
    ignored: list[IgnoredEvent] = []


class ItemIn(BaseModel):
    """An item: ``item_id`` plus any attributes (strings, numbers, booleans, lists of strings)."""

    model_config = ConfigDict(extra="allow")

    item_id: ItemId
    vectors: dict[Annotated[str, Field(min_length=1, max_length=64)], list[float]] | None = Field(
        None,
        description="for a model fitted with --item-vectors: the item's vector in any of those sets "
        "(e.g. an image embedding), by set name; a set not given is predicted from the text",
        max_length=16,
    )

    @model_validator(mode="after")
    def _attributes(self) -> ItemIn:
        for name, vec in (self.vectors or {}).items():
            if not 1 <= len(vec) <= 8192 or not all(x == x and abs(x) != float("inf") for x in vec):
                raise ValueError(f"vectors[{name[:64]!r}]: 1 to 8192 finite numbers")
        extra = self.model_extra or {}
        for name, v in extra.items():
            if not (1 <= len(name) <= 64):
                raise ValueError(f"attribute name {name[:70]!r} must have 1 to 64 characters")
            if isinstance(v, list):
                if len(v) > 100 or not all(isinstance(x, str) and len(x) <= 1000 for x in v):
                    raise ValueError(
                        f"attribute {name!r}: a list must hold at most 100 strings of at most 1000 characters"
                    )
            elif isinstance(v, str):
                if len(v) > 10_000:
                    raise ValueError(f"attribute {name!r}: at most 10000 characters")
            elif not (v is None or isinstance(v, bool | int | float)):
                raise ValueError(
                    f"attribute {name!r}: must be a string, number, boolean, null or list of strings"
                )
            elif isinstance(v, float) and (v != v or v in (float("inf"), float("-inf"))):
                raise ValueError(f"attribute {name!r}: must be finite")
        if len(extra) > 100:
            raise ValueError("at most 100 attributes per item")
        return self

    def attributes(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class ItemsRequest(_Strict):
    items: list[ItemIn] = Field(min_length=1, max_length=HARD_LIST_CAP)


class ItemsResponse(BaseModel):
    added: list[str]
    updated: list[str]
    n_items: int


class SimilarResponse(BaseModel):
    item_id: str
    items: list[RecommendedItem]


class ItemSummary(BaseModel):
    item_id: str
    label: str


class SearchResponse(BaseModel):
    items: list[ItemSummary]


class ItemDetail(BaseModel):
    item_id: str
    label: str
    attributes: dict[str, Any]


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    model: str
    n_items: int
    n_model_items: int
    n_users: int
    dim: int
    retrieval: Literal["exact", "ann"]
    store: str
    store_ok: bool
    events: int
    auth: bool
    max_k: int = Field(description="the largest k a request may ask for")
    encoder: Literal["ready", "loading", "lazy", "failed"] = Field(
        description="the encoder for POST /items: loaded, loading in the background since start-up, loaded on "
        "the first new item (preload off), or its preload failed (the first new item tries again)"
    )


class ErrorBody(BaseModel):
    error: str
    detail: list[dict[str, Any]] | str | None = None
