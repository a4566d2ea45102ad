"""Finding the hand in a raw depth frame without labels (``locate``, its learned refinement
``refine``) and the 128x128 cube crop to [-1, 1] (``crop``)."""
