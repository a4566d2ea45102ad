"""Generate every network and solver of the project from one place (``caffe.NetSpec``).

    tools/make_nets.py            # (re)write prototxt/*.prototxt   (what `make nets` runs)
    tools/make_nets.py --check    # exit 1 if the committed files differ from this generator

The paper's network (Zhou et al., IJCAI 2016, Fig. 2), input a 1x128x128 depth crop in [-1, 1]:

    conv 5x5x8 + ReLU    128 -> 124        (stride 1, no padding)
    max-pool 4 stride 4  124 -> 31         (Caffe pooling rounds up: ceil((124-4)/4)+1 = 31)
    conv 5x5x8 + ReLU     31 -> 27
    max-pool 2 stride 2   27 -> 14         (ceil((27-2)/2)+1 = 14; the last window covers row 26 only)
    conv 3x3x8 + ReLU     14 -> 12         -> 12x12x8 = 1152 values, as the paper says
    fc 1024 + ReLU + dropout 0.3, fc 1024 + ReLU + dropout 0.3
    fc 26 -> blob ``theta`` (N, 26): the free parameters (angle = theta + initial value)
    HandModelLayer -> blob ``joints`` (N, 93): 31 keypoints' xyz in normalised units
    EuclideanLoss(joints, joint_gt) + JointLimitLossLayer(theta)

No padding anywhere: with Caffe's ceil rounding, kernel = stride pooling and unpadded convolutions
give exactly the paper's 12x12x8, which is also what the released prototxt does.

Variants (Table 1 of the paper), each as train_val / deploy / solver with the suffix shown:

    ""               model layer + joint-limit loss (the paper's net)
    "_nolimit"       model layer, no joint-limit loss
    "_direct_joints" fc 93 -> ``joints``, Euclidean loss on the joints
    "_direct_params" fc 26 -> ``theta``, Euclidean loss against the true angles (nyu_*_theta LMDB);
                     its deploy net adds the model layer so evaluation gets ``joints`` as for the
                     others (no loss on them while training; a 512x93 net output would also flood
                     Caffe's log at every display).
    "_hand_up"       the paper's net on crops turned in their plane so that the hand points up
                     (docs/experiments/realism.md, "Every crop turned to its hand"): a ``HandTurnLayer``
                     (python_layers/layers/hand_turn_layer.py) between the input and conv1 (blobs
                     ``depth_up``, the turned crops, and ``turn`` (N, 1), the angles, radians),
                     the model layer's keypoints (blob ``keypoints_up``) turned back to the crop's
                     frame by a ``PointTurnLayer`` (python_layers/layers/point_turn_layer.py) into
                     ``joints``; the loss and the labels as for the paper's net. Its ``theta``
                     poses the hand in the turned crop. NYU only.

ICVL (the paper's section 4.2: the same NYU hand, only the angles learned): the same four variants (not
``_hand_up``) with ``_icvl`` after ``train_val``/``deploy``/``solver`` (e.g. ``deploy_icvl_direct_joints``),
reading the ``icvl_<split>_*`` LMDBs (16 joints, 48 values, 250 mm cube). The model variants put a
``JointSetLayer`` (python_layers/layers/joint_set_layer.py) after the hand model layer: its 31 keypoints
(blob ``keypoints``) become ICVL's 16 joints (blob ``joints``, (N, 48)): the model's joint set
``icvl16`` (which keypoints, mirrored in x), scaled from the NYU hand's size on ICVL hands
(102.2 mm per unit) to the ICVL crop's 125 mm per unit, and given relative to ICVL's crop-centre
joint (the palm, whose label is always 0), so the hand is placed by its palm rather than by the
learned global translation (docs/icvl.md); direct joint regression has fc 48. The joint-limit
loss's lambda keeps the paper's balance with this smaller joint loss (``limit_lambda``: 0.345).

Every deploy net has input ``depth`` (1, 1, 128, 128) and output ``joints`` (N, 93; ICVL: N, 48);
the nets with parameters also expose blob ``theta`` (N, 26). Deploy nets drop the Dropout layers (identity in the
TEST phase) and the losses; layer names match train_val so the snapshots load into them.

Initialisation: conv and the two fc 1024 layers use Xavier (as released), biases 0. The last layer
(fc 26 or fc 93) starts from Gaussian weights of std 0.001 and zero bias, so at iteration 0 the net
outputs theta ~ 0 (rms 0.002-0.008 measured), i.e. the model layer's rest pose, whose angles are
all within their limits (so the limit loss starts at about 0; three upper limits lie within
0.03 rad of the rest pose) - or, for direct joint regression, joints ~ the crop centre. The released training
prototxt also used std 0.001 for the second fc 1024; we use Xavier there, because two stacked tiny
layers make the first hundreds of iterations nearly flat, and our budget is a few hundred iterations.

The hand-centre refinement net (docs/localization.md; ``*_refine.prototxt``, trained by
``tools/train_refine.py``, used by ``deepmodel.data.hand_crop.locate.locate_hand``), input the same 1x128x128
crop around the current centre, output blob ``offset`` (N, 3): the 3D offset from the crop centre
to the palm centre (NYU joint 34), x right, y up, z away, in units of half the cube (150 mm):

    average-pool 4 stride 4   128 -> 32    (a smooth 9.4 mm-per-pixel view of the cube)
    conv 5x5x16 + ReLU         32 -> 28,  max-pool 2 stride 2  28 -> 14
    conv 3x3x32 + ReLU         14 -> 12,  max-pool 2 stride 2  12 -> 6   (6x6x32 = 1152 values)
    fc 128 + ReLU, fc 3 -> ``offset``       (about 153 000 weights, 0.6 MB)

Its train net has Input layers (``depth``, ``offset_gt`` (N, 3)): the training crops are made in
memory by the tool; EuclideanLoss. Solver: Adam, lr 0.001 divided by 10 for the last quarter.

Paths in the generated files are relative to the project root: run Caffe from there
(``caffe train -solver prototxt/solver.prototxt``). Snapshots go to ``results/snapshots/`` (Caffe
needs the folder to exist: ``mkdir -p results/snapshots``; tools/train.py creates it).
"""
import json


