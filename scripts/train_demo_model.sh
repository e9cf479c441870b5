#!/usr/bin/env bash
# Train a bundled demo model with `dias train` on the built-in synthetic data, seeds 42, 43 and 44; score each
# run with `dias eval`; then package seed 42's weights with all three runs' logs and scores into the package
# (scripts/package_demo_model.py), where `dias demo` finds them.
#
#   scripts/train_demo_model.sh                         # the DINOv2 demo model -> src/dias/demo_model_dinov2/
#   DIAS_DEMO_MODEL=colour scripts/train_demo_model.sh  # the colour-code one   -> src/dias/demo_model/
#
# Re-run it after an interruption: every run resumes from its last.pt.
# dinov2: configs/demo-dinov2.yaml on 2000 + 500 scenes of 256 px, whose ViT-S/14 tokens (`dias weights get
# dinov2-vits14`, fetched once) are cached first with `dias features --views 0` (the evaluation views only).
# colour: configs/demo.yaml on `dias prepare synthetic`'s defaults (10000 + 1000 scenes of 128 px), no cache.
#
# The runs live in runs/demo-model-MODEL-SEED (git-ignored; DIAS_DEMO_RUNS=PREFIX moves them to PREFIX-SEED):
# their checkpoints and logs stay out of the repository. To continue a run in another session or on another
# machine, copy its folder there and re-run the script. What the repository keeps of a run is what the
# packaging copies into the package (the first seed's weights, every seed's log and scores).
# DIAS_DEMO_CONFIG=PATH trains another config; DIAS_DEMO_SEEDS="42" trains fewer seeds; DIAS_TRAIN replaces the
# launcher (default "dias train"). The first seed's weights are the ones packaged.
set -euo pipefail
cd "$(dirname "$0")/.."
model=${DIAS_DEMO_MODEL:-dinov2}
case $model in
  dinov2)
    config=${DIAS_DEMO_CONFIG:-configs/demo-dinov2.yaml}
    data=${DIAS_DEMO_DATA:-data/synthetic-256}
    out=src/dias/demo_model_dinov2
    dias prepare synthetic --out "$data" --num-train 2000 --num-val 500 --size 256
    features=${DIAS_DEMO_FEATURES:-cache/synthetic-256-dinov2}
    [ -f "$features/val.lmdb" ] || dias features --config "$config" --out "$features" --views 0 "data.root=$data"
    placement=("data.root=$data" "data.features=$features")
    ;;
  colour)
    config=${DIAS_DEMO_CONFIG:-configs/demo.yaml}
    data=${DIAS_DEMO_DATA:-data/synthetic}
    out=src/dias/demo_model
    dias prepare synthetic --out "$data"
    placement=("data.root=$data")
    ;;
  *) echo "DIAS_DEMO_MODEL must be dinov2 or colour, got $model" >&2; exit 2 ;;
esac
prefix=${DIAS_DEMO_RUNS:-runs/demo-model-$model}
read -r -a seeds <<< "${DIAS_DEMO_SEEDS:-42 43 44}"
read -r -a launcher <<< "${DIAS_TRAIN:-dias train}"
runs=()
for seed in "${seeds[@]}"; do
  run=$prefix-$seed
  if [ -f "$run/last.pt" ]; then
    "${launcher[@]}" --resume "$run" "${placement[@]}"
  else
    "${launcher[@]}" --config "$config" --out "$run" "train.seed=$seed" "${placement[@]}" log.tensorboard=false
  fi
  dias eval --checkpoint "$run/last.pt" --out "$run/eval-val" --viz 8 "${placement[@]}"
  runs+=("$run")
done
python scripts/package_demo_model.py "${runs[@]}" --out "$out"
