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