from deepmodel.data.datasets import icvl
from deepmodel.data.records.split import LmdbSplit
from deepmodel.plumbing import PROJECT, InputError

PROTOTXT_DIR = PROJECT / "prototxt"
LMDB_DIR = "data/lmdb"          # relative to the project root, as Caffe is run from there
SNAPSHOT_DIR = "results/snapshots"
CROP = 128
NUM_PARAMS = 26
NUM_JOINT_VALUES = 93
DATASETS = {
    # name: (file infix, values per joint label, JointSetLayer param_str or None)
    "nyu": ("", 93, None),
    # ICVL's crops are centred on its joint 0 (the palm), so the model's joints are given
    # relative to it (centre_joint: JointSetLayer; docs/icvl.md, "Why the model layer was behind")
    "icvl": ("_icvl", 48, json.dumps({"model": "nyu31", "joint_set": "icvl16",
                                      "crop_unit_mm": icvl.CUBE_MM / 2,
                                      "centre_joint": icvl.CENTER_JOINT})),
}
TRAIN_BATCH = 512               # the paper's batch size
TEST_BATCH = 256
TEST_ITER = 8                   # 2048 test frames per test pass (tools/train.py adapts it to the LMDB)
TEST_INTERVAL = 100
DISPLAY = 10
# Budget of `caffe train -solver prototxt/solver.prototxt` and `make train`: about 20 minutes on a
# 2-core machine (one iteration at batch 512 measured at ~1.6 s; see docs/benchmarks.md).
MAX_ITER = 600
SNAPSHOT = 200
BASE_LR = 0.003                 # the paper's SGD settings
MOMENTUM = 0.9
RANDOM_SEED = 1701
# Caffe's clip_gradients: the L2 norm of all parameter gradients is scaled down to this when it is
# larger. Without it, some initialisations (random_seed 3 and 4 of the default net) start with
# gradient norms of 100-900 (a learning run's are mostly under 25), whose first updates leave
# every unit of conv3 dead: the net then predicts one pose for every crop and never recovers
# (docs/benchmarks.md, "Seeds that did not learn"). The default seed's gradients stay under it.
CLIP_GRADIENTS = 100.0
HAND_MODEL_PARAM = json.dumps({"model": "nyu31"})
LIMIT_LAMBDA = 1.0              # the paper's weight of the joint-limit loss (its setting: NYU)


