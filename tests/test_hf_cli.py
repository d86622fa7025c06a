"""`probattn support-tokens --hf-model` and `probattn eval-robust --hf-model` on a saved tiny model."""

from __future__ import annotations

import json

import pytest
import torch

transformers = pytest.importorskip("transformers", reason="the Hugging Face integration is the 'hf' extra")

from probattn.cli import main  # noqa: E402
from probattn.integrations.hf import load_pretrained  # noqa: E402
from probattn.integrations.hf.margins import hf_margins  # noqa: E402

from .hf_models import char_tokenizer, saved_model, tiny_llama  # noqa: E402

TEXT = "the cat sat on the mat. <b>the dog</b> sat too!\n"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("hf") / "tiny-llama-gpam"
    saved_model(path, tiny_llama, "gpam", {"init": "random"})
    return path


def cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_support_tokens_of_a_saved_hf_model(folder, tmp_path, capsys):
    code, out, _ = cli(capsys, "support-tokens", "--hf-model", folder, "--text", TEXT, "--top", "4",
                       "--out", tmp_path / "st")
    assert code == 0 and "4 support tokens" in out
    data = json.loads((tmp_path / "st" / "margins.json").read_text())
    ids = torch.tensor([char_tokenizer()(TEXT)["input_ids"]])
    expected = hf_margins(load_pretrained(folder), ids).token_margins()[0]
    got = torch.tensor([float("nan") if m is None else m for m in data["margins"]], dtype=torch.float64)
    torch.testing.assert_close(got[2:], expected[2:])  # positions 0 and 1 are never ranked
    order = [i for i in torch.argsort(expected[2:]).add(2).tolist()][:4]
    assert data["support_tokens"] == order
    page = (tmp_path / "st" / "support_tokens.html").read_text()
    assert "&lt;" in page and "<b>the" not in page  # the text is escaped
    assert (tmp_path / "st" / "margins_hist.png").stat().st_size > 0


def test_eval_robust_of_a_saved_hf_model(folder, tmp_path, capsys):
    code, out, _ = cli(capsys, "eval-robust", "--hf-model", folder, "--block-size", "16", "--max-tokens", "128",
                       "--sigmas", "0.5", "--rates", "0.1", "--json", tmp_path / "r.json")
    assert code == 0 and "embedding_noise 0.5" in out
    result = json.loads((tmp_path / "r.json").read_text())
    assert result["block_size"] == 16 and result["windows"] == 8
    assert {c["kind"] for c in result["conditions"]} == {"embedding_noise", "substitute", "delete", "swap"}
    assert result["clean"]["loss"] > 0


def test_bad_hf_input_gives_one_error_line(folder, tmp_path, capsys):
    code, _, err = cli(capsys, "support-tokens", "--hf-model", tmp_path / "nothing.gguf", "--text", TEXT)
    assert code == 2 and err.strip().startswith("probattn: error:") and len(err.strip().splitlines()) == 1
    code, _, err = cli(capsys, "support-tokens", "--hf-model", folder, "--text", TEXT, "--values")
    assert code == 2 and "strict maps without values" in err
    code, _, err = cli(capsys, "support-tokens", "--hf-model", folder, "--text", "ab")
    assert code == 2 and "at least three" in err


def test_a_folder_with_custom_code_is_one_line_and_nothing_runs(folder, tmp_path, capsys):
    import shutil

    custom = tmp_path / "custom"
    shutil.copytree(folder, custom)
    config = json.loads((custom / "config.json").read_text())
    (custom / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoConfig": "x.Y"}}))
    for command in (["support-tokens", "--hf-model", custom, "--text", TEXT],
                    ["eval-robust", "--hf-model", custom, "--max-tokens", "64"]):
        code, out, err = cli(capsys, *command)
        lines = err.strip().splitlines()
        assert code == 2 and out == "" and len(lines) == 1
        assert "probattn never runs code from a model folder" in lines[0]
