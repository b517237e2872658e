"""Every recommender of the recs area passes the shared conformance suite (tests/conformance.py)."""

from __future__ import annotations

from typing import Any, ClassVar

from conformance import RecommenderConformance
from tokrec.models.registry import create_model


def _factory(name: str, **defaults: Any):
    def make(**config: Any):
        return create_model(name, {**defaults, **config})

    return staticmethod(make)


class TestPopularity(RecommenderConformance):
    make_model = _factory("popularity")
    known_answer: ClassVar[bool] = False


class TestItemKNN(RecommenderConformance):
    make_model = _factory("itemknn", neighbours=10)


class TestEASE(RecommenderConformance):
    make_model = _factory("ease", l2=10.0)


class TestRecencyEASE(RecommenderConformance):
    make_model = _factory("ease", l2=10.0, half_life=2.0)


class TestALS(RecommenderConformance):
    make_model = _factory("als", factors=8, iterations=10)


class TestBPR(RecommenderConformance):
    make_model = _factory("bpr", factors=8, iterations=100, learning_rate=0.05)


class TestTextProfile(RecommenderConformance):
    make_model = _factory("text-profile")


class TestHybridMap(RecommenderConformance):
    make_model = _factory("hybrid-map", factors=8, iterations=10)


class TestFijScorer(RecommenderConformance):
    make_model = _factory("fij-scorer", epochs=20, rank=4, batch_size=128, lr=0.02)


class TestTokrec(RecommenderConformance):
    make_model = _factory("tokrec", ease_lambda=10.0)
