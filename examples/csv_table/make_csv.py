"""Write scikit-learn's bundled wine table (178 rows, 13 features, 3 classes) as ``wine.csv``: stand-in for yours."""

import argparse
import csv

from sklearn.datasets import load_wine

parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
parser.add_argument("--out", default="wine.csv", help="output CSV file")
out = parser.parse_args().out
data = load_wine()
with open(out, "w", newline="") as f:
    writer = csv.writer(f)
    writer.writerow([*data.feature_names, "label"])
    writer.writerows([*row, int(label)] for row, label in zip(data.data.tolist(), data.target))
print(f"wrote {out}: {len(data.target)} rows")
