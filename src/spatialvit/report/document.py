"""A report built once and written twice: ``report.md`` (images linked) and a self-contained ``report.html``
(images embedded as base64), from the same list of blocks."""

from __future__ import annotations

import base64
import html
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
                cols = cols or columns_of(rows)
                head = "".join(f"<th>{esc(c)}</th>" for c in cols)
                cells = "".join(
                    "<tr>" + "".join(f"<td>{esc(format_value(r.get(c), digits))}</td>" for c in cols) + "</tr>"
                    for r in rows
                )
                parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>")
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


def _relative(path: Path, base: Path) -> str:
    try:
        return str(path.resolve().relative_to(base.resolve()))
    except ValueError:
        return str(path)


_CSS = (
    "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}th,td{border:1px solid #ccc;padding:4px 8px;"
    "text-align:right}th{background:#f4f4f4}figure{margin:1em 0}img{max-width:100%}figcaption{color:#555;"
    "font-size:0.9em}"
)
