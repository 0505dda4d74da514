"""What every ``sn`` command shares: exit codes, failures, parsing, output and the event loop."""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import math
import os
import re
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, Literal, TypeVar, cast

import anyio
import click
from rich.console import Console
from rich.status import Status
from rich.text import Text

from .._config import parse_seed
from .._logging import configure_console_logging
from .._validate import check_swarm_name
from ..errors import (
    CallTimeout,
    ConnectError,
    ConnectionLost,
    IdentityError,
    RemoteError,
    SynapseError,
)
from ..identity import Identity
from ..transport._ws_url import WebSocketUrl

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_NO_ANSWER",
    "EXIT_OK",
    "EXIT_UNREACHABLE",
    "EXIT_USAGE",
    "Failure",
    "Settings",
    "Trust",
    "console",
    "format_result",
    "json_text",
    "parse_address",
    "parse_json_literal",
    "parse_key_value",
    "parse_seed_option",
    "progress",
    "run",
    "trust_options",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


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
        click.echo(f"sn: {clean(self.format_message())}", err=True, file=file)


@dataclass
class Settings:
    """Options of the ``sn`` group, passed to every command."""

    backend: Literal["trio", "asyncio"] = "trio"
    verbose: int = 0


@dataclass(frozen=True)
class Trust:
    """``--secret`` (repeatable: a keyring, the first primary) and ``--identity PATH``: what a
    command's node or client proves itself with. The secrets are never shown (not in its
    ``repr`` either)."""

    secrets: tuple[str, ...] = field(default=(), repr=False)
    identity_path: Path | None = None

    @property
    def secret(self) -> list[str] | None:
        """For ``Node(secret=)`` and ``Client(secret=)``: ``None`` without ``--secret``, so the
        library reads ``SYNAPSE_SECRET`` itself."""
        return list(self.secrets) or None

    def identity(self) -> Identity | None:
        """The key of ``--identity``, read, or created (mode 0600) if the file is missing;
        ``None`` without the option. A :class:`Failure` (one line, exit 2) when the file
        cannot be read, parsed or created."""
        path = self.identity_path
        if path is None:
            return None
        try:
            return Identity.load_or_create(path)
        except (IdentityError, OSError, ValueError) as exc:
            reason = str(exc)
            if isinstance(exc, OSError) and exc.strerror:
                where = exc.filename if exc.filename and str(exc.filename) != str(path) else ""
                reason = f"{exc.strerror}: {where}" if where else exc.strerror
            raise Failure(f"--identity {path}: {clean(reason)}", EXIT_USAGE) from None

    def settings(self) -> dict[str, Any]:
        """``secret=`` and ``identity=`` for :class:`~synapse_p2p.Node` or
        :class:`~synapse_p2p.Client` (the identity file read now)."""
        return {"secret": self.secret, "identity": self.identity()}


