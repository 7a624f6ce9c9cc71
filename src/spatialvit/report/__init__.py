"""Reports: tables (CSV/JSON/Markdown) and plots (PNG)."""

from .tables import markdown_table, save_table

__all__ = ["markdown_table", "save_table"]
