"""The runtime floor: errors, the hook-point vocabulary (``names``), hooks, the loaded model,
loading, head ids, and ``arch/`` with one adapter per architecture family. It imports nothing
from the techniques or the CLI."""
