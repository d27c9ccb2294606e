"""Cost through the real provider server, on the local cloud with a notional price: the
estimate at check, the spend in the outputs, the final figure kept, and said at delete."""

from __future__ import annotations

import time
from pathlib import Path

from pulumi_iterative import lifecycle
from pulumi_iterative.provider import TaskProvider
from pulumi_iterative.task import TaskRef
from tests.provider_server import provider_server

TYPE = "pulumi-python:dynamic/iterative:Task"


def test_outputs_carry_the_spend_and_a_finished_task_keeps_its_figure(
    iterative_home: Path, workdir: Path
) -> None:
    news = {
        "cloud": "local",
        "notional_price": 36.0,  # 0.01 a second: a few seconds show up in the figure
        "script": "#!/bin/sh\nsleep 1\necho done\n",
        "storage": {"workdir": ".", "checkpoint_interval": 0},
    }
    env = {"PULUMI_ITERATIVE_HOME": str(iterative_home)}
    with provider_server(TaskProvider(), env=env, cwd=workdir, resource_type=TYPE) as server:
        server.configure({})
        inputs, failures = server.check("train", {}, news)
        assert failures == []
        assert "estimate: 1 x m in local at 36.00 USD/h each" in server.stderr_text()
        id_, outs = server.create("train", inputs)
        end = time.monotonic() + 90
        while not (outs["status"].get("cost") or {}).get("final"):
            assert time.monotonic() < end, f"no final figure: {outs['status']}"
            time.sleep(0.3)
            _, outs = server.read(id_, "train", outs)
        spent = outs["status"]["cost"]
        assert outs["status"]["state"] == "succeeded"
        assert spent["currency"] == "USD" and spent["basis"] == "notional"
        (boot,) = spent["boots"]
        assert boot["seconds"] >= 1.0 and boot["timed_by"] == "cloud"
        assert spent["total"] == boot["cost"] > 0.01
        # The group told the machine when it launched; the report keeps it for the budget.
        (report,) = lifecycle.reports(TaskRef.from_dict(outs["ref"])).boots
        assert report.launched is not None and report.launched <= (report.started or 0)
        # Read again: the finished task's figure stays as it was.
        kept = {**outs, "status": {**outs["status"], "cost": {**spent, "total": 123.0}}}
        _, again = server.read(id_, "train", kept)
        assert again["status"]["cost"]["total"] == 123.0
        server.delete(id_, "train", outs, old_inputs=inputs)
        assert f"{outs['task_id']}: cost: " in server.stderr_text()
