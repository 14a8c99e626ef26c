"""Braid's REST front: submit jobs to services and pipelines, follow them, cancel them."""
