#!/bin/bash
# The baseline: the Terraform provider's (iterative_task) machine method, as in its
# task/common/machine/machine-script.sh.tpl, with the parts that cost time or lose
# work kept line for line and the cloud plumbing (systemd, leo, apt, CML) left out:
#
#   restore   rclone copy "$RCLONE_REMOTE/data" /opt/task/directory
#   run       the script as a service (here: a background job in the workdir)
#   logs      every 5 s: if the log folder's md5 changed, rclone sync it to reports/
#   data      every 10 s: newest mtime via `find -printf "%T@\n" | sort | tail -1`;
#             if it changed, a full `rclone sync` of the workdir to data/
#   finish    ExecStop copies a status file to reports/; ExecStopPost is
#             tpi-task-shutdown: `sleep 20; while pgrep rclone; do sleep 1; done`,
#             then `leo stop` (here: exit 0, the local group's "left the group")
#   SIGTERM   nothing special: the machine goes down, loops and rclone with it
#
# Same rclone binary ($RCLONE_BIN) and the same remote as ours; rclone defaults, as
# the template runs them. `pgrep` is limited to this machine's session (-s 0)
# because other machines' rclones run on the same host here.
#
#   baseline.sh once DIR REMOTE EPOCH_FILE   one turn of the data loop (benchmark 1)
#   baseline.sh machine                      a whole machine (benchmarks 3 and 4), run by
#                                            the local cloud's group; needs RCLONE_REMOTE,
#                                            RCLONE_BIN, TPI_TASK_SCRIPT, ITERATIVE_MACHINE_DIR
set -u

SYNC_INTERVAL=10
LOG_INTERVAL=5
SHUTDOWN_WAIT=20

rclone() { RCLONE_CONFIG=/dev/null "$RCLONE_BIN" "$@"; }

newest() { find "$1" -printf "%T@\n" | sort | tail -1; }

once() {
  local dir=$1 remote=$2 epoch_file=$3 new old=""
  new="$(newest "$dir")"
  [ -f "$epoch_file" ] && old="$(cat "$epoch_file")"
  if test "$new" != "$old"; then
    echo "$new" >"$epoch_file"
    rclone sync "$dir" "$remote/data"
    echo synced
  else
    echo unchanged
  fi
}

machine() {
  local dir=$ITERATIVE_MACHINE_DIR work logs id task code
  work="$dir/work"
  logs="$(mktemp --directory "$dir/logs.XXXX")"
  id="$(cat /proc/sys/kernel/random/uuid)"
  export TASK_INDEX="$ITERATIVE_MACHINE_INDEX"
  mkdir -p "$work"

  rclone copy "$RCLONE_REMOTE/data" "$work"

  (cd "$work" && exec "$TPI_TASK_SCRIPT") >"$logs/task-$id" 2>&1 &
  task=$!
  # For the local cloud's group: it rehearses preemption only on machines whose
  # script runs, which it learns from script.pgid (here the script is a job of this
  # shell, in the machine's own process group).
  echo $$ >"$dir/script.pgid"

  while sleep "$LOG_INTERVAL"; do
    new_hash="$(md5sum "$logs"/*)"
    if test "$new_hash" != "${hash:-}"; then
      hash="$new_hash"
      rclone sync "$logs" "$RCLONE_REMOTE/reports"
    fi
  done &

  while sleep "$SYNC_INTERVAL"; do
    new_epoch="$(newest "$work")"
    if test "$new_epoch" != "${epoch:-}"; then
      epoch="$new_epoch"
      rclone sync "$work" "$RCLONE_REMOTE/data"
    fi
  done &

  wait "$task"
  code=$?
  echo "{\"result\": \"success\", \"code\": \"exited\", \"status\": \"$code\"}" >"$logs/status-$id"
  rclone copy "$logs" "$RCLONE_REMOTE/reports"

  sleep "$SHUTDOWN_WAIT"
  while pgrep -s 0 -x rclone >/dev/null; do sleep 1; done
  exit 0
}

case "${1:-}" in
  once) shift; once "$@" ;;
  machine) machine ;;
  *) echo "usage: $0 once DIR REMOTE EPOCH_FILE | machine" >&2; exit 2 ;;
esac
