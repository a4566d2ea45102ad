"""The kinematic hand model of DeepModel (Zhou et al., IJCAI 2016): pose parameters -> 3D keypoints.

A model is defined by a JSON file in ``python_layers/model/`` (default ``nyu31.json``): 47 parameters
(21 fixed), 31 keypoints, each keypoint's transform being its parent's transform multiplied on the
right by a list of elementary operations (rotations ``Rx, Ry, Rz`` by a parameter, translations
``Tx, Ty, Tz`` by a parameter or by a signed bone length). A keypoint is its transform applied to
the origin. A parameter's value is ``theta + init`` (free ids) or ``init`` (fixed ids), so
``theta = 0`` is the rest pose.

Units: lengths are normalised (1 = half the crop cube = 150 mm for the 300 mm cube), angles are
radians. The output frame is the camera frame of the labels (x right, y up, z = depth), relative to
the crop centre.

Implementation. The operations of all keypoints are merged into one tree of operations ("nodes";
identical leading operations of sibling links, e.g. the global rotation shared by every link that
leaves the palm, become one node). Rotations change a frame's axes and translations its origin, so
the rotation frames are computed only after rotations, level by level (a run of fixed rotations is
one constant 3x3 product), and positions by adding bone vectors down the tree of translations.
Arrays are batch-last (``(nodes, 3, N)``) so each step is a few contiguous element-wise NumPy
operations on all nodes of a level at once; float64 inside; batch-sized buffers are reused
between calls (per thread).

Backward is the derivative-substitution rule of the paper (eq. 4): the partial derivative of a
keypoint with respect to an angle is the same product of matrices with that angle's rotation
replaced by its element-wise derivative. For a rotation by ``t`` about the local axis ``e`` of a
frame ``(M, o)`` (rotation ``M``, origin ``o``) that product, applied to the origin, equals
``sign * w x (p_k - o)`` with ``w = M e`` the rotation axis in the camera frame and ``sign`` the
axis' rotation sign (``Ry`` of this model is the textbook one with ``-t``); for a translation by a
parameter along ``e`` it is ``w``. Hence, for a gradient ``g_k`` arriving at keypoint ``k``::

    dL/dt = sign * w . sum_k (p_k - o) x g_k = sign * w . (sum_k p_k x g_k - o x sum_k g_k)

with the sums over the keypoints below the node; in depth-first order those keypoints are a
contiguous run, so all the sums are differences of one prefix sum. Fixed ids get no gradient.
"""
import dataclasses
import json
import math
import pathlib
import threading
from functools import partial

import numpy as np

MODELS_DIR = pathlib.Path(__file__).resolve().parent   # the definition files sit beside this module

_AXES = {"x": 0, "y": 1, "z": 2}
# Multiplying a frame on the right by the textbook rotation about axis `a` by t mixes two of its
# columns: new[p] = c*M[p] + s*M[q], new[q] = -s*M[p] + c*M[q] with (p, q) the pair below.
_PAIR = {0: (1, 2), 1: (2, 0), 2: (0, 1)}
_OPS = {"Rx", "Ry", "Rz", "Tx", "Ty", "Tz"}
# finger groups, named by the first word of a keypoint's name; anything else is palm/wrist
FINGERS = ("little", "ring", "middle", "index", "thumb")


def _cross(a, b, out=None):
    """Cross product of 3-vectors stored along the second-to-last axis (others broadcast)."""
    a0, a1, a2 = a[..., 0, :], a[..., 1, :], a[..., 2, :]
    b0, b1, b2 = b[..., 0, :], b[..., 1, :], b[..., 2, :]
    if out is None:
        return np.stack([a1 * b2 - a2 * b1, a2 * b0 - a0 * b2, a0 * b1 - a1 * b0], axis=-2)
    for i, (x, y, z, w) in enumerate(((a1, b2, a2, b1), (a2, b0, a0, b2), (a0, b1, a1, b0))):
        np.multiply(x, y, out=out[..., i, :])
        out[..., i, :] -= z * w
    return out


class ModelDefinitionError(ValueError):
    """The model JSON file is malformed (the message names the file and the entry)."""


class _Node:
    __slots__ = ("parent", "kind", "axis", "param", "length", "depth", "children", "index",
                 "keypoints", "group")

    def __init__(self, parent, kind, axis, param, length, depth):
        self.parent, self.kind, self.axis = parent, kind, axis
        self.param, self.length, self.depth = param, length, depth
        self.children, self.keypoints = {}, []


@dataclasses.dataclass(frozen=True)
class JointSet:
    """Which model keypoints a dataset's labelled joints are, in the dataset's label order.

    ``keypoints``: ``(J,)`` model keypoint ids; ``mirror_x``: the dataset's hand is this model's
    hand mirrored in x (a left hand for a right-handed model, in the camera frame x right, y up),
    so its joints are the keypoints with x negated; ``mm_per_unit``: the size of the model's
    normalised unit on the dataset's hands (mm; its median fitted scale), or None. :meth:`apply`
    maps model output to the dataset's joints.
    """
    name: str
    dataset: str
    keypoints: np.ndarray
    mirror_x: bool = False
    mm_per_unit: float = None

    @property
    def sign(self):
        """``(3,)`` the per-axis factor of the mirror: (-1, 1, 1) or (1, 1, 1)."""
        return np.array([-1.0 if self.mirror_x else 1.0, 1.0, 1.0])

    def apply(self, points):
        """``(N, K, 3)`` model keypoints (any units) -> ``(N, J, 3)`` the dataset's joints."""
        return np.asarray(points)[:, self.keypoints] * self.sign

    def unapply(self, joints):
        """``(N, J, 3)`` the dataset's joints -> the same in the model's frame (mirror undone)."""
        return np.asarray(joints) * self.sign


