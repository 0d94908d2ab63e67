"""Pictures: `python -m minift report` writes one self-contained HTML page with every
section for pretraining and fine-tuned runs, with and without matplotlib (and, where a
headless browser is installed, that browser renders it); the Trainer records update
ratios; attention maps are the model's own; `show graph` draws minift's own nodes."""
import re
import shutil
import subprocess

import numpy as np
import pytest

import minift
from minift import no_grad
from minift.adapt import FinetuneConfig, classification_metrics, finetune, load_finetuned
from minift.cli import main
from minift.model import GPT, GPTConfig
from minift.ops import split
from minift.pretrain import PretrainConfig, pretrain
from minift.trainer import update_ratios
from minift.viz import attention_maps, graph_svg, graph_text, nodes_of, recording, write_report
from minift.viz.plots import matplotlib_available

from quiet import Silent, quiet

SECTIONS = ("overview", "curves", "results", "updates", "attention")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """(a pretraining run, a fine-tuned run) of the tiny preset, trained for a few steps."""
    root = tmp_path_factory.mktemp("runs")
    pretrain(root / "pre", PretrainConfig(preset="tiny", steps=8, batch_size=4, eval_every=4, vocab_size=300,
                                          corpus_bytes=120_000), log=quiet, progress=Silent(every=4))
    finetune(root / "pre", root / "ft", FinetuneConfig(strategy="full", epochs=1, batch_size=48), log=quiet,
             progress=Silent())
    return root / "pre", root / "ft"


def assert_self_contained(page):
    """No address to fetch: no http(s) or protocol-relative src/href, no script, no link."""
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.I), "the page fetches something"
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</html>")


@pytest.mark.parametrize("use_matplotlib", [False, True], ids=["svg", "matplotlib"])
def test_the_report_of_a_finetuned_run_has_every_section(runs, tmp_path, use_matplotlib):
    if use_matplotlib and not matplotlib_available():
        pytest.skip("matplotlib is not installed (pip install -e '.[viz]')")
    out = write_report(runs[1], out=tmp_path / "ft.html", text="The strap is stellar.", use_matplotlib=use_matplotlib)
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    for anchor in SECTIONS:
        assert f'<section id="{anchor}">' in page
    assert "test_a" in page and "test_b" in page and "true \\ predicted" in page          # confusion matrices
    assert "Accuracy" in page and "Loss" in page
    assert "␣" in page and "&lt;|endoftext|&gt;" in page            # the text's tokens label the attention maps
    assert page.count("<h3>block ") == 2                            # the tiny preset's two blocks
    assert ("data:image/png;base64," in page) == use_matplotlib
    assert ("<svg" in page) != use_matplotlib


def test_the_report_shows_the_prediction_above_the_attention_maps(runs, tmp_path):
    text = "The strap is stellar."
    page = write_report(runs[1], out=tmp_path / "ft.html", text=text, use_matplotlib=False).read_text(encoding="utf-8")
    probabilities = load_finetuned(runs[1]).classify([text])[0][0]
    labels = ["negative", "neutral", "positive"]
    shown = re.search(r"Prediction for <code>The strap is stellar.</code>: <b>(\w+)</b>", page)
    assert shown and shown.group(1) == labels[probabilities.argmax()]
    for label, p in zip(labels, probabilities):
        assert f"<td>{label}</td><td>{p:.3f}</td>" in page
    assert page.index("Prediction for") > page.index('<section id="attention">')
    assert page.index("Prediction for") < page.index("<h3>block 0")
    pretrained = write_report(runs[0], out=tmp_path / "pre.html", text=text, use_matplotlib=False)
    assert "Prediction" not in pretrained.read_text(encoding="utf-8")          # a language model predicts tokens


