#!/usr/bin/env bash
# The device check of issue 15: one script, under 8 minutes on one H100/H200 with JAX+CUDA
# preinstalled. Measures `disco-eval doctor`; `bench` for catch, sokoban and procgen (steps/s,
# learner split, 1 vs N seeds); checkpoint overhead (a ProcGen run without and with
# checkpoints); the compile cache's second start; `rules verify disco103` on the device; peak
# device memory of each step. Prints a markdown table for docs/benchmarks.md.
#
#   bash benchmarks/gpu_check.sh               # the full check (a GPU box)
#   bash benchmarks/gpu_check.sh --cpu-smoke   # tiny settings, end to end on a CPU (< 3 min)
#
# Run it from the repository root. Everything it measures goes to $OUT (default: a new
# temporary folder): one NAME.json (exit status, wall seconds, device memory) and NAME.out
# (the command's JSON) per step, table.md, and the log. Run records and checkpoints go to a
# scratch folder outside $OUT (ProcGen checkpoints are ~1.5 GB each). Golden files and the
# Disco103 weights come from $SHARED (default ../shared, else ./shared); without them the
# verify step is skipped and the runs use actor_critic.
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
PY="${PYTHON:-python3}"
LOG="$OUT_DIR/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1
echo "gpu_check ($MODE) at $(date -u +%FT%TZ) in $PWD; results in $OUT_DIR"

# --- install: this checkout without touching the preinstalled JAX ----------------------------
# Only what is missing, one package at a time and without its dependencies (--no-deps), so that
# pip never replaces the machine's jax/jaxlib/CUDA wheels.
if ! "$PY" -c "import disco_eval" 2>/dev/null; then
  "$PY" -m pip install --quiet --no-deps -e . || echo "note: pip install -e . failed; using PYTHONPATH"
fi
for pair in typer:typer rich:rich click:click shellingham:shellingham \
  markdown_it:markdown-it-py mdurl:mdurl pygments:pygments flax:flax optax:optax \
  chex:chex msgpack:msgpack envpool:envpool; do
  mod="${pair%%:*}"; pkg="${pair#*:}"
  if ! "$PY" -c "import $mod" 2>/dev/null; then
    echo "installing missing $pkg (--no-deps)"
    "$PY" -m pip install --quiet --no-deps "$pkg" || echo "note: could not install $pkg"
  fi
done

# The whole check keeps within BUDGET seconds (default 450: 7.5 min): each step gets at most
# what is left, less a reserve for the table; a step with under 20 s left is skipped.
BUDGET="${GPU_CHECK_BUDGET_S:-450}"
step() {  # step NAME SECONDS disco-eval-args...: one measured command, at most SECONDS
  local name="$1" limit="$2"; shift 2
  local left=$((BUDGET - ($(date +%s) - START_S) - 10))
  if ((left < 20)); then
    echo "$name: skipped (the check's $BUDGET s are spent)"
    return 0
  fi
  ((limit > left)) && limit=$left
  timeout --kill-after=10 "$limit" "$PY" benchmarks/gpu_check_steps.py run "$name" "$OUT_DIR" -- "$@"
  local rc=$?
  if [[ $rc -eq 124 || $rc -eq 137 ]]; then
    echo "$name: stopped after $limit s"
    printf '{"name": "%s", "rc": %d, "error": "timed out after %s s", "wall_s": %s}\n' \
      "$name" "$rc" "$limit" "$limit" > "$OUT_DIR/$name.json"
  fi
  return 0
}

# --- sizes of each mode ---------------------------------------------------------------------
if [[ "$MODE" == full ]]; then
  CATCH=(--seeds 8)
  SOKOBAN=(--seeds 3)
  PROCGEN=(--task coinrun --seeds 2 --repeats 5)
  ITER=1856  # env steps per iteration of the disco protocol (64 envs x 29 steps)
  RUN=(procgen --tasks coinrun --steps $((40 * ITER)) --set train.chunk=10
    --set protocol.eval_episodes=8 --set protocol.eval_envs=8)
  CHECKPOINTS=3  # 4 chunks: a checkpoint after each but the last
  GOLDEN_GLOB="*.npz"
  LIMIT=150
  ALLOW=()
  SMALL_RULE=""  # the benches and runs use Disco103 when its weights are there
