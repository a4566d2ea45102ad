#!/usr/bin/env python3
"""Training splits of several LMDB folders mixed into one (`make lmdb-mix`, `make lmdb-default-
mix`). The merge is :mod:`deepmodel.data.records.merge`."""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import pathlib

from deepmodel.data.records.merge import Source, check_test_split, copy_test_split, merge
from deepmodel.plumbing import ArgumentParser, InputError, check_outputs, nonneg_int, run


def parse_args(argv):
    p = ArgumentParser(
        prog="python tools/merge_lmdb.py",
        description="Mix the training splits of several LMDB folders (make_lmdb's) into one, in a "
                    "random order, and copy one folder's test split beside it.")
    p.add_argument("--out", type=pathlib.Path, required=True, help="output folder")
    p.add_argument("--train", nargs="+", required=True, metavar="FOLDER[:N][:back|palm]",
                   help="LMDB folders whose training splits are mixed; FOLDER:N takes N random "
                        "records of that folder (default: all); a :back or :palm suffix takes "
                        "only records whose labelled hand shows that face to the camera")
    p.add_argument("--test", type=pathlib.Path, default=None,
                   help="folder whose test split is copied (default: the first --train)")
    p.add_argument("--dataset", choices=("nyu", "icvl"), default="nyu",
                   help="whose splits (<dataset>_train_*, default nyu)")
    p.add_argument("--seed", type=nonneg_int, default=0, help="seed of the draws and the order")
    p.add_argument("--force", action="store_true", help="rebuild even if up to date")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    sources = [Source(text, args.dataset) for text in args.train]
    out = args.out.resolve()
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {args.out}: is a file, not a folder")
    for src in sources:
        if src.folder.resolve() == out:
            raise InputError(f"--train {src.text}: is the output folder; give another --out")
    test_from = args.test if args.test is not None else sources[0].folder
    if pathlib.Path(test_from).resolve() == out:
        raise InputError(f"--test {test_from}: is the output folder; give another --out")
    check_outputs([("--out/", args.out)], [(f"--train {s.text}", s.folder) for s in sources]
                  + [("--test", test_from)])
    check_test_split(test_from, args.dataset)      # whole, checked before anything is written
    n, written = merge(sources, args.out, args.dataset, args.seed, args.force, not args.quiet)
    n_test = copy_test_split(test_from, args.out, args.dataset, args.force)
    parts = " + ".join(f"{len(s.eligible) if s.count is None else s.count} of {s.folder}"
                       + (f" showing the {s.face}" if s.face else "") for s in sources)
    print(f"{args.out}: {n} training records ({parts}){'' if written else ', up to date'}; "
          f"{n_test} test records of {test_from}")
    return 0


if __name__ == "__main__":
    run(main)
