/* score.c - see score.h.  The kernel body is written once in score_impl.h and
 * expanded for float (SGEMM) and double (DGEMM). */
#include "score.h"
#include "dnm_blas.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

/* Image rows per tile (dnm_image_tile_rows): 128 below N = 1024 (so that a
 * batch of a few hundred images still keeps every thread busy), 256 up to
 * 4096, 512 up to 16384, DNM_IMG_TILE_BIG beyond (bigger tiles repack the
 * label tile less often: OpenBLAS packs both operands on every call).  The choice depends on N only,
 * never on the thread count, and tile starts are always multiples of
 * DNM_IMG_TILE (what dnm.dask aligns its chunks to). */
#ifndef DNM_IMG_TILE
#define DNM_IMG_TILE 256
#endif
#ifndef DNM_IMG_TILE_BIG
#define DNM_IMG_TILE_BIG 1024
#endif
#ifndef DNM_LAB_TILE
#define DNM_LAB_TILE 1024
#endif
#ifndef DNM_TICK_WORK
#define DNM_TICK_WORK 1073741824.0 /* 2^30 multiply-adds: most work between two Ctrl-C checks */
#endif

const int dnm_img_tile = DNM_IMG_TILE;

int64_t dnm_image_tile_rows(int64_t n)
{
    return n >= 16 * DNM_IMG_TILE_BIG ? DNM_IMG_TILE_BIG
           : n >= 16 * DNM_IMG_TILE ? 2 * DNM_IMG_TILE
           : n >= 4 * DNM_IMG_TILE ? DNM_IMG_TILE : DNM_IMG_TILE / 2;
}

/* Group j's term of an image's NegLabel / DNM score, from its ID accumulators
 * (mS, lsS = log sS) and the group's (mg, sg); the score is the sum of the terms
 * in group order, then dnm_score_finish_groups. */
double dnm_score_group_term(const dnm_score_params *p, int64_t C, double mS, double lsS,
                            double mg, double sg, int64_t *floored)
{
    /* differences of maxima are divided by T (not each maximum): no inf - inf for tiny T */
    const double T = p->temperature;
    if (p->kind == DNM_SCORE_NEGLABEL) {
        double d = (mg - mS) / T + log(sg) - lsS; /* ln(N_j / S) */
        return 1.0 / (1.0 + exp(d));              /* S / (S + N_j); exp overflow -> 0 */
    }
    /* DNM: S / Z_j = 1 / (1 - r + rho_j / tau), rho_j = N_j / S. */
    const int64_t Q = p->group_size;
    const double tau = p->tau;
    const double r = (double)Q * (1.0 - tau) / (tau * (double)C);
    double rho = exp((mg - mS) / T + log(sg) - lsS);
    double zr;
    if (p->guard == DNM_GUARD_DCL) {
        double deb = (rho / (double)Q - (1.0 - tau) / (double)C) / tau; /* debiased mean / S */
        double lo = exp((-1.0 - mS) / T - lsS);                         /* exp(-1/T) / S */
        zr = 1.0 + (double)Q * (deb > lo ? deb : lo);
    } else {
        zr = (1.0 - r) + rho / tau;
        if (!(zr > DNM_FLOOR)) {
            zr = DNM_FLOOR;
            (*floored)++;
        }
    }
    return 1.0 / zr;
}

double dnm_score_finish_groups(const dnm_score_params *p, int64_t C, double acc)
{
    const double G = (double)p->groups;
    return p->kind == DNM_SCORE_NEGLABEL ? acc / G : acc / (G * (double)C);
}

/* Turn the accumulators of one image into its score.  lnS and lnN[j] are
 * log-sums of exp(logit / T) over the ID labels and over group j. */
double dnm_score_finish_row(const dnm_score_params *p, int64_t C, double mS, double sS,
                         const double *mg, const double *sg, int64_t *floored)
{
    const double T = p->temperature;
    switch (p->kind) {
    case DNM_SCORE_MCM:
        return 1.0 / sS; /* the max logit contributes exp(0) = 1 to sS */
    case DNM_SCORE_MAXLOGIT:
        return mS;
    case DNM_SCORE_ENERGY:
        return mS + T * log(sS);
    default:
        break;
    }
    const double lsS = log(sS);
    double acc = 0.0;
    for (int64_t j = 0; j < p->groups; j++)
        acc += dnm_score_group_term(p, C, mS, lsS, mg[j], sg[j], floored);
    return dnm_score_finish_groups(p, C, acc);
}

