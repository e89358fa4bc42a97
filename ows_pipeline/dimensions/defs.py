"""Dagster definitions of the dimensions domain."""

import dagster as dg

defs = dg.Definitions()
