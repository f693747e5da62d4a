/* tta.c - see tta.h. */
#include "tta.h"
#include "dnm_blas.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define DNM_TTA_IT 128  /* images per GEMM tile (fixed: the grid never depends on threads) */
#define DNM_TTA_LT 2048 /* labels per GEMM tile */

/* The epilogue of one row of cosines, in place: the differences to the row's maximum
 * are divided by T (never the cosines themselves: no inf - inf for tiny T). */
static void softmax_row(double *z, int64_t L, double invT)
{
    double m = -INFINITY;
    for (int64_t j = 0; j < L; j++) m = z[j] > m ? z[j] : m;
    double s = 0.0;
    for (int64_t j = 0; j < L; j++) {
        z[j] = exp((z[j] - m) * invT);
        s += z[j];
    }
    for (int64_t j = 0; j < L; j++) z[j] /= s;
}

int dnm_softmax_rows(const dnm_matrix *images, const dnm_matrix *labels, double temperature,
                     double *out, int nthreads, dnm_tick_fn tick, void *tick_ctx,
                     dnm_error *err)
{
    const int64_t N = images->rows, D = images->cols, L = labels->rows;
    const int dbl = labels->dtype == DNM_F64;
    err->code = DNM_OK;
    err->row = err->col = -1;
    err->which = -1;
    if (labels->cols != D || (labels->dtype != DNM_F32 && !dbl) ||
        labels->s1 != (ptrdiff_t)(dbl ? sizeof(double) : sizeof(float)) ||
        labels->s0 != labels->s1 * (ptrdiff_t)D) {
        err->code = DNM_EDOMAIN;
        return DNM_EDOMAIN;
    }
    double invT = 1.0 / temperature;
    if (!isfinite(invT)) invT = DBL_MAX;
    const int64_t ntiles = (N + DNM_TTA_IT - 1) / DNM_TTA_IT;
    const int64_t nchunks = (L + DNM_TTA_LT - 1) / DNM_TTA_LT;
    const int64_t ntasks = ntiles * nchunks;
    int nt = dnm_threads_begin(nthreads);
    if ((double)N * (double)L * (double)D < 1e7) nt = 1;
    volatile int stop = 0;
    int64_t done = 0;
    const size_t esz = dbl ? sizeof(double) : sizeof(float);
    /* the images normalised once, row-major, in the compute type */
    void *xb = malloc((size_t)(N > 0 ? N : 1) * (size_t)D * esz);
    if (!xb) {
        err->code = DNM_ENOMEM;
        dnm_threads_end();
        return DNM_ENOMEM;
    }
#pragma omp parallel num_threads(nt)
    {
        int64_t bad = -1;
#pragma omp for schedule(static)
        for (int64_t t = 0; t < ntiles; t++) {
            const int64_t r0 = t * DNM_TTA_IT, r1 = r0 + DNM_TTA_IT < N ? r0 + DNM_TTA_IT : N;
            const int rc = dbl ? dnm_pack_rows_d(images, r0, r1, (double *)xb + r0 * D, D, 1,
                                                 NULL, &bad)
                               : dnm_pack_rows_f(images, r0, r1, (float *)xb + r0 * D, D, 1,
                                                 NULL, &bad);
            if (rc != DNM_OK) dnm_error_record(err, rc, 0, bad);
        }
    }
    if (err->code != DNM_OK) {
        free(xb);
        dnm_threads_end();
        return err->code;
    }
#pragma omp parallel num_threads(nt)
    {
        float *sb = dbl ? NULL
                        : (float *)malloc((size_t)DNM_TTA_IT * DNM_TTA_LT * sizeof(float));
        if (!dbl && !sb) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t task = 0; task < ntasks; task++) {
            if (stop) continue;
            const int64_t t = task / nchunks, c = task % nchunks;
            const int64_t r0 = t * DNM_TTA_IT, nr = r0 + DNM_TTA_IT < N ? DNM_TTA_IT : N - r0;
            const int64_t j0 = c * DNM_TTA_LT, w = j0 + DNM_TTA_LT < L ? DNM_TTA_LT : L - j0;
            double *o = out + r0 * L + j0;
            if (dbl) {
                DNM_BLAS(cblas_dgemm)(DnmRowMajor, DnmNoTrans, DnmTrans, (int)nr, (int)w, (int)D,
                                      1.0, (const double *)xb + r0 * D, (int)D,
                                      (const double *)labels->data + j0 * D, (int)D, 0.0, o,
                                      (int)L);
            } else {
                DNM_BLAS(cblas_sgemm)(DnmRowMajor, DnmNoTrans, DnmTrans, (int)nr, (int)w, (int)D,
                                      1.0f, (const float *)xb + r0 * D, (int)D,
                                      (const float *)labels->data + j0 * D, (int)D, 0.0f, sb,
                                      (int)w);
                for (int64_t r = 0; r < nr; r++)
                    for (int64_t j = 0; j < w; j++)
                        o[r * L + j] = (double)sb[r * w + j];
            }
            dnm_tick_done(tick, tick_ctx, &done, ntasks + 1, &stop, err);
        }
        free(sb);
#pragma omp barrier
        if (!stop) {
#pragma omp for schedule(static)
            for (int64_t i = 0; i < N; i++) softmax_row(out + i * L, L, invT);
        }
    }
    free(xb);
    dnm_threads_end();
    if (err->code == DNM_OK && tick && tick(tick_ctx, ntasks + 1, ntasks + 1)) {
        err->code = DNM_ECANCEL;
    }
    return err->code;
}
