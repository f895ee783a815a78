"""Train the network exported from a MNIST-1D search genotype on all 4,000 training sequences; print test accuracy.

    python benchmarks/retrain_mnist1d.py logs/quickstart_mnist1d/version_0/genotype.json [--epochs 15]

SGD 0.025 / momentum 0.9 / weight decay 3e-4, cosine over the epochs, batch 64 (DARTS' search-phase settings, not
tuned). docs/benchmarks.md records one run.
"""

import argparse
import time

import torch
import torch.nn.functional as F

import dnas
from dnas.data.mnist1d import generate_mnist1d
from dnas.export import build_model


def train_epoch(
    net: torch.nn.Module, opt: torch.optim.Optimizer, data: dict[str, torch.Tensor], batch: int = 64
) -> None:
    """One epoch of shuffled mini-batch cross-entropy training on ``data["x"], data["y"]``."""
    net.train()
    perm = torch.randperm(len(data["y"]))
    for i in range(0, len(perm), batch):
        idx = perm[i : i + batch]
        loss = F.cross_entropy(net(data["x"][idx]), data["y"][idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def eval_accuracy(net: torch.nn.Module, data: dict[str, torch.Tensor]) -> float:
    """Accuracy on ``data["x_test"], data["y_test"]`` in eval mode."""
    net.eval()
    with torch.no_grad():
        return (net(data["x_test"]).argmax(-1) == data["y_test"]).float().mean().item()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("genotype")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    torch.manual_seed(args.seed)
    genotype = dnas.genotypes.load(args.genotype)
    net = build_model(genotype)
    print(genotype, f"{sum(q.numel() for q in net.parameters()):,} parameters")
    data = generate_mnist1d()
    opt = torch.optim.SGD(net.parameters(), lr=0.025, momentum=0.9, weight_decay=3e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs)
    start = time.perf_counter()
    for epoch in range(args.epochs):
        train_epoch(net, opt, data)
        sched.step()
        acc = eval_accuracy(net, data)
        print(f"epoch {epoch}: test accuracy {acc:.4f} ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
