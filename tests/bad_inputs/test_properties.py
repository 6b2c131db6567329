"""Property tests: no generated input makes the suite loader, ``--set`` parsing or the label decoders raise
anything but udabench's own error (which the CLI turns into exit code 2 and one paragraph)."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import struct
import typing
import zlib

import numpy as np
import pytest
import yaml
from helpers import tiny_suite_dict
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from udabench.config import Suite, apply_overrides, load_suite
from udabench.data import READERS, get_class_set
from udabench.data.base import Sample, read_label_ids
from udabench.data.synthia import read_synthia_label
from udabench.errors import UdabenchError

# CI replays one fixed sequence of examples (a red main must mean a change broke something); local runs
# draw new examples each time, and what they find goes into the @example lists below.
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow],
                    derandomize=bool(os.environ.get("CI")))


def schema_keys(cls, prefix="") -> list[str]:
    """Every dotted key of the suite schema (dataclass fields, recursively)."""
    keys = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        keys.append(key)
        inner = [a for a in typing.get_args(typing.get_type_hints(cls)[f.name]) if dataclasses.is_dataclass(a)]
        tp = typing.get_type_hints(cls)[f.name]
        for sub in ([tp] if dataclasses.is_dataclass(tp) else inner):
            keys += schema_keys(sub, f"{key}.")
    return keys


KEYS = [k for k in schema_keys(Suite) if k != "source_file"] + ["methods.source_only.x", "train.iteratons", "x.y"]
scalars = (st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12)
           | st.sampled_from(["auto", "cpu", "cuda:0", "frozen", "none", "cityscapes19", "../x", "${HOME}", "~"]))
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                      | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("properties")


def loads_or_refuses(path, overrides=()):
    try:
        suite = load_suite(path, overrides)
    except UdabenchError:
        return None
    assert isinstance(suite, Suite)
    return suite


@SETTINGS
@given(text=st.text(max_size=300))
@example(text="name: 2024-13-45")                  # PyYAML's constructors raise ValueError for these
@example(text="name: !!int x")
@example(text="seeds: [" + "9" * 5000 + "]")
@example(text="[" * 5000)                          # and its parser a RecursionError
def test_any_text_as_a_suite_file(folder, text):
    path = folder / "text.yaml"
    path.write_text(text)
    loads_or_refuses(path)


@SETTINGS
@given(data=st.binary(max_size=200))
def test_any_bytes_as_a_suite_file(folder, data):
    path = folder / "bytes.yaml"
    path.write_bytes(data)
    loads_or_refuses(path)


@SETTINGS
@given(changes=st.lists(st.tuples(st.sampled_from(KEYS), values), min_size=1, max_size=4))
def test_any_value_at_any_key_of_a_valid_suite(folder, tiny_data, changes):
    suite = tiny_suite_dict(tiny_data)
    for key, value in changes:
        node = suite
        *parents, last = key.split(".")
        for part in parents:
            node = node.setdefault(part, {}) if isinstance(node.get(part), dict) or part not in node else {}
        node[last] = value
    path = folder / "changed.yaml"
    path.write_text(yaml.safe_dump(suite))
    loaded = loads_or_refuses(path)
    if loaded is not None:   # what loads is in range
        assert loaded.train.iterations >= 1 and loaded.train.lr > 0 and math.isfinite(loaded.train.lr)
        assert loaded.seeds and all(0 <= s < 2**31 for s in loaded.seeds)
        assert "/" not in loaded.name and ".." not in loaded.name


@SETTINGS
@given(position=st.integers(0, 10**6), junk=st.text(min_size=1, max_size=6))
def test_junk_inserted_anywhere_in_a_valid_suite_file(folder, tiny_data, position, junk):
    text = yaml.safe_dump(tiny_suite_dict(tiny_data))
    position %= len(text)
    path = folder / "junk.yaml"
    path.write_text(text[:position] + junk + text[position:])
    loads_or_refuses(path)


@SETTINGS
@given(item=st.text(max_size=40) | st.builds(lambda k, v: f"{k}={v}", st.sampled_from(KEYS), st.text(max_size=20)))
def test_any_set_override(folder, tiny_data, item):
    raw = tiny_suite_dict(tiny_data)
    try:
        assert isinstance(apply_overrides(raw, [item], "suite.yaml"), dict)
    except UdabenchError:
        pass
    path = folder / "base.yaml"
    path.write_text(yaml.safe_dump(raw))
    loads_or_refuses(path, [item])


# ---- label decoders ------------------------------------------------------------------------------------

# (mode, dtype, channels, format): every kind of file a user might have put where a label or image belongs
ENCODINGS = [("L", np.uint8, (), "PNG"), ("P", np.uint8, (), "PNG"), ("RGB", np.uint8, (3,), "PNG"),
             ("RGBA", np.uint8, (4,), "PNG"), ("LA", np.uint8, (2,), "PNG"), (None, np.uint16, (), "PNG"),
             ("RGB", np.uint8, (3,), "JPEG"), ("L", np.uint8, (), "JPEG"), ("RGB", np.uint8, (3,), "BMP")]


@st.composite
def image_file(draw) -> bytes:
    mode, dtype, channels, fmt = draw(st.sampled_from(ENCODINGS))
    h, w, seed = draw(st.integers(1, 12)), draw(st.integers(1, 12)), draw(st.integers(0, 2**32 - 1))
    array = np.random.default_rng(seed).integers(0, 256 if dtype == np.uint8 else 2**16, (h, w, *channels))
    buffer = io.BytesIO()
    Image.fromarray(array.astype(dtype), mode=mode).save(buffer, format=fmt)
    return buffer.getvalue()


def label_files():
    """Image files of every mode, whole, truncated or with a byte changed; or arbitrary bytes."""
    damaged = st.tuples(image_file(), st.integers(0, 10**6), st.integers(0, 255), st.booleans()).map(
        lambda t: t[0][: t[1] % len(t[0])] if t[3] else
        t[0][: t[1] % len(t[0])] + bytes([t[2]]) + t[0][t[1] % len(t[0]) + 1:])
    return image_file() | damaged | st.binary(max_size=300)


def png_header(width: int, height: int) -> bytes:
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IEND", b""))


@SETTINGS
@given(data=label_files())
@example(data=png_header(30000, 30000))   # a corrupt header claiming 900 Mpx: PIL's DecompressionBombError
@example(data=png_header(1, 1)[:8] + b"\x00" * 4 + png_header(1, 1)[12:])   # IHDR length 0: PIL's ValueError
def test_label_readers_return_ids_or_a_data_error(folder, data):
    path = folder / "label.png"
    path.write_bytes(data)
    for read in (read_label_ids, read_synthia_label):
        try:
            ids = read(path)
        except UdabenchError:
            continue
        assert ids.dtype == np.uint8 and ids.ndim == 2


@SETTINGS
@given(label=label_files(), image=label_files(), size=st.none() | st.tuples(st.integers(8, 20), st.integers(8, 20)),
       kind=st.sampled_from(sorted(READERS)), resize_label=st.booleans())
def test_decoders_return_arrays_or_a_data_error(folder, label, image, size, kind, resize_label):
    """Whatever the two files hold, a dataset's ``Decoder`` gives (image, train ids) or a ``DataError``."""
    (folder / "image.png").write_bytes(image)
    (folder / "label.png").write_bytes(label)
    decoder = READERS[kind].decoder(get_class_set("cityscapes19"), size, resize_label)
    try:
        rgb, train_ids = decoder(Sample("x", folder / "image.png", folder / "label.png"))
    except UdabenchError:
        return
    assert rgb.dtype == np.uint8 and rgb.ndim == 3 and rgb.shape[2] == 3 and train_ids.dtype == np.uint8
    assert set(np.unique(train_ids).tolist()) <= set(range(19)) | {255}
    if size is not None:
        assert rgb.shape[:2] == (size[1], size[0])
