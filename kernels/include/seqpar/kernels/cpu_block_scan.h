// CPU entry points of the 2x2 block scan (block_scan_params.h): the scan engine's threading,
// look-back tiles and per-target builds (cpu_scan.h), with a 2x2 map per step; the target is
// the one SEQPAR_CPU_CAPABILITY and the CPU choose for every scan.
#pragma once

#include "seqpar/kernels/block_scan_params.h"

namespace seqpar::kernels::cpu {

void block_scan_forward(const BlockScanForwardParams& params);
void block_scan_backward(const BlockScanBackwardParams& params);
void block_scan_summary(const BlockScanSummaryParams& params);

}  // namespace seqpar::kernels::cpu
