"""Install a real colour image set from the npm registry: the 64x64 emoji PNGs of the
`emoji-datasource-<vendor>` package (iamcal/emoji-data), one folder per emoji category.

    python experiments/tools/install_emoji.py ~/data/emoji-google       # Noto Emoji (Google)
    python experiments/tools/install_emoji.py ~/data/emoji-twitter --vendor twitter

Needs `npm` (the package is fetched with `npm pack`; nothing is installed into node_modules).
The folder gets <category>/<codepoints>.png for every image the package ships at 64x64
(skin-tone variants under their emoji's category) and PROVENANCE.json: the package, its
version and npm integrity, the tarball's SHA-256, the images' licence and the counts.
The images are never committed to this repository.

Licences (the package's README): Google's Noto Emoji images are Apache License 2.0;
Twitter's Twemoji images are CC BY 4.0 (attribution: Twitter, Inc. and other contributors);
the package's code and metadata are MIT (Cal Henderson).

As read by gandistill (data.source=folder): 3,786 Google images (3,722 RGBA, 62 grey +
alpha, 2 palette with transparency), composited on data.background and held out by
data.eval_fraction (experiments/configs/emoji_demo.py).
"""
from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile

VERSION = "16.0.0"
LICENCES = {"google": "Apache-2.0 (Noto Emoji)", "twitter": "CC-BY-4.0 (Twemoji)",
            "facebook": "unclear (the package says: no clear licensing)", "apple": "not for commercial use"}


def categories(meta: list[dict]) -> dict[str, str]:
  """{image file name: category} for every emoji and skin-tone variant."""
  out = {}
  for e in meta:
    cat = e["category"].replace(" & ", "_and_").replace(" ", "_")
    out[e["image"]] = cat
    for variant in (e.get("skin_variations") or {}).values():
      out[variant["image"]] = cat
  return out


def main():
  ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument("out", help="the folder to create (must not exist or be empty)")
  ap.add_argument("--vendor", default="google", choices=sorted(LICENCES))
  ap.add_argument("--size", type=int, default=64, choices=(16, 20, 32, 64))
  args = ap.parse_args()
  out = os.path.expanduser(args.out)
  if os.path.isdir(out) and os.listdir(out):
    raise SystemExit(f"install_emoji: {out} is not empty")
  package = f"emoji-datasource-{args.vendor}@{VERSION}"
  with tempfile.TemporaryDirectory() as tmp:
    info = json.loads(subprocess.run(["npm", "pack", package, "--json", "--pack-destination", tmp], check=True,
                                     capture_output=True, text=True).stdout)[0]
    tarball = os.path.join(tmp, info["filename"])
    with open(tarball, "rb") as f:
      tar_sha = hashlib.sha256(f.read()).hexdigest()
    prefix = f"package/img/{args.vendor}/{args.size}/"
    with tarfile.open(tarball) as tar:
      meta = json.load(tar.extractfile("package/emoji.json"))
      by_file, counts = categories(meta), {}
      os.makedirs(out, exist_ok=True)
      for member in tar.getmembers():
        if not (member.isfile() and member.name.startswith(prefix) and member.name.endswith(".png")):
          continue
        name = os.path.basename(member.name)
        cat = by_file.get(name, "Other")
        os.makedirs(os.path.join(out, cat), exist_ok=True)
        with tar.extractfile(member) as src, open(os.path.join(out, cat, name), "wb") as dst:
          shutil.copyfileobj(src, dst)
        counts[cat] = counts.get(cat, 0) + 1
  provenance = {"package": package, "npm_integrity": info["integrity"], "tarball_sha256": tar_sha,
                "images": f"img/{args.vendor}/{args.size}/*.png", "licence": LICENCES[args.vendor],
                "source": "https://github.com/iamcal/emoji-data", "installed": datetime.date.today().isoformat(),
                "total": sum(counts.values()), "per_category": dict(sorted(counts.items()))}
  with open(os.path.join(out, "PROVENANCE.json"), "w") as f:
    json.dump(provenance, f, indent=2)
  print(f"wrote {provenance['total']} images of {package} into {out} ({len(counts)} categories); licence: "
        f"{provenance['licence']}")


if __name__ == "__main__":
  main()
