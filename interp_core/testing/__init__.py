"""Test fixtures outside the runtime: tiny random models of every supported family, saved as
ordinary HF directories so tests load them through the app's own loading path."""
