"""Shared helpers of the sweep tests."""

from __future__ import annotations

from pathlib import Path


def write_spec(tmp_path: Path, text: str) -> Path:
    """``text`` as the sweep spec file ``tmp_path/spec.toml``."""
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path
