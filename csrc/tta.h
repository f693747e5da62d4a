/* tta.h - kernels of the test-time adaptive scores (AdaNeg, TANL). */
#ifndef DNM_TTA_H
#define DNM_TTA_H
#include "common.h"

typedef struct {
    double temperature;
    int64_t n_id;          /* columns [0, n_id) are the ID labels */
    int64_t groups;        /* G (0: no group sums) */
    int64_t group_size;    /* Q */
    const int64_t *index;  /* G * Q columns, relative to n_id: group g = index[g*Q .. g*Q+Q) */
} dnm_tta_params;

/* Softmax rows: for every image i (rows of `images`, L2-normalised while
 * packed) and every label j (rows of `labels`, used as given: the caller
 * normalises them), z_ij = <x_i, l_j> / T and
 *     P_ij = exp(z_ij - max_j z_ij) / sum_j exp(z_ij - max_j z_ij)
 * in double (the products in float when labels are float32, in double when
 * they are float64; labels must be C-contiguous).  Outputs, each optional
 * (NULL): rows[i * L + j] = P_ij; id_mass[i] = sum_{j < n_id} P_ij;
 * group_mass[i * G + g] = sum over group g of P_{i, n_id + index[.]}.
 *
 * The logits are single-threaded GEMM tiles of DNM_TTA_IT images on a fixed
 * grid (one tile per task, all labels in chunks of DNM_TTA_LT), the epilogue a
 * fixed sequence per row (exp by one polynomial with correctly rounded fma,
 * sums in 8 fixed lanes): the result does not depend on the thread count or
 * the CPU.  NaN/Inf or zero image rows are errors (which = 0).  Memory: the
 * outputs plus, per thread, one tile of logits (DNM_TTA_IT x L doubles when
 * rows is NULL). */
int dnm_softmax_rows(const dnm_matrix *images, const dnm_matrix *labels, const dnm_tta_params *p,
                     double *rows, double *id_mass, double *group_mass, int nthreads,
                     dnm_tick_fn tick, void *tick_ctx, dnm_error *err);

#endif
