"""The project's Python layers as ONNX operators: the hand model's forward kinematics, the joint-set
selection and the keypoint turn (the crop turn is in :mod:`deepmodel.export.turn_ops`).

Each function adds nodes to a :class:`deepmodel.export.graph.Graph` and returns the name of its
output; inputs and outputs are float32 (Caffe's blobs), the arithmetic inside is float64 like the
layers' NumPy.

Forward kinematics from the model file (:class:`deepmodel.model.hand_model.HandModel`, e.g.
``python_layers/model/nyu31.json``): every keypoint's link is a list of elementary operations,
each a 4x4 homogeneous matrix. All links are padded to the longest list with identities and laid
out as ``S = K * M`` slots; one product ``theta @ A + b`` gives every slot's value (a rotation's
signed angle ``sign * (theta + init)``, a free translation's ``theta + init``, a bone's length, a
fixed parameter's ``init``), and every slot's matrix is ``A0 + cos v Bc + sin v Bs + v Bt`` with
constant 0/1/-1 tables (a rotation takes cos and sin, a translation v). A link's matrix is the
product of its slots; the keypoints' frames are then built level by level down the keypoint tree
(a level's frames = its parents' frames times its links), and a keypoint is its frame's origin.
"""
import numpy as np

from deepmodel.model.hand_model import _AXES, _PAIR


def _levels(parents):
    """Keypoints grouped by depth in the tree: ``(order, level_sizes)``, ``order`` the keypoints
    level by level (each level in increasing id)."""
    depth = {}

    def of(k):
        if k not in depth:
            depth[k] = 0 if parents[k] < 0 else of(parents[k]) + 1
        return depth[k]

    for k in range(len(parents)):
        of(k)
    levels = max(depth.values()) + 1
    order = [k for d in range(levels) for k in range(len(parents)) if depth[k] == d]
    return order, [sum(1 for k in depth if depth[k] == d) for d in range(levels)]


def _slot_tables(model, width):
    """``A (width, S)``, ``b (S,)``, ``B (S, 3, 16)``, ``A0 (S, 1, 16)``, ``order``, ``sizes``,
    ``M``: the tables of the module docstring, slots in level order of the keypoints."""
    order, sizes = _levels(model.parents)
    m = max(len(model.keypoint_ops[k]) for k in order)
    s = len(order) * m
    col = {int(p): j for j, p in enumerate(model.free_ids)} if width == model.num_free else \
        {int(p): int(p) for p in model.free_ids}
    a, b = np.zeros((width, s)), np.zeros(s)
    big, a0 = np.zeros((s, 3, 4, 4)), np.tile(np.eye(4), (s, 1, 1))
    for row, k in enumerate(order):
        for j, (op, pid, length) in enumerate(model.keypoint_ops[k]):
            slot, axis = row * m + j, _AXES[op[1]]
            sign = model.rotation_sign[op[1]] if op[0] == "R" else 1.0
            if pid is None:
                b[slot] = length
            else:
                b[slot] = sign * model.init[pid]
                if pid in col:
                    a[col[pid], slot] = sign
            if op[0] == "R":
                p, q = _PAIR[axis]
                a0[slot, p, p] = a0[slot, q, q] = 0.0
                big[slot, 0, p, p] = big[slot, 0, q, q] = 1.0       # cos
                big[slot, 1, q, p], big[slot, 1, p, q] = 1.0, -1.0  # sin
            else:
                big[slot, 2, axis, 3] = 1.0                         # the translation's length
    return a, b, big.reshape(s, 3, 16), a0.reshape(s, 1, 16), order, sizes, m


