import csv
import io
import json
import math

import pytest

from dias.cli import main
from dias.commands.report import aggregate, find_metrics, to_csv, to_markdown


def metrics_file(path, ari, fg_ari, mbo, miou, dataset="coco", mask_source="decoder"):
    path.mkdir(parents=True, exist_ok=True)
    report = {
        "metrics": {"ari": ari, "fg_ari": fg_ari, "mbo": mbo, "miou": miou},
        "card": {"dataset": dataset, "split": "val", "mask_source": mask_source},
    }
    (path / "metrics.json").write_text(json.dumps(report))
    return report


def test_aggregate_mean_and_sample_std():
    reports = [
        {"metrics": {"ari": 0.2, "fg_ari": 0.4, "mbo": 0.3, "miou": 0.3}, "card": {"dataset": "coco"}},
        {"metrics": {"ari": 0.4, "fg_ari": 0.4, "mbo": 0.3, "miou": 0.3}, "card": {"dataset": "coco"}},
        {"metrics": {"ari": 0.8, "fg_ari": 0.7, "mbo": 0.6, "miou": 0.5}, "card": {"dataset": "clevrtex"}},
    ]
    coco, clevrtex = aggregate(reports)
    assert (coco.dataset, coco.num_runs, clevrtex.num_runs) == ("coco", 2, 1)
    assert coco.mean["ari"] == pytest.approx(30.0)
    assert coco.std["ari"] == pytest.approx(math.sqrt(2) * 10)  # ddof=1: sqrt(((20-30)^2 + (40-30)^2) / 1)
    assert coco.std["fg_ari"] == pytest.approx(0.0)
    assert math.isnan(clevrtex.std["ari"])
    table = to_markdown([coco, clevrtex])
    assert "| coco | 2 | 30.0 ± 14.1 | 40.0 ± 0.0 | 30.0 ± 0.0 | 30.0 ± 0.0 |" in table
    assert "| clevrtex | 1 | 80.0 | 70.0 | 60.0 | 50.0 |" in table
    rows = list(csv.DictReader(io.StringIO(to_csv([coco, clevrtex]))))
    assert rows[0]["dataset"] == "coco" and float(rows[0]["ari_mean"]) == pytest.approx(30.0)
    assert rows[1]["ari_std"] == "nan"


def test_mask_sources_get_their_own_rows_and_missing_means_show_a_dash():
    reports = [
        {"metrics": {"ari": 0.2, "fg_ari": None, "mbo": 0.3, "miou": 0.3}, "card": {"dataset": "voc"}},
        {"metrics": {"ari": 0.1, "fg_ari": 0.1, "mbo": 0.1, "miou": 0.1},
         "card": {"dataset": "voc", "mask_source": "attn:0"}},
    ]  # fmt: skip
    rows = aggregate(reports)
    assert [row.label for row in rows] == ["voc", "voc (attn:0)"]
    assert "| voc | 1 | 20.0 | – |" in to_markdown(rows)


def test_baselines_get_rows_under_their_model_row():
    baselines = {"grid": {"ari": 0.1, "fg_ari": 0.5, "mbo": 0.2, "miou": 0.2}}
    reports = [
        {"metrics": {"ari": 0.2, "fg_ari": 0.4, "mbo": 0.3, "miou": 0.3}, "baselines": baselines,
         "card": {"dataset": "voc"}},
        {"metrics": {"ari": 0.4, "fg_ari": 0.6, "mbo": 0.3, "miou": 0.3},
         "baselines": {"grid": {**baselines["grid"], "fg_ari": 0.7}}, "card": {"dataset": "voc"}},
    ]  # fmt: skip
    model, grid = aggregate(reports)
    assert (model.baseline, grid.baseline, grid.num_runs) == (None, "grid", 2)
    assert grid.mean["fg_ari"] == pytest.approx(60.0)
    assert "| voc: fixed grid (image-blind) | 2 | 10.0 ± 0.0 | 60.0 ± 14.1 |" in to_markdown([model, grid])
    assert [r["segmentation"] for r in csv.DictReader(io.StringIO(to_csv([model, grid])))] == ["model", "grid"]


def test_find_metrics_in_run_and_eval_folders(tmp_path):
    metrics_file(tmp_path / "a", 0.1, 0.1, 0.1, 0.1)
    metrics_file(tmp_path / "b" / "eval-val", 0.1, 0.1, 0.1, 0.1)
    metrics_file(tmp_path / "b" / "eval-val-attn0", 0.1, 0.1, 0.1, 0.1)
    found = find_metrics([tmp_path / "a", tmp_path / "b", tmp_path / "a" / "metrics.json"])
    assert [p.parent.name for p in found] == ["a", "eval-val", "eval-val-attn0", "a"]
    with pytest.raises(FileNotFoundError, match="dias eval"):
        find_metrics([tmp_path / "missing"])