/* See score.h. */
int64_t dnm_score_segments(int64_t j0, int64_t w, int64_t C, int64_t Q, int64_t *soff,
                           int64_t *slen, int64_t *sacc)
{
    int64_t nseg = 0;
    for (int64_t j = j0; j < j0 + w; nseg++) {
        int64_t end, acc;
        if (j < C) {
            end = C;
            acc = 0;
        } else {
            const int64_t g = (j - C) / Q;
            end = C + (g + 1) * Q;
            acc = 1 + g;
        }
        if (end > j0 + w) end = j0 + w;
        if (soff) {
            soff[nseg] = j - j0;
            slen[nseg] = end - j;
            sacc[nseg] = acc;
        }
        j = end;
    }
    return nseg;
}

int dnm_score_close(const dnm_score_params *p, int64_t floored, dnm_tick_fn tick, void *ctx,
                    int64_t total, dnm_error *err)
{
    int rc = err->code;
    if (rc == DNM_OK && p->kind == DNM_SCORE_DNM && p->guard == DNM_GUARD_RAISE && floored > 0)
        err->code = rc = DNM_EGUARD;
    if (rc == DNM_OK && tick) tick(ctx, total, total);
    return rc;
}

/* ---- float instance ---- */
#define REAL float
#define SUF f
#define GEMM DNM_BLAS(cblas_sgemm)
#define PACK dnm_pack_rows_f
#define GATHER dnm_gather_rows_f
#define FOLD_ROW dnm_fold_row_f
#include "score_impl.h"
#undef REAL
#undef SUF
#undef GEMM
#undef PACK
#undef GATHER
#undef FOLD_ROW

/* ---- double instance ---- */
#define REAL double
#define SUF d
#define GEMM DNM_BLAS(cblas_dgemm)
#define PACK dnm_pack_rows_d
#define GATHER dnm_gather_rows_d
#define FOLD_ROW dnm_fold_row_d
#include "score_impl.h"

int dnm_score(const dnm_matrix *images, const dnm_matrix *id, const dnm_matrix *neg,
              const dnm_score_params *p, double *out, int64_t *n_floored, int nthreads,
              dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    int use_double = images->dtype == DNM_F64 || id->dtype == DNM_F64 ||
                     (neg && p->groups > 0 && neg->dtype == DNM_F64);
    dnm_error_reset(err);
    *n_floored = 0;
    const int k = use_double ? DNM_KERNEL_BLAS : dnm_kernel_resolve(p->kernel);
    if (k < 0) {
        err->code = DNM_EDOMAIN;
        return DNM_EDOMAIN;
    }
    int nt = dnm_threads_begin(nthreads);
    int rc = use_double ? score_d(images, id, neg, p, out, n_floored, nt, tick, tick_ctx, err)
             : k == DNM_KERNEL_AVX512
                 ? dnm_score_f_avx512(images, id, neg, p, out, n_floored, nt, tick, tick_ctx, err)
             : k == DNM_KERNEL_AVX2
                 ? dnm_score_f_avx2(images, id, neg, p, out, n_floored, nt, tick, tick_ctx, err)
                 : score_f(images, id, neg, p, out, n_floored, nt, tick, tick_ctx, err);
    dnm_threads_end();
    return rc;
}

int dnm_kernel_resolve(int kernel)
{
    switch (kernel) {
    case DNM_KERNEL_AUTO:
        return dnm_have_avx512() ? DNM_KERNEL_AVX512
               : dnm_have_avx2() ? DNM_KERNEL_AVX2 : DNM_KERNEL_BLAS;
    case DNM_KERNEL_BLAS: return DNM_KERNEL_BLAS;
    case DNM_KERNEL_AVX512: return dnm_have_avx512() ? kernel : -1;
    case DNM_KERNEL_AVX2: return dnm_have_avx2() ? kernel : -1;
    default: return -1;
    }
}

int dnm_kernel_nr(int resolved)
{
    return resolved == DNM_KERNEL_AVX512 ? DNM_NR_AVX512
           : resolved == DNM_KERNEL_AVX2 ? DNM_NR_AVX2 : 0;
}

int dnm_pack_labels(const dnm_matrix *id, const dnm_matrix *neg, const dnm_score_params *p,
                    float *out, int nthreads, dnm_error *err)
{
    dnm_error_reset(err);
    const int k = dnm_kernel_resolve(p->kernel);
    if (k != DNM_KERNEL_AVX512 && k != DNM_KERNEL_AVX2) {
        err->code = DNM_EDOMAIN;
        return DNM_EDOMAIN;
    }
    int nt = dnm_threads_begin(nthreads);
    int rc = k == DNM_KERNEL_AVX512 ? dnm_pack_labels_avx512(id, neg, p, out, nt, err)
                                    : dnm_pack_labels_avx2(id, neg, p, out, nt, err);
    dnm_threads_end();
    return rc;
}
