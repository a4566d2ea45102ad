"""A synthetic hand-depth dataset in ICVL's exact on-disk layout, rendered from the hand model.

``python tools/synthetic_icvl.py --out data/synthetic_icvl`` writes what the ICVL reader
(``data_prep/datasets/icvl.py``) reads from a real ICVL folder::

    <out>/Training/labels.txt                   <relative path> u v d x 16 joints, one line a frame
    <out>/Training/Depth/synth/image_0000000.png   320x240 16-bit depth in mm (0 = no reading)
    <out>/Training/theta.npy                    (N, 26) true angles (HandModel theta), line order
    <out>/Testing/test_seq_1.txt, test_seq_2.txt   the two test sequences (labels as above)
    <out>/Testing/Depth/test_seq_{1,2}/image_*.png
    <out>/Testing/theta.npy                     (N1 + N2, 26), sequence 1 then sequence 2
    <out>/synthetic.json                        parameters; written last (set complete)

The hand is the NYU hand (``nyu31``) as the paper uses it on ICVL, seen as ICVL sees it: its 16
joints are the keypoints of the model's joint set ``icvl16`` (docs/icvl.md), mirrored in x (ICVL's
hand is the model's other hand), at the size the NYU hand has on real ICVL labels (the joint set's
``mm_per_unit``, 102.2 mm per model unit); the poses, the body and the sensor are the NYU
generator's (``data_prep/synthetic/nyu.py``), the camera ICVL's (241.42 px, 320x240), the palm
200-450 mm from the camera around the image centre, as in ICVL's test labels. The true angles
reproduce the labels exactly: with the palm (joint 0) as the crop centre,
``labels_normalised = mm_per_unit / (cube / 2) * joint_set.apply(forward(theta))``.
"""
import json
import os
import pathlib
import time

import cv2
import numpy as np

from deepmodel.data.datasets import icvl
from deepmodel.data.datasets.camera import ICVL_CAMERA
from deepmodel.data.synthetic.nyu import BATCH, ColumnFile, RowFile, render_chunks, render_depth
from deepmodel.data.synthetic.poses import PoseSampler
from deepmodel.plumbing import PROJECT, InputError, atomic_path

DEFAULT_OUT = PROJECT / "data" / "synthetic_icvl"
DEFAULT_TRAIN = 12000
DEFAULT_TEST = (1000, 1000)        # test sequences 1 and 2
DEFAULT_SEED = 0
FORMAT_VERSION = 1
JOINT_SET = "icvl16"
THICKNESS = 0.85                  # body radii relative to the NYU generator's (a smaller hand)
_SPLIT_CODE = {"train": 0, "test_seq_1": 1, "test_seq_2": 2}


def hand_at_palm(sampler, theta):
    """Move theta's global translation so that the palm joint (ICVL joint 0) is the origin."""
    js = sampler.model.joint_set(JOINT_SET)
    kp = sampler.model.forward(theta)
    theta = theta.copy()
    cols = [sampler.col[sampler.model.param_id(f"global translation {a}")] for a in "xyz"]
    theta[:, cols] -= kp[:, js.keypoints[0]]
    return theta


def make_icvl_frames(sampler, rng, n, background="wall", camera=ICVL_CAMERA):
    """Render ``n`` frames -> (depth ``(n, 240, 320)`` uint16 mm, uvd ``(n, 16, 3)``, theta ``(n, 26)``)."""
    model = sampler.model
    js = model.joint_set(JOINT_SET)
    theta = hand_at_palm(sampler, sampler.sample(rng, n))
    kp = model.forward(theta)                                          # model frame, palm at 0
    palm_uvd = np.stack([rng.uniform(110, 210, n), rng.uniform(95, 170, n),
                         rng.uniform(260, 450, n)], axis=1)
    palm = camera.uvd_to_xyz(palm_uvd)
    kp_mm = palm[:, None, :] + js.mm_per_unit * kp * js.sign           # ICVL's (mirrored) hand
    joints = kp_mm[:, js.keypoints]
    joints[:, 0] = palm                                                  # exact
    depth = render_depth(sampler.body, kp_mm, palm, rng, camera, background, thickness=THICKNESS)
    return depth, camera.xyz_to_uvd(joints), theta


_G = {}


def _worker_init(background):
    from deepmodel.model.hand_model import HandModel
    _G["sampler"] = PoseSampler(HandModel.nyu())
    _G["background"] = background


