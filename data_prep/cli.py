"""Compatibility name: the shared plumbing lives in :mod:`plumbing` (import it from there).

Kept so that modules written against ``data_prep.cli`` keep importing; nothing is defined here.
"""
from plumbing import InputError, open_text, replace_atomically, run  # noqa: F401
