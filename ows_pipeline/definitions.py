"""The ows_pipeline code location: the Dagster objects under `ows_pipeline/defs/`, bound to
resources from the environment.

Kept cheap to import: no Great Expectations, no pandas, no database connection.
"""

from pathlib import Path

import dagster as dg

from ows_pipeline.resources import resources_from_env


def build_defs(resources: dict) -> dg.Definitions:
    """Every Dagster object of `ows_pipeline/defs/`, bound to `resources` (tests bind their own)."""
    return dg.Definitions.merge(
        dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
        dg.Definitions(resources=resources),
    )


defs = build_defs(resources_from_env())
