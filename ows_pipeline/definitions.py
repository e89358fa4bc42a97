"""The ows_pipeline code location: every domain's definitions, bound to resources from the environment.

Kept cheap to import: no Great Expectations, no database connection, no file system scan.
"""

import dagster as dg

from ows_pipeline import resources, schedules
from ows_pipeline.dimensions import defs as dimensions
from ows_pipeline.extract import defs as extract
from ows_pipeline.facts import defs as facts
from ows_pipeline.operations import defs as operations
from ows_pipeline.reports import defs as reports
from ows_pipeline.staging import defs as staging
from ows_pipeline.uploads import defs as uploads

defs = dg.Definitions.merge(
    extract.defs,
    staging.defs,
    dimensions.defs,
    facts.defs,
    reports.defs,
    uploads.defs,
    operations.defs,
    schedules.defs,
    dg.Definitions(resources=resources.resources_from_env()),
)
