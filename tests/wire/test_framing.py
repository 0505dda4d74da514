from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from synapse_p2p.errors import FrameTooLarge, IncompleteFrame
from synapse_p2p.wire import FrameDecoder, encode_frame


def test_encode_frame_layout() -> None:
    assert encode_frame(b"abc") == b"\x00\x00\x00\x03abc"
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


payloads = st.lists(st.binary(max_size=300), max_size=12)


@given(payloads, st.data())
def test_any_split_of_a_stream_decodes_the_same(frames: list[bytes], data: st.DataObject) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=20)))
    decoder = FrameDecoder(1024)
    out: list[bytes] = []
    start = 0
    for cut in [*cuts, len(stream)]:
        out.extend(decoder.feed(stream[start:cut]))
        start = cut
    assert out == frames
    assert decoder.buffered == 0
    decoder.eof()  # clean boundary: no error


def test_exactly_max_size_is_accepted_and_one_more_refused() -> None:
    decoder = FrameDecoder(10)
    assert decoder.feed(encode_frame(b"x" * 10)) == [b"x" * 10]
    with pytest.raises(FrameTooLarge, match=r"frame too large: 11 > 10"):
        decoder.feed(struct.pack("!I", 11))
    # The stream cannot be resynchronised: every later feed fails the same way.
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"")


def test_oversize_header_is_refused_before_any_payload_is_buffered() -> None:
    decoder = FrameDecoder(4 * 1024 * 1024)
    with pytest.raises(FrameTooLarge, match="1195725856"):
        decoder.feed(b"GET / HTTP/1.1\r\n")
    assert decoder.buffered == 0


def test_frames_before_a_bad_header_are_returned_first() -> None:
    decoder = FrameDecoder(8)
    good = encode_frame(b"ok")
    frames = decoder.feed(good + struct.pack("!I", 1000))
    assert frames == [b"ok"]
    assert isinstance(decoder.failed, FrameTooLarge)
    with pytest.raises(FrameTooLarge):
        decoder.feed(b"more")


@pytest.mark.parametrize("chunk", [b"\x00\x00", b"\x00\x00\x00\x05ab"])
def test_eof_mid_frame_is_incomplete(chunk: bytes) -> None:
    decoder = FrameDecoder()
    assert decoder.feed(chunk) == []
    assert decoder.buffered == len(chunk)
    with pytest.raises(IncompleteFrame, match="incomplete frame"):
        decoder.eof()