def test_the_report_warns_of_a_run_at_chance(runs, tmp_path):
    """The finished run with planted validation results (one class for everything, a loss of ln 3,
    a healthy run) beside a healthy test set."""
    run = tmp_path / "run"
    shutil.copytree(runs[1], run)
    metrics = minift.files.read_json(run / "metrics.json")
    y = np.array([0] * 6 + [1] * 2 + [2] * 2)
    planted = {"one class": (np.zeros(10, dtype=np.int64), 0.9), "uniform": (y, 1.0986), "healthy": (y, 0.3)}
    metrics["test"] = {"test_a": {**classification_metrics(y, y, metrics["labels"]), "loss": 0.3}}
    for case, (predicted, loss) in planted.items():
        metrics["validation"] = {**classification_metrics(y, predicted, metrics["labels"]), "loss": loss}
        minift.files.write_json(run / "metrics.json", metrics)
        page = write_report(run, out=tmp_path / "r.html", use_matplotlib=False).read_text(encoding="utf-8")
        results = page[page.index('<section id="results">'):page.index('<section id="updates">')]
        warned = re.findall(r'<p class="warning">warning: (.*?)</p>', results)
        if case == "healthy":
            assert not warned and "<td>0.3000</td>" in results
        else:
            assert len(warned) == 1 and "at chance" in warned[0]
            assert ("100% of the validation predictions" in warned[0]) == (case == "one class")
            assert ("ln 3 = 1.099" in warned[0]) == (case == "uniform")


def test_the_report_of_a_pretraining_run_says_what_it_cannot_show(runs, tmp_path):
    out = write_report(runs[0], out=tmp_path / "pre.html", use_matplotlib=False)
    page = out.read_text(encoding="utf-8")
    assert_self_contained(page)
    assert all(f'<section id="{anchor}">' in page for anchor in SECTIONS)
    assert "No accuracy recorded" in page and "No test results" in page
    assert "validation loss" in page and "h.1" in page                # the curves and the update ratios
    assert page.count("<h3>block ") == 2


