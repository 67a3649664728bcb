#!/usr/bin/env bash
# Fills .device/ (ignored by git) with what a bare GPU machine lacks for benchmarks/gpu_check.sh:
# that machine has Python 3.12 with jax/jaxlib (CUDA), flax, optax, chex, numpy, rich, typer,
# numba, matplotlib, pandas, scipy, pillow, imageio, msgpack and friends preinstalled, no
# network, and receives only the checkout (at most 64 MiB in all, this folder included).
#
#   bash benchmarks/device_bundle.sh            # run here, from the repository root
#   CAP_MIB=40 bash benchmarks/device_bundle.sh # a smaller cap (default 44 MiB)
#
# What it puts there, in this order, each part only while the total stays under CAP_MIB:
#   wheels/     the project's missing packages for cp312 manylinux x86_64, each with the
#               dependencies it imports (downloaded with --no-deps: the check installs them
#               with --no-deps, so that pip never replaces the machine's jax)
#   shared/     the Disco103 weights, the golden files and the Boxoban levels (xz archive)
#               from $SHARED (default ../shared)
#   wheels/envpool-*.whl  EnvPool cut to its ProcGen module (52.8 MB in full, 3.5 MB cut)
#   procgen_assets.tar    ProcGen's images (EnvPool reads them from ENVPOOL_ASSETS_PATH)
# and MANIFEST.txt (every file, its size, what was left out and why). Left out by design:
# nle (NetHack is not measured by the check) and the Qt5 runtime that EnvPool's ProcGen links
# against (16 MB compressed with its ICU data: it does not fit beside the assets). Downloads
# are kept in .device-cache/ (ignored; it does not travel); a second run downloads nothing.
set -euo pipefail

ROOT="$PWD"
DEST="$ROOT/.device"
CACHE="$ROOT/.device-cache"  # downloads, outside the bundle: the bundle travels, this not
SHARED="${SHARED:-../shared}"
CAP_MIB="${CAP_MIB:-44}"
PY="${PYTHON:-python3}"
[[ -f pyproject.toml ]] || { echo "error: run from the repository root"; exit 1; }
mkdir -p "$CACHE/dl" "$CACHE/sdist"
rm -rf "$DEST/wheels" "$DEST/shared" "$DEST/procgen_assets.tar" "$DEST/MANIFEST.txt"
mkdir -p "$DEST/wheels" "$DEST/shared"
MANIFEST="$DEST/MANIFEST.txt"
echo "# .device bundle made $(date -u +%FT%TZ) by benchmarks/device_bundle.sh" > "$MANIFEST"

PLATFORM=(--only-binary=:all: --python-version 3.12 --implementation cp --abi cp312
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64
  --platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64
  --platform manylinux2014_x86_64 --platform manylinux1_x86_64 --platform any)
# The project's packages the machine lacks, pinned as pyproject.toml pins them, with the
# packages they import at run time (their other declared dependencies are not needed:
# craftax declares wandb, black and pre-commit). pygame: craftax's renderer only.
CORE=(gymnax==1.0.1 craftax==1.6.1 arch==7.2.0 gymnasium==1.2.0 farama-notifications==0.0.4
  cloudpickle dm-env==1.6 dm-tree==0.1.10 optree==0.20.0 opensimplex==0.4.5.1
  ruamel.yaml==0.19.1 ruamel.yaml.clib)
SDIST_ONLY=(crafter==1.8.3)  # pure Python, published as a source archive: built here

used_bytes() { du -sb "$DEST" | cut -f1; }
cap_bytes=$((CAP_MIB * 1024 * 1024))
fits() {  # fits BYTES: whether BYTES more keep the bundle under the cap
  (($(used_bytes) + $1 <= cap_bytes))
}
note() { echo "$*" | tee -a "$MANIFEST"; }

download() {  # download SPEC...: wheels into the cache (nothing when already there)
  "$PY" -m pip download -q --no-deps "${PLATFORM[@]}" -d "$CACHE/dl" "$@" 2>&1 |
    grep -v "^WARNING: Location" || true
}

# --- 1. the project's missing wheels -----------------------------------------------------------
download "${CORE[@]}"
for spec in "${SDIST_ONLY[@]}"; do
  name="${spec%%==*}"
  if ! ls "$CACHE/dl/${name}"-*.whl >/dev/null 2>&1; then
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$CACHE/sdist" "$spec" 2>&1 |
      grep -v "^WARNING: Location" || true
    "$PY" -m pip wheel -q --no-deps -w "$CACHE/dl" "$CACHE/sdist/${name}"-*.tar.gz 2>&1 |
      grep -v "^WARNING: Location" || true
  fi
done
for spec in "${CORE[@]}" "${SDIST_ONLY[@]}"; do
  name="${spec%%==*}"; pattern="$(echo "$name" | tr '.-' '__')"
  whl=$(ls "$CACHE/dl/" | grep -i "^${pattern}-" | grep '\.whl$' | head -1 || true)
  if [[ -z "$whl" ]]; then note "MISSING: no cp312 wheel for $spec"; continue; fi
  cp "$CACHE/dl/$whl" "$DEST/wheels/"
