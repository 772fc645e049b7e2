#!/usr/bin/env bash
# Train FIGARO for a wall-clock budget and leave everything in $OUT.
#
#   OUT=/path/out training/figaro/device_train.sh data/figaro_pack.npz        # GPU: compact, 8 minutes, bf16
#   SIZES="compact fast" MINUTES=5 OUT=/path/out training/figaro/device_train.sh data/figaro_pack.npz
#                                      # issue 15: both live sizes on the new data, one after the other
#   DEVICE=cpu CONFIG=training/figaro/configs/figaro_compact_cpu.json MINUTES=120 \
#       OUT=runs/cpu training/figaro/device_train.sh data/figaro_pack.npz        # the CPU fallback
#   DRY_RUN=1 SIZES="compact fast wide" training/figaro/device_train.sh data/figaro_pack.npz  # print the commands
#
# DATA is a pack written by `python -m training.figaro.train --pack data/figaro_pack.npz --data
# data/dataset --pack-max-segments 60000` (one compressed .npz; a device run carries at most 64 MiB; a
# dataset directory also works where pretty_midi is installed).
# Options after DATA go to training.figaro.train. Environment: OUT (default ./device_out), MINUTES (8, per
# size), DEVICE (cuda), CONFIG (training/figaro/configs/figaro_compact_gpu.json), PYTHON (python3), KEEP_BEST (0:
# drop best.pt once exported, it is ~100 MiB), RESUME (a checkpoint or "auto"), SIZES (unset: one run of
# CONFIG as it is, into $OUT/run and $OUT/export; else a list of sizes, each into $OUT/<size>/: compact =
# the config's model, fast = 3 decoder layers (figaro-fast), wide = d_model 384, 6 heads, FFN 1536, 3 decoder
# layers (~1.4x compact's step cost on the CPU; ship it only if measure_realtime gives RTF <= 0.35 int8 on
# one thread)), INIT (an exported model directory to fine-tune instead of starting fresh; compact only).
#
# Works on a bare machine with only torch + numpy: wheels found in .whl/ are installed offline
# (numpy, safetensors, tqdm, mido, pretty_midi); without pretty_midi, a stand-in giving the 128 General MIDI
# names (read from the pack) is put on PYTHONPATH, since the vocabulary needs only those names.
#
# Output in $OUT: device_train.log (this script's whole output), env.txt, run/ (log.jsonl,
# summary.json, loss_curves.png if matplotlib is there, config.json, checkpoints/last.pt),
# export/ (fp16 model*.safetensors <= 16 MiB each, config.json, training.json).
set -euo pipefail

cd "$(dirname "$0")/../.."
DATA="${1:?usage: training/figaro/device_train.sh DATA [trainer options...]}"
shift
OUT="${OUT:-$PWD/device_out}"
MINUTES="${MINUTES:-8}"
DEVICE="${DEVICE:-cuda}"
CONFIG="${CONFIG:-training/figaro/configs/figaro_compact_gpu.json}"
PYTHON="${PYTHON:-python3}"
KEEP_BEST="${KEEP_BEST:-0}"
RESUME="${RESUME:-}"

mkdir -p "$OUT"
exec > >(tee -a "$OUT/device_train.log") 2>&1
echo "[device_train] $(date -u +%FT%TZ) data=$DATA minutes=$MINUTES device=$DEVICE config=$CONFIG out=$OUT"
[ -e "$DATA" ] || { echo "[device_train] error: $DATA does not exist"; exit 2; }

# 1. offline wheels, only for what is missing
if [ -d .whl ]; then
    for mod in numpy safetensors tqdm mido pretty_midi; do
        if ! "$PYTHON" -c "import $mod" 2>/dev/null; then
            "$PYTHON" -m pip install --quiet --no-index --no-deps --find-links .whl "$mod" \
                || echo "[device_train] note: no wheel for $mod in .whl/"
        fi
    done
fi

# 2. a stand-in for pretty_midi where it is missing (the vocabulary only needs instrument names)
if ! "$PYTHON" -c "import pretty_midi" 2>/dev/null; then
    case "$DATA" in
        *.npz) ;;
        *) echo "[device_train] error: pretty_midi is missing; pass a pack (.npz) instead of $DATA"; exit 2 ;;
    esac
    STUB_DIR="$(mktemp -d)"
    "$PYTHON" - "$DATA" "$STUB_DIR" <<'PY'
