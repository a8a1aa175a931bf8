"""Index loading: Search-R1's bare faiss file, params.json checks, ANN factories, BM25 edge cases."""

from __future__ import annotations

import dataclasses
import json
import shutil

import faiss
import httpx
import numpy as np
import pytest

from retriever_server.bench.synthetic import town_name
from retriever_server.index.bm25 import BM25Retriever
from retriever_server.index.builder import assemble_index
from retriever_server.index.corpus import CorpusStore
from retriever_server.index.dense import DenseRetriever, load_faiss_index
from retriever_server.index.encoder import Encoder
from retriever_server.index.params import IndexMismatch


@pytest.fixture(scope="module")
def corpus(synthetic_indexes) -> CorpusStore:
    return CorpusStore.open(synthetic_indexes["corpus"], synthetic_indexes["cache"])


def test_a_bare_faiss_file_is_served_as_is(synthetic_indexes, base_settings, serve_app, tmp_path):
    """Search-R1's `e5_Flat.index` is a bare IndexFlatIP file with no params.json."""
    bare = tmp_path / "e5_Flat.index"
    faiss.write_index(faiss.read_index(str(synthetic_indexes["dense"] / "index.faiss")), str(bare))
    assert isinstance(load_faiss_index(bare), faiss.IndexFlatIP)
    body = {"queries": [f"who founded {town_name(3)}"], "topk": 3}
    with serve_app(dataclasses.replace(base_settings, dense_index=str(bare), retriever=["dense"])) as url:
        from_bare = httpx.post(url + "/retrieve", json=body).json()
    with serve_app(dataclasses.replace(base_settings, retriever=["dense"])) as url:
        assert httpx.post(url + "/retrieve", json=body).json() == from_bare
        unserved = httpx.post(url + "/retrieve", json={**body, "retriever": "bm25"})
        schema = httpx.get(url + "/openapi.json").json()["components"]["schemas"]["RetrieveRequest"]
    assert schema["properties"]["retriever"]["anyOf"][0]["enum"] == ["dense"]  # what it serves
    assert unserved.status_code == 422 and unserved.json()["detail"][0]["msg"] == (
        "retriever: 'bm25' is not served; this server serves ['dense']"
    )


def test_mismatches_are_refused_with_the_fix(synthetic_indexes, corpus, minilm_encoder, tmp_path):
    dense = synthetic_indexes["dense"]
    with pytest.raises(
        IndexMismatch, match=r"built over a corpus of 120 passages.*rebuild it with build-index"
    ):
        DenseRetriever.load(dense, minilm_encoder, 119, corpus.fingerprint)
    other = Encoder(dataclasses.replace(minilm_encoder.config, query_prefix="query: "), device="cpu")
    with pytest.raises(IndexMismatch, match="encoder query_prefix=''"):
        DenseRetriever.load(dense, other, len(corpus), corpus.fingerprint)
    with pytest.raises(IndexMismatch, match="it is a 'bm25' index, served as 'dense'"):
        DenseRetriever.load(synthetic_indexes["bm25"], minilm_encoder, len(corpus), corpus.fingerprint)
    bare = tmp_path / "small.index"
    faiss.write_index(faiss.IndexFlatIP(384), str(bare))
    with pytest.raises(IndexMismatch, match="holds 0 vectors but the corpus has 120"):
        DenseRetriever.load(bare, minilm_encoder, len(corpus), corpus.fingerprint)
    wrong_dim = tmp_path / "dim.index"
    flat = faiss.IndexFlatIP(768)
    flat.add(np.zeros((120, 768), dtype=np.float32))
    faiss.write_index(flat, str(wrong_dim))
    with pytest.raises(IndexMismatch, match="768-d vectors but encoder"):
        DenseRetriever.load(wrong_dim, minilm_encoder, len(corpus), corpus.fingerprint)
    unfinished = tmp_path / "unfinished"
    shutil.copytree(dense, unfinished)
    (unfinished / "params.json").unlink()
    with pytest.raises(IndexMismatch, match="did not finish"):
        DenseRetriever.load(unfinished, minilm_encoder, len(corpus), corpus.fingerprint)


@pytest.mark.parametrize("factory", ["HNSW16", "IVF4,Flat"])
def test_ann_factories_return_the_promised_shape(
    synthetic_indexes, corpus, minilm_encoder, factory, tmp_path
):
    shards = tmp_path / "embeddings"
    shards.mkdir()
    vectors = minilm_encoder.encode(list(corpus.iter_contents()), is_query=False)
    np.save(shards / "shard_00000.npy", vectors[:70].astype(np.float16))
    np.save(shards / "shard_00001.npy", vectors[70:].astype(np.float16))
    index = assemble_index(shards, minilm_encoder.dim, factory, train_size=120)
    assert index.ntotal == 120
    retriever = DenseRetriever(minilm_encoder, index, "test", ef_search=64, nprobe=4)
    results = retriever.search([f"who founded {town_name(i)}" for i in range(10)] + ["zz"], 200)
    assert results.positions.shape == results.scores.shape == (11, 200)
    assert (results.positions[:, 120:] == -1).all() and np.isneginf(results.scores[:, 120:]).all()
    top1 = results.positions[:10, 0].tolist()
    assert sum(p == i for i, p in enumerate(top1)) >= 7  # approximate, but mostly right


def test_bm25_shapes_and_no_hit_rows(synthetic_indexes, corpus):
    retriever = BM25Retriever(synthetic_indexes["bm25"], len(corpus), corpus.fingerprint)
    results = retriever.search([town_name(8), "qqqq zzzz", "the", f"{town_name(8)} {town_name(9)}"], 500)
    assert results.positions.shape == (4, 500)
    assert results.positions[0, 0] == 8 and results.positions[0, 1] == -1
    assert (results.positions[1] == -1).all() and (
        results.positions[2] == -1
    ).all()  # OOV and stop words only
    assert set(results.positions[3, :2].tolist()) == {8, 9}
    params = json.loads((synthetic_indexes["bm25"] / "params.json").read_text())
    assert params["kind"] == "bm25" and params["corpus_size"] == 120
