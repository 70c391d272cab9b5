"""Hardening (issue #22): every user error of the CLI is one ``{"error": ...}`` JSON object on
stdout and exit status 2 under ``--json`` (a readable message on stderr without it), never a
traceback; the engine raises WorkbenchErrors with the same messages for the app."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from interp_core.cli import main
from interp_core.core import loading
from interp_core.core.errors import ModelLoadError, NotSingleTokenError, OutOfRangeError, WorkbenchError
from interp_core.core.loading import (
    DEFAULT_MODEL,
    SHIPPED_TOY_DIR,
    default_model_ready,
    is_shipped_toy,
    list_toy_models,
    load_model,
    pick_device,
    prepare_default_model,
    safetensors_problem,
    toy_model_dir,
    valid_toy_name,
)
from interp_core.techniques.induction import repeated_tokens
from interp_core.techniques.predict import predict_next
from interp_core.techniques.toy.train import train_toy

REPO = Path(__file__).resolve().parent.parent


def cli(capsys: pytest.CaptureFixture, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def json_error(capsys: pytest.CaptureFixture, *argv: str, code: int = 2, bug: bool = False) -> str:
    """Run the CLI with ``--json``; assert exactly one ``{"error"}`` object on stdout and exit ``code``;
    no traceback unless it is a ``bug`` (whose traceback goes to stderr for the report)."""
    status, out, err = cli(capsys, *argv, "--json")
    lines = out.strip().splitlines()
    assert status == code, (status, out, err)
    assert len(lines) == 1, out
    payload = json.loads(lines[0])
    assert list(payload) == ["error"] and payload["error"], payload
    assert ("Traceback" in err) == bug, err
    return payload["error"]


@pytest.fixture()
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway workbench home: nothing here can touch the real converted default model."""
    path = tmp_path / "home"
    path.mkdir()
    monkeypatch.setenv("INTERP_WORKBENCH_HOME", str(path))
    return path


@pytest.fixture(scope="module")
def llama_dir(tiny_model_dirs: dict[str, Path]) -> str:
    return str(tiny_model_dirs["llama"])