def limit_lambda(dataset="nyu"):
    """The joint-limit loss's weight for a dataset's nets: the paper's ``LIMIT_LAMBDA`` scaled so
    that it keeps the paper's balance with the joint loss.

    The joint loss pulls on the angles with a strength (its curvature in the angles) that grows
    with the number of joints J it sums over and with the square of the hand's size in the crop's
    units, s (the JointSetLayer's factor); the hinge's push on an angle out of its limits is
    ``lambda`` whatever they are. The paper's setting is all K keypoints of the model at s = 1
    (NYU: the model's keypoints are the labels), so lambda = LIMIT_LAMBDA * (J / K) * s**2:
    1 on NYU, 16/31 * (102.2/125)**2 = 0.345 on ICVL (docs/icvl.md, "Why the model layer was
    behind": with lambda 1 the limit loss cost 0.29 mm there).
    """
    joint_set = DATASETS[dataset][2]
    if joint_set is None:
        return LIMIT_LAMBDA
    from deepmodel.model.hand_model import HandModel

    p = json.loads(joint_set)
    model = HandModel.by_name(p["model"])
    js = model.joint_set(p["joint_set"])
    s = js.mm_per_unit / p["crop_unit_mm"]
    return round(LIMIT_LAMBDA * len(js.keypoints) / model.num_keypoints * s ** 2, 4)


def joint_limit_param(dataset="nyu"):
    """param_str of the JointLimitLossLayer of a dataset's nets."""
    return json.dumps({"model": "nyu31", "penalty": "hinge", "lambda": limit_lambda(dataset)})
HEADER = "# Generated by tools/make_nets.py ({what}). Do not edit: change the generator, run `make nets`.\n"

VARIANTS = {
    # name: (file suffix, head, joint-limit loss, description)
    "paper": ("", "model", True, "model layer + joint-limit loss (the paper's net)"),
    "nolimit": ("_nolimit", "model", False, "model layer, no joint-limit loss"),
    "direct_joints": ("_direct_joints", "joints", False, "direct joint regression (fc 93)"),
    "direct_params": ("_direct_params", "params", False,
                      "direct parameter regression (fc 26 against the true angles)"),
    "hand_up": ("_hand_up", "model", True,
                "the paper's net on crops turned so that the hand points up"),
}
# Variants that turn every crop so that its hand points up (HandTurnLayer after the input) and the
# model's keypoints back to the crop's frame (PointTurnLayer after the hand model layer): NYU only
TURNED = {"hand_up"}
DATASET_VARIANTS = {"nyu": list(VARIANTS), "icvl": [v for v in VARIANTS if v not in TURNED]}


def variant_files(variant, dataset="nyu"):
    """File names (in prototxt/) of a variant: dict with keys train_val, deploy, solver."""
    suffix = DATASETS[dataset][0] + VARIANTS[variant][0]
    return {"train_val": f"train_val{suffix}.prototxt", "deploy": f"deploy{suffix}.prototxt",
            "solver": f"solver{suffix}.prototxt"}


def has_theta_blob(variant):
    """True when the variant's deploy net has the hand model layer's input, a ``theta`` blob of
    the angles (every head but direct joint regression)."""
    return VARIANTS[variant][1] != "joints"


def needs_theta_labels(variant):
    """True when the variant trains against the true angles (the ``nyu_<split>_theta`` LMDB)."""
    return VARIANTS[variant][1] == "params"


def _caffe():
    try:
        import caffe
        from caffe import layers as L, params as P
    except ImportError as err:
        raise InputError(f"pycaffe is not importable ({err}): run `make caffe` and use .venv/bin/python")
    return caffe, L, P


def _fillers(std=None):
    weight = {"type": "gaussian", "std": std} if std is not None else {"type": "xavier"}
    return {"weight_filler": weight, "bias_filler": {"type": "constant", "value": 0}}


