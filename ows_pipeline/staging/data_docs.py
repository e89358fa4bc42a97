"""Where the Great Expectations Data Docs site lives (no Great Expectations import here).

`OWS_DATA_DOCS_DIR` if set, else `$OWS_HOME/data_docs`. The HTML site is the folder itself
(`index.html`); the stored suites and validation results that the site is built from sit
in its `_gx_store` subfolder.
"""

from __future__ import annotations

from pathlib import Path

from ows_pipeline.settings import Settings


def data_docs_dir() -> Path:
    """The Data Docs folder: `OWS_DATA_DOCS_DIR`, else `$OWS_HOME/data_docs`."""
    return Settings.from_env().data_docs_dir


def data_docs_index_path() -> Path:
    """The Data Docs start page (it exists once a staging table has been validated)."""
    return data_docs_dir() / "index.html"


def data_docs_store_dir() -> Path:
    """Suites and validation results (JSON) from which the site is rebuilt."""
    return data_docs_dir() / "_gx_store"
