"""Dagster definitions of the facts domain."""

import dagster as dg

defs = dg.Definitions()
