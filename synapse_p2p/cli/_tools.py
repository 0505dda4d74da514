"""Per-node tools (``sn call``, ``info``, ``peers``, ``methods``, ``artifacts``) and
``sn list-swarms``."""

from __future__ import annotations

import base64
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import anyio
import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from .._validate import format_address
from ..discovery import MdnsError, browse_swarms
from ..errors import BAD_REQUEST, RemoteError, SynapseError
from ..rpc import Client
from ._common import (
    EXIT_FAILED,
    EXIT_NO_ANSWER,
    EXIT_UNREACHABLE,
    Failure,
    Settings,
    Trust,
    clean,
    console,
    json_text,
    library_failure,
    parse_address,
    parse_json_literal,
    parse_key_value,
    progress,
    run,
    text_param,
    trust_options,
)

__all__ = [
    "artifacts_command",
    "call_command",
    "info_command",
    "list_swarms_command",
    "methods_command",
    "peers_command",
]

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., Any])


def _address(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, int]:
    return parse_address(value)


def node_tool(fn: F) -> F:
    """``HOST:PORT``, ``--timeout``, ``--json``, ``--secret`` and ``--identity``, shared by the
    per-node tools (the command gets ``trust``, a :class:`Trust`)."""
    fn = trust_options(fn)
    fn = click.option("--json", "as_json", is_flag=True,
                      help="Print JSON (for scripts) instead of a table.")(fn)  # fmt: skip
    fn = click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=10.0,
                      show_default=True, help="Seconds to wait for the node.")(fn)  # fmt: skip
    fn = click.argument("address", metavar="HOST:PORT", callback=_address)(fn)
    return fn


def _call(
    settings: Settings,
    address: tuple[str, int],
    timeout: float,
    trust: Trust,
    calls: Callable[[Client], Awaitable[T]],
) -> T:
    host, port = address
    where = format_address(host, port)
    client = Client(host, port, timeout=timeout, connect_timeout=min(timeout, 5.0),
                    **trust.settings())  # fmt: skip

    async def main() -> T:
        try:
            with progress(console(stderr=True), f"calling {where}"), anyio.fail_after(timeout):
                async with client:
                    return await calls(client)
        except TimeoutError:
            raise Failure(f"{where}: no answer within {timeout:g} s", EXIT_NO_ANSWER) from None
        except (SynapseError, OSError) as exc:
            raise library_failure(exc, where) from None

    return run(settings, main)


# -- call ---------------------------------------------------------------------------------------


