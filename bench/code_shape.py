"""The library's shape, as issue 24 counts it: untyped dicts, package ``__init__`` files with logic,
the largest files and functions. Run it on two checkouts to compare a restructuring:

    python bench/code_shape.py                      # this checkout
    python bench/code_shape.py --repo /tmp/before   # another one (a git worktree of an old commit)

Repeated blocks are the ``duplicates`` tool's business (``duplicates --repo shared``).
"""

from __future__ import annotations

import argparse
import ast
from pathlib import Path


def _functions(tree: ast.AST) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            assert node.end_lineno is not None
            out.append((node.name, node.end_lineno - node.lineno + 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", default=str(Path(__file__).resolve().parents[1]))
    parser.add_argument("--top", type=int, default=8, help="how many of the largest to list")
    args = parser.parse_args()
    lib = Path(args.repo) / "shared" / "xstilts"
    files = sorted(p for p in lib.rglob("*.py") if "migrations" not in p.parts)
    untyped, alias, inits, sizes, funcs = 0, 0, [], [], []
    for path in files:
        text = path.read_text(encoding="utf-8")
        rel = str(path.relative_to(lib))
        untyped += text.count("dict[str, Any]")
        if path.name != "jsontypes.py":  # where it is defined
            alias += text.count("JSONObject") - text.count("import JSONObject")
        lines = len(text.splitlines())
        sizes.append((lines, rel))
        tree = ast.parse(text)
        funcs += [(n, f"{rel}:{name}") for name, n in _functions(tree)]
        if path.name == "__init__.py":
            defs = sum(isinstance(n, (ast.FunctionDef, ast.ClassDef)) for n in tree.body)
            if defs or lines > 60:
                inits.append(f"{rel} ({lines} lines, {defs} definitions)")
    print(f"library: {len(files)} modules under {lib}")
    print(f"dict[str, Any] annotations: {untyped}")
    print(f"JSONObject (a JSON boundary) uses: {alias}")
    print(f"__init__ files with logic or over 60 lines: {len(inits)}")
    for line in inits:
        print(f"  {line}")
    print(f"largest files (lines), top {args.top}:")
    for n, rel in sorted(sizes, reverse=True)[: args.top]:
        print(f"  {n:5d}  {rel}")
    print(f"largest functions (lines), top {args.top}:")
    for n, where in sorted(funcs, reverse=True)[: args.top]:
        print(f"  {n:5d}  {where}")


if __name__ == "__main__":
    main()
