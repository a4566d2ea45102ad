"""The repository stands alone: nothing refers to a folder beside it, the reference data is small."""
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from data_helpers import reference_lines

ROOT = pathlib.Path(__file__).resolve().parents[1]
OUTSIDE = ".." + "/" + "shared"        # spelled in two parts so this file does not match itself


def tracked_files():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked files are unknown")
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True)
    return [ROOT / p for p in out.stdout.decode().split("\0") if p]


def test_no_tracked_file_refers_to_a_folder_beside_the_repository():
    readme = ROOT / "data" / "reference" / "README.md"
    offenders = []
    for path in tracked_files():
        if path == readme or not path.is_file():
            continue
        data = path.read_bytes()
        if OUTSIDE.encode() in data:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == [], f"tracked files that refer to {OUTSIDE}: {offenders}"


def test_reference_data_is_tracked_and_small():
    ref = ROOT / "data" / "reference"
    tracked = [p for p in tracked_files() if ref in p.parents]
    files = [p for p in ref.rglob("*") if p.is_file()]
    assert {p.relative_to(ROOT) for p in files} == {p.relative_to(ROOT) for p in tracked}
    assert sum(p.stat().st_size for p in files) < 5 * 1024 * 1024


@pytest.mark.parametrize("name, lines, width", [
    ("nyu/nyu_test_groundtruth_label.txt.xz", 8252, 42),
    ("nyu/predictions/CVWW15_NYU_Prior.txt.xz", 8252, 42),
    ("nyu/predictions/ICCVW17_NYU_DeepPrior++.txt.xz", 8252, 42),
    ("icvl/icvl_test_groundtruth_label.txt.xz", 1596, 48),
    ("icvl/predictions/CVPR14_LRF_Results.txt.xz", 1596, 48),
    ("icvl/predictions/JVCI18_ICVL_REN_9x6x6.txt.xz", 1596, 48),
])
def test_reference_label_files_have_their_shape(reference_data, name, lines, width):
    rows = np.loadtxt(reference_data / name)
    assert rows.shape == (lines, width)
    assert np.all(rows[:, 2::3] > 0)                  # depths in mm


def test_reference_lists_match_their_labels(reference_data):
    nyu = reference_lines(reference_data / "nyu" / "nyu_test_list.txt.xz")
    icvl = reference_lines(reference_data / "icvl" / "icvl_test_list.txt.xz")
    assert len(nyu) == 8252 and nyu[0] == "test/depth_1_0000001.png"
    assert len(icvl) == 1596


def test_reference_paths_module_names_existing_files():
    from deepmodel.data.datasets import reference

    for name in ("NYU_LABELS", "NYU_LIST", "NYU_RAW_FRAME", "ICVL_LABELS", "ICVL_LIST", "GOLDEN"):
        assert getattr(reference, name).is_file(), name
    assert len(reference.prediction_files(reference.NYU_PREDICTIONS)) == 2
    assert len(reference.prediction_files(reference.ICVL_PREDICTIONS)) == 2
    assert len(list(reference.NYU_TEST_CROPS.glob("*.png"))) == 5


def test_tools_run_from_another_working_directory(tmp_path):
    """The README's published-predictions command with the repository's paths, run elsewhere."""
    ref = ROOT / "data" / "reference" / "nyu"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "test_net.py"),
         "--predictions", str(ref / "predictions" / "ICCVW17_NYU_DeepPrior++.txt.xz"),
         "--labels", str(ref / "nyu_test_groundtruth_label.txt.xz"), "--out", "cmp"],
        cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "12.238" in proc.stdout and "ICCVW17_NYU_DeepPrior++ " in proc.stdout
    assert (tmp_path / "cmp" / "eval.json").is_file()


def test_scripts_with_a_shebang_are_executable(tmp_path):
    """Every tracked file starting with ``#!`` is committed executable (the docs run them as
    ``tools/score_real.py ...``), and one runs that way from a fresh shell."""
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout: the tracked modes are unknown")
    out = subprocess.run(["git", "ls-files", "-s", "-z"], cwd=ROOT, capture_output=True, check=True)
    not_exec = []
    for entry in out.stdout.decode().split("\0"):
        if not entry:
            continue
        meta, path = entry.split("\t", 1)
        file = ROOT / path
        if file.is_file() and not file.is_symlink() and file.read_bytes()[:2] == b"#!" \
                and meta.split()[0] != "100755":
            not_exec.append(path)
    assert not_exec == [], f"scripts with a shebang committed without the executable bit: {not_exec}"
    env = dict(os.environ, PATH=str(pathlib.Path(sys.executable).parent) + os.pathsep + os.environ["PATH"])
    proc = subprocess.run([str(ROOT / "tools" / "score_real.py"), "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True)
    assert proc.returncode == 0 and "--weights" in proc.stdout, proc.stderr


def readme_table_cells(text):
    """The cells of the Markdown tables in ``text`` (header and separator rows included)."""
    cells = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("|") and line.endswith("|"):
            cells += [c.strip() for c in line[1:-1].split("|")]
    return cells


def test_readme_table_cells_are_read():
    assert readme_table_cells("x\n| a b | c |\n|---|---|\n| d e f | g |\n") == \
        ["a b", "c", "---", "---", "d e f", "g"]


def test_readme_is_short_for_a_first_visit():
    """The README is for a first visit: at most 8 KB, no table cell over 40 words, every relative
    link pointing at a file of the repository (figures and history live in docs/)."""
    import re

    text = (ROOT / "README.md").read_text()
    assert len(text.encode()) <= 8192, f"README.md is {len(text.encode())} bytes"
    long = [c for c in readme_table_cells(text) if len(c.split()) > 40]
    assert not long, f"README table cells over 40 words: {long}"
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text):
        if "://" not in target:
            assert (ROOT / target).exists(), f"README.md links to {target}, which is missing"
