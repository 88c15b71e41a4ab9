"""Command line: ``python -m rec_lib <command>``.

Commands
--------
fetch-data              put MovieLens-100K into data/raw/ml-100k/ (from the recbole wheel)
execute [CHAPTER ...]   execute chapters in place at their default scale (all when none named)
chapters                list the chapters in book order
"""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _fetch(args: argparse.Namespace) -> int:
    from rec_lib.data.fetch import fetch_ml100k

    fetch_ml100k(wheel=args.wheel)
    return 0


def _execute(args: argparse.Namespace) -> int:
    from rec_lib.notebooks import chapter_path, chapters, execute_in_place

    names = args.chapters or chapters()
    for name in names:  # check every name before running anything
        chapter_path(name)
    for name in names:
        print(f"executing book/{name}.ipynb ...", flush=True)
        seconds = execute_in_place(name, timeout=args.timeout)
        print(f"  done in {seconds:.0f} s -> {chapter_path(name)}", flush=True)
    return 0


def _chapters(args: argparse.Namespace) -> int:
    from rec_lib.notebooks import chapters

    print("\n".join(chapters()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m rec_lib", description="rec_lib: the book's command line")
    sub = p.add_subparsers(dest="command", required=True)
    f = sub.add_parser("fetch-data", help="fetch MovieLens-100K into data/raw/ml-100k/")
    f.add_argument("--wheel", help="a recbole-1.2.1 wheel already on disk (offline)")
    f.set_defaults(func=_fetch)
    e = sub.add_parser("execute", help="execute chapters in place at their default scale")
    e.add_argument("chapters", nargs="*", help="chapter names (default: all, in book order)")
    e.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    e.set_defaults(func=_execute)
    c = sub.add_parser("chapters", help="list the chapters in book order")
    c.set_defaults(func=_chapters)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
