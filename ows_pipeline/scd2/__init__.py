"""The SCD type 2 merge engine: pure SQLAlchemy Core, no Dagster.

- `merge`: `merge_scd2`, the entry point (one batch, one transaction, `MergeStats`);
- `hashing`: `row_hash`, the md5 of the tracked columns;
- `batch`: staging of a batch (its rows, rejected rows, temporary tables);
- `in_order`: a batch newer than everything loaded;
- `out_of_order`: a late batch slotted into history;
- `scd1`: columns overwritten in place;
- `invariants`: the dimension's invariants, counted.
"""

from ows_pipeline.scd2.hashing import row_hashes
from ows_pipeline.scd2.invariants import invariant_violations
from ows_pipeline.scd2.batch import DuplicateKeyError
from ows_pipeline.scd2.merge import merge_scd2
from ows_pipeline.scd2.scd1 import apply_scd1
from ows_pipeline.scd2.stats import MergeStats
from ows_pipeline.warehouse.schema.scd2 import DimensionSpec, Scd2Error, declare_dimension, scd2_batches

__all__ = [
    "DimensionSpec", "DuplicateKeyError", "MergeStats", "Scd2Error", "apply_scd1", "declare_dimension",
    "invariant_violations", "merge_scd2", "row_hashes", "scd2_batches",
]
