"""The hand model: forward kinematics over the kinematic tree (``hand_model``), its definition
files (``nyu31.json``, ``icvl16.json``), the in-plane turn of crops and points (``hand_turn``) and
the sphere body drawn around the keypoints (``body``). NumPy only: no Caffe, no files but the
definitions."""
