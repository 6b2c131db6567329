"""Training batches cross from the workers (and to a CUDA device) as uint8 and reach the step exactly as
DataLoader's float32/int64, received by a thread on a CPU."""

import pytest
import torch
from helpers import write_cityscapes, write_gta5
from torch.utils.data import default_collate

from udabench.config import DomainAugment, Jitter
from udabench.data import get_dataset
from udabench.engine.augment import Augmented
from udabench.engine.handover import narrow_collate, to_device

AUGMENT = DomainAugment(jitter=Jitter(0.4, 0.4, 0.4, 0.1), scale=(0.7, 1.3), crop=(48, 32), flip=0.5, blur=0.5)


def items(tmp_path):
    """Decoded GTA5 and Cityscapes items (labels with the ignore id), as read and augmented, one with a
    pseudo-label map."""
    gta5 = get_dataset("gta5", write_gta5(tmp_path / "GTA5", 4), "all", size=(64, 32), prepared=False)
    city = get_dataset("cityscapes", write_cityscapes(tmp_path / "Cityscapes", {"train": 4}), "train",
                       size=(64, 32), prepared=False)
    out = [gta5[i] for i in range(4)] + [city[i] for i in range(4)]
    out += [Augmented(gta5, AUGMENT, seed=3)[(i, 10 + i)] for i in range(4)]
    out.append({**city[0], "pseudo_label": torch.where(city[0]["label"] == 255, 255, 18 - city[0]["label"])})
    return out


def test_a_uint8_handover_gives_the_step_the_default_batch_bit_for_bit(tmp_path):
    found = items(tmp_path)
    assert any((item["label"] == 255).any() for item in found)   # the ignore id crosses too
    groups = [found[0:4], found[4:8], found[8:12], found[12:]]
    for group in groups:
        expected, narrow = default_collate(group), narrow_collate(group)
        assert narrow["image"].dtype == narrow["label"].dtype == torch.uint8
        assert narrow["image"].nbytes * 4 == expected["image"].nbytes
        got = to_device(narrow, torch.device("cpu"))
        assert got.keys() == expected.keys() and got["name"] == expected["name"]
        for key in ("image", "label", "pseudo_label"):
            if key in expected:
                assert got[key].dtype == expected[key].dtype and torch.equal(got[key], expected[key]), key


def test_items_are_integer_valued_so_uint8_is_exact(tmp_path):
    """The premise of the hand-over (engine/handover.py): every image a reader or the augmentation makes is
    integer-valued in 0-255, every label map below 256."""
    for item in items(tmp_path):
        image = item["image"]
        assert image.dtype == torch.float32 and torch.equal(image, image.round())
        assert image.min() >= 0 and image.max() <= 255
        assert item["label"].min() >= 0 and item["label"].max() <= 255


def test_batches_are_narrowed_where_they_cross_to_cuda_or_from_workers():
    """A CPU run without workers makes its batches in the step's process: nothing crosses, nothing to narrow."""
    from udabench.engine.handover import collate_for

    assert collate_for(torch.device("cuda"), 0) is collate_for(torch.device("cuda"), 2) is narrow_collate
    assert collate_for(torch.device("cpu"), 2) is narrow_collate
    assert collate_for(torch.device("cpu"), 0) is None


class Frames(torch.utils.data.Dataset):
    """Items shaped like a reader's (float32 image, int64 label with the ignore id); item ``fail_at`` raises."""

    def __init__(self, n: int = 6, fail_at: int | None = None):
        self.n, self.fail_at = n, fail_at

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i == self.fail_at:
            raise FileNotFoundError(f"frame {i} vanished")
        g = torch.Generator().manual_seed(i)
        label = torch.randint(0, 19, (8, 12), generator=g)
        label[0, :3] = 255
        return {"image": torch.randint(0, 256, (3, 8, 12), generator=g).float(), "label": label, "name": f"f{i}"}


def loader(dataset, workers, device=torch.device("cpu")):
    from udabench.engine.handover import collate_for
    from udabench.engine.rundata import make_loader

    return make_loader(dataset, 2, workers, device, collate_fn=collate_for(device, workers))


def test_on_a_cpu_a_thread_receives_and_widens_the_workers_batches_in_order():
    from udabench.engine.handover import Prefetched, stream

    expected = [default_collate([Frames()[i] for i in (j, j + 1)]) for j in range(0, 6, 2)]
    batches = stream(loader(Frames(), workers=2), torch.device("cpu"))
    assert isinstance(batches, Prefetched)
    got = [next(batches) for _ in range(3)]
    batches.close()
    for g, e in zip(got, expected):
        assert g["name"] == e["name"]
        for key in ("image", "label"):
            assert g[key].dtype == e[key].dtype and torch.equal(g[key], e[key])
    assert not isinstance(stream(loader(Frames(), workers=0), torch.device("cpu")), Prefetched)


def test_a_workers_error_reaches_the_step_as_dataloader_raises_it(monkeypatch):
    import gc

    from udabench.engine.handover import stream

    # workers that saw an error outlive DataLoader's shutdown timeout (5 s each) before they are ended
    monkeypatch.setattr(torch.utils.data._utils, "MP_STATUS_CHECK_INTERVAL", 0.2)
    with pytest.raises(FileNotFoundError) as plain:
        list(loader(Frames(fail_at=3), workers=2))
    batches = stream(loader(Frames(fail_at=3), workers=2), torch.device("cpu"))
    next(batches)
    for _ in range(2):   # and again on a later call, instead of waiting for a batch that never comes
        with pytest.raises(FileNotFoundError) as threaded:
            next(batches)
        assert str(threaded.value) == str(plain.value) and "frame 3 vanished" in str(threaded.value)
    batches.close()
    del plain, threaded, batches
    gc.collect()   # their workers end here, within the shorter timeout


def test_the_thread_and_its_workers_stop_at_close_or_when_the_stream_is_dropped():
    import gc
    import threading

    from udabench.engine.handover import stream

    def receiving():
        return [t for t in threading.enumerate() if t.name == "udabench-receive"]

    before = set(torch.multiprocessing.active_children())   # other tests' processes
    batches = stream(loader(Frames(), workers=2), torch.device("cpu"))
    next(batches)
    workers = set(torch.multiprocessing.active_children()) - before
    assert len(receiving()) == 1 and len(workers) == 2
    batches.close()
    assert not receiving() and not any(w.is_alive() for w in workers)

    batches = stream(loader(Frames(), workers=2), torch.device("cpu"))
    next(batches)
    thread = receiving()[0]
    del batches
    gc.collect()
    thread.join(timeout=30)
    assert not thread.is_alive()
