"""Warehouse tables of the staging stage, declared on the shared warehouse metadata."""
