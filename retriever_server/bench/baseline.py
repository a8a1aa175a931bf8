"""The bench's baseline: a minimal server shaped like Search-R1's `retrieval_server.py`.

What the ExpandSearch server replaces, written down so its figures can be reproduced side by side:
FastAPI, one plain `def` endpoint that FastAPI runs in its thread pool, and per request one encoder
pass and one flat search over the request's queries. No batching across requests, no cache, no
thread settings, FastAPI's default JSON response. Same encoder, index and corpus store as the
server under test. Its /retrieve answers in Search-R1's shape; the bench sends it the same 3
variants x topk 10 that ours gets on /search.

    python -m retriever_server.bench.baseline --corpus DIR --index DIR --encoder DIR --port 8010
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pydantic import BaseModel


class QueryRequest(BaseModel):
    queries: list[str]
    topk: int = 3
    return_scores: bool = False


def create_app(corpus_dir: Path, index_dir: Path, encoder_dir: str):
    """Search-R1's load: tokenizer and model in fp32, faiss index read whole, corpus opened."""
    import faiss
    import torch
    from fastapi import FastAPI
    from transformers import AutoModel, AutoTokenizer

    from retriever_server.index.corpus import CorpusStore

    tokenizer = AutoTokenizer.from_pretrained(encoder_dir)
    model = AutoModel.from_pretrained(encoder_dir).eval()
    index = faiss.read_index(str(index_dir / "index.faiss"))
    corpus = CorpusStore(corpus_dir)
    app = FastAPI()

    @torch.no_grad()
    def encode(queries: list[str]):
        inputs = tokenizer(queries, max_length=256, padding=True, truncation=True, return_tensors="pt")
        hidden = model(**inputs, return_dict=True).last_hidden_state
        mask = inputs["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        return torch.nn.functional.normalize(pooled, dim=-1).numpy().astype("float32", order="C")

    @app.post("/retrieve")
    def retrieve(request: QueryRequest) -> dict:
        scores, positions = index.search(encode(request.queries), request.topk)
        result = []
        for row, row_scores in zip(positions.tolist(), scores.tolist(), strict=True):
            documents = [
                {"id": p.id, "contents": p.contents} for p in corpus.passages([i for i in row if i >= 0])
            ]
            result.append(
                [{"document": d, "score": s} for d, s in zip(documents, row_scores, strict=False)]
                if request.return_scores
                else documents
            )
        return {"result": result}

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok"}

    return app


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--corpus", type=Path, required=True, help="a converted corpus store directory")
    parser.add_argument("--index", type=Path, required=True, help="an index directory with index.faiss")
    parser.add_argument("--encoder", required=True, help="the encoder's model directory")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8010)
    args = parser.parse_args(argv)
    app = create_app(args.corpus, args.index, args.encoder)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
