"""RandAugment (Cubuk et al., NeurIPS 2020) for the image datamodules, through timm's implementation.

timm's ``rand_augment_transform`` works on PIL images, so it applies where the data are pictures (CIFAR-10, image
folders), before ``ToTensor``; it is an opt-in training augmentation (the DARTS recipe has none). The sample-level
operations draw from Python's and NumPy's random generators, which ``seed_everything`` seeds (and Lightning's
``worker_init_fn`` per DataLoader worker) and dnas' checkpoints carry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from dnas.errors import ConfigError

RAND_AUGMENT_HELP = (
    "timm's RandAugment string: 'rand' then dash-separated sections m<magnitude>, n<ops per image>, "
    "mstd<magnitude std>, mmax<max magnitude>, p<op probability>, inc<0|1>, t<op set>, e.g. 'rand-m9-mstd0.5'"
)


def rand_augment(config: str, image_size: int, mean: Sequence[float]) -> Callable:
    """RandAugment of timm (PIL image -> PIL image) for ``config`` such as ``"rand-m9-mstd0.5"``.

    The geometric ops translate by up to 45 % of ``image_size`` and fill with the data's ``mean`` colour, as timm's
    own ImageNet training transform (``timm.data.transforms_factory.transforms_imagenet_train``) sets them.

    Raises:
        ConfigError: ``config`` is no RandAugment string timm reads (timm skips a section without a number silently
            and fails others with a bare ``assert``; both are one named error here). A ``t<name>`` section is left to
            timm, which takes an op set it does not know (other than ``weights``, ``3a``, ``3aw``) as its default.
    """
    from timm.data.auto_augment import rand_augment_transform

    sections = config.split("-")
    unread = [s for s in sections[1:] if not s.startswith("t") and not any(c.isdigit() for c in s)]
    if sections[0] != "rand" or unread:
        raise ConfigError(f"rand_augment={config!r} is not valid: {RAND_AUGMENT_HELP}")
    fill = tuple(min(255, round(255 * m)) for m in mean)
    try:
        return rand_augment_transform(config, {"translate_const": int(image_size * 0.45), "img_mean": fill})
    except (AssertionError, ValueError, KeyError) as err:
        raise ConfigError(
            f"rand_augment={config!r} is not valid ({err or 'unknown section'}): {RAND_AUGMENT_HELP}"
        ) from err
