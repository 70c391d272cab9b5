"""Information flow routes (Ferrando & Voita 2024): which parts of each block's output make up the
residual stream, the route from a prediction back to the input tokens, and an edge's causal test.

- :mod:`.contributions`: the proximity scores of every part of every block (one forward).
- :mod:`.graph`: edges and the route above a threshold.
- :mod:`.request`: :class:`FlowRequest` -> :class:`FlowResult` (the CLI's ``flow`` and the page).
- :mod:`.edge`: one edge's lens and its ablation, :class:`EdgeLensRequest`, :class:`EdgeTestRequest`.
"""

from interp_core.techniques.flow.edge import EdgeLens, EdgeLensRequest, EdgeTest, EdgeTestRequest
from interp_core.techniques.flow.graph import Edge, route
from interp_core.techniques.flow.request import DEFAULT_THRESHOLD, FlowRequest, FlowResult

__all__ = ["DEFAULT_THRESHOLD", "Edge", "EdgeLens", "EdgeLensRequest", "EdgeTest", "EdgeTestRequest", "FlowRequest",
           "FlowResult", "route"]
