import io

import numpy as np
import pytest
from PIL import Image

from dnas import Genotype
from dnas.genotypes import CellGenotype, CellSpec, Edge, GenotypeError, SpaceSpec, register_space
from dnas.viz.cells import draw_genotype, is_chain, render_genotype, to_dot
from dnas.viz.cli import main as plot_main
from dnas.viz.style import figure_bytes

DARTS_V2 = Genotype.darts(
    normal=[("sep_conv_3x3", 0), ("sep_conv_3x3", 1), ("sep_conv_3x3", 0), ("sep_conv_3x3", 1),
            ("sep_conv_3x3", 1), ("skip_connect", 0), ("skip_connect", 0), ("dil_conv_3x3", 2)],
    reduce=[("max_pool_3x3", 0), ("max_pool_3x3", 1), ("skip_connect", 2), ("max_pool_3x3", 1),
            ("max_pool_3x3", 0), ("skip_connect", 2), ("skip_connect", 2), ("max_pool_3x3", 1)],
)  # fmt: skip
NB201 = Genotype(
    "nb201_test",
    {"cell": CellGenotype(tuple(Edge(op, s, d) for op, s, d in [
        ("nor_conv_3x3", 0, 1), ("skip_connect", 0, 2), ("nor_conv_1x1", 1, 2),
        ("none", 0, 3), ("avg_pool_3x3", 1, 3), ("nor_conv_3x3", 2, 3)]), (3,))},
)  # fmt: skip


def read_png(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.float64)


def test_darts_cell_drawing_is_a_real_picture_of_expected_size():
    fig = draw_genotype(DARTS_V2, dpi=50)
    w_in, h_in = fig.get_size_inches()
    img = read_png(figure_bytes(fig, "png", dpi=50, tight=False))
    assert img.shape[:2] == (int(h_in * 50), int(w_in * 50))
    assert img.var() > 100  # not blank
    # two stacked cells (normal above reduce), 7 nodes each on a line: wider than tall per cell
    assert w_in > 8 and h_in > 3


def test_render_writes_png_and_svg(tmp_path):
    files = render_genotype(DARTS_V2, tmp_path / "v2", ("png", "svg"), dpi=40)
    assert [f.suffix for f in files] == [".png", ".svg"]
    img = np.asarray(Image.open(files[0]).convert("L"), dtype=np.float64)
    assert img.var() > 100
    svg = files[1].read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    # a different genotype gives a different picture
    other = render_genotype(NB201, tmp_path / "nb", ("png",), dpi=40)[0]
    assert Image.open(other).size != Image.open(files[0]).size


def test_chain_is_drawn_as_a_wrapped_strip(tmp_path):
    ops = ["ir_k3_e1", "ir_k5_e6", "skip"] * 6  # 18 layers
    g = Genotype.chain(ops, "chain_test")
    assert is_chain(g.cells["layers"]) and not is_chain(DARTS_V2.cells["normal"])
    one_row = draw_genotype(Genotype.chain(ops[:6], "chain_test"), per_row=11)
    two_rows = draw_genotype(g, per_row=11)
    assert two_rows.get_size_inches()[1] > one_row.get_size_inches()[1]  # wrapped onto a second row
    img = read_png(figure_bytes(two_rows, "png", dpi=40))
    assert img.var() > 100


def test_nb201_single_output_node():
    fig = draw_genotype(NB201, dpi=40)
    assert read_png(figure_bytes(fig, "png", dpi=40)).var() > 100


def test_dot_source_lists_every_edge():
    dot = to_dot(DARTS_V2)
    assert dot.startswith("digraph")
    for name, cell in DARTS_V2.cells.items():
        for e in cell.edges:
            assert f'-> c{list(DARTS_V2.cells).index(name)}_{e.dst} [label="{e.op}"' in dot


def test_unknown_cell_and_engine_errors():
    with pytest.raises(ValueError, match="cannot draw"):
        draw_genotype(DARTS_V2, ["nope"])
    with pytest.raises(ValueError, match="unknown engine"):
        render_genotype(DARTS_V2, "x", engine="tikz")


def test_dnas_plot_published_and_json(tmp_path, capsys):
    from dnas.cli import main

    out = tmp_path / "darts_v2"
    main(["plot", "DARTS_V2", "--out", str(out), "--dpi", "40"])
    assert (tmp_path / "darts_v2.png").stat().st_size > 1000 and (tmp_path / "darts_v2.svg").is_file()
    assert "darts_v2.png" in capsys.readouterr().out
    path = tmp_path / "g.json"
    path.write_text(Genotype.chain(["k3_e1", "skip"], "chain_test").to_json())
    with pytest.raises(SystemExit, match="unknown space 'chain_test'.*import the module that defines it"):
        plot_main([str(path), "--out", str(tmp_path / "chain"), "--formats", "png"])
    # a user's space is known once its module registered it (here: registered by hand)
    register_space(SpaceSpec("chain_test", {"layers": CellSpec(("k3_e1", "skip"), 1, 2, all_edges=True, chain=True)}))
    files = plot_main([str(path), "--out", str(tmp_path / "chain"), "--formats", "png"])
    assert np.asarray(Image.open(files[0]).convert("L"), dtype=float).var() > 100
    with pytest.raises(SystemExit, match="no published genotype"):
        plot_main(["NOT_A_GENOTYPE"])
    with pytest.raises(SystemExit, match="unknown"):
        plot_main(["DARTS_V2", "--cells", "middle", "--out", str(out)])
    assert GenotypeError  # the loader's error type is what the CLI reports


def test_graphviz_engine_needs_dot(tmp_path, monkeypatch):
    import dnas.viz.cells as cells

    monkeypatch.setattr(cells.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="'dot' binary"):
        render_genotype(DARTS_V2, tmp_path / "g", engine="graphviz")
    with pytest.raises(SystemExit, match="'dot' binary"):
        plot_main(["DARTS_V2", "--engine", "graphviz", "--out", str(tmp_path / "g")])
