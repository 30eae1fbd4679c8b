#!/usr/bin/env bash
# The README's ablation table: every variant (trained once into runs/ablation/, reused after),
# the ensembles, homology-first rows and paired differences. ~2 h on 2 cores the first time.
set -euo pipefail
cd "$(dirname "$0")/.."
P="probe, lbfgs (scikit-learn, C=1)"
M="layers MLP + hierarchy unweighted"
A="attention + hierarchy unweighted"
C="coevo (maps + layers) + hierarchy unweighted"
G="graph (contact-graph network + layers) + hierarchy unweighted"
python benchmarks/fold_ablation.py \
 --variants "probe (all-layer means, linear)|$P|probe, lbfgs (scikit-learn, C=0.3)|layers MLP|layers MLP + hierarchy|layers MLP + hierarchy + class smoothing|topo (contact topology + layers) + hierarchy|coevo (maps + layers) + hierarchy|$M|$M seed 1|$M seed 2|attention + hierarchy unweighted|coevo (maps + layers) + hierarchy unweighted|$G" \
 --neighbours "$M" \
 --ensemble "ensemble probe + MLP=$P|$M" \
 --ensemble "ensemble probe + 3 MLP seeds=$P|$M|$M seed 1|$M seed 2" \
 --ensemble "default: probe + 3 MLP seeds + attention=$P|$M|$M seed 1|$M seed 2|$A" \
 --ensemble "default + maps MLP offered=$P|$M|$M seed 1|$M seed 2|$A|$C" \
 --ensemble "ensemble probe + maps MLP=$P|$C" \
 --alignment "$P|ensemble probe + MLP|ensemble probe + 3 MLP seeds|default: probe + 3 MLP seeds + attention|ensemble probe + maps MLP" \
 --compare "ensemble probe + maps MLP|ensemble probe + MLP" \
 --compare "$G|$M" \
 --compare "ensemble probe + maps MLP + homology|ensemble probe + MLP + homology" \
 --compare "default + maps MLP offered|default: probe + 3 MLP seeds + attention" \
 --compare "default: probe + 3 MLP seeds + attention|$P" \
 --compare "default: probe + 3 MLP seeds + attention + homology|$P"