def hand_model(g, theta, model, width):
    """theta ``(N, width)`` float32 (``width``: the model's free parameters, 26, or all of them, 47,
    fixed entries ignored) -> keypoints ``(N, 3K)`` float32 in normalised units."""
    a, b, big, a0, order, sizes, m = _slot_tables(model, width)
    k, s = len(order), len(order) * m
    x = g.cast(g.op("Flatten", [theta], "fk/theta", axis=1), np.float64, "fk/theta64")
    v = g.op("Add", [g.op("MatMul", [x, g.const(a, "fk/A")], "fk/slots"), g.const(b, "fk/b")],
             "fk/values")                                                       # (N, S)
    v3 = g.op("Unsqueeze", [v, g.ints([2])], "fk/values3")                     # (N, S, 1)
    mats = g.const(a0.reshape(s, 16), "fk/A0")
    for i, (name, value) in enumerate((("cos", g.op("Cos", [v3], "fk/cos")),
                                       ("sin", g.op("Sin", [v3], "fk/sin")), ("length", v3))):
        # one of the three tables is non-zero at each entry: the sum is exact
        mats = g.op("Add", [mats, g.op("Mul", [value, g.const(np.ascontiguousarray(big[:, i]),
                                                             f"fk/B_{name}")],
                                          f"fk/{name}_part")], "fk/slot_mats")  # (N, S, 16)
    mats = g.op("Reshape", [mats, g.ints([0, k, m, 4, 4])], "fk/slot_4x4")
    parts = g.op("Split", [mats], "fk/slot", outputs=m, axis=2) if m > 1 else [mats]
    link = parts[0]
    for part in parts[1:]:
        link = g.op("MatMul", [link, part], "fk/link")
    link = g.op("Reshape", [link, g.ints([0, k, 4, 4])], "fk/links")            # (N, K, 4, 4)
    # frames level by level: the keypoints of a level are a contiguous run of `order`
    row = {kp: i for i, kp in enumerate(order)}
    frames, start = None, 0
    for size in sizes:
        links = g.op("Slice", [link, g.ints([start]), g.ints([start + size]), g.ints([1])],
                     "fk/level_links")
        if frames is None:
            frames = links
        else:
            parents = [row[model.parents[kp]] for kp in order[start:start + size]]
            above = g.op("Gather", [frames, g.ints(parents, "fk/parents")], "fk/parent_frames",
                         axis=1)
            frames = g.op("Concat", [frames, g.op("MatMul", [above, links], "fk/level_frames")],
                          "fk/frames", axis=1)
        start += size
    origin = g.op("Slice", [frames, g.ints([0, 3]), g.ints([3, 4]), g.ints([2, 3])], "fk/origin")
    points = g.op("Gather", [g.op("Reshape", [origin, g.ints([0, k, 3])], "fk/points_levels"),
                             g.ints([row[kp] for kp in range(k)], "fk/keypoint_rows")],
                  "fk/points", axis=1)
    return g.cast(g.op("Reshape", [points, g.ints([0, 3 * k])], "fk/flat"), np.float32,
                  "fk/keypoints")


def joint_set(g, keypoints, rows, factors, centre=None):
    """keypoints ``(N, 3K)`` -> a joint set's ``(N, 3J)`` (:class:`deepmodel.layers.joint_set_layer.
    JointSetLayer`: the columns ``rows`` times ``factors``, relative to joint ``centre``)."""
    x = g.cast(g.op("Flatten", [keypoints], "joint_set/in", axis=1), np.float64)
    y = g.op("Mul", [g.op("Gather", [x, g.ints(rows, "joint_set/rows")], "joint_set/pick", axis=1),
                     g.const(np.asarray(factors, np.float64), "joint_set/factors")],
             "joint_set/scaled")
    if centre is not None:
        j = len(rows) // 3
        y3 = g.op("Reshape", [y, g.ints([0, j, 3])], "joint_set/xyz")
        c = g.op("Slice", [y3, g.ints([centre]), g.ints([centre + 1]), g.ints([1])],
                 "joint_set/centre")
        y = g.op("Reshape", [g.op("Sub", [y3, c], "joint_set/centred"), g.ints([0, 3 * j])],
                 "joint_set/flat")
    return g.cast(y, np.float32, "joint_set/out")


def turn_points(g, points, angles, sign):
    """keypoints ``(N, 3K)`` float32 and angles ``(N, 1)`` -> the keypoints with x, y turned about
    the z axis by ``sign * angle`` (:func:`deepmodel.model.hand_turn.turn_points`)."""
    x = g.cast(g.op("Flatten", [points], "turn_points/in", axis=1), np.float64)
    phi = g.cast(g.op("Flatten", [angles], "turn_points/angles", axis=1), np.float64)
    if sign < 0:
        phi = g.op("Neg", [phi], "turn_points/minus")
    c, s = g.op("Cos", [phi], "turn_points/cos"), g.op("Sin", [phi], "turn_points/sin")
    xyz = g.op("Reshape", [x, g.ints([0, -1, 3])], "turn_points/xyz")
    px, py, pz = g.op("Split", [xyz], "turn_points/axis", outputs=3, axis=2)
    c3, s3 = (g.op("Unsqueeze", [t, g.ints([2])], f"turn_points/{n}3") for t, n in ((c, "c"), (s, "s")))
    nx = g.op("Sub", [g.op("Mul", [c3, px]), g.op("Mul", [s3, py])], "turn_points/x")
    ny = g.op("Add", [g.op("Mul", [s3, px]), g.op("Mul", [c3, py])], "turn_points/y")
    out = g.op("Concat", [nx, ny, pz], "turn_points/xyz_turned", axis=2)
    return g.cast(g.op("Reshape", [out, g.ints([0, -1])], "turn_points/flat"), np.float32,
                  "turn_points/out")