class HandModel:
    """Forward kinematics and its exact gradient, vectorised over a batch.

    Attributes (NumPy arrays unless said otherwise):
        name: model name, e.g. ``"nyu31"``.
        num_params: 47 (the released layout); ``num_free``: 26; ``num_keypoints``: 31.
        free_ids: ``(26,)`` int, the free parameter ids in increasing order (layout of a 26-wide theta).
        fixed_ids: ``(21,)`` int.
        init: ``(47,)`` float64 initial values (rest pose), radians or normalised units.
        lower, upper: ``(26,)`` float64 limits of the free ids, compared with theta (not theta + init).
        lower_all, upper_all: ``(47,)`` the same for all ids (fixed ids carry the file's values).
        parents: tuple of 31 parent keypoint ids (-1 for the root).
        keypoint_ops: per keypoint, its link's operations in order, each ``(op, param, length)``:
            ``op`` one of ``Rx Ry Rz Tx Ty Tz``, ``param`` the parameter id (None for a bone) and
            ``length`` the bone's signed length (None for a parameter); normalised units.
        rotation_sign: dict axis -> 1.0 or -1.0, the sign applied to a rotation's angle.
        keypoint_names, param_names: tuples of str.
        mm_per_unit: mm of one normalised unit in the crop convention the model was made for
            (``mm_per_unit`` of the file; nyu31: 150, half the 300 mm cube), or None.
        finger_of_keypoint: ``(31,)`` int, index into :data:`FINGERS` of the finger the keypoint
            belongs to (by its name), ``len(FINGERS)`` for the palm and wrist.
        bone_lengths: ``(30,)`` float64, normalised units.
        bone_of_keypoint: per keypoint, the bone id of the link ending at it (-1 for the root).
        edges: tuple of ``(parent, child)`` keypoint pairs, for drawing the skeleton.
        nyu_joint_of_keypoint: ``(31,)`` int, the NYU dataset joint (of 36) each keypoint is.
        eval14_keypoints, eval14_nyu_joints: ``(14,)`` int, the standard 14-joint NYU evaluation.
        joint_sets: dict name -> :class:`JointSet`, the model keypoints that a dataset's labelled
            joints are (``joint_sets`` of the file, e.g. ``"icvl16"``): see :meth:`joint_set`.
        param_kind, param_axis: per id, ``"rotation"``/``"translation"`` and ``"x"``/``"y"``/``"z"``.
        param_pivot: per id, the keypoint about which the parameter rotates (the parent of the link
            holding it; -1 for translations).
        param_links: per id, the keypoints whose links hold an operation of the parameter (the
            global rotation is in every link leaving the palm).
    """

    def __init__(self, definition, source="<model definition>"):
        self.source = str(source)
        self._tls = threading.local()
        try:
            self._load(definition)
        except (KeyError, TypeError, IndexError, ValueError) as err:
            if isinstance(err, ModelDefinitionError):
                raise
            raise ModelDefinitionError(f"{self.source}: malformed model definition ({err!r})") from None
        self._compile()

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_file(cls, path):
        path = pathlib.Path(path)
        try:
            definition = json.loads(path.read_text())
        except OSError as err:
            raise ModelDefinitionError(f"{path}: cannot read model file ({err.strerror})") from None
        except json.JSONDecodeError as err:
            raise ModelDefinitionError(f"{path}: not valid JSON ({err})") from None
        return cls(definition, source=path)

    @classmethod
    def by_name(cls, name):
        """A model from ``python_layers/model/<name>.json``, e.g. ``"nyu31"``."""
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ModelDefinitionError(f"model name {name!r}: expected a plain name such as 'nyu31'")
        path = MODELS_DIR / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
            raise ModelDefinitionError(f"model {name!r}: no file {path.name} in python_layers/model "
                                       f"(known models: {', '.join(known)})")
        return cls.from_file(path)

    @classmethod
    def nyu(cls):
        """The NYU model of the released DeepModel network (``models/nyu31.json``)."""
        return cls.by_name("nyu31")

    def _fail(self, msg):
        raise ModelDefinitionError(f"{self.source}: {msg}")

    def _load(self, d):
        self.name = str(d.get("name", pathlib.Path(self.source).stem))
        self.bone_lengths = np.asarray(d["bone_lengths"], dtype=np.float64)
        params = sorted(d["params"], key=lambda p: p["id"])
        if [p["id"] for p in params] != list(range(len(params))):
            self._fail("params must have ids 0..P-1, each once")
        self.num_params = len(params)
        self.param_names = tuple(p["name"] for p in params)
        self.init = np.array([p["init"] for p in params], dtype=np.float64)
        self.lower_all = np.array([p["lower"] for p in params], dtype=np.float64)
        self.upper_all = np.array([p["upper"] for p in params], dtype=np.float64)
        fixed = np.array([bool(p["fixed"]) for p in params])
        self.free_ids = np.flatnonzero(~fixed)
        self.fixed_ids = np.flatnonzero(fixed)
        self.num_free = len(self.free_ids)
        self.lower = self.lower_all[self.free_ids].copy()
        self.upper = self.upper_all[self.free_ids].copy()
        if np.any(self.lower > self.upper):
            self._fail(f"lower > upper for ids {np.flatnonzero(self.lower_all > self.upper_all).tolist()}")

        sign = d.get("rotation_sign", {"x": 1, "y": 1, "z": 1})
        self.rotation_sign = {a: float(sign[a]) for a in "xyz"}
        if any(s not in (1.0, -1.0) for s in self.rotation_sign.values()):
            self._fail("rotation_sign values must be 1 or -1")

        kps = sorted(d["keypoints"], key=lambda k: k["id"])
        if [k["id"] for k in kps] != list(range(len(kps))):
            self._fail("keypoints must have ids 0..K-1, each once")
        self.num_keypoints = len(kps)
        self.keypoint_names = tuple(k["name"] for k in kps)
        words = [name.split()[0] if name.split() else "" for name in self.keypoint_names]
        self.finger_of_keypoint = np.array([FINGERS.index(w) if w in FINGERS else len(FINGERS)
                                            for w in words], dtype=np.int64)
        self.mm_per_unit = float(d["mm_per_unit"]) if "mm_per_unit" in d else None
        self.parents = tuple(-1 if k["parent"] is None else int(k["parent"]) for k in kps)
        roots = [k for k, p in enumerate(self.parents) if p < 0]
        if len(roots) != 1:
            self._fail(f"expected exactly one root keypoint (parent null), found {roots}")
        self.root = roots[0]
        self._ops = []
        self.bone_of_keypoint = []
        for k in kps:
            ops, bones = [], []
            for op in k["ops"]:
                kind = op["op"]
                if kind not in _OPS:
                    self._fail(f"keypoint {k['id']}: unknown op {kind!r} (expected one of {sorted(_OPS)})")
                if "param" in op:
                    pid = int(op["param"])
                    if not 0 <= pid < self.num_params:
                        self._fail(f"keypoint {k['id']}: param {pid} out of range")
                    ops.append((kind, pid, None))
                else:
                    if kind[0] != "T":
                        self._fail(f"keypoint {k['id']}: rotation {kind} needs a 'param'")
                    bone = int(op["bone"])
                    if not 0 <= bone < len(self.bone_lengths):
                        self._fail(f"keypoint {k['id']}: bone {bone} out of range")
                    ops.append((kind, None, float(op.get("sign", 1)) * self.bone_lengths[bone]))
                    bones.append(bone)
            self._ops.append(ops)
            self.bone_of_keypoint.append(bones[-1] if bones else -1)
        self.bone_of_keypoint = tuple(self.bone_of_keypoint)
        self.keypoint_ops = tuple(tuple(ops) for ops in self._ops)
        self.nyu_joint_of_keypoint = np.array([k.get("nyu_joint", -1) for k in kps], dtype=np.int64)
        ev = d.get("eval14", {"keypoints": [], "nyu_joints": []})
        self.eval14_keypoints = np.array(ev["keypoints"], dtype=np.int64)
        self.eval14_nyu_joints = np.array(ev["nyu_joints"], dtype=np.int64)
        self.joint_sets = {}
        for name, js in d.get("joint_sets", {}).items():
            kp = np.array(js["keypoints"], dtype=np.int64)
            if kp.ndim != 1 or not len(kp) or kp.min() < 0 or kp.max() >= len(kps):
                self._fail(f"joint set {name!r}: keypoints must be ids 0..{len(kps) - 1}")
            mm = js.get("mm_per_unit")
            self.joint_sets[name] = JointSet(name=name, dataset=str(js["dataset"]), keypoints=kp,
                                             mirror_x=bool(js.get("mirror_x", False)),
                                             mm_per_unit=None if mm is None else float(mm))
        edges = d.get("edges") or [[p, c] for c, p in enumerate(self.parents) if p >= 0]
        self.edges = tuple((int(a), int(b)) for a, b in edges)
        self.about = d.get("about", "")

    def joint_set(self, name):
        """The :class:`JointSet` ``name`` (e.g. ``"icvl16"``); a ModelDefinitionError naming the
        known sets when the model has no such set."""
        if name not in self.joint_sets:
            known = ", ".join(sorted(self.joint_sets)) or "none"
            raise ModelDefinitionError(f"{self.source}: no joint set {name!r} (known: {known})")
        return self.joint_sets[name]

    # ------------------------------------------------------------------ compiling
    def _compile(self):
        """Parse the keypoints' operations into the tree of operations, then the three plans the
        kinematics run on (module functions below): frames, translations, derivative tables."""
        try:
            order = _topological_order(self.parents, self.root)
            tree = _operation_tree(order, self.parents, self._ops, self.num_params)
        except ValueError as err:
            self._fail(str(err))
        self.param_kind, self.param_axis = tree.param_kind, tree.param_axis
        self.param_pivot, self.param_links = tree.param_pivot, tree.param_links
        fixed = set(int(i) for i in self.fixed_ids)
        free_col26 = {int(p): j for j, p in enumerate(self.free_ids)}
        plans = (_frame_plan(tree, fixed, self.init, self.rotation_sign, free_col26),
                 _translation_plan(tree, fixed, self.init, free_col26, self.num_keypoints),
                 _derivative_plan(tree, fixed, free_col26, self.rotation_sign, self.num_keypoints,
                                  self.num_free))
        for plan in plans:
            for name, value in plan.items():
                setattr(self, name, value)
        self.num_nodes = len(tree.nodes)
        # per free rotation and frame column: its cos, or 1 for the rotation axis' own column
        r = len(self._rot_col26)
        self._cos3_index = np.repeat(np.arange(r), 3)
        for g in self._groups:
            if g["free"]:
                for i in range(*g["angles"].indices(r)):
                    self._cos3_index[3 * i + g["cols"][2]] = r

    # ------------------------------------------------------------------ input checks
    def _check_theta(self, theta):
        """theta (N, 26) or (N, 47) -> an array of that shape (any real dtype: :meth:`_run`
        copies it into the workspace as float64); anything else is a ValueError."""
        theta = np.asarray(theta)
        if theta.ndim != 2 or theta.shape[1] not in (self.num_free, self.num_params):
            raise ValueError(f"theta has shape {theta.shape}: expected (N, {self.num_free}) "
                             f"(free ids) or (N, {self.num_params}) (all ids, fixed ones ignored)")
        return theta

    # ------------------------------------------------------------------ kinematics
    def _workspace(self, n):
        """Per-thread buffers for a batch of n, reused between calls.

        Allocating a few MB of fresh temporaries on every call costs more (page faults) than the
        arithmetic itself, so the batch-sized intermediates live here; results handed to callers
        are always new arrays (or the caller's ``out``).
        """
        ws = getattr(self._tls, "ws", None)
        if ws is None or ws["n"] != n:
            k, d, t = self.num_keypoints, self._num_deriv, len(self._t_pre)
            r = len(self._rot_col26)
            ws = {"n": n,
                  "frames": np.empty((self._num_frames, 3, 3, n)),  # [frame, column, row, batch]
                  "tpos": np.empty((t + 1, 3, n)), "moves": np.empty((t, 3, n)),
                  "ang": np.empty((r, n)), "cos_1": np.empty((r + 1, 1, n)), "cos3": np.empty((r, 3, 1, n)),
                  "sin_pm": np.empty((r, 2, 1, n)), "tp_val": np.empty((len(self._tp_col26), 1, n)),
                  "pos": np.empty((k, 3, n)), "W": np.empty((d, 3, n)), "O": np.empty((d, 3, n)),
                  "g": np.empty((k, 3, n)), "x": np.empty((k, 3, n)), "xs": np.empty((k, 3, n)),
                  "c": np.empty((k + 1, 3, n)), "sg": np.empty((d, 3, n)), "sm": np.empty((d, 3, n)),
                  "v": np.empty((d, 3, n)), "lo": np.empty((d, 3, n)),
                  "theta": {self.num_free: np.empty((n, self.num_free)),
                            self.num_params: np.empty((n, self.num_params))},
                  "cached": None, "derivs": False}
            ws["sin"] = ws["sin_pm"][:, 0]                      # (R, 1, N) sin; [:, 1]: -sin
            ws["cos"] = ws["cos_1"][:r]                         # (R, 1, N) cos; [r]: ones
            ws["cos_1"][r] = 1.0
            ws["frames"][0] = np.eye(3)[:, :, None]
            ws["tpos"][0] = 0.0
            ws["c"][0] = 0.0
            ws["input_ops"] = {w: self._input_ops(ws, w) for w in ws["theta"]}
            ws["frame_ops"], ws["position_ops"], ws["derivative_ops"] = self._bound_ops(ws)
            self._tls.ws = ws
        return ws

    def _input_ops(self, ws, width):
        """The steps from theta (copied into ``ws["theta"][width]``, float64) to the angles' cos
        and sin and the free translations' values, bound to the workspace like
        :meth:`_bound_ops` (whose position steps apply the translations' values)."""
        tt = ws["theta"][width].T                                   # (width, N) view
        rc, tc = (self._rot_col26, self._tp_col26) if width == self.num_free else \
            (self._rot_col47, self._tp_col47)
        ang, cos, sin, sin_pm = ws["ang"], ws["cos"], ws["sin"], ws["sin_pm"]
        r, n = ang.shape
        tp_val = ws["tp_val"][:, 0]                                 # (P, N)
        return [partial(tt.take, rc, 0, ang),                       # (R, N) signed angles
                partial(np.add, ang, self._rot_init, ang),
                partial(np.multiply, ang, self._rot_sign, ang),
                partial(np.cos, ang, cos[:, 0]),
                partial(np.sin, ang, sin[:, 0]),
                partial(np.negative, sin, sin_pm[:, 1]),
                partial(ws["cos_1"].take, self._cos3_index, 0,       # (c, c, 1) per rotation
                        ws["cos3"].reshape(len(self._cos3_index), 1, n)),
                partial(tt.take, tc, 0, tp_val),                    # free translations: theta + init
                partial(np.add, tp_val, self._tp_init, tp_val)]

    def _bound_ops(self, ws):
        """The steps of :meth:`_run` that do not depend on theta's values, as calls with every
        operand bound to the workspace's arrays: ``(frame_ops, position_ops, derivative_ops)``,
        lists of argument-free callables, run in order.

        The same NumPy operations on the same operands in the same order as written out in a
        loop (so the results are bit for bit the same); binding them once per batch size takes
        the per-call work of building views and looking up plans out of small batches, where it
        cost more than the arithmetic (a single frame's forward: 0.3-0.5 ms before, see
        ``make bench``).
        """
        n = ws["n"]
        frames, cos, sin = ws["frames"], ws["cos"], ws["sin"]
        frame_ops = []
        for g in self._groups:
            out = frames[g["slice"]]
            m = out.shape[0]
            if isinstance(g["pre"], slice):
                pre = frames[g["pre"]]
            elif not g["free"] and np.all(g["pre"] == g["pre"][0]):
                pre = frames[g["pre"][0]][None]     # all after the same frame: broadcast it
            else:                                   # gather the frames before, then compute
                pre = np.empty((m, 3, 3, n))
                frame_ops.append(partial(frames.take, g["pre"], 0, pre))
            if g["free"]:
                # new p = c cp + s cq, new q = c cq + (-s) cp (= c cq - s cp exactly: IEEE
                # rounding is symmetric in sign), new r = 1 cr (= cr exactly): all three columns
                # times (c, c, 1) in one product, then the two sums through a strided view
                p, q, r = g["cols"]
                pq, qp = _column_pair(p, q), _column_pair(q, p)
                b = pre[:, qp]                                          # (m, 2, 3, n): cq, cp
                y = np.empty(b.shape)
                out_pq = out[:, pq]                                     # (m, 2, 3, n): p, q
                # (out arguments positional: NumPy parses them faster than keywords)
                frame_ops += [partial(np.multiply, ws["cos3"][g["angles"]], pre, out),
                              partial(np.multiply, ws["sin_pm"][g["angles"]], b, y),
                              partial(np.add, out_pq, y, out_pq)]
            else:
                frame_ops.append(partial(np.matmul, g["ct"], pre.reshape(len(pre), 3, 3 * n),
                                         out.reshape(m, 3, 3 * n)))
        columns = frames.reshape(self._num_frames * 3, 3, n)  # [frame * 3 + column, row, batch]
        moves, tpos = ws["moves"], ws["tpos"]
        position_ops = [partial(columns.take, self._t_col, 0, moves),
                        partial(np.multiply, moves, self._t_len, moves)]
        if len(self._tp):               # free translations: times theta + init (see _input_ops)
            tp = _as_slice(self._tp)
            if isinstance(tp, slice):
                position_ops.append(partial(np.multiply, moves[tp], ws["tp_val"], moves[tp]))
            else:
                position_ops.append(partial(_multiply_scattered, moves, tp, ws["tp_val"]))
        for out, mv, par in self._t_levels:
            operands = []
            for a, idx in ((tpos, par), (moves, mv)):
                if isinstance(idx, slice):
                    operands.append(a[idx])
                else:   # an index array: gathered into a buffer at run time, after the levels above
                    operands.append(np.empty((len(idx),) + a.shape[1:]))
                    position_ops.append(partial(a.take, idx, 0, operands[-1]))
            position_ops.append(partial(np.add, *operands, tpos[out]))
        position_ops.append(partial(tpos.take, self._kp_t, 0, ws["pos"]))
        derivative_ops = [partial(columns.take, self._d_col, 0, ws["W"]),
                          partial(tpos.take, self._d_origin, 0, ws["O"])]
        return frame_ops, position_ops, derivative_ops

    def _run(self, theta, want_derivs, reuse=True):
        """Positions (K, 3, N); with want_derivs also axes W (D, 3, N) and origins O (D, 3, N).

        The arrays returned live in the workspace: copy them before the next call. The last pass
        is kept: with ``reuse``, a call with exactly the same theta (backward after forward, as in
        training) takes it instead of recomputing, and computes the derivative tables then if the
        pass had not (forward needs only the positions). forward always recomputes.
        """
        theta = self._check_theta(theta)
        n, width = theta.shape
        ws = self._workspace(n)
        th = ws["theta"][width]
        if not (reuse and ws["cached"] == width and np.array_equal(th, theta)):
            ws["cached"] = None
            np.copyto(th, theta, casting="unsafe")  # float32 -> float64 here, as astype did
            for op in ws["input_ops"][width]:
                op()
            for op in ws["frame_ops"]:
                op()
            for op in ws["position_ops"]:   # positions after each translation, keypoints
                op()
            ws["cached"], ws["derivs"] = width, False
        if not want_derivs:
            return ws["pos"], width
        if not ws["derivs"]:
            for op in ws["derivative_ops"]:  # from the frames and positions of this pass
                op()
            ws["derivs"] = True
        return ws["pos"], ws["W"], ws["O"], width

    @staticmethod
    def _write(src, shape, out, what):
        """src (K, 3, N) or (F, N) -> out ((N, K, 3), (N, 3K), (N, F), ...) or a new float64 array."""
        last_first = src.transpose((src.ndim - 1,) + tuple(range(src.ndim - 1)))  # (N, K, 3), (N, F)
        if out is None:
            return np.ascontiguousarray(last_first).reshape(shape)
        if not isinstance(out, np.ndarray) or out.size != math.prod(shape) or out.shape[0] != shape[0]:
            raise ValueError(f"out for {what} must be an array of shape {shape}, got "
                             f"{getattr(out, 'shape', type(out).__name__)}")
        out.reshape(shape)[...] = last_first.reshape(shape)
        return out

    def forward(self, theta, out=None):
        """Keypoints of a batch of poses.

        theta: ``(N, 26)`` (free ids in increasing order; value = theta + init) or ``(N, 47)``
        (released layout; fixed entries ignored). Returns ``(N, 31, 3)`` float64, normalised units,
        or writes them into ``out`` (any float array of N x 93 values, e.g. a Caffe top ``(N, 93)``).
        """
        pos, _ = self._run(theta, False, reuse=False)  # backward adds the derivative tables
        return self._write(pos, (pos.shape[2], self.num_keypoints, 3), out, "keypoints")

    def _top_grad(self, top_grad, ws):
        """(N, 31, 3) or (N, 93) -> workspace (K, 3, N) float64."""
        g = np.asarray(top_grad)
        n, k = ws["n"], self.num_keypoints
        if g.shape == (n, 3 * k):
            g = g.reshape(n, k, 3)
        elif g.shape != (n, k, 3):
            raise ValueError(f"top_grad has shape {g.shape}: expected ({n}, {k}, 3) or ({n}, {3 * k})")
        ws["g"][...] = g.transpose(1, 2, 0)
        return ws["g"]

    def _scatter(self, grad_free, width, out):
        """(26, N) -> (N, width) with zeros at fixed ids (into out if given)."""
        n = grad_free.shape[1]
        if out is not None and (not isinstance(out, np.ndarray) or out.shape != (n, width)):
            raise ValueError(f"out for the gradient must be an array of shape {(n, width)}, got "
                             f"{getattr(out, 'shape', type(out).__name__)}")
        if width == self.num_free:
            if out is None:
                return np.ascontiguousarray(grad_free.T)
            out[...] = grad_free.T
            return out
        if out is None:
            out = np.zeros((n, self.num_params))
        else:
            out[...] = 0.0
        out[:, self.free_ids] = grad_free.T
        return out

    def _below_sums(self, x, ws, out):
        """x (K, 3, N) -> out (D, 3, N): per derivative node, the sum of x over the keypoints below."""
        c = ws["c"]
        xs = np.take(x, self._dfs, axis=0, out=ws["xs"])
        for i in range(len(xs)):  # np.cumsum along a leading axis is ~30x slower than this loop
            np.add(c[i], xs[i], out=c[i + 1])
        np.take(c, self._d_hi, axis=0, out=out)
        out -= np.take(c, self._d_lo, axis=0, out=ws["lo"])
        return out

    def _to_free(self, per_node):
        """(D, N) per derivative node -> (26, N) per free id (summing nodes of the same id)."""
        if self._d_identity:
            return per_node
        out = np.zeros((self.num_free,) + per_node.shape[1:])
        np.add.at(out, self._d_free, per_node)
        return out

    def _grad(self, pos, W, O, g, ws):
        """Gradient of the free ids (26, N) from positions, axes, origins and top gradient (K, 3, N)."""
        sg = self._below_sums(g, ws, ws["sg"])                              # sum below of g_k
        sm = self._below_sums(_cross(pos, g, ws["x"]), ws, ws["sm"])        # ... of p_k x g_k
        v = _cross(O, sg, ws["v"])
        np.subtract(sm, v, out=v)                                           # rotations: sm - o x sg
        if len(self._d_trans):
            v[self._d_trans] = sg[self._d_trans]                            # translations: sg
        v *= W
        gnode = v.sum(axis=1)
        gnode *= self._d_sign[:, None]
        return self._to_free(gnode)

    def backward(self, theta, top_grad, out=None):
        """Gradient with respect to theta of ``sum(top_grad * forward(theta))``.

        theta: ``(N, 26)`` or ``(N, 47)``; top_grad: ``(N, 31, 3)`` or ``(N, 93)`` (x0, y0, z0, x1, ...).
        Returns float64 of theta's shape (0 at fixed ids in the 47-wide layout), or writes it
        into ``out`` (an array of theta's shape, e.g. a Caffe bottom diff).
        """
        pos, W, O, width = self._run(theta, True)
        ws = self._tls.ws
        g = self._top_grad(top_grad, ws)
        return self._scatter(self._grad(pos, W, O, g, ws), width, out)

    def forward_backward(self, theta, top_grad):
        """``(forward(theta), backward(theta, top_grad))`` sharing one pass of the kinematics."""
        pos, W, O, width = self._run(theta, True, reuse=False)
        ws = self._tls.ws
        keypoints = self._write(pos, (pos.shape[2], self.num_keypoints, 3), None, "keypoints")
        g = self._top_grad(top_grad, ws)
        return keypoints, self._scatter(self._grad(pos, W, O, g, ws), width, None)

    def jacobian(self, theta):
        """d keypoints / d free parameters: ``(N, 93, 26)`` float64 (rows x0, y0, z0, x1, ...).

        theta: ``(N, 26)`` or ``(N, 47)``; columns are always the 26 free ids in increasing order.
        Memory: a few arrays of N x 31 x 3 x 26 doubles.
        """
        pos, W, O, _ = self._run(theta, True)
        k, _, n = pos.shape
        # batch-first (N, K, 3, D) so that the result needs no transposed copy
        wt = W.transpose(2, 1, 0)[:, None]                                  # (N, 1, 3, D)
        dn = pos.transpose(2, 0, 1)[..., None] - O.transpose(2, 1, 0)[:, None]  # p_k - o: (N, K, 3, D)
        dn = _cross(wt, dn)
        dn *= self._d_sign
        if len(self._d_trans):
            dn[..., self._d_trans] = wt[..., self._d_trans]
        dn *= self._below.T[None, :, None, :]                               # keypoints below only
        jac = dn if self._d_identity else dn @ self._d_to_free
        return jac.reshape(n, 3 * k, self.num_free)

    # ------------------------------------------------------------------ helpers
    def param_id(self, name):
        """The id (0..46) of the parameter called ``name``, e.g. ``"index PIP flexion"``."""
        try:
            return self.param_names.index(name)
        except ValueError:
            raise KeyError(f"{self.source}: no parameter named {name!r}") from None

    def free_column(self, name):
        """The column (0..25) of the free parameter called ``name`` in a 26-wide theta."""
        pid = self.param_id(name)
        cols = np.flatnonzero(self.free_ids == pid)
        if not len(cols):
            raise KeyError(f"{self.source}: parameter {name!r} (id {pid}) is fixed")
        return int(cols[0])

    def to_free(self, theta47):
        """``(N, 47)`` -> ``(N, 26)``: the free columns."""
        theta47 = np.asarray(theta47)
        if theta47.ndim != 2 or theta47.shape[1] != self.num_params:
            raise ValueError(f"theta has shape {theta47.shape}: expected (N, {self.num_params})")
        return theta47[:, self.free_ids]

    def to_full(self, theta26):
        """``(N, 26)`` -> ``(N, 47)`` with zeros at the fixed ids."""
        theta26 = np.asarray(theta26)
        if theta26.ndim != 2 or theta26.shape[1] != self.num_free:
            raise ValueError(f"theta has shape {theta26.shape}: expected (N, {self.num_free})")
        out = np.zeros((theta26.shape[0], self.num_params), dtype=theta26.dtype)
        out[:, self.free_ids] = theta26
        return out

    def rest_pose(self):
        """Keypoints at theta = 0: ``(31, 3)`` float64."""
        return self.forward(np.zeros((1, self.num_free)))[0]

    def palm_normal(self, keypoints):
        """Unit normal of the palm, pointing out of its inner face (the side the fingers flex
        towards): ``(N, K, 3)`` or ``(N, 3 K)`` keypoints -> ``(N, 3)``.

        From the rigid palm: the little -> index knuckle line and the wrist -> middle knuckle
        line. In a crop (z = depth) the palm faces the camera where the normal's z is negative.
        """
        kp = np.asarray(keypoints, dtype=np.float64)
        kp = kp.reshape(len(kp), self.num_keypoints, 3)
        ids = []
        for name in ("little MCP (base)", "index MCP (base)", "wrist middle", "middle MCP (base)"):
            try:
                ids.append(self.keypoint_names.index(name))
            except ValueError:
                raise KeyError(f"{self.source}: no keypoint named {name!r}") from None
        little, index, wrist, middle = (kp[:, i] for i in ids)
        # along the palm x across it: in this model's right hand, the side the fingers flex to
        n = np.cross(middle - wrist, index - little)
        return n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)

    def __repr__(self):
        return (f"HandModel({self.name!r}: {self.num_params} params ({self.num_free} free), "
                f"{self.num_keypoints} keypoints)")