def _trunk(n, depth, deploy):
    """Add the convolutional trunk and the two fc 1024 layers; return the fc2 top (N, 1024)."""
    _, L, P = _caffe()
    n.conv1 = L.Convolution(depth, num_output=8, kernel_size=5, **_fillers())
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=4, stride=4)
    n.conv2 = L.Convolution(n.pool1, num_output=8, kernel_size=5, **_fillers())
    n.relu2 = L.ReLU(n.conv2, in_place=True)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv3 = L.Convolution(n.pool2, num_output=8, kernel_size=3, **_fillers())
    n.relu3 = L.ReLU(n.conv3, in_place=True)
    n.fc1 = L.InnerProduct(n.conv3, num_output=1024, **_fillers())
    n.relu4 = L.ReLU(n.fc1, in_place=True)
    if not deploy:
        n.drop1 = L.Dropout(n.fc1, dropout_ratio=0.3, in_place=True)
    n.fc2 = L.InnerProduct(n.fc1, num_output=1024, **_fillers())
    n.relu5 = L.ReLU(n.fc2, in_place=True)
    if not deploy:
        n.drop2 = L.Dropout(n.fc2, dropout_ratio=0.3, in_place=True)
    return n.fc2


def _hand_model(theta):
    _, L, _ = _caffe()
    return L.Python(theta, python_param={"module": "deepmodel.layers.hand_model_layer", "layer": "HandModelLayer",
                                         "param_str": HAND_MODEL_PARAM})


def _net_input(n, variant, depth):
    """The blob the trunk reads: ``depth``, or for a turned variant the crops turned hand-up
    (blob ``depth_up``; the angles in blob ``turn``, (N, 1) radians)."""
    if variant not in TURNED:
        return depth
    _, L, _ = _caffe()
    n.depth_up, n.turn = L.Python(depth, ntop=2, python_param={
        "module": "deepmodel.layers.hand_turn_layer", "layer": "HandTurnLayer"})
    return n.depth_up


def _head(n, variant, fc2, deploy, dataset="nyu"):
    """Add the output layers (and, unless deploy, the losses) of a variant."""
    _, L, _ = _caffe()
    head, limit = VARIANTS[variant][1], VARIANTS[variant][2]
    _, width, joint_set = DATASETS[dataset]
    if head == "joints":
        n.joints = L.InnerProduct(fc2, num_output=width, **_fillers(0.001))
    else:
        n.theta = L.InnerProduct(fc2, num_output=NUM_PARAMS, **_fillers(0.001))
        if (head == "model" or deploy) and variant in TURNED:
            n.keypoints_up = _hand_model(n.theta)
            n.joints = L.Python(n.keypoints_up, n.turn, python_param={
                "module": "deepmodel.layers.point_turn_layer", "layer": "PointTurnLayer",
                "param_str": json.dumps({"inverse": True})})
        elif (head == "model" or deploy) and joint_set is None:
            n.joints = _hand_model(n.theta)
        elif head == "model" or deploy:
            n.keypoints = _hand_model(n.theta)
            n.joints = L.Python(n.keypoints, python_param={
                "module": "deepmodel.layers.joint_set_layer", "layer": "JointSetLayer", "param_str": joint_set})
    if deploy:
        return
    if head == "params":
        n.theta_loss = L.EuclideanLoss(n.theta, n.theta_gt)
    else:
        n.joint_loss = L.EuclideanLoss(n.joints, n.joint_gt)
    if limit:
        # top[0] the paper's hinge loss (weight 1), top[1] the share of samples out of their
        # limits (weight 0: only shown in the log)
        n.limit_loss, n.out_of_limits = L.Python(
            n.theta, ntop=2, loss_weight=[1, 0],
            python_param={"module": "deepmodel.layers.joint_limit_loss", "layer": "JointLimitLossLayer",
                          "param_str": joint_limit_param(dataset)})


def _body(n, variant, deploy, dataset="nyu"):
    """Everything after the input blob ``n.depth``: the turn (for a turned variant), the trunk,
    the head and, unless ``deploy``, the losses."""
    _head(n, variant, _trunk(n, _net_input(n, variant, n.depth), deploy=deploy), deploy=deploy,
          dataset=dataset)


def _data_layers(n, variant, split, batch, phase, lmdb_dir, dataset="nyu"):
    """Native Data layers reading the agreed LMDBs in step (same keys, same order, same batch)."""
    caffe, L, P = _caffe()
    # direct parameter regression reads the true angles instead of the joints (an unused joint_gt
    # top would become a net output that Caffe prints value by value at every display)
    label = ("theta_gt", "theta") if needs_theta_labels(variant) else ("joint_gt", "joint")
    tops = [("depth", "depth"), label]
    for top, kind in tops:
        source = str(LmdbSplit.of(lmdb_dir, dataset, split).lmdb(kind))
        setattr(n, top, L.Data(source=source, backend=P.Data.LMDB, batch_size=batch,
                               include={"phase": phase}))


