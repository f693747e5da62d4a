/* tta.h - kernels of the test-time adaptive scores (AdaNeg, TANL). */
#ifndef DNM_TTA_H
#define DNM_TTA_H
#include "common.h"

/* Softmax rows: for every image i (rows of `images`, L2-normalised while
 * packed) and every label j (rows of `labels`, used as given: the caller
 * normalises them), z_ij = <x_i, l_j> / T and
 *     out[i * L + j] = exp(z_ij - max_j z_ij) / sum_j exp(z_ij - max_j z_ij),
 * in double (the products in float when labels are float32, in double when
 * they are float64; labels must be C-contiguous).  The logits are made by
 * single-threaded GEMM tiles of DNM_TTA_IT images x DNM_TTA_LT labels on a
 * fixed grid and every row's epilogue is one sequential pass: the result does
 * not depend on the thread count.  NaN/Inf or zero image rows are errors
 * (which = 0).  Memory: out itself plus one tile buffer per thread. */
int dnm_softmax_rows(const dnm_matrix *images, const dnm_matrix *labels, double temperature,
                     double *out, int nthreads, dnm_tick_fn tick, void *tick_ctx,
                     dnm_error *err);

#endif
