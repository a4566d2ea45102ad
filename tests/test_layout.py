"""The layout of docs/architecture.md, checked on the source: one import name (``deepmodel``), no
import circle, packages importing only the ones below them, and ``tools/`` imported by nothing."""
import ast
import pathlib
import subprocess
import sys
import tomllib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]

# the packages of deepmodel in the order of docs/architecture.md: a module imports only from its
# own package or from packages of a lower rank (equal ranks: not each other)
RANKS = {"deepmodel.plumbing": 0, "deepmodel.model": 1, "deepmodel.runtime": 1,
         "deepmodel.layers": 2, "deepmodel.data": 2, "deepmodel.fitting": 3, "deepmodel.nets": 4,
         "deepmodel.pipeline": 5, "deepmodel.export": 5, "deepmodel.tools": 6}
NO_CAFFE = ("deepmodel.plumbing", "deepmodel.model", "deepmodel.fitting")   # NumPy only


def package_dirs():
    """``{package: folder}`` from pyproject.toml: the mapped roots and their sub-packages."""
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    roots = cfg["package-dir"]
    out = {}
    for pkg in cfg["packages"]:
        base = max((r for r in roots if pkg == r or pkg.startswith(r + ".")), key=len)
        out[pkg] = ROOT / roots[base] / pathlib.Path(*pkg[len(base):].split(".")[1:])
    return out


def modules():
    """``{module name: file}`` of every module the project installs."""
    out = {}
    for pkg, folder in package_dirs().items():
        for f in folder.glob("*.py"):
            out[pkg if f.stem == "__init__" else f"{pkg}.{f.stem}"] = f
    return out


MODULES = modules()


def imports(path, name):
    """The project modules ``path`` (module ``name``) imports, anywhere in it (function-level
    imports count: a circle through one is still a circle)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:   # relative: resolved against the module's package
                pkg = name if path.stem == "__init__" else name.rsplit(".", 1)[0]
                pkg = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                base = f"{pkg}.{base}" if base else pkg
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:          # a name inside a module: the module
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def graph():
    return {m: imports(f, m) for m, f in MODULES.items()}


def cycles(g):
    """Strongly connected components of more than one module, or a module importing itself
    (Tarjan's algorithm, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(g):
        if root in index:
            continue
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]; counter[0] += 1
        stack.append(root); on.add(root)
        while work:
            v, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1
                    stack.append(w); on.add(w)
                    work.append((w, iter(sorted(g.get(w, ())))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop(); on.discard(w); comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1 or v in g.get(v, ()):
                        out.append(sorted(comp))
    return out


def package_of(module):
    return max((p for p in RANKS if module == p or module.startswith(p + ".")), key=len, default=None)


def test_the_modules_are_found():
    """The map covers the library: the hand model, a layer, the crop, the LMDB writer, a command."""
    for m in ("deepmodel.model.hand_model", "deepmodel.layers.hand_model_layer",
              "deepmodel.data.hand_crop.crop", "deepmodel.data.records.lmdb_io", "deepmodel.tools.train"):
        assert m in MODULES, m
    assert len(MODULES) > 70


def test_cycle_finder_finds_a_planted_circle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": {"e"}}
    assert sorted(cycles(g)) == [["a", "b", "c"], ["e"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle():
    found = cycles(graph())
    assert not found, "import circles: " + "; ".join(" <-> ".join(c) for c in found)


def test_packages_import_only_those_below():
    bad = []
    for m, deps in graph().items():
        p = package_of(m)
        for d in deps:
            q = package_of(d)
            if q != p and RANKS[q] >= RANKS[p]:
                bad.append(f"{m} imports {d}")
    assert not bad, "imports against the layering of docs/architecture.md: " + "; ".join(sorted(bad))


def test_no_module_imports_a_command():
    """tools/ holds commands only: nothing imports them (the commands' own bootstrap
    ``_venv_check``, which runs before the package can be imported, is no module of deepmodel)."""
    bad = [f"{m} imports {d}" for m, deps in graph().items() for d in deps
           if d.startswith("deepmodel.tools")]
    assert not bad, "; ".join(sorted(bad))
    for m, f in MODULES.items():
        if not m.startswith("deepmodel.tools"):
            assert "_venv_check" not in f.read_text(), f"{m} imports the commands' bootstrap"


def test_model_and_fitting_know_no_caffe():
    bad = []
    for m, f in MODULES.items():
        if m.startswith(NO_CAFFE):
            for node in ast.walk(ast.parse(f.read_text())):
                names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                         else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                bad += [f"{m} imports {n}" for n in names if n.split(".")[0] == "caffe"]
    assert not bad, "; ".join(bad)


def test_one_top_level_name_is_installed(tmp_path):
    """``pip install -e .`` (the venv) makes ``deepmodel`` importable from any folder, and none of
    the repository's folders or modules as a top-level name of its own."""
    candidates = {"python_layers", "data_prep", "tools", "plumbing", "prototxt", "models", "scripts"}
    for folder in ("python_layers", "data_prep", "tools", "plumbing"):
        for p in (ROOT / folder).iterdir():
            if p.suffix == ".py" or (p.is_dir() and (p / "__init__.py").is_file()):
                candidates.add(p.stem)
    candidates -= {"__init__"}
    code = ("import importlib.util, json, sys\n"
            f"names = {sorted(candidates)!r}\n"
            "found = [n for n in names if importlib.util.find_spec(n) is not None]\n"
            "import deepmodel\n"
            "print(json.dumps({'found': found, 'deepmodel': deepmodel.__file__}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    import json

    out = json.loads(proc.stdout)
    assert out["found"] == [], f"importable as top-level names: {out['found']}"
    assert pathlib.Path(out["deepmodel"]).resolve() == ROOT / "python_layers" / "__init__.py"


@pytest.mark.parametrize("module", ["deepmodel.layers.hand_model_layer", "deepmodel.layers.joint_limit_loss",
                                    "deepmodel.layers.joint_set_layer", "deepmodel.layers.hand_turn_layer",
                                    "deepmodel.layers.point_turn_layer"])
def test_prototxt_name_layers_by_their_dotted_module(module):
    text = "".join(p.read_text() for p in (ROOT / "prototxt").glob("*.prototxt"))
    assert f'module: "{module}"' in text
    assert f'module: "{module.rsplit(".", 1)[1]}"' not in text
    assert module in MODULES
