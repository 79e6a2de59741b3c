// Column sums in an order fixed by the shape alone (so any thread count gives the same
// bits), written so that the adds vectorize whatever the column count: the bias
// gradients of dense (db over a batch) and of the convolutions (over pixels).
#pragma once

#include <algorithm>
#include <cstdint>

namespace fusedlayers {

// Adds the rows of v [rows, n] into its first row pairwise: contiguous adds that
// vectorize whatever n, in an order fixed by the shape.
template <typename Acc>
void fold_rows(Acc* v, int64_t rows, int64_t n) {
  while (rows > 1) {
    const int64_t half = rows / 2, upper = rows - half;
    const Acc* top = v + upper * n;
    for (int64_t e = 0; e < half * n; ++e) v[e] += top[e];
    rows = upper;
  }
}

// sums[c] += the sum of column c of v [rows, n], a chunk of whole rows (about
// kColumnSumChunk elements) folded pairwise at a time and the chunk sums added in order.
// With few columns (a convolution's 1 or 3 output channels) a plain loop would be one
// dependent add per element.
inline constexpr int64_t kColumnSumChunk = 1024;
template <typename Acc>
void add_column_sums(const Acc* v, int64_t rows, int64_t n, Acc* sums) {
  if (n >= kColumnSumChunk) {
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = 0; c < n; ++c) sums[c] += v[r * n + c];
    return;
  }
  const int64_t chunk_rows = kColumnSumChunk / n;
  Acc chunk[kColumnSumChunk];
  for (int64_t r = 0; r < rows; r += chunk_rows) {
    const int64_t count = std::min(chunk_rows, rows - r);
    std::copy(v + r * n, v + (r + count) * n, chunk);
    fold_rows(chunk, count, n);
    for (int64_t c = 0; c < n; ++c) sums[c] += chunk[c];
  }
}

}  // namespace fusedlayers
