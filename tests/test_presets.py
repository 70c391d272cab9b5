"""The one preset mechanism (``ui.page.presets``): a first visit gets the default preset unless a
link sets the input, and a click fills every input of the preset, the sidebar prompt included."""

from __future__ import annotations

from page_harness import open_page

LENS = "pages/03_logit_lens.py"
PATCHING = "pages/06_activation_patching.py"


def test_first_visit_fills_the_default_preset(tiny_model_dirs):
    at = open_page(PATCHING, tiny_model_dirs["gpt2"], timeout=180).run()
    assert at.text_input(key="patch_clean").value == "When Mary and John went to the store, John gave a drink to"
    assert at.text_input(key="patch_answer").value == " Mary"


def test_a_link_wins_over_the_default_preset(tiny_model_dirs):
    at = open_page(PATCHING, tiny_model_dirs["gpt2"], timeout=180)
    at.query_params["patch_answer"] = " Anna"
    at.run()
    assert at.text_input(key="patch_answer").value == " Anna"
    assert at.text_input(key="patch_wrong").value == " John"  # the link did not set it: the preset did


def test_a_click_fills_every_input_of_the_preset(tiny_model_dirs):
    at = open_page(PATCHING, tiny_model_dirs["gpt2"], timeout=180).run()
    at.button(key="patch_preset_1").click().run()
    assert at.text_input(key="patch_clean").value == "The Eiffel Tower is located in the city of"
    assert at.text_input(key="patch_corrupt").value == "The Colosseum is located in the city of"
    assert (at.text_input(key="patch_answer").value, at.text_input(key="patch_wrong").value) == (" Paris", " Rome")


def test_a_preset_can_set_the_sidebar_prompt(tiny_model_dirs):
    at = open_page(LENS, tiny_model_dirs["gpt2"]).run()
    at.button(key="lens_preset_1").click().run()
    assert at.session_state["prompt"] == "The Eiffel Tower is located in the city of"
    assert not at.exception
