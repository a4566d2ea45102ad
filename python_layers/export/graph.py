"""A small builder of ONNX graphs on the ``onnx`` package's helper API: named values, constants
as initializers, one call per operator, every intermediate name unique."""
import numpy as np

OPSET = 17          # the ONNX operator set the exported files use (ONNX Runtime >= 1.12 runs it)

_ELEM = {np.dtype(np.float32): "FLOAT", np.dtype(np.float64): "DOUBLE",
         np.dtype(np.int64): "INT64", np.dtype(np.bool_): "BOOL"}


def onnx_modules():
    """``(onnx, helper, numpy_helper)``, or an InputError saying how to install them."""
    from deepmodel.plumbing import InputError

    try:
        import onnx
        from onnx import helper, numpy_helper
    except ImportError as err:
        raise InputError(f"the onnx package cannot be imported ({err}): install the extra with "
                         "`pip install -e '.[onnx]'`") from None
    return onnx, helper, numpy_helper


class Graph:
    """Nodes and initializers of one ONNX graph.

    ``g.op("Add", [a, b])`` adds a node and returns its output's name (a list of names with
    ``outputs=k``); ``g.const(array)`` stores a constant (its NumPy dtype kept) and returns its
    name. Names are made unique from a hint (``"theta/cos"``); :meth:`model` wraps it up.
    """

    def __init__(self):
        self.onnx, self.helper, self.numpy_helper = onnx_modules()
        self.nodes, self.initializers, self.taken = [], [], set()

    def name(self, hint):
        base, i = str(hint), 1
        name = base
        while name in self.taken:
            i += 1
            name = f"{base}_{i}"
        self.taken.add(name)
        return name

    def const(self, value, hint="const", dtype=None):
        array = np.asarray(value, dtype=dtype)
        if array.dtype not in _ELEM:
            raise TypeError(f"constant {hint}: dtype {array.dtype} is not exported")
        name = self.name(hint)
        self.initializers.append(self.numpy_helper.from_array(array.copy(order="C"), name))  # 0-d kept
        return name

    def ints(self, values, hint="shape"):
        """An int64 constant (shapes, indices, axes)."""
        return self.const(np.asarray(values, np.int64), hint)

    def op(self, op_type, inputs, hint=None, outputs=1, **attrs):
        hint = hint or op_type.lower()
        names = [self.name(hint if outputs == 1 else f"{hint}_{k}") for k in range(outputs)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), names, name=names[0],
                                                **attrs))
        return names[0] if outputs == 1 else names

    def cast(self, x, dtype, hint=None):
        to = getattr(self.onnx.TensorProto, _ELEM[np.dtype(dtype)])
        return self.op("Cast", [x], hint or f"{x}/cast", to=to)

    def value_info(self, name, dtype, shape):
        elem = getattr(self.onnx.TensorProto, _ELEM[np.dtype(dtype)])
        return self.helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))

    def model(self, name, inputs, outputs, doc=""):
        """The checked ``ModelProto`` (opset :data:`OPSET`) with graph inputs/outputs given as
        ``value_info`` results."""
        graph = self.helper.make_graph(self.nodes, name, inputs, outputs, self.initializers)
        model = self.helper.make_model(graph, producer_name="deepmodel-caffe",
                                       opset_imports=[self.helper.make_opsetid("", OPSET)],
                                       doc_string=doc)
        model.ir_version = 8        # the IR version of opset 17: older runtimes load it too
        self.onnx.checker.check_model(model, full_check=True)
        return model
