"""The video metrics equal the official SmoothSA-video / RandSF.Q evaluation on its own recorded segmentations.

Each fixture holds an official model's eval segmentation (B,T,64,64), a ground truth with object tracks and
the four scores the official `acc_fn_v` metrics gave (tests/fixtures/README.md). DIAS_VIDEO_FIXTURE=PATH runs
this test on another file in that format, full or shrunk, for any official video config and seed; everything
is read from the file.
"""

import os
from pathlib import Path

import pytest
import torch

from dias.metrics import nanmean
from dias.video_metrics import video_score

FIXTURE_DIR = Path(__file__).resolve().parent / "fixtures"
FIXTURE_ENV = "DIAS_VIDEO_FIXTURE"
SHIPPED = ("video_metrics_smoothsav_movi_c_seed0.pt", "video_metrics_randsfq_ytvis_seed0.pt")
FIXTURES = [Path(os.environ[FIXTURE_ENV])] if os.environ.get(FIXTURE_ENV) else [FIXTURE_DIR / n for n in SHIPPED]
OFFICIAL_KEYS = {
    "ari": "eval_metric_ari",
    "fg_ari": "eval_metric_ari_fg",
    "mbo": "eval_metric_mbo",
    "miou": "eval_metric_miou",
}
# The official tables are float64, but its ARI divides int64 counts in float32 and its IoUs are float32.
TOLERANCE = 1e-6


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_video_metrics_equal_the_official_ones(path):
    assert path.is_file(), f"video fixture not found at {path}"  # the shipped ones are in the repository
    fixture = torch.load(path, weights_only=True)
    pred = fixture["eval_segment_argmax"].long()  # (B, T, H, W)
    gt = fixture["eval_metric_gt"].long()
    assert int(pred.max()) < int(fixture["num_slots"])
    scores = video_score(pred, gt)
    where = f"{fixture['repo']} {fixture['config']} seed {int(fixture['seed'])}"
    for name, key in OFFICIAL_KEYS.items():
        ours, official = nanmean(scores[name]), float(fixture[key])
        assert abs(ours - official) <= TOLERANCE, f"{where}: {name} {ours} != official {official}"
