import io

import numpy as np
import pytest
from PIL import Image

from dnas.viz.alpha import GroupInfo, edge_entropy, normalised, plot_alpha_evolution, plot_alpha_heatmaps
from dnas.viz.curves import curve_keys, plot_curves
from dnas.viz.style import figure_bytes

GROUP = GroupInfo("normal", ((0, 2), (1, 2), (0, 3), (1, 3), (2, 3)), ("none", "skip_connect", "sep_conv_3x3"))


def pixels(fig, dpi=40):
    return np.asarray(Image.open(io.BytesIO(figure_bytes(fig, "png", dpi, tight=False))).convert("RGB"), dtype=float)


def test_entropy_matches_math():
    w = np.array([[1 / 3] * 3, [1.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    np.testing.assert_allclose(edge_entropy(w), [np.log(3), 0.0, 0.0])
    np.testing.assert_allclose(normalised(np.array([[2.0, 2.0]])), [[0.5, 0.5]])


def test_heatmap_size_and_content():
    rng = np.random.default_rng(0)
    w = {"normal": rng.dirichlet(np.ones(3), size=5)}
    fig = plot_alpha_heatmaps(w, {"normal": GROUP}, title="epoch 1")
    img = pixels(fig)
    w_in, h_in = fig.get_size_inches()
    assert img.shape[:2] == (int(h_in * 40), int(w_in * 40))
    assert img.var() > 100
    with pytest.raises(ValueError, match="expected"):
        plot_alpha_heatmaps({"normal": np.ones((4, 3))}, {"normal": GROUP})


def test_evolution_one_panel_per_edge():
    hist = np.random.default_rng(1).dirichlet(np.ones(3), size=(4, 5))
    fig = plot_alpha_evolution([0, 1, 2, 3], hist, GROUP, max_cols=3)
    visible = [ax for ax in fig.axes if ax.axison]
    assert len(visible) == 5 and all(len(ax.lines) == 3 for ax in visible)
    np.testing.assert_allclose(visible[4].lines[1].get_ydata(), hist[:, 4, 1])  # edge 2->3, skip_connect
    assert pixels(fig).var() > 100


def test_curves_drop_step_duplicates():
    hist = [
        {"epoch": 1, "train/loss": 2.0, "train/loss_epoch": 2.0, "train/loss_step": 1.9, "val/acc": 0.3},
        {"epoch": 2, "train/loss": 1.5, "train/loss_epoch": 1.5, "train/loss_step": 1.4, "val/acc": 0.5},
    ]
    assert curve_keys(hist, "loss") == ["train/loss_epoch"]
    assert curve_keys(hist, "acc") == ["val/acc"]
    assert pixels(plot_curves(hist)).var() > 100
