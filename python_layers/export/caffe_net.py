"""A deploy net and its weights to one ONNX model: Caffe's layers as ONNX operators, the project's
Python layers as the ONNX operators of :mod:`deepmodel.export.hand_ops` and
:mod:`deepmodel.export.turn_ops` (no custom operator: any ONNX runtime runs the file).

The graph's input is the net's input blob (``depth``, ``(N, 1, 128, 128)`` float32 with the batch
``N`` free; a net with no fully connected layer, such as the hand detector, takes any height and
width too). Its outputs are the net's final blobs (``joints``, ``heat``, ``offset``) followed by
those of :data:`EXTRA_OUTPUTS` that the net has (its angles ``theta``, a hand-up net's turned
crops ``depth_up`` and turn angles ``turn``), each named as the Caffe blob.
"""
import json
import pathlib

import numpy as np

from deepmodel.export import hand_ops, turn_ops
from deepmodel.export.graph import OPSET, Graph
from deepmodel.plumbing import PROJECT, InputError

EXTRA_OUTPUTS = ("theta", "depth_up", "turn")


class _Blobs:
    """The current ONNX value of each Caffe blob (a layer computing in place gets a new value)."""

    def __init__(self):
        self.value, self.shape = {}, {}

    def __getitem__(self, blob):
        return self.value[blob]


def _spatial(p, name, default):
    """(h, w) of a conv/pool parameter given as ``name`` (repeated or scalar) or ``name_h/_w``."""
    pre = "kernel" if name == "kernel_size" else name          # kernel_h, stride_h, pad_h
    if p.HasField(f"{pre}_h") or p.HasField(f"{pre}_w"):
        return int(getattr(p, f"{pre}_h")), int(getattr(p, f"{pre}_w"))
    v = getattr(p, name)
    if hasattr(v, "__len__"):
        v = list(v)
        return (default, default) if not v else (int(v[0]), int(v[-1]))
    return (int(v), int(v)) if v or default == 0 else (default, default)


def _window(p):
    """``(kernel, stride, pad, dilation)``, each ``(h, w)``, of a convolution or pooling parameter."""
    dil = list(getattr(p, "dilation", ())) or [1]
    return (_spatial(p, "kernel_size", 0), _spatial(p, "stride", 1), _spatial(p, "pad", 0),
            (int(dil[0]), int(dil[-1])))


def _conv(g, layer, x, params, where):
    p = layer.convolution_param
    k, s, (ph, pw), d = _window(p)
    inputs = [x, g.const(params[0], f"{layer.name}/weight")]
    if p.bias_term:
        inputs.append(g.const(params[1].reshape(-1), f"{layer.name}/bias"))
    return g.op("Conv", inputs, layer.name, kernel_shape=list(k), strides=list(s),
                pads=[ph, pw, ph, pw], dilations=list(d), group=int(p.group))


def _caffe_pooled(size, k, s, pad):
    """Caffe's pooled size: ceil, and the last window must start inside the image."""
    out = int(np.ceil((size + 2 * pad - k) / s)) + 1
    if pad and (out - 1) * s >= size + pad:
        out -= 1
    return out


def _pool(g, layer, x, shape, where):
    p = layer.pooling_param
    if p.global_pooling:
        op = "GlobalMaxPool" if p.pool == 0 else "GlobalAveragePool"
        return g.op(op, [x], layer.name)
    (kh, kw), (sh, sw), (ph, pw), _ = _window(p)
    if shape is None:
        raise InputError(f"{where}: pooling needs a fixed input size to be exported")
    h, w = shape[2:]
    ceil_h, ceil_w = (int(np.ceil((n + 2 * q - k) / s)) + 1
                      for n, q, k, s in ((h, ph, kh, sh), (w, pw, kw, sw)))
    if (ceil_h, ceil_w) != _pooled_shape(layer, shape)[2:]:
        raise InputError(f"{where}: Caffe's pooled size differs from ONNX's here (padding "
                         "past the image); cannot export")
    if p.pool == 0:
        return g.op("MaxPool", [x], layer.name, kernel_shape=[kh, kw], strides=[sh, sw],
                    pads=[ph, pw, ph, pw], ceil_mode=1)
    if p.pool == 1 and not (ph or pw) and (h - kh) % sh == 0 and (w - kw) % sw == 0:
        return g.op("AveragePool", [x], layer.name, kernel_shape=[kh, kw], strides=[sh, sw])
    raise InputError(f"{where}: only MAX pooling (and AVE pooling that fits the image exactly) "
                     "is exported")


def _pooled_shape(layer, shape):
    p = layer.pooling_param
    n, c, h, w = shape
    if p.global_pooling:
        return (n, c, 1, 1)
    (kh, kw), (sh, sw), (ph, pw), _ = _window(p)
    return (n, c, _caffe_pooled(h, kh, sh, ph), _caffe_pooled(w, kw, sw, pw))


