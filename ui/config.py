"""Server settings for a hosted workshop, read from the environment.

- ``WORKBENCH_ALLOWED_MODELS``: comma-separated model names (e.g. ``smollm2-135m,toy:reverse_increment``);
  when set, the sidebar offers only these, and no hub ids or local paths are accepted.
- ``WORKBENCH_MAX_PROMPT_TOKENS``: the longest prompt (in tokens) any page accepts
  (enforced by the engine's tokenizer check).
- ``WORKBENCH_MAX_HEAVY_JOBS``: heavy jobs (patching sweeps, training) running at once; others queue.
- ``WORKBENCH_PRELOAD``: ``0`` stops ``python -m ui.serve`` from loading the sidebar's first model as the
  server starts and then opening every page once with it as a headless visitor, which leaves each page's first
  result in the server-wide cache (it does both by default, so the first visitor of a page waits for neither).
- ``WORKBENCH_KEEP_RESULTS``: ``0`` stops that visit from reading the results an earlier start of the same code
  kept on disk, and from keeping its own (``ui.kept_results``).
"""

from __future__ import annotations

import os


def allowed_models() -> list[str] | None:
    """The fixed model list of a hosted workshop, or None when any model may be loaded."""
    raw = os.environ.get("WORKBENCH_ALLOWED_MODELS", "").strip()
    return [m.strip() for m in raw.split(",") if m.strip()] or None if raw else None
