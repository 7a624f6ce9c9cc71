"""report.html is the report's Markdown rendered by markdown-it-py, and it fits the browser window: at 1400 px a
15-column comparison table fits by wrapping; a table wider still scrolls inside its own box, the page never does.

The Chromium checks skip where Debian's ``chromium`` package is not installed; the markup checks always run."""

from __future__ import annotations

from pathlib import Path

import pytest
from matplotlib.figure import Figure

from html_layout import find_chromium, layout_facts
from spatialvit.report import document
from spatialvit.report.document import Report
from spatialvit.report.tables import markdown_table

COLUMNS = [
    "model",
    "source",
    "params",
    "epochs",
    "clean_acc1",
    "ssi_shuffle",
    "ssi_mask",
    "flip_shuffle",
    "flip_mask",
    "attn_dist_px",
    "assoc_mass",
    "assoc_auc",
    "train_time_s",
    "train_img_s",
    "infer_img_s",
]
MODELS = [
    "vit_sdt_micro_patch4",
    "vit_sdt_micro_patch4_rope2d",
    "vit_sdt_micro_patch4_alibi2d",
    "vit_sdt_micro_patch4_decay",
    "vit_sdt_micro_patch4_learned_abs",
    "vit_sdt_micro_patch4_sincos_abs",
    "vit_sdt_micro_patch4_no_pos",
    "vit_tiny_patch16_224",
    "deit_tiny_patch16_224",
]

# report.html's CSS before the fix: no scroll box, the table runs off a 1280-px page.
OLD_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th{background:#f4f4f4}figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;"
    "font-size:0.9em}"
)

needs_chromium = pytest.mark.skipif(
    find_chromium() is None, reason="chromium not installed (Debian package `chromium`); report.html layout unchecked"
)


def _rows() -> list[dict]:
    rows = []
    for i, model in enumerate(MODELS):
        row = {"model": model, "source": "timm" if "224" in model else "trained here", "params": 1_234_567 + i * 1000}
        row["epochs"] = 30
        for j, col in enumerate(COLUMNS[4:]):
            row[col] = f"{0.8 + 0.003 * i + 0.001 * j:.3f} ± 0.012" if j % 3 else 0.5 + 0.01 * i + j
        rows.append(row)
    return rows


def _report(tmp_path: Path) -> Report:
    fig = Figure(figsize=(16, 3), dpi=100)  # 1600 px wide: must shrink to the page
    fig.add_subplot().plot([0, 1, 2], [0.8, 0.82, 0.81])
    fig.savefig(tmp_path / "acc.png")
    return (
        Report("Study: wide comparison")
        .paragraph("Nine models, fifteen columns, mean ± 95 % CI over seeds where a cell has one.")
        .heading("Comparison")
        .table(_rows(), COLUMNS)
        .paragraph("Written to runs/study/" + "very_long_run_directory_name_" * 8 + "/report.html.")
        .image(tmp_path / "acc.png", "clean accuracy per model")
    )


def test_table_markup_scroll_box_header_breaks_numeric_columns(tmp_path):
    page = _report(tmp_path).to_html()
    assert "<div class='table-wrap'><table>" in page and "</table></div>" in page
    assert '<th class="num">clean_<wbr>acc1</th>' in page and "<th>model</th>" in page
    assert '<td class="num">0.804 ±&nbsp;0.012</td>' in page  # mean ± CI: right-aligned, wraps only before the ±
    assert "<td>vit_sdt_micro_patch4</td>" in page  # text stays left-aligned
    assert ".table-wrap{max-width:100%;overflow-x:auto" in page


def test_html_renders_the_markdown_instead_of_showing_it(tmp_path):
    """Bold, code and emphasis become markup; nothing of the Markdown syntax is left as text; raw HTML in a paragraph
    is shown as text, not interpreted."""
    import re

    report = _report(tmp_path).paragraph("SSI: **higher means more sensitive**; see `sweep.csv`, runs/<model>/.")
    page = report.to_html()
    assert "<strong>higher means more sensitive</strong>" in page and "<code>sweep.csv</code>" in page
    assert "runs/&lt;model&gt;/" in page
    assert "<em>clean accuracy per model</em>" in page and '<img src="data:image/png;base64,' in page
    text = re.sub(r"<[^>]+>", "", re.sub(r"<(style|title)>.*?</\\1>", "", page, flags=re.S))
    assert "**" not in text and "`" not in text and "![" not in text and "| --- |" not in text


def test_markdown_is_unchanged(tmp_path):
    rows = _rows()
    md = _report(tmp_path).to_markdown(tmp_path)
    assert markdown_table(rows, 3, COLUMNS) in md
    assert "<wbr>" not in md and "table-wrap" not in md
    assert "![clean accuracy per model](acc.png)" in md


@needs_chromium
@pytest.mark.parametrize("width", [1280, 1400])
def test_report_html_fits_the_window_in_chromium(tmp_path, width):
    """At 1400 px the 15-column table fits by wrapping (nothing scrolls); at 1280 px it fits or scrolls inside its own
    box, never the page."""
    paths = _report(tmp_path).save(tmp_path)
    shot = tmp_path / f"report-{width}.png"
    facts = layout_facts(paths["html"], width, 900, screenshot=shot)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000
    assert facts["innerWidth"] == width
    assert facts["scrollWidth"] <= facts["clientWidth"], facts  # no sideways scrolling of the page
    assert facts["overflowing"] == [], facts  # no element or text past the viewport outside a scroll box
    if width >= 1400:
        assert facts["scrollers"] == [], facts  # the table fits: no box scrolls either
    else:
        assert {s["element"] for s in facts["scrollers"]} <= {"div.table-wrap"}, facts


def _wide() -> Report:
    """Forty numeric columns: too wide for 1400 px however the cells wrap."""
    rows = [{"model": m, **{f"col_{j}": 0.5 + j / 100 for j in range(40)}} for m in MODELS]
    return Report("forty columns").paragraph("A table too wide for any window.").table(rows)


@needs_chromium
def test_a_table_too_wide_to_wrap_scrolls_in_its_box(tmp_path):
    """Forty numeric columns cannot fit 1400 px: the table scrolls inside its box, the page does not."""
    paths = _wide().save(tmp_path)
    facts = layout_facts(paths["html"], 1400, 900)
    assert facts["scrollWidth"] <= facts["clientWidth"] and facts["overflowing"] == [], facts
    assert [s["element"] for s in facts["scrollers"]] == ["div.table-wrap"], facts


@needs_chromium
@pytest.mark.parametrize("css", ["old", "no-scroll-box"])
def test_checker_catches_a_table_running_off_the_page(tmp_path, monkeypatch, css):
    """The check is not vacuous: the too-wide table with the CSS from before the fix, or with the fix but its scroll
    box switched off, runs off the page, and the checker names the table and the text that do."""
    broken = OLD_CSS if css == "old" else document._CSS + ".table-wrap{overflow-x:visible}"
    monkeypatch.setattr(document, "_CSS", broken)
    paths = _wide().save(tmp_path)
    facts = layout_facts(paths["html"], 1280, 900)
    assert facts["scrollWidth"] > facts["clientWidth"], facts
    over = {o["element"].split(".")[0] for o in facts["overflowing"]}
    assert {"table", "thead", "tbody", "tr", "th", "td"} <= over, facts
    assert "text in td" in over, facts  # cells' text past the right edge
    assert facts["scrollers"] == [], facts
