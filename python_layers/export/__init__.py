"""A trained net to ONNX, hand model included (``caffe_net.export_net``; ``tools/export_onnx.py``):
Caffe's layers and the project's Python layers written as standard ONNX operators
(``hand_ops``: forward kinematics, joint sets, the keypoint turn; ``turn_ops``: the hand-up crop
turn), built with the ``onnx`` package's helper API (``graph``)."""
