#!/usr/bin/env bash
# Runs the test tiers and times each one. Usage: tests/run_tiers.sh all|html|unit|papermill|nbval|browser
# Reports (JUnit XML) go to _build/test-reports/; ledgers written by the runs go to temporary folders.
set -uo pipefail
cd "$(dirname "$0")/.."
BIN=.venv/bin
REPORTS=_build/test-reports
mkdir -p "$REPORTS"
export REC_LIB_PROGRESS=0
export SE_AVOID_STATS=true SE_OFFLINE=true  # selenium: no usage statistics, no downloads
# Pinned numerics (rec_lib.numerics) for every tier and every kernel it starts.
eval "$("$BIN/python" -m rec_lib numerics --shell)"
tiers=("$@")
[ "${tiers[0]:-all}" = all ] && tiers=(html unit papermill nbval browser)

declare -A took status
run_tier() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== tier: $name"
  "$@"
  status[$name]=$?
  took[$name]=$((SECONDS - t0))
}

# nbval re-executes the committed notebooks (their ledgers go to a scratch folder),
# then the re-executed ledgers are compared with the committed results/*.json.
nbval_and_ledgers() {
  env REC_LIB_RESULTS="$scratch/nbval-results" "$BIN/python" -m pytest book -q \
    --nbval-lax --nbval-current-env --nbval-sanitize-with tests/nbval_sanitize.cfg \
    -p no:cacheprovider --junitxml="$REPORTS/nbval.xml"
  local rc=$?
  env REC_LIB_RERUN_RESULTS="$scratch/nbval-results" "$BIN/python" -m pytest tests/rerun -q \
    -p no:cacheprovider --junitxml="$REPORTS/rerun-ledgers.xml" || rc=1
  return $rc
}

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for tier in "${tiers[@]}"; do
  case $tier in
    html)      run_tier html make --no-print-directory html ;;
    unit)      run_tier unit "$BIN/python" -m pytest tests/unit -q --junitxml="$REPORTS/unit.xml" ;;
    papermill) run_tier papermill "$BIN/python" -m pytest tests/notebooks -q --junitxml="$REPORTS/papermill.xml" ;;
    nbval)     run_tier nbval nbval_and_ledgers ;;
    browser)   run_tier browser "$BIN/python" -m pytest tests/browser -q --junitxml="$REPORTS/browser.xml" ;;
    *) echo "unknown tier $tier (all|html|unit|papermill|nbval|browser)"; exit 2 ;;
  esac
done

echo
echo "=== summary (seconds per tier)"
rc=0
for tier in "${tiers[@]}"; do
  verdict=passed; [ "${status[$tier]}" -ne 0 ] && { verdict=FAILED; rc=1; }
  printf '  %-10s %6ss  %s\n' "$tier" "${took[$tier]}" "$verdict"
done
echo "reports: $(pwd)/$REPORTS/  book: $(pwd)/_build/html/index.html"
exit $rc
