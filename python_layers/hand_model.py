"""The kinematic hand model of DeepModel (Zhou et al., IJCAI 2016): pose parameters -> 3D keypoints.

A model is defined by a JSON file in ``python_layers/models/`` (default ``nyu31.json``): 47 parameters
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
leaves the palm, become one node), and the tree is evaluated depth by depth, vectorised over the
batch and over all nodes of a depth with the same operation kind. Arrays are laid out batch-last
(``(3, nodes, N)``) so every step is a handful of contiguous element-wise NumPy operations.

Backward is the derivative-substitution rule of the paper (eq. 4): the partial derivative of a
keypoint with respect to an angle is the same product of matrices with that angle's rotation
replaced by its element-wise derivative. For a rotation by ``t`` about the local axis ``e`` of a
frame ``(M, o)`` (rotation ``M``, origin ``o``) that product, applied to the origin, equals
``sign * w x (p_k - o)`` with ``w = M e`` the rotation axis in the camera frame and ``sign`` the
axis' rotation sign (``Ry`` of this model is the textbook one with ``-t``); for a translation by a
parameter along ``e`` it is ``w``. Hence, for a gradient ``g_k`` arriving at keypoint ``k``::

    dL/dt = sign * w . sum_k (p_k - o) x g_k = sign * w . (sum_k p_k x g_k - o x sum_k g_k)

with the sums over the keypoints below the node: two (nodes x 31) matrix products for the whole
batch. Fixed ids get no gradient.
"""
import json
import pathlib

import numpy as np

MODELS_DIR = pathlib.Path(__file__).resolve().parent / "models"

_AXES = {"x": 0, "y": 1, "z": 2}
# Multiplying a frame on the right by the textbook rotation about axis `a` by t mixes two of its
# columns: new[p] = c*M[p] + s*M[q], new[q] = -s*M[p] + c*M[q] with (p, q) the pair below.
_PAIR = {0: (1, 2), 1: (2, 0), 2: (0, 1)}
_OPS = {"Rx", "Ry", "Rz", "Tx", "Ty", "Tz"}


class ModelDefinitionError(ValueError):
    """The model JSON file is malformed (the message names the file and the entry)."""