def train_val_net(variant, train_batch=TRAIN_BATCH, test_batch=TEST_BATCH, lmdb_dir=LMDB_DIR,
                  dataset="nyu"):
    """NetParameter of a variant's train_val net: TRAIN and TEST data layers, trunk, head, losses."""
    caffe, _, _ = _caffe()
    from caffe.proto import caffe_pb2

    train = caffe.NetSpec()
    _data_layers(train, variant, "train", train_batch, caffe.TRAIN, lmdb_dir, dataset)
    _body(train, variant, deploy=False, dataset=dataset)
    test = caffe.NetSpec()
    _data_layers(test, variant, "test", test_batch, caffe.TEST, lmdb_dir, dataset)
    train_proto, test_proto = train.to_proto(), test.to_proto()
    n_data = len(test_proto.layer)
    net = caffe_pb2.NetParameter()
    net.name = f"DeepModel{DATASETS[dataset][0]}{VARIANTS[variant][0]}"
    net.layer.extend(train_proto.layer[:n_data])
    net.layer.extend(test_proto.layer)
    net.layer.extend(train_proto.layer[n_data:])
    return net


def deploy_net(variant, batch=1, dataset="nyu"):
    """NetParameter of a variant's deploy net: input ``depth`` (batch, 1, 128, 128) -> ``joints``."""
    caffe, L, _ = _caffe()
    n = caffe.NetSpec()
    n.depth = L.Input(shape={"dim": [batch, 1, CROP, CROP]})
    _body(n, variant, deploy=True, dataset=dataset)
    net = n.to_proto()
    net.name = f"DeepModel{DATASETS[dataset][0]}{VARIANTS[variant][0]}_deploy"
    return net


def bench_train_net(variant="paper", batch=TRAIN_BATCH):
    """The TRAIN net of a variant with Input layers instead of Data layers (for timing with pycaffe).

    Same trunk, head and losses as train_val; inputs ``depth`` (batch, 1, 128, 128) and ``joint_gt``
    (batch, 93) or, for direct parameter regression, ``theta_gt`` (batch, 26).
    """
    caffe, L, _ = _caffe()
    n = caffe.NetSpec()
    n.depth = L.Input(shape={"dim": [batch, 1, CROP, CROP]})
    if needs_theta_labels(variant):
        n.theta_gt = L.Input(shape={"dim": [batch, NUM_PARAMS]})
    else:
        n.joint_gt = L.Input(shape={"dim": [batch, NUM_JOINT_VALUES]})
    _body(n, variant, deploy=False)
    net = n.to_proto()
    net.name = f"DeepModel{VARIANTS[variant][0]}_bench"
    net.force_backward = True
    return net


REFINE_FILES = {"train": "train_refine.prototxt", "deploy": "deploy_refine.prototxt",
                "solver": "solver_refine.prototxt"}
REFINE_BATCH = 64
REFINE_MAX_ITER = 5000
REFINE_LR = 0.001
REFINE_SEED = 1313


