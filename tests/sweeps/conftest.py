"""Shared helpers of the sweep tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from numsweep.sweeps import SweepSpecError, load_spec


def write_spec(tmp_path: Path, text: str) -> Path:
    """``text`` as the sweep spec file ``tmp_path/spec.toml``."""
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def assert_one_line_spec_error(tmp_path: Path, text: str, message: str) -> None:
    """Loading ``text`` as a spec file fails with one line that names the file and says
    ``message``."""
    path = write_spec(tmp_path, text)
    with pytest.raises(SweepSpecError) as info:
        load_spec(path)
    assert message in str(info.value)
    assert str(info.value).startswith(str(path))
    assert "\n" not in str(info.value)
