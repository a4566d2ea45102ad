"""The hand-up crop turn (:class:`deepmodel.layers.hand_turn_layer.HandTurnLayer`) as ONNX operators.

The same steps as :mod:`deepmodel.model.hand_turn`, in the same precision (float32 crops and
pixel maps, float64 sums and angles), with its constants and pixel tables:

* the forearm (``forearm_direction``): for each border band, the longest circular run of border
  foreground, whose run lengths need the last gap before each border pixel, a running maximum:
  here a prefix maximum by doubling steps (``log2`` of twice the border's length); the
  fall-back direction from the farthest quarter of the foreground, whose quantile comes from a
  sort (``TopK`` over the whole crop); the first of the three ways that finds a forearm wins;
* the hand's centroid and the angle (``hand_angle``), ``arctan2`` written with ``Atan``;
* the turn (``turn_crops``): each output pixel's source, rounded half to even as OpenCV's
  nearest-neighbour ``remap`` rounds it (on the same tall image of stacked crops, so the same
  float32 rounding), gathered from the crop; pixels from outside the crop are background.
"""
import numpy as np

from deepmodel.model import hand_turn as ht

F32, F64 = np.float32, np.float64


def _scan_max(g, x, length):
    """Running maximum along axis 1 of ``(N, length)`` float values (all >= -1)."""
    k = 1
    while k < length:
        head = g.op("Slice", [x, g.ints([0]), g.ints([length - k]), g.ints([1])], "turn/scan_head")
        shifted = g.op("Pad", [head, g.ints([0, k, 0, 0]), g.const(F32(-1.0), "turn/minus1")],
                       "turn/scan_shift")
        x = g.op("Max", [x, shifted], "turn/scan")
        k *= 2
    return x


def _border_run(g, fg, h, w, band):
    """``(dx, dy, found)`` of :func:`deepmodel.model.hand_turn._longest_border_run`: ``(N, 1)``
    float64, float64, bool."""
    idx = ht._border_band(h, w, band)                                       # (P, band)
    p = len(idx)
    b = g.op("ReduceMax", [g.op("Gather", [fg, g.ints(idx, "turn/band_pixels")], "turn/band",
                                axis=1)], "turn/border", axes=[2], keepdims=0)   # (N, P) 0/1
    twice = g.op("Concat", [b, b], "turn/border2", axis=1)
    pos = np.arange(2 * p, dtype=F32)
    gap = g.op("Where", [g.op("Greater", [twice, g.const(F32(0.5), "turn/half")]),
                         g.const(F32(-1.0), "turn/none"), g.const(pos, "turn/positions")],
               "turn/gaps")
    last_gap = _scan_max(g, gap, 2 * p)
    length = g.op("Sub", [g.const(pos, "turn/positions"), last_gap], "turn/run_length")
    second = g.op("Slice", [length, g.ints([p]), g.ints([2 * p]), g.ints([1])], "turn/second_lap")
    end = g.op("Add", [g.op("ArgMax", [second], "turn/argmax", axis=1, keepdims=1),
                       g.ints([p], "turn/lap")], "turn/run_end")                # (N, 1) int64
    run = g.op("GatherElements", [length, end], "turn/run", axis=1)            # (N, 1) float32
    partial = g.op("And", [g.op("Greater", [g.op("ReduceMax", [b], "turn/any", axes=[1]),
                                            g.const(F32(0.5), "turn/half")]),
                           g.op("Less", [g.op("ReduceMin", [b], "turn/all", axes=[1]),
                                         g.const(F32(0.5), "turn/half")])], "turn/partial")
    found = g.op("And", [partial, g.op("GreaterOrEqual", [run, g.const(F32(ht.MIN_RUN),
                                                                       "turn/min_run")])],
                 "turn/run_found")
    n = g.op("Max", [g.cast(run, np.int64), g.ints([1], "turn/one")], "turn/run_n")
    cum = ht._perimeter_cumsum(h, w)                                          # (2P + 1, 2)
    hi = g.op("Add", [end, g.ints([1], "turn/one")], "turn/run_hi")
    lo = g.op("Sub", [hi, n], "turn/run_lo")
    c = g.const(cum, "turn/border_cumsum")
    total = g.op("Sub", [g.op("Gather", [c, hi], axis=0), g.op("Gather", [c, lo], axis=0)],
                 "turn/run_sum")                                                # (N, 1, 2)
    mean = g.op("Div", [total, g.op("Unsqueeze", [g.cast(n, F64), g.ints([2])])], "turn/run_mean")
    row, col = g.op("Split", [mean], "turn/run_rc", outputs=2, axis=2)
    dx = g.op("Sub", [g.op("Squeeze", [col, g.ints([2])]), g.const(F64((w - 1) / 2.0))], "turn/run_dx")
    dy = g.op("Sub", [g.op("Squeeze", [row, g.ints([2])]), g.const(F64((h - 1) / 2.0))], "turn/run_dy")
    return dx, dy, found


