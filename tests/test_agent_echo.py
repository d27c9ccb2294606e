"""The agent's echo of the script's output to its stdout (k8s: the container log)."""

from __future__ import annotations

import io
from pathlib import Path

from pulumi_iterative.agent.echo import LogEcho


def test_whole_script_lines_are_echoed_once_and_the_agents_notes_are_not(
    tmp_path: Path,
) -> None:
    log, out = tmp_path / "0-abc.log", io.BytesIO()
    echo = LogEcho(log, out)
    echo.pump()  # no log yet: nothing, no error
    log.write_bytes(b"[agent 10:00:00] starting script\nepoch 1\nepo")
    echo.pump()
    assert out.getvalue() == b"epoch 1\n"  # the partial line waits for its end
    with log.open("ab") as fh:
        fh.write(b"ch 2\n[agent 10:00:05] finished: succeeded\nno newline")
    echo.pump()
    echo.pump()
    assert out.getvalue() == b"epoch 1\nepoch 2\n"
    echo.pump(final=True)  # the end of the boot: the last partial line too
    assert out.getvalue() == b"epoch 1\nepoch 2\nno newline\n"
