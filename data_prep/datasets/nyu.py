"""The NYU Hand Pose Dataset exactly as distributed: depth PNGs and ``joint_data.mat``.

Layout of a split folder (``<root>/train``, ``<root>/test``)::

    joint_data.mat            joint_names (1, 36) cell, joint_uvd and joint_xyz (3 cameras, N, 36, 3)
    depth_1_0000001.png ...   camera 1, 640x480, 8-bit 3-channel: depth (mm) = blue + 256 * green

Frame indices in this project are 0-based (``frame`` i is file ``depth_1_%07d.png % (i + 1)``).
uvd: u, v pixels, d mm; xyz: mm, y up (``deepmodel.data.datasets.camera.NYU_CAMERA``). Camera index 0 is used.
"""
import io
import pathlib
import struct
import zlib

import cv2
import numpy as np
import scipy.io

from deepmodel.data.datasets.camera import NYU_CAMERA
from deepmodel.data.datasets.frames import (BadFrame, FrameTable, label_problems, neutralise,
                                            quiet_imdecode, read_bytes, read_theta)
from deepmodel.data.records.split import to_normalised
from deepmodel.plumbing import InputError

NUM_JOINTS = 36
PALM_JOINT = 34            # crop centre of the published pipeline
CUBE_MM = 300.0            # crop cube edge
TEST_FRAMES = 8252         # frames of the distributed test split
SUBJECT2_FIRST_FRAME = 2440  # 0-based: test frames 2441-8252 (1-based) are subject 2
SUBJECT2_SCALE = 0.87      # the released pipeline's cube factor for test subject 2
IMAGE_SHAPE = (480, 640)
MAT_HEADER = b"MATLAB 5.0 MAT-file, Platform: posix, written by deepmodel.data.datasets.nyu".ljust(116)

# The dataset's joint names, in joint-id order (F1 little ... F4 index, TH thumb; KNU3 tip end).
JOINT_NAMES = tuple(
    [f"F{f}_KNU{k}_{s}" for f in (1, 2, 3, 4) for k in (3, 2, 1) for s in "AB"]
    + [f"TH_KNU{k}_{s}" for k in (3, 2, 1) for s in "AB"]
    + [f"PALM_{i}" for i in range(1, 7)])



def depth_file(split_dir, frame):
    """Path of 0-based ``frame``'s camera-1 depth PNG in a split folder."""
    return pathlib.Path(split_dir) / f"depth_1_{int(frame) + 1:07d}.png"


def decode_depth(buf):
    """NYU depth PNG bytes -> ``(480, 640)`` uint16 depth in mm (0 = no reading).

    Raises :class:`BadFrame` for bytes that are not a complete 640x480 3-channel 8-bit PNG.
    Widened to uint16 before combining: with NumPy 2, ``uint8 * 256`` would overflow.
    """
    arr = np.frombuffer(buf, dtype=np.uint8)
    if arr.size < 8 or bytes(arr[:8]) != b"\x89PNG\r\n\x1a\n":
        raise BadFrame("not a PNG file")
    if bytes(arr[-12:]) != b"\x00\x00\x00\x00IEND\xaeB`\x82":
        raise BadFrame("truncated PNG (no IEND chunk at the end)")
    img = quiet_imdecode(arr, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadFrame("PNG data cannot be decoded")
    if img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] < 2:
        raise BadFrame(f"expected an 8-bit colour PNG, got dtype {img.dtype} shape {img.shape}")
    if img.shape[:2] != IMAGE_SHAPE:
        raise BadFrame(f"expected 640x480 pixels, got {img.shape[1]}x{img.shape[0]}")
    return depth_of_image(img)


def depth_of_image(img):
    """An NYU-encoded image as OpenCV reads it (``(H, W, 3+)`` uint8, BGR) -> ``(H, W)`` uint16 mm:
    blue + 256 * green."""
    depth = img[:, :, 1].astype(np.uint16)
    depth <<= 8
    depth |= img[:, :, 0]
    return depth


def read_depth(path):
    """Read one NYU depth PNG -> ``(480, 640)`` uint16 mm. Raises :class:`BadFrame` naming the problem."""
    return decode_depth(read_bytes(path))


