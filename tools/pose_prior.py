#!/usr/bin/env python3
"""Write the pose prior of the synthetic worlds from a tools/fit_pose.py result (`make pose-prior`).
The prior is read by :mod:`deepmodel.data.synthetic.pose_prior`."""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import numpy as np
import pathlib

from deepmodel.data.synthetic.pose_prior import DEFAULT_PRIOR
from deepmodel.plumbing import (ArgumentParser, InputError, check_output_file, check_outputs,
                                finite_float, run, write_npz)


def main(argv=None):
    p = ArgumentParser(
        prog="python tools/pose_prior.py",
        description="Write a pose prior (the fitted theta of tools/fit_pose.py, float32) for the "
                    "synthetic generators.")
    p.add_argument("fits", type=pathlib.Path, help="a fit_pose .npz (theta, error_mm, model)")
    p.add_argument("--out", type=pathlib.Path, default=DEFAULT_PRIOR,
                   help="prior file (default data/prior/icvl_poses.npz)")
    p.add_argument("--max-error", type=finite_float(0.0, lo_open=True), default=10.0,
                   help="leave out frames fitted worse than this (mm)")
    args = p.parse_args(argv)
    check_output_file(args.out)
    check_outputs([("--out", args.out)], [("the fits", args.fits)], generated=[DEFAULT_PRIOR])
    if not args.fits.is_file():
        raise InputError(f"{args.fits}: no such file (a tools/fit_pose.py result)")
    try:
        with np.load(args.fits) as npz:
            theta, err = np.asarray(npz["theta"]), np.asarray(npz["error_mm"])
            model = str(npz["model"]) if "model" in npz.files else "nyu31"
            mirror = bool(npz["mirror_x"]) if "mirror_x" in npz.files else False
    except Exception as err_:  # numpy raises several kinds for a file that is not an npz
        raise InputError(f"{args.fits}: not a tools/fit_pose.py result "
                         f"({' '.join(str(err_).split())})") from None
    if theta.ndim != 2 or theta.shape[1] != 26 or err.shape != (len(theta),):
        raise InputError(f"{args.fits}: theta {theta.shape} and error_mm {err.shape}: expected "
                         "(N, 26) and (N,)")
    if not (np.isfinite(theta).all() and np.isfinite(err).all()):
        raise InputError(f"{args.fits}: holds non-finite angles or errors")
    keep = err <= args.max_error
    if not keep.any():
        raise InputError(f"{args.fits}: no frame fitted within --max-error {args.max_error} mm")
    write_npz(args.out, theta=theta[keep].astype(np.float32), model=np.array(model),
              mirror_x=np.array(mirror), source=np.array(str(args.fits.name)),
              error_mm=err[keep].astype(np.float32))
    print(f"wrote {args.out}: {int(keep.sum())} poses of {len(theta)} (fit error <= "
          f"{args.max_error:g} mm, mean {err[keep].mean():.2f} mm)")
    return 0


if __name__ == "__main__":
    run(main)
