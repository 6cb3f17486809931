// CPU entry points of the scan kernels. Multithreaded (a persistent pool sized by
// params.num_threads) and vectorized; see kernels/cpu/scan_engine.h for the scheduling.
#pragma once

#include "seqpar/kernels/scan_params.h"

namespace seqpar::kernels::cpu {

void scan_forward(const ScanForwardParams& params);
void scan_backward(const ScanBackwardParams& params);
void scan_summary(const ScanSummaryParams& params);

}  // namespace seqpar::kernels::cpu
