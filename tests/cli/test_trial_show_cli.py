"""`numsweep trial show ID`: a stored trial's parameters and metrics; a pbt member's schedule
of explored values and its ancestry; a missing trial is a one-line error."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from numsweep.cli import cli
from tests.analysis.test_lineage import pbt_db


def invoke(*args: object) -> object:
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def test_trial_show_prints_a_pbt_members_schedule_and_ancestry(tmp_path: Path) -> None:
    storage, ids = pbt_db(tmp_path / "p.db")
    url = storage.url
    # member 1 copied member 2 at update 20, which had copied member 0 at update 10
    result = invoke("trial", "show", ids[1], "--db", url)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == f"trial {ids[1]}: sweep p, stage pop, COMPLETE"
    assert "pbt member 1 of 3; its weights trace back to member 0" in result.output
    assert "  update 0: lam=0.0001" in lines
    assert "  update 10: lam=0.00012" in lines and "  update 20: lam=9.6e-05" in lines
    assert (f"  update 20: member 1 (trial {ids[1]}) copied member 2 (trial {ids[2]})"
            in lines)
    assert (f"  update 10: member 2 (trial {ids[2]}) copied member 0 (trial {ids[0]})"
            in lines)
    never = invoke("trial", "show", ids[0], "--db", url)
    assert never.exit_code == 0 and "ancestry: never replaced" in never.output


def test_trial_show_of_a_missing_trial_is_a_one_line_error(tmp_path: Path) -> None:
    storage, _ = pbt_db(tmp_path / "p.db")
    result = invoke("trial", "show", 999, "--db", storage.url)
    assert result.exit_code == 1
    assert result.output.startswith("Error: no trial with id 999")
    assert result.output.strip().count("\n") == 0
