#!/usr/bin/env bash
# Tests of the fsad tool as a user runs it: every verb on small generated data, exit codes,
# messages that name the file or option, no partial outputs after errors or Ctrl-C.
# Usage: test_cli.sh FSAD_BINARY TEST_DATA_DIR WORK_DIR
set -uo pipefail
FSAD=$1
DATA=$2
W=$3
rm -rf "$W" && mkdir -p "$W"
fails=0
n=0
ok() { n=$((n + 1)); echo "ok   $n $1"; }
bad() { n=$((n + 1)); fails=$((fails + 1)); echo "FAIL $n $1"; [[ -f $W/err ]] && sed 's/^/     | /' "$W/err" | tail -n 8; }
# expect STATUS DESCRIPTION COMMAND...: runs COMMAND, stdout -> $W/out, stderr -> $W/err
expect() {
  local want=$1 what=$2
  shift 2
  "$@" >"$W/out" 2>"$W/err"
  local got=$?
  if [[ $got == "$want" ]]; then ok "$what"; else echo "     exit $got, wanted $want: $*"; bad "$what"; fi
}
contains() {  # contains FILE TEXT DESCRIPTION
  if grep -qF -- "$2" "$1"; then ok "$3"; else echo "     '$2' not in $1:"; sed 's/^/     | /' "$1" | tail -n 5; bad "$3"; fi
}
absent() {  # absent PATH DESCRIPTION
  if [[ ! -e $1 ]]; then ok "$2"; else bad "$2 ($1 exists)"; fi
}
# (--fallback-auroc 0: a random network's synthetic AUROCs say little, and these cases are about
# the patch scorers' files and maps; the fallback has its own cases)
TINY=(--backbone resnet18 --weights none --width 0.125 --res 32 --batch 4 --n-augment 2 --threads 2 --fallback-auroc 0)

# ---- help and flags
expect 0 "fsad --help" "$FSAD" --help
for v in fit score eval demo info synth bench; do expect 0 "fsad $v --help" "$FSAD" "$v" --help; contains "$W/out" "Usage" "$v --help prints usage"; done
expect 109 "unknown flag is refused" "$FSAD" fit --normal x -o y --frobnicate
contains "$W/err" "--frobnicate" "the unknown flag is named"
expect 106 "no verb is refused" "$FSAD"
expect 105 "bad choice is refused" "$FSAD" fit --normal x -o y --backbone vgg16
contains "$W/err" "vgg16" "the bad value is named"
expect 105 "a resolution out of range is refused" "$FSAD" fit --normal x -o y --res 10
contains "$W/err" "expected auto or a number of pixels" "the resolution's forms are named"
expect 0 "fsad info" "$FSAD" info
contains "$W/out" "weights" "info lists where weights are looked for"
contains "$W/out" "cpu kernels:" "info says which CPU kernels this build has"
contains "$W/out" "kernels (chosen by " "info says which OpenBLAS kernels run and who chose them"
expect 0 "fsad info, OPENBLAS_CORETYPE set" env OPENBLAS_CORETYPE=Prescott "$FSAD" info
contains "$W/out" "Prescott kernels (chosen by OPENBLAS_CORETYPE" "a user's OPENBLAS_CORETYPE is left alone"

expect 0 "fsad bench" "$FSAD" bench --backbone resnet18 --res 32 --batch 2 --steps 1 --threads 2
contains "$W/out" "images/s" "bench reports scoring speed"
contains "$W/out" "s/step" "bench reports the fine-tuning step"
expect 0 "fsad bench --profile" "$FSAD" bench --backbone resnet18 --res 32 --batch 2 --steps 1 --threads 2 --profile
contains "$W/out" "ops of one fine-tuning step" "bench --profile prints the step's ops"
contains "$W/out" "conv2d_backward" "the step's table has the convolution gradients"
contains "$W/out" "conv2d_bn_eval_forward" "the forward table has the inference convolutions"

