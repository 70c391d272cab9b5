"""Start the app: ``python -m ui.serve [streamlit options]`` (what ``./workbench start`` runs).

A folder named ``pages/`` beside ``app.py`` makes Streamlit run a server's very first
session in its legacy multipage mode until some session has called ``st.navigation``: a
shared link to a page, opened first on a fresh server, would run that page without
``app.py`` (no sidebar, file names as the menu). Clearing the flag before the server starts
makes every session go through ``app.py``.

It also makes torch's OpenMP threads sleep instead of spinning while they wait for work
(``OMP_WAIT_POLICY=PASSIVE``, unless set already). A server runs torch between bursts of Python
(Streamlit, pandas, other sessions) on the same cores; spinning threads then fight those for the
CPU, and on a busy 2-core machine one forward of the default model on 20 tokens cost 3-4 s of CPU
spinning against 0.3-0.5 s passive (``benchmarks/profile_pages.py``). It must be set before torch
loads its OpenMP runtime, hence here, before anything imports torch.

Modules that a page imports only when it first runs, and that take long to import, are imported
in a background thread as the server starts (:data:`WARM_IMPORTS`): scikit-learn's model selection
took about 1 s of the Probing page's first render on a fresh server (2-core machine).

The model the sidebar opens with is loaded in another background thread (:func:`preload_model`) into
the same server-wide cache that every session reads (``ui.state.get_model``), so whoever opens the
app first does not wait for it (5-10 s for the default model on a 2-core machine); a visitor arriving
while it loads waits for that same load instead of starting a second. That thread then opens every page once,
as a headless visitor (:mod:`ui.first_visit`), so each page's first result is in the server-wide result cache
before anyone opens it (about 20 s of CPU for the default model on a 2-core machine, Steering's two generations
the most; Probing's POS hidden states are extracted into their disk cache on a machine's first start, about 7 s).
The visit's results are kept on disk for the next start of the same code on the same model (:mod:`ui.kept_results`),
which reads them back instead of computing them: the visit then takes a few seconds.
``WORKBENCH_PRELOAD=0`` turns all of this off.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before any import that may load torch

from streamlit.runtime.pages_manager import PagesManager  # noqa: E402
from streamlit.web import cli  # noqa: E402

if TYPE_CHECKING:
    from interp_core import LoadedModel

# imported lazily by interp_core.techniques.probing (folds, scikit-learn probes); about 1 s on a 2-core machine
WARM_IMPORTS = ("sklearn.model_selection", "sklearn.linear_model", "sklearn.neural_network", "sklearn.pipeline",
                "sklearn.preprocessing")
APP = Path(__file__).resolve().parent.parent / "app.py"


def warm_imports() -> None:
    """Import :data:`WARM_IMPORTS` now, so no page pays for them on its first run (a failure is left for the page to report)."""
    for name in WARM_IMPORTS:
        try:
            importlib.import_module(name)
        except ImportError:
            return


def preload_model() -> LoadedModel | None:
    """Load the sidebar's first model into the server's model cache and return it; None when it is not loaded (a failure is left
    for the page to show: the cache keeps no failures). The default model is left alone until converted
    (``./workbench start`` does that first; otherwise the first page shows the conversion's progress)."""
    from interp_core import DEFAULT_MODEL
    from interp_core.core.loading import default_model_ready
    from ui import state
    from ui.config import allowed_models

    spec = (allowed_models() or [DEFAULT_MODEL])[0]
    if spec == DEFAULT_MODEL and not default_model_ready():
        return None
    try:
        return state.get_model(spec)
    except Exception:  # noqa: BLE001 - the sidebar loads it again and reports what went wrong
        return None


def visit_pages(model: LoadedModel) -> None:
    """Every page's first run on the preloaded ``model``, in menu order (:func:`ui.first_visit.visit_every_page`), with
    one line in the server's log: each page's seconds, any problem it showed, and the results read back from an
    earlier start or kept for the next (:mod:`ui.kept_results`)."""
    from ui import first_visit, kept_results
    from ui.navigation import page_files, page_slug

    files = page_files()
    t0 = time.perf_counter()
    try:
        restored = kept_results.restore(model)
        visited = first_visit.visit_every_page(["", *(page_slug(f) for f in files[1:])])
        seconds = time.perf_counter() - t0
        kept = kept_results.keep(model, first_visit.results_used, restored)
    except Exception as error:  # noqa: BLE001 - the server keeps running; each page computes on its first real visit
        print(f"first visit: stopped after {time.perf_counter() - t0:.1f} s: {error!r}", flush=True)
        return
    finally:
        first_visit.results_used.clear()  # its keys hold requests (a probe request its states): not kept alive here
    times = ", ".join(f"{path or page_slug(files[0])} {s:.1f}" for path, (s, _) in visited.items())
    disk = "".join([f"; {len(restored)} results read back from an earlier start" if restored else "",
                    f"; {kept} results kept for the next start" if kept else ""])
    print(f"first visit: {len(visited)} of {len(files)} pages in {seconds:.1f} s ({times}){disk}", flush=True)
    for path, (_, problems) in visited.items():
        for problem in problems:
            print(f"first visit: {path or page_slug(files[0])} showed: {problem[:300]}", flush=True)


def warm_up() -> None:
    """The server's start in the background: load the model, then visit every page with it."""
    if (model := preload_model()) is not None:
        visit_pages(model)


def main() -> None:
    threading.Thread(target=warm_imports, name="warm-imports", daemon=True).start()
    if os.environ.get("WORKBENCH_PRELOAD", "1") != "0":
        threading.Thread(target=warm_up, name="warm-up", daemon=True).start()
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
