"""The sidebar's "Advanced: precision and devices" expander: how the model is loaded.

Its widgets build a :class:`~interp_core.core.load_options.LoadOptions` (dtype, accelerate device map,
memory limits, offload folder); the defaults load as before (float32 on the best single device).
A workshop server (a fixed model list) offers no such choice: what fits in its memory is the host's call.
"""

from __future__ import annotations

import streamlit as st

from interp_core.core.load_options import DEVICE_MAP_STRATEGIES, DTYPES, LoadOptions, make_options
from ui.config import allowed_models

ONE_DEVICE = "none (one device)"


def advanced_loading() -> None:
    """Draw the expander (not on a workshop server)."""
    if allowed_models():
        return
    with st.expander("Advanced: precision and devices"):
        st.selectbox("Precision", list(DTYPES), key="load_dtype",
                     help="bfloat16/float16 halve the memory; analyses still compare and sum in float32.")
        st.selectbox("Device map", [ONE_DEVICE, *DEVICE_MAP_STRATEGIES], key="load_device_map",
                     help="Split a model too big for one device over GPUs, CPU and disk (Hugging Face accelerate).")
        st.text_input("Max memory per device", key="load_max_memory", placeholder="0:20GiB,cpu:60GiB",
                      help="With a device map: what each device may hold, e.g. 0:20GiB,1:20GiB,cpu:60GiB.")
        st.text_input("Offload folder", key="load_offload_folder", placeholder="/path/with/room",
                      help="Allow weights that fit nowhere else to go to disk here (slow).")


def chosen_options() -> LoadOptions:
    """The expander's options (the defaults where it was not touched).

    Raises:
        ModelLoadError: a malformed memory limit or an unknown choice, with what to type instead.
    """
    if allowed_models():
        return LoadOptions()
    device_map = st.session_state.get("load_device_map") or ONE_DEVICE
    return make_options(st.session_state.get("load_dtype"), None if device_map == ONE_DEVICE else device_map,
                        st.session_state.get("load_max_memory"), st.session_state.get("load_offload_folder"))


def set_options(options: LoadOptions) -> None:
    """Set the expander's widgets to ``options`` (before they are drawn: an opened experiment's load options).

    The offload folder is left as it is: only the user chooses where the server may write.
    """
    st.session_state["load_dtype"] = options.dtype
    device_map = options.device_map
    st.session_state["load_device_map"] = device_map if isinstance(device_map, str) else ONE_DEVICE
    st.session_state["load_max_memory"] = ",".join(f"{d}:{size}" for d, size in options.max_memory or ())
