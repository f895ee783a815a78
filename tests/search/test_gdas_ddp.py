"""GDAS and ProxylessNAS under DDP on 2 CPU processes (gloo): ranks run different sampled ops (unused parameters differ
per rank, which the module's own ``find_unused_parameters`` handles), yet α stays bitwise equal on both ranks (for
ProxylessNAS: the rescaling runs over the union of the ranks' sampled paths)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow  # a 2-process CLI fit
@pytest.mark.parametrize("config", ["quickstart_gdas", "quickstart_proxyless"])
def test_single_path_searches_run_under_plain_ddp_and_ranks_agree(tmp_path, config):
    args = [
        sys.executable, "-m", "dnas", "fit", "--config", str(ROOT / "configs" / f"{config}.yaml"),
        "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
        "--trainer.max_epochs", "2", "--trainer.limit_train_batches", "3", "--trainer.limit_val_batches", "1",
        "--trainer.enable_progress_bar", "false", "--trainer.logger.init_args.save_dir", str(tmp_path),
        "--trainer.default_root_dir", str(tmp_path),
        "--trainer.callbacks+=dnas.callbacks.ArchSyncCheck", "--trainer.callbacks.every_n_batches", "1",
        "--trainer.callbacks.dump_dir", str(tmp_path / "ranks"),
        "--model.init_args.a_optimizer", "torch.optim.Adam", "--model.init_args.a_optimizer.lr", "0.05",
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONWARNINGS="ignore")
    result = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    ranks = [json.loads((tmp_path / "ranks" / f"arch_rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["alphas"] == ranks[1]["alphas"]
    assert ranks[0]["genotype"] == ranks[1]["genotype"]
    flat = [v for row in ranks[0]["alphas"]["arch.cell.alpha"] for v in row]
    assert max(abs(v) for v in flat) > 1e-2  # α moved
