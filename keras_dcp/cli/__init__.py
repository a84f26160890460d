"""The ``keras-dcp`` command line.

Each subcommand lives in its own module of this package and provides
``add_parser(subparsers)`` (cheap: argparse only, no TensorFlow import) and
``run(args) -> int``. Adding a subcommand means adding a line to SUBCOMMANDS.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import zipfile

#: subcommand -> module under keras_dcp.cli
SUBCOMMANDS = {
    "protect": "protect",
    "demo": "demo",
    "evaluate": "evaluate",
    "train-victim": "train_victim",
    "export": "export",
    "audit": "audit",
    "bench": "bench",
}


def build_parser():
    parser = argparse.ArgumentParser(
        prog="keras-dcp",
        description="Protect Keras image classifiers against model stealing (DCP, arXiv 2309.01838).",
    )
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("keras-dcp")
    except PackageNotFoundError:  # running from a source tree that is not installed
        package_version = "unknown"
    parser.add_argument("--version", action="version", version=f"keras-dcp {package_version}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command, module_name in SUBCOMMANDS.items():
        try:
            module = importlib.import_module(f"keras_dcp.cli.{module_name}")
        except ModuleNotFoundError as error:
            if error.name != f"keras_dcp.cli.{module_name}":
                raise
            continue
        sub = module.add_parser(subparsers, command)
        sub.set_defaults(_run=module.run)
    return parser


#: Errors that mean "fix your input" (a bad file, a path, a value): one line on stderr, exit 2.
#: Every other exception is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, zipfile.BadZipFile)


def one_line(error: BaseException) -> str:
    """The error's message on one line (whitespace folded), or its type when it has none."""
    return " ".join(str(error).split()) or type(error).__name__


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except USER_ERRORS as error:
        print(f"keras-dcp {args.command}: error: {one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"keras-dcp {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
