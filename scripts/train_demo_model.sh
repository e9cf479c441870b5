#!/usr/bin/env bash
# Train the bundled demo model: configs/demo.yaml with `dias train` on the built-in synthetic data, seeds
# 42, 43 and 44; score each run with `dias eval`; then package seed 42's weights with all three runs' logs
# and scores into src/dias/demo_model/ (scripts/package_demo_model.py), which `dias demo` uses.
#
#   scripts/train_demo_model.sh          # re-run it after an interruption: every run resumes from its last.pt
#
# The runs live in benchmarks/results/demo-model-v2-SEED (DIAS_DEMO_RUNS=PREFIX moves them to PREFIX-SEED), so
# their checkpoints and logs can be committed while they train and continued in another session or machine;
# benchmarks/results/demo-model-SEED are the runs of the earlier demo model (patch_stats tokens, 7 slots).
# DIAS_DEMO_CONFIG=PATH trains another config;
# DIAS_DEMO_SEEDS="42" trains fewer seeds; DIAS_TRAIN replaces the launcher (default "dias train").
# The first seed's weights are the ones packaged.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${DIAS_DEMO_RUNS:-benchmarks/results/demo-model-v2}
data=${DIAS_DEMO_DATA:-data/synthetic}
config=${DIAS_DEMO_CONFIG:-configs/demo.yaml}
read -r -a seeds <<< "${DIAS_DEMO_SEEDS:-42 43 44}"
read -r -a launcher <<< "${DIAS_TRAIN:-dias train}"
dias prepare synthetic --out "$data"
runs=()
for seed in "${seeds[@]}"; do
  run=$prefix-$seed
  if [ -f "$run/last.pt" ]; then
    "${launcher[@]}" --resume "$run" "data.root=$data"
  else
    "${launcher[@]}" --config "$config" --out "$run" "train.seed=$seed" "data.root=$data" log.tensorboard=false
  fi
  dias eval --checkpoint "$run/last.pt" --out "$run/eval-val" --viz 8
  runs+=("$run")
done
python scripts/package_demo_model.py "${runs[@]}" --out src/dias/demo_model
