"""Loading a trained net and reading the evaluation LMDBs, with bad input caught before Caffe.

Caffe aborts the whole process (glog CHECK) on many kinds of bad input: a weights file whose
blobs do not fit the model, an unknown layer type, a bottom that nothing produces. The checks
here read the files themselves first (``caffe_pb2.NetParameter``) and raise
:class:`plumbing.InputError` with a one-line message naming the file, layer and blob.
"""
import importlib
import os

import numpy as np

# Caffe logs every net it builds at INFO level; a tool's stderr stays for its own messages.
os.environ.setdefault("GLOG_minloglevel", "2")

from deepmodel.plumbing import PROJECT, InputError

# The project's deploy nets: the paper's, and the one that turns its crops hand-up first
# (tools/make_nets.py, variant hand_up). Their learned layers are the same, so weights of one load
# into the other: which one weights belong to is read from the layers saved with them.
PLAIN_MODEL = "prototxt/deploy.prototxt"
TURNED_MODEL = "prototxt/deploy_hand_up.prototxt"
HAND_TURN_LAYER = "HandTurnLayer"
MODEL_HELP = (f"deploy prototxt; when not given, the one the weights belong to: {PLAIN_MODEL}, "
              f"or {TURNED_MODEL} for weights trained on crops turned hand-up")


def import_caffe():
    """``caffe`` (CPU mode), or an InputError telling how to get it."""
    try:
        import caffe
    except ImportError as err:
        raise InputError(f"pycaffe cannot be imported ({err}): run `make caffe`") from None
    caffe.set_mode_cpu()
    return caffe


def _one_line(text):
    return " ".join(str(text).split())


def _in_test_phase(layer, caffe_pb2):
    """Whether a LayerParameter is part of the TEST-phase net (phase rules only)."""
    test = caffe_pb2.TEST
    if layer.include:
        return any((not r.HasField("phase")) or r.phase == test for r in layer.include)
    return not any(r.HasField("phase") and r.phase == test for r in layer.exclude)


def check_model(model):
    """Parse a net prototxt and check what Caffe would otherwise abort on.

    Checks: the file exists and parses as a NetParameter; every layer type is registered in this
    Caffe; every bottom of the TEST-phase net is produced by an input or an earlier layer; every
    Python layer's module and class import. Returns the parsed ``caffe_pb2.NetParameter``.
    """
    caffe = import_caffe()
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    model = str(model)
    if not os.path.isfile(model):
        raise InputError(f"{model}: no such model prototxt")
    try:
        with open(model, "r") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"{model}: cannot read the model prototxt ({_one_line(err)})") from None
    net_param = caffe_pb2.NetParameter()
    try:
        text_format.Merge(text, net_param)
    except text_format.ParseError as err:
        raise InputError(f"{model}: not a valid net prototxt: {_one_line(err)}") from None
    if net_param.layers:
        raise InputError(f"{model}: uses the old V1 'layers' syntax; upgrade it with "
                         "Caffe's upgrade_net_proto_text")
    if not net_param.layer:
        raise InputError(f"{model}: the net has no layers")

    known_types = set(caffe.layer_type_list())
    available = set(net_param.input)
    for layer in net_param.layer:
        if not _in_test_phase(layer, caffe_pb2):
            continue
        where = f"{model}: layer '{layer.name}'"
        if layer.type not in known_types:
            raise InputError(f"{where} has type '{layer.type}', which this Caffe does not know")
        for bottom in layer.bottom:
            if bottom not in available:
                raise InputError(f"{where} reads blob '{bottom}', which no earlier layer produces")
        if layer.type == "Python":
            module = layer.python_param.module
            try:
                mod = importlib.import_module(module)
            except Exception as err:  # any failure while importing a user's layer module
                raise InputError(f"{where}: cannot import Python layer module '{module}' "
                                 f"({_one_line(err)})") from None
            if not hasattr(mod, layer.python_param.layer):
                raise InputError(f"{where}: module '{module}' has no class "
                                 f"'{layer.python_param.layer}'")
        available.update(layer.top)
    return net_param


def _blob_shape(blob):
    """Shape of a BlobProto: ``shape.dim`` or the legacy (num, channels, height, width)."""
    if blob.HasField("shape"):
        return tuple(int(d) for d in blob.shape.dim), False
    return (int(blob.num), int(blob.channels), int(blob.height), int(blob.width)), True


def _legacy(shape):
    """A shape padded on the left with 1s to 4 axes (Caffe's LegacyShape)."""
    return (1,) * (4 - len(shape)) + tuple(shape) if len(shape) <= 4 else None


