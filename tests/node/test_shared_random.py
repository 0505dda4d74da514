"""The process's shared unseeded generator (``synapse_p2p._random``)."""

from __future__ import annotations

import os

import pytest

from synapse_p2p._random import SHARED


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_its_parents_choices() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next draws and leave at once
        try:
            os.write(write, repr([SHARED.random() for _ in range(4)]).encode())
        finally:
            os._exit(0)
    os.close(write)
    try:
        theirs = os.read(read, 4096).decode()
    finally:
        os.close(read)
        os.waitpid(pid, 0)
    ours = repr([SHARED.random() for _ in range(4)])
    assert theirs
    assert theirs != ours
