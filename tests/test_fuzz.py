"""Malformed genotypes and configs get our clear errors, never a traceback from deep inside."""

import json
import random
from pathlib import Path

import pytest

from dnas.genotypes import Genotype, GenotypeError, load

ROOT = Path(__file__).resolve().parents[1]
VALID = Genotype.darts(
    [("sep_conv_3x3", 0), ("sep_conv_3x3", 1)] * 4, [("max_pool_3x3", 0), ("skip_connect", 1)] * 4
).to_dict()

WEIRD_VALUES = [None, True, -1, 10**30, 1e308, -0.0, "", "x" * 10_000, [], {}, [[[[]]]], {"a": {"b": {}}}, "0", 2.5]


def _random_mutation(rng: random.Random):
    data = json.loads(json.dumps(VALID))
    paths = [
        ("space",), ("schema_version",), ("cells",), ("meta",), ("cells", "normal"), ("cells", "normal", "edges"),
        ("cells", "normal", "concat"), ("cells", "reduce", "edges", 3), ("cells", "reduce", "edges", 3, 0),
        ("cells", "reduce", "edges", 3, 1), ("cells", "reduce", "edges", 3, 2),
    ]  # fmt: skip
    path = rng.choice(paths)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = rng.choice(WEIRD_VALUES)
    return json.dumps(data)


def test_fuzzed_genotype_json_only_raises_genotype_error():
    rng = random.Random(0)
    texts = [_random_mutation(rng) for _ in range(300)]
    texts += [bytes(rng.getrandbits(8) for _ in range(rng.randint(0, 64))) for _ in range(100)]
    texts += ["[" * 5000 + "]" * 5000, '{"a":' * 3000 + "1" + "}" * 3000, "1e999999", '"' + "a" * 100 + '"', "null"]
    accepted = 0
    for text in texts:
        try:
            Genotype.from_json(text, source="fuzz.json")
            accepted += 1
        except GenotypeError as err:
            assert "fuzz.json" in str(err)
    assert accepted < len(texts) // 2  # most mutations are invalid and were caught


def test_load_rejects_unknown_names_and_directories(tmp_path):
    with pytest.raises(GenotypeError, match="no published genotype named 'NOPE'"):
        load("NOPE")
    with pytest.raises(GenotypeError, match="is a directory"):
        load(str(tmp_path) + "/")


@pytest.mark.parametrize(
    "content",
    [
        b"\x00\xff\xfe garbage \x80",
        b"model: [unclosed",
        b"model:\n  init_args:\n    unrolled: maybe\n",
        b"model:\n  init_args:\n    supernet:\n      init_args:\n        layers: 1e999\n",
        b"model:\n  init_args:\n    grad_clip: {a: {b: {c: {d: 1}}}}\n",
        b"trainer:\n  max_epochs: -" + b"9" * 400 + b"\n",
        b"data: " + b"[" * 200 + b"]" * 200 + b"\n",
        b"!!python/object/apply:os.system ['echo pwned']\n",
    ],
)
def test_malformed_configs_give_parser_errors_not_tracebacks(tmp_path, content, run_cli):
    bad = tmp_path / "bad.yaml"
    bad.write_bytes(content)
    tiny = ["--model.init_args.supernet.init_args.init_channels", "2", "--trainer.fast_dev_run", "1"]
    code, _, err = run_cli(["fit", "--config", str(ROOT / "configs" / "quickstart.yaml"), *tiny, "--config", str(bad)])
    assert code not in (0, None)
    assert "error" in err.lower()
    assert "Traceback" not in err
    assert not (tmp_path / "pwned").exists()
