"""The responses the routes document in OpenAPI besides their own, defined once."""

from __future__ import annotations

from pydantic import BaseModel

from xstilts.api.schemas import ErrorDetail
from xstilts.jsontypes import JSONObject

Responses = dict[int | str, JSONObject]  # FastAPI's ``responses=``: OpenAPI fragments


def error(description: str, model: type[BaseModel] = ErrorDetail) -> JSONObject:
    return {"model": model, "description": description}


def json_error(description: str, schema: str = "ErrorDetail") -> JSONObject:
    """An error response of an HTML route: its body is JSON (a ``model`` would be documented
    under the route's text/html)."""
    ref = {"$ref": f"#/components/schemas/{schema}"}
    return {"description": description, "content": {"application/json": {"schema": ref}}}


UNAUTHORIZED_TEXT = "missing or unknown API key"
HEAVY_TEXT = "heavy requests at their limit (Retry-After)"
UNAVAILABLE_TEXT = "the database is unavailable (Retry-After)"
UNAUTHORIZED: Responses = {401: error(UNAUTHORIZED_TEXT)}
HEAVY: Responses = {429: error(HEAVY_TEXT)}
UNAVAILABLE: Responses = {503: error(UNAVAILABLE_TEXT)}


def not_found(what: str) -> Responses:
    return {404: error(f"no such {what} of this key's owner")}


TOO_LARGE: Responses = {413: error("body over 1 MiB")}
LIVE_QUOTA: Responses = {
    429: error("this key's unfinished experiments at XSTILTS_QUOTA_LIVE_EXPERIMENTS (Retry-After)")
}
