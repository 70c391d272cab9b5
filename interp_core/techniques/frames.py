"""Long-form data frames for results' ``tables()``: one row per cell, with its labels.

A page charts a table and offers it as a download, so the engine builds the frames (the
:mod:`ui` charts only encode them); this is the one builder of a labelled grid's frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def grid_frame(values: np.ndarray, row_labels: list, col_labels: list, row_name: str, col_name: str, value_name: str) -> pd.DataFrame:
    """Long-form frame of a 2-D array ``(row, col)``: one row per cell with its row and column labels."""
    rows, cols = np.meshgrid(np.arange(len(row_labels)), np.arange(len(col_labels)), indexing="ij")
    return pd.DataFrame(
        {
            row_name: [row_labels[i] for i in rows.ravel()],
            col_name: [col_labels[j] for j in cols.ravel()],
            value_name: values.ravel(),
        }
    )
