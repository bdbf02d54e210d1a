#!/usr/bin/env python3
"""Writes tests/data/tb/expected.tfevents with TensorBoard's own protobufs and record writer: the
events tests/train/test_tb_events.c writes with train/tb_events.c, which must equal it byte for
byte. Run by hand (not by the build or the tests):

    python3 -m venv /tmp/tbvenv && /tmp/tbvenv/bin/pip install tensorboard==2.21.0
    /tmp/tbvenv/bin/python tools/make_tb_fixture.py
"""
import io
import os

from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "tb", "expected.tfevents")


def scalars(wall_time, step, pairs):
    values = [summary_pb2.Summary.Value(tag=t, simple_value=v) for t, v in pairs]
    return event_pb2.Event(wall_time=wall_time, step=step, summary=summary_pb2.Summary(value=values))


events = [
    event_pb2.Event(wall_time=1765000000.25, step=0, file_version="brain.Event:2"),
    scalars(1765000001.5, 1, [("train/loss", 3.25), ("train/lr", 1e-3), ("train/loss_ita", 2.5)]),
    scalars(1765000002.75, 300, [("val/r_mean", 41.5), ("val/txt_mdr", 7.0)]),
]
buf = io.BytesIO()
writer = RecordWriter(buf)
for e in events:
    writer.write(e.SerializeToString())
writer.flush()
with open(OUT, "wb") as f:
    f.write(buf.getvalue())
print(f"wrote {OUT} ({len(buf.getvalue())} bytes)")