# ---------------------------------------------------------------------- compiling: parse -> plans
# Pure functions of the model definition. The tree of operations is parsed once; each plan is a
# dict of index arrays (and a few constants) that HandModel stores as private attributes and the
# kinematics (HandModel._run, _grad, jacobian) read. Nodes carry two numbers the plans assign:
# ``index`` (row in the frames array) and ``group`` (row in the translation-position array).

class _Tree:
    """The parsed operation tree: ``top`` (the root above everything), ``nodes`` (creation
    order), ``end_node`` (keypoint -> the node after its last operation) and per parameter id its
    kind, axis, pivot keypoint and links."""

    def __init__(self, top, nodes, end_node, param_kind, param_axis, param_pivot, param_links):
        self.top, self.nodes, self.end_node = top, nodes, end_node
        self.param_kind, self.param_axis = param_kind, param_axis
        self.param_pivot, self.param_links = param_pivot, param_links


def _column_pair(p, q):
    """A slice selecting columns ``p`` then ``q`` (distinct, in 0..2) of a 3-column axis."""
    step = q - p
    stop = q + step
    return slice(p, None if stop < 0 else stop, step)


def _multiply_scattered(a, ia, b):
    """``a[ia] *= b`` (``ia`` an index array: gather, multiply, scatter at call time)."""
    a[ia] *= b


