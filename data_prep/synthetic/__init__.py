"""The synthetic worlds, written in the datasets' own on-disk formats: pose samplers (``poses``),
the pose prior fitted to real labels (``pose_prior``), ray-cast rendering of the sphere body
(``render``), sensor and body realism (``realism``), the NYU- and ICVL-format generators (``nyu``,
``icvl``)."""