def encode_depth(depth, compression=1):
    """``(H, W)`` depth in mm (uint16, or any numeric dtype: rounded, clipped to 0..65535) -> PNG bytes.

    The NYU encoding: an 8-bit RGB PNG with red = 0, green = high byte, blue = low byte (so OpenCV,
    reading BGR, sees blue + 256 * green). Written directly (rows with the PNG "sub" filter, zlib
    level ``compression`` 0-9): faster than a general encoder that tries filters per row.
    """
    d = np.asarray(depth)
    if d.dtype != np.uint16:
        d = np.clip(np.rint(d), 0, 65535).astype(np.uint16)
    h, w = d.shape
    rgb = np.zeros((h, w, 3), np.uint8)
    rgb[:, :, 1] = d >> 8
    rgb[:, :, 2] = d & 0xFF
    raw = rgb.reshape(h, 3 * w)
    rows = np.empty((h, 1 + 3 * w), np.uint8)
    rows[:, 0] = 1                                   # filter type 1 (sub): byte minus byte 3 to the left
    rows[:, 1:4] = raw[:, :3]
    np.subtract(raw[:, 3:], raw[:, :-3], out=rows[:, 4:])   # uint8 arithmetic wraps mod 256, as PNG wants
    return _png(w, h, zlib.compress(rows.tobytes(), int(compression)))


def _png(width, height, idat):
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)   # 8-bit RGB, no interlace
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


class JointData:
    """Labels of one split (camera 0): ``uvd``, ``xyz`` ``(N, 36, 3)`` float64; ``names`` (36 str)."""

    def __init__(self, uvd, xyz, names=JOINT_NAMES):
        self.uvd, self.xyz, self.names = uvd, xyz, tuple(names)

    def __len__(self):
        return len(self.xyz)


def load_joint_data(path):
    """Read ``joint_data.mat`` -> :class:`JointData` (camera index 0).

    Every problem is an :class:`InputError` naming the file: missing, not a MATLAB file, a missing
    variable, a shape other than ``(cameras, N, 36, 3)``, uvd and xyz disagreeing on N.
    """
    path = pathlib.Path(path)
    if not path.is_file():
        raise InputError(f"{path}: missing (an NYU split folder holds joint_data.mat and depth_1_*.png)")
    try:
        mat = scipy.io.loadmat(str(path), variable_names=["joint_names", "joint_uvd", "joint_xyz"])
    except Exception as err:  # scipy raises several types for a broken file
        raise InputError(f"{path}: not a readable MATLAB file ({err})") from None
    arrays = {}
    for key in ("joint_uvd", "joint_xyz"):
        if key not in mat:
            raise InputError(f"{path}: no variable {key!r} (expected joint_names, joint_uvd, joint_xyz)")
        a = np.asarray(mat[key])
        if a.ndim != 4 or a.shape[0] < 1 or a.shape[2] != NUM_JOINTS or a.shape[3] != 3:
            raise InputError(f"{path}: {key} has shape {a.shape}, expected (cameras, N, {NUM_JOINTS}, 3)")
        if not np.issubdtype(a.dtype, np.number):
            raise InputError(f"{path}: {key} is not numeric (dtype {a.dtype})")
        arrays[key] = a[0].astype(np.float64)
    uvd, xyz = arrays["joint_uvd"], arrays["joint_xyz"]
    if len(uvd) != len(xyz):
        raise InputError(f"{path}: joint_uvd has {len(uvd)} frames but joint_xyz has {len(xyz)}")
    if len(xyz) == 0:
        raise InputError(f"{path}: no frames (N = 0)")
    names = JOINT_NAMES
    if "joint_names" in mat:
        raw = np.asarray(mat["joint_names"]).ravel()
        try:
            found = tuple(str(np.asarray(n).ravel()[0]) for n in raw)
        except IndexError:
            found = ()
        if len(found) == NUM_JOINTS:
            names = found
    return JointData(uvd, xyz, names)


