"""DeepModel-Caffe: model-based deep hand pose estimation (Zhou et al., IJCAI 2016) in Caffe.

One import namespace, mapped by ``pyproject.toml`` onto the repository's folders
(docs/architecture.md has the map, the rules and the data flow):

``deepmodel.model``      the hand model: kinematics, its definition files, the in-plane turn, the
                         sphere body (``python_layers/model/``)
``deepmodel.fitting``    the model fitted to joint labels, to bone lengths, to a crop's depth
``deepmodel.layers``     the Caffe Python layers (``python_param { module: "deepmodel.layers.X" }``)
``deepmodel.nets``       net definitions (NetSpec), loading and running nets, weights, training
``deepmodel.pipeline``   a raw depth frame to keypoints: find the hand, crop, net, model; the
                         Python API (``pipeline.estimator.HandPoseEstimator``)
``deepmodel.runtime``    running a net on Caffe or on ONNX Runtime (``runtime.nets``)
``deepmodel.export``     a trained net, hand model included, to one ONNX file
``deepmodel.data``       datasets, hand finding and the crop, records and LMDBs, the synthetic
                         worlds, evaluation (``data_prep/``)
``deepmodel.plumbing``   one-line errors, atomic writers, argument types (``plumbing/``)
``deepmodel.tools``      the commands (``tools/``)
"""
__version__ = "1.0.0"
