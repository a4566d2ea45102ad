#!/usr/bin/env python3
"""Write prototxt/ from the NetSpec generator (`make nets`); `--check` compares instead of writing.
The generator is :mod:`deepmodel.nets.netspec`."""
if __name__ == "__main__" and not __package__:   # a script outside the venv: say how to enter it
    import _venv_check  # noqa: F401
import argparse
import difflib
import pathlib
import sys

from deepmodel.nets.netspec import PROTOTXT_DIR, VARIANTS, generate
from deepmodel.plumbing import PROJECT, ArgumentParser, check_outputs, run, write_text


def main(argv=None):
    parser = ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="Nets: " + ", ".join(
                                         f"{k} ({v[3]})" for k, v in VARIANTS.items()))
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a file in the folder differs from the generator")
    parser.add_argument("--out", type=pathlib.Path, default=PROTOTXT_DIR,
                        help="folder of the prototxt files (default: prototxt/ of the project)")
    args = parser.parse_args(argv)

    files = generate()
    if not args.check:
        check_outputs([("--out", args.out / name) for name in files],
                      generated=[PROTOTXT_DIR / name for name in files])
    if args.check:
        stale = []
        for name, text in files.items():
            path = args.out / name
            current = path.read_text() if path.is_file() else None
            if current != text:
                stale.append(name)
                if current is None:
                    print(f"{path}: missing", file=sys.stderr)
                else:
                    diff = difflib.unified_diff(current.splitlines(), text.splitlines(),
                                                f"{path} (committed)", f"{name} (generator)",
                                                lineterm="", n=1)
                    print("\n".join(list(diff)[:40]), file=sys.stderr)
        if stale:
            print(f"{len(stale)} of {len(files)} prototxt files are not current: run `make nets`",
                  file=sys.stderr)
            return 1
        print(f"{len(files)} prototxt files are current")
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        path = args.out / name
        if path.is_file() and path.read_text() == text:
            continue
        write_text(path, text)
        print(f"wrote {path.relative_to(PROJECT) if path.is_relative_to(PROJECT) else path}")
    return 0


if __name__ == "__main__":
    run(main)