def refine_net(deploy, batch=REFINE_BATCH):
    """NetParameter of the centre-refinement net: ``depth`` (batch, 1, 128, 128) -> ``offset``
    (batch, 3); unless ``deploy``, also the input ``offset_gt`` (batch, 3) and the EuclideanLoss."""
    caffe, L, P = _caffe()
    n = caffe.NetSpec()
    n.depth = L.Input(shape={"dim": [batch, 1, CROP, CROP]})
    if not deploy:
        n.offset_gt = L.Input(shape={"dim": [batch, 3]})
    n.pool0 = L.Pooling(n.depth, pool=P.Pooling.AVE, kernel_size=4, stride=4)
    n.conv1 = L.Convolution(n.pool0, num_output=16, kernel_size=5, **_fillers())
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.pool1 = L.Pooling(n.conv1, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.conv2 = L.Convolution(n.pool1, num_output=32, kernel_size=3, **_fillers())
    n.relu2 = L.ReLU(n.conv2, in_place=True)
    n.pool2 = L.Pooling(n.conv2, pool=P.Pooling.MAX, kernel_size=2, stride=2)
    n.fc1 = L.InnerProduct(n.pool2, num_output=128, **_fillers())
    n.relu3 = L.ReLU(n.fc1, in_place=True)
    n.offset = L.InnerProduct(n.fc1, num_output=3, **_fillers(0.001))
    if not deploy:
        n.loss = L.EuclideanLoss(n.offset, n.offset_gt)
    net = n.to_proto()
    net.name = "DeepModelRefine_deploy" if deploy else "DeepModelRefine"
    return net


def refine_solver(net_path=None, max_iter=REFINE_MAX_ITER, snapshot_prefix=None):
    """SolverParameter of the refinement net: Adam, lr 0.001, x0.1 after 3/4 of the iterations."""
    _caffe()
    from caffe.proto import caffe_pb2

    s = caffe_pb2.SolverParameter()
    s.net = net_path or f"prototxt/{REFINE_FILES['train']}"
    s.type = "Adam"
    s.base_lr = REFINE_LR
    s.momentum = 0.9
    s.momentum2 = 0.999
    s.lr_policy = "step"
    s.gamma = 0.1
    s.stepsize = max_iter * 3 // 4
    s.display = 100
    s.max_iter = max_iter
    s.snapshot = 0
    s.snapshot_prefix = snapshot_prefix or f"{SNAPSHOT_DIR}/refine"
    s.solver_mode = caffe_pb2.SolverParameter.CPU
    s.random_seed = REFINE_SEED
    return s


DETECT_FILES = {"train": "train_detect.prototxt", "deploy": "deploy_detect.prototxt",
                "solver": "solver_detect.prototxt"}
DETECT_INPUT = (60, 80)     # rows, columns of the detector's input for NYU's camera (any size works)
DETECT_BATCH = 32
DETECT_MAX_ITER = 15000
DETECT_LR = 0.002
DETECT_SEED = 1717
DETECT_WIDTH = 16


def detect_net(deploy, batch=DETECT_BATCH, size=DETECT_INPUT):
    """NetParameter of the hand detector (``deepmodel.data.hand_crop.detect``), fully convolutional:
    ``depth`` (batch, 1, rows, cols), the frame resampled to a fixed focal length and normalised
    -> ``heat`` (batch, 1, rows / 4, cols / 4), a logit per 4x4 input pixels that the palm centre
    lies there; unless ``deploy``, also the input ``heat_gt`` (soft targets in [0, 1]) and the
    sigmoid cross-entropy loss. A 5x5 convolution of stride 2, a 3x3 of stride 2, then 3x3
    convolutions dilated 1, 2, 4, 16 channels each (ReLU), and a 1x1 to the heat map: receptive
    field 65 input pixels (about 0.9 m at 1 m), about 3 M multiply-adds for NYU's 80x60 input."""
    caffe, L, P = _caffe()
    n = caffe.NetSpec()
    rows, cols = size
    n.depth = L.Input(shape={"dim": [batch, 1, rows, cols]})
    if not deploy:
        from deepmodel.data.hand_crop.detect import heat_size

        n.heat_gt = L.Input(shape={"dim": [batch, 1, *heat_size(size)]})
    w = DETECT_WIDTH
    n.conv1 = L.Convolution(n.depth, num_output=w, kernel_size=5, stride=2, pad=2, **_fillers())
    n.relu1 = L.ReLU(n.conv1, in_place=True)
    n.conv2 = L.Convolution(n.conv1, num_output=w, kernel_size=3, stride=2, pad=1, **_fillers())
    n.relu2 = L.ReLU(n.conv2, in_place=True)
    n.conv3 = L.Convolution(n.conv2, num_output=w, kernel_size=3, pad=1, **_fillers())
    n.relu3 = L.ReLU(n.conv3, in_place=True)
    n.conv4 = L.Convolution(n.conv3, num_output=w, kernel_size=3, pad=2, dilation=2, **_fillers())
    n.relu4 = L.ReLU(n.conv4, in_place=True)
    n.conv5 = L.Convolution(n.conv4, num_output=w, kernel_size=3, pad=4, dilation=4, **_fillers())
    n.relu5 = L.ReLU(n.conv5, in_place=True)
    n.heat = L.Convolution(n.conv5, num_output=1, kernel_size=1, **_fillers(0.01))
    if not deploy:
        n.loss = L.SigmoidCrossEntropyLoss(n.heat, n.heat_gt)
    net = n.to_proto()
    net.name = "DeepModelDetect_deploy" if deploy else "DeepModelDetect"
    return net


def detect_solver(net_path=None, max_iter=DETECT_MAX_ITER, snapshot_prefix=None):
    """SolverParameter of the detector: Adam, lr 0.002, x0.1 after 3/4 of the iterations."""
    s = refine_solver(net_path or f"prototxt/{DETECT_FILES['train']}", max_iter,
                      snapshot_prefix or f"{SNAPSHOT_DIR}/detect")
    s.base_lr = DETECT_LR
    s.random_seed = DETECT_SEED
    return s


def solver(variant, net_path=None, max_iter=MAX_ITER, snapshot_prefix=None, test_iter=TEST_ITER,
           test_interval=TEST_INTERVAL, snapshot=SNAPSHOT, dataset="nyu"):
    """SolverParameter of a variant: SGD, lr 0.003, momentum 0.9 (the paper), gradients clipped
    at ``CLIP_GRADIENTS``, CPU."""
    _caffe()
    from caffe.proto import caffe_pb2

    s = caffe_pb2.SolverParameter()
    s.net = net_path or f"prototxt/{variant_files(variant, dataset)['train_val']}"
    s.test_iter.append(test_iter)
    s.test_interval = test_interval
    s.type = "SGD"
    s.base_lr = BASE_LR
    s.momentum = MOMENTUM
    s.lr_policy = "fixed"
    s.display = DISPLAY
    s.max_iter = max_iter
    s.snapshot = snapshot
    s.snapshot_prefix = snapshot_prefix or (
        f"{SNAPSHOT_DIR}/deepmodel{DATASETS[dataset][0]}{VARIANTS[variant][0]}")
    s.solver_mode = caffe_pb2.SolverParameter.CPU
    s.random_seed = RANDOM_SEED
    s.clip_gradients = CLIP_GRADIENTS
    return s


def to_text(proto, what):
    """Prototxt text of a message with the generator's header line."""
    from google.protobuf import text_format

    return HEADER.format(what=what) + text_format.MessageToString(proto)


def generate():
    """All generated files: dict file name -> text."""
    files = {}
    for dataset, variant in ((d, v) for d in DATASETS for v in DATASET_VARIANTS[d]):
        desc = VARIANTS[variant][3] + ("" if dataset == "nyu" else f", {dataset.upper()}")
        names = variant_files(variant, dataset)
        files[names["train_val"]] = to_text(train_val_net(variant, dataset=dataset),
                                            f"{desc}, train/test")
        files[names["deploy"]] = to_text(deploy_net(variant, dataset=dataset), f"{desc}, deploy")
        files[names["solver"]] = (
            to_text(solver(variant, dataset=dataset), f"{desc}, solver")
            .replace("\n", f"\n# From the project root: mkdir -p {SNAPSHOT_DIR} && "
                           f"caffe train -solver prototxt/{names['solver']}\n", 1))
    what = "hand-centre refinement"
    files[REFINE_FILES["train"]] = to_text(refine_net(deploy=False), f"{what}, train (Input layers)")
    files[REFINE_FILES["deploy"]] = to_text(refine_net(deploy=True, batch=1), f"{what}, deploy")
    files[REFINE_FILES["solver"]] = (
        to_text(refine_solver(), f"{what}, solver")
        .replace("\n", "\n# Fed by tools/train_refine.py (`make refine-net`): its inputs are "
                       "crops made in memory\n", 1))
    what = "hand detector"
    files[DETECT_FILES["train"]] = to_text(detect_net(deploy=False), f"{what}, train (Input layers)")
    files[DETECT_FILES["deploy"]] = to_text(detect_net(deploy=True, batch=1), f"{what}, deploy")
    files[DETECT_FILES["solver"]] = (
        to_text(detect_solver(), f"{what}, solver")
        .replace("\n", "\n# Fed by tools/train_detect.py (`make detect-net`): its inputs are "
                       "scenes made in memory\n", 1))
    return files
