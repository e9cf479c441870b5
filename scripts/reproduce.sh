#!/usr/bin/env bash
# Full reproduction of one dataset: prepare, train seeds 42/43/44, evaluate each, report mean ± std.
#
#   scripts/reproduce.sh voc ~/datasets/VOC dinov2_vits14_reg4.safetensors [full | smoothsa]
#
# DATASET is clevrtex, coco or voc; RAW its unpacked download; WEIGHTS a local DINOv2 ViT-S/14-reg4 file
# (timm layout). The fourth argument picks the method: DIAS as released by default (configs/dias-*.yaml),
# "full" the full DIAS method (configs/dias-full-*.yaml), "smoothsa" SmoothSA (configs/smoothsa-*.yaml).
# Every step resumes or skips what is already done, so the script can be re-run after an interruption.
# DIAS_TRAIN replaces the training launcher (default "dias train"), e.g. "torchrun --standalone
# --nproc_per_node 4 -m dias train"; DIAS_OVERRIDES adds key=value overrides to every training run.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n 2,11p "$0"
  exit 2
fi
dataset=$1 raw=$2 weights=$3 variant=${4:-}
case $variant in
  "") config=configs/dias-$dataset.yaml ;;
  full) config=configs/dias-full-$dataset.yaml ;;
  smoothsa) config=configs/smoothsa-$dataset.yaml ;;
  *) echo "unknown method $variant: use full or smoothsa, or leave it out for DIAS as released" >&2; exit 2 ;;
esac
name=$(basename "$config" .yaml)
read -r -a launcher <<< "${DIAS_TRAIN:-dias train}"
read -r -a extra <<< "${DIAS_OVERRIDES:-}"
dias prepare "$dataset" --raw "$raw" --out "data/$dataset"
runs=()
for seed in 42 43 44; do
  run=runs/$name-$seed
  if [ -f "$run/last.pt" ]; then
    "${launcher[@]}" --resume "$run" ${extra[@]+"${extra[@]}"}
  else
    "${launcher[@]}" --config "$config" --out "$run" "train.seed=$seed" "data.root=data/$dataset" \
      "model.backbone.weights=$weights" ${extra[@]+"${extra[@]}"}
  fi
  dias eval --checkpoint "$run/last.pt" --out "$run/eval-val"
  runs+=("$run")
done
dias report "${runs[@]}" --out "runs/$name-summary"
