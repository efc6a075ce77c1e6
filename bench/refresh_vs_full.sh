#!/usr/bin/env bash
# A refresh (warm start from the serving version) beside a full retrain, both
# at the full schedule, on MovieLens through the event store: the older 80 %
# trains the serving version (`trainer train --schedule full`, published and
# promoted by hand), the newest 20 % arrive, then `trainer retrain
# --warm-start --warm-epochs 3` and `trainer retrain` (from scratch) each
# judge a candidate on the same held-out window. Prints seconds and NDCG@20.
# Usage: bench/refresh_vs_full.sh [work dir]   (after `cargo xtask test` or `train`)
set -euo pipefail
cd "$(dirname "$0")/.."
T=target/debug/trainer
O=target/debug/origin
W=${1:-/tmp/edgerec-refresh-vs-full}
rm -rf $W && mkdir -p $W
$T import --format movielens --input data/ml-100k --dataset movielens --to sqlite:$W/e.sqlite --until-quantile 0.8
s=$(date +%s)
$T train --events sqlite:$W/e.sqlite --dataset movielens --out $W/v1 --schedule full 2> $W/v1.log
echo "v1 full train: $(( $(date +%s) - s )) s"
V=$($O registry --registry $W/reg publish --from $W/v1 --status approved --reason "full schedule on the older 80 %" | python3 -c "import json,sys;print(json.load(sys.stdin)['version'])")
$O registry --registry $W/reg promote --version $V
$T import --format movielens --input data/ml-100k --dataset movielens --to sqlite:$W/e.sqlite --from-quantile 0.8
cp -r $W/reg $W/reg-warm
s=$(date +%s)
$T retrain --events sqlite:$W/e.sqlite --registry $W/reg-warm --dataset movielens --schedule full --warm-start --warm-epochs 3 > $W/warm.json 2> $W/warm.log
echo "warm refresh: $(( $(date +%s) - s )) s"
s=$(date +%s)
$T retrain --events sqlite:$W/e.sqlite --registry $W/reg --dataset movielens --schedule full > $W/full.json 2> $W/full.log
echo "full retrain: $(( $(date +%s) - s )) s"
for f in warm full; do python3 -c "
import json;d=json.load(open('$W/$f.json'));print('$f', d['approved'], d['window_users'], round(d['candidate']['metrics']['ndcg_at_20'],4), round(d['serving']['metrics']['ndcg_at_20'],4), d['seconds'], d['reasons'])"; done
