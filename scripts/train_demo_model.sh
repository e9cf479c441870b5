#!/usr/bin/env bash
# Train the bundled demo model: configs/demo.yaml with `dias train` on the built-in synthetic data, seeds
# 42, 43 and 44; score each run with `dias eval`; then package seed 42's weights with all three runs' logs
# and scores into src/dias/demo_model/ (scripts/package_demo_model.py), which `dias demo` uses.
#
#   scripts/train_demo_model.sh          # re-run it after an interruption: every run resumes from its last.pt
#
# The runs live in runs/demo-model-SEED (git-ignored; DIAS_DEMO_RUNS=PREFIX moves them to PREFIX-SEED): their
# checkpoints and logs stay out of the repository. To continue a run in another session or on another machine,
# copy its folder there and re-run the script. What the repository keeps of a run is what the packaging
# copies into src/dias/demo_model/ (the first seed's weights, every seed's log and scores).
# DIAS_DEMO_CONFIG=PATH trains another config;
# DIAS_DEMO_SEEDS="42" trains fewer seeds; DIAS_TRAIN replaces the launcher (default "dias train").
# The first seed's weights are the ones packaged.
set -euo pipefail
cd "$(dirname "$0")/.."
prefix=${DIAS_DEMO_RUNS:-runs/demo-model}
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
