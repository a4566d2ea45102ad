"""Evaluation: joint and angle errors and success-rate curves (``metrics``), the evaluation kit's
conventions (``kit``), the five real NYU crops scored (``real_crops``)."""
