"""Response bodies of the HTTP API (pydantic models; they also document the OpenAPI schema at /docs)."""

from __future__ import annotations

from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every refusal (4xx) and failure (5xx) carries one message for a person."""

    error: str = Field(description="what was wrong with the request, and where")
    detail: list[dict] | None = Field(default=None, description="per-field validation errors, when there are any")


class Health(BaseModel):
    status: str = Field(description="'ok' when the index, data set and model are loaded")
    index: str = Field(description="index folder")
    shapes: int = Field(description="shapes in the data set")
    n_points: int = Field(description="points per shape the model reads")
    mode: str = Field(description="model mode: haf or global")
    method: str | None = Field(default=None, description="index method (ers, exact, ivf, hnsw)")
    indexed: int | None = Field(default=None, description="shapes in the index")
    model: str | None = Field(default=None, description="first 16 hex digits of the model's weights hash")
    learn: bool | None = Field(default=None, description="whether ERS learns success statistics from queries")


class SearchHit(BaseModel):
    id: str
    score: float
    category: str
    attributes: dict[str, str]
    caption: str
    render_url: str = Field(description="URL of a PNG render of the shape")


class SearchResponse(BaseModel):
    query: str
    k: int
    latency_ms: float = Field(description="time spent in the search itself")
    results: list[SearchHit]


class ShapeInfo(BaseModel):
    id: str
    category: str
    attributes: dict[str, str]
    captions: list[str]
    split: str
    n_points: int
    render_url: str


class Prediction(BaseModel):
    label: str
    score: float = Field(description="the model's final text-shape score for the label's prompt")
    prob: float = Field(description="softmax over the labels at the model's temperature")


class ClassifyResponse(BaseModel):
    filename: str
    format: str = Field(description="the format the upload's bytes were read as")
    up: str = Field(description="the axis read as up: the one asked for, or the one auto chose")
    n_points: int
    labels: list[Prediction] = Field(description="every label, best first")
    latency_ms: float


class TopPoint(BaseModel):
    index: int = Field(description="row of the point in the shape's point array")
    xyz: list[float] = Field(description="its coordinates, normalised to the unit sphere")
    attention: float = Field(description="the word's attention on it (1 = uniform)")


class WordExplanation(BaseModel):
    index: int = Field(description="token position in the query")
    word: str
    peak: float = Field(description="largest attention of the word on any point (1 = uniform)")
    weight: float = Field(description="the token's importance in the fine score")
    top_points: list[TopPoint]
    image_url: str = Field(description="PNG of this word's attention on the shape")


class ExplainResponse(BaseModel):
    query: str
    id: str
    score: float = Field(description="the fused text-shape score")
    level_scores: list[float] = Field(description="HAF score per level of the point hierarchy")
    words: list[WordExplanation]
    image_url: str = Field(description="PNG with one heat map per word")
