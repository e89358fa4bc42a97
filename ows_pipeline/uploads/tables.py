"""Warehouse tables of the uploads stage, declared on the shared warehouse metadata."""
