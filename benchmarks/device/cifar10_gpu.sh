#!/usr/bin/env bash
# Paper-scale CIFAR-10 run on a lent GPU machine (JAX backend, no TensorFlow there).
# The data travels in three calls (each call's tree is limited to 64 MiB), so:
#   call 1: carry .whl .devdata/train   -> bash benchmarks/device/cifar10_gpu.sh start
#   call 2: carry .devdata/queries      -> bash benchmarks/device/cifar10_gpu.sh stage
#   call 3: carry .devdata/test         -> bash benchmarks/device/cifar10_gpu.sh grid
# Results land in $OUT: results.json, tradeoff.png, victim.keras(+.json), logs.
set -uo pipefail
W=/tmp/kdcp
mkdir -p "$W/data" "$W/parts" "$W/logs"
export PYTHONPATH="$PWD:/tmp/site" KERAS_BACKEND=jax PYTHONUNBUFFERED=1 XLA_PYTHON_CLIENT_PREALLOCATE=false
stage() { for f in .devdata/*/*.npz; do [ -f "$f" ] && cp "$f" "$W/data/"; done; ls -la "$W/data"; }
# One worker per line: budget, then the defense specs it runs (each with both attacks).
DEFAULT_GRID="5000 none
10000 none
20000 none dcp:beta=0.3,gamma=0.2
20000 dcp:beta=0.5,gamma=0.2 dcp:beta=0.7,gamma=0.2
20000 dcp:beta=0.9,gamma=0.2 dcp:beta=1.2,gamma=0.2
20000 rs:beta=0.3,gamma=0.2 rs:beta=0.6,gamma=0.2
20000 rs:beta=0.1,gamma=0.2 rs:beta=1.0,gamma=0.2"
case "$1" in
start)
  [ -n "${SKIP_WHEELS:-}" ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
      --upgrade --target /tmp/site .whl/*.whl || exit 1
  stage
  nvidia-smi --query-gpu=name,memory.total --format=csv
  python3 -c "import jax, keras; print(jax.devices(), keras.__version__)"
  setsid nohup python3 benchmarks/cifar10_paper_scale.py victim --train "$W/data/train.npz" \
      --epochs "${VICTIM_EPOCHS:-60}" -o "$W/victim.keras" > "$W/logs/victim.log" 2>&1 < /dev/null &
  sleep 20; tail -5 "$W/logs/victim.log" ;;
stage)
  stage; tail -3 "$W/logs/victim.log" ;;
grid)
  stage
  deadline=$(( $(date +%s) + ${GRID_SECONDS:-480} ))
  while [ ! -f "$W/victim.keras" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 5; done
  tail -3 "$W/logs/victim.log"
  [ -f "$W/victim.keras" ] || { cp "$W/logs/"*.log "$OUT/"; exit 1; }
  common=(--victim "$W/victim.keras" --test "$W/data/test.npz" --queries "$W/data/queries.npz"
          --attack knockoff --attack knockoff-label --epochs "${CLONE_EPOCHS:-30}")
  i=0
  while read -r budget specs; do
    i=$((i + 1)); args=()
    for s in $specs; do args+=(--defense "$s"); done
    XLA_PYTHON_CLIENT_MEM_FRACTION=0.1 python3 benchmarks/cifar10_paper_scale.py grid "${common[@]}" \
        --budget "$budget" "${args[@]}" --json "$W/parts/part$i.json" > "$W/logs/grid$i.log" 2>&1 &
  done <<< "${GRID:-$DEFAULT_GRID}"
  while [ -n "$(jobs -rp)" ] && [ "$(date +%s)" -lt "$deadline" ]; do sleep 5; done
  kill $(jobs -rp) 2>/dev/null
  python3 benchmarks/cifar10_paper_scale.py merge "$W"/parts/part*.json --json "$OUT/results.json" \
      --plot "$OUT/tradeoff.png" --meta "$W/victim.keras.json" \
      --title "ResNet-20 on CIFAR-10, KnockoffNets with Tiny-ImageNet queries" | tee "$OUT/table.txt"
  cp "$W/victim.keras" "$W/victim.keras.json" "$OUT/"
  tail -n 30 "$W"/logs/*.log > "$OUT/logs.txt" ;;
esac