def _far_direction(g, x, fg, fgb, h, w):
    """``(vx, vy, found)`` of :func:`deepmodel.model.hand_turn._far_direction`."""
    hw = h * w
    count = g.op("ReduceSum", [g.cast(fgb, np.int64), g.ints([1])], "turn/fg_count")   # (N, 1)
    enough = g.op("GreaterOrEqual", [count, g.ints([ht.FAR_MIN_PIXELS[0]], "turn/min_pixels")])
    # the values at ascending places lo and hi of the foreground are at descending places
    # count - 1 - lo and count - 1 - hi: a partial sort of the largest (background last)
    keyed = g.op("Where", [fgb, x, g.const(F32(-np.inf), "turn/minus_inf")], "turn/keyed")
    top = g.op("Sub", [g.op("Max", [count, g.ints([1], "turn/one")]), g.ints([1], "turn/one")],
               "turn/last")
    pos = g.op("Mul", [g.cast(top, F64), g.const(F64(ht.FAR_QUANTILE), "turn/quantile")],
               "turn/q_pos")
    lo = g.cast(g.op("Floor", [pos]), np.int64, "turn/q_lo")
    hi = g.op("Min", [g.op("Add", [lo, g.ints([1], "turn/one")]), top], "turn/q_hi")
    k = g.op("Min", [g.op("Reshape", [g.op("ReduceMax", [g.op("Add", [g.op("Sub", [top, lo]),
                                                                      g.ints([1], "turn/one")])],
                                             axes=[0, 1], keepdims=0), g.ints([1])]),
                     g.ints([hw], "turn/hw")], "turn/k")
    ordered = g.op("TopK", [keyed, k], "turn/sorted", outputs=2, largest=1, sorted=1)[0]
    low = g.op("GatherElements", [ordered, g.op("Sub", [top, lo])], "turn/q_low", axis=1)
    high = g.op("GatherElements", [ordered, g.op("Sub", [top, hi])], "turn/q_high", axis=1)
    frac = g.op("Sub", [pos, g.cast(lo, F64)], "turn/q_frac")
    thr = g.op("Add", [g.cast(low, F64), g.op("Mul", [frac, g.cast(g.op("Sub", [high, low]), F64)])],
               "turn/q_value")
    thr = g.op("Where", [enough, thr, g.const(F64(np.inf), "turn/inf64")], "turn/threshold")
    # the ring's sums over all pixels, with zero rows off the ring (no gather)
    tables = ht._grid(h, w)
    ring_sums = np.zeros((hw, 3))
    ring_sums[tables["ring"]] = tables["ring_sums"]
    far = g.op("And", [fgb, g.op("GreaterOrEqual", [g.cast(x, F64), thr])], "turn/far")
    sums = g.op("MatMul", [g.cast(far, F64), g.const(ring_sums, "turn/ring_sums")],
                "turn/far_sums")
    sx, sy, n = g.op("Split", [sums], "turn/far_parts", outputs=3, axis=1)
    n1 = g.op("Max", [n, g.const(F64(1.0), "turn/one64")])
    vx, vy = g.op("Div", [sx, n1], "turn/far_vx"), g.op("Div", [sy, n1], "turn/far_vy")
    long = g.op("GreaterOrEqual", [_hypot(g, vx, vy), g.const(F64(ht.FAR_MIN_LENGTH))])
    many = g.op("GreaterOrEqual", [n, g.const(F64(ht.FAR_MIN_PIXELS[1]))])
    found = g.op("And", [g.op("And", [enough, many]), long], "turn/far_found")
    return vx, vy, found


def _hypot(g, a, b):
    return g.op("Sqrt", [g.op("Add", [g.op("Mul", [a, a]), g.op("Mul", [b, b])])], "turn/hypot")


