"""Selection protocols pick the right checkpoint on crafted records; bad names and missing fields are clear errors."""

import pytest
from helpers import write_run

from udabench import selection
from udabench.analysis.records import load_records
from udabench.analysis.tables import per_class_table
from udabench.cli import main
from udabench.errors import UdabenchError
from udabench.selection import SELECTIONS, get_selection, register, select

# step -> (mIoU, target entropy, source-val mIoU): every protocol has its own winner.
STEPS = {100: (50.0, 0.50, 60.0),    # best on target labels  -> oracle-target-val
         200: (35.0, 0.40, 70.0),    # best on source val     -> source-val
         300: (30.0, 0.30, 65.0),    # least target entropy   -> target-entropy
         400: (40.0, 0.35, 68.0)}    # the final evaluation   -> last
EXPECTED = {"last": 400, "source-val": 200, "target-entropy": 300, "oracle-target-val": 100}


def rows(steps, source_val=True):
    return [(step, [m, m], {"target_entropy": ent, **({"source_val_miou": sv} if source_val else {})})
            for step, (m, ent, sv) in steps.items()]


@pytest.fixture
def records(tmp_path):
    write_run(tmp_path, "minent", "MinEnt", 0, rows(STEPS))
    shifted = {step + 1000: values for step, values in STEPS.items()}           # a second seed, later steps
    write_run(tmp_path, "minent", "MinEnt", 1, rows(shifted))
    write_run(tmp_path, "ensemble-a-b", "A+B", 0, [(400, [20.0, 20.0], {"target_entropy": 0.9})])  # one row
    return load_records(tmp_path)


@pytest.mark.parametrize("name", list(EXPECTED))
def test_each_protocol_picks_its_checkpoint(records, name):
    chosen = select(records, name)
    minent = chosen[chosen["method"] == "minent"].sort_values("seed")
    assert minent["step"].tolist() == [EXPECTED[name], EXPECTED[name] + 1000]
    assert chosen.loc[chosen["method"] == "ensemble-a-b", "step"].tolist() == [400]   # nothing to choose from
    assert len(chosen) == 3 and chosen["step"].dtype == records["step"].dtype
    table = per_class_table(chosen, "cityscapes19")                                   # the reported number
    assert table.loc["MinEnt", "mIoU"] == STEPS[EXPECTED[name]][0] and table.loc["MinEnt", "mIoU std"] == 0


def test_ties_go_to_the_later_checkpoint(tmp_path):
    write_run(tmp_path, "minent", "MinEnt", 0, [(100, [50.0, 50.0], {"target_entropy": 0.3}),
                                                (200, [40.0, 40.0], {"target_entropy": 0.3}),
                                                (300, [50.0, 50.0], {"target_entropy": 0.4})])
    records = load_records(tmp_path)
    assert select(records, "oracle-target-val")["step"].tolist() == [300]
    assert select(records, "target-entropy")["step"].tolist() == [200]


def test_source_val_without_the_field_explains_the_suite_key(tmp_path, capsys):
    write_run(tmp_path, "minent", "MinEnt", 0, rows(STEPS, source_val=False))
    with pytest.raises(UdabenchError, match=r"data\.source_val"):
        select(load_records(tmp_path), "source-val")
    assert main(["report", "--results", str(tmp_path), "--selection", "source-val", "--table"]) == 2
    err = capsys.readouterr().err
    assert "data.source_val" in err and "held-out labelled source split" in err and "Traceback" not in err


def test_unknown_protocol_lists_the_valid_ones(records, tmp_path, capsys):
    with pytest.raises(UdabenchError, match="Did you mean 'last'"):
        get_selection("lst")
    write_run(tmp_path / "r", "minent", "MinEnt", 0, rows(STEPS))
    assert main(["report", "--results", str(tmp_path / "r"), "--selection", "best"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "unknown selection protocol 'best'" in err
    assert all(f"{name}:" in err for name in EXPECTED)


def test_a_protocol_is_one_registered_function(records, monkeypatch):
    monkeypatch.setattr(selection, "SELECTIONS", dict(SELECTIONS))

    @register("first", "the first evaluation")
    def first(run):
        return run.iloc[-1]          # rows come latest first

    chosen = select(records, "first")
    assert sorted(chosen["step"]) == [100, 400, 1100]     # both MinEnt seeds' first rows, the ensemble's only one
    assert "first" not in SELECTIONS    # the module's registry was the patched copy


def test_only_the_protocols_that_read_target_eval_labels_are_flagged():
    flagged = [s.name for s in SELECTIONS.values() if s.leaks_target_labels]
    assert flagged == ["oracle-target-val", "oracle-in-training-val"]
    for name in flagged:
        sel = get_selection(name)
        assert "LEAKS TARGET LABELS" in sel.title and sel.marker == " ‡" and "leaks target labels" in sel.notes()[0]
    assert get_selection("target-entropy").title == "target-entropy" and get_selection("last").notes() == []
