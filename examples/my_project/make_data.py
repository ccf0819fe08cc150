"""Write data/penguins.csv: 240 synthetic penguins of three species (stdlib only, seeded).

The committed CSV was made by ``python make_data.py``; re-running it gives the same file.
"""
import csv
import random
from pathlib import Path

SPECIES = {  # mean bill length, bill depth, flipper length, body mass (g)
    "adelie": (38.8, 18.3, 190.0, 3700.0),
    "chinstrap": (48.8, 18.4, 195.8, 3730.0),
    "gentoo": (47.5, 15.0, 217.2, 5076.0),
}
SPREAD = (4.5, 1.6, 9.0, 600.0)

rng = random.Random(0)
rows = []
for i in range(240):
    species = list(SPECIES)[i % 3]
    rows.append([round(rng.gauss(m, s), 1) for m, s in zip(SPECIES[species], SPREAD)] + [species])
rng.shuffle(rows)
out = Path(__file__).with_name("data") / "penguins.csv"
out.parent.mkdir(exist_ok=True)
with open(out, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f, lineterminator="\n")
    w.writerow(["bill_length", "bill_depth", "flipper_length", "body_mass", "species"])
    w.writerows(rows)
