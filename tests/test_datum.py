"""deepmodel.data.records.datum: the hand encoder round-trips through Caffe's own protobuf, both ways."""
import numpy as np
import pytest

from deepmodel.data.records import datum


@pytest.mark.parametrize("shape", [(1, 128, 128), (3, 5, 7), (93, 1, 1), (300, 1, 1)])
def test_hand_encoded_datum_parses_with_caffe_pb2(shape):
    from caffe.proto import caffe_pb2

    a = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    d = caffe_pb2.Datum()
    d.ParseFromString(datum.encode(a))
    assert (d.channels, d.height, d.width) == shape
    np.testing.assert_array_equal(np.array(d.float_data, np.float32).reshape(shape), a)
    # protobuf re-serialises it (unpacked floats) and decode reads that form too
    np.testing.assert_array_equal(datum.decode_array(d.SerializeToString()), a)


def test_encode_rows_equal_encode_per_row():
    rows = np.random.default_rng(1).normal(size=(4, 93))
    assert datum.encode_rows(rows, (93, 1, 1)) == [datum.encode(r) for r in rows]
    with pytest.raises(ValueError, match="do not fit"):
        datum.encode_rows(rows, (92, 1, 1))


def test_decode_reads_datums_protobuf_wrote_with_other_fields():
    from caffe.proto import caffe_pb2

    rng = np.random.default_rng(3)
    for extra in ({}, {"label": 7}, {"encoded": False}, {"data": b"\x01\x02"}):
        vals = rng.normal(size=(3, 4, 5)).astype(np.float32)
        d = caffe_pb2.Datum(channels=3, height=4, width=5, **extra)
        d.float_data.extend(vals.ravel().tolist())
        shape, got = datum.decode(d.SerializeToString())
        assert shape == (3, 4, 5)
        np.testing.assert_array_equal(got, vals.ravel())


def test_decode_rejects_bytes_that_are_not_a_datum():
    with pytest.raises(Exception):
        datum.decode(b"\xff\xff\xff")
