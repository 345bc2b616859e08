"""What the study endpoints and ``xstilts study`` return."""

from __future__ import annotations

from pydantic import BaseModel, Field

from xstilts.comparisons.model import StatisticChange


class CellState(BaseModel):
    row: str  # the intermediate set's label ("baseline", "qqp", "qqp+snli")
    intermediate_tasks: list[str]
    target: str
    experiment_id: str
    status: str


class StudyState(BaseModel):
    """Progress over all cells: counts by status, and one page of the cells (rows first)."""

    id: str
    name: str
    status: str
    rows: list[str]
    targets: list[str]
    seeds: list[int]
    total_cells: int
    counts: dict[str, int]
    limit: int
    offset: int
    cells: list[CellState]


class CellResult(BaseModel):
    """One cell of the matrix: its task score and its changes over the baseline row's cell of the
    same target (None until both have succeeded; the baseline row has none)."""

    row: str
    target: str
    experiment_id: str
    status: str
    xtreme_score: float | None = None
    non_english_std: float | None = None
    per_seed_non_english_std: list[float | None] = Field(default_factory=list)
    score_change: StatisticChange | None = None
    non_english_std_change: StatisticChange | None = None
    warnings: list[str] = Field(default_factory=list)


class StudyResults(BaseModel):
    """The paper-style matrix: a page of rows (intermediate sets) by every target."""

    id: str
    name: str
    rows: list[str]
    targets: list[str]
    seeds: list[int]
    total_rows: int
    limit: int
    offset: int
    cells: list[list[CellResult]]
