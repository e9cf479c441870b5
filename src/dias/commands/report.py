"""`dias report`: gather metrics.json files of several runs into mean ± std tables (Markdown and CSV).

    rows = aggregate([json.loads(p.read_text()) for p in find_metrics(["runs/seed42", "runs/seed43"])])
    print(to_markdown(rows))

Numbers are ×100 with one decimal, as in the official README. The spread is the sample standard
deviation over runs (ddof=1); a single run has none.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from dias.baselines import BASELINE_TITLES
from dias.commands.evaluate import EVAL_DIR_PREFIX, METRICS_FILE_NAME
from dias.config import CONFIG_FILE_NAME
from dias.errors import DiasError, MissingFileError
from dias.io import atomic_write_bytes
from dias.metrics import METRIC_NAMES, METRIC_TITLES
from dias.schema import DEFAULT_METHOD
from dias.video_metrics import VIDEO_CONVENTION_LABELS, VIDEO_CONVENTION_TITLES, VIDEO_CONVENTIONS, convention_metrics
from dias.viz import tables
from dias.viz.clips import clip_length_text
from dias.viz.tables import Column, Table, format_exact, format_score

EVAL_DIR_GLOB = EVAL_DIR_PREFIX + "*"
METHOD_KEY = "method"  # the eval card's model.method.name; older cards lack it (read from config.yaml beside)
DEFAULT_PREFIX = "summary"

log = logging.getLogger(__name__)


class ReportInputError(DiasError, ValueError):
    """No metrics.json given to `dias report` could be read."""


@dataclass
class SummaryRow:
    dataset: str
    split: str
    mask_source: str
    num_runs: int
    mean: dict[str, float]  # metric -> mean over runs, ×100
    std: dict[str, float]  # metric -> sample std over runs (ddof=1), ×100; NaN for a single run
    baseline: str | None = None  # a dias.baselines name for a baseline's row; None for the model's
    clip_length: str | None = None  # video: the scored clips' length ("2-frame clips"); None for images
    convention: str | None = None  # video: a dias.video_metrics convention; None for images
    method: str | None = None  # model.method.name, where the reports hold several methods; None otherwise

    @property
    def label(self) -> str:
        name = self.dataset if self.mask_source == "decoder" else f"{self.dataset} ({self.mask_source})"
        name = name if self.method is None else f"{self.method}, {name}"
        name = name if self.clip_length is None else f"{name}, {self.clip_length}"
        name = name if self.split in ("val", "") else f"{name} [{self.split}]"
        name = name if self.convention is None else f"{name}, {VIDEO_CONVENTION_LABELS[self.convention]}"
        return name if self.baseline is None else f"{name}: {BASELINE_TITLES.get(self.baseline, self.baseline)}"


def find_metrics(paths: Iterable[str | Path]) -> list[Path]:
    """The metrics.json of each path: the file itself, DIR/metrics.json, or every DIR/eval-*/metrics.json."""
    found = []
    for path in map(Path, paths):
        if path.is_file():
            found.append(path)
        elif (path / METRICS_FILE_NAME).is_file():
            found.append(path / METRICS_FILE_NAME)
        else:
            matches = sorted(path.glob(f"{EVAL_DIR_GLOB}/{METRICS_FILE_NAME}"))
            if not matches:
                raise MissingFileError(
                    f"no {METRICS_FILE_NAME} in {path} or {path}/{EVAL_DIR_GLOB}/; "
                    f"score a run first with `dias eval --checkpoint {path}/last.pt`"
                )
            found.extend(matches)
    return found


def aggregate(reports: list[dict[str, Any]]) -> list[SummaryRow]:
    """Group metrics.json contents by (dataset, split, mask source); mean and sample std over runs, ×100.

    Rows keep the order in which their group first appears; each group's baselines (when the reports
    have them) follow its model row. A video report (`dias eval` on clips) is also grouped by its clip
    length, and gives one block of rows per score convention (video, VideoSAUR, per frame).
    """
    groups: dict[tuple[str | None, str, str, str, str | None, str | None, str | None], list[dict[str, float]]] = {}
    methods = {report.get("card", {}).get(METHOD_KEY) for report in reports}
    for report in reports:
        card = report.get("card", {})
        method = card.get(METHOD_KEY) if len(methods) > 1 else None  # the runs of two methods are never averaged
        key = (
            method,
            str(card.get("dataset", "?")),
            str(card.get("split", "")),
            str(card.get("mask_source", "decoder")),
        )
        sources = [(None, report["metrics"]), *report.get("baselines", {}).items()]
        if not is_video_report(report):
            for baseline, metrics in sources:
                groups.setdefault((*key, None, None, baseline), []).append(metrics)
            continue
        for convention in VIDEO_CONVENTIONS:
            for baseline, metrics in sources:
                video_key = (*key, clip_length_text(card), convention, baseline)
                groups.setdefault(video_key, []).append(convention_metrics(metrics, convention))
    rows = []
    for (method, dataset, split, mask_source, clip_length, convention, baseline), runs in groups.items():
        values = {name: 100 * np.array([_number(run.get(name)) for run in runs]) for name in METRIC_NAMES}
        rows.append(
            SummaryRow(
                dataset=dataset,
                split=split,
                mask_source=mask_source,
                num_runs=len(runs),
                mean={name: float(v.mean()) for name, v in values.items()},
                std={name: float(v.std(ddof=1)) if len(v) > 1 else math.nan for name, v in values.items()},
                baseline=baseline,
                clip_length=clip_length,
                convention=convention,
                method=None if method is None else str(method),
            )
        )
    return rows


def is_video_report(report: dict[str, Any]) -> bool:
    """Whether a metrics.json scored clips (its eval card holds their length)."""
    return "eval_clip_length" in report.get("card", {})


def _number(value: Any) -> float:
    return math.nan if value is None else float(value)  # metrics.json writes a missing mean as null


def to_markdown(rows: list[SummaryRow]) -> str:
    columns = [Column("dataset"), Column("runs", align="right"), *_metric_columns(METRIC_TITLES, METRIC_NAMES)]
    notes = ["Mean ± sample standard deviation (ddof=1) over runs, ×100."]
    if any(row.baseline is not None for row in rows):
        notes.append("Baselines are scored on the same images, token grid, upsampling and metrics as the model.")
    if any(row.convention is not None for row in rows):
        notes += [f"{VIDEO_CONVENTION_LABELS[c]}: {VIDEO_CONVENTION_TITLES[c]}." for c in VIDEO_CONVENTIONS]
    cells = [
        [row.label, str(row.num_runs), *(format_score(row.mean[name], row.std[name]) for name in METRIC_NAMES)]
        for row in rows
    ]
    return tables.to_markdown(Table(columns=columns, rows=cells, notes=notes)) + "\n"


def to_csv(rows: list[SummaryRow]) -> str:
    stats = [f"{name}_{stat}" for name in METRIC_NAMES for stat in ("mean", "std")]
    video = any(row.convention is not None for row in rows)  # image-only reports keep their columns
    methods = any(row.method is not None for row in rows)  # reports of one method keep their columns
    keys = ("dataset", "split", "mask_source", *(("clip_length", "convention") if video else ()), "segmentation")
    columns = [Column(title) for title in (*(("method",) if methods else ()), *keys, "num_runs", *stats)]
    cells = [
        ([row.method or ""] if methods else [])
        + [row.dataset, row.split, row.mask_source]
        + ([row.clip_length or "", row.convention or ""] if video else [])
        + [row.baseline or "model", str(row.num_runs)]
        + [format_exact(value) for name in METRIC_NAMES for value in (row.mean[name], row.std[name])]
        for row in rows
    ]
    return tables.to_csv(Table(columns=columns, rows=cells))


def _metric_columns(titles: dict[str, str], names: Iterable[str]) -> list[Column]:
    return [Column(titles[name], align="right") for name in names]


PROBE_METRICS = ("top1", "top3", "box_iou")
PROBE_TITLES = {"top1": "top-1", "top3": "top-3", "box_iou": "box IoU"}


def is_probe_report(report: dict[str, Any]) -> bool:
    """Whether a metrics.json was written by `dias probe` (its card names the probed attribute)."""
    return "attribute" in report.get("card", {})


def probe_markdown(reports: list[dict[str, Any]]) -> str:
    """Mean ± std over probe runs, per (dataset, attribute, matching mode) and source, ×100; matches summed."""
    groups: dict[tuple[str, str, str, str], list[dict[str, float]]] = {}
    for report in reports:
        card = report["card"]
        for source, metrics in report["metrics"].items():
            key = (card["dataset"], card["attribute"], card["matching"], source)
            groups.setdefault(key, []).append(metrics)
    columns = [
        Column("probe"), Column("runs", align="right"), *_metric_columns(PROBE_TITLES, PROBE_METRICS),
        Column("matches per run", align="right"),
    ]  # fmt: skip
    cells = []
    for (dataset, attribute, matching, source), runs in groups.items():
        figures = []
        for name in PROBE_METRICS:
            values = 100 * np.array([_number(run.get(name)) for run in runs])
            figures.append(format_score(float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else None))
        matches = np.mean([run.get("num_matches", 0) for run in runs])
        label = f"{dataset} {attribute}, {source} ({matching.split(':')[0]})"
        cells.append([label, str(len(runs)), *figures, f"{matches:.0f}"])
    notes = ["Recognition probes: mean ± sample standard deviation over runs, ×100."]
    return tables.to_markdown(Table(columns=columns, rows=cells, notes=notes)) + "\n"


def run_report(paths: list[str | Path], out_prefix: str | Path = DEFAULT_PREFIX) -> tuple[str, Path, Path]:
    """Aggregate the runs in `paths`; write PREFIX.md and PREFIX.csv. Returns (markdown, md path, csv path).

    Probe runs (`dias probe`'s metrics.json) get their own table in PREFIX.md, after the discovery one.
    """
    reports, damaged = [], []
    for path in _unique(find_metrics(paths)):
        report, problem = read_report(path)
        if problem is None:
            report.setdefault("card", {}).setdefault(METHOD_KEY, _method_beside(path))
            reports.append(report)
        else:
            log.warning("left out of the report: %s (%s)", path, problem)
            damaged.append(f"{path} ({problem})")
    if not reports:
        raise ReportInputError(
            f"no readable {METRICS_FILE_NAME} to report: {'; '.join(damaged)}; score the runs again with `dias eval`"
        )
    probes = [report for report in reports if is_probe_report(report)]
    rows = aggregate([report for report in reports if not is_probe_report(report)])
    markdown = "\n".join(
        part for part in (to_markdown(rows) if rows else "", probe_markdown(probes) if probes else "") if part
    )
    if damaged:
        markdown += "\nLeft out, unreadable: " + "; ".join(damaged) + ".\n"
    prefix = Path(out_prefix)
    md_path, csv_path = prefix.with_name(prefix.name + ".md"), prefix.with_name(prefix.name + ".csv")
    atomic_write_bytes(md_path, markdown.encode("utf-8"))
    atomic_write_bytes(csv_path, to_csv(rows).encode("utf-8"))
    return markdown, md_path, csv_path


def read_report(path: Path) -> tuple[dict[str, Any], str | None]:
    """A metrics.json of `dias eval` or `dias probe`, and None; or {} and why it cannot be reported."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        return {}, f"not JSON: {' '.join(str(exc).split())}"
    if not isinstance(report, dict) or not isinstance(report.get("metrics"), dict):
        return {}, "no metrics mapping"
    if not isinstance(report.get("card", {}), dict) or not isinstance(report.get("baselines", {}), dict):
        return {}, "its card or baselines are not mappings"
    if is_probe_report(report):
        scores = list(report["metrics"].values())
        needed = ("dataset", "attribute", "matching")
        if not all(isinstance(report["card"].get(key), str) for key in needed):
            return {}, f"its probe card lacks one of {', '.join(needed)}"
    else:
        scores = [report["metrics"], *report.get("baselines", {}).values()]
    for metrics in scores:
        if not isinstance(metrics, dict) or not all(_is_score(value) for value in metrics.values()):
            return {}, "a score that is not a number"
    return report, None


def _method_beside(path: Path) -> str | None:
    """model.method.name of the config.yaml that `dias eval` wrote beside a metrics.json; None without one."""
    try:
        config = yaml.safe_load((path.parent / CONFIG_FILE_NAME).read_text(encoding="utf-8"))
        method = config["model"].get("method", DEFAULT_METHOD)
        return str(method if isinstance(method, str) else method.get("name", DEFAULT_METHOD))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, KeyError, TypeError, AttributeError):
        return None


def _is_score(value: Any) -> bool:
    """A number, or null (a mean over no images)."""
    return value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))


def _unique(paths: list[Path]) -> list[Path]:
    """The paths with repeats (the same file given twice) left out, in order."""
    seen, unique = set(), []
    for path in paths:
        if path.resolve() not in seen:
            seen.add(path.resolve())
            unique.append(path)
    return unique
