"""`tokrec demo --domain X` runs offline for every domain (tiny encoder, tiny synthetic catalog)."""

from __future__ import annotations

import pytest

from tokrec.cli.main import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    from tokrec.encoders.testing import make_tiny_bert

    return str(make_tiny_bert(tmp_path_factory.mktemp("bert") / "m"))


@pytest.mark.parametrize("domain", ["news", "music", "ecommerce", "movies"])
def test_demo_domain_prints_each_stage(domain, tiny, tmp_path, capsys):
    argv = ["demo", "--domain", domain, "--n-items", "40", "--n-users", "20", "--model", tiny]
    argv += ["--models", "popularity,text-profile", "--output-dir", str(tmp_path / "out")]
    if domain == "movies":
        argv += ["--synthetic", "--no-download"]  # never MovieLens here: the synthetic film catalog
    assert main(argv) == 0
    out = capsys.readouterr().out
    for stage in (
        "== 1. data",
        "== 2. LLM tokens",
        "== 3. embeddings",
        "== 4. features",
        "== 5. recommenders",
    ):
        assert stage in out
    assert f"synthetic {domain}" in out
    assert ("== 5b. impressions (MIND protocol)" in out) == (domain == "news")
    if domain == "news":
        row = next(line for line in out.splitlines() if line.startswith("text-profile") and "." in line[-8:])
        auc = float(row.split()[1])
        assert 0.0 <= auc <= 1.0
    assert (tmp_path / "out" / "items.parquet").is_file()


@pytest.mark.slow
@pytest.mark.realdata
def test_demo_on_movielens_shows_new_users_ranked_by_their_peers(shared, tiny, tmp_path, capsys):
    data = shared / "data" / "ml-100k"
    if not (data / "u.user").is_file():
        pytest.skip(f"{data}/u.user is absent")
    argv = ["demo", "--data", str(data), "--model", tiny, "--models", "popularity,tokrec"]
    assert main([*argv, "--output-dir", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "== 7. new users (no events) described by the user table" in out
    step = out.split("== 7.")[1]
    lines = [line for line in step.splitlines() if line.startswith("a new visitor")]
    # with a random tiny encoder the text signals carry nothing, the table's peers still do (validation says)
    assert "validation, 188 users held out whole" in step and len(lines) == 3
    assert lines[0].startswith("a new visitor, no attributes (popularity): Star Wars (1977)")
    assert len({line.split(": ", 1)[1] for line in lines}) == 3  # each visitor their own list
