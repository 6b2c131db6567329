"""A results folder that cannot take the runs: an error before any training, finished runs untouched."""

from bad_inputs.conftest import read_only


def test_results_naming_a_file(bad):
    file = bad.tmp_path / "results.txt"
    file.write_text("not a folder")
    bad("run", bad.suite(), named=(f"{file} is a file", "--results"), results=file)
    assert file.read_text() == "not a folder"


def test_results_below_a_file(bad):
    file = bad.tmp_path / "a_file"
    file.write_text("")
    bad("run", bad.suite(), named=(f"{file} is a file",), results=file / "results")


def test_read_only_results_folder_with_a_finished_run(bad):
    suite = bad.suite(lambda s: s["train"].update(iterations=6))   # a new run, to be written next to the finished one
    with read_only(bad.results):
        bad("run", suite, named=(f"cannot write in {bad.results / 'tiny'}", "--results"))


def test_finished_runs_in_a_read_only_folder_are_still_skipped(bad, capsys):
    from udabench.cli import main

    with read_only(bad.results):
        assert main(["run", str(bad.suite()), "--methods", "source_only", "--results", str(bad.results)]) == 0
    assert "done already" in capsys.readouterr().err


def test_finished_runs_in_a_read_only_folder_without_a_plan_file(bad, capsys, caplog):
    """Results written before `udabench run` recorded its plan: the plan cannot be written, the run goes on."""
    from udabench.cli import main

    (bad.results / "tiny" / "plan.json").unlink()
    caplog.set_level("WARNING", logger="udabench")
    with read_only(bad.results):
        assert main(["run", str(bad.suite()), "--methods", "source_only", "--results", str(bad.results)]) == 0
    assert "could not record the planned runs" in caplog.text and "done already" in capsys.readouterr().err
