"""Fit the hand model to labelled 3D joints: batched, bounded Levenberg-Marquardt over all frames.

The fitted quantity for frame ``n`` is the model's prediction of the labelled keypoints ``K``::

    pred[n] = model.forward(theta)[n, K] * scale[n] + offset[n]      # (k, 3) mm

with ``theta`` (N, 26) in the layer's convention (radians for angles, normalised units for the
translation ids 0-2, 0 = rest pose), ``scale`` (N,) mm per normalised unit and ``offset`` (N, 3) mm.
``offset`` is not optimised (the model's translation ids 0-2 already are); it is a per-frame
reference point chosen by the caller (the crop centre when known).

The objective of one frame (mm^2) is ``sum_j |pred_j - label_j|^2 + prior^2 * sum_a theta_a^2``,
the prior acting on the 20 finger/thumb angles only (ids 6..25 of the 26), pulling them gently
towards the rest pose where the labels leave them undetermined. Every frame has its own damping;
the joint limits are box constraints handled by an active set (variables sitting on a bound with
the gradient pointing out are frozen for the step) and by projecting each step onto the box, so
every accepted iterate is inside the limits. The scale can be free per frame, shared per segment
(sequence) of frames, or fixed.

Several starts are run and the best objective kept per frame: the rest pose rigidly aligned to the
labels (Kabsch), the neighbouring frames' solutions (re-aligned), and random perturbations of the
angles (around the best so far, or uniform inside the limits) for frames still fitting poorly.

On the prior (measured with 1000 random poses inside the limits, 14 joints, 4 restarts): with
exact labels 14 joints determine all 26 angles and the scale (prior 0: 0.001 mm, angles within
0.04 deg on average); the prior biases them (0.3 mm/rad: 0.2 deg mean; 1: 1.1 deg; 3: 4.1 deg).
With 2 mm of noise per coordinate the angle error is about 7 deg mean whatever the prior up to
3 mm/rad, so the labels' noise, not the count of joints, limits the angles. The default 0.3 mm/rad
only steadies flat directions (e.g. a straight finger) and changes the NYU test fit by < 0.01 mm.
"""
import numpy as np

from deepmodel.model.global_pose import axis_rotation, euler_of_global_rotation, wrap_angle

NUM_THETA = 26
GLOBAL = slice(0, 6)       # translation x, y, z (normalised), rotation x, y, z (rad): unbounded
ANGLES = slice(6, 26)      # finger and thumb angles (rad), bounded by the joint limits


def kabsch(src, dst):
    """Best rotations ``R`` (n, 3, 3) with ``R @ (src - mean) ~ dst - mean``; src, dst ``(n, k, 3)``."""
    a = src - src.mean(axis=1, keepdims=True)
    b = dst - dst.mean(axis=1, keepdims=True)
    h = np.einsum("nki,nkj->nij", a, b)
    u, _, vt = np.linalg.svd(h)
    d = np.sign(np.linalg.det(np.swapaxes(vt, 1, 2) @ np.swapaxes(u, 1, 2)))
    d[d == 0] = 1.0
    fix = np.ones((len(src), 3))
    fix[:, 2] = d
    return np.swapaxes(vt, 1, 2) @ (fix[:, :, None] * np.swapaxes(u, 1, 2))


