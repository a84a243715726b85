"""The minidl-bench command line."""

from __future__ import annotations

import argparse
import datetime
import sys

from minidl.bench import case as case_mod
from minidl.bench import machine, report, runner


def parse_threads(text: str) -> list[int]:
    counts = []
    for part in text.split(","):
        try:
            n = int(part)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected integers like 1,2,4, got {text!r}"
            ) from None
        if n < 1:
            raise argparse.ArgumentTypeError(f"thread counts must be >= 1, got {n}")
        if n not in counts:
            counts.append(n)
    return counts


def parse_groups(text: str) -> tuple[str, ...]:
    groups = tuple(dict.fromkeys(g.strip() for g in text.split(",") if g.strip()))
    unknown = [g for g in groups if g not in case_mod.GROUPS]
    if unknown or not groups:
        raise argparse.ArgumentTypeError(
            f"unknown group(s) {', '.join(unknown) or '(none given)'}; "
            f"choose from {','.join(case_mod.GROUPS)}"
        )
    return groups


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="minidl-bench",
        description="minidl's CPU benchmark: GEMM, convolution, pooling and whole models, each "
        "beside every installed reference (NumPy, PyTorch, onnxruntime) run in its own "
        "process with the same threads, inputs and initial weights.",
    )
    size = p.add_mutually_exclusive_group()
    size.add_argument(
        "--quick", dest="size", action="store_const", const="quick", help="small cases (default)"
    )
    size.add_argument(
        "--full", dest="size", action="store_const", const="full", help="every case, more samples"
    )
    size.add_argument("--size", dest="size", choices=case_mod.SIZES, help=argparse.SUPPRESS)
    p.set_defaults(size="quick")
    p.add_argument(
        "--threads",
        type=parse_threads,
        default=None,
        help="comma-separated thread counts (default: 1 and every core)",
    )
    p.add_argument(
        "--only",
        type=parse_groups,
        default=case_mod.GROUPS,
        help=f"comma-separated case groups (default: all of {','.join(case_mod.GROUPS)})",
    )
    p.add_argument("--json", metavar="PATH", help="write every figure and the machine as JSON")
    p.add_argument("--plot", metavar="PATH.png", help="draw scaling and ratios (needs matplotlib)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.plot:
        try:
            report.require_matplotlib()
        except ImportError as exc:
            print(f"minidl-bench: {exc}", file=sys.stderr)
            return 2
    if args.threads is None:
        from minidl.threads import default_num_threads

        args.threads = sorted({1, default_num_threads()})
    cases = case_mod.cases(args.size, args.only)
    doc: dict = {
        "schema": report.SCHEMA,
        "created": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC",
        "command": ["minidl-bench", *(sys.argv[1:] if argv is None else argv)],
        "size": args.size,
        "threads": args.threads,
        "groups": list(args.only),
        "machine": machine.describe(),
    }
    progress: report.Progress | None = None

    def start(total: int):
        nonlocal progress
        progress = report.Progress(total, enabled=False if args.no_progress else None)
        return progress.tick

    def on_start(info: dict) -> None:
        for text in report.header({**doc, **info}):
            progress.write(text)
        progress.write("")
        progress.write(report.column_header())

    def show(line: dict) -> None:
        progress.write(report.line_text(line))

    try:
        doc.update(runner.run(cases, args.threads, args.size, show, start, on_start))
    finally:
        if progress is not None:
            progress.close()
    for text in report.problems(doc):
        print(text)
    print(f"{len(doc['results'])} figures in {doc['seconds']:.0f} s")
    if args.json:
        report.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.plot:
        report.plot(doc, args.plot)
        print(f"wrote {args.plot}")
    return 0
