"""A tiny NYU-layout LMDB set for tests of the nets and of training (agreed LMDB interface).

``write_tiny_lmdbs(folder, n_train, n_test)`` writes ``nyu_{train,test}_{depth,joint,theta}``
(Datum float_data, keys '%08d' % i, same order in every LMDB of a split) and
``nyu_{split}_meta.npz``. Labels are a learnable function of the input: the joints are the hand
model's keypoints for small random parameters (global translation and a few finger angles), and
the depth image encodes the translation as a bright square, so a few iterations already lower the
loss of every variant.
"""
import pathlib

import lmdb
import numpy as np


def _datums(arr):
    from caffe.proto import caffe_pb2

    arr = np.asarray(arr, dtype=np.float32)
    c, h, w = arr.shape[1:]
    for row in arr:
        d = caffe_pb2.Datum()
        d.channels, d.height, d.width = c, h, w
        d.float_data.extend(row.ravel().tolist())
        yield d.SerializeToString()


def _write(path, arr):
    env = lmdb.open(str(path), map_size=1 << 30)
    with env.begin(write=True) as txn:
        for i, value in enumerate(_datums(arr)):
            txn.put(b"%08d" % i, value)
    env.close()


def write_tiny_lmdbs(folder, n_train=64, n_test=32, seed=0):
    """Write the tiny set into ``folder``; returns the folder (pathlib.Path)."""
    from hand_model import HandModel

    folder = pathlib.Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = HandModel.nyu()
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("test", n_test)):
        theta = np.zeros((n, 26))
        theta[:, :3] = rng.uniform(-0.2, 0.2, (n, 3))          # translation, normalised units
        joints = model.forward(theta).reshape(n, 93)
        depth = np.full((n, 1, 128, 128), 1.0)
        u = (64 + 100 * theta[:, 0]).astype(int)
        v = (64 - 100 * theta[:, 1]).astype(int)
        for i in range(n):                                     # test data only, not a hot path
            depth[i, 0, v[i] - 20:v[i] + 20, u[i] - 20:u[i] + 20] = theta[i, 2]
        _write(folder / f"nyu_{split}_depth", depth)
        _write(folder / f"nyu_{split}_joint", np.clip(joints, -1, 1).reshape(n, 93, 1, 1))
        _write(folder / f"nyu_{split}_theta", theta.reshape(n, 26, 1, 1))
        np.savez(folder / f"nyu_{split}_meta.npz", com=np.tile([0.0, 0.0, 500.0], (n, 1)),
                 cube=np.full(n, 300.0), frame=np.arange(n), theta=theta)
    return folder
