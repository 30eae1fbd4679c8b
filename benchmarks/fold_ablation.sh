#!/usr/bin/env bash
# The README's ablation table: every variant (trained once into runs/ablation/, reused after),
# the ensembles, homology-first rows and paired differences. ~2 h on 2 cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
P="probe, lbfgs (scikit-learn, C=1)"
M="layers MLP + hierarchy unweighted"
python benchmarks/fold_ablation.py \
 --variants "probe (all-layer means, linear)|$P|probe, lbfgs (scikit-learn, C=0.3)|layers MLP|layers MLP + hierarchy|layers MLP + hierarchy + class smoothing|topo (contact topology + layers) + hierarchy|coevo (maps + layers) + hierarchy|$M|$M seed 1|$M seed 2|attention + hierarchy unweighted|coevo (maps + layers) + hierarchy unweighted" \
 --neighbours "$M" \
 --ensemble "ensemble probe + MLP=$P|$M" \
 --ensemble "ensemble probe + 3 MLP seeds=$P|$M|$M seed 1|$M seed 2" \
 --ensemble "ensemble probe + maps MLP=$P|coevo (maps + layers) + hierarchy unweighted" \
 --ensemble "ensemble probe + MLP + maps MLP=$P|$M|coevo (maps + layers) + hierarchy unweighted" \
 --alignment "$P|ensemble probe + MLP|ensemble probe + 3 MLP seeds|ensemble probe + maps MLP|ensemble probe + MLP + maps MLP" \
 --compare "ensemble probe + maps MLP|ensemble probe + MLP" \
 --compare "ensemble probe + MLP + maps MLP|ensemble probe + MLP" \
 --compare "ensemble probe + maps MLP + homology|ensemble probe + MLP + homology" \
 --compare "ensemble probe + MLP|$P" \
 --compare "ensemble probe + 3 MLP seeds|$P"