class _Node:
    __slots__ = ("parent", "kind", "axis", "param", "length", "depth", "children", "index",
                 "keypoints", "group")

    def __init__(self, parent, kind, axis, param, length, depth):
        self.parent, self.kind, self.axis = parent, kind, axis
        self.param, self.length, self.depth = param, length, depth
        self.children, self.keypoints = {}, []


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
        keypoint_names, param_names: tuples of str.
        bone_lengths: ``(30,)`` float64, normalised units.
        edges: tuple of ``(parent, child)`` keypoint pairs, for drawing the skeleton.
        nyu_joint_of_keypoint: ``(31,)`` int, the NYU dataset joint (of 36) each keypoint is.
        eval14_keypoints, eval14_nyu_joints: ``(14,)`` int, the standard 14-joint NYU evaluation.
        param_kind, param_axis: per id, ``"rotation"``/``"translation"`` and ``"x"``/``"y"``/``"z"``.
        param_pivot: per id, the keypoint about which the parameter rotates (the parent of the link).
        param_link: per id, the keypoint whose link holds the parameter's first operation.
    """

    def __init__(self, definition, source="<model definition>"):
        self.source = str(source)
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
        """A model from ``python_layers/models/<name>.json``, e.g. ``"nyu31"``."""
        if not isinstance(name, str) or not name.replace("_", "").replace("-", "").isalnum():
            raise ModelDefinitionError(f"model name {name!r}: expected a plain name such as 'nyu31'")
        path = MODELS_DIR / f"{name}.json"
        if not path.is_file():
            known = sorted(p.stem for p in MODELS_DIR.glob("*.json"))
            raise ModelDefinitionError(f"model {name!r}: no file {path.name} in python_layers/models "
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
        self.parents = tuple(-1 if k["parent"] is None else int(k["parent"]) for k in kps)
        roots = [k for k, p in enumerate(self.parents) if p < 0]
        if len(roots) != 1:
            self._fail(f"expected exactly one root keypoint (parent null), found {roots}")
        self.root = roots[0]
        self._ops = []
        for k in kps:
            ops = []
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
            self._ops.append(ops)
        self.nyu_joint_of_keypoint = np.array([k.get("nyu_joint", -1) for k in kps], dtype=np.int64)
        ev = d.get("eval14", {"keypoints": [], "nyu_joints": []})
        self.eval14_keypoints = np.array(ev["keypoints"], dtype=np.int64)
        self.eval14_nyu_joints = np.array(ev["nyu_joints"], dtype=np.int64)
        edges = d.get("edges") or [[p, c] for c, p in enumerate(self.parents) if p >= 0]
        self.edges = tuple((int(a), int(b)) for a, b in edges)
        self.about = d.get("about", "")

    # ------------------------------------------------------------------ compiling
    def _compile(self):
        # topological order of keypoints (parents first)
        order, seen = [], set()
        children = {k: [] for k in range(self.num_keypoints)}
        for k, p in enumerate(self.parents):
            if p >= 0:
                if not 0 <= p < self.num_keypoints:
                    self._fail(f"keypoint {k}: parent {p} out of range")
                children[p].append(k)
        stack = [self.root]
        while stack:
            k = stack.pop()
            order.append(k)
            seen.add(k)
            stack.extend(reversed(children[k]))
        if len(order) != self.num_keypoints:
            self._fail(f"keypoints {sorted(set(range(self.num_keypoints)) - seen)} are not connected to the root")

        # the tree of operations; identical operations leaving the same node are merged
        top = _Node(None, "root", None, None, None, -1)
        end_node = {}
        nodes = []
        self.param_kind = [None] * self.num_params
        self.param_axis = [None] * self.num_params
        self.param_pivot = [-1] * self.num_params
        self.param_link = [-1] * self.num_params
        for k in order:
            cur = top if self.parents[k] < 0 else end_node[self.parents[k]]
            for kind, pid, length in self._ops[k]:
                key = (kind, pid, length)
                if key not in cur.children:
                    node = _Node(cur, "R" if kind[0] == "R" else ("Tp" if pid is not None else "Tc"),
                                 _AXES[kind[1]], pid, length, cur.depth + 1)
                    cur.children[key] = node
                    nodes.append(node)
                    if pid is not None:
                        pk = "rotation" if kind[0] == "R" else "translation"
                        if self.param_kind[pid] not in (None, pk) or self.param_axis[pid] not in (None, kind[1]):
                            self._fail(f"param {pid} is used by operations of different kinds")
                        self.param_kind[pid], self.param_axis[pid] = pk, kind[1]
                        if self.param_link[pid] < 0:
                            self.param_link[pid] = k
                            self.param_pivot[pid] = self.parents[k]
                cur = cur.children[key]
            if cur is top:
                self._fail(f"root keypoint {k} needs at least one operation")
            cur.keypoints.append(k)
            end_node[k] = cur
        unused = [i for i in range(self.num_params) if self.param_kind[i] is None]
        if unused:
            self._fail(f"params {unused} are not used by any operation")
        self.param_kind, self.param_axis = tuple(self.param_kind), tuple(self.param_axis)
        self.param_pivot, self.param_link = tuple(self.param_pivot), tuple(self.param_link)

        # depth levels; inside a level, nodes sorted into groups of one operation kind and axis
        depth = max(n.depth for n in nodes) + 1
        levels = [[] for _ in range(depth)]
        for n in nodes:
            levels[n.depth].append(n)
        free_pos = {int(p): j for j, p in enumerate(self.free_ids)}
        kind_rank = {"R": 0, "Tp": 1, "Tc": 2}
        self._levels = []
        deriv = []  # nodes whose parameter is free: these get a derivative
        top.index = 0
        for lev in levels:
            lev.sort(key=lambda n: (kind_rank[n.kind], n.axis))
            for i, n in enumerate(lev):
                n.index = i
            groups = []
            i = 0
            while i < len(lev):
                j = i
                while j < len(lev) and (lev[j].kind, lev[j].axis) == (lev[i].kind, lev[i].axis):
                    j += 1
                g = lev[i:j]
                par = np.array([n.parent.index for n in g])
                par = (slice(par[0], par[-1] + 1) if np.array_equal(par, np.arange(par[0], par[-1] + 1))
                       else par)
                kind, axis = g[0].kind, g[0].axis
                entry = {"kind": kind, "axis": axis, "slice": slice(i, j), "parent": par}
                if kind == "R":
                    sign = self.rotation_sign["xyz"[axis]]
                    p, q = _PAIR[axis]
                    entry.update(cols=(p, q), sign=sign, params=np.array([n.param for n in g]))
                elif kind == "Tp":
                    entry["params"] = np.array([n.param for n in g])
                else:
                    entry["length"] = np.array([n.length for n in g])[:, None]
                dslots = []
                for m, n in enumerate(g):
                    if n.param is not None and n.param in free_pos:
                        dslots.append((m, len(deriv)))
                        deriv.append(n)
                if dslots:
                    entry["dsrc"] = np.array([m for m, _ in dslots])
                    entry["ddst"] = np.array([s for _, s in dslots])
                groups.append(entry)
                i = j
            kp_local = [(k, n.index) for n in lev for k in n.keypoints]
            self._levels.append({"size": len(lev), "groups": groups,
                                 "kp_ids": np.array([k for k, _ in kp_local], dtype=np.int64),
                                 "kp_local": np.array([m for _, m in kp_local], dtype=np.int64)})

        # derivative tables: node -> keypoints below it, node -> free parameter, node kind and sign
        nd = len(deriv)
        below = np.zeros((nd, self.num_keypoints))
        for r, n in enumerate(deriv):
            stack = [n]
            while stack:
                m = stack.pop()
                below[r, m.keypoints] = 1.0
                stack.extend(m.children.values())
        self._below = below
        self._node_to_free = np.zeros((self.num_free, nd))
        for r, n in enumerate(deriv):
            self._node_to_free[free_pos[n.param], r] = 1.0
        self._d_rot = np.array([n.kind == "R" for n in deriv])
        self._d_sign = np.array([self.rotation_sign["xyz"[n.axis]] if n.kind == "R" else 1.0
                                 for n in deriv])
        self._num_deriv = nd
        self.depth = depth
        self.num_nodes = len(nodes)

    # ------------------------------------------------------------------ input checks
    def _angles(self, theta):
        """theta (N, 26) or (N, 47) -> parameter values (47, N) float64 (batch last), N, width."""
        theta = np.asarray(theta)
        if theta.ndim != 2 or theta.shape[1] not in (self.num_free, self.num_params):
            raise ValueError(f"theta has shape {theta.shape}: expected (N, {self.num_free}) "
                             f"(free ids) or (N, {self.num_params}) (all ids, fixed ones ignored)")
        theta = theta.astype(np.float64, copy=False)
        a = np.repeat(self.init[:, None], theta.shape[0], axis=1)
        if theta.shape[1] == self.num_free:
            a[self.free_ids] += theta.T
        else:
            a[self.free_ids] += theta.T[self.free_ids]
        return a, theta.shape[0], theta.shape[1]

    # ------------------------------------------------------------------ kinematics
    def _run(self, theta, want_derivs):
        """Positions (3, K, N); with want_derivs also axes W (3, D, N) and origins O (3, D, N)."""
        a, n, width = self._angles(theta)
        cos, sin = np.cos(a), np.sin(a)
        rot = np.zeros((3, 3, 1, n))  # [column, row, node, batch]
        rot[0, 0] = rot[1, 1] = rot[2, 2] = 1.0
        org = np.zeros((3, 1, n))
        pos = np.empty((3, self.num_keypoints, n))
        if want_derivs:
            W = np.empty((3, self._num_deriv, n))
            O = np.empty((3, self._num_deriv, n))
        for lev in self._levels:
            size = lev["size"]
            new_rot = np.empty((3, 3, size, n))
            new_org = np.empty((3, size, n))
            for g in lev["groups"]:
                sl, par = g["slice"], g["parent"]
                prot = rot[:, :, par]
                porg = org[:, par]
                kind = g["kind"]
                if want_derivs and "dsrc" in g:
                    W[:, g["ddst"]] = prot[g["axis"]][:, g["dsrc"]]
                    O[:, g["ddst"]] = porg[:, g["dsrc"]]
                if kind == "R":
                    p, q = g["cols"]
                    c = cos[g["params"]]
                    s = sin[g["params"]] if g["sign"] > 0 else -sin[g["params"]]
                    cp, cq = prot[p], prot[q]
                    new_rot[p, :, sl] = c * cp + s * cq
                    new_rot[q, :, sl] = c * cq - s * cp
                    r = 3 - p - q
                    new_rot[r, :, sl] = prot[r]
                    new_org[:, sl] = porg
                else:
                    new_rot[:, :, sl] = prot
                    step = a[g["params"]] if kind == "Tp" else g["length"]
                    new_org[:, sl] = porg + prot[g["axis"]] * step
            rot, org = new_rot, new_org
            if len(lev["kp_ids"]):
                pos[:, lev["kp_ids"]] = org[:, lev["kp_local"]]
        if want_derivs:
            return pos, W, O, width
        return pos, width

    def forward(self, theta):
        """Keypoints of a batch of poses.

        theta: ``(N, 26)`` (free ids in increasing order; value = theta + init) or ``(N, 47)``
        (released layout; fixed entries ignored). Returns ``(N, 31, 3)`` float64, normalised units.
        """
        pos, _ = self._run(theta, False)
        return np.ascontiguousarray(pos.transpose(2, 1, 0))

    def _top_grad(self, top_grad, n):
        g = np.asarray(top_grad)
        k = self.num_keypoints
        if g.shape == (n, 3 * k):
            g = g.reshape(n, k, 3)
        elif g.shape != (n, k, 3):
            raise ValueError(f"top_grad has shape {g.shape}: expected ({n}, {k}, 3) or ({n}, {3 * k})")
        return g.astype(np.float64, copy=False).transpose(2, 1, 0)  # (3, K, N)

    def _scatter(self, grad_free, width):
        """(26, N) -> (N, width) with zeros at fixed ids."""
        if width == self.num_free:
            return np.ascontiguousarray(grad_free.T)
        out = np.zeros((grad_free.shape[1], self.num_params))
        out[:, self.free_ids] = grad_free.T
        return out

    def backward(self, theta, top_grad):
        """Gradient with respect to theta of ``sum(top_grad * forward(theta))``.

        theta: ``(N, 26)`` or ``(N, 47)``; top_grad: ``(N, 31, 3)`` or ``(N, 93)`` (x0, y0, z0, x1, ...).
        Returns float64 of theta's shape; 0 at fixed ids in the 47-wide layout.
        """
        pos, W, O, width = self._run(theta, True)
        n = pos.shape[2]
        g = self._top_grad(top_grad, n)
        m = np.cross(pos, g, axis=0)                        # p_k x g_k          (3, K, N)
        sg = np.matmul(self._below, g)                      # sum below node of g (3, D, N)
        sm = np.matmul(self._below, m)                      # ... of p x g        (3, D, N)
        v = np.where(self._d_rot[:, None], sm - np.cross(O, sg, axis=0), sg)
        gnode = np.einsum("cdn,cdn->dn", W, v) * self._d_sign[:, None]
        return self._scatter(self._node_to_free @ gnode, width)

    def forward_backward(self, theta, top_grad):
        """``(forward(theta), backward(theta, top_grad))`` sharing one pass of the kinematics."""
        pos, W, O, width = self._run(theta, True)
        n = pos.shape[2]
        g = self._top_grad(top_grad, n)
        m = np.cross(pos, g, axis=0)
        sg = np.matmul(self._below, g)
        sm = np.matmul(self._below, m)
        v = np.where(self._d_rot[:, None], sm - np.cross(O, sg, axis=0), sg)
        gnode = np.einsum("cdn,cdn->dn", W, v) * self._d_sign[:, None]
        return (np.ascontiguousarray(pos.transpose(2, 1, 0)),
                self._scatter(self._node_to_free @ gnode, width))

    def jacobian(self, theta):
        """d keypoints / d free parameters: ``(N, 93, 26)`` float64 (rows x0, y0, z0, x1, ...).

        theta: ``(N, 26)`` or ``(N, 47)``; columns are always the 26 free ids in increasing order.
        """
        pos, W, O, _ = self._run(theta, True)
        n = pos.shape[2]
        rel = pos[:, None, :, :] - O[:, :, None, :]                      # (3, D, K, N)
        wb = np.broadcast_to(W[:, :, None, :], rel.shape)
        dn = np.where(self._d_rot[:, None, None], np.cross(wb, rel, axis=0) * self._d_sign[:, None, None], wb)
        dn *= self._below[:, :, None]
        # (3, D, K, N) x (F, D) -> (N, K, 3, F)
        jac = np.einsum("cdkn,fd->nkcf", dn, self._node_to_free)
        return np.ascontiguousarray(jac).reshape(n, 3 * self.num_keypoints, self.num_free)

    # ------------------------------------------------------------------ helpers
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

    def __repr__(self):
        return (f"HandModel({self.name!r}: {self.num_params} params ({self.num_free} free), "
                f"{self.num_keypoints} keypoints)")
