"""Running a net on either backend: Caffe, or ONNX Runtime on an exported ``.onnx`` file
(``nets.OnnxNet``, ``nets.CaffeNet``, ``nets.open_net``). Imports neither Caffe nor onnxruntime
until a net of that backend is opened."""
