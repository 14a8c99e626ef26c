"""Services and pipelines used by the test suite (served by real workers)."""
