"""Data (``deepmodel.data``): dataset readers and conventions (``datasets``), finding the hand and
the cube crop (``hand_crop``), records and LMDBs (``records``), the synthetic worlds
(``synthetic``), errors and the evaluation kit's conventions (``evaluation``)."""
