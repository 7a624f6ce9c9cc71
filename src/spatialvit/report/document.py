"""A report built once and written twice: ``report.md`` (images linked) and a self-contained ``report.html``
(images embedded as base64), from the same list of blocks."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .tables import Row, columns_of, format_value, markdown_table


@dataclass
class Report:
    """Headings, paragraphs, tables and images in order; ``save(out_dir)`` writes report.md and report.html."""

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

    def to_markdown(self, base: Path) -> str:
        """Markdown with image links relative to ``base`` (the folder the file is written to)."""
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
                out += [f"![{caption}]({_relative(path, base)})", f"*{caption}*", ""]
        return "\n".join(out)

    def to_html(self) -> str:
        """One HTML page with inline CSS and every image embedded: it can be mailed or opened anywhere."""
        esc = html.escape
        parts = [
            "<!doctype html><html><head><meta charset='utf-8'>",
            f"<title>{esc(self.title)}</title><style>{_CSS}</style></head><body>",
            f"<h1>{esc(self.title)}</h1>",
        ]
        for kind, body in self.blocks:
            if kind == "heading":
                level, text = body
                parts.append(f"<h{level}>{esc(text)}</h{level}>")
            elif kind == "paragraph":
                parts.append(f"<p>{esc(body)}</p>")
            elif kind == "table":
                rows, cols, digits = body
                parts.append(_html_table(rows, cols or columns_of(rows), digits))
            else:
                path, caption = body
                data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
                parts.append(
                    f"<figure><img src='data:image/png;base64,{data}' alt='{esc(caption)}'>"
                    f"<figcaption>{esc(caption)}</figcaption></figure>"
                )
        parts.append("</body></html>")
        return "\n".join(parts)

    def save(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.md`` and ``report.html`` into ``out_dir``."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        paths = {"md": out / "report.md", "html": out / "report.html"}
        paths["md"].write_text(self.to_markdown(out))
        paths["html"].write_text(self.to_html())
        return paths


def _html_table(rows: Sequence[Row], cols: Sequence[str], digits: int) -> str:
    """A table inside a ``table-wrap`` box that scrolls sideways, so a wide table never widens the page. Headers may
    break after underscores (``clean_<wbr>acc1``); columns whose every filled cell is a number (or ``mean ± ci``)
    get ``class='num'``: right-aligned, never wrapped."""
    esc = html.escape
    texts = {c: [format_value(r.get(c), digits) for r in rows] for c in cols}
    num = {c: any(texts[c]) and all(_is_number(r.get(c), t) for r, t in zip(rows, texts[c]) if t) for c in cols}
    attr = {c: " class='num'" if num[c] else "" for c in cols}
    head = "".join(f"<th{attr[c]}>{esc(c).replace('_', '_<wbr>')}</th>" for c in cols)
    body = "".join(
        "<tr>" + "".join(f"<td{attr[c]}>{esc(texts[c][i])}</td>" for c in cols) + "</tr>" for i in range(len(rows))
    )
    return f"<div class='table-wrap'><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>"


_NUMBER = re.compile(r"[-+]?(\d[\d,]*\.?\d*|\.\d+)(e[-+]?\d+)?%?|[-+]?(nan|inf)", re.IGNORECASE)


def _is_number(value: object, text: str) -> bool:
    """A numeric cell: an int or float, or text such as ``0.823``, ``1e-3``, ``12%`` or ``0.823 ± 0.012``."""
    if isinstance(value, bool):
        return False
    if isinstance(value, int | float):
        return True
    return all(_NUMBER.fullmatch(part.strip()) for part in text.split("±"))


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


# The page is at most 1100 px wide and never wider than the window: a wide table scrolls sideways inside its
# .table-wrap box (its first column stays in view), long words in text wrap, images shrink to fit.
_CSS = (
    "*,*::before,*::after{box-sizing:border-box}"
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222;"
    "overflow-wrap:break-word}"
    ".table-wrap{max-width:100%;overflow-x:auto;margin:1em 0}"
    "table{border-collapse:separate;border-spacing:0;font-size:0.9em}"
    "th,td{border:solid #ccc;border-width:0 1px 1px 0;padding:4px 8px;text-align:left;vertical-align:top}"
    "thead th{border-top-width:1px;background:#f4f4f4;vertical-align:bottom}"
    "tr>:first-child{position:sticky;left:0;z-index:1;border-left-width:1px;background:#fff}"
    "thead tr>:first-child{background:#f4f4f4}"
    ".num{text-align:right;font-variant-numeric:tabular-nums}td.num{white-space:nowrap}"
    "figure{margin:1em 0}img{max-width:100%;height:auto}figcaption{color:#555;font-size:0.9em}"
)
