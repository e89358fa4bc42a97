"""Dagster definitions of the uploads domain."""

import dagster as dg

defs = dg.Definitions()