def _secrets(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
    """Check each ``--secret`` without ever repeating its value."""
    for value in values:
        if not value.strip():
            raise click.BadParameter("a swarm secret must not be empty")
        if "," in value:  # SYNAPSE_SECRET separates secrets with commas: keep the two alike
            raise click.BadParameter("a swarm secret cannot contain ','; repeat --secret")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise click.BadParameter("a swarm secret must be valid UTF-8") from None
    return values


def trust_options(fn: F) -> F:
    """``--secret`` (repeatable) and ``--identity PATH``; the command gets them as one
    ``trust`` keyword argument (a :class:`Trust`)."""

    @functools.wraps(fn)
    def command(
        *args: Any, secrets: tuple[str, ...] = (), identity: Path | None = None, **kwargs: Any
    ) -> Any:
        return fn(*args, trust=Trust(tuple(secrets), identity), **kwargs)

    decorated: Any = command
    decorated = click.option("--identity", "identity", default=None, metavar="PATH",
                             type=click.Path(path_type=Path),
                             help="This node's Ed25519 key file, created (mode 0600) if "
                             "missing, for the same node id on every run (see sn keygen "
                             "--identity) [default: a new key each run].")(decorated)  # fmt: skip
    decorated = click.option("--secret", "secrets", multiple=True, callback=_secrets,
                             metavar="SECRET",
                             help="The swarm secret: only nodes holding it can connect. "
                             "Repeat it for a keyring (the first is used to connect, all are "
                             "accepted) [default: env SYNAPSE_SECRET].")(decorated)  # fmt: skip
    return cast(F, decorated)


def configure_logging(verbose: int) -> None:
    """The library's errors on stderr (a failing handler of this node, say); ``-v`` adds its
    INFO records, ``-vv`` DEBUG. Nothing changes if logging is configured already."""
    level = logging.DEBUG if verbose > 1 else logging.INFO if verbose == 1 else logging.ERROR
    configure_console_logging(level)


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

    def render() -> Text:
        return Text(f"{clean(state['what'])} ({anyio.current_time() - started:.1f} s)")

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

    When interrupted, ``on_interrupt()`` gives the exit code (default 130). Any error becomes
    a one-line reason on stderr and its exit code (see :func:`failure_for`); an unexpected
    one also prints its traceback with ``-v``.
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
            except (Exception, SystemExit) as exc:
                caught.append(exc)  # raised again outside the task group, unwrapped
            finally:
                tg.cancel_scope.cancel()
        return result

    result: T | None = None
    try:
        result = anyio.run(guarded, backend=settings.backend)
    except KeyboardInterrupt:  # a Ctrl+C before the signal receiver was open
        interrupted = True
    except BaseExceptionGroup as group:  # from a child task of ``main``
        leaves = [e for e in _leaves(group) if not isinstance(e, KeyboardInterrupt)]
        if not leaves:
            interrupted = True
        elif all(isinstance(e, Exception | SystemExit) for e in leaves):
            caught.extend(leaves)
        else:
            raise
    if caught and not interrupted:
        raise failure_for(caught[0], settings) from None
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


def failure_for(exc: BaseException, settings: Settings | None = None) -> BaseException:
    """What to raise for ``exc`` raised by a command: click's own exceptions as they are; a
    closed stdout quietly; library and OS errors as a :class:`Failure` with their exit code;
    anything else as an internal error (its traceback shown with ``-v``)."""
    if isinstance(exc, click.ClickException | click.exceptions.Exit | SystemExit):
        return exc
    if isinstance(exc, BrokenPipeError):  # `sn watch --plain | head`: the reader is gone
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return SystemExit(EXIT_FAILED)
    if isinstance(exc, SynapseError | OSError | TimeoutError):
        return library_failure(exc)
    if settings is not None and settings.verbose:
        traceback.print_exception(exc)
    return Failure(f"internal error: {type(exc).__name__}: {exc}", EXIT_FAILED)


def library_failure(exc: BaseException, where: str = "") -> Failure:
    """The exit code and one-line reason for an error raised by the library."""
    prefix = f"{where}: " if where else ""
    reason = str(exc) or type(exc).__name__
    if isinstance(exc, RemoteError):
        return Failure(f"{prefix}{exc.code}: {exc.message}", EXIT_FAILED)
    if isinstance(exc, CallTimeout | TimeoutError):
        return Failure(f"{prefix}{str(exc) or 'no answer before the timeout'}", EXIT_NO_ANSWER)
    if isinstance(exc, ConnectError | ConnectionLost | ConnectionError | OSError):
        return Failure(f"{prefix}{reason}", EXIT_UNREACHABLE)
    return Failure(f"{prefix}{reason}", EXIT_FAILED)


# -- parsing ----------------------------------------------------------------------------------


def parse_address(text: str) -> tuple[str, int]:
    """``host:port``, ``host`` (port 9999) or ``[v6]:port``; raises ``click.BadParameter``."""
    if text.strip().lower().startswith(("ws://", "wss://")):
        raise click.BadParameter(
            f"expected host:port, got {text!r} (a WebSocket URL is taken by --seed; a node "
            "tool dials host:port)"
        )
    try:
        return parse_seed(text)
    except (TypeError, ValueError) as exc:
        raise click.BadParameter(f"expected host:port, got {text!r} ({exc})") from None


def parse_seed_option(text: str) -> tuple[str, int] | str:
    """A ``--seed``: what :func:`parse_address` takes, or a ``ws://``/``wss://`` URL (checked,
    returned as given: the node dials it over WebSocket); raises ``click.BadParameter``."""
    if not text.strip().lower().startswith(("ws://", "wss://")):
        return parse_address(text)
    try:
        WebSocketUrl.parse(text.strip())
    except ValueError as exc:
        raise click.BadParameter(f"bad WebSocket URL {text!r}: {exc}") from None
    return text.strip()


def check_text(text: str, what: str) -> str:
    """Refuse text the wire cannot carry (e.g. bytes that are not UTF-8 in an argument)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise click.BadParameter(f"{what} is not valid UTF-8: {text!r}") from None
    return text


def text_param(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback: :func:`check_text` on a string parameter (or each of several)."""
    name = param.human_readable_name
    if isinstance(value, str):
        return check_text(value, name)
    if isinstance(value, tuple):
        return tuple(check_text(v, name) if isinstance(v, str) else v for v in value)
    return value


def name_param(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A click callback for a swarm or team name (the rule of ``Node(swarm=...)``)."""
    if value is None:
        return None
    try:
        return check_swarm_name(param.human_readable_name.lower(), check_text(value, "name"))
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def parse_key_value(text: str) -> tuple[str, str]:
    check_text(text, "key=value")
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise click.BadParameter(f"expected key=value, got {text!r}")
    return key, value


def parse_json_literal(text: str, what: str) -> Any:
    """A JSON literal (``1``, ``"text"``, ``[1, 2]``, ``{"a": 1}``, ``true``, ``null``)."""
    check_text(text, what)
    try:
        return _no_surrogates(json.loads(text), what)
    except RecursionError:
        raise click.BadParameter(f"{what} is nested too deeply") from None
    except ValueError:
        raise click.BadParameter(
            f"{what} {text!r} is not a JSON literal (quote strings: '\"{text}\"')"
        ) from None


def _no_surrogates(value: Any, what: str) -> Any:
    """JSON may spell lone surrogates (``"\\ud800"``), which no wire string can carry."""
    if isinstance(value, str):
        check_text(value, what)
    elif isinstance(value, list):
        for item in value:
            _no_surrogates(item, what)
    elif isinstance(value, dict):
        for key, item in value.items():
            _no_surrogates(key, what)
            _no_surrogates(item, what)
    return value


# -- output -----------------------------------------------------------------------------------


#: Deeper structures are cut (``"…"``) when printed: output never recurses without bound.
MAX_DEPTH = 64

_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def clean(text: str, *, lines: bool = False) -> str:
    """``text`` with control characters shown as escapes (``\\x1b``, ``\\n``): what peers
    send can never move the cursor, clear the screen or retitle the user's terminal. With
    ``lines``, line breaks are kept (tabs become spaces)."""
    if not _CONTROL.search(text):
        return text
    if lines:  # keep line breaks and tabs (multi-line documents)
        return "\n".join(clean(line.replace("\t", "    ")) for line in text.split("\n"))
    return _CONTROL.sub(lambda m: repr(m.group())[1:-1], text)


def _jsonable(value: Any, depth: int = 0) -> Any:
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, bytes | bytearray | memoryview):
        return {"$bytes": base64.b64encode(bytes(value)).decode("ascii")}
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v, depth + 1) for v in value]
    return value


def json_text(value: Any, *, indent: int | None = 2) -> str:
    """JSON for output; bytes become ``{"$bytes": "<base64>"}``."""
    separators = None if indent else (",", ":")
    return json.dumps(_jsonable(value), indent=indent, ensure_ascii=False, separators=separators)


def format_result(result: Any) -> str:
    """How a reply reads on one line: ``"<from>: <answer>"`` for ``{"from", "answer"}``, the
    answer alone for ``{"answer"}``, text as is, anything else as compact JSON; control
    characters escaped (see :func:`clean`)."""
    if isinstance(result, dict) and "answer" in result:
        answer = result["answer"]
        text = answer if isinstance(answer, str) else json_text(answer, indent=None)
        if "from" in result:
            text = f"{result['from']}: {text}"
        return clean(text)
    if isinstance(result, str):
        return clean(result)
    return clean(json_text(result, indent=None))
