"""A tiny NYU-layout LMDB set for tests of the nets and of training (agreed LMDB interface).

``write_tiny_lmdbs(folder, n_train, n_test)`` writes the LMDBs and meta file of the splits
``nyu_train`` and ``nyu_test`` with the project's writer (``deepmodel.data.records.split.LmdbSplit``). Labels are a learnable function of the input: the joints are the hand
model's keypoints for small random parameters (global translation and a few finger angles), and
the depth image encodes the translation as a bright square, so a few iterations already lower the
loss of every variant.
"""
import pathlib

import numpy as np


def _write_split(split, arrays):
    """Aligned LMDBs of one split (an LmdbSplit) with the project's writer."""
    from deepmodel.data.records import datum

    rows = {kind: datum.encode_rows(arr.reshape(len(arr), -1), shape)
            for kind, (arr, shape) in arrays.items()}
    with split.writer(list(arrays), map_size=1 << 30) as out:
        for i in range(len(next(iter(rows.values())))):
            out.put({kind: r[i] for kind, r in rows.items()})
        out.commit()


def write_tiny_lmdbs(folder, n_train=64, n_test=32, seed=0, back_every=0):
    """Write the tiny set into ``folder``; returns the folder (pathlib.Path). With
    ``back_every`` = k, every k-th record's hand is turned half round about y (its back to the
    camera)."""
    from deepmodel.model.hand_model import HandModel

    from deepmodel.data.records.split import LmdbSplit

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = HandModel.nyu()
    rng = np.random.default_rng(seed)
    for name, n in (("train", n_train), ("test", n_test)):
        split = LmdbSplit.of(folder, "nyu", name)
        theta = np.zeros((n, 26))
        theta[:, :3] = rng.uniform(-0.2, 0.2, (n, 3))          # translation, normalised units
        if back_every:
            theta[::back_every, model.free_column("global rotation y")] = np.pi
        joints = model.forward(theta).reshape(n, 93)
        depth = np.full((n, 1, 128, 128), 1.0)
        u = (64 + 100 * theta[:, 0]).astype(int)
        v = (64 - 100 * theta[:, 1]).astype(int)
        for i in range(n):                                     # test data only, not a hot path
            depth[i, 0, v[i] - 20:v[i] + 20, u[i] - 20:u[i] + 20] = theta[i, 2]
        _write_split(split, {"depth": (depth, (1, 128, 128)),
                                     "joint": (np.clip(joints, -1, 1), (93, 1, 1)),
                                     "theta": (theta, (26, 1, 1))})
        split.write_meta(com=np.tile([0.0, 0.0, 500.0], (n, 1)), cube=np.full(n, 300.0),
                         frame=np.arange(n), theta=theta)
    return folder
