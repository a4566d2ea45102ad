"""The commands (``python tools/<tool>.py``, or the ``deepmodel-*`` console scripts): each parses
its arguments, calls the library and prints. Nothing imports a module from here."""
