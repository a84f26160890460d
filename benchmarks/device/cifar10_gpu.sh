#!/usr/bin/env bash
# Paper-scale CIFAR-10 on one lent GPU (JAX backend, no TensorFlow there): the ResNet-20 victim on all
# 50,000 training images, then the whole defense grid with the clones trained together (--parallel-clones).
#
# Here, once:   bash benchmarks/device/cifar10_gpu.sh pack        (writes .devdata/1..4, each under 63 MB)
# Then four device calls, back to back (a call carries at most 64 MiB, so the data travels in bundles):
#   call 1: carry [".whl", ".devdata/1"]  command: bash benchmarks/device/cifar10_gpu.sh start
#   call 2: carry [".devdata/2"]          command: bash benchmarks/device/cifar10_gpu.sh stage
#   call 3: carry [".devdata/3"]          command: bash benchmarks/device/cifar10_gpu.sh stage   (victim starts)
#   call 4: carry [".devdata/4"]          command: bash benchmarks/device/cifar10_gpu.sh grid    (timeout_s 600)
# Results land in $OUT: results.json, tradeoff.png, table.txt, victim.keras.json, timing.json, logs.txt.
#
# Settings (environment): GRID_SECONDS (540: the grid call's own deadline), VICTIM_EPOCHS (60), CLONE_EPOCHS (30),
# BUDGET (20000), PARALLEL (32 clones at once), PRECISION (mixed_bfloat16 or float32), SWEEPS (the grid, see
# below), BASELINE_BUDGETS (5000,10000: the undefended victim at smaller budgets), EVAL_BATCH (2048),
# ARCH / WIDTH (resnet20), PYTHON (python3), SKIP_WHEELS (set: use what is installed), W (/tmp/kdcp),
# DEVDATA (.devdata), and for `pack` SHARED (../shared/data).
set -uo pipefail
W=${W:-/tmp/kdcp}
DEVDATA=${DEVDATA:-.devdata}
PY=${PYTHON:-python3}
OUT=${OUT:-$W/out}
mkdir -p "$W/data" "$W/pieces" "$W/logs" "$OUT"
export PYTHONPATH="$PWD:/tmp/site${PYTHONPATH:+:$PYTHONPATH}" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 TQDM_MININTERVAL=15
# The grid: DCP and reverse sigmoid at four settings each (keras-dcp's default grids), MAD and AM where this
# checkout registers them (unknown names are skipped with a note; give their settings as mad:eps=a/b once known).
SWEEPS=${SWEEPS:-"dcp rs mad am"}
arch=(--arch "${ARCH:-resnet20}"); [ -n "${WIDTH:-}" ] && arch+=(--width "$WIDTH")

stage() {  # copy what this call carried, join the datasets that are complete, start the victim when it can
  $PY benchmarks/device/pack_data.py join "$DEVDATA"/* --pieces "$W/pieces" --out "$W/data" || return 1
  if [ -f "$W/data/train.npz" ] && [ -f "$W/data/train_extra.npz" ] && [ ! -f "$W/victim.started" ]; then
    date +%s > "$W/victim.started"
    setsid nohup $PY benchmarks/cifar10_paper_scale.py victim --train "$W/data/train.npz" \
        --train "$W/data/train_extra.npz" "${arch[@]}" --epochs "${VICTIM_EPOCHS:-60}" \
        --batch-size "${VICTIM_BATCH:-128}" -o "$W/victim.keras" > "$W/logs/victim.log" 2>&1 < /dev/null &
    echo "victim training started (pid $!)"
  fi
  [ -f "$W/logs/victim.log" ] && tail -2 "$W/logs/victim.log"
  return 0
}

case "${1:-}" in
pack)
  S=${SHARED:-../shared/data}
  rm -rf "$DEVDATA" && $PY benchmarks/device/pack_data.py pack --out "$DEVDATA" \
      --limit-mb "${PACK_LIMIT_MB:-63}" --first-limit-mb "${PACK_FIRST_MB:-55}" \
      train="$S/cifar10/train.npz" train_extra="$S/cifar10/train_extra.npz" \
      queries="$S/tinyimagenet/queries.npz" test="$S/cifar10/test.npz" ;;
start)
  if [ -z "${SKIP_WHEELS:-}" ]; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
  fi
  command -v nvidia-smi > /dev/null && nvidia-smi --query-gpu=name,memory.total --format=csv
  $PY -c "import jax, keras; print(jax.devices(), keras.__version__)"
  date +%s > "$W/started"
  stage ;;
stage)
  stage ;;
grid)
  stage || exit 1
  deadline=$(( $(date +%s) + ${GRID_SECONDS:-540} ))
  while [ ! -f "$W/victim.keras" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 2; done
  [ -f "$W/victim.keras" ] || { echo "victim not ready"; tail -n 40 "$W/logs/"*.log > "$OUT/logs.txt"; exit 1; }
  victim_done=$(date +%s)
  sweeps=(); for s in $SWEEPS; do sweeps+=(--sweep "$s"); done
  # The last chunk must start early enough to finish: no new run_experiment call in the last 20% of the time.
  timeout $(( deadline - $(date +%s) )) $PY benchmarks/cifar10_paper_scale.py grid --victim "$W/victim.keras" \
      --test "$W/data/test.npz" --queries "$W/data/queries.npz" --budget "${BUDGET:-20000}" \
      --attack knockoff --attack knockoff-label --epochs "${CLONE_EPOCHS:-30}" "${sweeps[@]}" --skip-unknown \
      --parallel-clones "${PARALLEL:-32}" --precision "${PRECISION:-mixed_bfloat16}" \
      --eval-batch-size "${EVAL_BATCH:-2048}" --baseline-budgets "${BASELINE_BUDGETS:-5000,10000}" \
      --deadline $(( deadline - ${GRID_SECONDS:-540} / 5 )) --meta "$W/victim.keras.json" \
      --json "$OUT/results.json" --plot "$OUT/tradeoff.png" \
      --title "ResNet-20 on CIFAR-10 (50k), KnockoffNets with Tiny-ImageNet queries" > "$W/logs/grid.log" 2>&1
  end=$(date +%s)
  $PY -c "import sys; from keras_dcp.experiments import format_table, load_results
print(format_table(load_results(sys.argv[1])))" "$OUT/results.json" > "$OUT/table.txt"
  $PY - "$W" "$victim_done" "$end" > "$OUT/timing.json" <<'EOF'
import json, sys
w, victim_done, end = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
started = int(open(f"{w}/victim.started").read())
meta = json.load(open(f"{w}/victim.keras.json"))
print(json.dumps({"victim_seconds": meta.get("seconds"), "victim_test_accuracy": meta.get("test_accuracy"),
                  "victim_started_to_ready_s": victim_done - started, "grid_call_s": end - victim_done,
                  "victim_start_to_grid_end_s": end - started}, indent=1))
EOF
  cp "$W/victim.keras.json" "$OUT/" 2>/dev/null
  tail -n 40 "$W/logs/"*.log > "$OUT/logs.txt" ;;
*)
  echo "usage: cifar10_gpu.sh pack|start|stage|grid"; exit 2 ;;
esac
