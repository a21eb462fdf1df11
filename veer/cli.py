"""``python -m veer <verb>``: one entry for every job.

Each verb lives in the module named for what it does. That module defines

    add_arguments(parser: argparse.ArgumentParser) -> None
    run(args: argparse.Namespace) -> int          # the exit status

Modules are imported only when their verb is used, so ``--help`` is quick and
one verb's heavy imports never slow another. Errors a user can cause
(:class:`veer.errors.VeerError`) are printed as one line, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from veer import __version__
from veer.errors import VeerError

# verb -> (module, one-line help)
VERBS: dict[str, tuple[str, str]] = {
    "synth": ("veer.synth", "generate synthetic well-log scans with exact truth"),
    "train": ("veer.train", "train the joint three-class model or one binary-mask model"),
    "evaluate": ("veer.evaluate", "score the joint and separate pipelines (and digitised curves) on a data folder"),
    "segment": ("veer.infer", "segment scans into background / curve1 / curve2 masks"),
    "digitize": ("veer.digitize", "turn scans or masks into depth-indexed curves, CSV and LAS"),
    "bench": ("veer.bench", "measure speed and memory of the generator and the segmenter"),
    "batch": ("veer.batch", "digitise a whole archive of scans on a Dask cluster"),
}

EPILOG = "Run 'python -m veer <verb> --help' for a verb's options."


def _top_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m veer",
        description="veer: lift curves off scanned paper well logs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"veer {__version__}")
    sub = parser.add_subparsers(dest="verb", metavar="<verb>")
    for verb, (_, help_) in VERBS.items():
        sub.add_parser(verb, help=help_, description=help_)
    return parser


def build_parser(verb: str) -> argparse.ArgumentParser:
    module_name, help_ = VERBS[verb]
    module = importlib.import_module(module_name)
    parser = argparse.ArgumentParser(prog=f"python -m veer {verb}", description=help_)
    module.add_arguments(parser)
    parser.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    top = _top_parser()
    if not argv or argv[0] not in VERBS:
        if argv and not argv[0].startswith("-"):
            top.error(f"unknown verb {argv[0]!r}; choose from {', '.join(VERBS)}")
        args = top.parse_args(argv)
        top.print_help()
        return 0 if argv else 2
    verb = argv[0]
    parser = build_parser(verb)
    args = parser.parse_args(argv[1:])
    try:
        return int(args._run(args) or 0)
    except VeerError as exc:
        print(f"veer {verb}: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"veer {verb}: interrupted; outputs already finished are kept", file=sys.stderr)
        return 130
