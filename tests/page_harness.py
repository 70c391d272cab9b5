"""Open one page of the app under AppTest with a tiny model pinned.

AppTest's ``switch_page`` drops query parameters, so the model goes into session state as
well; without that the page silently loads the real default model.
"""

from __future__ import annotations

from pathlib import Path

from streamlit.testing.v1 import AppTest

APP = str(Path(__file__).resolve().parent.parent / "app.py")


def open_page(page: str, model_dir: object, *, timeout: int = 120, run_home_first: bool = False, **state: object) -> AppTest:
    """An AppTest switched to ``page`` (e.g. ``"pages/04_attention.py"``), not yet run.

    Args:
        model_dir: the model the sidebar loads (a tiny model's directory).
        run_home_first: run the home page once before switching, as a user arriving there would.
        state: extra session-state values (widget keys) set before the first run of the page.
    """
    at = AppTest.from_file(APP, default_timeout=timeout)
    at.query_params["model"] = str(model_dir)
    if run_home_first:
        at.run()
    at.session_state["model"] = str(model_dir)
    for key, value in state.items():
        at.session_state[key] = value
    at.switch_page(page)
    return at
