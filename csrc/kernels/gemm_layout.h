// The packed-panel layout's one type-dependent parameter, shared by the engine's
// interface (gemm.h: PackSource) and its per-ISA kernels (gemm_kernels.h).
#pragma once

namespace fusedlayers {

// How many consecutive depth elements a packed micro-panel keeps side by side: 1 for
// float and double; 2 for bfloat16, whose panels are pair-interleaved (the VNNI
// layout vdpbf16ps and AMX read: element (r, d) at [d / 2][r][d % 2]).
template <typename T>
inline constexpr int kDepthGroup = sizeof(T) == 2 ? 2 : 1;

}  // namespace fusedlayers
