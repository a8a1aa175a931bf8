"""Request and response models of the HTTP API (docs/design.md, "HTTP API of retriever_server").

The OpenAPI schema (`/openapi.json`) is generated from these models, and pydantic checks every
request against them, so the schema declares what the server enforces: strict types (a topk of "5"
or true, a query of 5, are 422s, not coerced), at least one non-blank query, topk and max_documents
>= 1, retriever names. Unknown fields are ignored so Search-R1's and verl's clients, which send what
they send, keep working.

Limits that are server settings (`max_queries`, `max_topk`, `max_query_chars`, the retrievers
served) are said in the fields' descriptions, declared with the serving instance's values in the
schema it serves (`with_limits`), and checked by validators on the same fields (`AtMost`) against
the settings of the service answering the request (`LIMITS`, set by `routes.ready_service` before
FastAPI validates the body; the defaults elsewhere, e.g. in the agent loop's test double). So
pydantic reports every problem of a request at once, in FastAPI's 422 shape. Lone surrogates (JSON
allows them, UTF-8 does not) are refused too: the one check JSON Schema cannot declare.

Responses are TypedDicts: the routes validate what the service returns against them (`checked`) and
serialise the result with orjson, so a response is the declared model and costs ~15 µs more, not
the ~40 µs of building pydantic objects for 30 passages.
"""

from __future__ import annotations

import functools
import math
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
)
from pydantic_core import CoreSchema, PydanticCustomError, core_schema
from typing_extensions import TypedDict

from retriever_server.settings import RetrieverName, Settings

LIMITS: ContextVar[Settings] = ContextVar("LIMITS", default=Settings())  # noqa: B039 (never mutated)


def _unicode(text: str) -> str:
    try:
        text.encode()
    except UnicodeEncodeError:
        raise PydanticCustomError("unicode_error", "not valid Unicode (lone surrogate)") from None
    return text


# A query has a character that is not white space as `str.isspace` sees it, spelled out because the
# regex flavours disagree on `\S` (JSON Schema's ECMA-262 counts \x1c-\x1f and \x85 as text).
NOT_BLANK = r"[^\t-\r\x1c- \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]"


def _not_blank(query: str) -> str:
    if not query.strip():
        raise PydanticCustomError("string_blank", "the query is empty or white space")
    return query


@dataclass(frozen=True)
class AtMost:
    """A limit that is a server setting (the product of `settings`), in one place for both sides: the
    check against the answering service's settings, and `keyword` in the served schema."""

    keyword: str  # maxLength | maxItems | maximum
    settings: tuple[str, ...]
    unit: str = ""  # what is counted, for the message: " characters", " queries"

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        return core_schema.no_info_after_validator_function(self.check, handler(source))

    def __get_pydantic_json_schema__(self, schema: CoreSchema, handler: GetJsonSchemaHandler) -> dict:
        return {**handler(schema), **_setting(self.keyword, *self.settings)}

    def check(self, value: Any) -> Any:
        limit = math.prod(getattr(LIMITS.get(), name) for name in self.settings)
        size = value if isinstance(value, int) else len(value)
        if size > limit:
            raise PydanticCustomError(
                "setting_limit",
                "{size}{unit}; the limit is {setting}={limit}",
                {"size": size, "unit": self.unit, "setting": "*".join(self.settings), "limit": limit},
            )
        return value


def _served(name: str) -> str:
    served = LIMITS.get().retriever
    if name not in served:
        raise PydanticCustomError(
            "retriever_not_served",
            "'{name}' is not served; this server serves {served}",
            {"name": name, "served": served},
        )
    return name


