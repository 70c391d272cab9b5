"""interp_core: the workbench's engine. Loads a causal LM, exposes its internals through one
vocabulary of hook points (:mod:`interp_core.core.names`), and runs every technique. Never imports
Streamlit."""

from interp_core.core.errors import WorkbenchError
from interp_core.core.loading import DEFAULT_MODEL, list_toy_models, load_model
from interp_core.core.model import LoadedModel, ModelInfo

__all__ = ["DEFAULT_MODEL", "LoadedModel", "ModelInfo", "WorkbenchError", "list_toy_models", "load_model"]
