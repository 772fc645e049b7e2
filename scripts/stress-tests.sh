#!/usr/bin/env bash
# Stress rehearsal for `make test` (issue 13): a fresh clone of this checkout's HEAD, the whole suite
# N times in a row (default 5) while a CPU hog keeps one core busy, one summary line per run.
#
#   scripts/stress-tests.sh [N]            # copy this checkout's .venv into the clone (no network)
#   scripts/stress-tests.sh --setup [N]    # scripts/setup.sh in the clone: a new .venv from PyPI
#   E2M_STRESS_SHARED=none scripts/stress-tests.sh   # as a newcomer without ../shared (data tests skip)
#
# Only committed work is tested (git clone of HEAD). The default copies .venv (1.5 GB) rather than
# linking it: the clone gets its own editable install (its finder re-pointed at the clone), so
# nothing the runs do can touch this checkout's environment, and the suite imports the clone's code
# exactly as on a fresh machine after `make setup`. --setup also exercises the install itself.
# The shared data (datasets, reference outputs) default to this checkout's ../shared, so the data
# tests run too. Logs stay in the temporary folder printed at the start (removed with --clean).
set -euo pipefail

SETUP=0 CLEAN=0 RUNS=5
for arg in "$@"; do
  case "$arg" in
    --setup) SETUP=1 ;;
    --clean) CLEAN=1 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) [[ "$arg" =~ ^[0-9]+$ ]] || { echo "usage: $0 [--setup] [--clean] [N]" >&2; exit 2; }; RUNS=$arg ;;
  esac
done

SRC=$(cd "$(dirname "$0")/.." && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/e2m-stress.XXXXXX")
CLONE="$WORK/e2m-live"
HOG_PID=""

cleanup() {
  if [ -n "$HOG_PID" ]; then kill "$HOG_PID" 2>/dev/null || true; wait "$HOG_PID" 2>/dev/null || true; fi
  if ((CLEAN)); then rm -rf "$WORK"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

echo "stress: clone of $(git -C "$SRC" rev-parse --short HEAD) in $CLONE"
git clone -q "$SRC" "$CLONE"

if ((SETUP)); then
  echo "stress: scripts/setup.sh in the clone (a new .venv)"
  (cd "$CLONE" && bash scripts/setup.sh)
else
  [ -x "$SRC/.venv/bin/python" ] || { echo "stress: no $SRC/.venv; run make setup or use --setup" >&2; exit 2; }
  echo "stress: copying .venv"
  cp -a "$SRC/.venv" "$CLONE/.venv"
  # Re-point the editable install and the scripts' interpreter at the clone.
  site=$("$CLONE/.venv/bin/python" -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")
  for f in "$site"/__editable__*finder.py "$site"/*.dist-info/direct_url.json; do
    [ -f "$f" ] && sed -i "s|$SRC|$CLONE|g" "$f"
  done
  for f in "$CLONE"/.venv/bin/*; do
    [ -f "$f" ] && [ ! -L "$f" ] && head -c 2 "$f" | grep -q '#!' && sed -i "1s|$SRC/.venv|$CLONE/.venv|" "$f"
  done
  # setup.sh reinstalls unless its stamp matches: export the extras the copied .venv was built with.
  stamp=$(cat "$CLONE/.venv/.e2m-installed" 2>/dev/null || true)
  for extras in "dev,train,link" "dev,train" ""; do
    want=$( (cat "$CLONE/pyproject.toml" "$CLONE/scripts/setup.sh"; echo "$extras") | sha1sum | cut -c1-16)
    if [ "$want" = "$stamp" ]; then export E2M_EXTRAS="$extras"; break; fi
  done
  [ -n "${E2M_EXTRAS+x}" ] || echo "stress: warning: .venv stamp does not match; make setup will reinstall"
  found=$(cd "$CLONE" && .venv/bin/python -c "import e2m_live, os; print(os.path.dirname(e2m_live.__file__))")
  [ "$found" = "$CLONE/e2m_live" ] || { echo "stress: the clone imports e2m_live from $found" >&2; exit 1; }
fi

shared=${E2M_STRESS_SHARED:-${E2M_SHARED:-$SRC/../shared}}
if [ "$shared" = none ]; then
  export E2M_SHARED="$WORK/no-shared"
  echo "stress: no shared data (the data tests skip)"
else
  E2M_SHARED=$(cd "$shared" && pwd)
  export E2M_SHARED
  echo "stress: shared data from $E2M_SHARED"
fi

# One core kept busy at normal priority for the whole rehearsal; the EXIT trap stops it. `yes` is one
# process (a pyenv `python3` shim would fork, and killing the shim would orphan the busy loop).
yes >/dev/null &
HOG_PID=$!
echo "stress: CPU hog pid $HOG_PID on 1 of $(nproc) cores; $RUNS runs of make test"

green=0 total_start=$SECONDS
for ((i = 1; i <= RUNS; i++)); do
  log="$WORK/run-$i.log"
  start=$SECONDS
  set +e
  (cd "$CLONE" && make test) >"$log" 2>&1
  rc=$?
  set -e
  wall=$((SECONDS - start))
  counts=$(grep -E '[0-9]+ (passed|failed|errors?)\b.* in [0-9.]+s' "$log" | tail -n 1 \
           | grep -Eo '[0-9]+ (passed|failed|skipped|errors?)' | awk '{a[$2]=$1} END {printf "%d passed, %d failed, %d errors, %d skipped",
                  a["passed"], a["failed"], a["error"]+a["errors"], a["skipped"]}')
  if ((rc == 0)); then verdict=green; green=$((green + 1)); else verdict="RED (exit $rc)"; fi
  line="run $i/$RUNS: $verdict: $counts, wall ${wall} s, load $(cut -d' ' -f1 /proc/loadavg)"
  echo "$line"
  grep -E '^(FAILED|ERROR) ' "$log" | sed 's/^/    /' || true
done
echo "stress: $green/$RUNS runs green, total wall $((SECONDS - total_start)) s, logs in $WORK"
((green == RUNS))
