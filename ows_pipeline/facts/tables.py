"""Warehouse tables of the facts stage, declared on the shared warehouse metadata."""
