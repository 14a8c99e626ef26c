"""ImageModel: classify an image (scenario 1's image branch), on a GPU where there is one."""

from __future__ import annotations

from typing import Annotated, Any

from PIL import Image
from pydantic import Field

from app import Resources, api, device, models, service


@service(resources=Resources(gpu=1, memory="4Gi"), timeout=30, models=["vit-classifier:latest"])
class ImageModel:
    def __init__(self) -> None:
        from transformers import pipeline

        self.pipe = pipeline("image-classification", model=str(models.get("vit-classifier").path),
                             device=device())

    @api
    def process_image(self, image: Image.Image,
                      top_k: Annotated[int, Field(ge=1, le=100)] = 3) -> list[dict[str, Any]]:
        """The ``top_k`` best labels of ``image`` with their scores, best first."""
        return list(self.pipe(image.convert("RGB"), top_k=top_k))
