"""Intel RealSense depth: recordings (``.db3``, rosbag2 as the current SDK writes them, or the
older SDKs' ``.bag`` where the installed SDK still plays them) and live cameras, through ``pyrealsense2`` (the optional extra
``pip install -e .[realsense]``; its wheel needs Debian's ``libusb-1.0-0``). Nothing else in the
project imports ``pyrealsense2``.

The depth stream's intrinsics and depth unit come from the recording or the camera
(:attr:`RealSenseFrames.camera`); frames come out as ``(H, W)`` uint16 in the camera's raw units,
in order, every frame of a recording (played as fast as it can be read, not in real time).
:func:`write_recording` writes depth frames to a recording through a software device: a
recording for tests, or to share a sequence.
"""
import datetime
import math
import pathlib

import numpy as np

from deepmodel.data.datasets.camera import Camera
from deepmodel.plumbing import InputError, atomic_path

RECORDING_SUFFIXES = (".db3", ".bag")
INSTALL_HINT = ("pip install -e '.[realsense]' in the venv (make test's set-up does it); its wheel "
                "needs Debian's libusb-1.0-0")
END_WAIT_MS = 1000      # no frame for this long at the end of a recording: it has ended


def realsense():
    """The ``pyrealsense2`` module, or an InputError saying how to install it."""
    try:
        import pyrealsense2
    except ImportError as err:
        raise InputError(f"RealSense recordings and cameras need pyrealsense2 ({err}): "
                         f"{INSTALL_HINT}") from None
    return pyrealsense2


def is_recording(path):
    """Whether ``path`` names a RealSense recording (by its suffix)."""
    return pathlib.Path(path).suffix.lower() in RECORDING_SUFFIXES


def _short(value):
    """A float32 from the SDK as the shortest decimal that gives it back (0.000125, not
    0.0001250000059): the value the camera or the recording was given."""
    return float(str(np.float32(value)))


def camera_of(intrinsics, depth_scale_m):
    """The SDK's depth ``intrinsics`` and depth scale (metres per unit) -> :class:`Camera`."""
    unit_mm = round(_short(depth_scale_m) * 1000.0, 12)
    return Camera(fx=_short(intrinsics.fx), fy=_short(intrinsics.fy), cx=_short(intrinsics.ppx),
                  cy=_short(intrinsics.ppy), width=int(intrinsics.width),
                  height=int(intrinsics.height), depth_unit_mm=unit_mm)


class RealSenseFrames:
    """The depth frames of a recording (``path``) or of a live camera (``live=True``, the first
    one connected, ``size`` pixels at ``fps``). Iterating yields ``(name, raw)``: ``name`` is
    ``<recording>#<frame number>`` (``live#<n>``), ``raw`` ``(H, W)`` uint16 in
    :attr:`camera`'s units. A live camera runs until the consumer stops (Ctrl-C, or
    ``max_frames``). Use as a context manager (or call :meth:`close`)."""

    def __init__(self, path=None, live=False, size=(640, 480), fps=30, max_frames=None):
        rs = realsense()
        self.rs, self.live, self.max_frames = rs, live, max_frames
        self.path = None if live else pathlib.Path(path)
        self.label = "live" if live else self.path.name
        config = rs.config()
        if live:
            if len(rs.context().query_devices()) == 0:
                raise InputError("--live: no RealSense camera is connected (rs-enumerate-devices "
                                 "lists them; a recording plays the same way)")
            config.enable_stream(rs.stream.depth, size[0], size[1], rs.format.z16, fps)
        else:
            if not self.path.is_file():
                raise InputError(f"{self.path}: no such recording")
            config.enable_device_from_file(str(self.path), repeat_playback=False)
        self.pipeline = rs.pipeline()
        try:
            profile = self.pipeline.start(config)
        except RuntimeError as err:
            what = "--live" if live else str(self.path)
            raise InputError(f"{what}: cannot play it as a RealSense "
                             f"{'camera' if live else 'recording'} ({_sdk_message(err)})") from None
        self.running = True
        try:
            device = profile.get_device()
            if not live:            # every frame, as fast as read, from the first one (frames
                playback = self.playback = device.as_playback()   # may have gone by meanwhile)
                playback.set_real_time(False)
                playback.seek(datetime.timedelta(0))
            streams = [s for s in profile.get_streams() if s.stream_type() == rs.stream.depth]
            if not streams:
                names = ", ".join(sorted({s.stream_name() for s in profile.get_streams()})) or "none"
                raise InputError(f"{self.label}: the recording has no depth stream (its streams: "
                                 f"{names})")
            stream = streams[0].as_video_stream_profile()
            if stream.format() != rs.format.z16:
                raise InputError(f"{self.label}: its depth stream is {stream.format()}, not "
                                 "16-bit depth (z16)")
            scale = device.first_depth_sensor().get_depth_scale()
            if not (math.isfinite(scale) and scale > 0):
                raise InputError(f"{self.label}: depth scale {scale!r} m per unit is not a "
                                 "positive number")
            self.camera = camera_of(stream.get_intrinsics(), scale)
        except BaseException:
            self.close()
            raise

    def __iter__(self):
        count, last, waited = 0, None, 0
        while self.max_frames is None or count < self.max_frames:
            ok, frames = self.pipeline.try_wait_for_frames(END_WAIT_MS if not self.live else 5000)
            if not ok:
                if self.live:
                    raise InputError("--live: the camera sent no frame for 5 s")
                if self.playback.current_status() != self.rs.playback_status.stopped and waited < 10:
                    waited += 1                 # a busy machine, not the end: wait on
                    continue
                return
            waited = 0
            depth = frames.get_depth_frame()
            if not depth:
                continue
            number = depth.get_frame_number()
            if number == last:                       # a frameset delivered twice
                continue
            last = number
            raw = np.array(depth.get_data(), dtype=np.uint16, copy=True)
            count += 1
            yield f"{self.label}#{number}", raw

    def close(self):
        if getattr(self, "running", False):
            self.running = False
            self.pipeline.stop()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def _sdk_message(err):
    return " ".join(str(err).split()) or type(err).__name__