def _make_chunk(task):
    """Render and write frames ``[start, start + count)`` of a sequence -> (name, start, uvd, theta)."""
    folder, name, start, count, seed = task
    rng = np.random.default_rng([seed, _SPLIT_CODE[name], start])
    out_uvd, out_theta = [], []
    for b in range(0, count, BATCH):
        k = min(BATCH, count - b)
        depth, uvd, theta = make_icvl_frames(_G["sampler"], rng, k, _G["background"])
        for i in range(k):
            ok, buf = cv2.imencode(".png", depth[i], [cv2.IMWRITE_PNG_COMPRESSION, 1])
            (folder / image_name(name, start + b + i)).write_bytes(buf.tobytes())
        out_uvd.append(uvd)
        out_theta.append(theta)
    return name, start, np.concatenate(out_uvd), np.concatenate(out_theta)


def image_name(sequence, i):
    """The relative path (as in a label line) of frame ``i`` of a sequence."""
    sub = "synth" if sequence == "train" else sequence
    return f"{sub}/image_{i:07d}.png"


def label_lines(sequence, uvd, first=0):
    """``(N, 16, 3)`` uvd of frames ``first, first + 1, ...`` -> the label file's text:
    ``<relative path> u v d ...`` per line."""
    return "".join(image_name(sequence, first + i) + " " + " ".join(f"{v:.4f}" for v in row) + "\n"
                   for i, row in enumerate(uvd.reshape(len(uvd), -1)))


def is_current(root):
    """A finished set written by this version of the generator."""
    path = pathlib.Path(root) / "synthetic.json"
    try:
        return json.loads(path.read_text()).get("format") == FORMAT_VERSION
    except (OSError, ValueError):
        return False


def generate(out, n_train=DEFAULT_TRAIN, n_test=DEFAULT_TEST, seed=DEFAULT_SEED, workers=None,
             progress=True, background="wall", chunk=64):
    """Write the synthetic ICVL set to ``out`` (built under a temporary name, renamed when
    complete). Deterministic whatever ``workers`` is. Returns the parameters written."""
    from deepmodel.model.hand_model import HandModel

    out = pathlib.Path(out)
    js = HandModel.nyu().joint_set(JOINT_SET)
    params = dict(format=FORMAT_VERSION, train=int(n_train), test=[int(t) for t in n_test],
                  seed=int(seed), background=background, camera="ICVL", model="nyu31",
                  joint_set=JOINT_SET, mirror_x=js.mirror_x, mm_per_unit=js.mm_per_unit,
                  cube_mm=icvl.CUBE_MM)
    if out.exists() and not out.is_dir():
        raise InputError(f"{out}: exists and is not a folder")
    workers = workers or os.cpu_count() or 1
    sequences = (("train", "Training", n_train), ("test_seq_1", "Testing", n_test[0]),
                 ("test_seq_2", "Testing", n_test[1]))
    t0 = time.perf_counter()
    with atomic_path(out) as tmp:
        tasks, labels = [], {}
        for name, folder, n in sequences:
            sub = tmp / folder / "Depth" / pathlib.Path(image_name(name, 0)).parent
            sub.mkdir(parents=True, exist_ok=True)
            tasks += [(tmp / folder / "Depth", name, s, min(chunk, n - s), seed)
                      for s in range(0, n, chunk)]
        # labels go to scratch column files as the chunks come: memory flat in the frame count
        sizes = {name: n for name, _, n in sequences}
        folders = {name: folder for name, folder, _ in sequences}
        theta_dtype = np.dtype(np.float64)
        for name, start, uvd, theta in render_chunks(
                _make_chunk, _worker_init, (background,), tasks, workers, n_train + sum(n_test),
                "synthetic ICVL frames", progress):
            if name not in labels:
                scratch = tmp / folders[name]
                labels[name] = (ColumnFile(scratch / f".{name}_uvd.scratch", sizes[name], uvd.shape[1:]),
                                ColumnFile(scratch / f".{name}_theta.scratch", sizes[name],
                                           theta.shape[1:]))
                theta_dtype = theta.dtype
            labels[name][0].put(start, uvd)
            labels[name][1].put(start, theta)
        rows = {"Training": 0, "Testing": 0}
        for name, folder, n in sequences:
            rows[folder] += n
        theta_files = {folder: RowFile(tmp / folder / "theta.npy", r, (26,), theta_dtype)
                       for folder, r in rows.items()}
        row = {"Training": 0, "Testing": 0}
        for name, folder, n in sequences:
            label_file = tmp / folder / ("labels.txt" if name == "train" else f"{name}.txt")
            with open(label_file, "w") as fh:
                for a in range(0, n, 4096):           # a block of lines at a time
                    fh.write(label_lines(name, labels[name][0].rows(a, a + 4096), a))
                    theta_files[folder].put(row[folder] + a, labels[name][1].rows(a, a + 4096))
            row[folder] += n
            for store in labels.get(name, ()):
                store.close()
        for f in theta_files.values():
            f.close()
        params["seconds"] = round(time.perf_counter() - t0, 1)
        (tmp / "synthetic.json").write_text(json.dumps(params, indent=1) + "\n")
    return params
