"""Dagster definitions of the reports domain."""

import dagster as dg

defs = dg.Definitions()
