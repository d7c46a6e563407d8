"""Entry point of the ``theorylab`` command.

Each sub-command lives in its own module with ``add_parser(subparsers)``, which registers the
command and sets ``func`` (``args -> exit code``).  Only the module of the command being run is
imported (``theorylab --version`` and ``theorylab --help`` load no numerical library), so the
one-line summaries of the commands are listed here too (a test checks they match the modules').

Errors keep one promise: bad input (a ValueError, a missing or unreadable file, a usage error)
ends the command with one line on standard error and exit code 2, never a traceback.  A reader
that closes the pipe early (``theorylab verify --list | head -1``) ends the command quietly, as it
ends any Unix tool (exit code 141, as after SIGPIPE).  Ctrl-C ends it with exit code 130 and a
line saying what is kept, which each command states (``INTERRUPTED`` in its module).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys

from theorylab.provenance import __version__

#: command -> (module, one-line summary)
COMMANDS = {
    "verify": ("theorylab.cli.verify", "run the claims from papers and write a report"),
    "sweep": ("theorylab.cli.sweep", "inspect a sweep's results store and export its table"),
    "fit": ("theorylab.cli.fit", "fit a scaling law to a table of runs"),
}
BAD_INPUT = 2
INTERRUPTED = 130
BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports for a tool that wrote to a closed pipe


class OneLineParser(argparse.ArgumentParser):
    """An argument parser whose usage errors are one line (with a pointer to ``--help``), exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(BAD_INPUT, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every command listed and ``command``'s own options loaded (by importing its module)."""
    parser = OneLineParser(prog="theorylab", description="Check deep-learning theory against measurements: "
                                                         "verify claims from papers, fit scaling laws, inspect sweeps.")
    parser.add_argument("--version", action="version", version=f"theorylab {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, summary) in COMMANDS.items():
        if name == command:
            importlib.import_module(module).add_parser(sub)
        else:
            sub.add_parser(name, help=summary, add_help=False)
    return parser


def _command(argv: list[str]) -> str | None:
    """The command named in ``argv`` (its first word that is not an option), if it is one."""
    first = next((a for a in argv if not a.startswith("-")), None)
    return first if first in COMMANDS else None


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (2 for bad input, with no traceback)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    command = _command(argv)
    prefix = "theorylab" + (f" {command}" if command else "")
    try:
        parser = build_parser(command)
        args, unknown = parser.parse_known_args(argv)
        if unknown:  # reported by the command's parser, which names the command
            subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            subparsers.choices[args.command].error(f"unrecognized arguments: {' '.join(unknown)}")
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except BrokenPipeError:
        _silence_stdout()
        return BROKEN_PIPE
    except (ValueError, FileNotFoundError) as exc:
        _error_line(prefix, str(exc))
        return BAD_INPUT
    except OSError as exc:  # unreadable input, a folder where a file should be, a full disk ...
        where = f": {exc.filename}" if exc.filename else ""
        _error_line(prefix, f"{exc.strerror or exc}{where}")
        return BAD_INPUT
    except KeyboardInterrupt:
        module = sys.modules.get(COMMANDS[command][0]) if command else None
        _error_line(prefix, getattr(module, "INTERRUPTED", "interrupted; finished work is saved, run again to resume"),
                    kind="")
        return INTERRUPTED


def _error_line(prefix: str, message: str, *, kind: str = "error: ") -> None:
    text = " ".join(message.split()) or "failed"
    try:
        print(f"{prefix}: {kind}{text}", file=sys.stderr, flush=True)
    except BrokenPipeError:
        pass


def _silence_stdout() -> None:
    """Point standard output at /dev/null so that the interpreter's final flush cannot fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


if __name__ == "__main__":
    sys.exit(main())
