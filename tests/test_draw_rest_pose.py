"""tools/draw_rest_pose.py: the figure, the generated tables and the page they live in."""
import subprocess
import sys

import numpy as np
import pytest

from deepmodel.model.hand_model import HandModel


@pytest.fixture(scope="module")
def tool():
    from deepmodel.tools import draw_rest_pose
    return draw_rest_pose


def cli(project_root, *args):
    return subprocess.run([sys.executable, str(project_root / "tools" / "draw_rest_pose.py"), *args],
                          capture_output=True, text=True, cwd=project_root, timeout=120)


def test_doc_tables_are_up_to_date(tool, project_root):
    doc = (project_root / "docs" / "hand-model.md").read_text()
    block = doc.split(tool.BEGIN)[1].split(tool.END)[0]
    assert block.strip() == tool.tables(HandModel.nyu()).strip()
    assert "img/rest_pose.png" in doc and (project_root / "docs" / "img" / "rest_pose.png").is_file()


def test_parameter_table_against_released_files(tool, reference_data):
    d = reference_data / "deepmodel-config"
    low = np.array((d / "DofConstraintLow.txt").read_text().split(), dtype=np.float64)
    up = np.array((d / "DofConstraintUp.txt").read_text().split(), dtype=np.float64)
    init = np.array((d / "InitialParameters.txt").read_text().split(), dtype=np.float64)
    fixed = {int(x) for x in (d / "DofFixedId.txt").read_text().split()[1:]}
    text = tool.tables(HandModel.nyu())
    rows = [r.split("|")[1:-1] for r in text.splitlines() if r.startswith("| ") and r.split("|")[1].strip().isdigit()]
    params = [[c.strip() for c in r] for r in rows if len(r) == 12]
    keypoints = [[c.strip() for c in r] for r in rows if len(r) == 11]
    assert [int(r[0]) for r in params] == list(range(47)) and len(keypoints) == 31
    for r in params:
        i = int(r[0])
        assert float(r[7]) == pytest.approx(init[i], abs=1e-6)
        assert r[8] == ("fixed" if i in fixed else "free")
        if i in fixed:
            assert r[10] == r[11] == "-"
        elif abs(low[i]) >= 1000:
            assert r[10] == r[11] == "unbounded"
        else:
            assert float(r[10]) == pytest.approx(low[i], rel=1e-5) and float(r[11]) == pytest.approx(up[i], rel=1e-5)
    palm = keypoints[24]
    assert [float(v) for v in palm[8:11]] == pytest.approx([0.0423, 0.1687, -0.0626], abs=1e-4)


def test_cli_draws_figure(project_root, tmp_path):
    import matplotlib.image
    out = tmp_path / "sub" / "pose.png"
    res = cli(project_root, "--out", str(out))
    assert res.returncode == 0, res.stderr
    img = matplotlib.image.imread(out)
    assert img.shape[0] > 400 and img.shape[1] > 800
    assert img[..., :3].std() > 0.05  # not a blank image
    assert [p.name for p in out.parent.iterdir()] == ["pose.png"]  # no temporary left behind


def test_cli_markdown_block(project_root, tmp_path, tool):
    md = tmp_path / "page.md"
    md.write_text(f"# title\n\n{tool.BEGIN}\nSTALE-TABLES\n{tool.END}\n\nafter\n")
    res = cli(project_root, "--markdown", str(md))
    assert res.returncode == 0, res.stderr
    text = md.read_text()
    assert text.startswith("# title\n\n") and text.endswith(f"{tool.END}\n\nafter\n")
    assert "STALE-TABLES" not in text and "| 46 | index DIP flexion |" in text
    res = cli(project_root, "--markdown", str(md))
    assert "unchanged" in res.stdout


@pytest.mark.parametrize("args,message", [
    (["--out", "x.jpg"], "--out x.jpg: expected a .png file name"),
    (["--model", "nosuch"], "model 'nosuch': no file nosuch.json"),
    (["--markdown", "no/such/page.md"], "no/such/page.md: cannot read"),
])
def test_cli_bad_input(project_root, args, message):
    res = cli(project_root, *args)
    assert res.returncode == 2
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {message}")
    assert "Traceback" not in res.stderr


def test_cli_markdown_without_markers(project_root, tmp_path):
    md = tmp_path / "page.md"
    md.write_text("# no markers\n")
    res = cli(project_root, "--markdown", str(md))
    assert res.returncode == 2 and "needs one" in res.stderr
    assert md.read_text() == "# no markers\n"
