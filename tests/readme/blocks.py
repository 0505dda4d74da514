"""The fenced code blocks of README.md, the ``readme-test`` markers in front of them, and how to
execute a Python block (the convention is described in ``tests/test_readme.py``).

Stdlib only (plus anyio when run as a script), so a subprocess can use it too::

    python tests/readme/blocks.py BLOCK-NAME [--backend trio|asyncio] [--report NAME ...]

runs one block in a fresh interpreter (top-level ``await`` allowed, on the given backend) and
prints the names listed after ``--report`` as one JSON object on stdout.
"""

from __future__ import annotations

import ast
import inspect
import json
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"

MARKER = re.compile(r"^\s{0,3}<!--\s*readme-test\b(?P<rest>.*?)-->\s*$")
MARKER_BODY = re.compile(
    r"^:\s*(?:(?P<name>[a-z0-9][a-z0-9._-]*)|skip\s*\((?P<reason>.*\S.*)\))\s*$"
)
FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass(frozen=True)
class Block:
    """One fenced code block; ``line`` is the README line of its first code line."""

    lang: str
    code: str
    line: int
    fence_line: int
    name: str | None = None
    skip: str | None = None

    @property
    def where(self) -> str:
        return f"README.md:{self.fence_line}"

    def describe(self) -> str:
        first = next((ln for ln in self.code.splitlines() if ln.strip()), "")
        return f"{self.where} ({self.lang or 'no language'}: {first.strip()[:60]!r})"


@dataclass
class Readme:
    blocks: list[Block] = field(default_factory=list)
    #: Malformed or dangling markers, unclosed fences: each makes the coverage test fail.
    problems: list[str] = field(default_factory=list)

    def named(self) -> dict[str, Block]:
        return {block.name: block for block in self.blocks if block.name is not None}


def parse(text: str) -> Readme:
    """Split ``text`` into fenced blocks; a marker is the last non-blank line before a fence."""
    readme = Readme()
    lines = text.splitlines()
    pending: tuple[int, str | None, str | None] | None = None  # (line, name, skip reason)
    i = 0
    while i < len(lines):
        number, line = i + 1, lines[i]
        i += 1
        if "readme-test" in line and (marker := MARKER.match(line)) is not None:
            if pending is not None:
                readme.problems.append(f"README.md:{pending[0]}: marker not followed by a block")
            body = MARKER_BODY.match(marker["rest"].strip())
            if body is None:
                readme.problems.append(
                    f"README.md:{number}: malformed marker {line.strip()!r}; use "
                    "<!-- readme-test: NAME --> or <!-- readme-test: skip (reason) -->"
                )
                pending = None
            else:
                pending = (number, body["name"], body["reason"])
            continue
        if "readme-test" in line:
            readme.problems.append(f"README.md:{number}: malformed marker {line.strip()!r}")
            continue
        fence = FENCE.match(line)
        if fence is None:
            if line.strip() and pending is not None:
                readme.problems.append(f"README.md:{pending[0]}: marker not followed by a block")
                pending = None
            continue
        char, size, indent = fence["fence"][0], len(fence["fence"]), len(fence["indent"])
        info = fence["info"].strip()
        if char == "`" and "`" in info:
            continue  # not a fence (inline code), per CommonMark
        body_lines: list[str] = []
        closed = False
        while i < len(lines):
            candidate = lines[i]
            i += 1
            stripped = candidate.lstrip(" ")
            if (
                len(candidate) - len(stripped) <= 3
                and stripped.startswith(char * size)
                and not stripped.strip(char).strip()
            ):
                closed = True
                break
            body_lines.append(_dedent(candidate, indent))
        if not closed:
            readme.problems.append(f"README.md:{number}: code block never closed")
        name, skip = (pending[1], pending[2]) if pending is not None else (None, None)
        lang = info.split()[0].lower() if info else ""
        code = "\n".join(body_lines) + "\n"
        readme.blocks.append(Block(lang, code, number + 1, number, name, skip))
        pending = None
    if pending is not None:
        readme.problems.append(f"README.md:{pending[0]}: marker not followed by a block")
    return readme


def transcript(block: Block) -> list[tuple[str, list[str]]]:
    """A shell block as ``(command, expected output lines)`` pairs: lines starting with ``$ ``
    are commands, the lines after one are its output. A block with no ``$ `` line (a plain
    ``sh`` block) is one command per non-blank line that is not a ``#`` comment, with no
    output stated."""
    lines = block.code.splitlines()
    if not any(line.startswith("$ ") for line in lines):
        commands = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
        return [(command, []) for command in commands]
    session: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("$ "):
            session.append((line[2:].strip(), []))
        elif session:
            session[-1][1].append(line)
        elif line.strip():
            raise ValueError(f"{block.where}: output before the first `$ ` command: {line!r}")
    return [(command, _trim(output)) for command, output in session]


def _trim(lines: list[str]) -> list[str]:
    while lines and not lines[-1].strip():
        lines = lines[:-1]
    return lines


def _dedent(line: str, indent: int) -> str:
    removable = len(line) - len(line.lstrip(" "))
    return line[min(indent, removable) :]


def load(path: Path = README) -> Readme:
    return parse(path.read_text(encoding="utf-8"))


def compile_block(block: Block) -> Any:
    """Compile a Python block so tracebacks name README.md and its real line numbers."""
    source = "\n" * (block.line - 1) + block.code
    return compile(
        source, str(README), "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
    )


async def run_block(block: Block, namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute ``block`` in ``namespace`` (top-level ``await`` allowed); returns the namespace.

    Names the block defines end up in ``namespace``. Works under trio and asyncio: a block
    with top-level ``await`` compiles to a coroutine, awaited here in the current task.
    """
    namespace.setdefault("__name__", "__readme__")
    result = eval(compile_block(block), namespace)
    if inspect.iscoroutine(result):
        await result
    return namespace


def exec_block(block: Block, namespace: dict[str, Any]) -> dict[str, Any]:
    """Execute a block without top-level ``await`` (plain statements) synchronously."""
    namespace.setdefault("__name__", "__readme__")
    result = eval(compile_block(block), namespace)
    if inspect.iscoroutine(result):
        result.close()
        raise AssertionError(f"{block.where} has top-level await: use run_block")
    return namespace


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value if _is_json(value) else repr(value) for key, value in values.items()}


def _is_json(value: Any) -> bool:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return False
    return True


def main(argv: list[str]) -> None:
    import argparse

    import anyio

    parser = argparse.ArgumentParser()
    parser.add_argument("name")
    parser.add_argument("--backend", default="trio", choices=["trio", "asyncio"])
    parser.add_argument("--report", nargs="*", default=[])
    args = parser.parse_args(argv)
    block = load().named()[args.name]

    async def go() -> dict[str, Any]:
        namespace = await run_block(block, {"__name__": "__main__"})
        return {name: namespace.get(name) for name in args.report}

    print(json.dumps(_jsonable(anyio.run(go, backend=args.backend))), flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