def _truncate(path: Path, size: int | None = None) -> None:
    with open(path, "r+b") as handle:
        handle.truncate(path.stat().st_size // 2 if size is None else size)


# --- 1. damaged weights ----------------------------------------------------------------
class TestDamagedWeights:
    @pytest.mark.parametrize("size", [None, 0, 5])
    def test_truncated_safetensors_is_a_model_load_error(self, tmp_path: Path, tiny_model_dirs: dict[str, Path],
                                                         capsys: pytest.CaptureFixture, size: int | None) -> None:
        broken = tmp_path / "broken"
        shutil.copytree(tiny_model_dirs["gpt2"], broken)
        _truncate(broken / "model.safetensors", size)
        with pytest.raises(ModelLoadError, match="damaged"):
            load_model(str(broken), device="cpu")
        message = json_error(capsys, "predict", "--model", broken, "--prompt", "hi")
        assert "model.safetensors" in message and "damaged" in message

    def test_garbage_header_is_a_model_load_error(self, tmp_path: Path, tiny_model_dirs: dict[str, Path],
                                                  capsys: pytest.CaptureFixture) -> None:
        broken = tmp_path / "garbage"
        shutil.copytree(tiny_model_dirs["llama"], broken)
        with open(broken / "model.safetensors", "r+b") as handle:
            handle.seek(8)
            handle.write(b"\x00not json")
        assert "damaged" in json_error(capsys, "predict", "--model", broken, "--prompt", "hi")

    def test_safetensors_problem(self, tmp_path: Path, tiny_model_dirs: dict[str, Path]) -> None:
        good = tiny_model_dirs["llama"] / "model.safetensors"
        assert safetensors_problem(good) is None
        bad = tmp_path / "model.safetensors"
        shutil.copy(good, bad)
        with open(bad, "ab") as handle:
            handle.write(b"extra")
        assert "bytes" in safetensors_problem(bad)

    def test_default_model_ready_checks_integrity(self, home: Path, tiny_model_dirs: dict[str, Path]) -> None:
        """A truncated or empty converted copy is not ready (the app then re-converts it); an intact one is."""
        target = home / "models" / DEFAULT_MODEL
        shutil.copytree(tiny_model_dirs["llama"], target)
        assert default_model_ready()
        _truncate(target / "model.safetensors")
        assert not default_model_ready()
        (target / "model.safetensors").write_bytes(b"")
        assert not default_model_ready()

    def test_a_damaged_default_copy_is_converted_again(self, home: Path, tiny_model_dirs: dict[str, Path],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
        """prepare_default_model re-converts a damaged copy instead of returning it (the conversion
        itself is replaced by a sentinel here: it takes 30 s)."""
        target = home / "models" / DEFAULT_MODEL
        shutil.copytree(tiny_model_dirs["llama"], target)
        assert prepare_default_model() == target  # intact: returned as it is

        def convert() -> Path:
            raise ModelLoadError("converting again")

        monkeypatch.setattr(loading, "_gguf_path", convert)
        _truncate(target / "model.safetensors")
        with pytest.raises(ModelLoadError, match="converting again"):
            prepare_default_model()

    @pytest.mark.slow
    def test_a_damaged_default_copy_is_really_converted_again(self, home: Path) -> None:
        """The full path once: an empty copy is replaced by the bundled model, which then predicts ' Paris'."""
        target = home / "models" / DEFAULT_MODEL
        target.mkdir(parents=True)
        (target / "config.json").write_text("{}")
        (target / "model.safetensors").write_bytes(b"")
        steps: list[str] = []
        prepare_default_model(lambda fraction, message: steps.append(message))
        assert steps and default_model_ready()
        model = load_model(DEFAULT_MODEL, device="cpu")
        assert predict_next(model, "The capital of France is", 1).top_tokens[0] == " Paris"


# --- 2. devices --------------------------------------------------------------------------
class TestDevices:
    def test_unknown_device_lists_the_choices(self, llama_dir: str, capsys: pytest.CaptureFixture) -> None:
        message = json_error(capsys, "predict", "--model", llama_dir, "--prompt", "hi", "--device", "garbage")
        assert "'garbage'" in message and "cpu" in message and "cuda:N" in message and "mps" in message

    def test_cuda_without_a_gpu(self, llama_dir: str, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        message = json_error(capsys, "predict", "--model", llama_dir, "--prompt", "hi", "--device", "cuda")
        assert "CUDA was requested" in message and "--device cpu" in message

    def test_cuda_from_the_environment(self, llama_dir: str, capsys: pytest.CaptureFixture,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        monkeypatch.setenv("INTERP_DEVICE", "cuda")
        message = json_error(capsys, "predict", "--model", llama_dir, "--prompt", "hi")
        assert "INTERP_DEVICE=cuda" in message and "no CUDA GPU" in message
        monkeypatch.setenv("INTERP_DEVICE", "cuda:3")
        with pytest.raises(ModelLoadError, match="CUDA"):
            pick_device()
        # the flag wins over the environment
        assert pick_device("cpu") == torch.device("cpu")

    def test_mps_without_one(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        with pytest.raises(ModelLoadError, match="MPS was requested"):
            pick_device("mps")

    def test_train_toy_checks_the_device_too(self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        message = json_error(capsys, "train-toy", "--task", "reverse-increment", "--out", tmp_path / "m",
                             "--max-steps", "1", "--quiet", "--device", "tpu")
        assert "'tpu'" in message
        assert not (tmp_path / "m").exists()


# --- 3. numbers ---------------------------------------------------------------------------
class TestNumbers:
    @pytest.mark.parametrize("k", ["0", "-3"])
    def test_predict_top_k(self, llama_dir: str, capsys: pytest.CaptureFixture, k: str) -> None:
        assert "top-k" in json_error(capsys, "predict", "--model", llama_dir, "--prompt", "hi", "--top-k", k)

    def test_predict_top_k_in_the_engine(self, tiny_llama: object) -> None:
        with pytest.raises(OutOfRangeError, match="top-k"):
            predict_next(tiny_llama, "hi", 0)

    @pytest.mark.parametrize(
        "flags, words",
        [
            (["--low", "-100", "--high", "2"], "0 or more"),
            (["--low", "5", "--high", "3"], "empty"),
            (["--low", "0", "--high", "2"], "at least 2"),  # id 0 is BOS, so one ordinary token is left
            (["--top", "0"], "at least 1"),
            (["--top", "-2"], "at least 1"),
            (["--seed", str(2**64)], "seed"),
            (["--length", "0"], "at least 2"),
            (["--ablate", "-1"], "k must be"),
            (["--ablate", "2", "--draws", "0"], "draws"),
        ],
    )
    def test_induction_flags(self, llama_dir: str, capsys: pytest.CaptureFixture, flags: list[str], words: str) -> None:
        message = json_error(capsys, "induction", "--model", llama_dir, "--length", "5", *flags)
        assert words in message

    def test_induction_range_in_the_engine(self, tiny_llama: object) -> None:
        with pytest.raises(OutOfRangeError):
            repeated_tokens(tiny_llama, 5, low=-1, high=10)
        # the default range lies beyond a tiny vocabulary: ids come from the whole vocabulary, as documented
        assert repeated_tokens(tiny_llama, 5).shape == (1, 11)

    def test_probe_seed(self, llama_dir: str, capsys: pytest.CaptureFixture) -> None:
        assert "--seed" in json_error(capsys, "probe", "--model", llama_dir, "--seed", "-1")

    @pytest.mark.parametrize(
        "argv",
        [
            ["pattern", "--prompt", "a b", "--layer", "-1", "--head", "0"],
            ["pattern", "--prompt", "a b", "--layer", "0", "--head", "99"],
            ["logit-lens", "--prompt", "a b", "--top-k", "0"],
            ["dla", "--prompt", "a b", "--position", "-99"],
            ["circuits", "--layer", "0", "--head", "0", "--top-k", "-5"],
            ["probe", "--folds", "1"],
        ],
    )
    def test_other_commands(self, llama_dir: str, capsys: pytest.CaptureFixture, argv: list[str]) -> None:
        json_error(capsys, *argv, "--model", llama_dir)


# --- 4. train-toy -------------------------------------------------------------------------
TRAIN = ("train-toy", "--task", "reverse-increment", "--max-steps", "2", "--quiet")


class TestTrainToy:
    @pytest.mark.parametrize(
        "flags, words",
        [
            (["--weight-decay", "inf"], "Weight decay"),
            (["--weight-decay", "nan"], "Weight decay"),
            (["--lr", "nan"], "learning rate"),
            (["--lr", "inf"], "learning rate"),
            (["--max-steps", "0"], "steps"),
            (["--max-steps", "-4"], "steps"),
            (["--seed", "-1"], "seed"),
        ],
    )
    def test_bad_hyperparameters(self, tmp_path: Path, capsys: pytest.CaptureFixture, flags: list[str], words: str) -> None:
        assert words in json_error(capsys, *TRAIN, "--out", tmp_path / "m", *flags)
        assert list(tmp_path.iterdir()) == []

    @pytest.mark.parametrize("out", ["", "   "])
    def test_empty_out(self, capsys: pytest.CaptureFixture, out: str) -> None:
        assert "output directory is empty" in json_error(capsys, *TRAIN, "--out", out)

    def test_existing_directory_is_refused_and_untouched(self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        out = tmp_path / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("precious")
        assert "already exists" in json_error(capsys, *TRAIN, "--out", out)
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
        with pytest.raises(WorkbenchError, match="pick another name"):
            train_toy("reverse-increment", out_dir=out, max_steps=1)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]

    def test_unwritable_out_fails_before_training(self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        afile = tmp_path / "afile"
        afile.write_text("x")
        for out in (afile, afile / "sub"):
            message = json_error(capsys, *TRAIN, "--out", out)
            assert "not a directory" in message
            assert "[" not in capsys.readouterr().err  # no progress line: refused before training
        assert afile.read_text() == "x"

    @pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes into read-only directories")
    def test_read_only_parent(self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        try:
            assert "Cannot save" in json_error(capsys, *TRAIN, "--out", locked / "m")
        finally:
            locked.chmod(0o755)

    def test_divergence_saves_nothing_and_keeps_the_old_model(self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        out = tmp_path / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("precious")
        message = json_error(capsys, *TRAIN, "--out", out, "--weight-decay", "1e300", "--overwrite")
        assert "diverged" in message and "nothing was saved" in message
        assert [p.name for p in out.iterdir()] == ["notes.txt"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]  # no staging directory left behind

    def test_a_directory_filled_during_training_is_not_replaced(self, tmp_path: Path) -> None:
        """Two runs saving under one name (two app users): the later one refuses instead of replacing."""
        out = tmp_path / "mine"

        def someone_else_saves(fraction: float, message: str) -> None:
            out.mkdir(exist_ok=True)
            (out / "theirs.txt").write_text("theirs")

        with pytest.raises(WorkbenchError, match="another run"):
            train_toy("reverse-increment", out_dir=out, max_steps=1, on_progress=someone_else_saves)
        assert [p.name for p in out.iterdir()] == ["theirs.txt"]
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]

    def test_overwrite_replaces_atomically(self, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
        out = tmp_path / "mine"
        out.mkdir()
        (out / "notes.txt").write_text("old")
        status, stdout, _ = cli(capsys, *TRAIN, "--out", out, "--overwrite", "--json")
        assert status == 0
        assert json.loads(stdout)["out_dir"] == str(out)
        assert not (out / "notes.txt").exists() and (out / "model.safetensors").is_file()
        assert sorted(p.name for p in tmp_path.iterdir()) == ["mine"]
        assert safetensors_problem(out / "model.safetensors") is None


# --- 5. toy names -------------------------------------------------------------------------
class TestToyNames:
    @pytest.mark.parametrize("spec", ["toy:../../../tmp", "toy:/etc", "toy:a/b", "toy:..", "toy:", "toy:.hidden", "toy:a..b"])
    def test_names_cannot_escape(self, spec: str, capsys: pytest.CaptureFixture) -> None:
        with pytest.raises(ModelLoadError, match="not a toy model name"):
            load_model(spec, device="cpu")
        assert "not a toy model name" in json_error(capsys, "predict", "--model", spec, "--prompt", "x")

    def test_a_directory_reached_by_dots_is_refused(self, home: Path, tiny_model_dirs: dict[str, Path]) -> None:
        relative = os.path.relpath(tiny_model_dirs["llama"], home / "toy_models")
        with pytest.raises(ModelLoadError, match="not a toy model name"):
            toy_model_dir("toy:" + relative)

    def test_shipped_models_win(self, home: Path, tiny_model_dirs: dict[str, Path]) -> None:
        shutil.copytree(tiny_model_dirs["llama"], home / "toy_models" / "induction")
        shutil.copytree(tiny_model_dirs["llama"], home / "toy_models" / "mine")
        assert toy_model_dir("toy:induction") == SHIPPED_TOY_DIR / "induction"
        assert toy_model_dir("mine") == home / "toy_models" / "mine"
        names = list_toy_models()
        assert len(names) == len(set(names)) and names.index("toy:induction") < names.index("toy:mine")
        assert is_shipped_toy("induction") and is_shipped_toy("toy:induction")
        assert not is_shipped_toy("mine") and not is_shipped_toy("../toy_models/induction")

    def test_valid_toy_name(self) -> None:
        assert valid_toy_name("reverse-increment") and valid_toy_name("a.b_c-1") and valid_toy_name("x" * 64)
        for bad in ("", "x" * 65, "-x", ".x", "a/b", "a..b", "a b", "é"):
            assert not valid_toy_name(bad), bad


# --- 6. argv that is not UTF-8 ------------------------------------------------------------
@pytest.mark.parametrize("flag", ["--prompt", "--answer"])
def test_non_utf8_argv(llama_dir: str, flag: str) -> None:
    """Bytes that are not UTF-8 reach Python as surrogates; the CLI names the flag instead of a TypeError traceback."""
    values = {"--prompt": b"abc", "--answer": b"x"}
    values[flag] += b"\xff"
    argv = [sys.executable.encode(), b"-m", b"interp_core", b"dla", b"--model", llama_dir.encode(), b"--json"]
    for name, value in values.items():
        argv += [name.encode(), value]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    done = subprocess.run(argv, capture_output=True, cwd=REPO, env=env, timeout=300)
    assert done.returncode == 2, done.stderr.decode(errors="replace")
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) == 1
    message = json.loads(lines[0])["error"]
    assert message.startswith(f"{flag} is not valid UTF-8")
    assert b"Traceback" not in done.stderr


# --- 7. unknown words on toy models -----------------------------------------------------
class TestUnknownAnswer:
    @pytest.mark.parametrize("flag", ["--answer", "--wrong"])
    def test_dla_refuses_an_unknown_word(self, capsys: pytest.CaptureFixture, flag: str) -> None:
        extra = ["--answer", "3"] if flag == "--wrong" else []
        message = json_error(capsys, "dla", "--model", "toy:induction", "--prompt", "BOS 0 1 2", *extra, flag, "banana")
        assert "'banana' is unknown to this model" in message and "'0'" in message

    def test_single_token_id(self) -> None:
        model = load_model("toy:reverse-increment", device="cpu")
        assert model.single_token_id("3") == 3
        with pytest.raises(NotSingleTokenError, match="unknown"):
            model.single_token_id("banana")

    def test_byte_level_models_are_unaffected(self, tiny_gpt2: object) -> None:
        assert isinstance(tiny_gpt2.single_token_id("a"), int)


# --- argparse errors and the safety net --------------------------------------------------
class TestUsage:
    @pytest.mark.parametrize(
        "argv, words",
        [
            (["predict", "--prompt", "hi", "--top-k", "abc"], "invalid int value: 'abc'"),
            (["predict"], "--prompt"),
            (["logit-lens", "--prompt", "hi", "--lens", "foo"], "invalid choice: 'foo'"),
            (["no-such-command"], "invalid choice"),
            (["predict", "--prompt", "hi", "--bogus"], "unrecognized arguments"),
        ],
    )
    def test_argparse_errors_are_json(self, capsys: pytest.CaptureFixture, argv: list[str], words: str) -> None:
        message = json_error(capsys, *argv)
        assert words.lower() in message.lower() and "--help" in message

    def test_without_json_the_message_goes_to_stderr(self, capsys: pytest.CaptureFixture) -> None:
        status, out, err = cli(capsys, "predict", "--prompt", "hi", "--top-k", "abc")
        assert status == 2 and out == "" and "invalid int value" in err and "Traceback" not in err

    def test_help_still_works(self, capsys: pytest.CaptureFixture) -> None:
        with pytest.raises(SystemExit) as exit_info:
            main(["predict", "--help"])
        assert exit_info.value.code == 0
        assert "--top-k" in capsys.readouterr().out

    def test_a_bug_is_an_internal_error_with_status_2(self, capsys: pytest.CaptureFixture,
                                                      monkeypatch: pytest.MonkeyPatch, llama_dir: str) -> None:
        from interp_core.cli.commands import predict

        def broken(args: object) -> dict:
            raise TypeError("boom")

        monkeypatch.setattr(predict, "run", broken)
        message = json_error(capsys, "predict", "--model", llama_dir, "--prompt", "hi", bug=True)
        assert message.startswith("internal error: TypeError: boom")
