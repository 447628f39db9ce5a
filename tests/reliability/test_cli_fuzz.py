"""Bad arguments over every command: exit status 2, one error line, never a traceback; --debug
shows the traceback; an unexpected exception is reported as a bug."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

import neurofm.cli as cli
from neurofm.cli import build_parser, main
from neurofm.errors import ConfigError


def run(argv: list[str]) -> int:
    try:
        return main(argv)
    except SystemExit as exit_:  # argparse usage errors
        return int(exit_.code or 0)


def assert_one_error_line(capsys, code: int, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    assert code == 2, err
    assert "Traceback" not in err, err
    # argparse prints its usage first; the error itself is the only line saying "error:".
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1, err
    for needle in needles:
        assert needle in errors[0], err
    return errors[0]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("fuzz")
    paths = {
        "text": folder / "notes.txt", "edf": folder / "junk.edf", "json": folder / "bad.json",
        "binary_json": folder / "binary.json", "list_json": folder / "list.json",
        "yaml": folder / "bad.yaml", "file": folder / "afile", "empty_dir": folder / "empty",
    }
    paths["text"].write_text("hello\n")
    paths["edf"].write_bytes(b"0" * 100)
    paths["json"].write_text('{"task_name": ')
    paths["binary_json"].write_bytes(b"\xff\xfe\x00\x81")
    paths["list_json"].write_text("[1, 2]")
    paths["yaml"].write_text("optim: [unclosed\n")
    paths["file"].write_text("")
    paths["empty_dir"].mkdir()
    return paths


NUMERIC_OPTIONS = [  # (command prefix, option, needs) for every integer or number flag
    (["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small", "--out", "o"],
     "--bootstrap"),
    (["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small", "--out", "o"],
     "--epochs"),
    (["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small", "--out", "o"],
     "--max-folds"),
    (["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small", "--out", "o"],
     "--workers"),
    (["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small", "--out", "o"],
     "--seeds"),
    (["evaluate", "--task", "eegmat"], "--bootstrap"),
    (["evaluate", "--task", "eegmat"], "--seed"),
    (["evaluate", "--task", "eegmat"], "--max-folds"),
    (["evaluate", "--task", "eegmat"], "--workers"),
    (["prepare", "x.edf", "--out", "o"], "--workers"),
    (["prepare", "--all-eeg", "--out", "o"], "--fold"),
    (["embed", "--checkpoint", "c", "--out", "o.npy", "r.edf"], "--batch-size"),
    (["embed", "--checkpoint", "c", "--out", "o.npy", "r.edf"], "--window-seconds"),
    (["embed", "--checkpoint", "c", "--out", "o.npy", "r.edf"], "--stride-seconds"),
    (["demo"], "--threads"),
]
BAD_INTEGERS = ["-5", "-1", "1e30", "nan", "inf", "x", "", "2.5", "99999999999999999999"]
BAD_SECONDS = ["-5", "-1", "0", "nan", "inf", "-inf", "x", "", "2.5e400"]


@pytest.mark.parametrize(("prefix", "option"), NUMERIC_OPTIONS,
                         ids=[f"{p[0]} {o}" for p, o in NUMERIC_OPTIONS])
def test_bad_numbers_are_usage_errors(capsys, prefix, option):
    for value in BAD_SECONDS if option.endswith("-seconds") else BAD_INTEGERS:
        assert_one_error_line(capsys, run([*prefix, f"{option}={value}"]), f"argument {option}")


def test_finetune_bootstrap_minus_5_is_refused_before_anything_is_written(tmp_path, capsys):
    out = tmp_path / "run"
    code = run(["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small",
                "--out", str(out), "--bootstrap", "-5"])
    assert_one_error_line(capsys, code, "argument --bootstrap", "'-5' is out of range")
    assert not out.exists()


def bad_invocations(files: dict[str, Path], tmp: Path) -> list[tuple[list[str], str]]:
    """(argv, a fragment of the error line) for user errors past argument parsing."""
    nowhere = str(tmp / "does-not-exist")
    text, edf, json_, file_ = (str(files[k]) for k in ("text", "edf", "json", "file"))
    train = ["--corpus", nowhere, "--out", str(tmp / "run"), "--quiet"]
    return [
        (["datasets", "fetch", "no_such_dataset"], "no_such_dataset"),
        (["prepare", nowhere, "--out", str(tmp / "o")], nowhere),
        (["prepare", text, "--out", str(tmp / "o")], "no recording extension"),
        (["prepare", edf, "--out", str(tmp / "o"), "--strict"], "junk"),
        (["prepare", str(files["empty_dir"]), "--out", str(tmp / "o")], "holds no recording"),
        (["prepare", edf, "--out", file_], file_),
        (["prepare", "--all-eeg", "--fold", "1", "--out", str(tmp / "o")], "--fold"),
        (["info", nowhere], nowhere),
        (["info", text], text),
        (["pretrain", "--objective", "fip", *train], nowhere),
        (["pretrain", "--objective", "mem", *train], "tokenizer"),
        (["pretrain", "--objective", "fip", *train, "optim.lr=-1"], "optim.lr"),
        (["pretrain", "--objective", "fip", *train, "optim.lr=nan"], "optim.lr"),
        (["pretrain", "--objective", "fip", *train, "no.such.key=1"], "unknown config option"),
        (["pretrain", "--objective", "fip", *train, "novalue"], "novalue"),
        (["pretrain", "--objective", "fip", *train, "--config", str(files["yaml"])], "bad.yaml"),
        (["pretrain", "--objective", "fip", *train, "--config", nowhere], nowhere),
        (["pretrain", "--objective", "fip", "--model", "nope", *train], "unknown model 'nope'"),
        (["tokenizer", "train", *train], nowhere),
        (["tokenizer", "train", *train, "run.max_steps=-3"], "run.max_steps"),
        (["report", "--out", str(tmp / "r"), json_], "bad.json"),
        (["report", "--out", str(tmp / "r"), str(files["binary_json"])], "binary.json"),
        (["report", "--out", str(tmp / "r"), nowhere], nowhere),
        (["evaluate", "--task", "eegmat", "--split", json_, "--out", str(tmp / "e")], "bad.json"),
        (["evaluate", "--task", "eegmat", "--mirror", nowhere, "--out", str(tmp / "e")], "eegmat"),
        (["finetune", "--task", "eegmat", "--init", nowhere, "--model", "labram_small",
          "--out", str(tmp / "f"), "--seeds", "0", "0"], "--seeds"),
        (["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small",
          "--out", str(tmp / "f"), "--compare", json_], "bad.json"),
        (["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small",
          "--out", str(tmp / "f"), "optim.lr=inf"], "optim.lr"),
        (["embed", "--checkpoint", nowhere, "--out", str(tmp / "e.npy"), edf], ""),
        (["embed", "--checkpoint", nowhere, "--out", str(tmp / "e.txt"), edf], ".npy or .parquet"),
        (["embed", "--checkpoint", nowhere, "--out", str(tmp / "e.npy")], "exactly one"),
        (["export", nowhere, "--out", str(tmp / "x")], nowhere),
        (["export", json_, "--out", str(tmp / "x")], "bad.json"),
        (["export", edf, "--out", str(tmp / "x"), "--results", "[1]"], "JSON object"),
        (["push", nowhere, "org/name"], nowhere),
        (["push", edf, "not an id"], "not a Hub repository id"),
    ]


def test_user_errors_past_parsing_print_one_line(files, tmp_path, capsys):
    failures = []
    for argv, needle in bad_invocations(files, tmp_path):
        code = run(argv)
        try:
            assert_one_error_line(capsys, code, f"neurofm {argv[0]}", needle)
        except AssertionError as error:
            failures.append(f"neurofm {' '.join(argv)}: {str(error)[-600:]}")
    assert not failures, "\n\n".join(failures)


def test_report_on_a_result_file_holding_a_json_list(files, tmp_path, capsys):
    code = run(["report", "--out", str(tmp_path / "r"), str(files["list_json"])])
    assert_one_error_line(capsys, code, "list.json")


def test_every_command_is_covered(files, tmp_path):
    commands = build_parser()._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    covered = {argv[0] for argv, _ in bad_invocations(files, tmp_path)}
    covered |= {prefix[0] for prefix, _ in NUMERIC_OPTIONS}
    assert set(commands) <= covered


def _valid_count(text: str) -> bool:
    try:
        return 1 <= int(text) <= 10**6
    except ValueError:
        return False


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(max_size=12), st.integers(-(10**40), 10**40).map(str),
                       st.floats(allow_nan=True, allow_infinity=True).map(repr)),
       option=st.sampled_from(["--bootstrap", "--epochs", "--max-folds", "--workers"]))
def test_fuzzed_finetune_counts_never_crash(capsys, value, option):
    assume(not _valid_count(value))
    code = run(["finetune", "--task", "eegmat", "--init", "scratch", "--model", "labram_small",
                "--out", "o", f"{option}={value}"])
    assert_one_error_line(capsys, code, f"argument {option}")


def _valid_number(text: str) -> bool:
    try:
        value = float(text)
    except ValueError:
        return False
    return math.isfinite(value) and value > 0


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(value=st.one_of(st.text(max_size=12), st.floats(allow_nan=True).map(repr)))
def test_fuzzed_embed_seconds_never_crash(capsys, value):
    assume(not _valid_number(value))
    code = run(["embed", "--checkpoint", "c", "--out", "o.npy", "r.edf",
                f"--window-seconds={value}"])
    assert_one_error_line(capsys, code, "argument --window-seconds")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(key=st.sampled_from(["optim.lr", "optim.weight_decay", "run.seed", "run.max_steps",
                            "data.batch_size", "data.window_seconds", "model_overrides.depth"]),
       value=st.sampled_from(["-1", "nan", "inf", "-inf", "1e400", "x", "[1]", "{}", "-0.5",
                              "1e30", "''", "null"]))
def test_fuzzed_pretrain_overrides_never_crash(capsys, tmp_path_factory, key, value):
    # A corpus that does not exist: the config is checked first, so a good value fails there.
    tmp = tmp_path_factory.mktemp("o")
    code = run(["pretrain", "--objective", "fip", "--model", "neurobert_small", "--quiet",
                "--corpus", str(tmp / "none"), "--out", str(tmp / "run"), f"{key}={value}"])
    assert_one_error_line(capsys, code, "neurofm pretrain")


# --------------------------------------------------------------------------- the error boundary


def failing_command(monkeypatch, error: BaseException) -> None:
    def fail(args):
        raise error

    original = cli.build_parser

    def parser_with_failing_info():
        parser = original()
        parser._subparsers._group_actions[0].choices["info"].set_defaults(func=fail)
        return parser

    monkeypatch.setattr(cli, "build_parser", parser_with_failing_info)


@pytest.mark.parametrize("error", [
    ConfigError("corpus.json: field x is wrong; fix it"),
    FileNotFoundError(2, "No such file or directory", "/x/y"),
    PermissionError(13, "Permission denied", "/ro"),
    OSError(30, "Read-only file system", "/mnt/ro"),
    UnicodeDecodeError("utf-8", b"\xff", 0, 1, "invalid start byte"),
    json.JSONDecodeError("Expecting value", "{", 1),
], ids=["neurofm", "missing", "permission", "read-only", "unicode", "json"])
def test_known_errors_are_one_line_without_traceback(monkeypatch, capsys, error):
    failing_command(monkeypatch, error)
    assert_one_error_line(capsys, run(["info", "c"]), "neurofm info: error:")


def test_safetensors_error_is_one_line(monkeypatch, capsys, tmp_path):
    from safetensors import SafetensorError

    failing_command(monkeypatch, SafetensorError("header too large"))
    assert_one_error_line(capsys, run(["info", "c"]), "safetensors", "header too large")


@pytest.mark.parametrize("argv", [["--debug", "info", "c"], ["info", "c", "--debug"]])
def test_debug_flag_shows_the_traceback(monkeypatch, capsys, argv):
    failing_command(monkeypatch, ConfigError("bad option"))
    assert run(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "neurofm info: error: bad option" in err


def test_debug_environment_variable_shows_the_traceback(monkeypatch, capsys):
    failing_command(monkeypatch, ConfigError("bad option"))
    monkeypatch.setenv("NEUROFM_DEBUG", "1")
    assert run(["info", "c"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_unexpected_exception_is_reported_as_a_bug_with_its_traceback(monkeypatch, capsys):
    failing_command(monkeypatch, ZeroDivisionError("division by zero"))
    assert run(["info", "c"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" in err and "ZeroDivisionError" in err
    assert "this is a bug in neurofm" in err