def test_a_headless_browser_renders_the_report(runs, tmp_path):
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)),
                   None)
    if browser is None:
        pytest.skip("no headless browser installed (Debian: apt-get install chromium)")
    page = write_report(runs[1], out=tmp_path / "ft.html", text="The strap is stellar.")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([browser, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    assert dom.returncode == 0, dom.stderr[-2000:]
    for heading in ("Training curves", "Test results and confusion matrices", "Update-to-weight ratio per layer",
                    "Attention maps"):
        assert heading in dom.stdout
    shot = tmp_path / "report.png"
    done = subprocess.run([browser, *flags, "--window-size=1200,2000", f"--screenshot={shot}", page.as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and shot.stat().st_size > 10_000, done.stderr[-2000:]


def test_the_trainer_records_update_ratios_at_its_log_steps(runs):
    history = minift.files.read_json(runs[0] / "metrics.json")
    recorded = [r["step"] for r in history["train"] if "update_ratio" in r]
    assert recorded == [1, 4, 8]                                      # the first step, every evaluation, the last
    ratios = history["train"][0]["update_ratio"]
    assert set(ratios) == {"wte", "wpe", "h.0", "h.1", "ln_f"}
    assert all(0 < r < 1 for r in ratios.values())


def test_update_ratios_measure_each_layers_change():
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=2, n_head=2, n_embd=8), dtype=np.float64)
    before = {id(p): p.data.copy() for p in model.parameters()}
    weight = model.transformer.h[1].mlp.c_fc.weight
    weight.data = weight.data + 0.5
    others = [p for n, p in model.named_parameters() if n.startswith("transformer.h.1.")]
    expected = 0.5 * np.sqrt(weight.size) / np.sqrt(sum((before[id(p)] ** 2).sum() for p in others))
    ratios = update_ratios(model, before)
    assert ratios["h.1"] == pytest.approx(expected, rel=1e-3)         # stored to 4 significant digits
    assert ratios["h.0"] == ratios["wte"] == 0.0


def test_attention_maps_reproduce_the_models_own_attention():
    config = GPTConfig(vocab_size=30, block_size=8, n_layer=2, n_head=2, n_embd=8)
    gpt = GPT(config, seed=3).eval()
    ids = np.array([4, 9, 1, 22, 7, 3])
    maps = attention_maps(gpt.transformer, ids)
    assert len(maps) == 2 and maps[0].shape == (2, 6, 6)
    for p in maps:
        assert np.allclose(p.sum(axis=-1), 1.0) and np.all(np.triu(p, k=1) == 0)
    with no_grad():                  # block 0's attention output, from the maps and from the model itself
        block = gpt.transformer.h[0]
        h = block.ln_1(gpt.transformer.wte(ids[None]) + gpt.transformer.wpe(np.arange(6)))
        v = split(block.attn.c_attn(h), 3, axis=-1)[2].data[0].reshape(6, 2, 4).transpose(1, 0, 2)   # (H, T, D)
        mixed = (maps[0] @ v).transpose(1, 0, 2).reshape(1, 6, 8)
        assert np.allclose(block.attn.c_proj(minift.tensor(mixed)).data, block.attn(h).data, atol=1e-6)


def test_the_autograd_graph_is_minifts_own_nodes(tmp_path, capsys):
    x = minift.tensor(np.array([1.0, 2.0]), requires_grad=True)
    x.name = "x"
    y = x * x
    z = (y + y.tanh()).sum()                                           # a diamond: y feeds two ops
    nodes = nodes_of(z)
    assert nodes[0] is x and nodes[-1] is z._ctx and len(nodes) == 5
    assert [type(n).__name__ for n in nodes[1:]] == ["Mul", "Tanh", "Add", "Sum"]
    text = graph_text(z)
    assert "#2   Mul" in text and "<- #1, #1" in text and "<- #2, #3" in text
    assert graph_svg(z).count("<rect") == 5
    z.backward(keep_graph=False)
    with pytest.raises(ValueError, match="freed"):
        graph_text(z)
    assert main(["show", "graph", "--out", str(tmp_path / "g.svg")]) == 0
    shown = capsys.readouterr().out
    assert "grad -1.5" in shown                                        # micrograd's dL/dx1
    assert re.search(r"Add +data 0.8814  grad 0.5  <- #7, #8", shown)  # n = x1 w1 + x2 w2 + b: do/dn = 1 - o^2
    assert (tmp_path / "g.svg").read_text(encoding="utf-8").startswith('<svg xmlns="http://www.w3.org/2000/svg"')


def test_the_graph_shows_data_and_grad_on_every_node():
    """L = (a b + c)^2 at a = 2, b = -3, c = 10, by hand: e = a b = -6, d = e + c = 4, L = d d = 16;
    dL/dd = 2 d = 8 (d is read twice), dL/de = dL/dd = 8 (an Add passes it on), dL/da = 8 b, dL/db = 8 a."""
    a, b, c = (minift.tensor(np.float64(v), requires_grad=True) for v in (2.0, -3.0, 10.0))
    a.name, b.name, c.name = "a", "b", "c"
    with recording() as seen:
        d = a * b + c
        loss = d * d
        loss.backward()
    text = graph_text(loss, seen)
    shown = [tuple(map(float, found)) for found in re.findall(r"data (\S+)  grad (\S+)", text)]
    by_hand = [(2, -24), (-3, 16), (-6, 8), (10, 8), (4, 8), (16, 1)]     # a, b, e = a b, c, d = e + c, L = d d
    assert [title for title in re.findall(r"^#\d+ +(\w+)", text, re.M)] == ["a", "b", "Mul", "c", "Add", "Mul"]
    assert shown == by_hand
    picture = graph_svg(loss, seen=seen)
    assert [tuple(map(float, found)) for found in re.findall(r"data (\S+)  grad (\S+)<", picture)] == by_hand
    assert "Add            shape ()  <- #3, #4" in graph_text(loss)            # not recorded: a node's shape only


def test_report_from_the_command_line(runs, tmp_path, capsys):
    assert main(["report", str(runs[1]), "--text", "Frankly abysmal.", "--out", str(tmp_path / "r.html")]) == 0
    assert "wrote" in capsys.readouterr().out and "abysmal" in (tmp_path / "r.html").read_text(encoding="utf-8")
    assert main(["report", str(tmp_path / "no-run")]) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert main(["report", str(runs[1]), "--text", " "]) == 2
    assert "--text is empty" in capsys.readouterr().err
