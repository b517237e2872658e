"""Item-vector fusion (tokrec.fusion) on synthetic vectors, and --item-vectors on the CLI."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tokrec.data.synthetic import make_synthetic_multimodal, write_synthetic
from tokrec.errors import ConfigError, DataError
from tokrec.evaluation.metrics import score_recommendations
from tokrec.evaluation.splits import leave_last_out
from tokrec.features import write_vectors
from tokrec.fusion import (
    FusionConfig,
    ItemFusion,
    VectorSetSpec,
    fuse_catalog,
    parse_item_vectors_arg,
    read_vector_set,
)
from tokrec.models.registry import create_model


@pytest.fixture(scope="module")
def multimodal():
    ds, img = make_synthetic_multimodal(900, 300, seed=0)
    # synthetic "text" vectors: the topic (written in the item text) plus noise; the style is not in them
    cats = ds.items["category"].astype("category").cat.codes.to_numpy()
    rng = np.random.default_rng(1)
    text = (np.eye(cats.max() + 1)[cats] + 0.3 * rng.normal(size=(ds.n_items, cats.max() + 1))).astype(
        np.float32
    )
    return ds, text, np.stack(img["vector"].to_numpy())


def _ndcg(split, vectors) -> float:
    model = create_model("text-profile").fit(split.train, vectors)
    recs = model.recommend_batch(split.test_users, k=10)
    return score_recommendations(recs, split.test.interactions, split.train.interactions, k=10)["ndcg@10"]


def test_fusion_recovers_the_signal_text_lacks(multimodal, tmp_path):
    ds, text, image = multimodal
    split = leave_last_out(ds)
    path = write_vectors(tmp_path / "img.parquet", ds.item_vocab.ids, image)
    fused, fusion, summary = fuse_catalog(
        ds.item_vocab.ids, text, [VectorSetSpec(str(path))], dataset=split.train
    )
    weight = summary["sets"][0]["weight"]
    assert summary["sets"][0]["learnt"] and weight > 0  # the validation split found the images useful
    only_image = ItemFusion(
        FusionConfig(
            names=["img"], dims=[image.shape[1]], weights=[1.0], text_dim=text.shape[1], text_weight=0.0
        )
    ).fuse(text, [image])
    text_ndcg, image_ndcg, fused_ndcg = _ndcg(split, text), _ndcg(split, only_image), _ndcg(split, fused)
    assert fused_ndcg > 1.5 * max(text_ndcg, image_ndcg), (text_ndcg, image_ndcg, fused_ndcg)


def test_fused_blocks_weights_missing_items_and_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    text = rng.normal(size=(6, 4)).astype(np.float32)
    image = (text[:, :3] @ rng.normal(size=(3, 5))).astype(np.float32)  # predictable from text
    present = np.array([True, True, True, True, True, False])
    for missing in ("map", "zeros"):
        fusion = ItemFusion(
            FusionConfig(names=["img"], dims=[5], weights=[2.0], text_dim=4, missing=missing, ridge=1e-3)
        ).fit(text, [image], [present])
        z = fusion.fuse(text, [image], [present])
        assert z.shape == (6, 9)
        np.testing.assert_allclose(np.linalg.norm(z[:, :4], axis=1), 1.0, rtol=1e-5)
        np.testing.assert_allclose(np.linalg.norm(z[:5, 4:], axis=1), 2.0, rtol=1e-5)
        if missing == "zeros":
            assert not z[5, 4:].any()
        else:  # mapped from the text and normalised
            assert np.linalg.norm(z[5, 4:]) == pytest.approx(2.0, rel=1e-5)
        fusion.save(tmp_path / missing)
        back = ItemFusion.load(tmp_path / missing)
        # a new item fused online with the saved state equals the catalog fusion
        np.testing.assert_allclose(back.fuse(text[5:], [None]), z[5:], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(back.fuse(text[:2], [image[:2]]), z[:2], rtol=1e-5, atol=1e-6)


def test_parse_and_read_vector_sets(tmp_path):
    assert parse_item_vectors_arg("a/b.parquet") == VectorSetSpec("a/b.parquet", None)
    assert parse_item_vectors_arg("c:/x/img.parquet:0.5") == VectorSetSpec("c:/x/img.parquet", 0.5)
    with pytest.raises(ConfigError):
        parse_item_vectors_arg("img.parquet:-1")
    good = tmp_path / "v.parquet"
    pq.write_table(pa.table({"item_id": ["a", "b"], "vector": [[1.0, 2.0], [3.0, 4.0]]}), good)
    ids, v = read_vector_set(good)
    assert ids == ["a", "b"] and v.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    bad_rows = [
        ({"item_id": ["a", "b"], "vector": [[1.0, 2.0], [3.0]]}, 2, "vector"),
        ({"item_id": ["a", "a"], "vector": [[1.0], [3.0]]}, 2, "item_id"),
        ({"item_id": ["a", "b"], "vector": [[1.0], [float("nan")]]}, 2, "vector"),
        ({"item_id": ["a"], "emb": [[1.0]]}, 1, "vector"),
    ]
    for table, row, column in bad_rows:
        pq.write_table(pa.table(table), good)
        with pytest.raises(DataError) as e:
            read_vector_set(good)
        assert (e.value.file, e.value.row, e.value.column) == (str(good), row, column)


def test_cli_item_vectors(tmp_path, capsys):
    from tokrec.cli.main import main
    from tokrec.encoders.testing import make_tiny_bert

    ds, img_frame = make_synthetic_multimodal(120, 40, seed=2)
    image = np.stack(img_frame["vector"].to_numpy())
    paths = write_synthetic(tmp_path / "data", ds)
    img = write_vectors(tmp_path / "img.parquet", ds.item_vocab.ids[:-5], image[:-5])
    tiny = str(make_tiny_bert(tmp_path / "bert"))
    items, inter = str(paths["items"]), str(paths["interactions"])
    argv = [
        "embed",
        "--items",
        items,
        "--output",
        str(tmp_path / "e.parquet"),
        "--model",
        tiny,
        "--no-progress",
    ]
    assert main([*argv, "--item-vectors", str(img)]) == 2  # embed has no interactions to learn from
    assert "give --item-vectors" in capsys.readouterr().err
    assert main([*argv, "--item-vectors", f"{img}:0.5", "--missing-vectors", "zeros"]) == 0
    table = pq.read_table(tmp_path / "e.parquet")
    vectors = np.stack(table.column("vector").to_numpy(zero_copy_only=False))
    assert vectors.shape == (ds.n_items, 32 + image.shape[1])
    np.testing.assert_allclose(np.linalg.norm(vectors[:-5, 32:], axis=1), 0.5, rtol=1e-5)
    assert not vectors[-5:, 32:].any()
    out = tmp_path / "bundle"
    fit = ["fit", "--items", items, "--interactions", inter, "--model", "text-profile", "--encoder", tiny]
    assert main([*fit, "--item-vectors", str(img), "--output", str(out)]) == 0
    assert "learnt on validation with text-profile" in capsys.readouterr().err
    fusion = ItemFusion.load(out)
    assert fusion.config.learnt == [True] and fusion.config.weights[0] in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
    from safetensors.numpy import load_file

    assert load_file(str(out / "item_vectors.safetensors"))["vectors"].shape == (ds.n_items, fusion.dim)
    # the service fuses an item added online the way fit treated an item missing from the set
    from fastapi.testclient import TestClient

    from tokrec.serve.app import create_app

    with TestClient(create_app(out, settings={"persist": False})) as c:
        new = {"item_id": "brand-new", "title": ds.items["title"].iloc[0]}
        r = c.post("/items", json={"items": [new]})
        assert r.status_code == 200, r.text
        engine = c.app.state.service.engine
        row = engine.row_of["brand-new"]
        assert engine.index.row(row).shape == (fusion.dim,)
        text = engine.index.row(row)[: fusion.config.text_dim]
        np.testing.assert_allclose(np.linalg.norm(text), fusion.config.text_weight, rtol=1e-4)
        got = c.post(
            "/recommend", json={"history": [ds.item_vocab.ids[0]], "k": 5, "candidates": ["brand-new"]}
        )
        assert [it["item_id"] for it in got.json()["items"]] == ["brand-new"]
        # an item that brings its own image vector: that block is its unit vector times the set's weight
        name, dim, w = fusion.config.names[0], fusion.config.dims[0], fusion.config.weights[0]
        own = {"item_id": "with-image", "title": "A picture", "vectors": {name: image[0].tolist()}}
        assert c.post("/items", json={"items": [own]}).status_code == 200
        v = engine.index.row(engine.row_of["with-image"])
        np.testing.assert_allclose(
            v[fusion.config.text_dim :], w * image[0] / np.linalg.norm(image[0]), atol=1e-5
        )
        bad = {"item_id": "x", "title": "X", "vectors": {name: [1.0] * (dim + 1)}}
        assert c.post("/items", json={"items": [bad]}).status_code == 422
        bad = {"item_id": "x", "title": "X", "vectors": {"nope": [1.0]}}
        assert c.post("/items", json={"items": [bad]}).status_code == 422


def test_embed_images_with_a_tiny_clip(tmp_path, capsys):
    from PIL import Image

    from tokrec.cli.main import main
    from tokrec.encoders.image import make_tiny_clip

    clip = str(make_tiny_clip(tmp_path / "clip"))
    for name, colour in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        Image.new("RGB", (40, 30), colour).save(tmp_path / f"{name}.png")
    items = tmp_path / "items.csv"
    items.write_text(
        f"item_id,title,image\n1,Red mug,{tmp_path / 'red.png'}\n2,Blue mug,file://{tmp_path / 'blue.png'}\n"
        f"3,No picture,\n4,Red cup,{tmp_path / 'red.png'}\n"
    )
    out = tmp_path / "images.parquet"
    argv = [
        "embed",
        "--items",
        str(items),
        "--output",
        str(out),
        "--image-column",
        "image",
        "--image-model",
        clip,
    ]
    assert main(argv) == 0
    ids, vectors = read_vector_set(out)
    assert ids == ["1", "2", "4"] and vectors.shape == (3, 8)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(vectors[0], vectors[2], rtol=1e-5)  # the same picture
    assert not np.allclose(vectors[0], vectors[1])
    items.write_text(items.read_text().replace("red.png\n2", "missing.png\n2"))
    assert main(argv) == 2
    assert "row 2, column 'image': cannot read image" in capsys.readouterr().err
