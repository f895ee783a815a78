import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest
import pytorch_lightning as pl
import torch
from PIL import Image
from pytorch_lightning.loggers import CSVLogger, TensorBoardLogger

import dnas
from dnas.callbacks import AlphaPlots
from dnas.cells.darts import DartsSupernet
from dnas.data import DigitsDataModule


def tiny_search(tmp_path, callback, epochs=2, loggers=None):
    pl.seed_everything(0)
    net = DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1)
    skip = net.candidate_names.index("skip_connect")
    with torch.no_grad():  # a collapsed normal cell: skip wins every edge by far
        net.alpha("normal")[:, skip] = 6.0
    model = dnas.DARTS(net)
    trainer = pl.Trainer(
        max_epochs=epochs, limit_train_batches=1, limit_val_batches=1, logger=loggers or CSVLogger(tmp_path),
        callbacks=[callback], enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(model, DigitsDataModule(batch_size=16))
    return trainer, model


def test_fit_writes_plots_report_scalars_and_warns(tmp_path):
    cb = AlphaPlots(dpi=40, collapse_threshold=4, every_n_epochs=2)  # draws once, at the last epoch
    tb = TensorBoardLogger(tmp_path, name="tb")
    with pytest.warns(UserWarning, match=r"cell 'normal' .* 8 parameter-free ops .*collapsing"):
        trainer, model = tiny_search(tmp_path, cb, loggers=[CSVLogger(tmp_path), tb])
    out = trainer.log_dir and __import__("pathlib").Path(trainer.log_dir)
    plots = out / "plots"
    for name in ("alpha_heatmap", "alpha_evolution_normal", "alpha_evolution_reduce", "genotype", "curves"):
        img = np.asarray(Image.open(plots / f"{name}.png").convert("L"), dtype=float)
        assert img.shape[0] > 100 and img.shape[1] > 100 and img.var() > 50, name
    assert (
        (plots / "alpha_heatmap_epoch001.png").is_file()  # epochs are Lightning's, 0-based: 0 and 1 ran
        and not (plots / "alpha_heatmap_epoch000.png").exists()
        and not (plots / "alpha_heatmap_epoch002.png").exists()
        and (plots / "genotype.svg").is_file()
    )
    # scalars: the count is the genotype's, the entropy the mean over edges of the normalised weights
    m = trainer.callback_metrics
    assert float(m["alpha/param_free_normal"]) == 8.0
    w = model.supernet.selection_weights()["normal"].numpy()
    p = w / w.sum(-1, keepdims=True)
    assert float(m["alpha/weight_entropy_normal"]) == pytest.approx(float((-(p * np.log(p)).sum(-1)).mean()), rel=1e-5)
    # history: before training (-1) + epochs 0 and 1, and the metrics of both epochs
    assert cb.epochs == [-1, 0, 1] and len(cb.weights["normal"]) == 3
    assert [row["epoch"] for row in cb.metrics] == [0, 1] and "train/loss_epoch" in cb.metrics[-1]
    # each epoch's values are that epoch's (as the CSV logger wrote them), not the previous epoch's
    import csv

    rows = list(csv.DictReader(open(trainer.loggers[0].log_dir + "/metrics.csv")))
    csv_loss = {int(r["epoch"]): float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")}
    csv_val = {int(r["epoch"]): float(r["val/acc"]) for r in rows if r.get("val/acc")}
    for row in cb.metrics:
        assert row["train/loss_epoch"] == pytest.approx(csv_loss[row["epoch"]], rel=1e-6)
        assert row["val/acc"] == pytest.approx(csv_val[row["epoch"]], rel=1e-6)
    # report: both files, every referenced image exists, HTML self-contained
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    refs = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert {"plots/genotype.png", "plots/alpha_heatmap.png", "plots/curves.png", "plots/alpha_noise.png"} <= set(refs)
    noise = np.asarray(Image.open(plots / "alpha_noise.png").convert("L"), dtype=float)  # one panel per cell
    assert noise.shape[1] > 1.5 * noise.shape[0] and noise.var() > 50
    assert re.search(r"random walk of the same 2 α steps", md)
    assert all((out / r).is_file() for r in refs)
    assert html.count('src="data:image/png;base64,') == len(refs) and "plots/" not in html.split("<pre>")[0].split(
        "<body>"
    )[1].replace("plots/genotype.svg", "")
    assert "parameter-free ops" in md and "collapsing" in md and "Exported model" in md
    assert re.search(r"\| parameters \| [\d,]+ \|", md) and "MACs" in md  # DARTS builder: params and FLOPs
    block = md.split("```json\n")[1].split("```")[0]
    assert json.loads(block)["cells"]["normal"]["edges"][0][0] == "skip_connect"
    check_report_html(html, plots)
    # TensorBoard got the pictures
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(tb.log_dir)
    acc.Reload()
    assert {"alpha/alpha_heatmap", "alpha/alpha_evolution_normal"} <= set(acc.Tags()["images"])


def test_state_dict_round_trip_and_no_warning_when_uniform(tmp_path, recwarn):
    cb = AlphaPlots(dpi=40, every_n_epochs=5, report=False)
    net = DartsSupernet(init_channels=4, num_classes=10, layers=3, in_channels=1)
    cb._record(net, 0)
    cb.metrics.append({"epoch": 1, "val/acc": 0.5})
    state = cb.state_dict()
    json.dumps(state)  # plain data, safe in a checkpoint
    other = AlphaPlots()
    other.load_state_dict(state)
    assert other.epochs == [0] and other.groups == cb.groups and other.metrics == cb.metrics
    # a state saved before epochs were 0-based (no "epoch_base"; 0 = before training) is shifted to the new numbers
    old = AlphaPlots()
    old.load_state_dict({**{k: v for k, v in state.items() if k != "epoch_base"}, "epochs": [0, 1]})
    assert old.epochs == [-1, 0] and old.metrics == [{"epoch": 0, "val/acc": 0.5}]
    assert AlphaPlots.near_uniform(net.selection_weights()["normal"].numpy())
    with pytest.raises(ValueError, match="every_n_epochs"):
        AlphaPlots(every_n_epochs=0)


class _Page(HTMLParser):
    """The parts of report.html a reader sees: title, table rows (header and data cells), <pre> blocks, images."""

    def __init__(self):
        super().__init__()
        self.title, self.rows, self.pre, self.images, self.style = "", [], [], [], ""
        self._in = None

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append([])
        elif tag in ("th", "td") and self.rows:
            self.rows[-1].append((tag, ""))
        elif tag == "img":
            self.images.append(dict(attrs)["src"])
        self._in = tag if tag in ("title", "th", "td", "pre", "style") else self._in

    def handle_endtag(self, tag):
        if tag == self._in:
            self._in = None

    def handle_data(self, data):
        if self._in == "title":
            self.title += data
        elif self._in in ("th", "td") and self.rows and self.rows[-1]:
            kind, text = self.rows[-1][-1]
            self.rows[-1][-1] = (kind, text + data)
        elif self._in == "pre":
            self.pre.append(data)
        elif self._in == "style":
            self.style += data


def check_report_html(html, plots):
    """report.html parses, and a reader sees: a real title, no empty header row, each metric once, the genotype JSON
    wrapped rather than cut off in a scroll box, and the heatmap at its natural size (numbers >= 8 pt)."""
    page = _Page()
    page.feed(html)
    page.close()
    assert page.title.startswith("Search report: DARTS on DartsSupernet (") and "on darts" not in page.title
    for row in page.rows:  # no header row whose cells are all empty
        assert not (row and all(kind == "th" for kind, _ in row) and all(not t.strip() for _, t in row)), row
    run = [[t for _, t in row] for row in page.rows if len(row) == 2]
    names = [r[0] for r in run]
    assert "arch/loss" in names and "train/loss" in names and "epochs trained" in names
    assert dict(run)["epochs trained"] == "2 (epochs 0–1)"
    assert not [n for n in names if n.endswith(("_epoch", "_step"))]  # arch/loss once, not also arch/loss_epoch
    assert "alpha/weight_entropy_normal" in names and "alpha/entropy_normal" not in names
    assert len(names) == len(set(names))
    assert "white-space:pre-wrap" in page.style.replace(" ", "")  # long JSON lines wrap inside the page
    assert any('"cells"' in block and "skip_connect" in block for block in page.pre)
    heatmap = Image.open(plots / "alpha_heatmap.png")
    assert heatmap.width <= 1100  # the page's max-width: shown at natural size, not shrunk
    assert heatmap.height > heatmap.width * 0.5  # the two groups stacked, not side by side
    assert "val/* is the supernet on the architecture half in eval mode" in html
