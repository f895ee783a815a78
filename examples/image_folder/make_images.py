"""Write scikit-learn's bundled 8×8 digits as PNG files in class folders, a stand-in for your own images.

Layout (torchvision's ``ImageFolder``, what ``dnas.data.ImageFolderDataModule`` reads)::

    digits_png/train/0/00000.png ... digits_png/train/9/...
    digits_png/test/0/...        ... (every fifth image; without test/, 10 % of train is held out)
"""

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--root", default="digits_png", help="output folder")
parser.add_argument("--per_class", type=int, default=60, help="images per class (the example stays quick)")
args = parser.parse_args()
root, per_class = Path(args.root), args.per_class
data = load_digits()
count = dict.fromkeys(range(10), 0)
for i, (image, label) in enumerate(zip(data.images, data.target)):
    if count[int(label)] >= per_class:
        continue
    count[int(label)] += 1
    split = "test" if i % 5 == 0 else "train"
    folder = root / split / str(label)
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray((image * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{i:05d}.png")
print(f"wrote {sum(count.values())} images to {root}/train and {root}/test")
