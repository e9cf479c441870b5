"""Tables of figures: one model, written as Markdown, HTML or CSV, and the one rule for showing a metric.

    table = Table(
        columns=(Column("segmentation"), Column("ARI", align="right")),
        rows=[("model", format_fraction(0.253)), ("fixed grid", format_fraction(None))],
        notes=("Mean over the val images, ×100.",),
    )
    to_markdown(table)   # "| segmentation | ARI |\\n|---|---:|\\n| model | 25.3 |\\n| fixed grid | – |\\n\\nMean ..."

Cells are text; the format_* functions below turn figures into it, so every table shows a metric alike:
fractions (ARI, mBO, accuracies) ×100 with one decimal, a spread as "mean ± std", a missing figure as "–".
"""

from __future__ import annotations

import csv
import html
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

Align = Literal["left", "right", "center"]
MISSING = "–"  # a figure no image had (a mean over nothing, an empty metrics.json entry)
DECIMALS = 1  # shown figures: ×100 with one decimal, as in the official README's tables
EXACT_DECIMALS = 4  # figures written to be read back (CSV) or compared closely (the demo's check)
MARKDOWN_RULES = {"left": "---", "right": "---:", "center": ":---:"}


@dataclass(frozen=True)
class Column:
    title: str
    align: Align = "left"


@dataclass(frozen=True)
class Table:
    columns: Sequence[Column]
    rows: Sequence[Sequence[str]] = ()  # one text cell per column
    notes: Sequence[str] = ()  # lines under the table (not written to CSV)

    def __post_init__(self) -> None:
        for row in self.rows:
            if len(row) != len(self.columns):
                raise ValueError(f"a table row has {len(row)} cells for {len(self.columns)} columns: {list(row)}")

    @property
    def header(self) -> list[str]:
        return [column.title for column in self.columns]


def format_score(value: float | None, spread: float | None = None) -> str:
    """A figure already on its shown scale: one decimal, "mean ± spread" when the spread is a number."""
    if value is None or math.isnan(value):
        return MISSING
    if spread is None or math.isnan(spread):
        return f"{value:.{DECIMALS}f}"
    return f"{value:.{DECIMALS}f} ± {spread:.{DECIMALS}f}"


def format_fraction(value: float | None, spread: float | None = None) -> str:
    """A fraction in [0, 1] (a metric as computed), shown ×100 by `format_score`."""
    return format_score(None if value is None else 100 * value, None if spread is None else 100 * spread)


def format_exact(value: float) -> str:
    """A figure to EXACT_DECIMALS places, as it is ("nan" stays "nan"): for files read back and close checks."""
    return f"{value:.{EXACT_DECIMALS}f}"


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table (no final newline); "|" in a cell is escaped, a line break becomes a space."""
    lines = [
        _markdown_row(table.header),
        "|" + "|".join(MARKDOWN_RULES[column.align] for column in table.columns) + "|",
        *(_markdown_row(row) for row in table.rows),
    ]
    if table.notes:
        lines += ["", *table.notes]
    return "\n".join(lines)


def _markdown_row(cells: Sequence[str]) -> str:
    text = [" ".join(str(cell).replace("|", "\\|").split()) for cell in cells]
    return "| " + " | ".join(text) + " |"


def to_html(table: Table) -> str:
    """An HTML <table> (and a <p> per note after it); cells are escaped, alignment is an inline style."""
    styles = ["" if column.align == "left" else f' style="text-align: {column.align}"' for column in table.columns]
    head = _html_row("th", table.header, styles)
    body = "".join(_html_row("td", row, styles) for row in table.rows)
    notes = "".join(f"\n<p>{html.escape(note)}</p>" for note in table.notes)
    return f"<table><thead>{head}</thead><tbody>{body}</tbody></table>{notes}"


def _html_row(tag: str, cells: Sequence[str], styles: list[str]) -> str:
    return (
        "<tr>"
        + "".join(f"<{tag}{style}>{html.escape(str(cell))}</{tag}>" for style, cell in zip(styles, cells, strict=True))
        + "</tr>"
    )


def to_csv(table: Table) -> str:
    """CSV with the column titles as its header row and "\\n" line ends; the notes are left out."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.header)
    writer.writerows(table.rows)
    return buffer.getvalue()
