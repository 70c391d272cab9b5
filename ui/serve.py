"""Start the app: ``python -m ui.serve [streamlit options]`` (what ``./workbench start`` runs).

A folder named ``pages/`` beside ``app.py`` makes Streamlit run a server's very first
session in its legacy multipage mode until some session has called ``st.navigation``: a
shared link to a page, opened first on a fresh server, would run that page without
``app.py`` (no sidebar, file names as the menu). Clearing the flag before the server starts
makes every session go through ``app.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

from streamlit.runtime.pages_manager import PagesManager
from streamlit.web import cli

APP = Path(__file__).resolve().parent.parent / "app.py"


def main() -> None:
    PagesManager.uses_pages_directory = False
    sys.argv = ["streamlit", "run", str(APP), *sys.argv[1:]]
    cli.main()


if __name__ == "__main__":
    main()
