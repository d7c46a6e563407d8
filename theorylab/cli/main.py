"""Entry point of the ``theorylab`` command.

Each sub-command lives in its own module with ``add_parser(subparsers)``, which registers the
command and sets ``func`` (``args -> exit code``).  Bad input raised as ValueError or
FileNotFoundError by the library ends the command with a one-line message and exit code 2.
"""
from __future__ import annotations

import argparse
import sys

from theorylab.cli import sweep as sweep_cmd
from theorylab.cli import fit as fit_cmd
from theorylab.cli import verify as verify_cmd
from theorylab.provenance import __version__

COMMANDS = [verify_cmd, sweep_cmd, fit_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="theorylab", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"theorylab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for bad input, with no traceback)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:
        print(f"theorylab {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"theorylab {args.command}: interrupted; finished work is saved, run again to resume",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
