"""Caffe Python layer: the hand model (pose parameters -> 31 keypoints), exact gradient.

Use::

    layer {
      name: "hand_model" type: "Python" bottom: "theta" top: "joints"
      python_param { module: "deepmodel.layers.hand_model_layer" layer: "HandModelLayer" param_str: '{"model": "nyu31"}' }
    }

bottom: ``(N, 26)`` theta of the free ids (value = theta + init) or ``(N, 47)`` in the released
layout (fixed entries ignored, their gradient 0); ``(N, C, 1, 1)`` is accepted too.
top: ``(N, 93)`` keypoints x0, y0, z0, x1, ... in normalised units (1 = half the crop cube).
param_str (JSON, optional): ``model`` = name of a file in ``python_layers/model`` (default "nyu31").
Float64 inside, float32 at the blobs.
"""
import json

import caffe

from deepmodel.model.hand_model import HandModel, ModelDefinitionError


def parse_params(layer, text, defaults):
    """Parse a layer's ``param_str`` as a JSON object with keys from ``defaults``.

    Returns the defaults updated with the given values; bad JSON, a non-object or an unknown key
    raises ValueError naming the layer and what was expected.
    """
    expected = "a JSON object with keys " + ", ".join(f'"{k}"' for k in defaults) + \
        " (e.g. '" + json.dumps(defaults) + "')"
    text = (text or "").strip()
    if not text:
        return dict(defaults)
    try:
        given = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{layer}: param_str {text!r} is not valid JSON ({err.msg}); "
                         f"expected {expected}") from None
    if not isinstance(given, dict):
        raise ValueError(f"{layer}: param_str {text!r} is not a JSON object; expected {expected}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ValueError(f"{layer}: unknown param_str key(s) {', '.join(map(repr, unknown))}; expected {expected}")
    out = dict(defaults)
    out.update(given)
    return out


def load_model(layer, name):
    """The named HandModel; a bad name is a ValueError naming the layer."""
    try:
        return HandModel.by_name(name)
    except ModelDefinitionError as err:
        raise ValueError(f"{layer}: {err}") from None


def theta_width(layer, model, blob, what="bottom[0]"):
    """Check a theta blob is (N, 26) / (N, 47) (optionally with trailing 1s); return its width."""
    shape = tuple(blob.shape)
    ok = (len(shape) >= 2 and shape[1] in (model.num_free, model.num_params)
          and all(s == 1 for s in shape[2:]))
    if not ok:
        raise ValueError(f"{layer}: {what} has shape {shape}; expected (N, {model.num_free}) "
                         f"(free parameters of model {model.name!r}) or (N, {model.num_params}) "
                         f"(released layout)")
    return shape[1]


class HandModelLayer(caffe.Layer):
    """theta (N, 26) or (N, 47) -> keypoints (N, 93); backward by the paper's eq. 4."""

    def setup(self, bottom, top):
        name = type(self).__name__
        params = parse_params(name, self.param_str, {"model": "nyu31"})
        if len(bottom) != 1 or len(top) != 1:
            raise ValueError(f"{name}: expected 1 bottom (theta) and 1 top (keypoints), "
                             f"got {len(bottom)} bottom(s) and {len(top)} top(s)")
        self.model = load_model(name, params["model"])
        self.width = theta_width(name, self.model, bottom[0])
        self.shape = None                           # the bottom shape of the last reshape

    def reshape(self, bottom, top):
        # Caffe calls this before every forward: with the bottom's shape unchanged there is
        # nothing to check or resize (a single frame's forward is short enough for it to count)
        shape = tuple(bottom[0].shape)
        if shape == self.shape:
            return
        self.width = theta_width(type(self).__name__, self.model, bottom[0])
        top[0].reshape(shape[0], 3 * self.model.num_keypoints)
        self.shape, self.rows = shape, (shape[0], self.width)

    def forward(self, bottom, top):
        self.model.forward(bottom[0].data.reshape(self.rows), out=top[0].data)

    def backward(self, top, propagate_down, bottom):
        if not propagate_down[0]:
            return
        self.model.backward(bottom[0].data.reshape(self.rows), top[0].diff,
                            out=bottom[0].diff.reshape(self.rows))
