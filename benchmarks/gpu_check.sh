#!/usr/bin/env bash
# The device check: ONE call on a bare GPU machine (one H100/H200, 16 cores, Python 3.12 with
# jax/jaxlib for CUDA, flax, optax, chex, numpy, rich, typer, numba, matplotlib, pandas, scipy
# preinstalled; no network; only the checkout is there). Prepare it here first:
#
#   bash benchmarks/device_bundle.sh           # here: fills .device/ (wheels, weights, golden)
#   OUT=gpu-results bash benchmarks/gpu_check.sh             # there (.device carried along)
#   bash benchmarks/gpu_check.sh --cpu-smoke   # every step, tiny, on a CPU
#
# It installs the project's missing packages from .device/wheels with no network and without
# their dependencies (pip never touches the machine's jax), uses the preinstalled jax, and keeps
# within GPU_CHECK_BUDGET_S seconds in all (default 470: under 8 minutes, the install
# included), each step cut at what is left. Each step's result is appended to
# $OUT/results.jsonl the moment it is measured (the machine returns few files): `rules verify`
# on the device; Catch (8 seeds); MinAtar with Disco103 and with PPO (1 and 16 seeds); Craftax-
# Classic; Sokoban; ProcGen (the real environment where EnvPool's ProcGen loads, and always
# its learner and policy steps on synthetic frames, float32 and bfloat16 torso, with XLA's cost
# analysis); the compile cache's cold and warm start of one run; each step's peak device memory.
# At the end $OUT holds results.jsonl, table.md (for docs/benchmarks.md) and gpu_check.log.
set -uo pipefail

START_S=$(date +%s)
MODE=full
if [[ "${1:-}" == "--cpu-smoke" ]]; then MODE=smoke; fi
OUT_DIR="${OUT:-$(mktemp -d -t gpu-check-XXXX)}"
SCRATCH="$(mktemp -d -t gpu-check-runs-XXXX)"
mkdir -p "$OUT_DIR"
trap 'rm -rf "$SCRATCH"' EXIT
export DISCO_EVAL_HOME="$SCRATCH/home"  # a cold compile cache, the weights pulled here
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
LOG="$OUT_DIR/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
echo "gpu_check ($MODE) at $(date -u +%FT%TZ) in $PWD; results in $OUT_DIR"
BUNDLE=.device
if [[ "$MODE" == full ]]; then BUDGET="${GPU_CHECK_BUDGET_S:-470}"; else BUDGET="${GPU_CHECK_BUDGET_S:-3600}"; fi

