"""What every ``sn`` command shares: exit codes, failures, parsing, output and the event loop."""

from __future__ import annotations

import base64
import json
import logging
import math
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import IO, Any, Literal, TypeVar

import anyio
import click
from rich.console import Console
from rich.status import Status

from ..errors import CallTimeout, ConnectError, ConnectionLost, RemoteError, SynapseError
from ..node._config import parse_seed

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_ANSWER",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Failure",
    "Settings",
    "console",
    "format_result",
    "json_text",
    "parse_address",
    "parse_json_literal",
    "parse_key_value",
    "progress",
    "run",
]

T = TypeVar("T")

_HANDLED = (click.ClickException, click.exceptions.Exit, SynapseError, OSError, SystemExit)

#: The command did what was asked.
EXIT_OK = 0
#: A call failed (the remote node answered with an error) or every answer was an error.
EXIT_FAILED = 1
#: Bad command line (click's own code).
EXIT_USAGE = 2
#: A seed or node could not be reached, refused the join, or no peer was found.
EXIT_UNREACHABLE = 3
#: Nothing answered before the timeout.
EXIT_NO_ANSWER = 4
#: Stopped by Ctrl+C or SIGTERM before anything was achieved.
EXIT_INTERRUPTED = 130


class Failure(click.ClickException):
    """A one-line reason on stderr (``sn: ...``) and a non-zero exit code."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code  # type: ignore[misc]  # click declares a class default

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"sn: {self.format_message()}", err=True, file=file)


@dataclass
class Settings:
    """Options of the ``sn`` group, passed to every command."""

    backend: Literal["trio", "asyncio"] = "trio"
    verbose: int = 0


def configure_logging(verbose: int) -> None:
    """``-v`` shows the library's INFO records on stderr, ``-vv`` DEBUG; silent otherwise."""
    if verbose <= 0:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("synapse_p2p")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)


def console(*, stderr: bool = False) -> Console:
    """A rich console on the current stdout (or stderr): colours and live widgets only on a
    terminal, and long lines never wrapped when output goes to a pipe or a file."""
    return Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


@contextmanager
def progress(out: Console, what: str) -> Iterator[Callable[[str], None]]:
    """Show ``what`` with a spinner and the elapsed time while waiting, on a terminal only.

    Yields ``update(text)`` to change what is being waited for. Quiet when ``out`` is not a
    terminal (logs and pipes get only the result lines).
    """
    if not out.is_terminal:
        yield lambda text: None
        return
    started = anyio.current_time()
    state = {"what": what}

    def render() -> str:
        return f"{state['what']} ({anyio.current_time() - started:.1f} s)"

    status = Status(render(), console=out, spinner="dots")

    def update(text: str) -> None:
        state["what"] = text
        status.update(render())

    status.start()
    try:
        yield update
    finally:
        status.stop()


async def tick_progress(update: Callable[[str], None], text: Callable[[], str]) -> None:
    """Refresh a :func:`progress` line a few times a second until cancelled."""
    while True:
        update(text())
        await anyio.sleep(0.2)


def run(
    settings: Settings,
    main: Callable[[], Awaitable[T]],
    *,
    on_interrupt: Callable[[], int] | None = None,
) -> T:
    """Run ``main`` on the chosen backend; Ctrl+C and SIGTERM cancel it cleanly.

    When interrupted, ``on_interrupt()`` gives the exit code (default 130); a :class:`Failure`
    or library error inside ``main`` becomes a one-line reason and its exit code.
    """
    interrupted = False
    caught: list[BaseException] = []

    async def guarded() -> T | None:
        result: T | None = None
        async with anyio.create_task_group() as tg:

            async def signals() -> None:
                nonlocal interrupted
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
                    async for _ in received:
                        interrupted = True
                        tg.cancel_scope.cancel()
                        return

            tg.start_soon(signals)
            try:
                result = await main()
            except (
                click.ClickException,
                click.exceptions.Exit,
                SynapseError,
                OSError,
                SystemExit,
            ) as exc:
                caught.append(exc)  # raised again outside the task group, unwrapped
            finally:
                tg.cancel_scope.cancel()
        return result

    try:
        result = anyio.run(guarded, backend=settings.backend)
    except KeyboardInterrupt:  # a Ctrl+C before the signal receiver was open
        interrupted, result = True, None
    except BaseExceptionGroup as group:
        leaves = list(_leaves(group))
        if all(isinstance(e, KeyboardInterrupt) for e in leaves):
            interrupted, result = True, None
        elif exits := [e for e in leaves if isinstance(e, SystemExit)]:
            raise exits[0] from None  # e.g. stdout closed early (`sn demo | head`)
        elif len(leaves) == 1 and isinstance(leaves[0], _HANDLED):
            caught.append(leaves[0])
            result = None
        else:
            raise
    if caught and not interrupted:
        error = caught[0]
        if isinstance(error, SynapseError | OSError):
            raise library_failure(error) from None
        raise error
    if interrupted:
        code = EXIT_INTERRUPTED if on_interrupt is None else on_interrupt()
        raise click.exceptions.Exit(code)
    return result  # type: ignore[return-value]


def _leaves(group: BaseExceptionGroup[BaseException]) -> Iterator[BaseException]:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc


def library_failure(exc: BaseException, where: str = "") -> Failure:
    """The exit code and one-line reason for an error raised by the library."""
    prefix = f"{where}: " if where else ""
    if isinstance(exc, RemoteError):
        return Failure(f"{prefix}{exc.code}: {exc.message}", EXIT_FAILED)
    if isinstance(exc, CallTimeout):
        return Failure(f"{prefix}{exc or 'no answer before the timeout'}", EXIT_NO_ANSWER)
    if isinstance(exc, ConnectError | ConnectionLost | ConnectionError | OSError):
        return Failure(f"{prefix}{exc or type(exc).__name__}", EXIT_UNREACHABLE)
    return Failure(f"{prefix}{exc or type(exc).__name__}", EXIT_FAILED)


# -- parsing ----------------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``host:port``, ``host`` (port 9999) or ``[v6]:port``; raises ``click.BadParameter``."""
    try:
        return parse_seed(text)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"expected host:port, got {text!r} ({exc})") from None


def parse_key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got {text!r}")
    return key, value


def parse_json_literal(text: str, what: str) -> Any:
    """A JSON literal (``1``, ``"text"``, ``[1, 2]``, ``{"a": 1}``, ``true``, ``null``)."""
    try:
        return json.loads(text)
    except ValueError:
        raise click.BadParameter(
            f"{what} {text!r} is not a JSON literal (quote strings: '\"{text}\"')"
        ) from None


# -- output -----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """JSON for output; bytes become ``{"$bytes": "<base64>"}``."""
    separators = None if indent else (",", ":")
    return json.dumps(_jsonable(value), indent=indent, ensure_ascii=False, separators=separators)


def format_result(result: Any) -> str:
    """How a reply reads on one line: ``"<from>: <answer>"`` for ``{"from", "answer"}``, the
    answer alone for ``{"answer"}``, text as is, anything else as compact JSON."""
    if isinstance(result, dict) and "answer" in result:
        answer = format_result(result["answer"])
        return f"{result['from']}: {answer}" if "from" in result else answer
    if isinstance(result, str):
        return result
    return json_text(result, indent=None)