def _conv_shape(layer, shape, channels):
    if shape is None:
        return None
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = _window(layer.convolution_param)
    return (shape[0], channels, (shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1,
            (shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1)


def _python_layer(g, layer, blobs, where):
    """The project's Python layers; their ``param_str`` read with the layers' own defaults."""
    from deepmodel.layers.hand_model_layer import load_model, parse_params

    kind = layer.python_param.layer
    text = layer.python_param.param_str
    bottoms = [blobs[b] for b in layer.bottom]
    try:
        if kind == "HandModelLayer":
            p = parse_params(kind, text, {"model": "nyu31"})
            model = load_model(kind, p["model"])
            width = blobs.shape.get(layer.bottom[0])
            width = model.num_free if width is None else int(np.prod(width[1:]))
            return [hand_ops.hand_model(g, bottoms[0], model, width)]
        if kind == "JointSetLayer":
            from deepmodel.layers.joint_set_layer import DEFAULTS, joint_set_map

            p = parse_params(kind, text, DEFAULTS)
            rows, factors = joint_set_map(load_model(kind, p["model"]), p["joint_set"],
                                          p["crop_unit_mm"])
            return [hand_ops.joint_set(g, bottoms[0], rows, factors, p["centre_joint"])]
        if kind == "PointTurnLayer":
            p = parse_params(kind, text, {"inverse": True})
            return [hand_ops.turn_points(g, bottoms[0], bottoms[1], -1.0 if p["inverse"] else 1.0)]
        if kind == "HandTurnLayer":
            return list(turn_ops.hand_turn(g, bottoms[0], blobs.shape[layer.bottom[0]]))
    except ValueError as err:
        raise InputError(f"{where}: {err}") from None
    raise InputError(f"{where}: Python layer {layer.python_param.module}.{kind} has no ONNX "
                     "form (exported: HandModelLayer, JointSetLayer, PointTurnLayer, "
                     "HandTurnLayer)")


def _shown(path):
    """A path as recorded in the file: relative to the repository when inside it, else its name
    (no folder of the machine that exported it)."""
    path = pathlib.Path(path).resolve()
    try:
        return str(path.relative_to(PROJECT))
    except ValueError:
        return path.name


def export_net(model, weights, extra_outputs=EXTRA_OUTPUTS, doc=None):
    """``model`` (a deploy prototxt) with ``weights`` (a .caffemodel) -> ``onnx.ModelProto``.

    Raises :class:`deepmodel.plumbing.InputError` naming the file and layer for a net that
    cannot be loaded or has a layer with no ONNX form.
    """
    from deepmodel.nets.net_io import check_model, load_net

    model, weights = str(model), str(weights)
    net_param = check_model(model)
    net = load_net(model, weights)
    params = {name: [np.array(b.data, np.float32) for b in blobs]
              for name, blobs in net.params.items()}
    inputs = list(net.inputs)
    if len(inputs) != 1:
        raise InputError(f"{model}: has inputs {inputs}; an exported net has one (the depth)")
    g, blobs = Graph(), _Blobs()
    # a fully convolutional net takes frames of any size; one with a dense or Python layer does not
    fixed = any(layer.type in ("InnerProduct", "Python") for layer in net_param.layer)
    in_shape = tuple(int(d) for d in net.blobs[inputs[0]].data.shape)
    dims = ["N", *in_shape[1:]] if fixed else ["N", in_shape[1], "H", "W"]
    blobs.value[inputs[0]], blobs.shape[inputs[0]] = inputs[0], (in_shape if fixed else None)
    for layer in net_param.layer:
        where = f"{model}: layer '{layer.name}' ({layer.type})"
        if layer.type == "Input":
            continue
        x = blobs[layer.bottom[0]] if layer.bottom else None
        shape = blobs.shape.get(layer.bottom[0]) if layer.bottom else None
        if layer.type == "Convolution":
            out, out_shape = [_conv(g, layer, x, params[layer.name], where)], \
                [_conv_shape(layer, shape, params[layer.name][0].shape[0])]
        elif layer.type == "ReLU":
            slope = float(layer.relu_param.negative_slope)
            out = [g.op("LeakyRelu", [x], layer.name, alpha=slope) if slope
                   else g.op("Relu", [x], layer.name)]
            out_shape = [shape]
        elif layer.type == "Pooling":
            out, out_shape = [_pool(g, layer, x, shape, where)], [_pooled_shape(layer, shape)]
        elif layer.type == "InnerProduct":
            p = layer.inner_product_param
            if p.axis != 1 or p.transpose:
                raise InputError(f"{where}: only axis 1 without transpose is exported")
            w = params[layer.name]
            flat = g.op("Flatten", [x], f"{layer.name}/flatten", axis=1)
            ins = [flat, g.const(w[0], f"{layer.name}/weight")]
            if p.bias_term:
                ins.append(g.const(w[1].reshape(-1), f"{layer.name}/bias"))
            out = [g.op("Gemm", ins, layer.name, transB=1)]
            out_shape = [(in_shape[0], int(w[0].shape[0]))]
        elif layer.type == "Python":
            out = _python_layer(g, layer, blobs, where)
            out_shape = [tuple(int(d) for d in net.blobs[t].data.shape) for t in layer.top]
        else:
            raise InputError(f"{where}: layer type {layer.type} has no ONNX form here (exported: "
                             "Input, Convolution, ReLU, Pooling, InnerProduct and the project's "
                             "Python layers)")
        if len(out) != len(layer.top):
            raise InputError(f"{where}: expected {len(out)} top(s), the layer has {len(layer.top)}")
        for top, value, sh in zip(layer.top, out, out_shape):
            blobs.value[top], blobs.shape[top] = value, sh
    finals = [b for b in net.outputs]
    names = finals + [b for b in extra_outputs if b in blobs.value and b not in finals]
    outputs = []
    for name in names:
        if blobs.value[name] != name:
            g.nodes.append(g.helper.make_node("Identity", [blobs.value[name]], [name],
                                              name=g.name(f"{name}/out")))
        sh = blobs.shape[name]
        out_dims = ["N", *sh[1:]] if sh else ["N", f"{name}_channels", f"{name}_height", f"{name}_width"]
        outputs.append(g.value_info(name, np.float32, out_dims))
    about = doc or {"exported by": "deepmodel-caffe (tools/export_onnx.py)", "opset": OPSET,
                    "model": _shown(model), "weights": _shown(weights)}
    return g.model(net_param.name or "deepmodel", [g.value_info(inputs[0], np.float32, dims)],
                   outputs, json.dumps(about, sort_keys=True))
