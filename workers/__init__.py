"""Braid's demo model services. Importing this package is cheap: torch and transformers load
inside each service's ``__init__``, in the worker process."""
