/* mining.c - see mining.h.
 *
 * The kernels are written once in mining_impl.h and expanded for float
 * (SGEMM, or dnm's own kernel) and double (DGEMM) with REAL / SUF / GEMM /
 * PACK / IS_FLOAT defined, as score.c does with score_impl.h.
 */

#include "mining.h"
#include "mining_util.h"
#include "score.h" /* the float kernel choice (DNM_KERNEL_*) */
#include "dnm_blas.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

/* Candidate rows per tile of the quantile kernel (halved while the tile of
 * cosines would exceed DNM_QNT_MAXELEMS). */
#ifndef DNM_QNT_ROWS
#define DNM_QNT_ROWS 256
#endif
#define DNM_QNT_MAXELEMS (1 << 22)
/* Raw float rows are multiplied as they are (no normalised copy) unless some
 * norm exceeds this, where float products could overflow. */
#define DNM_RAW_FLOAT_MAXNORM 1e15
/* The same for double: above it a raw product r_i r_j cos_ij could overflow (and
 * 1/(r_i r_j) underflow), so the rows are normalised in the copy. */
#define DNM_RAW_DOUBLE_MAXNORM 1e150

const int dnm_knn_tile = DNM_KNN_TILE;

#if defined(__GNUC__) && defined(__x86_64__) && !defined(DNM_NO_CLONES)
#define DNM_MCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DNM_MCLONES
#endif

/* ---- float instance ---- */
#define REAL float
#define SUF f
#define GEMM DNM_BLAS(cblas_sgemm)
#define PACK dnm_pack_rows_f
#define IS_FLOAT 1
#include "mining_impl.h"
#undef REAL
#undef SUF
#undef GEMM
#undef PACK
#undef IS_FLOAT

/* ---- double instance ---- */
#define REAL double
#define SUF d
#define GEMM DNM_BLAS(cblas_dgemm)
#define PACK dnm_pack_rows_d
#define IS_FLOAT 0
#include "mining_impl.h"
#undef REAL
#undef SUF
#undef GEMM
#undef PACK
#undef IS_FLOAT

int dnm_knn_log_distance_rows(const dnm_matrix *x, int64_t k, int64_t row_start,
                              int64_t row_stop, double *rho, int kernel, int nthreads,
                              dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    dnm_error_reset(err);
    if (x->rows < 1 || x->cols < 1 || k < 0 || k >= x->rows) {
        dnm_error_set(err, DNM_EDOMAIN, 0, -1, -1, (double)k);
        return DNM_EDOMAIN;
    }
    if (row_start < 0 || row_start >= row_stop || row_stop > x->rows) {
        dnm_error_set(err, DNM_EDOMAIN, 0, row_start, row_stop, (double)k);
        return DNM_EDOMAIN;
    }
    const int kr = x->dtype == DNM_F64 ? DNM_KERNEL_BLAS : dnm_kernel_resolve(kernel);
    if (kr < 0) {
        dnm_error_set(err, DNM_EDOMAIN, -1, -1, -1, (double)kernel);
        return DNM_EDOMAIN;
    }
    int nt = dnm_threads_begin(nthreads);
    int rc = x->dtype == DNM_F64
                 ? knn_d(x, k, row_start, row_stop, rho, kr, nt, tick, tick_ctx, err)
                 : knn_f(x, k, row_start, row_stop, rho, kr, nt, tick, tick_ctx, err);
    dnm_threads_end();
    return rc;
}

int dnm_knn_log_distance(const dnm_matrix *x, int64_t k, double *rho, int kernel, int nthreads,
                         dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    return dnm_knn_log_distance_rows(x, k, 0, x->rows, rho, kernel, nthreads, tick, tick_ctx,
                                     err);
}

int dnm_neglabel_closeness(const dnm_matrix *id, const dnm_matrix *cand, double percentile,
                           double max_cut, double *out, int kernel, int nthreads,
                           dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    dnm_error_reset(err);
    if (id->rows < 1 || cand->rows < 1 || id->cols < 1 || id->cols != cand->cols ||
        !(percentile >= 0.0 && percentile <= 1.0)) {
        dnm_error_set(err, DNM_EDOMAIN, -1, -1, -1, percentile);
        return DNM_EDOMAIN;
    }
    int use_double = id->dtype == DNM_F64 || cand->dtype == DNM_F64;
    const int kr = use_double ? DNM_KERNEL_BLAS : dnm_kernel_resolve(kernel);
    if (kr < 0) {
        dnm_error_set(err, DNM_EDOMAIN, -1, -1, -1, (double)kernel);
        return DNM_EDOMAIN;
    }
    int nt = dnm_threads_begin(nthreads);
    int rc = use_double
                 ? closeness_d(id, cand, percentile, max_cut, out, kr, nt, tick, tick_ctx, err)
                 : closeness_f(id, cand, percentile, max_cut, out, kr, nt, tick, tick_ctx, err);
    dnm_threads_end();
    return rc;
}

