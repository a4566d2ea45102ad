"""Which weights a tool uses when none are given: the newest trained ones, else the shipped ones.

``tools/demo.py`` and ``tools/test_net.py`` (and so ``make demo`` and the card's
``python tools/test_net.py``) look, never recursively, in the results folder: the parent of their
``--out`` (``results/`` by default, the Makefile's ``$(RESULTS)``; ``tools/score_real.py``:
``results/``), for ``snapshots/*.caffemodel`` and ``*.caffemodel``: the newest file wins (ties:
the higher snapshot iteration). With nothing trained, a tool given no ``--model`` (or the deploy
net the shipped weights belong to) falls back to weights shipped with the repository:
:data:`SHIPPED` (trained by ``make train`` on the default synthetic world mixed 5:1 with the
prior-pose world; ``models/default/README.md``) for the tools on synthetic test sets, and
:data:`SHIPPED_REAL` (trained by ``make train-real``, the recipe for real depth of
docs/experiments/realism.md; ``models/real/README.md``) for the tools on real depth (``tools/demo.py``,
``tools/score_real.py``). Without ``--model`` the tools then take the deploy net the weights
belong to (:func:`deepmodel.nets.net_io.default_model`: ``prototxt/deploy_hand_up.prototxt`` for weights
trained on crops turned hand-up, else ``prototxt/deploy.prototxt``).
"""
import pathlib

from deepmodel.plumbing import PROJECT, InputError
from deepmodel.nets.net_io import default_model

SHIPPED = PROJECT / "models" / "default" / "deepmodel.caffemodel"
SHIPPED_REAL = PROJECT / "models" / "real" / "deepmodel.caffemodel"
_SHIPPED_WHAT = {SHIPPED: "make train's", SHIPPED_REAL: "make train-real's, for real depth"}


def _iteration(path):
    """The iteration of a snapshot ``<prefix>_iter_N.caffemodel`` (-1 for another name)."""
    stem = path.stem
    tail = stem.rsplit("_iter_", 1)[-1] if "_iter_" in stem else ""
    return int(tail) if tail.isdigit() else -1


def newest_trained(results):
    """The newest trained ``.caffemodel`` in the folder ``results`` (not below it but in its
    ``snapshots/``), or None."""
    root = pathlib.Path(results)
    found = [f for f in (*(root / "snapshots").glob("*.caffemodel"), *root.glob("*.caffemodel"))
             if f.is_file()]
    if found:
        return max(found, key=lambda f: (f.stat().st_mtime_ns, _iteration(f), f.name))
    return None


def _same_file(a, b):
    try:
        return pathlib.Path(a).resolve() == pathlib.Path(b).resolve()
    except OSError:
        return False


def default_weights(results, model, shipped=SHIPPED):
    """``(path, where)``: the weights to use when ``--weights`` is not given, looked up in the
    folder ``results``, else ``shipped`` (:data:`SHIPPED` or :data:`SHIPPED_REAL`), and a few
    words saying which they are (printed by the tools). Raises :class:`InputError` when there are
    none."""
    trained = newest_trained(results)
    if trained is not None:
        return trained, f"the newest trained weights in {trained.parent}"
    # the shipped weights' deploy net, read from their file once (only when --model is given)
    belong = None if model is None else pathlib.Path(default_model(shipped))
    fits = model is None or _same_file(model, belong)
    if fits and shipped.is_file():
        what = _SHIPPED_WHAT.get(shipped, "")
        return shipped, (f"the weights shipped with the repository ({what + '; ' if what else ''}"
                         "nothing trained yet)")
    where = pathlib.Path(results)
    why = "" if fits else (f"; the shipped weights belong to {belong.relative_to(PROJECT)}, "
                           f"not {model}")
    raise InputError(f"no trained weights (snapshots/*.caffemodel or *.caffemodel) in {where}"
                     f"{why}: run `make train` or give --weights")
