"""What a person looks at while the raw-frame tools run: every frame drawn, the depth with the crop
box and the 2D skeleton, and beside it the 3D skeleton (:mod:`deepmodel.pipeline.drawing`), into
a video file (``.mp4``, ``.avi``: OpenCV's writer) or a folder of PNGs (any other name)."""
import pathlib

import cv2
import numpy as np

from deepmodel.pipeline.drawing import depth_gray, frame_image, skeleton_3d_image
from deepmodel.plumbing import InputError

VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG"}
FPS = 30
PNG_PATTERN = "frame_{:06d}.png"


def check_video_path(path, inputs=()):
    """Before any work: ``--video PATH`` can be written. A file needs a video suffix or none (a
    folder of PNGs); an existing folder must hold only a previous run's ``frame_*.png``; it may not
    be one of the run's ``inputs``, lie inside one, or hold one (it is replaced whole). Returns
    the path."""
    path = pathlib.Path(path)
    if path.suffix and path.suffix.lower() not in VIDEO_SUFFIXES:
        raise InputError(f"--video {path}: give a name ending in {' or '.join(VIDEO_SUFFIXES)} "
                         "for a video, or a folder name (no suffix) for PNG frames")
    target = path.resolve()
    for given in inputs:
        given = pathlib.Path(given).resolve()
        if target == given or given in target.parents or target in given.parents:
            raise InputError(f"--video {path}: would replace the input {given}; give another name")
    if path.suffix:
        if path.is_dir():
            raise InputError(f"--video {path}: is a folder; give a file name")
    elif path.exists():
        if not path.is_dir():
            raise InputError(f"--video {path}: is a file; a name without a suffix is a folder of PNGs")
        other = [p.name for p in path.iterdir() if not (p.name.startswith("frame_")
                                                          and p.suffix == ".png")]
        if other:
            raise InputError(f"--video {path}: the folder holds {other[0]}, not only the "
                             "frame_*.png of a previous run; give a new folder")
    return path


class VideoOut:
    """Draws frame after frame (:meth:`add`) into a name staged in ``outs`` (a
    :class:`deepmodel.plumbing.OutputSet`): the video appears with the run's other files."""

    def __init__(self, path, outs, camera, cube):
        from deepmodel.model.hand_model import HandModel

        self.path, self.camera, self.cube = pathlib.Path(path), camera, float(cube)
        model = HandModel.nyu()
        self.edges = [tuple(int(v) for v in e) for e in model.edges]
        self.finger = model.finger_of_keypoint
        self.tmp = outs.stage(self.path)
        self.writer, self.count = None, 0
        if not self.path.suffix:
            self.tmp.mkdir()

    def _write(self, img):
        bgr = np.ascontiguousarray(img[:, :, ::-1])
        if not self.path.suffix:
            ok, png = cv2.imencode(".png", bgr)
            if not ok:
                raise InputError(f"--video {self.path}: cannot encode frame {self.count}")
            (self.tmp / PNG_PATTERN.format(self.count)).write_bytes(png.tobytes())
        else:
            if self.writer is None:
                fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES[self.path.suffix.lower()])
                self.writer = cv2.VideoWriter(str(self.tmp), fourcc, FPS, (img.shape[1], img.shape[0]))
                if not self.writer.isOpened():
                    raise InputError(f"--video {self.path}: OpenCV cannot write this video format")
            self.writer.write(bgr)
        self.count += 1

    def add(self, depth, pose, name):
        """One frame: ``depth`` ``(H, W)`` mm (None: unreadable), ``pose`` a
        :class:`deepmodel.pipeline.frames.FramePose` or None (no hand), ``name`` printed on it."""
        H = self.camera.height or (depth.shape[0] if depth is not None else 480)
        W = self.camera.width or (depth.shape[1] if depth is not None else 640)
        if depth is None:
            left = np.zeros((H, W, 3), np.uint8)
        elif pose is None:
            valid = depth[np.isfinite(depth) & (depth > 0)]
            left = depth_gray(depth, float(np.median(valid)) if valid.size else 800.0, self.cube)
        else:
            left = frame_image(depth, pose.uvd, pose.center_uvd, pose.cube_mm, self.camera,
                               self.edges, self.finger)
        right = (skeleton_3d_image(pose.xyz, self.edges, self.finger, size=H) if pose is not None
                 else np.zeros((H, H, 3), np.uint8))
        img = np.ascontiguousarray(np.concatenate([left, right], axis=1))
        label = f"{pathlib.Path(name).name}  {pose.how if pose is not None else 'no hand'}"
        cv2.putText(img, label, (6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 0), 1, cv2.LINE_AA)
        self._write(img)

    def close(self):
        if self.writer is not None:
            self.writer.release()
            self.writer = None

