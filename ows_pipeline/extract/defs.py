"""Dagster definitions of the extract domain."""

import dagster as dg

defs = dg.Definitions()
