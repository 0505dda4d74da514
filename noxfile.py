"""nox sessions: the suite on every supported Python that is installed, plus lint, typecheck,
interop and bench. ``./dev`` is the one runner (CI runs ``./dev ci``); these sessions run the
same commands in nox's own virtual environments, for Python 3.11 to 3.13."""

from __future__ import annotations

import nox

nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.reuse_existing_virtualenvs = True
# Sessions for a Python that is not installed are skipped (with a message), not failed.
nox.options.error_on_missing_interpreters = False


@nox.session(python=["3.11", "3.12", "3.13"])
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
