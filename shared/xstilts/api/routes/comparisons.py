"""``/comparisons``: a candidate experiment against a baseline, with paired intervals and tests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.concurrency import run_in_threadpool

from xstilts.api.deps import CurrentOwner, SessionsDep, StoreDep
from xstilts.api.heavy import HeavyDep
from xstilts.api.responses import HEAVY, UNAUTHORIZED, UNAVAILABLE, Responses, error, not_found
from xstilts.api.schemas import ValidationErrors
from xstilts.comparisons import (
    CompareOptions,
    Comparison,
    cached_comparison,
    compare_sides,
)
from xstilts.comparisons.sides import side_ref

router = APIRouter(
    prefix="/comparisons",
    tags=["comparisons"],
    responses={**UNAUTHORIZED, **HEAVY, **UNAVAILABLE},
)
EXPERIMENT_ID = r"^[0-9a-f]{32}$"
ExperimentParam = Annotated[str, Query(pattern=EXPERIMENT_ID, description="an experiment id")]
COMPARE_RESPONSES: Responses = {
    **not_found("experiment"),
    409: error("an experiment has not succeeded (yet)"),
    422: error(
        "a bad parameter, or the two experiments were not evaluated alike (task, split, "
        "languages or examples): the entry's loc names the field",
        ValidationErrors,
    ),
}


@router.get("", response_model=Comparison, responses=COMPARE_RESPONSES)
async def get_comparison(
    request: Request,
    baseline: ExperimentParam,
    candidate: ExperimentParam,
    owner: CurrentOwner,
    sessions: SessionsDep,
    store: StoreDep,
    heavy: HeavyDep,
    samples: Annotated[int, Query(ge=100, le=100_000)] = 2000,
    confidence: Annotated[float, Query(ge=0.5, lt=1)] = 0.95,
    alpha: Annotated[float, Query(gt=0, lt=1)] = 0.05,
    seed: Annotated[int, Query(ge=0, le=2**31 - 1)] = 0,
) -> Comparison:
    """Candidate minus baseline per language and for the statistics across languages (mean,
    transfer gap, non-English standard deviation and variance, range, worst language), each with a
    paired bootstrap interval and a p-value; per-language p-values Holm-adjusted. Computed from
    the stored predictions once per pair and parameters, then served from the cache.
    Computing one takes a slot of heavy work: past ``XSTILTS_HEAVY_REQUESTS`` at once, 429 with
    Retry-After."""
    options = CompareOptions(samples=samples, confidence=confidence, alpha=alpha, seed=seed)
    a = await run_in_threadpool(side_ref, sessions, baseline, owner)
    b = await run_in_threadpool(side_ref, sessions, candidate, owner)
    cached = await run_in_threadpool(cached_comparison, store, a, b, options)
    if cached is not None:
        return cached
    return await heavy.run(request, "comparison", lambda: compare_sides(store, a, b, options))