def read_weights(weights):
    """The ``caffe_pb2.NetParameter`` of a .caffemodel (its layers and their blobs)."""
    from caffe.proto import caffe_pb2

    weights = str(weights)
    if not os.path.isfile(weights):
        raise InputError(f"{weights}: no such weights file")
    with open(weights, "rb") as fh:
        raw = fh.read()
    param = caffe_pb2.NetParameter()
    try:
        param.ParseFromString(raw)
    except Exception as err:  # protobuf's DecodeError and friends
        raise InputError(f"{weights}: not a Caffe weights file ({_one_line(err)})") from None
    return param


def turns_crops(net_param):
    """True when a net (a prototxt's or a .caffemodel's ``NetParameter``) turns its crops
    hand-up (has a ``HandTurnLayer``)."""
    return any(layer.type == "Python" and layer.python_param.layer == HAND_TURN_LAYER
               for layer in net_param.layer)


def default_model(weights):
    """The project's deploy net for ``weights`` (absolute path):
    ``prototxt/deploy_hand_up.prototxt`` for weights trained on crops turned hand-up, else
    ``prototxt/deploy.prototxt`` (also when the weights cannot be read: :func:`load_net` then
    says why)."""
    try:
        turned = weights is not None and turns_crops(read_weights(weights))
    except InputError:
        turned = False
    return str(PROJECT / (TURNED_MODEL if turned else PLAIN_MODEL))


def check_weights(weights, net, model="the model"):
    """Check that a .caffemodel fits a built ``caffe.Net`` blob for blob, before Caffe copies it.

    Every layer of ``net`` that has parameters must be in the weights file (matched by name,
    as Caffe does) with the same number of blobs, the same shapes and complete data.
    """
    param = read_weights(weights)
    source = {}
    for layer in list(param.layer) + list(param.layers):
        if layer.blobs:
            source[layer.name] = layer.blobs
    if not source:
        raise InputError(f"{weights}: not a Caffe weights file (no layer with learned blobs)")

    for name, blobs in net.params.items():
        if name not in source:
            have = ", ".join(sorted(source)) or "none"
            raise InputError(f"{weights} has no blobs for layer '{name}' of {model} "
                             f"(it has layers: {have})")
        src = source[name]
        if len(src) != len(blobs):
            raise InputError(f"{weights}: layer '{name}' has {len(src)} blobs, {model} expects "
                             f"{len(blobs)}")
        for j, (sblob, tblob) in enumerate(zip(src, blobs)):
            target = tuple(int(d) for d in tblob.data.shape)
            shape, legacy = _blob_shape(sblob)
            fits = (_legacy(target) == shape) if legacy else (target == shape)
            if not fits:
                raise InputError(f"{weights}: layer '{name}' blob {j} has shape {shape}, but "
                                 f"{model} expects {target}")
            count = int(np.prod(target))
            have = max(len(sblob.data), len(sblob.double_data))
            if have != count:
                raise InputError(f"{weights}: layer '{name}' blob {j} holds {have} values, "
                                 f"expected {count} for shape {target}")
    return param


def load_net(model, weights):
    """Build the TEST-phase net of ``model`` and copy ``weights`` into it, all checked first.

    ``weights`` may be None (random initialisation, for tests). Returns a ``caffe.Net``.
    """
    caffe = import_caffe()
    model = str(model)
    if weights is not None and not os.path.isfile(str(weights)):
        raise InputError(f"{weights}: no such weights file")
    model_param = check_model(model)
    try:
        net = caffe.Net(model, caffe.TEST)
    except Exception as err:  # e.g. an exception raised in a Python layer's setup
        raise InputError(f"{model}: Caffe cannot build the net ({_one_line(err)})") from None
    if weights is not None:
        trained_turned = turns_crops(check_weights(weights, net, model))
        if trained_turned != turns_crops(model_param):
            how = "on crops turned hand-up" if trained_turned else "on crops as they come"
            does = "does not turn its input" if trained_turned else "turns its input hand-up"
            right = TURNED_MODEL if trained_turned else PLAIN_MODEL
            raise InputError(f"{weights}: trained {how}, but {model} {does}: use --model {right} "
                             "(or a net like it)")
        net.copy_from(str(weights))
    return net


def input_blob(net, name, model="the model"):
    """The name of the net's input blob ``name`` (or its only input when ``name`` is None)."""
    inputs = list(net.inputs)
    if name is None:
        if len(inputs) != 1:
            raise InputError(f"{model}: has inputs {inputs}; name the image input with --input")
        return inputs[0]
    if name not in inputs:
        raise InputError(f"{model}: has no input blob '{name}' (inputs: {inputs or 'none'}); "
                         "use a deploy net with an Input layer")
    return name


