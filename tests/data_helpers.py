"""Helpers for the tests: the data pipeline's independent formulas, reading reference files."""
import lzma
import os
import subprocess
import sys

import numpy as np

# keypoint k of the hand model takes NYU joint SPEC_MAP[k] (the hand model spec, docs/hand-model.md)
SPEC_MAP = [0, 1, 2, 3, 4, 6, 7, 8, 9, 10, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 5, 11, 17, 23,
            32, 30, 31, 28, 27, 25, 24]
FX, FY, CX, CY = 588.03, 587.07, 320.0, 240.0     # NYU camera (the dataset's published intrinsics)


def reference_lines(path):
    """The lines of a reference text file (``.txt.xz`` as stored in data/reference, or plain)."""
    opener = lzma.open if str(path).endswith(".xz") else open
    with opener(path, "rt") as fh:
        return fh.read().splitlines()


def nyu_uvd_to_xyz(uvd):
    """The datasets.md formulas, written out independently of deepmodel.data.datasets.camera."""
    uvd = np.asarray(uvd, np.float64)
    u, v, d = uvd[..., 0], uvd[..., 1], uvd[..., 2]
    return np.stack([(u - CX) * d / FX, (CY - v) * d / FY, d], axis=-1)


def nyu_xyz_to_uvd(xyz):
    xyz = np.asarray(xyz, np.float64)
    x, y, z = xyz[..., 0], xyz[..., 1], xyz[..., 2]
    return np.stack([CX + x * FX / z, CY - y * FY / z, z], axis=-1)


def make_synthetic(root, n_train, n_test, seed=0, workers=1):
    """A small synthetic NYU-format set (the real generator) in ``root``; returns root."""
    from deepmodel.data.synthetic import nyu as synthetic
    synthetic.generate(root, n_train=n_train, n_test=n_test, seed=seed, workers=workers, progress=False)
    return root


def run_module(project_root, *args, timeout=300, env_extra=None):
    """Run ``python -m <args>`` (or a script) in the project with the venv's Python."""
    env = dict(os.environ, GLOG_minloglevel="2", **(env_extra or {}))
    return subprocess.run([sys.executable, *map(str, args)], cwd=project_root, capture_output=True,
                          text=True, timeout=timeout, env=env)


def assert_one_line_error(proc, *needles):
    """Exit code 2, one ``error:`` line on stderr naming every needle, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    for n in needles:
        assert str(n) in lines[0], (n, lines[0])
    return lines[0]


def central_difference(f, x, h, per_sample=False):
    """Numerical gradient of ``f`` at ``x`` ``(N, P)`` by central differences with step ``h``.

    ``per_sample``: ``f`` returns one value per sample ``(N,)`` that depends only on that
    sample's row, so a whole column is stepped at once; otherwise ``f`` returns a scalar and every
    element is stepped on its own. Returns float64 of ``x``'s shape.
    """
    x = np.asarray(x, np.float64)
    num = np.zeros_like(x)
    cells = [(slice(None), i) for i in range(x.shape[1])] if per_sample else np.ndindex(*x.shape)
    for cell in cells:
        d = np.zeros_like(x)
        d[cell] = h
        num[cell] = (np.asarray(f(x + d), np.float64) - np.asarray(f(x - d), np.float64)) / (2 * h)
    return num


def rel_err(a, b):
    """``|a - b| / |b|`` (Frobenius norms)."""
    return np.linalg.norm(np.asarray(a) - np.asarray(b)) / np.linalg.norm(b)


def data_layer_net(sources, batch):
    """Prototxt text: one native Data layer (LMDB) per ``{top: source}``."""
    layers = []
    for top, src in sources.items():
        layers.append(f'layer {{ name: "{top}" type: "Data" top: "{top}" '
                      f'data_param {{ source: "{src}" backend: LMDB batch_size: {batch} }} }}')
    return 'name: "lmdb_round_trip"\n' + "\n".join(layers) + "\n"
