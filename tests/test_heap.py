"""After a stage, the memory its thread freed goes back to the system (glibc keeps it otherwise)."""

from __future__ import annotations

import subprocess
import sys

import pytest

CODE = """
import threading
from xstilts.runtime.heap import return_freed_memory

def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20

def stage():  # small allocations, as a stage's Python objects: they live in the thread's arena
    rows = [bytes(1000) for _ in range(200_000)]
    del rows

t = threading.Thread(target=stage)
t.start()
t.join()
held = rss_mib()
return_freed_memory()
print(held, rss_mib())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's malloc_trim")
def test_memory_a_finished_thread_freed_is_returned() -> None:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    held, after = map(float, out.stdout.split())
    # 200,000 freed kilobyte objects stay resident in the thread's arena until trimmed.
    assert held - after > 100, (held, after)
