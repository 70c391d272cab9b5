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
while it loads waits for that same load instead of starting a second. For the default model it then
computes the Probing page's first result, the slowest first render of any page (:func:`prepare_probing`):
the hidden states of the bundled POS set (extracted into their disk cache on a machine's first start, about
7 s) and the probes (about 1.5 s). ``WORKBENCH_PRELOAD=0`` turns this off.
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
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


def preload_model() -> None:
    """Load the sidebar's first model into the server's model cache (a failure is left for the page to show:
    the cache keeps no failures). The default model is left alone until converted (``./workbench start`` does
    that first; otherwise the first page shows the conversion's progress)."""
    from interp_core import DEFAULT_MODEL
    from interp_core.core.loading import default_model_ready
    from ui import state
    from ui.config import allowed_models

    spec = (allowed_models() or [DEFAULT_MODEL])[0]
    if spec == DEFAULT_MODEL and not default_model_ready():
        return
    try:
        model = state.get_model(spec)
        if spec == DEFAULT_MODEL:
            prepare_probing(model)
    except Exception:  # noqa: BLE001 - the sidebar loads it again and reports what went wrong
        return


def prepare_probing(model: LoadedModel) -> None:
    """The Probing page's first result, ready before anyone opens the page: its hidden states (the bundled POS set;
    extracted into their disk cache on a machine's first start, about 7 s, read back from it after that, 0.5 s) and
    its first probes (about 1.5 s), both put in the server-wide result cache through :func:`ui.jobs.shared`, so a
    Probing visitor meanwhile shares these computations and sees their progress."""
    import dataclasses

    from interp_core.techniques.contract import run as run_technique
    from ui import jobs, runner
    from ui.probing_views import first_request

    probe = first_request(model.info.n_layers)
    states = probe.features_request()
    features = jobs.shared(runner.cache_key(model, states), lambda progress: run_technique(model, states, progress))
    with_features = dataclasses.replace(probe, features=features)  # not part of the request's identity: same key
    jobs.shared(runner.cache_key(model, probe), lambda progress: run_technique(model, with_features, progress))


def main() -> None:
    threading.Thread(target=warm_imports, name="warm-imports", daemon=True).start()
    if os.environ.get("WORKBENCH_PRELOAD", "1") != "0":
        threading.Thread(target=preload_model, name="preload-model", daemon=True).start()
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
