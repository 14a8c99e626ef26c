"""Braid's demo model services. Importing this package is cheap: torch and transformers load
inside each service's ``__init__``, in the worker process."""

from workers import _stand_ins as _stand_ins  # registers how `braid models bootstrap` builds the demo models
