"""Item/user templates and normalisation."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tokrec.data.dataset import Dataset
from tokrec.errors import ConfigError
from tokrec.text import ItemTemplate, UserTemplate, normalize_series, normalize_text

ITEMS = pd.DataFrame(
    {
        "item_id": ["1", "2", "3"],
        "title": ["Toy Story (1995)", "Heat (1995)", "Dr."],
        "release_date": ["01-Jan-1995", None, ""],
        "genres": ["Animation|Children's|Comedy", "Action|Crime", np.nan],
    }
)


def test_default_item_text_lists_every_attribute():
    assert ItemTemplate().render_many(ITEMS) == [
        "title: Toy Story (1995). release_date: 01-Jan-1995. genres: Animation|Children's|Comedy.",
        "title: Heat (1995). genres: Action|Crime.",  # missing release date skipped
        "title: Dr.",  # no second full stop, empty values skipped
    ]


def test_fields_labels_and_separator():
    tpl = ItemTemplate(fields=["genres", "title"], labels={"genres": "Genres"}, separator=" | ")
    assert tpl.render_many(ITEMS)[:2] == [
        "Genres: Animation|Children's|Comedy. | title: Toy Story (1995).",
        "Genres: Action|Crime. | title: Heat (1995).",
    ]


def test_format_string_with_missing_values_and_specs():
    assert ItemTemplate.from_spec("{title} ({genres})").render_many(ITEMS) == [
        "Toy Story (1995) (Animation|Children's|Comedy)",
        "Heat (1995) (Action|Crime)",
        "Dr. ()",
    ]
    frame = pd.DataFrame({"item_id": ["a"], "price": [3.14159]})
    assert ItemTemplate("costs {price:.2f}").render_many(frame) == ["costs 3.14"]


def test_template_files(tmp_path):
    txt = tmp_path / "t.txt"
    txt.write_text("{title}\n")
    assert ItemTemplate.from_spec(str(txt)).render_many(ITEMS)[1] == "Heat (1995)"
    js = tmp_path / "t.json"
    js.write_text(json.dumps({"fields": ["title"], "labels": {"title": "Movie"}}))
    assert ItemTemplate.from_spec(js).render_many(ITEMS)[0] == "Movie: Toy Story (1995)."
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"fields": ["title"], "colour": "red"}))
    with pytest.raises(ConfigError, match="colour"):
        ItemTemplate.from_spec(bad)
    with pytest.raises(ConfigError, match="not found"):
        ItemTemplate.from_spec(tmp_path / "missing.json")


def test_bad_templates_are_config_errors():
    with pytest.raises(ConfigError, match="year"):
        ItemTemplate("{title} {year}").render_many(ITEMS)
    with pytest.raises(ConfigError, match="neither"):
        ItemTemplate.from_spec("just words")
    with pytest.raises(ConfigError):
        ItemTemplate("{0}")
    with pytest.raises(ConfigError):
        ItemTemplate("{title")


def test_normalisation():
    assert normalize_text("  Ｔｏｙ\u00a0Story\t(1995)\n\x07 ﬁn\u200b ") == "Toy Story (1995) fin"
    assert normalize_text(None) == "" and normalize_text(float("nan")) == ""
    assert normalize_text(5) == "5"
    s = normalize_series(pd.Series(["a\r\nb", None, "Ｃａｆé", "x\x00y"]))
    assert s.tolist() == ["a b", "", "Café", "xy"]
    frame = pd.DataFrame({"item_id": ["1"], "title": ["  Caf\u0065\u0301\nNoir "]})
    assert ItemTemplate().render_many(frame) == ["title: Café Noir."]


def _dataset() -> Dataset:
    inter = pd.DataFrame(
        {
            "user_id": ["u1", "u1", "u1", "u2", "u1"],
            "item_id": ["2", "1", "3", "1", "1"],
            "timestamp": [30, 10, 20, 5, 40],
            "event": ["purchase", "rating", "click", "view", "something_else"],
            "value": [1.0, 5.0, 1.0, 1.0, 1.0],
        }
    )
    return Dataset(inter, ITEMS)


def test_user_history_in_time_order_with_event_types():
    ds = _dataset()
    texts = UserTemplate().render_many(ds)
    assert ds.user_vocab.ids == ["u1", "u2"]
    assert texts == [
        "rated 5: Toy Story (1995). clicked: Dr. bought: Heat (1995). something_else: Toy Story (1995).",
        "viewed: Toy Story (1995).",
    ]
    assert UserTemplate(prefix="history:").render_many(ds, users=["u2", "nobody"]) == [
        "history: viewed: Toy Story (1995).",
        "",
    ]


def test_user_budget_keeps_the_most_recent_events():
    ds = _dataset()

    def words(texts):  # a tokenizer with two special tokens and one token per word
        return [len(t.split()) + 2 for t in texts]

    full = UserTemplate(budget=None).render_many(ds)[0]
    assert words([full]) == [16]  # events cost 5, 2, 3 and 4 words, oldest first
    assert UserTemplate(budget=16).render_many(ds, count_tokens=words)[0] == full
    three = UserTemplate(budget=12).render_many(ds, count_tokens=words)[0]
    assert three == "clicked: Dr. bought: Heat (1995). something_else: Toy Story (1995)."
    two = UserTemplate(budget=10).render_many(ds, count_tokens=words)[0]
    assert two == "bought: Heat (1995). something_else: Toy Story (1995)."
    assert (
        UserTemplate(budget=5).render_many(ds, count_tokens=words)[0] == ""
    )  # even the last event is too long


def test_user_budget_with_a_real_tokenizer(tmp_path):
    from tokrec.encoders import load_encoder
    from tokrec.encoders.testing import make_tiny_bert

    enc = load_encoder(str(make_tiny_bert(tmp_path / "m")))
    ds = _dataset()
    for budget in (8, 12, 20, 40):
        text = UserTemplate(budget=budget).render_many(ds, count_tokens=enc.count_tokens)[0]
        assert enc.count_tokens([text])[0] <= budget
        assert text.endswith("something_else: Toy Story (1995).") or text == ""