done
note "wheels: $(ls "$DEST/wheels" | wc -l) packages, $(du -sh "$DEST/wheels" | cut -f1)"

# --- 2. the shared files -------------------------------------------------------------------------
if [[ -f "$SHARED/rules/disco_103.npz" ]]; then
  mkdir -p "$DEST/shared/rules" "$DEST/shared/golden"
  cp "$SHARED/rules/disco_103.npz" "$DEST/shared/rules/"
  cp "$SHARED"/golden/*.npz "$DEST/shared/golden/"
  tar -C "$SHARED" -cJf "$DEST/shared/boxoban.tar.xz" boxoban
  note "shared: Disco103 weights, $(ls "$DEST/shared/golden" | wc -l) golden files, Boxoban levels"
else
  note "LEFT OUT: $SHARED/rules/disco_103.npz not found (set SHARED=...): the check would use actor_critic"
fi

# --- 3. EnvPool cut to ProcGen, and ProcGen's assets -------------------------------------------
download envpool==1.2.5 "envpool-assets>=0.3,<0.4"
ENVPOOL_WHL=$(ls "$CACHE"/dl/envpool-1.2.5-*.whl | head -1)
ASSETS_WHL=$(ls "$CACHE"/dl/envpool_assets-*.whl | head -1)
SLIM="$CACHE/slim"
rm -rf "$SLIM" && mkdir -p "$SLIM"
"$PY" - "$ENVPOOL_WHL" "$SLIM" <<'EOF'
"""Rewrites EnvPool's wheel keeping its ProcGen module: the package's own files, its Python
API, ProcGen, the bundled libraries and the metadata; entry.py registers ProcGen alone."""
import base64, hashlib, sys, zipfile
from pathlib import Path

src, out_dir = Path(sys.argv[1]), Path(sys.argv[2])
keep = ("envpool/python/", "envpool/procgen/", "envpool.libs/", "envpool-")
entry = b'"""Entry point: this cut of EnvPool keeps ProcGen only."""\n\nimport envpool.procgen.registration  # noqa: F401\n'
records = []
with zipfile.ZipFile(src) as zin, zipfile.ZipFile(out_dir / src.name, "w", zipfile.ZIP_DEFLATED) as zout:
  for info in zin.infolist():
    name = info.filename
    top_file = name.startswith("envpool/") and name.count("/") == 1
    if not (top_file or name.startswith(keep)) or name.endswith("/RECORD"):
      continue
    data = entry if name == "envpool/entry.py" else zin.read(name)
    zout.writestr(info, data)
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    records.append(f"{name},sha256={digest},{len(data)}")
  record = next(n for n in zin.namelist() if n.endswith(".dist-info/RECORD"))
  records.append(f"{record},,")
  zout.writestr(record, "\n".join(records) + "\n")
EOF
slim_whl="$SLIM/$(basename "$ENVPOOL_WHL")"
if fits "$(stat -c %s "$slim_whl")"; then
  cp "$slim_whl" "$DEST/wheels/"
  note "envpool: cut to ProcGen, $(du -h "$slim_whl" | cut -f1) (the full wheel: $(du -h "$ENVPOOL_WHL" | cut -f1))"
else
  note "LEFT OUT: envpool (over the ${CAP_MIB} MiB cap)"
fi
rm -rf "$CACHE/assets" && mkdir -p "$CACHE/assets"
(cd "$CACHE/assets" && unzip -q "$ASSETS_WHL" 'envpool_assets/procgen/*')
tar -C "$CACHE/assets/envpool_assets" -cf "$CACHE/procgen_assets.tar" procgen
if [[ -f "$DEST/wheels/$(basename "$ENVPOOL_WHL")" ]] && fits "$(stat -c %s "$CACHE/procgen_assets.tar")"; then
  cp "$CACHE/procgen_assets.tar" "$DEST/"
  note "procgen assets: $(du -h "$DEST/procgen_assets.tar" | cut -f1)"
else
  note "LEFT OUT: ProcGen assets ($(du -h "$CACHE/procgen_assets.tar" | cut -f1): over the ${CAP_MIB} MiB cap)"
fi
note "LEFT OUT: the Qt5 runtime EnvPool's ProcGen links against (libQt5Core/Gui and their"
note "  libraries, 16 MB compressed, 7.5 MB of it ICU data): does not fit beside the assets; the"
note "  check uses the machine's Qt5 if it has one, else ProcGen's learner and policy on"
note "  synthetic frames"
note "LEFT OUT: nle (NetHack is not measured by the check; 3.3 MB)"
note "LEFT OUT: rliable (analysis only; no cp312 wheel of 1.2.0 on the index)"

echo >> "$MANIFEST"
(cd "$DEST" && find . -type f ! -name MANIFEST.txt -printf '%s %p\n' |
  sort -k2) >> "$MANIFEST"
total=$(used_bytes)
note "total: $((total / 1024)) KiB ($(awk "BEGIN {printf \"%.1f\", $total / 1048576}") MiB; cap ${CAP_MIB} MiB; the device takes 64 MiB with the checkout)"
