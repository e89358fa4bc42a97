"""Warehouse tables of the dimensions stage, declared on the shared warehouse metadata."""
