"""A stack shared by a team, on the local cloud, through the real provider server: Alice
creates from her checkout; Bob (or CI), with another checkout path, another shell and an
unusable home directory, runs a no-op `up`, a refresh and a destroy."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pulumi_iterative.arguments import FIELDS
from pulumi_iterative.spec import TaskSpec
from tests.provider_server import ProviderError, ProviderServer, Secret
from tests.team import two_workstations

SCRIPT = (
    '#!/bin/sh\nmkdir -p results\necho "$GREETING/$TOKEN/$TEAM_A" > results/out.txt\n'
    "cat data/input.txt >> results/out.txt\n"
)


def program() -> dict:
    """The program in the repository: the same text in every checkout."""
    return {
        "cloud": "local",
        "script": SCRIPT,
        "environment": {"GREETING": "", "TEAM_*": ""},
        "secret_environment": Secret({"TOKEN": ""}),
        "storage": {"workdir": ".", "output": "results", "exclude": ["*.tmp"]},
    }


def read_until_done(server: ProviderServer, id_: str, outs: dict, timeout: float = 90) -> dict:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        _, outs = server.read(id_, "train", outs)
        if outs["status"]["state"] not in ("queued", "running"):
            return outs
        time.sleep(0.3)
    raise AssertionError(f"task not done: {outs['status']}")


@pytest.mark.timeout(240)
def test_a_teammate_changes_nothing_refreshes_and_destroys_into_their_checkout(
    tmp_path: Path,
) -> None:
    alice, bob = two_workstations(tmp_path)
    alice.shell["TOKEN"] = "alice-token"
    with bob.server() as b:  # Bob's shell has no TOKEN: his preview of a new task says so
        b.check("train", {}, program())
        assert "secret_environment.TOKEN: not set in your shell" in b.stderr_text()
    with alice.server() as a:
        inputs, failures = a.check("train", {}, program())
        assert failures == [] and "not set" not in a.stderr_text()
        id_, state = a.create("train", inputs)
        assert state["ref"]["workdir"] == "." and state["storage"]["workdir"] == "."
        assert str(alice.checkout) not in str(state["ref"])  # no workstation path in state
        assert state["bucket"] == state["ref"]["remote"]["root"]  # the local cloud: a folder
        state = read_until_done(a, id_, state)
        assert state["status"]["state"] == "succeeded", state["status"]
    # The task's own bucket lives in Alice's home; her CLI's task list knows it (with
    # her checkout's workdir), as a convenience only: Bob's home has none.
    local_state = alice.home / ".local" / "state" / "pulumi-iterative"
    assert (local_state / "buckets" / id_).is_dir()
    listed = json.loads((local_state / "tasks" / f"{id_}.json").read_text())
    assert listed["workdir"] == str(alice.checkout.resolve())

    with bob.server() as b:
        # A no-op `up` from another checkout, home and shell: the same inputs, no diff.
        again, failures = b.check("train", inputs, program())
        assert "not set in your shell" not in b.stderr_text()  # only a new task takes it
        assert failures == [] and again == inputs
        diff = b.diff(id_, "train", state, again)
        assert diff.changes is False and diff.replaces == []
        warning = b.stderr_text()
        assert "GREETING, TEAM_A in your shell differ" in warning  # said, not acted on
        assert "TOKEN in your shell differ" in warning
        assert "alice" not in warning and "bob" not in warning  # names only, never values

        # Refresh: status and logs read from anywhere; state stays portable.
        same_id, refreshed = b.read(id_, "train", state)
        assert same_id == id_ and refreshed["status"]["state"] == "succeeded"
        assert refreshed["ref"]["workdir"] == "."
        assert refreshed["inherited"] == state["inherited"]

        # Without Pulumi, from the stack's `ref` output: status and a pull, no registry.
        (bob.checkout / "ref.json").write_text(json.dumps(refreshed["ref"]))
        env = {**os.environ, **bob.env()}
        status = subprocess.run(
            [sys.executable, "-m", "pulumi_iterative.cli", "status", "ref.json"],
            env=env,
            cwd=bob.checkout,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert status.returncode == 0 and "succeeded" in status.stdout, status.stderr
        pulled = subprocess.run(
            [sys.executable, "-m", "pulumi_iterative.cli", "pull", "-", "--to", "model"],
            input=json.dumps({"ref": refreshed["ref"]}),
            env=env,
            cwd=bob.checkout,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert pulled.returncode == 0, pulled.stderr
        assert (bob.checkout / "model" / "results" / "out.txt").read_text().startswith("from alice")

        # Destroy: the outputs come home into Bob's checkout.
        b.delete(id_, "train", refreshed)
        assert f"into {bob.checkout.resolve()}" in b.stderr_text()
    out = (bob.checkout / "results" / "out.txt").read_text()
    assert out == "from alice/alice-token/1\nx\n"  # what the task took at create
    assert not (alice.checkout / "results").exists()
    assert not (local_state / "buckets" / id_).exists()


def test_a_changed_program_still_replaces_from_any_checkout(tmp_path: Path) -> None:
    alice, bob = two_workstations(tmp_path)
    with alice.server() as a:
        inputs, _ = a.check("train", {}, program())
    state = {**inputs, "inherited": {"environment": {}, "secret_environment": {}}}
    with bob.server() as b:
        moved, _ = b.check("train", inputs, {**program(), "storage": {"workdir": "data"}})
        assert b.diff("x", "train", state, moved).replaces == ["storage"]
        more, _ = b.check("train", inputs, {**program(), "environment": {"GREETING": "", "X": ""}})
        assert b.diff("x", "train", state, more).replaces == ["environment"]
        out, _ = b.check(
            "train",
            inputs,
            {
                **program(),
                "storage": {"workdir": ".", "output": "results/model", "exclude": ["*.tmp"]},
            },
        )
        diff = b.diff("x", "train", state, out)
        assert diff.changes is True and diff.replaces == []


def test_a_state_written_before_team_stacks_does_not_replace(tmp_path: Path) -> None:
    """Older versions kept Alice's absolute workdir and her shell's values in state: her
    next no-op `up` and refresh change nothing, and an update moves it to the new form."""
    alice, _ = two_workstations(tmp_path)
    alice.shell["TOKEN"] = "t"
    with alice.server() as a:
        inputs, _ = a.check("train", {}, program())
        id_, state = a.create("train", inputs)
        workdir = str(alice.checkout.resolve())
        old = {
            **{k: v for k, v in state.items() if k != "inherited"},
            "storage": {**state["storage"], "workdir": workdir},
            "ref": {**state["ref"], "workdir": workdir},
            "environment": {"GREETING": "from alice", "TEAM_A": "1"},
            "secret_environment": {"TOKEN": "t"},
        }
        assert a.diff(id_, "train", old, inputs).changes is False
        old_inputs = {k: v for k, v in old.items() if k in FIELDS}
        assert TaskSpec.from_dict(old_inputs, base_dir=alice.checkout).storage.workdir == "."
        _, refreshed = a.read(id_, "train", old)
        assert "inherited" not in refreshed
        assert a.diff(id_, "train", refreshed, inputs).changes is False

        moved, _ = a.check(
            "train",
            inputs,
            {
                **program(),
                "storage": {"workdir": ".", "output": "results/out.txt", "exclude": ["*.tmp"]},
            },
        )
        assert a.diff(id_, "train", refreshed, moved).replaces == []
        updated = a.update(id_, "train", refreshed, moved)
        assert updated["environment"] == {"GREETING": "", "TEAM_*": ""}
        assert updated["inherited"]["environment"] == {"GREETING": "from alice", "TEAM_A": "1"}
        assert a.diff(id_, "train", updated, moved).changes is False
        assert "differ" not in a.stderr_text()
        read_until_done(a, id_, updated)
        a.delete(id_, "train", updated)
    assert (alice.checkout / "results" / "out.txt").read_text() == "from alice/t/1\nx\n"


def test_a_local_task_read_from_another_workstation_is_an_error_not_gone(
    tmp_path: Path,
) -> None:
    """The local cloud keeps its bucket and machines on Alice's workstation. From a
    workstation without her folders, refresh and destroy say so; the stack keeps it."""
    alice, bob = two_workstations(tmp_path)
    with alice.server() as a:
        inputs, _ = a.check("train", {}, program())
        id_, state = a.create("train", inputs)
        state = read_until_done(a, id_, state)
        away = alice.home.with_name("home-elsewhere")
        alice.home.rename(away)  # Bob's view: none of Alice's folders exist
        try:
            with bob.server() as b:
                for call in (
                    lambda: b.read(id_, "train", state),
                    lambda: b.delete(id_, "train", state),
                ):
                    with pytest.raises(ProviderError) as info:
                        call()
                    assert "runs on the local cloud of the workstation that created it" in (
                        info.value.message
                    )
        finally:
            away.rename(alice.home)
        a.delete(id_, "train", state)
    assert (alice.checkout / "results" / "out.txt").exists()


def test_a_workdir_written_as_this_files_folder_is_the_same_in_every_checkout(
    tmp_path: Path,
) -> None:
    """Programs often write `workdir=os.path.dirname(__file__)`: an absolute path that
    differs per checkout. Inside the project it is kept relative; outside, as written."""
    alice, bob = two_workstations(tmp_path)
    checked = []
    for person in (alice, bob):
        with person.server() as srv:
            storage = {"workdir": str(person.checkout / "data"), "output": "results"}
            inputs, failures = srv.check("train", {}, {**program(), "storage": storage})
            assert failures == []
            checked.append(inputs)
            outside = {"workdir": str(tmp_path / "alice" / "home")}
            elsewhere, _ = srv.check("train", {}, {**program(), "storage": outside})
            assert elsewhere["storage"]["workdir"] == str(tmp_path / "alice" / "home")
    assert checked[0] == checked[1] and checked[0]["storage"]["workdir"] == "data"
