"""8. Log shipping: bytes uploaded for a steady log over a simulated hour.

A script prints 1 MB a minute for an hour. Ours is the agent's own
`logsegments.LogShipper`, called on the agent's 3 s loop with a simulated clock,
writing real segments through the rclone daemon to a local-folder bucket; at the
end the whole log is read back with `logsegments.fetch` and must equal the file
byte for byte (complete and in order across segments). The baseline is the
Terraform provider's log loop: every 5 s, if the logs folder changed, `rclone
sync` of it, which sends the whole changed file again; its bytes are the file's
size at each such turn (counted, not run: 720 syncs of up to 60 MB would take
minutes here and say nothing more).

Goal (issue 13): every byte once, so ours / baseline is about 1 / (turns / 2).
"""

from __future__ import annotations

import os
import time

from pulumi_iterative import logsegments
from pulumi_iterative.storage import Rclone, Remote

from .common import MB, Row, Scratch, log

RATE = MB  # bytes a minute
HOUR = 3600
AGENT_TICK = 3.0  # the agent's log loop
BASELINE_TICK = 5.0  # the baseline's log loop


def run(scratch: Scratch, quick: bool) -> list[Row]:
    minutes = 20 if quick else 60
    horizon = minutes * 60
    local = scratch.fresh("logs-local") / "0-bench.log"
    bucket = scratch.fresh("logs-bucket")
    rclone = Rclone(Remote(str(bucket)))
    rclone.start_daemon()
    shipper = logsegments.LogShipper(rclone, local, "0-bench")
    per_tick = int(RATE * AGENT_TICK / 60)
    log(f"logs: {minutes} simulated minutes at 1 MB/min")
    started = time.perf_counter()
    try:
        t = 0.0
        with open(local, "ab") as fh:
            while t < horizon:
                fh.write(os.urandom(per_tick // 2).hex().encode()[:per_tick])
                fh.flush()
                t += AGENT_TICK
                shipper.ship(now=t)
        shipper.ship(force=True, now=t)
        seconds = time.perf_counter() - started
        back = logsegments.fetch(rclone)["0-bench"][0]
    finally:
        rclone.stop_daemon()
    whole = local.read_bytes()
    assert back == whole, "the segments do not add up to the log"
    segments = rclone.calls  # one write per segment (plus the fetch's listing and copy)
    size_at = [RATE * (k * BASELINE_TICK) / 60 for k in range(1, int(horizon / BASELINE_TICK) + 1)]
    base_bytes = sum(size_at)
    row = Row(
        "8. logs",
        f"bytes uploaded, 1 MB/min for {minutes} simulated minutes",
        shipper.uploaded / MB,
        base_bytes / MB,
        unit="MB",
        ours_req=segments - 2,
        base_req=len(size_at),
        req_unit="uploads",
        goal="each byte once",
        runs=1,
        note=f"log {len(whole) / MB:.0f} MB; ours {segments - 2} segments "
        f"({seconds:.1f} s of real shipping); read back whole and in order",
    )
    row.met = shipper.uploaded == len(whole)
    return [row]
