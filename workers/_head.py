"""A linear classifier head over sentence embeddings, loaded from the model store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


class Head:
    """Softmax class probabilities of a ``head.safetensors`` linear layer."""

    def __init__(self, path: Path, device: str) -> None:
        import torch
        from safetensors.torch import load_file

        weights = load_file(str(path / "head.safetensors"))
        self.labels = json.loads((path / "config.json").read_text())["labels"]
        self.layer = torch.nn.Linear(weights["weight"].shape[1], weights["weight"].shape[0])
        self.layer.load_state_dict(weights)
        self.layer.to(device).eval()
        self.device = device

    def __call__(self, features: Any) -> np.ndarray:
        """A float32 array (len(features), labels), one row of probabilities per embedding."""
        import torch

        with torch.no_grad():
            logits = self.layer(torch.from_numpy(features).to(self.device))
        return np.asarray(torch.softmax(logits, dim=1).cpu().numpy(), dtype=np.float32)