def _kwargs(ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> Any:
    pairs = (parse_key_value(v) for v in values)
    return {key: parse_json_literal(value, f"--kw {key}") for key, value in pairs}


@click.command("call")
@node_tool
@click.argument("endpoint", callback=text_param)
@click.argument("args", nargs=-1)
@click.option("--kw", "kwargs", multiple=True, callback=_kwargs, metavar="KEY=JSON",
              help="A keyword argument, its value a JSON literal (repeatable).")  # fmt: skip
@click.pass_obj
def call_command(
    settings: Settings,
    /,
    address: tuple[str, int],
    endpoint: str,
    args: tuple[str, ...],
    kwargs: dict[str, Any],
    timeout: float,
    as_json: bool,
    trust: Trust,
) -> None:
    """Call ENDPOINT on the node at HOST:PORT and print the result.

    Each ARG is a JSON literal: 1, 2.5, true, null, '"text"', '[1, 2]', '{"a": 1}'; put
    -- before the first argument if it starts with a dash (sn call H:P sum -- -1 2). Text
    results print as they are, others as JSON; bytes print as {"$bytes": base64}.

    \b
    Examples:
      sn call 127.0.0.1:9999 sum 1 2
      sn call 127.0.0.1:9999 _node.ask '"Review this diff"' --kw 'context={"url": "u"}'
      sn call [::1]:9999 _synapse.ping

    Exit status: 0 on success, 1 if the call failed (the error is printed), 3 if the node
    cannot be reached, 4 on timeout.
    """
    values = [parse_json_literal(a, "argument") for a in args]
    result = _call(settings, address, timeout, trust, lambda c: c.request(endpoint, values, kwargs))
    if as_json or not isinstance(result, str):
        click.echo(json_text(result))
    else:
        click.echo(clean(result))


# -- info ---------------------------------------------------------------------------------------


@click.command("info")
@node_tool
@click.pass_obj
def info_command(
    settings: Settings, /, address: tuple[str, int], timeout: float, as_json: bool, trust: Trust
) -> None:
    """Who the node at HOST:PORT is: identity, swarm, role and capabilities.

    \b
    Examples:
      sn info 127.0.0.1:9999
      sn info 10.0.0.5:9999 --json | jq .capabilities
    """

    async def fetch(client: Client) -> dict[str, Any]:
        info = await client.call("_synapse.info")
        details = await client.call("_node.capabilities")
        if not isinstance(info, dict):
            return {"info": info, "verified": False}
        # Last: what the node says of itself cannot set it.
        return {**info, "capabilities": details, "verified": _verified(client, info)}

    info = _call(settings, address, timeout, trust, fetch)
    if as_json:
        click.echo(json_text(info))
        return
    table = Table.grid(padding=(0, 2))
    for key in ("name", "id", "kind", "role", "description", "swarm", "team"):
        if key in info:
            table.add_row(Text(key, style="bold"), _text(info[key]))
        if key == "id":
            verified = "yes" if info.get("verified") else "no (its key was not checked)"
            table.add_row(Text("verified", style="bold"), _text(verified))
    if "address" in info:
        table.add_row(Text("address", style="bold"), _text(f"{info['address']}:{info.get('port')}"))
    capabilities = info.get("capabilities") or []
    for i, cap in enumerate(capabilities if isinstance(capabilities, list) else []):
        name = cap.get("name", "?") if isinstance(cap, dict) else cap
        description = cap.get("description", "") if isinstance(cap, dict) else ""
        label = Text("capabilities" if i == 0 else "", style="bold")
        table.add_row(label, Text.assemble(_text(name), ("  " + clean(str(description)), "dim")))
    console().print(table)


def _verified(client: Client, info: dict[str, Any]) -> bool:
    """Whether the node proved, in the secure channel's handshake, that it holds the key of
    the id it reports. False over plaintext (a synapse-p2p 2.5.0 node), and while the client
    does not report the id its channel proved (``peer_node_id``)."""
    proved = getattr(client, "peer_node_id", None)
    return isinstance(proved, str) and proved == info.get("id")


def _text(value: Any) -> Text:
    """A table cell from anything a node sent: plain text (never markup), control
    characters escaped."""
    return Text("-" if value is None or value == "" else clean(str(value)))


def _expect_list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise Failure(f"malformed answer: {what} is a {type(value).__name__}, not a list")
    return value


# -- peers --------------------------------------------------------------------------------------


@click.command("peers")
@node_tool
@click.pass_obj
def peers_command(
    settings: Settings, /, address: tuple[str, int], timeout: float, as_json: bool, trust: Trust
) -> None:
    """The peers the node at HOST:PORT knows to be alive.

    \b
    Examples:
      sn peers 127.0.0.1:9999
      sn peers 127.0.0.1:9999 --json
    """
    peers = _expect_list(
        _call(settings, address, timeout, trust, lambda c: c.call("_synapse.peers")),
        "the peer list",
    )
    if as_json:
        click.echo(json_text(peers))
        return
    out = console()
    if not peers:
        out.print("no peers")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("name", "id", "address", "kind", "swarm / team", "heard", "capabilities"):
        table.add_column(column)
    now = time.time()
    for peer in peers:
        if not isinstance(peer, dict):
            raise Failure(f"malformed answer: a peer entry is a {type(peer).__name__}")
        last = peer.get("last_seen")
        heard = f"{max(0.0, now - last):.0f} s ago" if isinstance(last, int | float) else "-"
        capabilities = peer.get("capabilities") or []
        table.add_row(
            _text(peer.get("name")),
            _text(str(peer.get("id", ""))[:8]),
            _text(f"{peer.get('address')}:{peer.get('port')}"),
            _text(peer.get("kind")),
            _text(f"{peer.get('swarm') or '-'} / {peer.get('team') or '-'}"),
            _text(heard),
            _text(",".join(map(str, capabilities)) if isinstance(capabilities, list) else ""),
        )
    out.print(table)


# -- methods ------------------------------------------------------------------------------------


@click.command("methods")
@node_tool
@click.pass_obj
def methods_command(
    settings: Settings, /, address: tuple[str, int], timeout: float, as_json: bool, trust: Trust
) -> None:
    """The RPC endpoints the node at HOST:PORT publishes.

    \b
    Examples:
      sn methods 127.0.0.1:9999
    """

    async def listing(client: Client) -> Any:
        try:  # our nodes list parameters too; a 2.5.0 node answers bad_request
            return await client.call("_synapse.endpoints")
        except RemoteError as exc:
            if exc.code != BAD_REQUEST:
                raise
            return await client.call("_synapse.methods")

    methods = _expect_list(_call(settings, address, timeout, trust, listing), "the method list")
    if as_json:
        click.echo(json_text(methods))
        return
    out = console()
    if not methods:
        out.print("no published methods")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("endpoint")
    table.add_column("parameters")
    table.add_column("description")
    for method in methods:
        if not isinstance(method, dict):
            raise Failure(f"malformed answer: a method entry is a {type(method).__name__}")
        params = method.get("parameters")
        shown = _signature(params) if isinstance(params, list) else "?"
        table.add_row(_text(method.get("name")), _text(shown), _text(method.get("description")))
    out.print(table)


def _signature(params: list[Any]) -> str:
    parts = []
    for param in params:
        if not isinstance(param, dict):
            continue
        text = str(param.get("name", "?"))
        if param.get("type"):
            text += f": {param['type']}"
        if "default" in param:
            text += f" = {param['default']!r}"
        if param.get("kind") == "var_positional":
            text = "*" + text
        elif param.get("kind") == "var_keyword":
            text = "**" + text
        parts.append(text)
    return "(" + ", ".join(parts) + ")"


# -- stats --------------------------------------------------------------------------------------


@click.command("stats")
@node_tool
@click.pass_obj
def stats_command(
    settings: Settings, /, address: tuple[str, int], timeout: float, as_json: bool, trust: Trust
) -> None:
    """The counters of the node at HOST:PORT: peers, conversations, RPC server and pool,
    delivery queues, dropped events, periodic jobs (nodes of this package; not 2.5.0).

    \b
    Examples:
      sn stats 127.0.0.1:9999
      sn stats 127.0.0.1:9999 --json
    """
    stats = _call(settings, address, timeout, trust, lambda c: c.call("_synapse.stats"))
    if not isinstance(stats, dict):
        raise Failure("malformed answer: statistics are not a map")
    if as_json:
        click.echo(json_text(stats))
        return
    out = console()
    table = Table(box=None, header_style="bold", pad_edge=False, show_header=False)
    table.add_column("what")
    table.add_column("value")
    for key, value in _flatten(stats.get("node")):
        table.add_row(_text(key), _text(value))
    jobs = stats.get("scheduler")
    if isinstance(jobs, dict):
        for name, job in jobs.items():
            if isinstance(job, dict):
                table.add_row(
                    _text(f"job {name}"),
                    _text(
                        f"runs {job.get('runs')}, failures {job.get('failures')}, "
                        f"next {job.get('next_run') or '-'}"
                    ),
                )
    out.print(table)


def _flatten(value: Any, prefix: str = "") -> list[tuple[str, str]]:
    if isinstance(value, dict):
        rows: list[tuple[str, str]] = []
        for key, item in value.items():
            rows += _flatten(
                item, f"{prefix}{key}." if isinstance(item, dict) else f"{prefix}{key}"
            )
        return rows
    return [(prefix, "-" if value is None else str(value))]


# -- artifacts ----------------------------------------------------------------------------------


@click.command("artifacts")
@node_tool
@click.argument("name", required=False, callback=text_param)
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True), default=None,
              help="With NAME: write the content to this file (bytes decoded).")  # fmt: skip
