"""Dagster definitions of the operations domain."""

import dagster as dg

defs = dg.Definitions()
