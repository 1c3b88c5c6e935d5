"""The `omz-like` application: wiring only. Each command lives in its own module."""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.text import Text

from converter import __version__
from converter.cli import accuracy, build, info, listing, verify
from converter.cli import parity as parity_command
from converter.cli import predict as predict_command
from converter.cli import benchmark as benchmark_command
from converter.cli import fetch as fetch_command
from converter.cli import convert, export
from converter.errors import EXIT_FAILURE, EXIT_INTERRUPTED, ConverterError

DEBUG_VARIABLE = "OMZ_LIKE_DEBUG"

app = typer.Typer(
    name="omz-like",
    help="Fetch a Hugging Face checkpoint, convert it to OpenVINO IR and prove the IR against PyTorch.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"omz-like {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit."),
) -> None:
    """Fetch a Hugging Face checkpoint, convert it to OpenVINO IR and prove the IR against PyTorch."""


app.command("list")(listing.list_recipes)
app.command("info")(info.info)
app.command("fetch")(fetch_command.fetch)
app.command("export")(export.export)
app.command("convert")(convert.convert)
app.command("parity")(parity_command.parity)
app.command("build")(build.build)
app.command("verify")(verify.verify)
app.command("accuracy")(accuracy.accuracy)
app.command("predict")(predict_command.predict)
app.command("benchmark")(benchmark_command.benchmark)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and turn a known failure into one line on stderr and its exit code."""
    try:
        app(args=argv, prog_name="omz-like")
    except ConverterError as error:
        _fail(error, str(error), error.exit_code)
    except OSError as error:
        # A file-system failure the commands do not anticipate (permissions, a
        # file where a folder should be) still gets one line, not a traceback.
        where = f"{error.filename}: " if error.filename else ""
        _fail(error, f"{where}{error.strerror or error}", EXIT_FAILURE)
    except KeyboardInterrupt as error:
        _fail(error, "interrupted", EXIT_INTERRUPTED)
    except SystemExit as exit_:
        # Typer turns Ctrl-C into a silent exit with code 130.
        if exit_.code == EXIT_INTERRUPTED:
            Console(stderr=True, highlight=False).print(Text.assemble(("error: ", "bold red"), "interrupted"))
        raise


def _fail(error: BaseException, message: str, code: int) -> None:
    if os.environ.get(DEBUG_VARIABLE):
        raise error
    Console(stderr=True, highlight=False, soft_wrap=True).print(Text.assemble(("error: ", "bold red"), message))
    sys.exit(code)
