"""The pose prior fitted to real ICVL labels and the sampler drawing around it."""
import numpy as np
import pytest

from deepmodel.data.synthetic import nyu as synthetic
from deepmodel.data.synthetic.pose_prior import DEFAULT_PRIOR, PriorPoseSampler, load_prior
from deepmodel.model.hand_model import HandModel
from deepmodel.plumbing import InputError


@pytest.fixture(scope="module")
def prior():
    return load_prior(DEFAULT_PRIOR)


def test_prior_is_the_icvl_fit(prior):
    """1596 poses inside the limits; the fingers are not all at rest (real hands bend)."""
    model = HandModel.nyu()
    assert prior.shape == (1596, 26)
    assert np.all(prior >= model.lower - 1e-6) and np.all(prior <= model.upper + 1e-6)
    assert np.abs(prior[:, 6:]).mean() > 0.1
    with np.load(DEFAULT_PRIOR) as npz:
        assert str(npz["model"]) == "nyu31" and bool(npz["mirror_x"])
        assert float(npz["error_mm"].mean()) < 6.0


def test_sampler_draws_around_prior_poses_inside_the_limits(prior):
    model = HandModel.nyu()
    sampler = PriorPoseSampler(model, prior, noise_rad=0.05)
    theta = sampler.sample(np.random.default_rng(0), 300)
    assert np.all(theta >= model.lower - 1e-9) and np.all(theta <= model.upper + 1e-9)
    # every sample's finger angles lie near some prior pose (its source, up to the jitter)
    d = np.abs(theta[:, None, 6:] - prior[None, :, 6:]).mean(axis=2).min(axis=1)
    assert np.percentile(d, 95) < 0.06
    # the mixture sampler's poses are further from the prior than the prior sampler's
    mix = synthetic.PoseSampler(model).sample(np.random.default_rng(0), 300)
    d_mix = np.abs(mix[:, None, 6:] - prior[None, :, 6:]).mean(axis=2).min(axis=1)
    assert np.median(d_mix) > 1.5 * np.median(d)
    # joint 34 (the crop centre) at the origin, as the generator expects
    kp = model.forward(theta)
    np.testing.assert_allclose(np.einsum("k,bkd->bd", sampler.body.palm_point, kp), 0, atol=1e-9)


def test_frames_render_from_prior_poses(prior):
    sampler = PriorPoseSampler(HandModel.nyu(), prior)
    depth, uvd, xyz, theta = synthetic.make_frames(sampler, np.random.default_rng(1), 4)
    assert depth.shape == (4, 480, 640) and depth.dtype == np.uint16
    for i in range(4):                      # a hand in front of the wall at the crop centre
        u, v, d = uvd[i, 34]
        patch = depth[i, int(v) - 5:int(v) + 6, int(u) - 5:int(u) + 6]
        assert np.any((patch > 0) & (patch < d + 60))


def test_bad_prior_file(tmp_path):
    bad = tmp_path / "p.npz"
    np.savez(bad, theta=np.zeros((3, 25)))
    with pytest.raises(InputError, match="expected finite"):
        load_prior(bad)
    with pytest.raises(InputError, match="no such pose prior.*make pose-prior"):
        load_prior(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_text("not an npz")
    with pytest.raises(InputError, match="not a pose prior"):
        load_prior(tmp_path / "junk.npz")


def test_mixed_sampler_draws_from_the_prior_and_the_gestures(prior, project_root, tmp_path):
    """``MixedPoseSampler``: about ``share`` of the poses lie near a prior pose (within the
    jitter), the others are the gesture mixture's (none of which lies that near); the global
    rotations stay within ``rot_deg``; ``--poses both`` is recorded and refused with the
    realistic profile."""
    import json

    from deepmodel.data.synthetic.pose_prior import MixedPoseSampler
    from tests.data_helpers import run_module

    model = HandModel.nyu()
    fingers = np.clip(prior, model.lower, model.upper)[None, :, 6:]

    def near_prior(theta):
        return np.sqrt(((theta[:, None, 6:] - fingers) ** 2).sum(axis=2)).min(axis=1) < 0.8

    for share, lo, hi in ((0.0, 0.0, 0.0), (0.5, 0.4, 0.6), (1.0, 1.0, 1.0)):
        sampler = MixedPoseSampler(model, prior, rot_deg=(10.0, 180.0, 20.0), share=share)
        theta = sampler.sample(np.random.default_rng(1), 400)
        assert lo <= near_prior(theta).mean() <= hi, share
        assert np.all(theta >= model.lower - 1e-9) and np.all(theta <= model.upper + 1e-9)
        rot = theta[:, [sampler.col[model.param_id(f"global rotation {a}")] for a in "xyz"]]
        assert np.all(np.abs(rot) <= np.radians([10.0, 180.0, 20.0]) + 1e-9)
        kp = model.forward(theta)
        np.testing.assert_allclose(np.einsum("k,bkd->bd", sampler.body.palm_point, kp), 0, atol=1e-9)
    out = tmp_path / "s"
    args = ["-m", "deepmodel.tools.synthetic", "--out", out, "--train", "4", "--test", "2", "--quiet",
            "--workers", "1", "--poses", "both"]
    proc = run_module(project_root, *args)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((out / "synthetic.json").read_text())["poses"] == "both"
    proc = run_module(project_root, *args, "--profile", "realistic", "--force")
    assert proc.returncode != 0 and "only with the default profile" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1
