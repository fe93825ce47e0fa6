"""The in-process pipe between a producer thread and the pipeline."""

import threading

import pytest

from workers.sources.channel import ChunkChannel


def test_small_reads_of_a_big_chunk_return_it_in_order() -> None:
    channel = ChunkChannel()
    data = bytes(range(256)) * 4096
    channel.write(data)
    channel.finish()
    pieces = []
    while piece := channel.read(1000):
        assert len(piece) <= 1000
        pieces.append(piece)
    assert b"".join(pieces) == data
    assert channel.read() == b"" and channel.read(5) == b""


def test_a_whole_chunk_is_handed_over_without_a_copy() -> None:
    channel = ChunkChannel(batch=4)
    data = b"x" * 100
    channel.write(data)
    assert channel.read() is data


def test_small_writes_are_batched_and_sent_by_finish() -> None:
    channel = ChunkChannel(batch=1024)
    for _ in range(3):
        channel.write(b"abc")
    channel.finish()
    assert channel.read() == b"abcabcabc"
    assert channel.read() == b""


def test_a_writer_blocked_on_a_full_channel_gets_broken_pipe_when_the_reader_closes() -> None:
    channel = ChunkChannel(depth=1, batch=1)
    failures: list[BaseException] = []

    def produce() -> None:
        try:
            for _ in range(10):
                channel.write(b"chunk")
        except BrokenPipeError as exc:
            failures.append(exc)

    writer = threading.Thread(target=produce)
    writer.start()
    assert channel.read() == b"chunk"
    channel.close()
    writer.join(5)
    assert not writer.is_alive()
    assert len(failures) == 1 and isinstance(failures[0], BrokenPipeError)
    with pytest.raises(BrokenPipeError):
        channel.write(b"more than the batch")