def _topological_order(parents, root):
    """Keypoints, parents first (depth-first from ``root``); ValueError if one is unreachable."""
    num = len(parents)
    children = {k: [] for k in range(num)}
    for k, p in enumerate(parents):
        if p >= 0:
            if not 0 <= p < num:
                raise ValueError(f"keypoint {k}: parent {p} out of range")
            children[p].append(k)
    order, seen, stack = [], set(), [root]
    while stack:
        k = stack.pop()
        order.append(k)
        seen.add(k)
        stack.extend(reversed(children[k]))
    if len(order) != num:
        raise ValueError(f"keypoints {sorted(set(range(num)) - seen)} are not connected to the root")
    return order


def _operation_tree(order, parents, ops, num_params):
    """Merge the keypoints' operation lists into one tree (identical operations leaving the same
    node become one node) -> :class:`_Tree`. ValueError for inconsistent parameters."""
    top = _Node(None, "root", None, None, None, -1)
    end_node, nodes = {}, []
    kind_of, axis_of = [None] * num_params, [None] * num_params
    pivot, links = [-1] * num_params, [[] for _ in range(num_params)]
    for k in order:
        cur = top if parents[k] < 0 else end_node[parents[k]]
        moved = False  # a translation earlier in this link: rotations no longer pivot on the parent
        for kind, pid, length in ops[k]:
            key = (kind, pid, length)
            if key not in cur.children:
                node = _Node(cur, "R" if kind[0] == "R" else ("Tp" if pid is not None else "Tc"),
                             _AXES[kind[1]], pid, length, cur.depth + 1)
                cur.children[key] = node
                nodes.append(node)
            if pid is not None:
                pk = "rotation" if kind[0] == "R" else "translation"
                if kind_of[pid] not in (None, pk) or axis_of[pid] not in (None, kind[1]):
                    raise ValueError(f"param {pid} is used by operations of different kinds")
                kind_of[pid], axis_of[pid] = pk, kind[1]
                if k not in links[pid]:
                    links[pid].append(k)
                if pk == "rotation" and not moved and parents[k] >= 0:
                    pivot[pid] = parents[k]
            moved = moved or kind[0] == "T"
            cur = cur.children[key]
        if cur is top:
            raise ValueError(f"root keypoint {k} needs at least one operation")
        cur.keypoints.append(k)
        end_node[k] = cur
    unused = [i for i in range(num_params) if kind_of[i] is None]
    if unused:
        raise ValueError(f"params {unused} are not used by any operation")
    return _Tree(top, nodes, end_node, tuple(kind_of), tuple(axis_of), tuple(pivot),
                 tuple(tuple(sorted(ks)) for ks in links))