# ---- synth: generated layouts
expect 0 "synth mvtec layout" "$FSAD" synth -o "$W/ds" --size 48 --pool 8 --test 2 --products metal,wood
[[ -d $W/ds/metal/train/good && -d $W/ds/wood/test/scratch ]] && ok "mvtec layout folders" || bad "mvtec layout folders"
expect 1 "synth refuses an existing folder" "$FSAD" synth -o "$W/ds"
contains "$W/err" "already exists" "synth says why"
expect 0 "synth folder layout" "$FSAD" synth -o "$W/fo" --layout folder --size 48 --pool 6 --test 2 --products stone

# ---- fit
expect 0 "fit" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --steps 2 "${TINY[@]}" -o "$W/m.fsad"
[[ -s $W/m.fsad ]] && ok "fit wrote the model" || bad "fit wrote the model"
contains "$W/out" "fitted on 5 image(s)" "fit reports what it used"
contains "$W/out" "random initialisation" "fit says the backbone is random"
expect 0 "fit at resolution auto" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 3 --res auto --backbone resnet18 \
  --weights none --width 0.125 --scorer patch-gauss --threads 2 -o "$W/ma.fsad"
python3 -c "
import json,struct,sys
b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]
c=json.loads(json.loads(b[8:8+n])['__metadata__']['config'])
assert c['resolution']==224, c['resolution']
" "$W/ma.fsad" && ok "auto chose 224 px for small shots and the model keeps it" || bad "auto chose 224 px for small shots and the model keeps it"
contains "$W/out" "second view 160 x 160 px" "fit names the second view (5/7 of 224 px)"
python3 -c "
import json,struct,sys
b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]
h=json.loads(b[8:8+n]); m=h['__metadata__']
assert m['version']=='3', m['version']
assert json.loads(m['view2.config'])['resolution']==160
assert 'view2.patch.mean' in h and 'view2.scale' in h
" "$W/ma.fsad" && ok "the model file (version 3) holds the second view's scorer" || bad "the model file (version 3) holds the second view's scorer"
expect 0 "score a two-view model with maps" "$FSAD" score -m "$W/ma.fsad" "$W/ds/metal/test" --maps "$W/maps2" --json
ls "$W"/maps2/*.png >/dev/null 2>&1 && ok "the two views' maps are written" || bad "the two views' maps are written"
expect 0 "fit with one view (--second-view 0)" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 3 --res auto --backbone resnet18 \
  --weights none --width 0.125 --scorer patch-gauss --second-view 0 --threads 2 -o "$W/m1.fsad"
grep -q "second view" "$W/out" && bad "one view: fit names no second view" || ok "one view: fit names no second view"
python3 -c "
import json,struct,sys
b=open(sys.argv[1],'rb').read(); n=struct.unpack('<Q',b[:8])[0]
m=json.loads(b[8:8+n])['__metadata__']
assert m['version']=='2' and 'view2.config' not in m, m['version']
" "$W/m1.fsad" && ok "a one-view model file stays version 2" || bad "a one-view model file stays version 2"
expect 0 "fit with frozen stages" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --steps 2 --freeze-stages 3 "${TINY[@]}" -o "$W/mf.fsad"
expect 1 "fit with more frozen stages than the backbone has" "$FSAD" fit --normal "$W/ds/metal/train/good" --steps 2 --freeze-stages 5 "${TINY[@]}" -o "$W/x.fsad"
contains "$W/err" "frozen_stages must lie in [0, 4]" "the stage count is named"
absent "$W/x.fsad" "no model after the refusal"
expect 1 "fit on an empty folder" "$FSAD" fit --normal "$W/ds/metal/test/nothing" -o "$W/x.fsad" "${TINY[@]}"
contains "$W/err" "metal/test/nothing" "the missing folder is named"
mkdir -p "$W/empty"
expect 1 "fit on a folder without images" "$FSAD" fit --normal "$W/empty" -o "$W/x.fsad" "${TINY[@]}"
contains "$W/err" "no image files" "fit says the folder has no images"
absent "$W/x.fsad" "no model after a failed fit"
expect 1 "fit with more shots than images" "$FSAD" fit --normal "$W/ds/metal/train/good" --shots 50 -o "$W/x.fsad" "${TINY[@]}"
contains "$W/err" "--shots 50" "the option is named"
expect 1 "fit into a missing folder" "$FSAD" fit --normal "$W/ds/metal/train/good" -o "$W/no/such/m.fsad" "${TINY[@]}"
contains "$W/err" "does not exist" "the output folder is named"
if [[ $("$FSAD" info) != *"cuda:0"* ]]; then  # no GPU here (or no CUDA backend): a clear refusal
  # without the backend --device cuda is a usage error, refused while parsing; without a GPU, fit fails
  [[ $("$FSAD" info) == *"cuda backend: not built"* ]] && code=105 || code=1
  expect $code "fit with --device cuda without a GPU" "$FSAD" fit --normal "$W/ds/metal/train/good" -o "$W/x.fsad" --device cuda "${TINY[@]}"
  grep -qE "no CUDA backend|no CUDA device" "$W/err" && ok "the device error is clear" || bad "the device error is clear"
  absent "$W/x.fsad" "no model after the refusal"
else  # a GPU: fit and score on it, in FP32, TF32 and BF16
  expect 0 "fit on the GPU" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --steps 2 --device cuda "${TINY[@]}" -o "$W/mg.fsad"
  expect 0 "score on the GPU" "$FSAD" score -m "$W/mg.fsad" "$W/ds/metal/test" --device cuda --json
  contains "$W/out" '"score"' "the GPU scores are printed"
  expect 0 "fit on the GPU with TF32" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --steps 2 --device cuda --tf32 "${TINY[@]}" -o "$W/mt.fsad"
  expect 0 "score on the GPU with TF32" "$FSAD" score -m "$W/mt.fsad" "$W/ds/metal/test" --device cuda --tf32
  expect 0 "fit on the GPU in BF16" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --steps 2 --device cuda --precision bf16 "${TINY[@]}" -o "$W/mb.fsad"
  expect 0 "score on the GPU in BF16" "$FSAD" score -m "$W/mb.fsad" "$W/ds/metal/test" --device cuda --precision bf16 --json
  contains "$W/out" '"score"' "the BF16 scores are printed"
  expect 0 "fit on the GPU, fine-tuning in BF16" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --steps 2 --device cuda --train-precision bf16 "${TINY[@]}" -o "$W/mm.fsad"
  expect 0 "score its model on the GPU" "$FSAD" score -m "$W/mm.fsad" "$W/ds/metal/test" --device cuda --json
fi
# BF16 on the CPU: the GPU's numbers, computed in float32
expect 0 "fit in BF16 on the CPU" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --steps 2 --precision bf16 "${TINY[@]}" -o "$W/mc.fsad"
expect 0 "score in BF16 on the CPU" "$FSAD" score -m "$W/mc.fsad" "$W/ds/metal/test" --precision bf16 --json
contains "$W/out" '"score"' "the CPU's BF16 scores are printed"
expect 0 "fsad bench in BF16" "$FSAD" bench --backbone resnet18 --res 32 --batch 2 --steps 1 --threads 2 --precision bf16
contains "$W/out" ", bf16" "bench names the precision"
expect 0 "fit fine-tuning in BF16, features in FP32 (--train-precision bf16)" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --steps 2 --train-precision bf16 "${TINY[@]}" -o "$W/mx.fsad"
grep -aq 'precision\\":\\"bf16' "$W/mx.fsad" && ok "the model file records the fine-tuning's precision" || bad "the model file records the fine-tuning's precision"
grep -aq 'precision\\":null' "$W/mc.fsad" && ok "a model fitted without it records none" || bad "a model fitted without it records none"
expect 1 "--train-precision tf32 on the CPU is refused" "$FSAD" fit --normal "$W/ds/metal/train/good" -o "$W/x.fsad" --train-precision tf32 "${TINY[@]}"
contains "$W/err" "--train-precision tf32 applies to --device cuda only" "the refusal names --train-precision"
expect 105 "an unknown fine-tuning precision is refused" "$FSAD" fit --normal "$W/ds/metal/train/good" -o "$W/x.fsad" --train-precision fp8 "${TINY[@]}"
contains "$W/err" "fp8" "the unknown fine-tuning precision is named"
expect 1 "--tf32 with --precision bf16 is refused" "$FSAD" fit --normal "$W/ds/metal/train/good" -o "$W/x.fsad" --tf32 --precision bf16 "${TINY[@]}"
contains "$W/err" "--tf32 and --precision bf16 disagree" "the disagreement names both flags"
expect 105 "an unknown precision is refused" "$FSAD" score -m "$W/mc.fsad" "$W/ds/metal/test" --precision fp16
contains "$W/err" "fp16" "the unknown precision is named"
expect 1 "--precision tf32 on the CPU is refused" "$FSAD" score -m "$W/mc.fsad" "$W/ds/metal/test" --precision tf32
contains "$W/err" "--precision tf32 applies to --device cuda only" "the refusal names the flag"
expect 1 "--tf32 on the CPU is refused" "$FSAD" fit --normal "$W/ds/metal/train/good" -o "$W/x.fsad" --tf32 "${TINY[@]}"
contains "$W/err" "--tf32 applies to --device cuda only" "the TF32 refusal names the flag"
absent "$W/x.fsad" "no model after the TF32 refusal"
expect 1 "score --tf32 on the CPU is refused" "$FSAD" score -m "$W/m.fsad" "$W/ds/metal/test" --tf32
expect 105 "a malformed device is refused" "$FSAD" fit --normal "$W/ds/metal/train/good" -o "$W/x.fsad" --device tpu "${TINY[@]}"
expect 1 "fit with a missing weights file" "$FSAD" fit --normal "$W/ds/metal/train/good" -o "$W/x.fsad" --weights "$W/none.safetensors" --steps 0
contains "$W/err" "none.safetensors" "the weights file is named"
# odd images: 16-bit, grayscale, gray+alpha, RGBA, mixed sizes
mkdir -p "$W/odd"
cp "$DATA"/images/{gray16,gray8,graya8,rgb16,rgb8,rgba8}.png "$W/odd/"
cp "$W/ds/metal/train/good/000.png" "$W/odd/big.png"
expect 0 "fit on 16-bit, gray, alpha and mixed-size images" "$FSAD" -q fit --normal "$W/odd" --steps 1 "${TINY[@]}" -o "$W/odd.fsad"
cp "$DATA/images/truncated.png" "$W/odd/"
expect 1 "fit with a truncated image" "$FSAD" -q fit --normal "$W/odd" --steps 1 "${TINY[@]}" -o "$W/odd2.fsad"
contains "$W/err" "truncated.png" "the truncated file is named"
absent "$W/odd2.fsad" "no model after a failed fit"

# ---- score
expect 0 "score a folder" "$FSAD" -q score -m "$W/m.fsad" "$W/ds/metal/test" --csv "$W/s.csv"
nimg=$(find "$W/ds/metal/test" -name '*.png' | wc -l)
[[ $(wc -l <"$W/s.csv") == $((nimg + 1)) ]] && ok "CSV has a line per image" || bad "CSV has a line per image"
contains "$W/s.csv" "path,score,threshold,anomalous" "CSV header"
expect 0 "score --json" "$FSAD" -q score -m "$W/m.fsad" "$W/ds/metal/test/good/000.png" --json
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d['images'])==1 and d['images'][0]['score']>0" "$W/out" \
  && ok "score --json is JSON with the score" || bad "score --json is JSON with the score"
expect 2 "--fail-on-anomaly exits 2 when something is flagged" "$FSAD" -q score -m "$W/m.fsad" "$W/ds/metal/test" --threshold 0 --fail-on-anomaly
expect 1 "score a non-image file" "$FSAD" -q score -m "$W/m.fsad" "$DATA/images/not_an_image.png" --csv "$W/bad.csv"
contains "$W/err" "not_an_image.png" "the bad image is named"
absent "$W/bad.csv" "no CSV after a failed score"
expect 1 "score a missing path" "$FSAD" -q score -m "$W/m.fsad" "$W/missing.png"
contains "$W/err" "missing.png" "the missing path is named"
head -c 2000 "$W/m.fsad" >"$W/trunc.fsad"
expect 1 "score with a truncated model" "$FSAD" -q score -m "$W/trunc.fsad" "$W/ds/metal/test"
contains "$W/err" "trunc.fsad" "the truncated model is named"
cp "$DATA/images/rgb8.png" "$W/notmodel.fsad"
expect 1 "score with a PNG as the model" "$FSAD" -q score -m "$W/notmodel.fsad" "$W/ds/metal/test"
contains "$W/err" "notmodel.fsad" "the wrong model file is named"
expect 0 "score --maps writes an anomaly-map overlay per image" "$FSAD" -q score -m "$W/m.fsad" "$W/ds/metal/test" --maps "$W/maps"
[[ $(find "$W/maps" -name '*_map*.png' | wc -l) == "$nimg" ]] && ok "one map PNG per image" || bad "one map PNG per image"
python3 - "$W/maps" "$W/ds/metal/test" <<'PY' && ok "the maps have their images' sizes" || bad "the maps have their images' sizes"
import pathlib, struct, sys
def size(p):  # PNG IHDR: width, height
    b = pathlib.Path(p).read_bytes()
    return struct.unpack(">II", b[16:24])
maps = {p.name: size(p) for p in pathlib.Path(sys.argv[1]).glob("*.png")}
imgs = sorted(pathlib.Path(sys.argv[2]).rglob("*.png"))
assert imgs and all(size(i) in maps.values() for i in imgs), (maps, [size(i) for i in imgs])
PY
# the auto scorer's fallback to the global scorer: global exactly when the best patch scorer's
# synthetic AUROC (printed by fit) is under --fallback-auroc
for fb in 0 1; do
  expect 0 "fit with --fallback-auroc $fb" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --fallback-auroc $fb \
    --backbone resnet18 --weights none --width 0.125 --res 32 --threads 2 -o "$W/mfb$fb.fsad"
  contains "$W/out" "(auto; synthetic AUROC patch-gauss" "fit prints the auto scorer's table"
  python3 - "$W/out" "$W/mfb$fb.fsad" $fb <<'PY' && ok "--fallback-auroc $fb: global exactly when no patch scorer reaches it" || bad "--fallback-auroc $fb: global exactly when no patch scorer reaches it"
import json, re, struct, sys
line = next(l for l in open(sys.argv[1]) if l.startswith("scorer "))
vals = dict(re.findall(r"(patch-gauss|patch-knn|patch-sum|global) ([\d.]+)", line))
b = open(sys.argv[2], "rb").read(); n = struct.unpack("<Q", b[:8])[0]
c = json.loads(json.loads(b[8:8 + n])["__metadata__"]["config"])
fb = float(sys.argv[3])
assert c["patch"]["fallback_auroc"] == fb, c["patch"]
want = "global" if max(float(vals[k]) for k in ("patch-gauss", "patch-knn", "patch-sum")) < 100 * fb else None
assert c["scorer"] == (want or "patch-sum"), (line, c["scorer"])  # auto's patch scorer is patch-sum
assert ("global" in vals) == (c["scorer"] == "global"), line
PY
done
expect 105 "a fallback AUROC above 1 is refused" "$FSAD" fit --normal x -o y --fallback-auroc 1.5
contains "$W/err" "--fallback-auroc" "the option is named"
expect 105 "a tile size off the 32 px grid is refused" "$FSAD" fit --normal x -o y --tiles 50
contains "$W/err" "a multiple of 32 from 64 to 4096" "the tiles' forms are named"
# tiles: the demo's textures at 96 px, native views in tiles of 64 px; its 48 px images are refused
expect 0 "synth at 96 px" "$FSAD" -q synth -o "$W/big" --size 96
good96=$(dirname "$(ls -d "$W/big"/*/train/good | head -n 1)")
expect 1 "an image smaller than a tile is refused" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 3 --scorer patch-gauss "${TINY[@]}" --view native --tiles 64 -o "$W/tiles.fsad"
contains "$W/err" "smaller than a tile (64 px)" "the refusal names the tile"
contains "$W/err" "$W/ds/metal/train/good/" "the refusal names the image file"
absent "$W/tiles.fsad" "no model after the refused tiled fit"
expect 0 "fit on native views in tiles" "$FSAD" -q fit --normal "$good96/good" --shots 3 --scorer patch-gauss "${TINY[@]}" --view native --tiles 64 -o "$W/tiles.fsad"
expect 0 "score tiled native views with maps" "$FSAD" -q score -m "$W/tiles.fsad" "$good96/../test" --maps "$W/tmaps"
[[ -n $(ls "$W/tmaps" 2>/dev/null) ]] && ok "tiled maps written" || bad "tiled maps written"
expect 0 "fit with a low --max-aspect" "$FSAD" -q fit --normal "$good96/good" --shots 3 --scorer patch-gauss "${TINY[@]}" --max-aspect 1 -o "$W/ma.fsad"
contains "$W/out" "view 32 x 32 px" "fit names the view"
expect 105 "a --max-aspect under 1 is refused" "$FSAD" fit --normal x -o y --max-aspect 0.5
mkdir -p "$W/long"  # 5:1 shots (binary PPM, noise): squeezed to --max-aspect 2, and fit says so
for i in 1 2 3; do { printf 'P6\n160 32\n255\n'; head -c $((160 * 32 * 3)) /dev/urandom; } > "$W/long/s$i.ppm"; done
expect 0 "fit on 5:1 shots with --max-aspect 2" "$FSAD" -q fit --normal "$W/long" --scorer patch-gauss "${TINY[@]}" --max-aspect 2 -o "$W/long.fsad"
contains "$W/out" "view 64 x 32 px" "the shots view is capped at 2:1"
contains "$W/out" "shots up to 5.0:1 are squeezed to 2.0:1" "fit says that the shots are squeezed"
small=$(ls "$W/ds"/metal/test/*/* | head -n 1)
expect 1 "scoring an image smaller than a tile is refused" "$FSAD" -q score -m "$W/tiles.fsad" "$small"
contains "$W/err" "$small: " "the refusal names the image file"
expect 0 "fit with the global scorer" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 5 --scorer global "${TINY[@]}" -o "$W/mglob.fsad"
expect 1 "--maps with the global scorer is refused" "$FSAD" -q score -m "$W/mglob.fsad" "$W/ds/metal/test" --maps "$W/maps2"
contains "$W/err" "no anomaly map" "the refusal says why"
expect 1 "a one-shot fit with a patch scorer is refused" "$FSAD" -q fit --normal "$W/ds/metal/train/good" --shots 1 --scorer patch-knn "${TINY[@]}" -o "$W/one.fsad"
contains "$W/err" "at least 2 normal images" "the one-shot refusal says why"
absent "$W/one.fsad" "no model after the refused fit"

# ---- eval
expect 0 "eval mvtec" "$FSAD" -q eval --dataset mvtec --root "$W/ds" --shots 2,3 --seeds 2 --steps 0 "${TINY[@]}" --report "$W/rep"
for f in report.html report.md report.json; do [[ -s $W/rep/$f ]] && ok "eval wrote $f" || bad "eval wrote $f"; done
python3 -c "
import json,sys
d=json.load(open(sys.argv[1]))
assert len(d['runs'])==8, len(d['runs'])
assert {r['category'] for r in d['runs']}=={'metal','wood'}
assert all(0<=r['auroc']<=100 for r in d['runs'])
assert d['config']['detector']['resolution']==32
assert 'seeds' in d['config_file']
" "$W/rep/report.json" && ok "report.json holds every run and the configuration" || bad "report.json holds every run and the configuration"
contains "$W/rep/report.md" "| mean |" "report.md has the mean row"
expect 0 "eval folder layout" "$FSAD" -q eval --dataset folder --root "$W/fo/stone" --shots 2 --seeds 1 --steps 0 "${TINY[@]}" --report "$W/rep2"
expect 1 "eval with a wrong layout" "$FSAD" -q eval --dataset mvtec --root "$W/odd" --steps 0 "${TINY[@]}" --report "$W/rep3"
contains "$W/err" "odd" "the dataset root is named"
absent "$W/rep3" "no report after a failed eval"
expect 1 "eval of an unknown category" "$FSAD" -q eval --dataset mvtec --root "$W/ds" --category glass --steps 0 "${TINY[@]}" --report "$W/rep3"
contains "$W/err" "glass" "the category is named"
expect 1 "eval with too many shots" "$FSAD" -q eval --dataset mvtec --root "$W/ds" --shots 20 --steps 0 "${TINY[@]}" --report "$W/rep3"
contains "$W/err" "20 shots" "the shot count is named"
# a config file instead of flags
cat >"$W/eval.toml" <<EOF
[eval]
dataset = "mvtec"
root = "$W/ds"
shots = [2]
seeds = 1
steps = 0
backbone = "resnet18"
weights = "none"
width = 0.125
res = 32
n-augment = 2
report = "$W/rep4"
EOF
expect 0 "eval from a TOML config file" "$FSAD" -q --config "$W/eval.toml" eval
python3 -c "import json,sys; d=json.load(open(sys.argv[1])); assert len(d['runs'])==2" "$W/rep4/report.json" \
  && ok "the config file's settings were used" || bad "the config file's settings were used"

# ---- Ctrl-C leaves nothing behind
"$FSAD" -q fit --normal "$W/ds/metal/train/good" --steps 100000 "${TINY[@]}" -o "$W/int.fsad" >"$W/out" 2>"$W/err" &
pid=$!
sleep 3
kill -INT $pid
wait $pid
st=$?
[[ $st == 130 ]] && ok "Ctrl-C during fit exits 130" || bad "Ctrl-C during fit exits 130 (got $st)"
contains "$W/err" "interrupted" "fit says it was interrupted"
absent "$W/int.fsad" "no model after Ctrl-C"
leftovers=$(find "$W" -maxdepth 1 -name '*.tmp*' | wc -l)
[[ $leftovers == 0 ]] && ok "no temporary files after Ctrl-C" || bad "no temporary files after Ctrl-C"

"$FSAD" -q eval --dataset mvtec --root "$W/ds" --shots 2,3 --seeds 500 --steps 0 "${TINY[@]}" --report "$W/rep-int" \
  >"$W/out" 2>"$W/err" &
pid=$!
sleep 3
kill -INT $pid
wait $pid
st=$?
[[ $st == 130 ]] && ok "Ctrl-C during eval exits 130" || bad "Ctrl-C during eval exits 130 (got $st)"
absent "$W/rep-int" "no report after Ctrl-C"
leftovers=$(find "$W" -maxdepth 1 -name 'rep-int*' | wc -l)
[[ $leftovers == 0 ]] && ok "no temporary report folder after Ctrl-C" || bad "no temporary report folder after Ctrl-C"

# ---- demo (small)
expect 0 "demo" "$FSAD" -q demo --products wood --seeds 1 --shots 3 --steps 1 "${TINY[@]}" -o "$W/demo" --train-precision bf16
contains "$W/out" "report:" "demo prints where the report is"
[[ -s $W/demo/report.html ]] && ok "demo wrote the report" || bad "demo wrote the report"
contains "$W/demo/report.json" "fine-tuning precision" "the report names the fine-tuning's own precision"

echo "$n checks, $fails failed"
exit $((fails > 0))
