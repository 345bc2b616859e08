"""The artifact store: a local folder of stage outputs, written atomically.

A stage writes into a temporary sibling folder and renames it into place when complete, so a stage
folder either holds a whole output or does not exist.
"""

from __future__ import annotations

import logging
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

log = logging.getLogger(__name__)


class ArtifactStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def stage_dir(self, kind: str, key: str) -> Path:
        return self.root / "stages" / f"{kind}-{key[:20]}"

    def work_dir(self, key: str) -> Path:
        """Scratch space that survives a crash (training checkpoints live here)."""
        path = self.root / "work" / key[:20]
        path.mkdir(parents=True, exist_ok=True)
        return path

    def discard_work(self, key: str) -> None:
        shutil.rmtree(self.root / "work" / key[:20], ignore_errors=True)

    def mark_used(self, path: Path) -> None:
        """Set a cached file's modification time to now: ``xstilts gc`` collects a cache by it,
        least recently used first (access times are unreliable: ``noatime`` mounts). Best effort:
        a file another account owns, or one collected meanwhile, is served all the same."""
        try:
            os.utime(path)
        except OSError as e:
            log.debug("cannot mark %s used: %s", path.name, e)

    @contextmanager
    def writing(
        self, final: Path, before_publish: Callable[[], None] | None = None
    ) -> Iterator[Path]:
        """Yield a temporary folder that becomes ``final`` only if the block completes, and
        ``before_publish`` (a check that raises, e.g. that the runner still owns its stage) passes."""
        tmp = final.parent / f".tmp-{final.name}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            yield tmp
            if before_publish is not None:
                before_publish()
            if final.exists():  # a previous attempt finished the rename but not the bookkeeping
                shutil.rmtree(final)
            os.replace(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
