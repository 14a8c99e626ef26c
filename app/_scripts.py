"""Braid's Lua scripts (``app/lua/*.lua``, each naming its KEYS and ARGV), read as text."""

from __future__ import annotations

from importlib import resources

__all__ = ["lua"]


def lua(name: str, *uses: str) -> str:
    """The script ``lua/<name>.lua``, after the functions of the ``uses`` files."""
    folder = resources.files("app") / "lua"
    return "\n".join((folder / f"{part}.lua").read_text() for part in (*uses, name))