def _rot_parent(n, top):
    """Nearest rotation node strictly above ``n``, or ``top``."""
    m = n.parent
    while m is not top and m.kind != "R":
        m = m.parent
    return m


def _trans_parent(n, top):
    """Nearest translation node strictly above ``n``, or ``top``."""
    m = n.parent
    while m is not top and m.kind == "R":
        m = m.parent
    return m


def _as_slice(idx):
    """Index array -> an equivalent slice when it is a contiguous run (faster NumPy indexing)."""
    idx = np.asarray(idx, dtype=np.int64)
    if len(idx) and np.array_equal(idx, np.arange(idx[0], idx[0] + len(idx))):
        return slice(int(idx[0]), int(idx[0]) + len(idx))
    return idx


def _const_rotation(path, init, rotation_sign):
    """Product (3, 3) of the fixed rotations of ``path`` (nodes, in order) at their init values."""
    c = np.eye(3)
    for m in path:
        t = rotation_sign["xyz"[m.axis]] * init[m.param]
        p, q = _PAIR[m.axis]
        e = np.eye(3)
        e[p, p] = e[q, q] = np.cos(t)
        e[q, p], e[p, q] = np.sin(t), -np.sin(t)
        c = c @ e
    return c


def _frame_plan(tree, fixed, init, rotation_sign, free_col26):
    """The rotation frames, level by level.

    Frames (rotation matrices) are needed only after rotation nodes; a frame after fixed rotations
    is a constant matrix times the frame of the nearest free rotation above it (or the identity),
    so runs of fixed rotations cost one small matrix product. Frames are grouped by (level, free
    or fixed, axis); a group is computed from the frames before it in one step. Assigns
    ``node.index``. Returns ``_groups``, ``_num_frames``, ``num_levels`` and the free rotation
    nodes' angle columns ``_rot_col26``/``_rot_col47``, ``_rot_init``, ``_rot_sign`` ``(R, 1)``.
    """
    top, nodes = tree.top, tree.nodes
    rnodes = [n for n in nodes if n.kind == "R"]
    tnodes = [n for n in nodes if n.kind != "R"]
    is_free = {id(n): (n.param not in fixed) for n in rnodes}

    def base_of(n):  # nearest free rotation strictly above n, or top
        m = _rot_parent(n, top)
        while m is not top and not is_free[id(m)]:
            m = _rot_parent(m, top)
        return m

    def source_of(n):  # the frame a frame is computed from
        return _rot_parent(n, top) if is_free[id(n)] else base_of(n)

    needed, todo = {id(top): top}, [_rot_parent(n, top) for n in tnodes]
    todo += [n for n in rnodes if is_free[id(n)]]
    todo += [_rot_parent(n, top) for n in rnodes if is_free[id(n)]]
    while todo:
        n = todo.pop()
        if id(n) in needed:
            continue
        needed[id(n)] = n
        todo.append(source_of(n))
    frames = [n for n in needed.values() if n is not top]
    level = {id(top): 0}

    def level_of(n):
        if id(n) not in level:
            level[id(n)] = level_of(source_of(n)) + 1
        return level[id(n)]

    def group_key(n):
        return (level_of(n), 0 if is_free[id(n)] else 1, n.axis if is_free[id(n)] else -1)

    frames.sort(key=group_key)
    top.index = 0
    for i, n in enumerate(frames, 1):
        n.index = i
    groups, rot_nodes = [], []
    i = 0
    while i < len(frames):
        j = i
        while j < len(frames) and group_key(frames[j]) == group_key(frames[i]):
            j += 1
        g = frames[i:j]
        if is_free[id(g[0])]:
            p, q = _PAIR[g[0].axis]
            groups.append({"free": True, "slice": slice(i + 1, j + 1), "cols": (p, q, 3 - p - q),
                           "pre": _as_slice([_rot_parent(n, top).index for n in g]),
                           "angles": slice(len(rot_nodes), len(rot_nodes) + len(g))})
            rot_nodes.extend(g)
        else:
            cts = []
            for n in g:
                path, m, b = [], n, base_of(n)
                while m is not b:
                    if m.kind == "R":
                        path.append(m)
                    m = m.parent
                cts.append(_const_rotation(path[::-1], init, rotation_sign).T)
            groups.append({"free": False, "slice": slice(i + 1, j + 1),
                           "pre": _as_slice([base_of(n).index for n in g]), "ct": np.array(cts)})
        i = j
    # angles of the free rotation nodes, in frame order: sign * (theta[col] + init)
    col47 = np.array([n.param for n in rot_nodes], dtype=np.int64)
    return {"_groups": groups, "_num_frames": len(frames) + 1, "num_levels": max(level.values()),
            "_rot_col26": np.array([free_col26[n.param] for n in rot_nodes], dtype=np.int64),
            "_rot_col47": col47, "_rot_init": init[col47][:, None],
            "_rot_sign": np.array([rotation_sign["xyz"[n.axis]] for n in rot_nodes])[:, None]}


