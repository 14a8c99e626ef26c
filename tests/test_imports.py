"""The API process and service discovery never load torch or transformers."""

from __future__ import annotations

import subprocess
import sys

from tests.harness import ROOT


def test_building_the_api_imports_no_model_stack() -> None:
    code = (
        "import sys\n"
        "import workers, api.main\n"
        "from app import Settings\n"
        "api.main.create_app(Settings(apps=['workers', 'tests.apps']))\n"
        "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True, timeout=120)
    assert out.stdout.strip() == "[]"
