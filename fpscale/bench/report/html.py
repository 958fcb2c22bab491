"""The report's HTML page, from its Markdown."""

from __future__ import annotations

import base64
import html
import re
from collections.abc import Mapping

_IMAGE = re.compile(r"!\[([^\]]*)\]\(([^)\s]*)\)")


def markdown_to_html(md: str, title: str, images: Mapping[str, bytes] | None = None) -> str:
    """A standalone HTML page of the report's Markdown (headings, tables,
    bullets, images and paragraphs). An image whose path is a key of images
    (PNG bytes) is embedded as a data: URI, so the page shows its plots
    wherever it is copied; any other stays a link."""
    images = images or {}
    # The report's Markdown uses headings, tables, bullets and images only:
    # a small converter keeps the HTML page free of extra dependencies.
    out, table = [], []

    def flush():
        if table:
            rows = [r.strip("|").split("|") for r in table if not set(r.replace("|", "").strip()) <= {"-"}]
            out.append("<table>" + "".join(
                "<tr>" + "".join(f"<{'th' if i == 0 else 'td'}>{html.escape(c.strip())}</{'th' if i == 0 else 'td'}>"
                                 for c in r) + "</tr>" for i, r in enumerate(rows)) + "</table>")
            table.clear()

    for line in md.splitlines():
        if line.startswith("|"):
            table.append(line)
            continue
        flush()
        if line.startswith("#"):
            level = len(line) - len(line.lstrip("#"))
            out.append(f"<h{level}>{html.escape(line[level:].strip())}</h{level}>")
        elif line.startswith("![") and _IMAGE.sub("", line).strip() == "":
            for alt, src in _IMAGE.findall(line):
                if src in images:
                    src = "data:image/png;base64," + base64.b64encode(images[src]).decode("ascii")
                out.append(f'<img alt="{html.escape(alt)}" src="{html.escape(src)}" style="max-width:48%">')
        elif line.startswith("- "):
            out.append(f"<li>{html.escape(line[2:])}</li>")
        elif line.strip():
            # a backslash escapes what would read as markup (the report's free text)
            text = line[1:] if line.startswith("\\") else line
            out.append(f"<p>{html.escape(text)}</p>")
    flush()
    style = ("body{font-family:sans-serif;max-width:1200px;margin:2em auto;}"
             "table{border-collapse:collapse;font-size:13px}td,th{border:1px solid #ccc;padding:3px 6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{style}</style></head><body>{''.join(out)}</body></html>\n")
