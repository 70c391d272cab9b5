"""A one-file HTML report of what a page shows: every chart (as inline SVG, rendered offline
by vl-convert) with its caption and the first rows of its data."""

from __future__ import annotations

import datetime as dt
import html

import pandas as pd

MAX_ROWS = 40


def _svg(chart: object) -> str:
    """``chart``: an Altair chart or a self-contained Vega-Lite spec (a dict with its data)."""
    try:
        import vl_convert

        return vl_convert.vegalite_to_svg(chart if isinstance(chart, dict) else chart.to_dict())  # type: ignore[attr-defined]
    except Exception as error:  # a chart that cannot render must not break the report
        return f"<p><em>(figure could not be rendered: {html.escape(str(error)[:200])})</em></p>"


def build_html_report(title: str, context: dict[str, str], items: list[dict]) -> str:
    """HTML text with ``context`` (model, prompt, ...) and each item's figure and data."""
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em}"
        "table{border-collapse:collapse;font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}"
        "figure{margin:1.5em 0}figcaption{color:#555}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        "<ul>" + "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(v))}</li>" for k, v in context.items()) + "</ul>",
        f"<p>Generated {dt.datetime.now().isoformat(timespec='seconds')} by the interpretability workbench; "
        "every number was computed from the loaded model.</p>",
    ]
    for item in items:
        data: pd.DataFrame = item["data"]
        parts.append(f"<h2>{html.escape(item['name'])}</h2><figure>{_svg(item['chart'])}")
        if item.get("caption"):
            parts.append(f"<figcaption>{html.escape(item['caption'])}</figcaption>")
        parts.append("</figure>")
        shown = data.head(MAX_ROWS)
        parts.append(shown.to_html(index=False, float_format=lambda x: f"{x:.4g}"))
        if len(data) > MAX_ROWS:
            parts.append(f"<p>({len(data) - MAX_ROWS} more rows in the page's CSV/JSON download)</p>")
    parts.append("</body></html>")
    return "\n".join(parts)
