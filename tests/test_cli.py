"""The command line: train on a file with a config, predict label names, evaluate with an
HTML report, and exit codes that scripts can rely on."""

import json

import numpy as np
import pytest

from skstack import load
from skstack.cli import main


def test_train_writes_a_loadable_model_and_its_card(trained):
    folder, _, model = trained
    pipe = load(model)
    assert pipe.named_steps["clf"].objective == "jaccard"
    assert pipe.named_steps["clf"].label_names_ == ["anger", "fear", "joy"]
    card = (folder / "model.card.md").read_text()
    assert "60 training texts" in card and "| joy |" in card and "`jaccard`" in card
    # the encoder line names what it ran in where the pipeline left it to the machine
    bert = dict(pipe.named_steps["embed"].members_)["bert"]
    assert "dtype='auto', backend='auto', quantization='auto'" in card
    ran = {"torch": f"(ran in {bert.dtype_} on torch)",
           "openvino": f"(ran in {bert.dtype_} on openvino, int8)"}[bert.backend_]
    assert bert.dtype_ in ("float32", "bfloat16") and ran in card


def test_predict_prints_label_names_per_text(trained, capsys):
    _, _, model = trained
    assert main(["predict", str(model), "a happy day", "so angry"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[1] for line in lines] == ["a happy day", "so angry"]
    for line in lines:  # the rule keeps at least one label per text (pipelines' default)
        assert line.split("\t")[0] and set(line.split("\t")[0].split(",")) <= {
            "anger", "fear", "joy"}


def test_predict_answers_an_empty_text_and_says_it_has_no_words(trained, capsys):
    _, _, model = trained
    assert main(["predict", str(model), "a happy day", " ", "so angry"]) == 0
    out, err = capsys.readouterr()
    assert [line.split("\t")[1] for line in out.splitlines()] == ["a happy day", " ",
                                                                  "so angry"]
    assert ("warning: 1 text(s) are empty or only white space (text 2, counting from 1): "
            "their labels come from the model alone") in err


def test_predict_reads_a_file_and_writes_json_lines(trained, tmp_path):
    _, data, model = trained
    out = tmp_path / "pred.jsonl"
    assert main(["predict", str(model), "--input", str(data), "-o", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 60 and set(rows[0]) == {"text", "labels"}


# In a child process: once the model has answered (``after`` returns), no file may grow past
# 2,000 bytes, as when the disk fills while the output is written.
FULL_DISK = """
import resource, signal, sys
import {module} as where
from skstack.cli import main
answered = where.{after}
def then_full(*args, **kwargs):
    result = answered(*args, **kwargs)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails, not the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (2_000, 2_000))
    return result
where.{after} = then_full
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("command, module, after", [
    ("predict", "skstack.cli", "predict_label_lists"),
    ("evaluate", "skstack.report", "html_report"),
])
def test_a_full_disk_leaves_the_previous_file_whole_and_says_so_in_one_line(
        trained, tmp_path, command, module, after):
    import subprocess
    import sys

    _, data, model = trained
    out = tmp_path / ("preds.jsonl" if command == "predict" else "report.html")
    out.write_text("the previous file\n", encoding="utf-8")
    args = (["predict", str(model), "--input", str(data), "-o", str(out)]
            if command == "predict" else ["evaluate", str(model), str(data), "--html", str(out)])
    done = subprocess.run([sys.executable, "-c", FULL_DISK.format(module=module, after=after),
                           "--quiet", *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith(f"skstack {command}: error: ") and "File too large" in error
    assert str(out.name) in error and "Traceback" not in done.stderr
    assert out.read_text(encoding="utf-8") == "the previous file\n"
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no partial file left


def test_evaluate_prints_the_report_and_writes_html(trained, tmp_path, capsys):
    _, data, model = trained
    page = tmp_path / "report.html"
    assert main(["evaluate", str(model), str(data), "--html", str(page), "--json"]) == 0
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert set(report["per_label"]) == {"anger", "fear", "joy"}
    assert 0 <= report["jaccard_accuracy"] <= 1
    html = page.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert "Most confident errors" in html and "src=" not in html  # self-contained
    assert "<title>skstack evaluation: model.skstack on " in html
    # the training file itself, and a rule tuned on 60 rows: both said, on stderr and page
    for warning in ("These 60 texts are as many as the model was trained on",
                    "came from only 60 rows: too few to trust"):
        assert warning in err and warning in html
    assert err.count("skstack evaluate: warning: ") == 2
    model_part = html[html.index("<h2>Model</h2>"):html.index("<h2>Averages</h2>")]
    assert "<td class='text'>60</td>" in model_part  # training texts
    assert f"bert: {model.parent.parent.name}/tiny_bert" in model_part
    assert "<span class='up'" in html  # the errors' words, shaded
    assert "skstack: explaining the " in err and "texts of the most confident errors" in err


@pytest.mark.parametrize("name", ["2018-E-c-En-dev.txt", "folder"])
def test_an_official_semeval_file_or_folder_is_read_without_format(trained, tmp_path, capsys,
                                                                   name):
    from test_datasets import write_semeval

    file = tmp_path / "2018-E-c-En-dev.txt"
    write_semeval(file, ["2018-En-1\tso happy\t" + "\t".join(["0"] * 6 + ["1"] + ["0"] * 4)])
    data = file if name != "folder" else tmp_path
    assert main(["--quiet", "evaluate", str(trained[2]), str(data), "--split", "dev"]) == 2
    err = capsys.readouterr().err  # read as SemEval: its 11 labels, not a table's columns
    assert "has the labels ['anger', 'anticipation', 'disgust'" in err


@pytest.mark.parametrize("argv, message", [
    (["predict", "missing.skstack", "hi"], "model file missing.skstack not found"),
    (["train", "nowhere.tsv", "-o", "m.skstack"], "nowhere.tsv not found"),
    (["train", "data.txt", "-o", "m.skstack"], "cannot tell the format"),
])
def test_bad_input_exits_2_with_one_line(argv, message, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("hello\n")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


@pytest.mark.parametrize("damage", ["truncated", "flipped", "not a pickle"])
def test_a_damaged_joblib_file_exits_2_with_one_line(damage, tmp_path, capsys):
    import joblib
    from sklearn.preprocessing import StandardScaler

    path = tmp_path / "m.joblib"
    joblib.dump(StandardScaler().fit(np.arange(400.0).reshape(-1, 4)), path)
    raw = bytearray(path.read_bytes())
    if damage == "truncated":
        raw = raw[: len(raw) // 2]
    elif damage == "flipped":
        raw[len(raw) // 3: len(raw) // 3 + 8] = b"\xff" * 8
    else:
        raw = bytearray(b"hello")
    path.write_bytes(bytes(raw))
    assert main(["predict", str(path), "hi"]) == 2
    err = capsys.readouterr().err.strip()
    assert "m.joblib is damaged or truncated: joblib could not read it" in err
    assert "\n" not in err and "Traceback" not in err


def test_evaluate_refuses_labels_the_model_does_not_know(trained, tmp_path, capsys):
    _, _, model = trained
    data = tmp_path / "other.jsonl"
    data.write_text('{"text": "hi", "labels": ["joy", "surprise"]}\n')
    assert main(["evaluate", str(model), str(data)]) == 2
    assert "line 1: label(s) ['surprise']" in capsys.readouterr().err


def test_a_config_with_an_unknown_setting_is_refused(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('preset = "stacked"\nepochs = 3\n')
    assert main(["train", "sample", "--config", str(config), "-o", "m.skstack"]) == 2
    assert "unknown setting(s) ['epochs']" in capsys.readouterr().err


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as exc:
        main(["train"])
    assert exc.value.code == 2


def test_a_setting_the_preset_does_not_take_is_refused(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('preset = "stacked"\nmodel = "x"\n[encoders]\na = "x"\n')
    assert main(["train", "sample", "--config", str(config), "-o", "m.skstack"]) == 2
    assert "the 'stacked' preset does not take ['model']" in capsys.readouterr().err


def test_long_stages_print_progress_lines_unless_quiet(trained, tmp_path, capsys):
    folder, data, _ = trained
    argv = ["train", str(data), "--config", str(folder / "pipe.toml"), "-o",
            str(tmp_path / "m.skstack")]
    assert main(argv) == 0  # stderr is no terminal here: the lines show all the same
    err = capsys.readouterr().err
    for line in ("skstack: stacking: the meta-learner on", "skstack: decision rule: 3 fit(s)",
                 "skstack: Bi-LSTM head: epoch 1/2, train loss", "skstack: decision rule: "
                 "thresholds tuned on 60 rows", f"skstack: saved {tmp_path / 'm.skstack'}"):
        assert line in err
    assert main(["--quiet", *argv]) == 0
    assert "skstack:" not in capsys.readouterr().err.replace("skstack train:", "")


def test_finetune_flag_fine_tunes_every_encoder_and_the_card_says_what_auto_chose(
        trained, tmp_path, capsys, monkeypatch):
    import skstack._finetune

    folder, data, _ = trained
    monkeypatch.setattr(skstack._finetune, "AUTO_MIN_TEXTS", 1)  # the 60 rows are enough
    model = tmp_path / "m.skstack"
    assert main(["train", str(data), "--config", str(folder / "pipe.toml"), "--finetune",
                 "auto", "-o", str(model)]) == 0
    assert "budget 600 s: fine-tuning" in capsys.readouterr().err
    bert = dict(load(model).named_steps["embed"].members_)["bert"]
    assert bert.finetune_epochs == "auto" and len(bert.finetune_loss_) == 2
    card = (tmp_path / "m.card.md").read_text()
    # which layers trained, said where fine-tuning was asked for (the pipelines' top third)
    assert f"finetune_epochs='auto', finetune_layers={1 / 3!r})" in card
    assert "fine-tuned 2 epochs)" in card and "finetune_head" not in card  # at its default
    with pytest.raises(SystemExit) as exc:
        main(["train", str(data), "--finetune", "sometimes", "-o", str(model)])
    assert exc.value.code == 2
    assert "--finetune: expected a number of epochs or 'auto', got sometimes" in \
        capsys.readouterr().err


@pytest.mark.parametrize("data, language, encoder", [
    ("2018-E-c-Es-train.txt", None, "Es texts; encoders: e5 (e5-folder)"),  # by its name
    ("folder", "Spanish", "Es texts; encoders: e5 (e5-folder)"),
    ("folder", None, "En texts; encoders: minilm ("),
    ("table.tsv", "ja", "ja texts; encoders: e5 (e5-folder)"),
])
def test_training_reads_the_texts_language_with_an_encoder_for_it(tmp_path, capsys, monkeypatch,
                                                                  data, language, encoder):
    from test_datasets import write_semeval

    monkeypatch.setattr("skstack.pipelines.default_multilingual", lambda: "e5-folder")
    for code in ("Es", "En"):
        write_semeval(tmp_path / f"2018-E-c-{code}-train.txt", [])  # no rows: stops at reading
    (tmp_path / "table.tsv").write_text("text\tlabels\n")
    path = tmp_path / data if data != "folder" else tmp_path
    flags = [] if language is None else ["--language", language]
    assert main(["train", str(path), *flags, "-o", str(tmp_path / "m.skstack")]) == 2
    err = capsys.readouterr().err
    assert f"skstack: {encoder}" in err
    assert "error: " in err and not (tmp_path / "m.skstack").exists()


def test_an_unknown_language_is_refused_naming_the_flag(tmp_path, capsys):
    (tmp_path / "table.tsv").write_text("text\tlabels\nhi\tjoy\n")
    assert main(["--quiet", "train", str(tmp_path / "table.tsv"), "--language", "Klingonese",
                 "-o", str(tmp_path / "m.skstack")]) == 2
    assert "--language: language='Klingonese' is neither a two-letter ISO 639-1 code" in \
        capsys.readouterr().err

