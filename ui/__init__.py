"""Streamlit-side helpers shared by app.py and the pages (the engine never imports this)."""
