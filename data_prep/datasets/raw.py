"""Raw depth frames from a camera, read into millimetres: NYU's 8-bit PNG (blue + 256 * green, mm),
a 16-bit PNG or a 2-D ``.npy`` array in the camera's raw units (``Camera.depth_unit_mm`` mm each).
A frame that cannot be the camera's raises :class:`~deepmodel.data.datasets.frames.BadFrame`
saying why: unreadable, another size than the camera's, or depths that put the scene outside the
hand finder's working range (a wrong depth unit)."""
import cv2
import numpy as np

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.frames import BadFrame, quiet_imdecode, read_bytes

# the hand finder's working range (deepmodel.data.hand_crop.locate: NEAR_MM, FAR_MM), with room
# for a body and a wall behind: a frame with no reading inside it was read in the wrong unit
WORKING_RANGE_MM = (100.0, 1500.0)


def _decode(path):
    """-> ``(array, kind)``: the file's pixels and whether they are ``"mm"`` or ``"raw"`` units."""
    if str(path).lower().endswith(".npy"):
        try:
            arr = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as err:
            raise BadFrame(f"not a readable .npy array ({' '.join(str(err).split())})") from None
        if arr.ndim != 2 or arr.dtype.kind not in "uif":
            raise BadFrame(f"a .npy depth frame is a 2-D array of numbers, got {arr.dtype} "
                           f"{arr.shape}")
        return arr, "raw"
    img = quiet_imdecode(np.frombuffer(read_bytes(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadFrame("not a readable image")
    if img.ndim == 3 and img.dtype == np.uint8 and img.shape[2] >= 3:
        return nyu.depth_of_image(img), "mm"
    if img.ndim == 2 and img.dtype == np.uint16:
        return img, "raw"
    raise BadFrame(f"{img.dtype} image with {1 if img.ndim == 2 else img.shape[2]} channel(s) is "
                   "not a depth frame (NYU 8-bit blue/green, 16-bit, or .npy)")


def read_frame(path, camera=None):
    """A raw depth frame -> ``(H, W)`` depth in mm (0 or NaN: no reading): NYU's 8-bit encoding
    as it is, other frames times ``camera.depth_unit_mm`` (float32 unless the unit is 1 mm and
    the frame 16-bit). With a ``camera`` the frame's size and depths are checked against it."""
    depth, kind = _decode(path)
    if camera is None:
        return depth
    return checked_depth(depth, camera, raw=kind == "raw")


def checked_depth(depth, camera, raw=True):
    """A frame of ``camera`` -> ``(H, W)`` depth in mm (``raw``: in the camera's units, converted
    with :meth:`Camera.depth_mm`), or :class:`BadFrame` when its size is not the camera's or no
    depth lies in the working range (a wrong depth unit)."""
    problem = camera.size_problem(depth.shape)
    if problem:
        raise BadFrame(problem)
    if raw:
        depth = camera.depth_mm(depth)
    lo, hi = WORKING_RANGE_MM
    if not np.any((depth >= lo) & (depth <= hi)):      # NaN compares False; 0 is no reading
        valid = depth[np.isfinite(depth) & (depth > 0)]
        if valid.size:
            raise BadFrame(f"no depth within {lo:g}-{hi:g} mm (readings {float(valid.min()):.0f}-"
                           f"{float(valid.max()):.0f} mm at {camera.depth_unit_mm:g} mm per "
                           "unit): is the depth unit right?")
    return depth