else
  TINY_JAX=(--set train.num_envs=4 --set train.rollout_len=5 --set train.min_buffer=1
    --set train.sample_entries=1)
  CATCH=(--seeds 2 --repeats 1 --chunk 1 "${TINY_JAX[@]}" --set agent.torso_hidden=[16])
  SOKOBAN=(--seeds 1 --repeats 1 --chunk 1 "${TINY_JAX[@]}" --set agent.conv_channels=[4]
    --set agent.conv_hidden=16)
  PROCGEN=(--task coinrun --seeds 1 --repeats 1 --protocol easy-200 --set train.num_envs=4
    --set train.rollout_len=5 --set train.buffer_capacity=4 --set train.sample_entries=1
    --set train.min_buffer=1 --set agent.impala_channels=[4] --set agent.impala_hidden=16)
  RUN=(catch --steps 600 --set train.min_buffer=4 --set train.sample_entries=4
    --set train.chunk=4 --set agent.torso_hidden=[16])
  CHECKPOINTS=2  # 11 iterations in chunks of 4: checkpoints after the first two
  GOLDEN_GLOB="rule_step_T5_B3_A4_s0.npz"
  LIMIT=120
  BUDGET="${GPU_CHECK_BUDGET_S:-900}"  # a loaded CPU: every step should still run
  ALLOW=(--allow-cpu)
  SMALL_RULE=actor_critic  # compiles in seconds on a CPU; verify still checks Disco103
fi

# --- the steps ------------------------------------------------------------------------------
step doctor 60 doctor --json

SHARED="${SHARED:-../shared}"
[[ -d "$SHARED" ]] || SHARED=./shared
RULE=actor_critic
if [[ -f "$SHARED/rules/disco_103.npz" ]]; then
  step pull 60 rules pull disco103 --file "$SHARED/rules/disco_103.npz"
  RULE=disco103
  # shellcheck disable=SC2206
  GOLDEN=("$SHARED"/golden/$GOLDEN_GLOB)
  step verify "$LIMIT" rules verify disco103 --json --golden "${GOLDEN[@]}"
else
  echo "no $SHARED/rules/disco_103.npz: verify skipped, runs and benches use actor_critic"
fi
RULE="${SMALL_RULE:-$RULE}"
if [[ -d "$SHARED/boxoban" ]]; then
  step data_boxoban 120 data pull boxoban --from "$SHARED/boxoban"
else
  step data_boxoban 120 data pull boxoban  # downloads: needs the network
fi

step bench_catch "$LIMIT" bench catch --rule "$RULE" --json "${CATCH[@]}"
step bench_sokoban "$LIMIT" bench sokoban --rule "$RULE" --json "${SOKOBAN[@]}"
step bench_procgen "$LIMIT" bench procgen --rule "$RULE" --json "${PROCGEN[@]}"

# The same run three times, each into a fresh results folder: cold (it compiles and fills the
# persistent cache), warm (its second start: the cache's saving is cold - warm), and warm with a
# checkpoint after every chunk (the checkpoints' cost is ckpt - warm).
NO_CKPT=(--checkpoint-every 1000000 --checkpoint-minutes 1000000)
step run_cold "$LIMIT" run "${RUN[@]}" --rule "$RULE" --seeds 1 --out "$SCRATCH/cold" --json \
  "${NO_CKPT[@]}" "${ALLOW[@]}"
step run_warm "$LIMIT" run "${RUN[@]}" --rule "$RULE" --seeds 1 --out "$SCRATCH/warm" --json \
  "${NO_CKPT[@]}" "${ALLOW[@]}"
step run_ckpt "$LIMIT" run "${RUN[@]}" --rule "$RULE" --seeds 1 --out "$SCRATCH/ckpt" --json \
  --checkpoint-every 1 --checkpoint-minutes 1000000 "${ALLOW[@]}"
echo "{\"checkpoints\": $CHECKPOINTS, \"mode\": \"$MODE\"}" > "$OUT_DIR/runs.json"
du -sh "$SCRATCH"/ckpt 2>/dev/null | sed 's/^/checkpointed run folder: /'

"$PY" benchmarks/gpu_check_steps.py table "$OUT_DIR" | tee "$OUT_DIR/table.md"
echo "gpu_check ($MODE) done at $(date -u +%FT%TZ); table in $OUT_DIR/table.md"
