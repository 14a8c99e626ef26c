"""Benchmarks: the no-op services and pipelines (what Braid costs per hop), the seed graph
served alone, and ``python -m bench [--against bentoml]``, which measures them, beside the same
graphs on BentoML."""