def _translation_plan(tree, fixed, init, free_col26, num_keypoints):
    """Positions, level by level down the tree of translations.

    Every translation node moves by one column of the frame before it times a length (a bone, a
    fixed parameter's init, or 1 for a free parameter, scaled by theta + init at run time); the
    position after a node is its translation parent's plus that move; a keypoint is the position
    after the last translation above it. Row 0 of the positions is the origin. Assigns
    ``node.group`` (needs ``node.index`` from :func:`_frame_plan`). Returns ``_t_levels``
    (output rows, moves, parent rows per level), ``_t_pre``, ``_t_axis``, ``_t_col`` (rows of the
    frames' columns), ``_t_len`` ``(T, 1, 1)``, the free translation nodes ``_tp`` with their
    theta columns ``_tp_col26``/``_tp_col47`` and ``_tp_init``, and ``_kp_t`` (keypoint -> row).
    """
    top = tree.top
    tnodes = [n for n in tree.nodes if n.kind != "R"]
    tlevel = {id(top): 0}

    def tlevel_of(n):
        if id(n) not in tlevel:
            tlevel[id(n)] = tlevel_of(_trans_parent(n, top)) + 1
        return tlevel[id(n)]

    tnodes.sort(key=tlevel_of)
    top.group = 0
    for i, n in enumerate(tnodes, 1):
        n.group = i
    levels = []
    i = 0
    while i < len(tnodes):
        j = i
        while j < len(tnodes) and tlevel_of(tnodes[j]) == tlevel_of(tnodes[i]):
            j += 1
        levels.append((slice(i + 1, j + 1), slice(i, j),
                       _as_slice([_trans_parent(n, top).group for n in tnodes[i:j]])))
        i = j
    t_pre = np.array([_rot_parent(n, top).index for n in tnodes], dtype=np.int64)
    t_axis = np.array([n.axis for n in tnodes], dtype=np.int64)
    t_len = [n.length if n.kind == "Tc" else init[n.param] if n.param in fixed else 1.0
             for n in tnodes]
    tp = [i for i, n in enumerate(tnodes) if n.kind == "Tp" and n.param not in fixed]
    tp_col47 = np.array([tnodes[i].param for i in tp], dtype=np.int64)
    end = [tree.end_node[k] for k in range(num_keypoints)]
    return {"_t_levels": levels, "_t_pre": t_pre, "_t_axis": t_axis,
            "_t_col": t_pre * 3 + t_axis,  # row of (frame, column) in frames (F*3, 3, N)
            "_t_len": np.array(t_len)[:, None, None], "_tp": np.array(tp, dtype=np.int64),
            "_tp_col26": np.array([free_col26[tnodes[i].param] for i in tp], dtype=np.int64),
            "_tp_col47": tp_col47, "_tp_init": init[tp_col47][:, None],
            "_kp_t": np.array([n.group if n.kind != "R" else _trans_parent(n, top).group
                               for n in end])}


