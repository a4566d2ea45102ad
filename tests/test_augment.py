"""Augmentation at LMDB build time: the turned crop, the turned labels and the turned angles agree."""
import lmdb
import numpy as np
import pytest

from deepmodel.data.hand_crop import crop
from deepmodel.tools import make_lmdb
from deepmodel.data.records.augment import Augmentation, augment_table
from deepmodel.data.datasets.camera import NYU_CAMERA, Camera
from deepmodel.data.records.datum import decode_array
from deepmodel.data.datasets import nyu
from deepmodel.model.global_pose import rotate_pose
from tests.data_helpers import assert_one_line_error, make_synthetic, run_module


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return make_synthetic(tmp_path_factory.mktemp("aug") / "synthetic", 16, 6, seed=11, workers=2)


def _records(folder, prefix, kinds=("depth", "joint", "theta")):
    out = {}
    for kind in kinds:
        env = lmdb.open(str(folder / f"{prefix}_{kind}"), readonly=True, lock=False)
        with env.begin() as txn:
            out[kind] = np.stack([decode_array(v).ravel() for _, v in txn.cursor()])
        env.close()
    return out


def _rodrigues(axis, angle):
    """Independent rotation about a unit axis: exp of the cross-product matrix (scipy-free)."""
    from scipy.linalg import expm
    x, y, z = axis
    return expm(angle * np.array([[0, -z, y], [z, 0, -x], [-y, x, 0]]))


def test_rotate_pose_turns_every_keypoint(model):
    rng = np.random.default_rng(0)
    n = 40
    theta = rng.uniform(np.maximum(model.lower, -1.5), np.minimum(model.upper, 1.5), (n, 26))
    axes = rng.normal(size=(n, 3))
    axes /= np.linalg.norm(axes, axis=1, keepdims=True)
    rot = np.stack([_rodrigues(a, t) for a, t in zip(axes, rng.uniform(-np.pi, np.pi, n))])
    turned = rotate_pose(model, theta, rot)
    np.testing.assert_allclose(model.forward(turned), np.einsum("nij,nkj->nki", rot, model.forward(theta)),
                               atol=1e-12)
    np.testing.assert_array_equal(turned[:, 6:], theta[:, 6:])           # the fingers are untouched


def test_turn_about_ray_keeps_the_centre_and_turns_counter_clockwise():
    centre = np.array([[120.0, -60.0, 700.0], [0.0, 0.0, 500.0]])
    rot = crop.turn_about_ray(centre, np.array([90.0, 90.0]))
    np.testing.assert_allclose(np.einsum("nij,nj->ni", rot, centre), centre, atol=1e-9)
    for r, c in zip(rot, centre):
        np.testing.assert_allclose(r, _rodrigues(c / np.linalg.norm(c), np.pi / 2), atol=1e-12)
    # on the optical axis: +x (right) goes to +y (up), counter-clockwise on the screen
    np.testing.assert_allclose(rot[1] @ [1.0, 0.0, 0.0], [0.0, 1.0, 0.0], atol=1e-12)


