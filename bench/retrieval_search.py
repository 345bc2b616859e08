"""Chunked exact k-NN search (BUCC mining's core) vs one full similarity matrix: time and memory.

Each size runs in a fresh subprocess so its peak RSS is its own. Vectors are random, 384-wide
(the offline model's width), L2-normalised; k = 4 as in BUCC.

    python bench/retrieval_search.py [--sizes 10000,40000,100000] [--dim 384]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def child(n: int, dim: int, mode: str) -> None:
    import numpy as np
    import torch
    from xstilts.formats.retrieval_search import knn, normalize

    rng = np.random.default_rng(0)
    x = normalize(rng.standard_normal((n, dim), dtype=np.float32))
    y = normalize(rng.standard_normal((n, dim), dtype=np.float32))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    if mode == "chunked":
        sims, _ = knn(x, y, 4)
    else:
        sims = torch.topk(torch.from_numpy(x) @ torch.from_numpy(y).T, 4).values.numpy()
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(
        json.dumps(
            {"seconds": seconds, "extra_mb": (peak - base) / 1024, "check": float(sims.sum())}
        )
    )


def main() -> int:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--sizes", default="10000,40000,100000")
    p.add_argument("--dim", type=int, default=384)
    p.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(int(args.child[0]), args.dim, args.child[1])
        return 0
    print(f"{'n x n':>16}{'mode':>10}{'seconds':>10}{'extra peak MB':>16}{'full matrix MB':>16}")
    for n in (int(s) for s in args.sizes.split(",")):
        full_mb = n * n * 4 / 2**20
        for mode in ("chunked", "full"):
            if mode == "full" and full_mb > 8192:
                print(f"{n:>7} x {n:<7}{mode:>10}{'skipped: would need':>26}{full_mb:>16.0f}")
                continue
            out = subprocess.run(
                [sys.executable, __file__, "--dim", str(args.dim), "--child", str(n), mode],
                capture_output=True,
                text=True,
                check=True,
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{n:>7} x {n:<7}{mode:>10}{r['seconds']:>10.1f}{r['extra_mb']:>16.0f}{full_mb:>16.0f}"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
