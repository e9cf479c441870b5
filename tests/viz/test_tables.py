import csv
import io
import math

import pytest

from dias.viz.tables import Column, Table, format_exact, format_fraction, format_score, to_csv, to_html, to_markdown


@pytest.fixture()
def scores():
    return Table(
        columns=[Column("segmentation"), Column("ARI", align="right"), Column("note", align="center")],
        rows=[["model", format_fraction(0.2534), "ok"], ["grid", format_fraction(None), "blind"]],
        notes=["Mean over images, ×100."],
    )


def test_markdown_header_alignment_rows_and_notes(scores):
    assert to_markdown(scores).splitlines() == [
        "| segmentation | ARI | note |",
        "|---|---:|:---:|",
        "| model | 25.3 | ok |",
        "| grid | – | blind |",
        "",
        "Mean over images, ×100.",
    ]


def test_html_aligns_and_keeps_the_notes(scores):
    page = to_html(scores)
    assert page.startswith('<table><thead><tr><th>segmentation</th><th style="text-align: right">ARI</th>')
    assert '<td style="text-align: right">25.3</td>' in page and "<td>grid</td>" in page
    assert page.endswith("</table>\n<p>Mean over images, ×100.</p>")


def test_csv_has_the_titles_then_the_cells_and_no_notes(scores):
    assert list(csv.reader(io.StringIO(to_csv(scores)))) == [
        ["segmentation", "ARI", "note"],
        ["model", "25.3", "ok"],
        ["grid", "–", "blind"],
    ]


def test_cells_are_escaped_for_each_format():
    table = Table(columns=[Column("a|b"), Column("<c>")], rows=[["x | y", "<b>&"], ["two\nlines", 'say "hi", ok']])
    markdown = to_markdown(table).splitlines()
    assert markdown[0] == "| a\\|b | <c> |"  # a "|" would start a new cell
    assert markdown[2:] == ["| x \\| y | <b>& |", '| two lines | say "hi", ok |']  # a line break would end the row
    page = to_html(table)
    assert "<th>a|b</th><th>&lt;c&gt;</th>" in page and "<td>&lt;b&gt;&amp;</td>" in page and "<b>" not in page
    assert list(csv.reader(io.StringIO(to_csv(table))))[2] == ["two\nlines", 'say "hi", ok']  # quoted, read back


def test_an_empty_table_is_its_header():
    table = Table(columns=[Column("dataset"), Column("runs", align="right")])
    assert to_markdown(table) == "| dataset | runs |\n|---|---:|"
    head = '<tr><th>dataset</th><th style="text-align: right">runs</th></tr>'
    assert to_html(table) == f"<table><thead>{head}</thead><tbody></tbody></table>"
    assert to_csv(table) == "dataset,runs\n"


def test_a_row_must_fill_the_columns():
    with pytest.raises(ValueError, match="1 cells for 2 columns"):
        Table(columns=[Column("a"), Column("b")], rows=[["only one"]])


def test_the_metric_number_rule():
    assert format_fraction(0.25349) == "25.3" and format_fraction(1.0) == "100.0" and format_fraction(0.0) == "0.0"
    assert format_fraction(0.3, 0.0141) == "30.0 ± 1.4"
    assert format_fraction(None) == format_fraction(math.nan) == format_score(math.nan, 1.0) == "–"
    assert format_score(30.0, math.nan) == format_score(30.0) == "30.0"  # one run has no spread
    assert format_score(25.333, 1.528) == "25.3 ± 1.5"
    assert format_exact(0.123456) == "0.1235" and format_exact(math.nan) == "nan"
