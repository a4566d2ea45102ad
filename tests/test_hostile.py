"""The hostile run of docs/robustness.md (tests/hostile_cases.py): every case against the real tools, judged
by the same rules: no traceback, one-line errors, no data touched, no temporary file left, strict
JSON. The workspace (LMDBs, label files, logs, a random-weight net) is built once."""
import pytest

from hostile_cases import build_workspace, cases, run_case

CASES = cases()


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_workspace(tmp_path_factory.mktemp("hostile"))


def test_the_run_has_200_cases():
    assert len(CASES) >= 200


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_hostile_case(case, ws):
    run_case(case, ws)
