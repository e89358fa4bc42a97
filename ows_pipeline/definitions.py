"""The ows_pipeline code location: the Dagster objects under `ows_pipeline/defs/`, bound to
resources from the environment.

Kept cheap to import: no Great Expectations, no pandas, no database connection.
"""

from pathlib import Path

import dagster as dg

from ows_pipeline.resources import resources_from_env

defs = dg.Definitions.merge(
    dg.load_from_defs_folder(path_within_project=Path(__file__).parent),
    dg.Definitions(resources=resources_from_env()),
)
