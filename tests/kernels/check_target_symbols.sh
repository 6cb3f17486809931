#!/usr/bin/env bash
# Every object of a per-target copy of the CPU engine (kernels/cpu/target.h) must define only
# symbols inside its own namespace seqpar::kernels::cpu::<target>: a shared inline function or
# template instance (std::string code, say) could be resolved by the linker to another
# target's copy, compiled for instructions this CPU may lack.
#   check_target_symbols.sh TARGET OBJECT...
set -euo pipefail
target=$1; shift
bad=$(nm -C --defined-only "$@" | awk '$2 ~ /^[TWVDBRu]$/ { $1 = ""; $2 = ""; print }' |
      grep -v "^  seqpar::kernels::cpu::${target}::" | grep -v "DW.ref.__gxx_personality_v0" || true)
if [ -n "$bad" ]; then
  echo "objects of CPU target '$target' define symbols outside its namespace:"
  echo "$bad" | head -n 20
  exit 1
fi
echo "ok: $# objects of CPU target '$target' define only seqpar::kernels::cpu::${target}:: symbols"
