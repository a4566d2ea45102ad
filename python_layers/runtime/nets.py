"""One way to run a net, two backends: Caffe (pycaffe and the project's Python layers) or ONNX Runtime
(a ``.onnx`` file written by ``tools/export_onnx.py``; needs neither Caffe nor the layers).

``net.run(x, names) -> {name: array}``: ``x`` the input batch (``(N, 1, H, W)`` float32), the
outputs by their Caffe blob names (``joints``, ``theta``, ``turn``, ``depth_up``, ``heat``,
``offset``). Arrays returned by :class:`CaffeNet` are the blobs' own memory (valid until the
next run); :class:`OnnxNet` returns new arrays.

Which file a backend reads: for Caffe the deploy prototxt and the ``.caffemodel``; for ONNX the
``.onnx`` file, by default the one beside the ``.caffemodel`` with the same name
(:func:`onnx_path`: ``models/real/deepmodel.caffemodel`` -> ``models/real/deepmodel.onnx``).
"""
import os
import pathlib

import numpy as np

from deepmodel.plumbing import InputError

BACKENDS = ("caffe", "onnx")
BACKEND_HELP = ("caffe (pycaffe with the project's Python layers) or onnx (ONNX Runtime on the "
                ".onnx file beside the weights, as tools/export_onnx.py writes it; no Caffe "
                "needed)")


def check_backend(backend):
    if backend not in BACKENDS:
        raise InputError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    return backend


def onnx_path(weights):
    """The ``.onnx`` file for ``weights``: the file itself if it is one, else the ``.onnx`` beside
    the ``.caffemodel`` with the same name."""
    weights = pathlib.Path(weights)
    return weights if weights.suffix == ".onnx" else weights.with_suffix(".onnx")


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError as err:
        raise InputError(f"onnxruntime cannot be imported ({err}): install the extra with "
                         "`pip install -e '.[onnx]'`") from None
    return onnxruntime


class OnnxNet:
    """An exported net in ONNX Runtime (CPU). ``threads``: intra-op threads (default: the
    environment's ``DEEPMODEL_ORT_THREADS``, else 1: a single frame's net is too small to gain
    from a second thread, which costs a wake-up per operator; 0 is ONNX Runtime's choice, one
    per core, for large batches)."""

    backend = "onnx"

    def __init__(self, path, threads=None):
        ort = import_onnxruntime()
        path = pathlib.Path(path)
        if not path.is_file():
            raise InputError(f"{path}: no such ONNX file (export one: tools/export_onnx.py "
                             "--weights W.caffemodel)")
        options = ort.SessionOptions()
        if threads is None:
            text = os.environ.get("DEEPMODEL_ORT_THREADS", "1")
            if not text.isdigit():
                raise InputError(f"DEEPMODEL_ORT_THREADS={text!r}: expected a number of threads "
                                 "(0: one per core)")
            threads = int(text)
        options.intra_op_num_threads = int(threads)
        options.inter_op_num_threads = 1
        options.log_severity_level = 3
        # no busy-waiting pool threads between runs: on a few cores they starve the rest of the
        # pipeline (and any other net), which runs between the nets' calls
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as err:   # onnxruntime's own error types: an invalid or foreign file
            raise InputError(f"{path}: ONNX Runtime cannot load it "
                             f"({' '.join(str(err).split())[:200]})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InputError(f"{path}: has {len(inputs)} inputs; an exported net has one (depth)")
        self.path, self.input = path, inputs[0].name
        self.input_shape = tuple(inputs[0].shape)
        self.outputs = tuple(o.name for o in self.session.get_outputs())

    def has(self, name):
        return name in self.outputs

    def check_output(self, name, width, option="--blob"):
        """An output ``name`` of shape ``(N, width)``, or an InputError naming the file (as
        ``deepmodel.nets.net_io.output_blob`` checks a Caffe net's blob)."""
        shapes = {o.name: o.shape for o in self.session.get_outputs()}
        if name not in shapes:
            raise InputError(f"{self.path}: has no output '{name}' (outputs: "
                             f"{', '.join(self.outputs)}); choose one with {option}")
        if len(shapes[name]) != 2 or shapes[name][1] != width:
            raise InputError(f"{self.path}: output '{name}' has shape {shapes[name]}, "
                             f"expected (N, {width})")
        return name

    def run(self, x, names):
        names = list(names)
        values = self.session.run(names, {self.input: np.ascontiguousarray(x, np.float32)})
        return dict(zip(names, values))


class CaffeNet:
    """A built ``caffe.Net`` (checked by the caller, e.g. :func:`deepmodel.nets.net_io.load_net`)
    behind the same ``run``; forward runs every layer without building pycaffe's output dict."""

    backend = "caffe"

    def __init__(self, net, input_name=None):
        self.net = net
        self.input = input_name or list(net.inputs)[0]
        self._in = net.blobs[self.input]
        self.input_shape = tuple(self._in.data.shape)
        self.outputs = tuple(net.blobs)
        self._last = len(net.layers) - 1

    @classmethod
    def load(cls, model, weights):
        """A net of the project's own files (no checks: use ``net_io.load_net`` for a user's)."""
        os.environ.setdefault("GLOG_minloglevel", "2")
        import caffe

        for path in (model, weights):
            if not os.path.isfile(str(path)):
                raise InputError(f"{path}: no such file")
        caffe.set_mode_cpu()
        return cls(caffe.Net(str(model), caffe.TEST, weights=str(weights)))

    def has(self, name):
        return name in self.net.blobs

    def run(self, x, names):
        if tuple(self._in.shape) != x.shape:
            self._in.reshape(*x.shape)
            self.net.reshape()
        self._in.data[...] = x
        self.net._forward(0, self._last)
        return {name: self.net.blobs[name].data for name in names}


def open_net(backend, model, weights):
    """The net of ``model`` (prototxt) and ``weights`` (``.caffemodel``) on ``backend``: Caffe
    without checks (the project's own files), or ONNX Runtime on :func:`onnx_path` of the
    weights."""
    if check_backend(backend) == "onnx":
        return OnnxNet(onnx_path(weights))
    return CaffeNet.load(model, weights)