def _mat_double_array(fh, name, arrays, cameras):
    """Write one MAT v5 double matrix ``name`` of dims ``(cameras, N, J, 3)`` whose camera slots
    all hold ``arrays`` ``(N, J, 3)``, one ``(joint, axis)`` column at a time in MATLAB's
    column-major order: memory stays that of one column, whatever N. ``arrays``: an array, or a
    store with ``n``, ``row_shape`` and ``column(c)`` (column ``c = joint * 3 + axis``, as
    ``deepmodel.data.synthetic.nyu.ColumnFile``)."""
    if hasattr(arrays, "column"):
        (n, (joints, axes)), column = (arrays.n, arrays.row_shape), arrays.column
    else:
        n, joints, axes = arrays.shape

        def column(c):
            return arrays[:, c // axes, c % axes]
    dims = (cameras, n, joints, axes)
    nbytes = 8 * cameras * n * joints * axes
    raw = name.encode()
    head = (struct.pack("<IIII", 6, 8, 6, 0)                          # flags: double, real
            + struct.pack("<II", 5, 4 * len(dims)) + struct.pack("<4i", *dims)
            + struct.pack("<II", 1, len(raw)) + raw + b"\0" * (-len(raw) % 8)
            + struct.pack("<II", 9, nbytes))
    fh.write(struct.pack("<II", 14, len(head) + nbytes) + head)
    for axis in range(axes):
        for joint in range(joints):
            values = np.asarray(column(joint * axes + axis), "<f8")
            fh.write(np.repeat(values, cameras).tobytes())


def save_joint_data(path, uvd, xyz, names=JOINT_NAMES, cameras=3):
    """Write ``joint_data.mat`` like the distributed one: ``(cameras, N, 36, 3)`` arrays.

    ``uvd``, ``xyz``: ``(N, 36, 3)`` for camera 0 (the only view here; arrays, or column stores
    read a column at a time, :func:`_mat_double_array`);
    the other cameras' slots repeat camera 0 so the arrays have the distributed shape. The file
    is written column by column (memory flat in N), byte for byte what ``scipy.io.savemat``
    writes for these arrays, with a fixed text header (the file is a function of its arrays).
    """
    cells = np.empty((1, len(names)), dtype=object)
    for i, n in enumerate(names):
        cells[0, i] = n
    buf = io.BytesIO()
    scipy.io.savemat(buf, {"joint_names": cells}, do_compression=False)
    names_element = buf.getvalue()[128:]
    with open(path, "wb") as fh:
        fh.write(MAT_HEADER + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM")
        fh.write(names_element)
        _mat_double_array(fh, "joint_uvd", uvd, cameras)
        _mat_double_array(fh, "joint_xyz", xyz, cameras)


def cube_sizes(n, split, subject2=True, cube_mm=CUBE_MM):
    """``(n,)`` cube edge in mm per frame: ``cube_mm`` (300), times 0.87 for NYU test subject 2 if asked."""
    cube = np.full(int(n), float(cube_mm))
    if subject2 and split == "test":
        cube[SUBJECT2_FIRST_FRAME:] = cube_mm * SUBJECT2_SCALE
    return cube


def keypoint_joints():
    """``(31,)`` NYU joint of each hand-model keypoint (``HandModel.nyu().nyu_joint_of_keypoint``)."""
    from deepmodel.model.hand_model import HandModel
    return np.asarray(HandModel.nyu().nyu_joint_of_keypoint, dtype=np.int64)


def keypoint_labels(xyz, com, cube, joints):
    """Network targets: ``(N, 36, 3)`` joints (mm), com ``(N, 3)`` mm, cube ``(N,)`` mm -> ``(N, 93)``.

    ``joints``: ``(31,)`` NYU joint of each keypoint (:func:`keypoint_joints`). The keypoints' xyz
    minus com, divided by cube/2, clipped to [-1, 1] (``deepmodel.data.records.split.to_normalised``),
    flattened x0,y0,z0,x1,...
    """
    kp = np.asarray(xyz, np.float64)[:, np.asarray(joints)]
    return to_normalised(kp, com, cube).reshape(len(kp), -1)


def split_table(root, split, subject2=True, cube_mm=CUBE_MM):
    """A :class:`deepmodel.data.datasets.frames.FrameTable` for ``<root>/<split>`` (NYU layout): raw files -> frames.

    Crop centre: joint 34's uvd; com: joint 34's xyz; cube: ``cube_mm`` (300), or 0.87 times that
    (261 mm) for test subject 2 when ``subject2``. ``theta.npy`` ``(N, 26)`` in the split folder (synthetic data) is loaded as
    the true angles. Frames whose labels cannot be cropped (centre depth not > 0, a non-finite
    joint) are marked bad with the reason.
    """
    root = pathlib.Path(root)
    if not root.is_dir():
        raise InputError(f"{root}: no such folder (the NYU root holds train/ and test/)")
    split_dir = root / split
    if not split_dir.is_dir():
        raise InputError(f"{split_dir}: missing (the NYU root holds train/ and test/)")
    jd = load_joint_data(split_dir / "joint_data.mat")
    n = len(jd)
    joints = keypoint_joints()
    used = sorted(set(joints.tolist()) | {PALM_JOINT})
    bad = label_problems(jd.xyz[:, used], jd.uvd[:, PALM_JOINT], PALM_JOINT)
    xyz, center = neutralise(bad, jd.xyz, jd.uvd[:, PALM_JOINT])
    com = xyz[:, PALM_JOINT].copy()
    cube = cube_sizes(n, split, subject2, cube_mm)
    labels = keypoint_labels(xyz, com, cube, joints)
    theta = read_theta(split_dir / "theta.npy", n, "frame of joint_data.mat")
    paths = [str(depth_file(split_dir, i)) for i in range(n)]
    return FrameTable(dataset="nyu", split=split, paths=paths, center_uvd=center, com=com, cube=cube,
                      labels=labels, frame=np.arange(n), camera=NYU_CAMERA, decoder="nyu",
                      theta=theta, bad=bad, keypoints_mm=xyz[:, joints])