def output_blob(net, name, width, model="the model", option="--blob"):
    """Check that the net has a blob ``name`` of shape (N, width); return the name."""
    if name not in net.blobs:
        raise InputError(f"{model}: has no blob '{name}' (blobs: {', '.join(net.blobs)}); "
                         f"choose one with {option}")
    shape = net.blobs[name].data.shape
    if len(shape) < 2 or int(np.prod(shape[1:])) != width:
        raise InputError(f"{model}: blob '{name}' has shape {tuple(shape)}, expected (N, {width})")
    return name


# the blobs of a net that turns its crops so that the hand points up (tools/make_nets.py,
# variant hand_up): its theta poses the hand in the turned crops
TURNED_CROPS, TURN_ANGLES = "depth_up", "turn"


def theta_frame(outs, crops):
    """After a forward pass of ``crops`` ``(N, 1, H, W)``, from its outputs ``outs`` (arrays by
    blob name, either backend's): ``(crops, angles)``, the crops the net's ``theta`` poses the
    hand in and the angles (``(N,)`` radians, counter-clockwise, y up) that turned them: for a
    net that turns its input (outputs ``depth_up`` and ``turn``), its turned crops and their
    angles; for any other net, ``crops`` and None. A depth fit of theta
    (deepmodel.fitting.depth_fit) runs on these crops; :func:`keypoints_of_theta` turns its
    keypoints back."""
    if TURNED_CROPS in outs and TURN_ANGLES in outs:
        n = len(crops)
        turned = np.array(outs[TURNED_CROPS][:n], dtype=np.float32)
        return turned, np.array(np.asarray(outs[TURN_ANGLES]).reshape(n), dtype=np.float64)
    return crops, None


def keypoints_of_theta(model, theta, angles=None):
    """``(N, 93)`` keypoints of the hand model posed by ``theta`` ``(N, 26)``, turned back by
    ``angles`` (from :func:`theta_frame`; None: not turned) into the crops' own frame."""
    from deepmodel.model.hand_turn import turn_points

    keypoints = model.forward(theta).reshape(len(theta), -1)
    return keypoints if angles is None else turn_points(keypoints, -np.asarray(angles))


def net_keypoints(net, data_blob, joints_blob, crops):
    """Forward the crops: ``(N, 1, H, W)`` -> the net's ``(N, 93)`` normalised keypoints."""
    n = len(crops)
    net.blobs[data_blob].reshape(n, *crops.shape[1:])
    net.reshape()
    net.blobs[data_blob].data[...] = crops
    net.forward()
    return np.array(net.blobs[joints_blob].data.reshape(n, -1), dtype=np.float64)


def fit_outputs(fitter, crops, outs, cube_mm, center_mm=None, theta_blob="theta", progress=False):
    """The net's angles fitted to the crops' depth, from a forward pass's outputs ``outs`` (a dict
    by blob name: ``theta_blob`` ``(N, 26)`` and, for a net that turns its crops, ``depth_up``
    and ``turn``; either backend's, :mod:`deepmodel.runtime.nets`). See :func:`fit_net_pose`."""
    n = len(crops)
    theta = np.array(np.asarray(outs[theta_blob]).reshape(n, -1), np.float64)
    posed, angles = theta_frame(outs, crops)
    fit = fitter.fit(posed[:, 0], theta, center_mm, cube_mm, progress=progress)
    return keypoints_of_theta(fitter.model, fit["theta"], angles), fit


def fit_net_pose(net, theta_blob, model_path, crops, cube_mm, center_mm=None, progress=False,
                 fitter=None):
    """The net's angles (its ``theta_blob``, after a forward pass of ``crops`` ``(N, 1, H, W)``)
    fitted to the crops' depth (``fitter``, default a :class:`deepmodel.fitting.depth_fit.DepthFitter`
    of the NYU hand; cube edges ``(N,)`` mm, crop centres ``(N, 3)`` mm or None for the fitter's
    nominal depth). A net that turns its crops is fitted in the turned crops, and the fitted hand
    turned back.

    Returns ``(keypoints (N, 93) normalised, in the crops' own frame, the fitter's result dict)``.
    """
    if fitter is None:
        from deepmodel.fitting.depth_fit import DepthFitter
        from deepmodel.model.hand_model import HandModel

        fitter = DepthFitter(HandModel.nyu())
    output_blob(net, theta_blob, fitter.model.num_free, model_path, "--theta-blob")
    outs = {b: net.blobs[b].data for b in (theta_blob, TURNED_CROPS, TURN_ANGLES) if b in net.blobs}
    return fit_outputs(fitter, crops, outs, cube_mm, center_mm, theta_blob, progress)


def fitted_keypoints(net, theta_blob, model_path, crops, cube_mm):
    """:func:`fit_net_pose`'s keypoints ``(N, 93)``, the crops' centres unknown (nominal depth)."""
    return fit_net_pose(net, theta_blob, model_path, crops, cube_mm)[0]