def test_report_command_writes_markdown_and_csv(tmp_path, capsys):
    for seed, ari in ((42, 0.25), (43, 0.27), (44, 0.24)):
        metrics_file(tmp_path / f"seed{seed}" / "eval-val", ari, 0.41, 0.32, 0.30)
    runs = [str(tmp_path / f"seed{seed}") for seed in (42, 43, 44)]
    assert main(["report", *runs, "--out", str(tmp_path / "out" / "table")]) == 0
    printed = capsys.readouterr().out
    assert "| coco | 3 | 25.3 ± 1.5 |" in printed
    assert (tmp_path / "out" / "table.md").read_text().startswith("| dataset |")
    assert (tmp_path / "out" / "table.csv").read_text().startswith("dataset,split,mask_source,segmentation,num_runs")
    assert main(["report", str(tmp_path / "nowhere")]) == 1


def test_a_run_given_twice_or_by_folder_and_file_is_counted_once(tmp_path, capsys):
    metrics_file(tmp_path / "a", 0.2, 0.4, 0.3, 0.3)
    metrics_file(tmp_path / "b", 0.4, 0.6, 0.3, 0.3)
    a = tmp_path / "a"
    runs = [str(a), str(a / "metrics.json"), f"{a}/", str(tmp_path / "b")]
    assert main(["report", *runs, "--out", str(tmp_path / "summary")]) == 0
    assert "| coco | 2 | 30.0 ± 14.1 |" in capsys.readouterr().out


def video_metrics_file(path, ari, eval_clip_length=2):
    """A `dias eval` metrics.json of a video run: the three conventions' keys and the clip length in the card."""
    path.mkdir(parents=True, exist_ok=True)
    metrics = {"ari": ari, "fg_ari": 0.6, "mbo": 0.4, "miou": 0.3, "videosaur/fg_ari": 0.5, "videosaur/mbo": 0.2}
    metrics |= {"frame/ari": 0.7, "frame/fg_ari": 0.8, "frame/mbo": 0.5, "frame/miou": 0.45}
    report = {
        "metrics": metrics,
        "baselines": {"kmeans": {**metrics, "ari": 0.1}},
        "card": {"dataset": "synthetic_video", "split": "val", "mask_source": "decoder",
                 "eval_clip_length": eval_clip_length, "clip_frames": [eval_clip_length]},
    }  # fmt: skip
    (path / "metrics.json").write_text(json.dumps(report))


def test_report_on_video_runs_labels_the_conventions_and_the_clip_length(tmp_path, capsys):
    video_metrics_file(tmp_path / "seed0" / "eval-val", ari=0.5)
    video_metrics_file(tmp_path / "seed1" / "eval-val", ari=0.3)
    video_metrics_file(tmp_path / "long" / "eval-val", ari=0.2, eval_clip_length=6)
    metrics_file(tmp_path / "image" / "eval-val", 0.2, 0.4, 0.3, 0.3)
    prefix = tmp_path / "summary"
    paths = [str(tmp_path / name) for name in ("seed0", "seed1", "long", "image")]
    assert main(["report", *paths, "--out", str(prefix)]) == 0
    table = (tmp_path / "summary.md").read_text()
    assert "| synthetic_video, 2-frame clips, video | 2 | 40.0 ± 14.1 | 60.0 ± 0.0 | 40.0 ± 0.0 | 30.0 ± 0.0 |" in table
    assert "| synthetic_video, 2-frame clips, VideoSAUR | 2 | – | 50.0 ± 0.0 | 20.0 ± 0.0 | – |" in table
    assert (
        "| synthetic_video, 2-frame clips, per frame | 2 | 70.0 ± 0.0 | 80.0 ± 0.0 | 50.0 ± 0.0 | 45.0 ± 0.0 |" in table
    )
    assert "| synthetic_video, 2-frame clips, video: k-means on the backbone tokens | 2 | 10.0 ± 0.0 |" in table
    assert "| synthetic_video, 6-frame clips, video | 1 | 20.0 |" in table
    assert "| coco | 1 | 20.0 | 40.0 | 30.0 | 30.0 |" in table  # an image run beside them keeps its row
    assert "VideoSAUR: video, background excluded" in table
    rows = list(csv.DictReader(io.StringIO((tmp_path / "summary.csv").read_text())))
    assert [row["convention"] for row in rows[:2]] == ["video", "video"]
    assert rows[0]["clip_length"] == "2-frame clips" and rows[-1]["convention"] == ""


def test_image_only_reports_keep_their_csv_columns(tmp_path):
    metrics_file(tmp_path / "a", 0.2, 0.4, 0.3, 0.3)
    header = to_csv(aggregate([json.loads((tmp_path / "a" / "metrics.json").read_text())])).splitlines()[0]
    assert header.startswith("dataset,split,mask_source,segmentation,num_runs,ari_mean")
