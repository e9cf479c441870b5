"""Does a fresh training follow the reference runs? Its logged loss and validation metrics, step by step.

    check = compare_to_reference(read_metrics(run_dir), reference.logs)
    check.follows   # True, False, or None when the run is too short to compare
    check.verdict   # one line for the user

Quantities and where they are compared:
- the training loss, as means over blocks of BLOCK_WINDOWS logged windows (steps (b*S, (b+1)*S]), in
  every block the fresh run finished;
- val/fg_ari and val/mbo at every validation step the fresh run and all reference runs logged.

The tolerance comes from the reference runs' spread: at each point, with r_1..r_n the runs' values,
the reference is their mean R and the tolerance SPREAD_FACTOR * (max r - min r), at least the
quantity's floor (MIN_TOLERANCE, relative to R for the loss). Three seeds give a rough range, so the
factor is generous. A run does not follow when two consecutive points of one quantity (two loss
blocks in a row, or two validations in a row) fall outside R ± tolerance; one alone may be chance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dias.viz.tables import Column, Table, format_exact, to_markdown

LOSS_KEY = "loss"
VAL_KEYS = ("val/fg_ari", "val/mbo")
TITLES = {LOSS_KEY: "loss", "val/fg_ari": "val FG-ARI", "val/mbo": "val mBO"}
BLOCK_WINDOWS = 5
SPREAD_FACTOR = 2.0
# loss: a fraction of the reference value; metrics: absolute
MIN_TOLERANCE = {LOSS_KEY: 0.03, "val/fg_ari": 0.02, "val/mbo": 0.02}
RELATIVE_FLOOR = frozenset({LOSS_KEY})
FAILING_POINTS = 2  # consecutive points of one quantity outside the band that make a run "not follow"


@dataclass
class Point:
    key: str  # LOSS_KEY or one of VAL_KEYS
    step: int  # the last step of a loss block, or the validation step
    value: float  # the fresh run's
    reference: float  # the mean over the reference runs
    tolerance: float
    reference_values: list[float]

    @property
    def inside(self) -> bool:
        return abs(self.value - self.reference) <= self.tolerance

    def describe(self) -> str:
        reference = f"reference {format_exact(self.reference)} ± {format_exact(self.tolerance)}"
        return f"step {self.step}, {TITLES[self.key]} {format_exact(self.value)}, {reference}"


@dataclass
class FollowCheck:
    points: list[Point] = field(default_factory=list)
    failure: Point | None = None  # the first point that makes the run not follow
    last_step: int = 0  # the fresh run's last logged step
    first_comparable_step: int = 0  # the first step at which a comparison can be made
    diverged: str | None = None  # why the fresh training stopped on a NaN or infinite loss, if it did

    @property
    def follows(self) -> bool | None:
        if self.failure is not None or self.diverged is not None:
            return False
        return True if self.points else None

    @property
    def verdict(self) -> str:
        if self.diverged is not None:
            return f"it does not: the training diverged ({self.diverged})"
        if self.failure is not None:
            return f"it does not: {self.failure.describe()}"
        if not self.points:
            return (
                f"too few steps to compare: the run logged {self.last_step}, the first comparison is at step "
                f"{self.first_comparable_step}; give it more time (--minutes)"
            )
        num_loss = sum(p.key == LOSS_KEY for p in self.points)
        num_val = len(self.points) - num_loss
        return (
            f"your training follows the reference run: {num_loss} loss blocks and {num_val} validation scores "
            f"up to step {max(p.step for p in self.points)}, all within the reference seeds' spread"
        )

    def table(self) -> str:
        """A Markdown table: one row per point."""
        columns = [
            Column("step", align="right"), Column("quantity"), Column("your run", align="right"),
            Column("reference (mean ± tolerance)", align="right"), Column("reference runs"), Column("within"),
        ]  # fmt: skip
        rows = [
            [
                str(p.step),
                TITLES[p.key],
                format_exact(p.value),
                f"{format_exact(p.reference)} ± {format_exact(p.tolerance)}",
                " / ".join(format_exact(v) for v in p.reference_values),
                "yes" if p.inside else "**no**",
            ]
            for p in self.points
        ]
        return to_markdown(Table(columns=columns, rows=rows))

    def to_json(self) -> dict[str, Any]:
        return {
            "follows": self.follows,
            "verdict": self.verdict,
            "points": [{**vars(p), "inside": p.inside} for p in self.points],
        }


def compare_to_reference(records: list[dict[str, Any]], reference_logs: dict[int, list[dict[str, Any]]]) -> FollowCheck:
    """Compare a fresh run's metrics.jsonl records with the reference runs' (seed -> records)."""
    if not reference_logs:
        raise ValueError("compare_to_reference needs at least one reference log")
    logs = list(reference_logs.values())
    check = FollowCheck(last_step=max((r["step"] for r in records), default=0))
    loss_points, block_size = _loss_points(records, logs)
    check.first_comparable_step = block_size
    val_points = _val_points(records, logs)
    check.points = sorted(loss_points + val_points, key=lambda p: (p.step, p.key != LOSS_KEY))
    outside_in_a_row = dict.fromkeys((LOSS_KEY, *VAL_KEYS), 0)
    for point in check.points:
        outside_in_a_row[point.key] = 0 if point.inside else outside_in_a_row[point.key] + 1
        if outside_in_a_row[point.key] == FAILING_POINTS:
            check.failure = point
            break
    return check


def _loss_points(records: list[dict[str, Any]], logs: list[list[dict[str, Any]]]) -> tuple[list[Point], int]:
    """Loss block means where the fresh run and every reference run logged all of the block's windows."""
    window = min((r["step"] for r in logs[0] if LOSS_KEY in r), default=1)  # log.every: the first window's end
    fresh = _block_means(records, window)
    references = [_block_means(log, window) for log in logs]
    points = []
    for block, value in sorted(fresh.items()):
        values = [ref[block] for ref in references if block in ref]
        if len(values) == len(references):
            points.append(_point(LOSS_KEY, (block + 1) * BLOCK_WINDOWS * window, value, values))
    return points, BLOCK_WINDOWS * window


