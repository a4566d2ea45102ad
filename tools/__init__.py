"""The command-line tools: evaluation, training, fitting, the demo, benchmarks and plots (``python tools/<tool>.py`` or the ``deepmodel-*`` entry points)."""
