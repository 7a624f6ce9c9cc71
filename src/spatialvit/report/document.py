"""A report built once and written twice from the same Markdown: ``report.md`` (images linked) and a
self-contained ``report.html``, the same Markdown (images embedded as base64) rendered by markdown-it-py."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .tables import Row, markdown_table


@dataclass
class Report:
    """Headings, paragraphs (Markdown), tables and images in order; ``save(out_dir)`` writes report.md and
    report.html."""

    title: str
    blocks: list[tuple[str, object]] = field(default_factory=list)

    def heading(self, text: str, level: int = 2) -> Report:
        self.blocks.append(("heading", (level, text)))
        return self

    def paragraph(self, text: str) -> Report:
        self.blocks.append(("paragraph", text))
        return self

    def table(self, rows: Sequence[Row], columns: Sequence[str] | None = None, digits: int = 3) -> Report:
        self.blocks.append(("table", (list(rows), list(columns) if columns else None, digits)))
        return self

    def image(self, path: str | Path, caption: str) -> Report:
        self.blocks.append(("image", (Path(path), caption)))
        return self

    def to_markdown(self, base: Path, embed: bool = False) -> str:
        """Markdown with image links relative to ``base`` (the folder the file is written to); with ``embed``, the
        images inline as ``data:`` URIs instead."""
        out = [f"# {self.title}", ""]
        for kind, body in self.blocks:
            if kind == "heading":
                level, text = body
                out += ["#" * level + " " + text, ""]
            elif kind == "paragraph":
                out += [body, ""]
            elif kind == "table":
                rows, cols, digits = body
                out += [markdown_table(rows, digits, cols) if rows else "_(no rows)_", ""]
            else:
                path, caption = body
                src = _data_uri(path) if embed else _relative(path, base)
                out += [f"![{caption}]({src})", f"*{caption}*", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        """One HTML page with inline CSS and every image embedded (it can be mailed or opened anywhere): the report's
        Markdown rendered by markdown-it-py (CommonMark with tables, raw HTML escaped)."""
        body = _markdown().render(self.to_markdown(Path("."), embed=True))
        return (
            f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(self.title)}</title>"
            f"<style>{_CSS}</style></head><body>\n{body}</body></html>\n"
        )

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.md`` and ``report.html`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"md": out / "report.md", "html": out / "report.html"}
        paths["md"].write_text(self.to_markdown(out))
        paths["html"].write_text(self.to_html())
        return paths


def _data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _markdown() -> Any:
    """markdown-it-py's CommonMark parser with tables; tables come inside a ``table-wrap`` box (a table too wide for
    the window scrolls there, not the page), their numeric columns marked ``class="num"`` (right-aligned), headers
    breakable after underscores, and ``mean ± ci`` cells wrap only before the ``±``."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    md.core.ruler.push("numeric_columns", _numeric_columns)
    md.add_render_rule("table_open", lambda self, tokens, idx, options, env: "<div class='table-wrap'><table>\n")
    md.add_render_rule("table_close", lambda self, tokens, idx, options, env: "</table></div>\n")
    default_text = md.renderer.rules["text"]

    def text(self: Any, tokens: list, idx: int, options: Any, env: dict) -> str:
        out = default_text(tokens, idx, options, env)
        if env.get("cell") == "th":
            return out.replace("_", "_<wbr>")
        return out.replace(" ± ", " ±&nbsp;") if env.get("cell") == "td" else out

    def cell(self: Any, tokens: list, idx: int, options: Any, env: dict) -> str:
        env["cell"] = tokens[idx].tag if tokens[idx].nesting == 1 else None
        return self.renderToken(tokens, idx, options, env)

    md.add_render_rule("text", text)
    for name in ("th_open", "th_close", "td_open", "td_close"):
        md.add_render_rule(name, cell)
    return md


def _numeric_columns(state: Any) -> None:
    """Mark the cells of every table column whose filled cells are all numbers (or ``mean ± ci``) ``class="num"``."""
    tokens = state.tokens
    for start, tok in enumerate(tokens):
        if tok.type != "table_open":
            continue
        cells: dict[int, list[tuple[Any, str]]] = {}
        col = 0
        for i in range(start + 1, len(tokens)):
            t = tokens[i]
            if t.type == "table_close":
                break
            if t.type == "tr_open":
                col = 0
            elif t.type in ("th_open", "td_open"):
                cells.setdefault(col, []).append((t, tokens[i + 1].content.strip()))
                col += 1
        for column in cells.values():
            body = [text for t, text in column if t.type == "td_open" and text]
            if body and all(_is_number(text) for text in body):
                for t, _ in column:
                    t.attrSet("class", "num")


_NUMBER = re.compile(r"[-+−]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?\s?%?|[-+]?(nan|inf)", re.IGNORECASE)


def _is_number(text: str) -> bool:
    """A numeric cell: ``0.823``, ``1e-3``, ``12%``, ``0.823 ± 0.012`` or ``0.823 (1 seed)``."""
    text = text.removesuffix("(1 seed)").strip()
    return all(_NUMBER.fullmatch(part.strip()) for part in text.split("±"))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


# The page is at most 1400 px wide (prose at most 60em, for reading) and never wider than the window: tables wrap
# their headers and their `mean ± ci` cells before the ±, and a table still too wide scrolls sideways inside its
# .table-wrap box (its first column stays in view); long words in text wrap, images shrink to fit.
_CSS = (
    "*,*::before,*::after{box-sizing:border-box}"
    "body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222;"
    "overflow-wrap:break-word}"
    "p{max-width:60em}code{background:#f4f4f4;padding:0 2px}"
    ".table-wrap{max-width:100%;overflow-x:auto;margin:1em 0}"
    "table{border-collapse:separate;border-spacing:0;font-size:0.85em}"
    "th,td{border:solid #ccc;border-width:0 1px 1px 0;padding:4px 8px;text-align:left;vertical-align:top}"
    "thead th{border-top-width:1px;background:#f4f4f4;vertical-align:bottom}"
    "tr>:first-child{position:sticky;left:0;z-index:1;border-left-width:1px;background:#fff}"
    "thead tr>:first-child{background:#f4f4f4}"
    ".num{text-align:right;font-variant-numeric:tabular-nums}"
    "img{max-width:100%;height:auto}"
)