@click.pass_obj
def artifacts_command(
    settings: Settings,
    /,
    address: tuple[str, int],
    name: str | None,
    output: str | None,
    timeout: float,
    as_json: bool,
    trust: Trust,
) -> None:
    """List the artifacts the node at HOST:PORT advertises, or print the one called NAME.

    \b
    Examples:
      sn artifacts 127.0.0.1:9999
      sn artifacts 127.0.0.1:9999 agent-card
      sn artifacts 127.0.0.1:9999 logo -o logo.png
    """
    if name is None:
        if output is not None:
            raise click.UsageError("--output needs an artifact NAME")
        listing = _call(settings, address, timeout, trust, lambda c: c.call("_synapse.artifacts"))
        if as_json:
            click.echo(json_text(listing))
            return
        _print_listing(console(), listing)
        return
    artifact = _call(
        settings, address, timeout, trust, lambda c: c.call("_synapse.artifact.get", name)
    )
    if as_json:
        click.echo(json_text(artifact))
        return
    if not isinstance(artifact, dict):
        raise Failure(f"unexpected answer for artifact {name!r}: {artifact!r}")
    content = artifact.get("content")
    if artifact.get("encoding") == "base64" and isinstance(content, str):
        try:
            data = base64.b64decode(content, validate=True)
        except ValueError:
            raise Failure(f"malformed answer: artifact {name!r} is not valid base64") from None
    elif isinstance(content, str):
        data = content.encode("utf-8", "replace")
    else:
        data = (json_text(content) + "\n").encode()
    if output is not None:
        try:
            with open(output, "wb") as file:
                file.write(data)
        except OSError as exc:
            raise Failure(f"cannot write {output}: {exc.strerror or exc}", EXIT_FAILED) from None
        click.echo(f"wrote {len(data)} bytes to {output}", err=True)
    elif artifact.get("encoding") == "base64":
        mime = clean(str(artifact.get("mime_type")))
        click.echo(f"{clean(name)}: {len(data)} bytes of {mime}; use -o FILE")
    else:
        click.echo(clean(data.decode(errors="replace").rstrip("\n"), lines=True))


