"""Test fixtures: the repository's reference data, real Caffe nets from text, the hand model."""
import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "data" / "reference"


@pytest.fixture(scope="session")
def reference_data():
    """``data/reference/`` of the repository (public reference data, see its README.md)."""
    if not REFERENCE.is_dir():
        pytest.fail(f"{REFERENCE} is missing: it is part of the repository (git checkout it)")
    return REFERENCE


@pytest.fixture(scope="session")
def project_root():
    return ROOT


@pytest.fixture(autouse=True)
def _quiet_glog(monkeypatch):
    # Caffe logs every net it builds; keep test output readable.
    monkeypatch.setenv("GLOG_minloglevel", os.environ.get("GLOG_minloglevel", "2"))


@pytest.fixture
def make_net(tmp_path):
    """Build a real ``caffe.Net`` from prototxt text: ``make_net(text, phase="TEST", weights=None)``.

    The text is written to a temporary file (Caffe reads nets from files); ``force_backward``
    is the caller's to set in the text.
    """
    import caffe

    caffe.set_mode_cpu()
    counter = {"n": 0}

    def build(text, phase="TEST", weights=None):
        counter["n"] += 1
        path = tmp_path / f"net{counter['n']}.prototxt"
        path.write_text(text)
        ph = caffe.TRAIN if phase == "TRAIN" else caffe.TEST
        if weights:
            return caffe.Net(str(path), str(weights), ph)
        return caffe.Net(str(path), ph)

    return build


@pytest.fixture(scope="module")
def model():
    """The default hand model, ``HandModel.nyu()`` (one per test module)."""
    from deepmodel.model.hand_model import HandModel

    return HandModel.nyu()


@pytest.fixture(scope="module")
def golden(reference_data):
    """The released C++ layer's outputs: ``theta47``, ``joints93``, ``top_grad93``,
    ``bottom_diff47``, each ``(16, width)`` float64."""
    import json

    import numpy as np

    g = json.loads((reference_data / "golden" / "deepmodel_layer_golden.json").read_text())
    return {k: np.array(v, dtype=np.float64) for k, v in g.items() if k != "about"}
