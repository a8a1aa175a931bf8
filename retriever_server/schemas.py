"""Request and response models of the HTTP API (docs/design.md, "HTTP API of retriever_server").

Types are strict (a topk of "5" or true, a query of 5, are 422s, not coerced); unknown fields are
ignored so Search-R1's and verl's clients, which send what they send, keep working. Limits that are
server settings (`max_queries`, `max_topk`, `max_query_chars`) are checked by `limit_errors`, which
reports every violation at once in FastAPI's 422 shape.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr

from retriever_server.settings import Settings


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RetrieveRequest(_Request):
    queries: list[StrictStr]
    topk: StrictInt | None = Field(default=None, description="per query; null: the server's retrieve_topk")
    return_scores: StrictBool = False
    retriever: StrictStr | None = Field(default=None, description="dense | bm25; null: the server's default")


class SearchRequest(_Request):
    queries: list[StrictStr] = Field(description="all query variants of one turn")
    topk: StrictInt | None = Field(default=None, description="per variant; null: the server's search_topk")
    question: StrictStr | None = Field(default=None, description="the original question (for the squeezer)")
    squeeze: StrictBool | None = Field(default=None, description="null: the server's default")
    max_documents: StrictInt | None = Field(default=None, description="cap on the fused documents")
    retriever: StrictStr | None = None


class SqueezeDocument(_Request):
    title: StrictStr = ""
    text: StrictStr


class SqueezeRequest(_Request):
    queries: list[StrictStr]
    documents: list[SqueezeDocument]
    question: StrictStr | None = None


class Document(BaseModel):
    id: str
    contents: str
    title: str
    text: str


class ScoredDocument(BaseModel):
    document: Document
    score: float


class RetrieveResponse(BaseModel):
    result: list[list[ScoredDocument]] | list[list[Document]]


class FusedDocument(BaseModel):
    id: str
    title: str
    text: str
    score: float = Field(description="fused score: reciprocal-rank fusion (default) or the best raw score")
    query_hits: list[int] = Field(description="indices of the variants that retrieved this passage")


class SearchResponse(BaseModel):
    documents: list[FusedDocument]
    per_query: list[list[str]]
    summary: str | None
    squeezed: bool
    squeeze_error: str | None
    cached: bool
    timings_ms: dict[str, float]


class SqueezeResponse(BaseModel):
    summary: str
    backend: str
    timings_ms: dict[str, float]


class Health(BaseModel):
    status: str
    corpus_size: int | None = None
    retriever: str | None = None
    retrievers: list[str] = []
    encoder: str | None = None
    squeezer: str | None = None
    error: str | None = None


def _error(loc: list, msg: str, kind: str = "value_error") -> dict:
    return {"loc": ["body", *loc], "msg": msg, "type": kind}


def _is_unicode(text: str) -> bool:
    try:
        text.encode()
    except UnicodeEncodeError:
        return False
    return True


def query_errors(queries: list[str], settings: Settings, field: str = "queries") -> list[dict]:
    """Empty list, too many queries, empty/blank or too long queries."""
    errors = []
    if not queries:
        errors.append(_error([field], f"{field}: at least one query is required", "too_short"))
    if len(queries) > settings.max_queries:
        errors.append(
            _error(
                [field],
                f"{field}: {len(queries)} queries; the limit is max_queries={settings.max_queries}",
                "too_long",
            )
        )
    for i, query in enumerate(queries):
        if not query.strip():
            errors.append(_error([field, i], f"{field}[{i}]: the query is empty or white space"))
        elif not _is_unicode(query):
            errors.append(
                _error([field, i], f"{field}[{i}]: the query is not valid Unicode (lone surrogate)")
            )
        elif len(query) > settings.max_query_chars:
            errors.append(
                _error(
                    [field, i],
                    f"{field}[{i}]: {len(query)} characters; the limit is "
                    f"max_query_chars={settings.max_query_chars}",
                    "too_long",
                )
            )
    return errors


def limit_errors(request: RetrieveRequest | SearchRequest | SqueezeRequest, settings: Settings) -> list[dict]:
    """Every violation of the server's limits, in FastAPI's 422 `detail` shape."""
    errors = query_errors(request.queries, settings)
    topk = getattr(request, "topk", None)
    if topk is not None and not 1 <= topk <= settings.max_topk:
        errors.append(
            _error(["topk"], f"topk: {topk} is out of range; it must be 1..max_topk={settings.max_topk}")
        )
    max_documents = getattr(request, "max_documents", None)
    if max_documents is not None and max_documents < 1:
        errors.append(
            _error(["max_documents"], f"max_documents: {max_documents} must be >= 1 (or null: no cap)")
        )
    question = request.question if isinstance(request, SearchRequest | SqueezeRequest) else None
    if question is not None and not _is_unicode(question):
        errors.append(_error(["question"], "question: not valid Unicode (lone surrogate)"))
    if question is not None and len(question) > settings.max_query_chars:
        errors.append(
            _error(
                ["question"],
                f"question: {len(question)} characters; the limit is "
                f"max_query_chars={settings.max_query_chars}",
                "too_long",
            )
        )
    if isinstance(request, SqueezeRequest):
        limit = settings.max_queries * settings.max_topk
        if not request.documents:
            errors.append(_error(["documents"], "documents: at least one document is required", "too_short"))
        if len(request.documents) > limit:
            errors.append(
                _error(
                    ["documents"],
                    f"documents: {len(request.documents)}; the limit is max_queries*max_topk={limit}",
                    "too_long",
                )
            )
        for i, document in enumerate(request.documents):
            for name in ("title", "text"):
                if not _is_unicode(getattr(document, name)):
                    errors.append(
                        _error(
                            ["documents", i, name],
                            f"documents[{i}].{name}: not valid Unicode (lone surrogate)",
                        )
                    )
    return errors
