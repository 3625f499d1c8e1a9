"""Model audit workbench: the engine and services behind the Streamlit app.

Nothing under `audit/` (except the service layer used by pages) knows about the UI.
"""

__version__ = "0.1.0"
