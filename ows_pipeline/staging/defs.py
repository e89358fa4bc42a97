"""Dagster definitions of the staging domain."""

import dagster as dg

defs = dg.Definitions()
