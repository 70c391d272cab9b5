"""How does information reach the prediction? The route from the output back to the input tokens, each edge testable.

Information flow routes (Ferrando & Voita 2024; the LLM Transparency Tool's graph): every block's output
is a sum of parts (one per source token and head, plus the residual; the MLP and the residual), and each
part's share of the whole it is summed into is a contribution. The route keeps the edges above a threshold
that reach the chosen prediction. Any attention edge can then be ablated in one click.
"""

from __future__ import annotations

import streamlit as st

from ui import flow_views, page, runner, state

IOI = "When Mary and John went to the store, John gave a drink to"
PRESETS = {
    "Indirect object (IOI)": {"prompt": IOI},
    "Capital of France": {"prompt": "The capital of France is"},
    "Repeated text (induction)": {"prompt": "The quick brown fox jumps over the lazy dog. The quick brown fox jumps over the"},
}

page.header("Information Flow", "How does information reach the prediction? The route from the output back to the input tokens.")
model = state.require_model()
flow_views.first_visit_prompt(IOI)
page.presets(PRESETS, key="flow", label="Presets (they set the sidebar prompt):")
prompt = state.prompt()
full = runner.run(model, flow_views.flow_request(prompt))  # every contribution, once; threshold and position only redraw
if full is None:
    st.stop()
flow_views.explorer(model, full, prompt)
page.explain(
    """
Rows are layer boundaries (0 = the embeddings, the top row = the residual stream the unembedding reads); columns
are the prompt's tokens. Between boundary L and L+1, block L writes into each position q: an **attention edge**
from position k carries the share of `resid_mid[q]` made up by the heads' writes from k (`A[h,q,k] · v[k] W_O[h]`,
summed over heads), the **residual edge** the share kept from `resid_pre[q]`, and the **MLP square** the share of
`resid_post[q]` written by the MLP. A share is `max(|whole|₁ − |whole − part|₁, 1e-5)`, normalised over the parts
of that whole. Only edges above the threshold that lead to the chosen prediction are drawn. Moving the threshold
or the output position redraws the graph without running the model again.
"""
)
page.caution(
    "A contribution is a **correlational** proximity score: a part that is close to its whole in L1. It does not "
    "say that the prediction needs that part. **Test this edge** is the causal test: it removes the part (or the "
    "whole head at that position) from one run and shows how the prediction changes."
)
