"""The one name for an untyped JSON object.

``JSONObject`` stands only where data crosses a JSON boundary: a column stored as JSON, a file or a
hub row as parsed, a stage identity about to be hashed, an OpenAPI fragment. Everywhere else a
typed model holds the data (a pydantic model, a dataclass, a ``TypedDict``), so that a renamed field
fails where it is written.
"""

from __future__ import annotations

from typing import Any

JSONObject = dict[str, Any]  # the boundary itself: JSON's values are untyped until validated
