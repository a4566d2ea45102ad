"""The hand model fitted to data: angles to 3D joint labels (``pose_fitting``), bone lengths to a
set of labels (``shape_calibration``), a net's pose to a crop's depth (``depth_fit``)."""
