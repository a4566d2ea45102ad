"""Imported first when a tool runs as a script (``python tools/<tool>.py``): outside the project's
venv, say how to get into it in one line (exit 2) instead of failing with ModuleNotFoundError.
Standard library only: it runs before the project can be imported. It is the one module of
``tools/`` that the commands import, and nothing else does."""
import importlib.util
import sys

_MISSING = [m for m in ("numpy", "deepmodel") if importlib.util.find_spec(m) is None]
if _MISSING:
    sys.stderr.write(f"error: '{_MISSING[0]}' cannot be imported: the tools run in the project's venv; "
                     "run `make setup` once, then `source .venv/bin/activate` in the project folder "
                     "(or run them with .venv/bin/python)\n")
    sys.exit(2)
