"""Caffe nets: the variants generated with NetSpec (``netspec``; the committed ``prototxt/`` is its
output), loading and running a net (``net_io``), the default weights (``weights``), training through
``caffe train`` (``training``)."""
