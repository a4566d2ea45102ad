"""Raw depth frames from a camera, read into millimetres: NYU's 8-bit PNG (blue + 256 * green) or a
16-bit PNG in mm. Unreadable or other images raise :class:`~deepmodel.data.datasets.frames.BadFrame`
saying why."""
import cv2
import numpy as np

from deepmodel.data.datasets import nyu
from deepmodel.data.datasets.frames import BadFrame, quiet_imdecode, read_bytes


def read_frame(path):
    """A raw depth frame -> ``(H, W)`` depth in mm; :class:`BadFrame` saying why it cannot be."""
    img = quiet_imdecode(np.frombuffer(read_bytes(path), np.uint8), cv2.IMREAD_UNCHANGED)
    if img is None:
        raise BadFrame("not a readable image")
    if img.ndim == 3 and img.dtype == np.uint8 and img.shape[2] >= 3:
        return nyu.depth_of_image(img)
    if img.ndim == 2 and img.dtype == np.uint16:
        return img
    raise BadFrame(f"{img.dtype} image with {1 if img.ndim == 2 else img.shape[2]} channel(s) is "
                   "not a depth frame (NYU 8-bit blue/green or 16-bit mm)")
