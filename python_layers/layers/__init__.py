"""The Caffe ``Python`` layers, one per module, named in prototxt by dotted module, e.g.
``python_param { module: "deepmodel.layers.hand_model_layer" layer: "HandModelLayer" }``.
Thin: parse ``param_str`` (JSON), check shapes, call the model."""
