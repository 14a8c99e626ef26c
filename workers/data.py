"""DataModel: summarise a record (scenario 1's data branch); light, no model stack."""

from __future__ import annotations

from typing import Any

from app import Resources, api, service


@service(resources=Resources(cpu=1), timeout=10)
class DataModel:
    def __init__(self) -> None:
        pass

    @api
    def process_data(self, data: dict[str, Any]) -> dict[str, Any]:
        """Field count, and count, sum and mean of the numeric fields."""
        numbers = [v for v in data.values() if isinstance(v, int | float) and not isinstance(v, bool)]
        return {"fields": len(data), "numeric": len(numbers), "sum": sum(numbers),
                "mean": sum(numbers) / len(numbers) if numbers else None}