def _dots_frame(camera, rng, centre_uvd, n=12):
    """A frame with small squares of known depth around a centre: ``(depth, points uvd (n, 3))``."""
    depth = np.zeros((camera.height, camera.width), np.uint16)
    depth[:] = int(centre_uvd[2] + 400)
    pts = []
    cells = rng.permutation(81)[:n]                         # distinct cells of a 9 x 9 grid: no overlap
    for cell in cells:
        u = int(centre_uvd[0]) + 11 * (cell % 9 - 4)
        v = int(centre_uvd[1]) + 11 * (cell // 9 - 4)
        d = int(centre_uvd[2] + rng.integers(-80, 81))
        depth[v - 3:v + 4, u - 3:u + 4] = d
        pts.append((u, v, d))
    return depth, np.array(pts, np.float64)


@pytest.mark.parametrize("angle", [0.0, 37.0, 90.0, -150.0, 180.0])
def test_turned_crop_shows_each_point_where_its_turned_label_is(angle):
    """A frame of depth squares: after the turn each square's centre, turned in 3D like the labels,
    projects onto a crop pixel that holds the turned point's depth."""
    rng = np.random.default_rng(int(angle) + 200)
    cam = NYU_CAMERA
    centre = np.array([470.0, 150.0, 650.0])                 # well off the optical axis
    depth, pts = _dots_frame(cam, rng, centre)
    cube = 300.0
    out = crop.crop_depth_turned(depth, centre, cube, cam, angle)
    com = cam.uvd_to_xyz(centre[None])[0]
    rot = crop.turn_about_ray(com[None], np.array([angle]))[0]
    turned = cam.uvd_to_xyz(pts) @ rot.T
    uvd = cam.xyz_to_uvd(turned)
    h = cube / 2
    col, row = crop.crop_pixel_of_uvd(uvd, centre, cube, cam).T            # the plain crop's grid
    got = out[np.floor(row).astype(int), np.floor(col).astype(int)]
    np.testing.assert_allclose(got, (turned[:, 2] - centre[2]) / h, atol=2.0 / h)   # 2 mm: a neighbour


def test_zero_turn_is_the_plain_crop(synth):
    """At angle 0 the turned crop is crop_depth's, pixel for pixel, inside the resized box."""
    table = nyu.split_table(synth, "train", subject2=False)
    for r in range(6):
        depth = nyu.read_depth(table.paths[r])
        a = crop.crop_depth(depth, table.center_uvd[r], 300.0, NYU_CAMERA)
        b = crop.crop_depth_turned(depth, table.center_uvd[r], 300.0, NYU_CAMERA, 0.0)
        box = crop.crop_box(table.center_uvd[r], 300.0, NYU_CAMERA)
        rw, rh = crop._resized_shape(box, 128)
        inner = np.s_[64 - rh // 2:64 - rh // 2 + rh, 64 - rw // 2:64 - rw // 2 + rw]
        np.testing.assert_allclose(b[inner], a[inner], atol=1e-6)   # float32 vs float64 arithmetic
        assert (a < 0.5).sum() > 500                                     # a hand is in the crop


def test_quarter_turn_on_the_axis_is_rot90():
    """On the optical axis a turn of 90 degrees is the crop turned counter-clockwise on the screen
    (numpy's rot90), up to the one-pixel steps of the nearest-sample grid."""
    cam = Camera(fx=500.0, fy=500.0, cx=319.5, cy=239.5, width=640, height=480)
    centre = np.array([319.5, 239.5, 600.0])
    depth = np.full((480, 640), 1100, np.uint16)
    depth[190:230, 300:400] = 560                                        # an L: a bar to the right
    depth[230:300, 300:340] = 620                                        # and one going down
    a = crop.crop_depth_turned(depth, centre, 300.0, cam, 0.0)
    b = crop.crop_depth_turned(depth, centre, 300.0, cam, 90.0)

    def iou(x, y):
        return ((x < 0.5) & (y < 0.5)).sum() / ((x < 0.5) | (y < 0.5)).sum()
    assert iou(b, np.rot90(a)) > 0.85
    assert max(iou(b, np.rot90(a, k)) for k in (0, 2, 3)) < 0.5


def test_augment_table_rows_and_bad_frames(synth):
    table = nyu.split_table(synth, "train", subject2=False)
    table.bad[3] = "label: made bad for the test"
    aug = augment_table(table, Augmentation(copies=2, seed=1))
    n = len(table)
    assert len(aug) == 3 * n and aug.paths[n + 5] == table.paths[5]
    np.testing.assert_array_equal(aug.frame, np.tile(table.frame, 3))
    assert {3, n + 3, 2 * n + 3} <= set(aug.bad)
    assert np.isnan(aug.turn_deg[:n]).all() and np.isfinite(aug.turn_deg[n:]).all()
    np.testing.assert_array_equal(aug.labels[:n], table.labels)
    assert augment_table(table, Augmentation(copies=0)) is table


def test_scale_above_one_makes_the_hand_larger(synth):
    """``scale`` s is the hand-size factor: the copy's cube is the frame's divided by s, so its
    hand spans s times more of the crop (labels in half-cubes s times further from the centre)."""
    table = nyu.split_table(synth, "train", subject2=False)
    n = len(table)
    aug = augment_table(table, Augmentation(copies=1, turn_deg=0.0, scale=(1.25, 1.25), shift_mm=0.0))
    np.testing.assert_allclose(aug.cube[n:], np.asarray(table.cube) / 1.25)
    orig, copy = np.asarray(table.labels), np.asarray(aug.labels[n:])
    inside = np.abs(orig) < 0.75                           # not clipped at the crop's edge, either
    assert inside.mean() > 0.8
    np.testing.assert_allclose(copy[inside], 1.25 * orig[inside], rtol=1e-6, atol=1e-9)


def test_augmented_lmdb_labels_equal_the_turned_model(synth, tmp_path, model):
    """Through the build: every record's joints == scale * forward(its true angles), where the
    scale is the cube's (300 / cube): shift and turn exact, the scale outside theta."""
    out = tmp_path / "lmdb"
    assert make_lmdb.main(["nyu", "--root", str(synth), "--out", str(out), "--quiet", "--workers", "2",
                           "--augment", "3", "--scale", "0.85", "1.15", "--shift", "10"]) == 0
    rec = _records(out, "nyu_train")
    meta = np.load(out / "nyu_train_meta.npz")
    n = len(rec["joint"])
    assert n == 16 * 4
    s = 300.0 / meta["cube"]
    assert s.min() < 0.95 and s.max() > 1.05 and np.isclose(s, 1.0).sum() == 16
    kp = np.clip(model.forward(rec["theta"].astype(np.float64)) * s[:, None, None], -1, 1)
    np.testing.assert_allclose(rec["joint"], kp.reshape(n, 93), atol=3e-6)
    # the frames themselves are the plain build's crops; the copies are new crops
    assert len(_records(out, "nyu_test", ("joint",))["joint"]) == 6      # the test split: never augmented
    plain = tmp_path / "plain"
    assert make_lmdb.main(["nyu", "--root", str(synth), "--out", str(plain), "--quiet", "--workers", "2",
                           "--splits", "train"]) == 0
    plain_crops = {r.astype("<f4").tobytes() for r in _records(plain, "nyu_train", ("depth",))["depth"]}
    is_frame = np.isclose(s, 1.0)
    assert {r.astype("<f4").tobytes() for r in rec["depth"][is_frame]} == plain_crops
    assert not plain_crops & {r.astype("<f4").tobytes() for r in rec["depth"][~is_frame]}


def test_augment_options_rebuild_and_refuse_bad_values(synth, tmp_path, project_root, capsys):
    out = tmp_path / "lmdb"
    args = ["nyu", "--root", str(synth), "--out", str(out), "--quiet", "--workers", "1",
            "--splits", "train"]
    assert make_lmdb.main(args + ["--augment", "1"]) == 0
    first = (out / "nyu_train_meta.npz").stat().st_mtime_ns
    n = len(np.load(out / "nyu_train_meta.npz")["frame"])
    capsys.readouterr()
    assert make_lmdb.main(args + ["--augment", "1"]) == 0                # up to date: kept
    assert (out / "nyu_train_meta.npz").stat().st_mtime_ns == first
    assert f"up to date in {out} ({n} frames;" in capsys.readouterr().out   # the records, copies included
    assert make_lmdb.main(args + ["--augment", "1", "--turn", "30"]) == 0   # other draws: rebuilt
    assert (out / "nyu_train_meta.npz").stat().st_mtime_ns != first
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "nyu", "--root", synth,
                      "--scale", "1.2", "1.0")
    assert_one_line_error(proc, "--scale", "LO")
    proc = run_module(project_root, "-m", "deepmodel.tools.make_lmdb", "nyu", "--root", synth, "--turn", "200")
    assert_one_line_error(proc, "--turn")
