"""Does a direction do what we think? Add it to the residual stream and watch the model change its mind.

Activation addition: the difference of two prompts' residual streams at one layer, added (times a
coefficient) to every position but the first of another prompt's run; or several pairs averaged
(contrastive activation addition); or the direction projected out of every block instead.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from interp_core import WorkbenchError
from interp_core.techniques.steering import SteerRequest, SweepRequest, parse_pairs
from ui import page, runner, state
from ui.steering_views import continuations, lens_view, promoted_chart, request_or_stop, sweep_view

ONE, PAIRS = "One pair", "Several pairs (CAA)"
SWEEP = tuple(float(c) for c in np.round(np.arange(-1.0, 3.001, 0.125), 3))
CAPITALS = "positive,negative\nThe capital of Italy,The capital of France\nI flew to Rome,I flew to Paris\nWe ate Italian food,We ate French food\n"

page.header("Steering", "Does a direction do what we think? Add it to the residual stream and watch the model change its mind.")
model = state.require_model()
top = model.info.n_layers - 1
PRESETS = {
    "Paris → Rome": {"prompt": "The capital of France is", "steer_mode": ONE, "steer_pos": "The capital of Italy",
                     "steer_neg": "The capital of France", "steer_layer": min(16, top), "steer_c": 0.75, "steer_target": " Rome",
                     "steer_ablate": False, "steer_tokens": 30},
    "Love → hate": {"prompt": "I think you are", "steer_mode": ONE, "steer_pos": "I hate", "steer_neg": "I love",
                    "steer_layer": min(12, top), "steer_c": 0.75, "steer_target": " just", "steer_ablate": False, "steer_tokens": 30},
    "Italy, three pairs (CAA)": {"prompt": "The capital of France is", "steer_mode": PAIRS, "steer_pairs": CAPITALS,
                                 "steer_layer": min(16, top), "steer_c": 1.25, "steer_target": " Rome", "steer_ablate": False,
                                 "steer_tokens": 30},
}
page.presets(PRESETS, key="steer", default="Paris → Rome", label="Presets (they also set the sidebar prompt):")
st.caption(f"Steering the sidebar prompt: **{state.prompt()!r}**")

# --- the vector -------------------------------------------------------------------------------
mode = st.radio("Vector from", [ONE, PAIRS], key="steer_mode", bind="query-params", horizontal=True)
positive = negative = ""
pairs: tuple = ()
if mode == ONE:
    left, right = st.columns(2)
    positive = left.text_input("Positive prompt (steer towards)", key="steer_pos", bind="query-params")
    negative = right.text_input("Negative prompt (steer away from)", key="steer_neg", bind="query-params")
else:
    text = st.text_area("Pairs, one 'positive,negative' per line (CSV)", key="steer_pairs", height=120)
    upload = st.file_uploader("…or upload a CSV of pairs", type=["csv", "txt"], key="steer_csv")
    try:
        pairs = parse_pairs(upload.getvalue().decode("utf-8") if upload is not None else text)
    except (WorkbenchError, UnicodeDecodeError) as error:
        st.error(f"Could not read the pairs: {error}")
        st.stop()

if st.session_state.get("steer_layer", 0) > top:  # a link made for a deeper model
    st.session_state["steer_layer"] = top
a, b, c = st.columns(3)
layer = a.slider("Layer L (resid_pre)", 0, top, key="steer_layer", bind="query-params")
coefficient = b.slider("Coefficient c", -1.0, 3.0, step=0.05, key="steer_c", bind="query-params",
                       help="Fine steps: on the default model useful values are below about 1; larger ones break it.")
n_tokens = c.slider("New tokens", 1, 60, key="steer_tokens", bind="query-params")
a, b = st.columns([2, 1])
target = a.text_input("Target token for the sweep", key="steer_target", bind="query-params",
                      placeholder="empty: the unsteered top prediction", help="One token with its leading space, e.g. ' Rome'.")
ablate = b.toggle("Ablate this direction instead", key="steer_ablate", bind="query-params",
                  help="Project v out of resid_pre at every block and position: no block can read the direction.")

vector = dict(prompt=state.prompt(), positive=positive, negative=negative, layer=layer, pairs=pairs)
request = request_or_stop(SteerRequest, **vector, coefficient=coefficient, max_new_tokens=n_tokens, ablate=ablate)

# --- the two continuations, drawn after the sweep below -------------------------------------
# The sweep is one batched forward (under a second); the continuations are two token-by-token generations
# (seconds on a CPU). Their place on the page comes first, but the sweep is computed and drawn before
# them, so the page's first chart does not wait for the generation, which then streams into its place.
st.subheader("Continuations (greedy)")
continuation_box = st.container()

# --- the sweep ------------------------------------------------------------------------------------------
st.subheader("How the next token moves with c")
sweep = runner.run(model, request_or_stop(SweepRequest, **vector, coefficients=SWEEP, target=target))
if sweep is not None:
    sweep_view(sweep, coefficient)
    page.explain(
        "Each point is one steered run of the prompt (activation addition at layer L, whatever the toggle says): the "
        "probability that the next token is the target. A direction that carries the concept raises it smoothly from "
        "c = 0; past some c the run breaks and every probability falls (the top token turns into junk).",
        label="How to read the sweep",
    )

with continuation_box:
    how = "direction ablated at every block" if ablate else f"c = {coefficient:g} × v added at layer {layer}"
    result = continuations(model, request, ("Unsteered", f"Steered: {how}"))
    if result is None:
        st.stop()
    st.caption(f"v averages {result.n_pairs} pair(s); |v| = {result.vector_norm:.1f}. Position 0 (the attention sink) is never steered.")
    page.explain(
        """
Left: the model's own greedy continuation. Right: the same prompt with the edit in place during the whole run,
prompt and every generated token (with the KV cache, each step runs the new position only; it is steered too).
**Activation addition** adds `c · v` to the residual stream entering block L, with `v` = the positive prompt's
residual minus the negative one's at their last token. **Ablation** removes `v`'s direction from the residual
stream entering every block instead: if the model needs that direction, its behaviour should change.
"""
    )

# --- what the vector promotes ---------------------------------------------------------------------------
st.subheader("The edit through the logit lens")
lens_view(result)
page.explain(
    "Each row is a layer boundary from the steered one on (`L5` = after block 5); each cell is a token whose "
    "log-probability under the logit lens rises most at the prompt's last position when the edit is in place, "
    "darker = larger rise. Early rows are often junk tokens: the lens reads mid-layer residuals in the final basis.",
    label="How to read the lens",
)
with st.expander("The vector read straight through the unembedding"):
    promoted = result.tables()["steering_promoted"]
    page.show_chart(promoted_chart(promoted), promoted, "steering_promoted",
                    caption="Top tokens of (final-norm weight × v) · W_U. A mid-layer vector is rarely in the unembedding's "
                            "basis, so this list can look unrelated even when steering works; the lens above is fairer.")
page.caution(
    "A continuation that changes shows that adding v changes the output, not that the model uses v this way on its "
    "own: large coefficients push the residual stream off its usual range. Compare with ablation and small c."
)
