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
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before any import that may load torch

from streamlit.runtime.pages_manager import PagesManager  # noqa: E402
from streamlit.web import cli  # noqa: E402

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


def main() -> None:
    threading.Thread(target=warm_imports, name="warm-imports", daemon=True).start()
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