import json, sys
import numpy as np
with np.load(sys.argv[1], allow_pickle=False) as pack:
    names = json.loads(bytes(pack["meta"]).decode())["instrument_names"]
assert len(names) == 128, "pack has no instrument names"
with open(f"{sys.argv[2]}/pretty_midi.py", "w") as fh:
    fh.write('"""Stand-in written by device_train.sh: General MIDI names only."""\n')
    fh.write(f"INSTRUMENT_NAMES = {names!r}\n\n")
    fh.write("def program_to_instrument_name(program):\n    return INSTRUMENT_NAMES[int(program)]\n")
PY
    export PYTHONPATH="$STUB_DIR${PYTHONPATH:+:$PYTHONPATH}"
    echo "[device_train] pretty_midi not installed: using the names-only stand-in in $STUB_DIR"
fi

# 3. what machine is this
{
    date -u +%FT%TZ
    "$PYTHON" -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
    command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    nproc
} > "$OUT/env.txt" 2>&1 || true
cat "$OUT/env.txt"

# 4. train, export (one size)
train_one() {  # train_one DIR [extra trainer options...]
    local dir="$1"
    shift
    local args=(--config "$CONFIG" --data "$DATA" --out-dir "$dir/run" --max-minutes "$MINUTES"
                --device "$DEVICE" --export "$dir/export" --no-progress)
    [ -n "$RESUME" ] && args+=(--resume "$RESUME")
    args+=("$@")
    if [ "${DRY_RUN:-0}" = "1" ]; then
        echo "[device_train] would run: $PYTHON -m training.figaro.train ${args[*]}"
        return 0
    fi
    local start status elapsed left
    start=$(date +%s)
    set +e
    "$PYTHON" -m training.figaro.train "${args[@]}"
    status=$?
    set -e
    elapsed=$(( $(date +%s) - start ))
    echo "[device_train] trainer exit status $status after $elapsed s"

    # A run that died before its first checkpoint (e.g. DataLoader workers without shared memory) is
    # retried once in the time left, with batches built in the training process.
    if [ "$status" -ne 0 ] && [ ! -f "$dir/run/checkpoints/last.pt" ]; then
        left=$("$PYTHON" -c "print(round($MINUTES - $elapsed / 60 - 0.5, 2))")
        if "$PYTHON" -c "import sys; sys.exit(0 if $left > 1 else 1)"; then
            echo "[device_train] retrying with --num-workers 0 for $left minutes"
            args+=(--num-workers 0 --max-minutes "$left")
            set +e
            "$PYTHON" -m training.figaro.train "${args[@]}"
            status=$?
            set -e
            echo "[device_train] retry exit status $status"
        fi
    fi

    if [ "$KEEP_BEST" != "1" ] && [ -f "$dir/export/training.json" ]; then
        rm -f "$dir/run/checkpoints/best.pt"
    fi
    ls -la "$dir" "$dir/run" "$dir/run/checkpoints" "$dir/export" 2>/dev/null || true
    [ -f "$dir/run/summary.json" ] && cat "$dir/run/summary.json"
    return "$status"
}

if [ -z "${SIZES:-}" ]; then
    STATUS=0
    train_one "$OUT" "$@" || STATUS=$?  # anything after DATA goes to the trainer, e.g. --max-steps 100
    exit "$STATUS"
fi

STATUS=0
for SIZE in $SIZES; do
    case "$SIZE" in
        compact) EXTRA=(${INIT:+--init "$INIT"}) ;;
        fast) EXTRA=(--set 'model={"decoder_layers": 3}') ;;
        wide) EXTRA=(--set 'model={"d_model": 384, "heads": 6, "ffn": 1536, "decoder_layers": 3}') ;;
        *) echo "[device_train] error: unknown size $SIZE (compact, fast, wide)"; exit 2 ;;
    esac
    echo "[device_train] $(date -u +%FT%TZ) size $SIZE: $MINUTES minutes"
    train_one "$OUT/$SIZE" "${EXTRA[@]}" "$@" || STATUS=$?
done
exit "$STATUS"
