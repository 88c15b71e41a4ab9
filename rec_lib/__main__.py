"""Command line: ``python -m rec_lib <command>``.

Commands
--------
fetch-data              put MovieLens-100K into data/raw/ml-100k/ (from the recbole wheel)
execute [CHAPTER ...]   execute chapters in place at their default scale (all when none named)
chapters                list the chapters in book order
run CHAPTER --scale paper -p NAME=VALUE ...
                        rerun a chapter through papermill into runs/<chapter>-<timestamp>/
run --list              the chapters that can be rerun and their parameters
datasets                the registered datasets, where their files go, and whether they are present
numerics [--shell]      the pinned numerics in effect (rec_lib.numerics); --shell: export lines
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

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


def _run(args: argparse.Namespace) -> int:
    from rec_lib import rerun
    from rec_lib.chapters import available

    if args.list:
        names = available()
        if not names:
            print("no chapter can be run yet (none has both its notebook and its module)")
            return 0
        print("python -m rec_lib run CHAPTER [--scale smoke|tutorial|paper] [-p NAME=VALUE ...]\n")
        print("\n\n".join(rerun.describe(n) for n in names))
        return 0
    if not args.chapter:
        print("error: name a chapter (see `python -m rec_lib run --list`)", file=sys.stderr)
        return 2
    try:
        plan = rerun.plan(args.chapter, args.scale, args.param or [])
    except rerun.RunError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(f"running {args.chapter} at scale {plan.scale!r} with "
          + (", ".join(f"{k}={v!r}" for k, v in plan.parameters.items() if k != "SCALE") or "the notebook's defaults"),
          flush=True)
    try:
        result = rerun.execute(plan, args.runs_dir, timeout=args.timeout, kernel=args.kernel,
                               progress=sys.stderr.isatty())
    except rerun.RunFailed as err:
        print(f"error: {err}\n  partly executed notebook: {err.notebook}", file=sys.stderr)
        return 1
    print(f"executed notebook: {result.notebook}")
    print(f"ledger:            {result.ledger or '(the chapter wrote no ledger)'}")
    print(f"run record:        {result.folder / 'run.json'}  ({result.seconds:.0f} s)")
    return 0


def _datasets(args: argparse.Namespace) -> int:
    from rec_lib.data import dataset_available, list_datasets

    for spec in list_datasets():
        state = "present" if dataset_available(spec.name) else "missing"
        files = " | ".join("+".join(layout) for layout in spec.files)
        print(f"{spec.name:<12} {state:<8} {spec.directory()}/  [{files}]\n{'':<22}{spec.url}")
    return 0


def _numerics(args: argparse.Namespace) -> int:
    import json

    from rec_lib import numerics

    print(numerics.shell_exports() if args.shell else json.dumps(numerics.describe(), indent=1))
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
    r = sub.add_parser("run", help="rerun a chapter through papermill into runs/<chapter>-<timestamp>/",
                       description="Validate the parameters and the data, then execute the chapter's notebook "
                                   "into runs/<chapter>-<timestamp>/ with its ledger beside it.")
    r.add_argument("chapter", nargs="?", help="chapter name (see --list)")
    r.add_argument("--scale", default="paper", help="smoke | tutorial | paper (default: paper)")
    r.add_argument("-p", "--param", action="append", metavar="NAME=VALUE",
                   help="a parameter of the notebook's parameters cell, read as a Python literal (repeatable)")
    r.add_argument("--list", action="store_true", help="list the chapters that can be run and their parameters")
    r.add_argument("--runs-dir", type=Path, default=None, help="where run folders go (default: <repo>/runs)")
    r.add_argument("--timeout", type=int, default=None, help="per-cell timeout in seconds")
    r.add_argument("--kernel", default="python3", help="Jupyter kernel (default: python3)")
    r.set_defaults(func=_run)
    d = sub.add_parser("datasets", help="list the registered datasets and whether their files are present")
    d.set_defaults(func=_datasets)
    n = sub.add_parser("numerics", help="the pinned numerics (kernels, threads) in effect")
    n.add_argument("--shell", action="store_true", help="print export lines for a shell script")
    n.set_defaults(func=_numerics)
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