def _atan2(g, y, x):
    """``arctan2(y, x)`` (float64): ``Atan`` (which runtimes have for float32 only) with the
    quadrants sorted out by ``Where``, then two Newton steps on ``x sin t - y cos t = 0`` in
    float64 (from float32's 1e-7 to float64's last digits)."""
    zero, pi = g.const(F64(0.0), "turn/zero"), g.const(F64(np.pi), "turn/pi")
    half = g.const(F64(np.pi / 2), "turn/half_pi")
    safe = g.op("Where", [g.op("Equal", [x, zero]), g.const(F64(1.0), "turn/one64"), x])
    base = g.cast(g.op("Atan", [g.cast(g.op("Div", [y, safe]), F32)], "turn/atan"), F64)
    y_neg = g.op("Less", [y, zero])
    left = g.op("Where", [y_neg, g.op("Sub", [base, pi]), g.op("Add", [base, pi])], "turn/left")
    axis = g.op("Where", [g.op("Greater", [y, zero]), half,
                          g.op("Where", [y_neg, g.op("Neg", [half]), zero])], "turn/on_axis")
    t = g.op("Where", [g.op("Greater", [x, zero]), base,
                       g.op("Where", [g.op("Less", [x, zero]), left, axis])], "turn/atan2_f32")
    r2 = g.op("Add", [g.op("Mul", [x, x]), g.op("Mul", [y, y])], "turn/r2")
    r2 = g.op("Max", [r2, g.const(F64(1e-300), "turn/tiny_r2")])
    for _ in range(2):
        c, s = g.op("Cos", [t]), g.op("Sin", [t])
        f = g.op("Sub", [g.op("Mul", [x, s]), g.op("Mul", [y, c])], "turn/newton_f")
        df = g.op("Add", [g.op("Mul", [x, c]), g.op("Mul", [y, s])], "turn/newton_df")
        # df is +-|r| near the root; where it vanishes (x = y = 0) t stays
        step = g.op("Div", [g.op("Mul", [f, df]), r2], "turn/newton_step")
        t = g.op("Sub", [t, step], "turn/atan2")
    return t


def hand_turn(g, crops, shape):
    """crops ``(N, 1, H, W)`` float32 -> ``(turned crops (N, 1, H, W) float32, angles (N, 1)
    float32)``, the two tops of the hand-turn layer."""
    if shape is None or len(shape) != 4 or shape[1] != 1:
        raise ValueError(f"HandTurnLayer: input shape {shape}: expected (N, 1, H, W) of a fixed size")
    h, w = int(shape[2]), int(shape[3])
    x = g.op("Reshape", [crops, g.ints([0, h * w])], "turn/pixels")            # (N, HW) float32
    fgb = g.op("Less", [x, g.const(F32(ht.FOREGROUND), "turn/foreground")], "turn/fg")
    fg = g.cast(fgb, F32, "turn/fg01")
    ways = [_border_run(g, fg, h, w, band) for band in ht.BANDS] + \
        [_far_direction(g, x, fg, fgb, h, w)]
    vx, vy = g.const(F64(0.0), "turn/zero"), g.const(F64(1.0), "turn/one64")
    found = None
    for dx, dy, ok in reversed(ways):      # the first way that finds a forearm wins
        vx, vy = g.op("Where", [ok, dx, vx], "turn/arm_x"), g.op("Where", [ok, dy, vy], "turn/arm_y")
        found = ok if found is None else g.op("Or", [ok, found], "turn/arm_found")
    norm = _hypot(g, vx, vy)
    scale = g.op("Max", [norm, g.const(F64(1e-12), "turn/tiny")])
    has = g.op("Greater", [norm, g.const(F64(0.0), "turn/zero")])
    ax = g.op("Where", [has, g.op("Div", [vx, scale]), g.const(F64(0.0), "turn/zero")], "turn/ax")
    ay = g.op("Where", [has, g.op("Div", [vy, scale]), g.const(F64(1.0), "turn/one64")], "turn/ay")
    # the hand: foreground near the centre, not far towards the forearm
    tables = ht._grid(h, w)
    offsets = np.zeros((2, h * w))                   # the disk's offsets; 0 elsewhere
    offsets[:, tables["disk"]] = tables["disk_offsets"]
    disk_sums = np.zeros((h * w, 3))
    disk_sums[tables["disk"]] = tables["disk_sums"]
    arm = g.op("Concat", [ax, ay], "turn/arm", axis=1)                              # (N, 2)
    along = g.op("MatMul", [arm, g.const(offsets, "turn/disk_offsets")], "turn/along")
    hand = g.op("And", [fgb, g.op("Less", [along, g.const(F64(ht.ARM_SIDE), "turn/arm_side")])],
                "turn/hand")
    sums = g.op("MatMul", [g.cast(hand, F64), g.const(disk_sums, "turn/disk_sums")],
                "turn/hand_sums")
    sx, sy, n = g.op("Split", [sums], "turn/hand_parts", outputs=3, axis=1)
    n1 = g.op("Max", [n, g.const(F64(1.0), "turn/one64")])
    mx, my = g.op("Div", [sx, n1], "turn/mx"), g.op("Div", [sy, n1], "turn/my")
    off = g.op("GreaterOrEqual", [_hypot(g, mx, my), g.const(F64(ht.MIN_OFFSET), "turn/min_off")])
    fx = g.op("Where", [off, mx, g.op("Neg", [ax])], "turn/fx")
    fy = g.op("Where", [off, my, g.op("Neg", [ay])], "turn/fy")
    two_pi = g.const(F64(2 * np.pi), "turn/two_pi")
    pi = g.const(F64(np.pi), "turn/pi")
    phi = g.op("Sub", [g.const(F64(np.pi / 2), "turn/half_pi"), _atan2(g, g.op("Neg", [fy]), fx)])
    r = g.op("Mod", [g.op("Sub", [pi, phi]), two_pi], "turn/fmod", fmod=1)
    r = g.op("Where", [g.op("Less", [r, g.const(F64(0.0))]), g.op("Add", [r, two_pi]), r], "turn/mod")
    phi = g.op("Sub", [pi, r], "turn/wrapped")
    phi = g.op("Where", [g.op("Or", [found, off]), phi, g.const(F64(0.0))], "turn/phi")  # (N, 1)
    return _turn_pixels(g, x, phi, h, w), g.cast(phi, F32, "turn/angles")