def _print_listing(out: Console, listing: Any) -> None:
    if not listing:
        out.print("no artifacts")
        return
    table = Table(box=None, header_style="bold", pad_edge=False)
    for column in ("name", "kind", "mime type", "size", "description"):
        table.add_column(column)
    for item in _expect_list(listing, "the artifact list"):
        if not isinstance(item, dict):
            raise Failure(f"malformed answer: an artifact entry is a {type(item).__name__}")
        table.add_row(_text(item.get("name")), _text(item.get("kind")),
                      _text(item.get("mime_type")), _text(item.get("size")),
                      _text(item.get("description")))  # fmt: skip
    out.print(table)


# -- list-swarms --------------------------------------------------------------------------------


@click.command("list-swarms")
@click.option("--seconds", "-s", type=click.FloatRange(min=0, min_open=True), default=3.0,
              show_default=True, help="How long to listen for nodes.")  # fmt: skip
@click.option("--interface", "-i", "interfaces", multiple=True, metavar="NAME|ADDRESS",
              help="Browse on this interface only (repeatable) [default: all].")  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print JSON (for scripts).")
@click.pass_obj
def list_swarms_command(
    settings: Settings, /, seconds: float, interfaces: tuple[str, ...], as_json: bool
) -> None:
    """List the swarms on the local network (mDNS), grouped by swarm and team.

    Listens without advertising anything.

    \b
    Examples:
      sn list-swarms
      sn list-swarms --seconds 10 --interface eth0
    """

    async def main() -> list[Any]:
        try:
            with progress(console(stderr=True), "listening for swarms on the LAN"):
                return await browse_swarms(seconds, interfaces=list(interfaces) or None)
        except MdnsError as exc:
            raise Failure(f"mDNS: {exc}", EXIT_UNREACHABLE) from None

    peers = run(settings, main)
    groups: dict[tuple[str, str], list[Any]] = {}
    for peer in peers:
        groups.setdefault((peer.swarm or "-", peer.team or "-"), []).append(peer)
    if as_json:
        data = [
            {"swarm": s, "team": t, "nodes": [p.to_dict() for p in members]}
            for (s, t), members in sorted(groups.items())
        ]
        click.echo(json_text(data))
        return
    if not groups:
        click.echo("no local Synapse swarms found")
        return
    for (swarm, team), members in sorted(groups.items()):
        title = swarm if team == "default" else f"{swarm} / {team}"
        click.echo(f"{title}  ({len(members)} node{'s' if len(members) != 1 else ''})")
        for peer in members:
            caps = f"  [{', '.join(peer.capabilities)}]" if peer.capabilities else ""
            where = f"{peer.address}:{peer.port}"
            click.echo(f"  - {peer.name or peer.id[:8]}  {where}{caps}")
