"""The ows_pipeline code location: every domain's definitions, bound to resources from the environment.

Kept cheap to import: no Great Expectations, no database connection, no file system scan.
"""

import dagster as dg

from ows_pipeline.dimensions.defs import defs as dimensions_defs
from ows_pipeline.extract.defs import defs as extract_defs
from ows_pipeline.facts.defs import defs as facts_defs
from ows_pipeline.operations.defs import defs as operations_defs
from ows_pipeline.reports.defs import defs as reports_defs
from ows_pipeline.resources import resources_from_env
from ows_pipeline.staging.defs import defs as staging_defs
from ows_pipeline.uploads.defs import defs as uploads_defs

defs = dg.Definitions.merge(
    extract_defs,
    staging_defs,
    dimensions_defs,
    facts_defs,
    reports_defs,
    uploads_defs,
    operations_defs,
    dg.Definitions(resources=resources_from_env()),
)