def _block_means(records: list[dict[str, Any]], window: int) -> dict[int, float]:
    """{block index: mean loss} over the blocks whose every window was logged (a last, shorter window is not).

    A resumed run logs again the steps after its last checkpoint; the later record of a step counts.
    """
    by_step = {r["step"]: r[LOSS_KEY] for r in records if LOSS_KEY in r and r["step"] % window == 0}
    losses: dict[int, list[float]] = {}
    for step, loss in by_step.items():
        losses.setdefault((step - 1) // (BLOCK_WINDOWS * window), []).append(loss)
    return {block: sum(v) / len(v) for block, v in losses.items() if len(v) == BLOCK_WINDOWS}


def _val_points(records: list[dict[str, Any]], logs: list[list[dict[str, Any]]]) -> list[Point]:
    points = []
    for key in VAL_KEYS:
        fresh = {r["step"]: r[key] for r in records if r.get(key) is not None}
        references = [{r["step"]: r[key] for r in log if r.get(key) is not None} for log in logs]
        for step, value in sorted(fresh.items()):
            if all(step in ref for ref in references):
                points.append(_point(key, step, value, [ref[step] for ref in references]))
    return points


def _point(key: str, step: int, value: float, reference_values: list[float]) -> Point:
    center = sum(reference_values) / len(reference_values)
    spread = max(reference_values) - min(reference_values)
    floor = MIN_TOLERANCE[key] * (abs(center) if key in RELATIVE_FLOOR else 1.0)
    tolerance = max(SPREAD_FACTOR * spread, floor)
    return Point(key, step, value, center, tolerance, reference_values)
