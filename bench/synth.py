"""Write N realistic clinic-style Markdown pages (front matter, headings, bullets, numbers) for scale tests.

python bench/synth.py OUT_DIR N [--seed 1]
"""

from __future__ import annotations

import argparse
import random
from pathlib import Path

TOPICS = [
    "scalp micropigmentation",
    "hair transplant",
    "PRP therapy",
    "laser hair removal",
    "chemical peel",
    "acne scar treatment",
    "mesotherapy",
    "beard transplant",
    "eyebrow restoration",
    "microneedling",
    "vitiligo care",
    "hair fall in women",
    "dandruff and scalp care",
    "botox",
    "dermal fillers",
]
SECTIONS = [
    "What it is",
    "Who it may suit",
    "Before the procedure",
    "During the procedure",
    "Aftercare",
    "Cost factors",
    "Risks to discuss",
    "Results and upkeep",
]
BULLETS = [
    "Avoid washing the treated area for {n} hours.",
    "Wear a soft cap for at least {n} hours.",
    "Stop {drug} {a}-{b} days before, only if your doctor agrees.",
    "A session may take {a}-{b} hours.",
    "A review visit is usually planned after {n} weeks.",
    "Apply the prescribed cream for {d} days.",
    "Avoid direct sun for {d} days.",
    "Avoid the gym and heavy sweating for {d} days.",
    "Bring a list of your medicines to the consultation.",
    "Final billing may vary by about {a}-{b}%.",
]
SENTENCES = [
    "The {t} procedure is planned after a detailed consultation.",
    "A qualified dermatologist decides whether {t} is suitable.",
    "Most patients return to desk work within {d} days after {t}.",
    "The clinic reviews your medical history before {t}.",
    "Results of {t} depend on skin type, age and the area treated.",
    "Your doctor explains the steps of {t} on the day.",
]
DRUGS = ["aspirin", "vitamin E", "NSAIDs", "fish oil", "blood thinners"]


def page(i: int, rng: random.Random) -> str:
    topic = rng.choice(TOPICS)
    title = f"{topic.title()} guide {i}"
    lines = [
        "---",
        f"title: {title}",
        f"url: /guides/{i}",
        "reviewed_on: 2026-11-01",
        "review_due: 2027-05-01",
        "---",
        f"# {title}",
        "",
        f"This page explains {topic} for patients of branch {i % 37}.",
        "",
    ]
    for section in rng.sample(SECTIONS, k=rng.randint(3, 5)):
        lines += [f"## {section}", ""]
        for _ in range(rng.randint(1, 3)):
            lines.append(rng.choice(SENTENCES).format(t=topic, d=rng.randint(2, 14)))
        lines.append("")
        for _ in range(rng.randint(2, 5)):
            a = rng.randint(1, 10)
            lines.append(
                "- "
                + rng.choice(BULLETS).format(
                    n=rng.choice([24, 48, 72]),
                    a=a,
                    b=a + rng.randint(1, 4),
                    d=rng.randint(2, 7),
                    drug=rng.choice(DRUGS),
                )
            )
        lines.append("")
    return "\n".join(lines)


def write_corpus(out: Path, n: int, seed: int = 1) -> list[Path]:
    rng = random.Random(seed)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        path = out / f"guide-{i:05d}.md"
        path.write_text(page(i, rng))
        paths.append(path)
    return paths


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("n", type=int)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(len(write_corpus(args.out, args.n, args.seed)), "pages written to", args.out)
