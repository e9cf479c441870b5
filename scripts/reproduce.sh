#!/usr/bin/env bash
# Full reproduction of one dataset: prepare, train seeds 42/43/44, evaluate each, report mean ± std.
#
#   scripts/reproduce.sh voc ~/datasets/VOC dinov2_vits14_reg4.safetensors [full | smoothsa]
#   scripts/reproduce.sh movi_c ~/datasets/smoothsa/movi_c dinov2_vits14_reg4.safetensors smoothsa-video
#
# DATASET is clevrtex, coco or voc; RAW its unpacked download; WEIGHTS a local DINOv2 ViT-S/14-reg4 file
# (timm layout). The fourth argument picks the method: DIAS as released by default (configs/dias-*.yaml),
# "full" the full DIAS method (configs/dias-full-*.yaml), "smoothsa" SmoothSA (configs/smoothsa-*.yaml).
# Video: DATASET is movi_c, movi_d, movi_e, ytvis, ytvis_hq or ytvis_2022 and the fourth argument
# "smoothsa-video" (movi_c, movi_e, ytvis_hq, ytvis_2022) or "randsfq" (movi_c, movi_d, ytvis), the config
# configs/METHOD-DATASET.yaml. RAW is a folder of the official release's SPLIT.lmdb files (imported with
# `dias prepare import-official-video`) or, for the YTVIS datasets, the unpacked YouTube-VIS download
# (`dias prepare ytvis`; DIAS_PREPARE adds its options, e.g. "--holdout 300" for 2019/2021, which have no val).
# Every step resumes or skips what is already done, so the script can be re-run after an interruption.
# DIAS_TRAIN replaces the training launcher (default "dias train"), e.g. "torchrun --standalone
# --nproc_per_node 4 -m dias train"; DIAS_OVERRIDES adds key=value overrides to every training run.
set -euo pipefail
if [ $# -lt 3 ]; then
  sed -n 2,17p "$0"
  exit 2
fi
dataset=$1 raw=$2 weights=$3 variant=${4:-}
case $variant in
  smoothsa-video | randsfq)
    config=configs/$variant-${dataset//_/-}.yaml
    if [ ! -f "$config" ]; then
      echo "no $variant config for $dataset ($config): see the header of $0 for the shipped pairs" >&2
      exit 2
    fi
    ;;
  "") config=configs/dias-$dataset.yaml ;;
  full) config=configs/dias-full-$dataset.yaml ;;
  smoothsa) config=configs/smoothsa-$dataset.yaml ;;
  *) echo "unknown method $variant: use full, smoothsa, smoothsa-video or randsfq, or leave it out for DIAS as released" >&2; exit 2 ;;
esac
name=$(basename "$config" .yaml)
read -r -a launcher <<< "${DIAS_TRAIN:-dias train}"
read -r -a extra <<< "${DIAS_OVERRIDES:-}"
read -r -a prepare <<< "${DIAS_PREPARE:-}"
case $variant in
  smoothsa-video | randsfq)
    if compgen -G "$raw/*.lmdb" > /dev/null; then
      official=$dataset
      case $dataset in ytvis*) official=ytvis ;; esac  # one official YTVIS layout for every release
      for split in "$raw"/*.lmdb; do
        dias prepare import-official-video --lmdb "$split" --dataset "$official" --out "data/$dataset"
      done
    else
      case $dataset in
        ytvis*) dias prepare ytvis --raw "$raw" --out "data/$dataset" ${prepare[@]+"${prepare[@]}"} ;;
        *) echo "$raw holds no official SPLIT.lmdb files; MOVi is read from the release's LMDBs only" >&2; exit 2 ;;
      esac
    fi
    ;;
  *) dias prepare "$dataset" --raw "$raw" --out "data/$dataset" ;;
esac
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
