"""A tiny training loop that checkpoints its epoch and resumes where it left off.

Stands in for a real job: each epoch "trains" for a second, then saves a
checkpoint as a consistent set (model + optimizer state) and tells the agent,
so a machine taken away mid-run resumes from the last complete epoch.
"""

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

parser = argparse.ArgumentParser()
parser.add_argument("--epochs", type=int, default=12)
parser.add_argument("--seconds-per-epoch", type=float, default=1.0)
args = parser.parse_args()

ckpt = Path("checkpoints")
results = Path("results")
ckpt.mkdir(exist_ok=True)
results.mkdir(exist_ok=True)

state_file = ckpt / "state.json"
state = json.loads(state_file.read_text()) if state_file.exists() else {"epoch": 0, "loss": 1.0}
boot = os.environ.get("TASK_RESTARTS", "0")
print(
    f"boot {boot}: resumed={os.environ.get('TASK_RESUMED', '0')} "
    f"starting at epoch {state['epoch']}",
    flush=True,
)

with open(results / "history.txt", "a") as history:
    for epoch in range(state["epoch"], args.epochs):
        time.sleep(args.seconds_per_epoch)  # the "training"
        state = {"epoch": epoch + 1, "loss": round(state["loss"] * 0.8, 6)}
        (ckpt / "weights.txt").write_text(f"weights after epoch {epoch + 1}\n")
        state_file.write_text(json.dumps(state))
        history.write(f"epoch {epoch + 1} loss {state['loss']} (boot {boot})\n")
        history.flush()
        # A consistency point: this epoch's files are durable before we go on.
        subprocess.run(["pulumi-iterative", "checkpoint"], check=False, stdout=subprocess.DEVNULL)
        print(f"epoch {epoch + 1} loss {state['loss']}", flush=True)

(results / "model.txt").write_text(f"final loss {state['loss']} after {state['epoch']} epochs\n")
print("done", flush=True)
