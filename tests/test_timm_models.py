"""timm.create_model("dnas_<name>") builds the network dnas builds: published genotypes, files and export folders."""

import json

import pytest
import timm
import torch

import dnas.timm_models
from dnas.cli import main
from dnas.errors import ConfigError
from dnas.export import build_model
from dnas.genotypes import load, published


def test_every_published_genotype_is_a_timm_model():
    assert set(timm.list_models("dnas_*")) >= {"dnas_" + n.lower() for n in published()}


@pytest.mark.parametrize(("name", "genotype", "options"), [
    ("dnas_darts_v2", "DARTS_V2", {"init_channels": 4, "layers": 3}),
    ("dnas_fbnet_a", "FBNET_A", {"width_mult": 0.25}),
])  # fmt: skip
def test_create_model_takes_timms_num_classes_and_in_chans(name, genotype, options):
    torch.manual_seed(0)
    model = timm.create_model(name, num_classes=7, in_chans=2, **options).eval()
    torch.manual_seed(0)
    same = build_model(load(genotype), num_classes=7, in_channels=2, **options).eval()
    x = torch.randn(2, 2, 32, 32)
    with torch.no_grad():
        assert model(x).shape == (2, 7)
        torch.testing.assert_close(model(x), same(x), rtol=0, atol=0)


def test_a_genotype_file_and_an_export_folder_register_by_path(tmp_path):
    genotype = load("PC_DARTS")
    path = tmp_path / "found.json"
    path.write_text(genotype.to_json())
    name = dnas.timm_models.register(path, init_channels=4, layers=3, in_channels=1)
    assert name == "dnas_found" and timm.create_model(name, num_classes=3)(torch.randn(1, 1, 8, 8)).shape == (1, 3)
    with pytest.raises(ConfigError, match="already has a model named 'dnas_found'"):
        dnas.timm_models.register(path)

    out = tmp_path / "exp"
    args = ["export", "--genotype", "DARTS_V2", "--out", str(out), "--init-channels", "4", "--layers", "3"]
    main([*args, "--num-classes", "5", "--in-channels", "1", "--input-size", "8", "8", "--no-flops"])
    assert json.loads((out / "summary.json").read_text())["options"]["num_classes"] == 5
    name = dnas.timm_models.register(out, name="exported_digits")
    model = timm.create_model(name, pretrained=True).eval()
    weights = torch.load(out / "weights.pt", weights_only=True)
    assert all(torch.equal(model.state_dict()[k], v) for k, v in weights.items())
    with pytest.raises(ConfigError, match="no trained weights"):
        timm.create_model("dnas_darts_v2", pretrained=True)