def _integral(value: Any) -> Any:
    """JSON Schema's integer includes 3.0: take it as 3 (strict otherwise: "3", true and 2.5 are refused)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _setting(keyword: str, *names: str) -> dict:
    """Marks a limit that is a setting: the served schema sets `keyword` to it (the product of several)."""
    return {"x-setting-limit": {keyword: list(names)}}


def with_limits(schema: Any, settings: Settings) -> Any:
    """`schema` (OpenAPI, as a dict) with each `_setting` marker replaced by the limit it names."""
    if isinstance(schema, list):
        return [with_limits(item, settings) for item in schema]
    if not isinstance(schema, dict):
        return schema
    limits = schema.get("x-setting-limit", {})
    schema = {key: with_limits(value, settings) for key, value in schema.items() if key != "x-setting-limit"}
    for keyword, names in limits.items():
        values = [getattr(settings, name) for name in names]
        schema[keyword] = values[0] if len(values) == 1 else math.prod(values)
    return schema


INTEGRAL = BeforeValidator(_integral)  # after the Field(...): before it, pydantic drops the Field's schema
Text = Annotated[StrictStr, AfterValidator(_unicode)]
Query = Annotated[
    StrictStr,
    Field(
        description="a search query: not blank; at most the server's max_query_chars characters (default 2048)",
        json_schema_extra={"pattern": NOT_BLANK},
    ),
    AfterValidator(_unicode),
    AfterValidator(_not_blank),
    AtMost("maxLength", ("max_query_chars",), " characters"),
]
Queries = Annotated[
    list[Query],
    Field(
        min_length=1,
        description="at least one; at most the server's max_queries (default 64)",
    ),
    AtMost("maxItems", ("max_queries",), " queries"),
]
TopK = Annotated[
    StrictInt,
    Field(
        ge=1,
        description="per query, 1..the server's max_topk (default 100)",
    ),
    AtMost("maximum", ("max_topk",)),
    INTEGRAL,
]
Retriever = Annotated[
    RetrieverName,
    Field(
        description="one the server serves (/health `retrievers`)",
        json_schema_extra=_setting("enum", "retriever"),
    ),
    AfterValidator(_served),
]
Question = Annotated[
    StrictStr,
    Field(
        description="the original question (for the squeezer); at most max_query_chars characters",
    ),
    AfterValidator(_unicode),
    AtMost("maxLength", ("max_query_chars",), " characters"),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="ignore")


class RetrieveRequest(_Request):
    queries: Queries
    topk: TopK | None = Field(default=None, description="null: the server's retrieve_topk")
    return_scores: StrictBool = False
    retriever: Retriever | None = Field(
        default=None, description="null: the server's default (the first served)"
    )


class SearchRequest(_Request):
    queries: Queries = Field(description="all query variants of one turn")
    topk: TopK | None = Field(default=None, description="per variant; null: the server's search_topk")
    question: Question | None = None
    squeeze: StrictBool | None = Field(default=None, description="null: the server's default")
    max_documents: Annotated[StrictInt, Field(ge=1), INTEGRAL] | None = Field(
        default=None, description="cap on the fused documents; null: no cap"
    )
    retriever: Retriever | None = Field(
        default=None, description="null: the server's default (the first served)"
    )


class SqueezeDocument(_Request):
    title: Text = ""
    text: Text


class SqueezeRequest(_Request):
    queries: Queries
    documents: Annotated[
        list[SqueezeDocument],
        Field(
            min_length=1,
            description="at least one; at most the server's max_queries*max_topk",
        ),
        AtMost("maxItems", ("max_queries", "max_topk"), " documents"),
    ]
    question: Question | None = None


class Document(TypedDict):
    id: str
    contents: str
    title: str
    text: str


class ScoredDocument(TypedDict):
    document: Document
    score: float


ScoredResult = list[list[ScoredDocument]]
BareResult = list[list[Document]]


class RetrieveResponse(TypedDict):
    result: Annotated[
        ScoredResult | BareResult,
        Field(description="one list per query, in order; bare documents unless return_scores"),
    ]


class FusedDocument(TypedDict):
    id: str
    title: str
    text: str
    score: Annotated[
        float, Field(description="fused score: reciprocal-rank fusion (default) or the best raw score")
    ]
    query_hits: Annotated[list[int], Field(description="indices of the variants that retrieved this passage")]


class SearchResponse(TypedDict):
    documents: list[FusedDocument]
    per_query: list[list[str]]
    summary: str | None
    squeezed: bool
    squeeze_error: str | None
    cached: bool
    timings_ms: dict[str, float]


class SqueezeResponse(TypedDict):
    summary: str
    backend: str
    timings_ms: dict[str, float]


class Problem(TypedDict):
    """Any error but a 422: what went wrong, in words."""

    detail: str


ERRORS = {  # besides 422 (FastAPI declares it): what every POST route may answer
    400: {"model": Problem, "description": "the body is not JSON text (e.g. not UTF-8)"},
    401: {"model": Problem, "description": "missing or wrong bearer token (--auth-token)"},
    413: {"model": Problem, "description": "the body is larger than the server's max_body_bytes"},
    503: {"model": Problem, "description": "the server is still loading; retry after Retry-After seconds"},
}
SQUEEZE_ERRORS = {
    **ERRORS,
    502: {"model": Problem, "description": "the squeezer backend failed"},
    504: {"model": Problem, "description": "the squeezer took longer than squeeze_timeout_s"},
}


class Budgets(BaseModel):
    """The server's time limits, so a client can wait long enough for the fallback (never less)."""

    squeeze_timeout_s: float = Field(
        description="a squeeze slower than this falls back to the fused passages"
    )


class Health(BaseModel):
    status: str
    budgets: Budgets | None = None
    corpus_size: int | None = None
    retriever: str | None = None
    retrievers: list[str] = []
    encoder: str | None = None
    squeezer: str | None = None
    error: str | None = None


@functools.cache
def _adapter(model: Any) -> TypeAdapter:
    return TypeAdapter(model)


def checked(model: Any, payload: Any) -> Any:
    """`payload` validated against the response `model` (a ValidationError, a 500, if it is not one)."""
    return _adapter(model).validate_python(payload)