def write_recording(path, frames, camera, fps=30):
    """Write ``frames`` (an iterable of ``(H, W)`` uint16 in ``camera``'s units, the camera's
    size) to the RealSense recording ``path`` (``.db3``): one depth stream with ``camera``'s
    intrinsics and depth unit, frame numbers from 0, ``fps`` frames a second. Returns the
    number of frames written."""
    rs = realsense()
    if pathlib.Path(path).suffix != ".db3":
        raise InputError(f"{path}: the SDK writes rosbag2 recordings, named .db3")
    if camera.width is None:
        raise InputError("write_recording: the camera needs its width and height")
    w, h = camera.width, camera.height
    device = rs.software_device()
    sensor = device.add_sensor("Depth")
    intr = rs.intrinsics()
    intr.width, intr.height = w, h
    intr.fx, intr.fy, intr.ppx, intr.ppy = camera.fx, camera.fy, camera.cx, camera.cy
    intr.model, intr.coeffs = rs.distortion.none, [0.0] * 5
    spec = rs.video_stream()
    spec.type, spec.index, spec.uid = rs.stream.depth, 0, 0
    spec.width, spec.height, spec.fps, spec.bpp, spec.fmt = w, h, fps, 2, rs.format.z16
    spec.intrinsics = intr
    profile = sensor.add_video_stream(spec).as_video_stream_profile()
    sensor.add_read_only_option(rs.option.depth_units, camera.depth_unit_mm / 1000.0)
    with atomic_path(path) as tmp:
        return _record(rs, device, sensor, profile, tmp, frames, w, h, fps)


def _record(rs, device, sensor, profile, path, frames, w, h, fps):
    recorder = rs.recorder(str(path), device)
    queue = rs.frame_queue(4)
    sensor.open(profile)
    sensor.start(queue)
    n = 0
    try:
        for raw in frames:
            raw = np.ascontiguousarray(raw, dtype=np.uint16)
            if raw.shape != (h, w):
                raise InputError(f"write_recording: frame {n} is {raw.shape[1]}x{raw.shape[0]}, "
                                 f"the camera's frames are {w}x{h}")
            frame = rs.software_video_frame()
            frame.pixels, frame.stride, frame.bpp = raw, 2 * w, 2
            frame.timestamp, frame.frame_number = n * 1000.0 / fps, n
            frame.domain, frame.profile = rs.timestamp_domain.hardware_clock, profile
            sensor.on_video_frame(frame)
            queue.wait_for_frame(5000)               # recorded before the next one is sent
            n += 1
    finally:
        sensor.stop()
        sensor.close()
        del recorder                                 # closes the file
    return n