def _turn_pixels(g, x, phi, h, w):
    """:func:`deepmodel.model.hand_turn.turn_crops` (background 1) of ``(N, HW)`` float32."""
    dx, dy = (np.asarray(v, F32).reshape(1, h * w) for v in ht._grid(h, w)["offsets"])
    c, s = g.cast(g.op("Cos", [phi]), F32, "turn/c"), g.cast(g.op("Sin", [phi]), F32, "turn/s")
    gdx, gdy = g.const(dx, "turn/dx"), g.const(dy, "turn/dy")
    cx, cy = g.const(F32((w - 1) / 2.0), "turn/cx"), g.const(F32((h - 1) / 2.0), "turn/cy")
    sc = g.op("Sub", [g.op("Add", [cx, g.op("Mul", [c, gdx])]), g.op("Mul", [s, gdy])], "turn/src_col")
    sr = g.op("Add", [g.op("Add", [cy, g.op("Mul", [s, gdx])]), g.op("Mul", [c, gdy])], "turn/src_row")
    lo = g.const(F32(-0.5), "turn/low_edge")
    outside = g.op("Or", [g.op("Or", [g.op("Less", [sc, lo]),
                                       g.op("GreaterOrEqual", [sc, g.const(F32(w - 0.5))])]),
                          g.op("Or", [g.op("Less", [sr, lo]),
                                      g.op("GreaterOrEqual", [sr, g.const(F32(h - 0.5))])])],
                   "turn/outside")
    # the layer remaps chunks of crops stacked into one tall image (REMAP_ROWS rows at most):
    # a crop's source rows are offset by its place in the chunk times h, in float32, and rounded
    # there, so a source row on the edge of a crop may round into the next crop (or off the tall
    # image: background). The same here: the rows are found in the chunk's tall image.
    per = max(1, ht.REMAP_ROWS // h)
    shape = g.op("Shape", [x], "turn/shape")
    n = g.op("Gather", [shape, g.ints(0, "turn/batch_axis")], "turn/n", axis=0)
    i = g.op("Unsqueeze", [g.op("Range", [g.ints(0, "turn/zero_i"), n, g.ints(1, "turn/one_i")],
                                "turn/index"), g.ints([1])], "turn/index_col")      # (N, 1)
    k = g.op("Mod", [i, g.ints(per, "turn/chunk")], "turn/in_chunk")
    first = g.op("Sub", [i, k], "turn/chunk_first")
    rows = g.op("Mul", [g.op("Min", [g.op("Sub", [n, first]), g.ints(per, "turn/chunk")]),
                        g.ints(h, "turn/h_i")], "turn/chunk_rows")
    shift = g.op("Mul", [g.cast(k, F32), g.const(F32(h), "turn/h")], "turn/row_shift")
    row = g.cast(g.op("Round", [g.op("Add", [sr, shift])]), np.int64, "turn/tall_row")
    col = g.cast(g.op("Round", [sc]), np.int64, "turn/col")
    off = g.op("Or", [outside, g.op("GreaterOrEqual", [row, rows])], "turn/off_image")
    src = g.op("Add", [g.op("Mul", [g.op("Add", [g.op("Mul", [first, g.ints(h, "turn/h_i")]), row]),
                                    g.ints(w, "turn/w_i")]), col], "turn/src")
    src = g.op("Where", [off, g.ints(0, "turn/zero_i"), src], "turn/src_in")
    flat = g.op("Reshape", [x, g.ints([-1])], "turn/all_pixels")
    picked = g.op("Gather", [flat, src], "turn/picked", axis=0)
    turned = g.op("Where", [off, g.const(F32(1.0), "turn/background"), picked], "turn/turned")
    return g.op("Reshape", [turned, g.ints([0, 1, h, w])], "turn/crops")