def _derivative_plan(tree, fixed, free_col26, rotation_sign, num_keypoints, num_free):
    """Derivative tables: the nodes of free parameters, their frame before, origin, keypoints below.

    Keypoints are listed in depth-first order of the operation tree (``_dfs``): the keypoints below
    any node are a contiguous run ``[lo, hi)``, so sums over them are differences of one cumulative
    sum. Needs ``node.index`` and ``node.group``. Returns ``_dfs``, per derivative node (D of them,
    usually one per free id, in theta order) ``_d_pre``, ``_d_axis``, ``_d_col``, ``_d_origin``,
    ``_d_lo``, ``_d_hi``, ``_d_free``, ``_d_rot``, ``_d_sign``; ``_d_trans`` (translation rows),
    ``_below`` ``(D, K)`` 0/1, ``_d_to_free`` ``(D, 26)``, ``_d_identity``, ``_num_deriv``.
    """
    top = tree.top
    dfs, span, stack = [], {}, [(top, False)]
    while stack:
        n, done = stack.pop()
        if done:
            span[id(n)] = (span[id(n)], len(dfs))
            continue
        span[id(n)] = len(dfs)
        dfs.extend(n.keypoints)
        stack.append((n, True))
        stack.extend((c, False) for c in reversed(list(n.children.values())))
    dfs = np.array(dfs, dtype=np.int64)
    deriv = [n for n in tree.nodes if n.param is not None and n.param not in fixed]
    deriv.sort(key=lambda n: free_col26[n.param])  # usually one node per free id: then in theta order
    d_pre = np.array([_rot_parent(n, top).index for n in deriv], dtype=np.int64)
    d_axis = np.array([n.axis for n in deriv], dtype=np.int64)
    d_lo = np.array([span[id(n)][0] for n in deriv], dtype=np.int64)
    d_hi = np.array([span[id(n)][1] for n in deriv], dtype=np.int64)
    below = np.zeros((len(deriv), num_keypoints))
    for r in range(len(deriv)):
        below[r, dfs[d_lo[r]:d_hi[r]]] = 1.0
    d_free = np.array([free_col26[n.param] for n in deriv], dtype=np.int64)
    d_to_free = np.zeros((len(deriv), num_free))
    d_to_free[np.arange(len(deriv)), d_free] = 1.0
    d_rot = np.array([n.kind == "R" for n in deriv])
    return {"_dfs": dfs, "_num_deriv": len(deriv), "_d_pre": d_pre, "_d_axis": d_axis,
            "_d_origin": np.array([_trans_parent(n, top).group for n in deriv], dtype=np.int64),
            "_d_lo": d_lo, "_d_hi": d_hi, "_below": below, "_d_free": d_free,
            # usually every free parameter has exactly one node: then node -> parameter is a permutation
            "_d_identity": np.array_equal(d_free, np.arange(num_free)), "_d_to_free": d_to_free,
            "_d_rot": d_rot, "_d_trans": np.flatnonzero(~d_rot), "_d_col": d_pre * 3 + d_axis,
            "_d_sign": np.array([rotation_sign["xyz"[n.axis]] if n.kind == "R" else 1.0
                                 for n in deriv])}