# --- install: from the bundle, no network, never replacing the machine's packages ------------
if [[ -d "$BUNDLE/wheels" ]]; then
  missing=()
  for whl in "$BUNDLE"/wheels/*.whl; do
    dist="$(basename "$whl" | cut -d- -f1)"
    "$PY" -m pip show -q "$dist" >/dev/null 2>&1 || missing+=("$whl")
  done
  if ((${#missing[@]})); then
    echo "installing ${#missing[@]} wheels from $BUNDLE/wheels (--no-index --no-deps)"
    "$PY" -m pip install -q --no-index --no-deps --no-compile --find-links "$BUNDLE/wheels" \
      "${missing[@]}" || echo "note: some wheels did not install"
  fi
else
  echo "no $BUNDLE/wheels (run benchmarks/device_bundle.sh before): installing nothing"
fi
"$PY" -m pip install -q --no-index --no-deps --no-build-isolation -e . >/dev/null 2>&1 ||
  echo "note: the project is not pip-installed; using PYTHONPATH"
"$PY" - <<'EOF'
import importlib.metadata as md
from disco_eval import runtime  # noqa: F401 - the project imports
import jax
print(f"jax {jax.__version__}, jaxlib {md.version('jaxlib')}, backend {jax.default_backend()}, "
      f"devices {jax.devices()}")
for mod in ("gymnax", "craftax", "envpool", "crafter"):
  try:
    __import__(mod)
    print(f"import {mod}: ok")
  except Exception as e:  # noqa: BLE001
    print(f"import {mod}: {type(e).__name__}: {e}")
EOF
echo "install done after $(($(date +%s) - START_S)) s"

SHARED="${SHARED:-$BUNDLE/shared}"
[[ -f "$SHARED/rules/disco_103.npz" ]] || SHARED=../shared
if [[ -f "$BUNDLE/procgen_assets.tar" ]]; then
  mkdir -p "$SCRATCH/envpool_assets" && tar -C "$SCRATCH/envpool_assets" -xf "$BUNDLE/procgen_assets.tar"
  export ENVPOOL_ASSETS_PATH="$SCRATCH/envpool_assets"
fi

step() {  # step KIND NAME SECONDS ARGS...: one measured step (KIND run|procgen), at most SECONDS
  local kind="$1" name="$2" limit="$3"; shift 3
  local left=$((BUDGET - ($(date +%s) - START_S) - 10))
  if ((left < 15)); then
    echo "$name: skipped (the check's $BUDGET s are spent)"
    printf '{"name": "%s", "rc": -1, "error": "skipped: budget spent", "wall_s": 0}\n' "$name" \
      >> "$OUT_DIR/results.jsonl"
    return 0
  fi
  ((limit > left)) && limit=$left
  timeout --kill-after=5 "$limit" "$PY" benchmarks/gpu_check_steps.py "$kind" "$name" "$OUT_DIR" -- "$@"
  local rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "$name: stopped after $limit s"
    printf '{"name": "%s", "rc": %d, "error": "timed out after %s s", "wall_s": %s}\n' \
      "$name" "$rc" "$limit" "$limit" >> "$OUT_DIR/results.jsonl"
  fi
  return 0
}

# --- sizes of each mode ---------------------------------------------------------------------
if [[ "$MODE" == full ]]; then
  GOLDEN_GLOB="*.npz"
  CATCH=(--seeds 8 --repeats 3)
  MINATAR=(--seeds 16 --repeats 2 --chunk 2)
  CRAFTAX=(--seeds 2 --repeats 2 --chunk 2)
  SOKOBAN=(--seeds 2 --repeats 2 --chunk 2)
  PROCGEN=(--task coinrun --seeds 2 --repeats 2)
  SYNTH=()  # the disco protocol: 192 trajectories of 29 steps
  RUN=(catch --steps 5800 --set train.chunk=25)
  ALLOW=()
  L_VERIFY=60 L_CATCH=45 L_MINATAR=75 L_PPO=50 L_CRAFTAX=60 L_SOKOBAN=40 L_PROCGEN=60
  L_SYNTH=60 L_RUN=30
else
  GOLDEN_GLOB="rule_step_T5_B3_A4_s0.npz"
  TINY=(--repeats 1 --chunk 1 --set train.num_envs=4 --set train.rollout_len=5
    --set train.min_buffer=1 --set train.sample_entries=1)
  CATCH=(--seeds 2 "${TINY[@]}" --set agent.torso_hidden=[16])
  MINATAR=(--seeds 2 "${TINY[@]}" --set agent.conv_channels=[4] --set agent.conv_hidden=16)
  CRAFTAX=(--seeds 1 "${TINY[@]}" --set agent.torso_hidden=[16])
  SOKOBAN=(--seeds 1 "${TINY[@]}" --set agent.conv_channels=[4] --set agent.conv_hidden=16)
  PROCGEN=(--task coinrun --seeds 1 --repeats 1 --protocol easy-200 --set train.num_envs=4
    --set train.rollout_len=5 --set train.buffer_capacity=4 --set train.sample_entries=1
    --set train.min_buffer=1 --set agent.impala_channels=[4] --set agent.impala_hidden=16)
  SYNTH=(--protocol easy-200 --set train.num_envs=4 --set train.rollout_len=5
    --set train.sample_entries=1 --set agent.impala_channels=[4] --set agent.impala_hidden=16)
  RUN=(catch --steps 600 --set train.min_buffer=4 --set train.sample_entries=4
    --set train.chunk=4 --set agent.torso_hidden=[16])
  ALLOW=(--allow-cpu)
  L_VERIFY=300 L_CATCH=300 L_MINATAR=600 L_PPO=300 L_CRAFTAX=600 L_SOKOBAN=300 L_PROCGEN=300
  L_SYNTH=300 L_RUN=200
fi

# --- the steps, most wanted first ---------------------------------------------------------------
step run doctor 30 doctor --json
RULE=actor_critic
if [[ -f "$SHARED/rules/disco_103.npz" ]]; then
  step run pull 30 rules pull disco103 --file "$SHARED/rules/disco_103.npz"
  RULE=disco103
  # shellcheck disable=SC2206
  GOLDEN=("$SHARED"/golden/$GOLDEN_GLOB)
  step run verify "$L_VERIFY" rules verify disco103 --json --golden "${GOLDEN[@]}"
else
  echo "no Disco103 weights in $BUNDLE/shared or ../shared: verify skipped, actor_critic used"
fi
step run bench_catch "$L_CATCH" bench catch --rule "$RULE" --json "${CATCH[@]}"
step run bench_minatar_disco103 "$L_MINATAR" bench minatar --rule "$RULE" --json "${MINATAR[@]}"
step run bench_minatar_ppo "$L_PPO" bench minatar --rule ppo --json "${MINATAR[@]}"
step run bench_craftax "$L_CRAFTAX" bench craftax-classic --rule "$RULE" --json "${CRAFTAX[@]}"
step procgen procgen_synthetic "$L_SYNTH" --rule "$RULE" "${SYNTH[@]}"
if "$PY" -c "import envpool.procgen as p; p.ProcgenEnvSpec" 2>/dev/null; then
  step run bench_procgen "$L_PROCGEN" bench procgen --rule "$RULE" --json "${PROCGEN[@]}"
else
  echo "EnvPool's ProcGen does not load here (no envpool, assets or Qt5): synthetic frames only"
fi
BOXOBAN="$SCRATCH/boxoban-src"
if [[ -f "$SHARED/boxoban.tar.xz" ]]; then
  mkdir -p "$BOXOBAN" && tar -C "$BOXOBAN" -xJf "$SHARED/boxoban.tar.xz"
  step run data_boxoban 30 data pull boxoban --from "$BOXOBAN/boxoban"
elif [[ -d "$SHARED/boxoban" ]]; then
  step run data_boxoban 30 data pull boxoban --from "$SHARED/boxoban"
fi
step run bench_sokoban "$L_SOKOBAN" bench sokoban --rule "$RULE" --json "${SOKOBAN[@]}"

# The same run twice, each into a fresh results folder: cold (it compiles and fills the
# persistent cache), then warm (its second start: the cache's saving is cold - warm).
NO_CKPT=(--checkpoint-every 1000000 --checkpoint-minutes 1000000)
step run run_cold "$L_RUN" run "${RUN[@]}" --rule "$RULE" --seeds 1 --out "$SCRATCH/cold" \
  --json "${NO_CKPT[@]}" "${ALLOW[@]}"
step run run_warm "$L_RUN" run "${RUN[@]}" --rule "$RULE" --seeds 1 --out "$SCRATCH/warm" \
  --json "${NO_CKPT[@]}" "${ALLOW[@]}"

"$PY" benchmarks/gpu_check_steps.py table "$OUT_DIR" > "$OUT_DIR/table.md"
cat "$OUT_DIR/table.md"
echo "gpu_check ($MODE) done at $(date -u +%FT%TZ) after $(($(date +%s) - START_S)) s;" \
  "table in $OUT_DIR/table.md"
