"""From a raw depth frame to keypoints: find the hand, crop it, run the net and the hand model
(``frames.FramePipeline``)."""
