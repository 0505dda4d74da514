"""nox sessions: tests (both backends), lint, typecheck, interop, bench."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True


@nox.session(python="3.11")
def tests(session: nox.Session) -> None:
    """The whole suite; every backend-neutral test runs under trio and asyncio."""
    session.install("-e", ".[dev]")
    session.run("pytest", *session.posargs)


@nox.session(python="3.11")
def interop(session: nox.Session) -> None:
    """Wire interop with synapse-p2p 2.5.0 (installed into .cache/ref-2.5.0)."""
    session.install("-e", ".[dev]")
    session.run("pytest", "-m", "interop", *session.posargs)


@nox.session(python="3.11")
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.6")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session(python="3.11")
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[dev]")
    session.run("mypy")


@nox.session(python="3.11")
def bench(session: nox.Session) -> None:
    """Benchmarks, side by side with synapse-p2p 2.5.0 and raw servers."""
    session.install("-e", ".[dev]")
    session.run("python", "benchmarks/rpc.py", *session.posargs)
