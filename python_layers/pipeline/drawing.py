"""Pictures of a hand pose on depth, shared by ``tools/demo.py`` and ``tools/run_frames.py --video``:
the skeleton on a crop or on the raw frame (with the crop box and centre), and a 3D view of the
skeleton drawn with OpenCV (fast enough for every frame of a video).

Colours by finger (``HandModel.finger_of_keypoint``): little, ring, middle, index, thumb, palm.
Images are RGB uint8 ``(H, W, 3)``; keypoints in pixels (u column, v row) or mm (x right, y up).
"""
import cv2
import numpy as np

FINGER_COLOURS = [(230, 60, 60), (240, 160, 30), (60, 190, 60), (50, 120, 240), (190, 70, 220),
                  (240, 240, 240)]
BOX_COLOUR = (255, 220, 0)      # the crop box on the frame (RGB)
CENTER_COLOUR = (0, 255, 255)   # the crop centre on the frame (cyan)


def draw_skeleton(rgb, pts, edges, finger, scale, thickness=2, radius=4):
    """Draw keypoints ``(K, 2)`` onto ``rgb`` in place.

    pts: continuous (column, row) before ``scale``, pixel j covering [j, j+1); edges: (parent,
    child) pairs, coloured by the child's finger; finger: ``(K,)`` finger of each keypoint
    (``HandModel.finger_of_keypoint``).
    """
    p = np.round(np.asarray(pts) * scale * 16).astype(np.int64)   # 4 fractional bits
    img = np.ascontiguousarray(rgb)
    for a, b in edges:
        cv2.line(img, (int(p[a, 0]), int(p[a, 1])), (int(p[b, 0]), int(p[b, 1])),
                 FINGER_COLOURS[finger[b]], thickness, cv2.LINE_AA, shift=4)
    for k in range(len(p)):
        cv2.circle(img, (int(p[k, 0]), int(p[k, 1])), radius * 16,
                   FINGER_COLOURS[finger[k]], -1, cv2.LINE_AA, shift=4)
    rgb[...] = img


def depth_gray(depth, center_d, cube):
    """A raw frame ``(H, W)`` mm -> RGB, bright near: depths within a cube before and after
    ``center_d`` spread over the grey levels, no reading black."""
    depth = np.asarray(depth, np.float64)
    shown = np.clip((depth - (center_d - cube)) / (2 * cube), 0, 1)
    shown[~(depth > 0)] = 1                         # 0 and NaN: no reading
    gray = (255 * (1 - shown)).astype(np.uint8)
    return np.ascontiguousarray(np.repeat(gray[:, :, None], 3, axis=2))


def frame_image(depth, uvd, center, cube, camera, edges, finger):
    """The skeleton ``uvd`` ``(K, 3)`` on the full raw frame (depth shown around the centre), with
    the crop box (:func:`deepmodel.data.hand_crop.crop.crop_box`: outline on its first and last
    columns and rows) and the crop centre (a filled disc of radius 3 px) -> RGB ``(H, W, 3)``."""
    from deepmodel.data.hand_crop.crop import crop_box

    rgb = depth_gray(depth, float(center[2]), cube)
    x0, x1, y0, y1 = crop_box(center, cube, camera)
    cv2.rectangle(rgb, (x0, y0), (x1 - 1, y1 - 1), BOX_COLOUR, 1)
    draw_skeleton(rgb, uvd[:, :2] + 0.5, edges, finger, 1, thickness=1, radius=2)  # u: centre
    cv2.circle(rgb, (int(round(float(center[0]))), int(round(float(center[1])))), 3,
               CENTER_COLOUR, -1)
    return rgb


def skeleton_3d_image(xyz, edges, finger, size=240, span_mm=260.0, yaw_deg=-60.0, pitch_deg=15.0):
    """A 3D view of keypoints ``(K, 3)`` mm: turned ``yaw_deg`` about the vertical axis and
    ``pitch_deg`` about the horizontal one around their mean, drawn orthographically
    (``span_mm`` across ``size`` pixels) on black, far bones first, with a floor grid -> RGB
    ``(size, size, 3)``."""
    xyz = np.asarray(xyz, np.float64)
    c = xyz.mean(axis=0)
    a, b = np.radians(yaw_deg), np.radians(pitch_deg)
    yaw = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    pitch = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    p = (xyz - c) @ (pitch @ yaw).T
    k = size / span_mm
    pts = np.stack([size / 2 + k * p[:, 0], size / 2 - k * p[:, 1]], axis=1)
    img = np.zeros((size, size, 3), np.uint8)
    for g in np.linspace(-span_mm / 2, span_mm / 2, 7):           # a grid in the x-z plane below
        for q0, q1 in (((g, -span_mm / 2), (g, span_mm / 2)), ((-span_mm / 2, g), (span_mm / 2, g))):
            ends = np.array([[q0[0], -span_mm / 2.5, q0[1]], [q1[0], -span_mm / 2.5, q1[1]]])
            e = ends @ (pitch @ yaw).T
            e2 = np.stack([size / 2 + k * e[:, 0], size / 2 - k * e[:, 1]], axis=1)
            cv2.line(img, tuple(int(v) for v in e2[0]), tuple(int(v) for v in e2[1]), (50, 50, 50), 1)
    order = sorted(edges, key=lambda e: -(p[e[0], 2] + p[e[1], 2]))  # far first
    draw_skeleton(img, pts, order, finger, 1, thickness=2, radius=3)
    return img
