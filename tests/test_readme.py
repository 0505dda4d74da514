"""Every fenced code block of README.md is executed by a test, so the README cannot rot.

The convention
--------------
Right before a code block, on the last non-blank line above its opening fence, an HTML comment
(invisible on GitHub and PyPI) says how the block is tested::

    <!-- readme-test: NAME -->            the block is executed by the scenario(s) naming NAME
    <!-- readme-test: skip (reason) -->   not executable at all; the reason is required

``NAME`` is the block's id, unique in the README: lower case letters, digits, ``.``, ``_`` and
``-``. ``test_every_block_is_covered`` fails for:

* a block without a marker, except shell blocks (``sh``, ``bash``, ``shell``, ``console``)
  whose whole text is in ``ALLOWED_COMMANDS``: ``./dev setup`` and ``./dev test``, the
  developer entry points that CI itself exercises (``.ci/run`` installs the package the way
  ``./dev setup`` does and runs ``./dev test``), so a test does not run them again;
* a marker whose NAME no scenario executes, a NAME used twice, a malformed or dangling marker;
* a scenario naming a block the README no longer has.

Prefer checking over skipping: even the protocol's example maps are checked (by our codec and
a live node), and no block is skipped today.

Adding a block
--------------
1. Put ``<!-- readme-test: my-block -->`` right above it in README.md.
2. In ``tests/readme/scenarios.py`` register what it runs with and what it must do::

       @scenario("my-block")                  # several names: one scenario runs them all
       async def my_block(ctx: Context) -> None:
           async with open_swarm(2) as swarm:  # names the block uses but does not define
               namespace = await run_block(ctx.block("my-block"), {"node": swarm[0]})
           assert namespace["result"] == ...

   ``async def`` scenarios run in process under trio and under asyncio (``run_block``
   compiles with ``ast.PyCF_ALLOW_TOP_LEVEL_AWAIT``; tracebacks show README.md line
   numbers). Plain ``def`` scenarios run once: the place for subprocesses, network namespaces
   and pytester. Whole programs (``node.run()``, a fixed port, ``mdns=True``) run verbatim
   as subprocesses inside network namespaces the scenario creates (``ctx.netns()``: one host
   with only ``lo``; ``ctx.netns_pair()``: two hosts on a veth LAN), never on the machine's
   real interfaces; without root these scenarios print why and skip.

Shell blocks follow the same rule: mark them and register a plain ``def`` scenario. In a
``console`` block, lines starting with ``$ `` are commands and the lines after one are its
output; a ``sh`` block is one command per line (``blocks.transcript`` splits both). A scenario
starts what the commands talk to (inside ``host = ctx.netns()`` or ``ctx.netns_pair()``), runs
them with ``shell_session(host.command([]), [command, ...], ctx)`` (one ``sh``, ``$?`` carried
over, ``sn`` on the PATH) and compares with ``check_transcript(block, outcomes)`` (exact lines,
ids aside); long-running commands (``sn watch``) are started with ``ctx.spawn_in`` and stopped
with Ctrl+C. ``agent_team`` (``sn ask``, ``sn watch``) and ``sn_exit_codes`` are examples.
Only commands listed in ``ALLOWED_COMMANDS`` may stay unmarked.

Time: about 20 s in all, most of it the two scenarios that wait for mDNS discovery between two
test hosts; every step is bounded by ``scenarios.STEP`` seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.readme.blocks import Block, load, parse
from tests.readme.scenarios import SCENARIOS, Context, covered

pytest_plugins = ["pytester"]

SHELL_LANGUAGES = {"sh", "bash", "shell", "console"}
#: Shell blocks that may stay unmarked: their whole text, stripped.
ALLOWED_COMMANDS = {"./dev setup", "./dev test"}

README = load()
ASYNC = sorted(name for name, s in SCENARIOS.items() if s.is_async)
SYNC = sorted(name for name, s in SCENARIOS.items() if not s.is_async)


def coverage_problems(blocks: list[Block], *, whole_readme: bool = True) -> list[str]:
    """Why ``blocks`` break the convention; ``whole_readme`` also reports scenarios naming
    blocks that are not among them."""
    problems: list[str] = []
    executed = covered()
    seen: dict[str, Block] = {}
    for block in blocks:
        if block.skip is not None:
            continue
        if block.name is not None:
            if block.name in seen:
                problems.append(
                    f"{block.where}: name {block.name!r} already used at {seen[block.name].where}"
                )
            seen[block.name] = block
            if block.name not in executed:
                problems.append(
                    f"{block.where}: no scenario executes block {block.name!r}; register one "
                    f'with @scenario("{block.name}") in tests/readme/scenarios.py'
                )
        elif block.lang in SHELL_LANGUAGES and block.code.strip() in ALLOWED_COMMANDS:
            continue
        else:
            problems.append(
                f"{block.describe()} is not covered: put <!-- readme-test: NAME --> right "
                "above it and register a scenario for NAME in tests/readme/scenarios.py"
            )
    for name, scenarios in sorted(executed.items()):
        if whole_readme and name not in seen:
            problems.append(
                f"scenario(s) {', '.join(scenarios)} execute block {name!r}, which README.md "
                "does not have (marked <!-- readme-test: NAME -->) any more"
            )
    return problems


def test_markers_are_well_formed() -> None:
    assert not README.problems, "\n".join(README.problems)


def test_every_block_is_covered() -> None:
    assert README.blocks, "no code blocks found in README.md"
    problems = coverage_problems(README.blocks)
    assert not problems, "\n".join(problems)


def context(
    name: str, request: pytest.FixtureRequest, tmp_path: Path, backend: str | None
) -> Context:
    return Context(SCENARIOS[name], README.named(), request, tmp_path, backend)


@pytest.mark.anyio
@pytest.mark.parametrize("name", ASYNC)
async def test_async_scenario(
    name: str, anyio_backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    ctx = context(name, request, tmp_path, anyio_backend)
    try:
        await SCENARIOS[name].func(ctx)
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()


@pytest.mark.parametrize("name", SYNC)
def test_scenario(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    ctx = context(name, request, tmp_path, None)
    try:
        SCENARIOS[name].func(ctx)
    finally:
        for cleanup in reversed(ctx.cleanups):
            cleanup()


@pytest.mark.parametrize(
    "block",
    [b for b in README.blocks if b.skip is not None] or [None],
    ids=lambda b: b.where if b is not None else "none",
)
def test_skipped_blocks_are_reported(block: Block | None) -> None:
    """Blocks marked ``skip (reason)`` show up as skipped tests, with their reason."""
    if block is not None:
        pytest.skip(f"{block.where}: {block.skip}")


# -- the parser and the coverage rule, on made-up READMEs -------------------------------------


def test_parser_reads_markers_fences_and_lines() -> None:
    text = "\n".join(
        [
            "# Title",  # 1
            "<!-- readme-test: first -->",  # 2
            "```python",  # 3
            "x = 1",  # 4
            "```",  # 5
            "",  # 6
            "<!-- readme-test: skip (pseudo-code) -->",  # 7
            "",  # 8
            "~~~~text",  # 9
            "```",  # 10: not a closing fence for ~~~~
            "~~~~",  # 11
            "  ```sh",  # 12: indented fence, content dedented
            "  ./dev test",  # 13
            "  ```",  # 14
        ]
    )
    readme = parse(text)
    assert readme.problems == []
    first, skipped, shell = readme.blocks
    assert (first.name, first.lang, first.code, first.line, first.fence_line) == (
        "first", "python", "x = 1\n", 4, 3
    )  # fmt: skip
    assert (skipped.skip, skipped.lang, skipped.code) == ("pseudo-code", "text", "```\n")
    assert (shell.name, shell.lang, shell.code) == (None, "sh", "./dev test\n")
    assert coverage_problems([shell], whole_readme=False) == []


def test_parser_reports_bad_markers() -> None:
    readme = parse(
        "<!-- readme-test: Bad Name -->\n```python\n```\n"
        "<!-- readme-test: skip () -->\n```python\n```\n"
        "<!-- readme-test: dangling -->\nsome prose\n"
        "<!-- readme-test: last -->\n"
        "```python\nnever closed\n"
    )
    assert [problem.split(": ", 1)[0] for problem in readme.problems] == [
        "README.md:1",
        "README.md:4",
        "README.md:7",
        "README.md:10",
    ]
    assert "never closed" in readme.problems[-1]


def test_coverage_rule_rejects_unmarked_and_unknown_blocks() -> None:
    readme = parse(
        "```python\nprint('hi')\n```\n"
        "```sh\nsn demo\n```\n"
        "<!-- readme-test: nobody-runs-this -->\n```python\npass\n```\n"
    )
    problems = "\n".join(coverage_problems(readme.blocks))
    assert "README.md:1 (python: \"print('hi')\") is not covered" in problems
    assert "README.md:4 (sh: 'sn demo') is not covered" in problems
    assert "no scenario executes block 'nobody-runs-this'" in problems
    # ... and every block the real README has is missing from this one.
    assert "execute block 'calculator-node', which README.md does not have" in problems
