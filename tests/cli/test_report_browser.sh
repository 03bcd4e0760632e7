#!/usr/bin/env bash
# Renders an fsad report in a real headless browser (Debian's chromium): the page must load as
# a file with no network, the DOM after rendering must hold the AUROC table, the SVG plots and
# the gallery images, and the screenshot must be a full, non-blank page.
# Usage: test_report_browser.sh FSAD_BINARY WORK_DIR   (exit 77 = skipped: no chromium)
set -euo pipefail
FSAD=$1
W=$2
BROWSER=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $BROWSER ]]; then
  echo "skipped: chromium is not installed (scripts/bootstrap.sh installs it)"
  exit 77
fi
rm -rf "$W" && mkdir -p "$W"
"$FSAD" -q demo --products metal,wood --seeds 1 --shots 3,5 --steps 0 --backbone resnet18 --weights none --width 0.125 \
  --res 48 -o "$W/report" >/dev/null
flags=(--headless --no-sandbox --disable-gpu --hide-scrollbars --user-data-dir="$W/profile" --no-first-run)
timeout 120 "$BROWSER" "${flags[@]}" --dump-dom "file://$W/report/report.html" >"$W/dom.html" 2>"$W/browser.log"
timeout 120 "$BROWSER" "${flags[@]}" --window-size=1200,1600 --screenshot="$W/shot.png" "file://$W/report/report.html" \
  >/dev/null 2>>"$W/browser.log"
python3 - "$W/dom.html" "$W/shot.png" <<'PY'
import struct, sys, zlib
dom = open(sys.argv[1]).read()
checks = {
    "AUROC table": '<table id="auroc">' in dom,
    "two ROC plots": dom.count('<svg class="roc"') == 2,
    "two histograms": dom.count('<svg class="hist"') == 2,
    "ROC polylines": dom.count("<polyline") >= 4,
    "gallery images": dom.count("data:image/png;base64,") >= 8,
    "mean row": 'class="mean"' in dom,
}
png = open(sys.argv[2], "rb").read()
w, h = struct.unpack(">II", png[16:24])
checks["screenshot 1200x1600"] = (w, h) == (1200, 1600)
# decode the PNG (8-bit RGB/RGBA, filter types 0-4) and count distinct colours: a blank or
# unstyled page has a handful, the report with plots and thumbnails has hundreds
idat = b"".join(png[i + 8:i + 8 + struct.unpack(">I", png[i:i + 4])[0]]
                for i in range(8, len(png)) if png[i + 4:i + 8] == b"IDAT")
raw = zlib.decompress(idat)
bpp = {2: 3, 6: 4}[png[25]]
stride = w * bpp
colours, prev, pos = set(), bytearray(stride), 0
for y in range(h):
    f = raw[pos]; line = bytearray(raw[pos + 1:pos + 1 + stride]); pos += 1 + stride
    for x in range(stride):
        a = line[x - bpp] if x >= bpp else 0; b = prev[x]; c = prev[x - bpp] if x >= bpp else 0
        if f == 1: line[x] = (line[x] + a) & 255
        elif f == 2: line[x] = (line[x] + b) & 255
        elif f == 3: line[x] = (line[x] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    if y % 4 == 0:
        colours.update(bytes(line[i:i + 3]) for i in range(0, stride, bpp * 2))
    prev = line
checks["rendered page is not blank"] = len(colours) > 200
bad = [k for k, v in checks.items() if not v]
for k, v in checks.items():
    print(("ok   " if v else "FAIL ") + k)
print(f"{len(colours)} distinct colours in the screenshot")
sys.exit(1 if bad else 0)
PY
