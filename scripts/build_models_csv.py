"""Rebuild rmsweep/data/models.csv from the shared reference tables.

The registry ships one table: the paper's 42 models (arXiv 2505.10775, Tables 1/4/5) joined with the
published benchmark features found for them (features.csv; blanks stay blank, nothing is imputed).

    python scripts/build_models_csv.py [--reference ../shared/reference]
"""
import argparse
from pathlib import Path

import pandas as pd

OUT = Path(__file__).resolve().parents[1] / "rmsweep" / "data" / "models.csv"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reference", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "reference")
    args = parser.parse_args()
    models = pd.read_csv(args.reference / "paper-2505.10775-models.csv")
    features = pd.read_csv(args.reference / "features.csv")
    table = models.merge(features, on="hf_id", how="left", validate="one_to_one")
    table.to_csv(OUT, index=False)
    print(f"wrote {len(table)} models to {OUT}")


if __name__ == "__main__":
    main()
