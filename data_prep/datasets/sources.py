"""Where raw depth frames come from, one interface for all: files (a folder or list of frames),
a RealSense recording, or a live RealSense camera.

:func:`open_frames` -> a :class:`FrameSource`: its :attr:`~FrameSource.camera`, its number of
frames when known, and, iterated, ``(name, depth_mm)`` per frame in order, where ``depth_mm`` is
an ``(H, W)`` array in mm (checked against the camera: size, working range) or the
:class:`~deepmodel.data.datasets.frames.BadFrame` that says why the frame cannot be used (a bad
frame is reported, never the end of the run)."""
import pathlib

from deepmodel.data.datasets.camera import parse_camera
from deepmodel.data.datasets.frames import BadFrame, frame_files
from deepmodel.data.datasets.raw import checked_depth, read_frame
from deepmodel.data.datasets.realsense import RealSenseFrames, is_recording
from deepmodel.plumbing import InputError

SOURCES_HELP = ("a folder of raw depth frames (*.png, *.npy, taken in name order), frame files, "
                "or a RealSense recording (.db3, .bag: its camera and depth unit are read from it)")


class FrameSource:
    """Raw depth frames and the camera they come from. ``len(source)`` is the number of frames
    (None for a live camera); iterating yields ``(name, depth_mm_or_BadFrame)``."""

    def __init__(self, camera, names=None, recording=None, description=""):
        self.camera, self.names, self.recording = camera, names, recording
        self.description = description

    @property
    def total(self):
        """The number of frames, or None when it is not known in advance."""
        return None if self.names is None else len(self.names)

    def __iter__(self):
        if self.recording is None:
            for path in self.names:
                try:
                    yield str(path), read_frame(path, self.camera)
                except BadFrame as err:
                    yield str(path), err
            return
        for name, raw in self.recording:
            try:
                yield name, checked_depth(raw, self.camera)
            except BadFrame as err:
                yield name, err

    def close(self):
        if self.recording is not None:
            self.recording.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def open_frames(inputs, camera=None, depth_unit=None, default_camera="nyu", live=False,
                max_frames=None):
    """The frames of ``inputs`` (paths: a folder, frame files, or one recording), or of a live
    RealSense camera (``live``, no inputs). ``camera`` / ``depth_unit``: the ``--camera`` and
    ``--depth-unit`` options for files (None: ``default_camera``'s); a recording or a camera
    carries its own, and giving either option with one is refused. ``max_frames`` stops a live
    camera or a recording after that many frames."""
    inputs = [pathlib.Path(p) for p in inputs or []]
    recordings = [p for p in inputs if is_recording(p)]
    if live or recordings:
        if live and inputs:
            raise InputError(f"--live takes no input files (got {inputs[0]})")
        if recordings and len(inputs) > 1:
            raise InputError(f"{recordings[0]}: give a recording alone (got {len(inputs)} inputs)")
        for option, value in (("--camera", camera), ("--depth-unit", depth_unit)):
            if value is not None:
                raise InputError(f"{option} {value}: a RealSense "
                                 f"{'camera' if live else 'recording'} gives its own camera and "
                                 "depth unit; drop the option")
        frames = RealSenseFrames(None if live else recordings[0], live=live, max_frames=max_frames)
        return FrameSource(frames.camera, recording=frames,
                           description="live RealSense" if live else str(recordings[0]))
    if not inputs:
        raise InputError("no input: give a folder of frames, frame files, a recording, or --live")
    cam = parse_camera(camera or default_camera, depth_unit)
    names = frame_files(inputs)
    if max_frames is not None:
        names = names[:max_frames]
    return FrameSource(cam, names=names, description=f"{len(names)} frame files")
