"""``ui.page.relabel``: a select widget whose labels come from the prompt shows the new labels after a new prompt."""

from __future__ import annotations

from streamlit.testing.v1 import AppTest


def _app() -> None:
    import streamlit as st

    from ui.page import relabel

    tokens = st.text_input("Prompt", "The capital of France is").split()
    positions = [-1, *range(len(tokens))]
    label = lambda p: f"last token ({tokens[-1]!r})" if p == -1 else f"{p} {tokens[p]!r}"  # noqa: E731
    if st.session_state.get("relabelled", True):
        relabel("position", [label(p) for p in positions])
    st.selectbox("Output position", positions, key="position", format_func=label)


def _shown_after_new_prompt(relabelled: bool) -> tuple[object, str]:
    at = AppTest.from_function(_app)
    at.session_state["relabelled"] = relabelled
    at.run()
    at.text_input[0].set_value("Two plus two is").run()
    assert not at.exception
    box = at.selectbox[0]
    return box.value, box.proto.raw_value if box.proto.set_value else "(the browser keeps its label)"


def test_a_new_prompt_sends_the_new_label_of_the_same_choice() -> None:
    assert _shown_after_new_prompt(relabelled=True) == (-1, "last token ('is')")


def test_without_it_streamlit_sends_no_label_for_an_unchanged_choice() -> None:
    """The control: what ``relabel`` works around (if Streamlit starts sending it, ``relabel`` can go)."""
    assert _shown_after_new_prompt(relabelled=False) == (-1, "(the browser keeps its label)")