# ----------------------------------------------------------------------------------------------
class PoseFitter:
    """Batched bounded LM fit of a :class:`hand_model.HandModel` to labelled keypoints.

    ``keypoints``: the model keypoint id of each label column (k,). ``prior``: weight of the
    rest-angle prior in mm per radian (0 disables it). ``scale_bounds``: allowed scale range as
    factors of the starting scale.
    """

    def __init__(self, model, keypoints, prior=0.3, max_iter=60, tol=1e-3, scale_bounds=(0.6, 1.6),
                 chunk=2048, progress=False):
        self.model = model
        self.keypoints = np.asarray(keypoints, dtype=np.int64)
        self.rows = (3 * self.keypoints[:, None] + np.arange(3)).ravel()
        self.lower = np.asarray(model.lower, dtype=np.float64)
        self.upper = np.asarray(model.upper, dtype=np.float64)
        if self.lower.shape != (NUM_THETA,) or self.upper.shape != (NUM_THETA,):
            raise ValueError(f"model limits must have {NUM_THETA} entries")
        self.prior = float(prior)
        self.max_iter = int(max_iter)
        self.tol = float(tol)
        self.scale_bounds = scale_bounds
        self.chunk = int(chunk)
        self.progress = progress
        self._a3, self._a5 = self._rest_rotation_angles()

    # ---- model access ------------------------------------------------------------------------
    def predict(self, theta):
        """``(n, 26)`` -> the labelled keypoints ``(n, k, 3)`` in normalised units."""
        return self.model.forward(theta)[:, self.keypoints]

    def _rest_rotation_angles(self):
        """Recover the rest values of the model's global rotation angles a3 and a5 (rad) from its
        forward pass alone: a rotation id 3 (id 4) turns the rest hand about ``Rz(a5) x``
        (about ``-Rz(a5) Rx(a3) y``); read the axes off the rigid motion of all keypoints."""
        t = 0.5
        theta = np.zeros((3, NUM_THETA))
        theta[1, 3] = t
        theta[2, 4] = t
        pts = self.model.forward(theta)
        rot = kabsch(pts[[0, 0]], pts[1:])
        w = np.stack([rot[:, 2, 1] - rot[:, 1, 2], rot[:, 0, 2] - rot[:, 2, 0],
                      rot[:, 1, 0] - rot[:, 0, 1]], axis=1) / 2.0
        a5 = np.arctan2(w[0, 1], w[0, 0])
        v = axis_rotation("z", np.array([-a5]))[0] @ (-w[1])
        a3 = np.arctan2(v[2], v[1])
        return a3, a5

    def rotation_delta(self, rel):
        """theta ids 3-5 (n, 3) whose global rotation is ``rel @ G_rest``; rel ``(n, 3, 3)``."""
        n = len(rel)
        m = rel @ axis_rotation("z", np.full(n, self._a5)) @ axis_rotation("x", np.full(n, self._a3))
        a, b, c = euler_of_global_rotation(m)
        return np.stack([wrap_angle(a - self._a3), wrap_angle(b), wrap_angle(c - self._a5)], axis=1)

    # ---- starts ------------------------------------------------------------------------------
    def align(self, angles, scale, offset, labels):
        """Rigidly place a hand with the given finger angles on the labels.

        angles ``(n, 20)`` rad (ids 6..25), scale ``(n,)`` mm/unit, offset ``(n, 3)`` mm, labels
        ``(n, k, 3)`` mm -> theta ``(n, 26)`` with the rotation from Kabsch and the translation
        that matches the centroids.
        """
        n = len(angles)
        theta = np.zeros((n, NUM_THETA))
        theta[:, ANGLES] = angles
        target = (labels - offset[:, None, :]) / scale[:, None, None]
        rel = kabsch(self.predict(theta), target)
        theta[:, 3:6] = self.rotation_delta(rel)
        p = self.predict(theta)
        theta[:, 0:3] = (target - p).mean(axis=1)
        return theta

    # ---- objective ---------------------------------------------------------------------------
    def _cost(self, theta, scale, offset, labels):
        p = self.predict(theta)
        r = p * scale[:, None, None] + offset[:, None, :] - labels
        c = np.einsum("nkj,nkj->n", r, r)
        if self.prior > 0:
            c = c + self.prior ** 2 * np.einsum("na,na->n", theta[:, ANGLES], theta[:, ANGLES])
        return c, p

    def errors_mm(self, theta, scale, offset, labels):
        """Per-frame mean Euclidean joint distance (n,) mm."""
        r = self.predict(theta) * scale[:, None, None] + offset[:, None, :] - labels
        return np.linalg.norm(r, axis=2).mean(axis=1)

    def objective(self, theta, scale, offset, labels):
        """The minimised objective per frame (n,) mm^2 (squared residuals plus the prior)."""
        return self._cost(theta, scale, offset, labels)[0]

    # ---- the solver --------------------------------------------------------------------------
    def solve(self, theta, scale, offset, labels, fit_scale=True, bar=None):
        """Bounded LM from the starting ``theta`` (n, 26) and ``scale`` (n,), returning
        ``(theta, scale, objective)``; frames are processed in chunks of ``self.chunk``.
        ``bar``: an optional tqdm bar whose postfix shows the frames still iterating."""
        theta = np.clip(np.asarray(theta, dtype=np.float64), self.lower, self.upper)
        scale = np.asarray(scale, dtype=np.float64).copy()
        out_t, out_s, out_c = [], [], []
        for lo in range(0, len(theta), self.chunk):
            sl = slice(lo, lo + self.chunk)
            t, s, c = self._solve_chunk(theta[sl], scale[sl], offset[sl], labels[sl], fit_scale, bar)
            out_t.append(t)
            out_s.append(s)
            out_c.append(c)
        return np.concatenate(out_t), np.concatenate(out_s), np.concatenate(out_c)

    def _jac(self, theta, scale, p, fit_scale):
        """Jacobian of the residuals (n, 3k, 26 [+1]) in mm per unit of each variable."""
        j = self.model.jacobian(theta)[:, self.rows] * scale[:, None, None]
        if fit_scale:
            j = np.concatenate([j, p.reshape(len(p), -1, 1)], axis=2)
        return j

    def _solve_chunk(self, theta, scale, offset, labels, fit_scale, bar):
        n = len(theta)
        nv = NUM_THETA + (1 if fit_scale else 0)
        lo = np.broadcast_to(self.lower, (n, NUM_THETA))
        hi = np.broadcast_to(self.upper, (n, NUM_THETA))
        if fit_scale:
            lo = np.concatenate([lo, scale[:, None] * self.scale_bounds[0]], axis=1)
            hi = np.concatenate([hi, scale[:, None] * self.scale_bounds[1]], axis=1)
        x = theta if not fit_scale else np.concatenate([theta, scale[:, None]], axis=1)
        prior_diag = np.zeros(nv)
        prior_diag[ANGLES] = self.prior ** 2

        cost, p = self._cost(theta, scale, offset, labels)
        resid = (p * scale[:, None, None] + offset[:, None, :] - labels).reshape(n, -1)
        jac = self._jac(theta, scale, p, fit_scale)
        lam = np.full(n, 1e-3)
        nu = np.full(n, 2.0)
        active = np.arange(n)
        for _ in range(self.max_iter):
            if len(active) == 0:
                break
            if bar is not None:
                bar.set_postfix(iterating=len(active), refresh=False)
            xa, ja, ra = x[active], jac[active], resid[active]
            jt = np.swapaxes(ja, 1, 2)
            g = (jt @ ra[:, :, None])[:, :, 0] + prior_diag * _prior_x(xa)
            h = jt @ ja
            h[:, np.arange(nv), np.arange(nv)] += prior_diag
            lo_a, hi_a = lo[active], hi[active]
            # active set: a variable on a bound whose gradient points out of the box stays put
            frozen = ((xa <= lo_a) & (g > 0)) | ((xa >= hi_a) & (g < 0))
            d = np.diagonal(h, axis1=1, axis2=2)
            damp = lam[active, None] * (d + 1e-9 * d.max(axis=1, keepdims=True) + 1e-12)
            keep = ~frozen
            a = h * (keep[:, :, None] & keep[:, None, :])
            a[:, np.arange(nv), np.arange(nv)] += np.where(frozen, 1.0, damp)
            rhs = np.where(frozen, 0.0, -g)
            step = np.linalg.solve(a, rhs[:, :, None])[:, :, 0]
            xn = np.clip(xa + step, lo_a, hi_a)
            dx = xn - xa
            # reduction the local quadratic model predicts for the (projected) step
            pred = -(2.0 * np.einsum("ni,ni->n", g, dx) + np.einsum("ni,nij,nj->n", dx, h, dx))
            tn = xn[:, :NUM_THETA]
            sn = xn[:, NUM_THETA] if fit_scale else scale[active]
            cn, pn = self._cost(tn, sn, offset[active], labels[active])
            old = cost[active]
            better = cn < old
            rho = (old - cn) / np.maximum(pred, 1e-300)
            # converged: an accepted step gaining less than `tol` of the objective, a step that no
            # longer moves, or damping so large that no useful step is left
            done = ((better & (old - cn <= self.tol * old + 1e-9)) | (np.abs(dx).max(axis=1) < 1e-10)
                    | (lam[active] > 1e9))
            acc = active[better]
            if len(acc):
                x[acc] = xn[better]
                cost[acc] = cn[better]
                s_acc = x[acc, NUM_THETA] if fit_scale else scale[acc]
                resid[acc] = (pn[better] * s_acc[:, None, None] + offset[acc, None, :]
                              - labels[acc]).reshape(len(acc), -1)
                # Nielsen's damping update from the gain ratio
                r = np.clip(rho[better], 0.0, 1.0)
                lam[acc] = np.maximum(lam[acc] * np.maximum(1.0 / 3.0, 1.0 - (2.0 * r - 1.0) ** 3), 1e-9)
                nu[acc] = 2.0
            rej = active[~better]
            lam[rej] *= nu[rej]
            nu[rej] *= 2.0
            active = active[~done]
            # Jacobians only for frames that moved and are still being iterated
            upd = np.intersect1d(acc, active, assume_unique=True)
            if len(upd):
                s_upd = x[upd, NUM_THETA] if fit_scale else scale[upd]
                pu = pn[better][np.searchsorted(acc, upd)]
                jac[upd] = self._jac(x[upd, :NUM_THETA], s_upd, pu, fit_scale)
        theta = x[:, :NUM_THETA].copy()
        if fit_scale:
            scale = x[:, NUM_THETA].copy()
        return theta, scale, cost

    # ---- the whole fit -----------------------------------------------------------------------
    def fit(self, labels, offset, scale0, segments=None, scale_mode="frame", restarts=4,
            restart_above=4.0, neighbour_passes=1, seed=0, log=print):
        """Fit every frame.

        labels ``(N, k, 3)`` mm; offset ``(N, 3)`` mm; scale0 ``(N,)`` starting (or, for
        ``scale_mode="fixed"``, final) scale in mm/unit; segments: ``(N,)`` int segment id per
        frame (neighbours and per-sequence scales never cross a segment; default one segment);
        scale_mode "frame" | "sequence" | "fixed"; restarts: number of random perturbation starts
        per frame, run on frames whose error still exceeds ``restart_above`` mm.

        Returns ``dict(theta (N, 26), scale (N,), objective (N,), error_mm (N,))``.
        """
        labels = np.asarray(labels, dtype=np.float64)
        offset = np.asarray(offset, dtype=np.float64)
        n = len(labels)
        seg = np.zeros(n, dtype=np.int64) if segments is None else np.asarray(segments)
        rng = np.random.default_rng(seed)
        fit_scale = scale_mode == "frame"
        if scale_mode not in ("frame", "sequence", "fixed"):
            raise ValueError(f"unknown scale mode {scale_mode!r}")
        scale = np.asarray(scale0, dtype=np.float64).copy()
        stages = 1 + (scale_mode == "sequence") + 2 * neighbour_passes + restarts
        bar = None
        if self.progress:
            from tqdm import tqdm
            bar = tqdm(total=stages, desc="fit", unit="start", leave=False)

        def stage(name):
            if bar is not None:
                bar.set_description(name)

        def done(msg):
            if bar is None:
                log(msg)
                return
            bar.update(1)
            if log is print:
                bar.write(msg)        # above the bar, which is redrawn below
            else:
                log(msg)

        # start 1: rest angles, rigidly aligned; in "sequence" mode first fit free per-frame
        # scales, then share their median per segment
        rest = np.zeros((n, ANGLES.stop - ANGLES.start))
        theta0 = self.align(rest, scale, offset, labels)
        stage("rest start")
        theta, s, obj = self.solve(theta0, scale, offset, labels, fit_scale=scale_mode != "fixed",
                                   bar=bar)
        done(f"  {'rest start:':<19}{n:6d} frames, mean error "
             f"{self.errors_mm(theta, s, offset, labels).mean():.3f} mm")
        if scale_mode == "sequence":
            scale = self._segment_scale(s, seg)
            stage("shared scale")
            theta, _, obj = self.solve(theta, scale, offset, labels, fit_scale=False, bar=bar)
            s = scale.copy()
            done(f"  {'shared scale:':<19}{n:6d} frames, mean error "
                 f"{self.errors_mm(theta, s, offset, labels).mean():.3f} mm")
        best = dict(theta=theta, scale=s, objective=obj)

        def consider(idx, th, sc, name):
            stage(name)
            t, s_, o = self.solve(th, sc, offset[idx], labels[idx], fit_scale=fit_scale, bar=bar)
            win = o < best["objective"][idx]
            w = idx[win]
            best["theta"][w] = t[win]
            best["scale"][w] = s_[win]
            best["objective"][w] = o[win]
            e = self.errors_mm(best["theta"], best["scale"], offset, labels)
            done(f"  {name + ':':<19}{len(idx):6d} frames tried, {win.sum():6d} improved, "
                 f"mean error {e.mean():.3f} mm")

        # neighbours' solutions, re-aligned rigidly, where a neighbour fits better per joint
        for _ in range(neighbour_passes):
            for shift, name in ((1, "previous frame"), (-1, "next frame")):
                src = np.arange(n) - shift
                ok = (src >= 0) & (src < n)
                ok[ok] &= seg[src[ok]] == seg[ok]
                idx = np.nonzero(ok)[0]
                idx = idx[best["objective"][src[idx]] < best["objective"][idx]]
                if len(idx) == 0:
                    done(f"  {name + ':':<19}     0 frames tried")
                    continue
                sc = best["scale"][src[idx]] if fit_scale else best["scale"][idx]
                th = self.align(best["theta"][src[idx], ANGLES], sc, offset[idx], labels[idx])
                consider(idx, th, sc, name)

        # random perturbations: half around the best, half anywhere inside the limits
        lo, hi = self.lower[ANGLES], self.upper[ANGLES]
        for r in range(restarts):
            err = self.errors_mm(best["theta"], best["scale"], offset, labels)
            idx = np.nonzero(err > restart_above)[0]
            if len(idx) == 0:
                done(f"  {f'perturbation {r + 1}:':<19}     0 frames tried")
                continue
            if r % 2 == 0:
                ang = best["theta"][idx, ANGLES] + rng.normal(0.0, 0.35, (len(idx), lo.size))
            else:
                ang = rng.uniform(lo, hi, (len(idx), lo.size))
            ang = np.clip(ang, lo, hi)
            sc = best["scale"][idx]
            th = self.align(ang, sc, offset[idx], labels[idx])
            consider(idx, th, sc, f"perturbation {r + 1}")

        if bar is not None:
            bar.close()
        best["error_mm"] = self.errors_mm(best["theta"], best["scale"], offset, labels)
        return best

    @staticmethod
    def _segment_scale(s, seg):
        out = np.empty_like(s)
        for g in np.unique(seg):      # one entry per sequence, not per frame
            m = seg == g
            out[m] = np.median(s[m])
        return out


def _prior_x(x):
    """The variables the prior pulls to zero (the angles); zeros elsewhere."""
    out = np.zeros_like(x)
    out[:, ANGLES] = x[:, ANGLES]
    return out


def estimate_offset(model, keypoints, labels, scale):
    """A per-frame reference point (mm) standing in for the crop centre: where the model's rest
    pose puts its origin when its root keypoint (the palm) sits on the label (else: centroids)."""
    rest = model.forward(np.zeros((1, len(model.lower))))[0]
    root = getattr(model, "root", 24)
    hit = np.flatnonzero(np.asarray(keypoints) == root)
    if len(hit):
        return labels[:, hit[0]] - scale[:, None] * rest[root]
    return labels.mean(axis=1) - scale[:, None] * rest[keypoints].mean(axis=0)
