/* tta.c - see tta.h. */
#include "tta.h"
#include "dnm_blas.h"
#include "score.h" /* the float kernel choice (DNM_KERNEL_*) */

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <stdint.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

/* Lets the clamps of exp_le0 become vector blends (no effect on any value, only on which
 * floating-point exception flags a speculated comparison may raise). */
#pragma GCC optimize("no-trapping-math")

#define DNM_TTA_IT 128   /* images per task (fixed: the grid never depends on threads) */
#define DNM_TTA_LT 2048 /* labels per GEMM call */
#define LANES 8

#if defined(__GNUC__) && defined(__x86_64__) && !defined(DNM_NO_CLONES)
#define DNM_TCLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define DNM_TCLONES
#endif

/* exp(x) for x <= 0 (0 below -708): x = n ln2 + r, |r| <= ln2 / 2, a degree-13 Taylor
 * polynomial in r (the coefficients of dnm_exp_pd4 in simd_exp.h), times 2^n made in the
 * exponent bits.  Plain C with fma(): the same bits on every CPU, and a loop over it
 * vectorises where the CPU has FMA. */
static inline double exp_le0(double x)
{
    static const double c[14] = {
        1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0, 1.0 / 3628800.0,
        1.0 / 362880.0,     1.0 / 40320.0,     1.0 / 5040.0,     1.0 / 720.0,
        1.0 / 120.0,        1.0 / 24.0,        1.0 / 6.0,        0.5,
        1.0,                1.0};
    const double under = x < -708.0 ? 0.0 : 1.0;
    x = x < -708.0 ? -708.0 : x;
    const double big = 6755399441055744.0; /* 1.5 * 2^52: adding it rounds to an integer */
    const double nb = x * 1.4426950408889634 + big;
    const double n = nb - big;
    double r = fma(-n, 0.6931471803691238, x);
    r = fma(-n, 1.9082149292705877e-10, r);
    double q = c[0];
#pragma GCC unroll 14
    for (int i = 1; i < 14; i++) q = fma(q, r, c[i]);
    union { double d; int64_t i; } u = {nb}, v;
    v.i = (u.i - 0x4338000000000000LL + 1023) * ((int64_t)1 << 52); /* 2^n, n in [-1021, 0] */
    return q * v.d * under;
}

/* z[0..n) added to 8 fixed lanes: z[j] to lane j mod 8 (n mod 8 == 0 keeps that for the
 * next call), in order within each lane */
static inline void lane_add(double acc[LANES], const double *z, int64_t n)
{
    int64_t j = 0;
    for (; j + LANES <= n; j += LANES)
        for (int l = 0; l < LANES; l++) acc[l] += z[j + l];
    for (int l = 0; j < n; j++, l++) acc[l] += z[j];
}

/* the lanes added in order */
static inline double lane_total(const double acc[LANES])
{
    double s = 0.0;
    for (int l = 0; l < LANES; l++) s += acc[l];
    return s;
}

/* z[0..n) summed in 8 fixed lanes, then the lanes added in order */
static double lane_sum(const double *z, int64_t n)
{
    double acc[LANES] = {0};
    lane_add(acc, z, n);
    return lane_total(acc);
}

/* One row of cosines z[0..L) in place -> exp((z - max) / T); returns their sum (8 fixed
 * lanes, then added in lane order). */
DNM_TCLONES static double exp_row(double *z, int64_t L, double invT)
{
    double mx[LANES];
    for (int l = 0; l < LANES; l++) mx[l] = -INFINITY;
    int64_t k = 0;
    for (; k + LANES <= L; k += LANES)
        for (int l = 0; l < LANES; l++) mx[l] = z[k + l] > mx[l] ? z[k + l] : mx[l];
    double m = -INFINITY;
    for (; k < L; k++) m = z[k] > m ? z[k] : m;
    for (int l = 0; l < LANES; l++) m = mx[l] > m ? mx[l] : m; /* the max: exact in any order */
    for (int64_t j = 0; j < L; j++) z[j] = exp_le0((z[j] - m) * invT);
    return lane_sum(z, L);
}

DNM_TCLONES static void scale_row(double *z, int64_t L, double f)
{
    for (int64_t j = 0; j < L; j++) z[j] *= f;
}

int64_t dnm_softmax_block(const dnm_matrix *labels, int kernel)
{
    if (labels->dtype == DNM_F64) return labels->rows;
    const int kr = dnm_kernel_resolve(kernel);
    if (kr < 0) return -1;
    return kr == DNM_KERNEL_AVX512 || kr == DNM_KERNEL_AVX2 ? dnm_tta_lb(labels->cols)
                                                            : labels->rows;
}

/* The packed order of dnm's own kernel (tta_simd.h): *col = the label row at each packed
 * position ([ID; groups in order; the rest]), NULL for the identity (no groups).  Returns 1,
 * 0 when group columns repeat (*col NULL; no packed order), -1 when out of memory. */
static int tta_order(int64_t L, const dnm_tta_params *p, int64_t **colp)
{
    const int64_t C = p->n_id, G = p->groups, Q = p->group_size;
    *colp = NULL;
    if (G <= 0) return 1;
    int64_t *col = (int64_t *)malloc((size_t)L * sizeof(int64_t));
    unsigned char *seen = (unsigned char *)calloc((size_t)(L - C) + 1, 1);
    if (!col || !seen) {
        free(col);
        free(seen);
        return -1;
    }
    int own = 1;
    int64_t q = 0;
    for (; q < C; q++) col[q] = q;
    for (int64_t g = 0; g < G * Q && own; g++) {
        own = !seen[p->index[g]];
        seen[p->index[g]] = 1;
        col[q++] = C + p->index[g];
    }
    for (int64_t j = 0; j < L - C && own; j++)
        if (!seen[j]) col[q++] = C + j;
    free(seen);
    if (!own) {
        free(col);
        return 0;
    }
    *colp = col;
    return 1;
}

/* the own kernel that runs for float32 labels, or 0 */
static int tta_own_kernel(const dnm_matrix *labels, int kernel)
{
    if (labels->dtype != DNM_F32) return 0;
    const int kr = dnm_kernel_resolve(kernel);
    return kr == DNM_KERNEL_AVX512 || kr == DNM_KERNEL_AVX2 ? kr : 0;
}

static int64_t tta_packed_floats(int kr, int64_t L, int64_t D)
{
    return kr == DNM_KERNEL_AVX512 ? dnm_softmax_packed_floats_avx512(L, D)
                                   : dnm_softmax_packed_floats_avx2(L, D);
}

int64_t dnm_softmax_packed_size(const dnm_matrix *labels, const dnm_tta_params *p, int kernel)
{
    const int kr = tta_own_kernel(labels, kernel);
    if (!kr || labels->s1 != (ptrdiff_t)sizeof(float) ||
        labels->s0 != (ptrdiff_t)sizeof(float) * labels->cols)
        return 0;
    int64_t *col;
    const int rc = tta_order(labels->rows, p, &col);
    free(col);
    return rc == 1 ? tta_packed_floats(kr, labels->rows, labels->cols) : 0;
}

int dnm_softmax_pack(const dnm_matrix *labels, const dnm_tta_params *p, int kernel, float *packed,
                     const int64_t *rows, int64_t n, dnm_error *err)
{
    const int64_t L = labels->rows, D = labels->cols;
    err->code = DNM_OK;
    err->row = err->col = -1;
    err->which = -1;
    const int kr = tta_own_kernel(labels, kernel);
    if (!kr || dnm_softmax_packed_size(labels, p, kernel) <= 0) {
        err->code = DNM_EDOMAIN;
        return DNM_EDOMAIN;
    }
    int64_t *col, *pos = NULL;
    if (tta_order(L, p, &col) < 0) {
        err->code = DNM_ENOMEM;
        return DNM_ENOMEM;
    }
    if (rows && col) { /* label row -> packed position */
        pos = (int64_t *)malloc((size_t)L * sizeof(int64_t));
        if (!pos) {
            free(col);
            err->code = DNM_ENOMEM;
            return DNM_ENOMEM;
        }
        for (int64_t q = 0; q < L; q++) pos[col[q]] = q;
    }
    (kr == DNM_KERNEL_AVX512 ? dnm_softmax_pack_f_avx512 : dnm_softmax_pack_f_avx2)(
        (const float *)labels->data, L, D, col, pos, rows, n, packed);
    free(col);
    free(pos);
    return DNM_OK;
}

static int cmp_first(const void *a, const void *b)
{
    const int64_t *x = (const int64_t *)a, *y = (const int64_t *)b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

static int softmax_rows_run(const dnm_matrix *images, const dnm_matrix *labels,
                            const dnm_tta_params *p, void *rows, double *id_mass,
                            double *group_mass, double *scales, int kr, int nthreads,
                            dnm_tick_fn tick, void *tick_ctx, dnm_error *err);

int dnm_softmax_rows(const dnm_matrix *images, const dnm_matrix *labels, const dnm_tta_params *p,
                     void *rows, double *id_mass, double *group_mass, double *scales,
                     int kernel, int nthreads, dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    const int64_t D = images->cols, L = labels->rows;
    const int64_t C = p->n_id, G = p->groups, Q = p->group_size;
    const int dbl = labels->dtype == DNM_F64;
    err->code = DNM_OK;
    err->row = err->col = -1;
    err->which = -1;
    if (labels->cols != D || (labels->dtype != DNM_F32 && !dbl) ||
        labels->s1 != (ptrdiff_t)(dbl ? sizeof(double) : sizeof(float)) ||
        labels->s0 != labels->s1 * (ptrdiff_t)D || C < 0 || C > L || G < 0 ||
        (G > 0 && (Q < 1 || !p->index)) || (scales && (!rows || G > 0))) {
        err->code = DNM_EDOMAIN;
        return DNM_EDOMAIN;
    }
    const int kr = dbl ? DNM_KERNEL_BLAS : dnm_kernel_resolve(kernel);
    if (kr < 0 || (p->packed && kr != p->packed_kernel) ||
        (p->n_sel > 0 && (!rows || !p->sel || !p->sel_out)) ||
        (p->rows_f32 && (!rows || !scales || G > 0 ||
                         (kr != DNM_KERNEL_AVX512 && kr != DNM_KERNEL_AVX2)))) {
        err->code = DNM_EDOMAIN;
        return DNM_EDOMAIN;
    }
    int64_t *pairs = NULL; /* (sel[k], k) in column order, for dnm's own kernel */
    dnm_tta_params q = *p;
    if (p->n_sel > 0) {
        pairs = (int64_t *)malloc((size_t)p->n_sel * 2 * sizeof(int64_t));
        if (!pairs) {
            err->code = DNM_ENOMEM;
            return DNM_ENOMEM;
        }
        for (int64_t k = 0; k < p->n_sel; k++) {
            pairs[2 * k] = p->sel[k];
            pairs[2 * k + 1] = k;
        }
        qsort(pairs, (size_t)p->n_sel, 2 * sizeof(int64_t), cmp_first);
        q.sel_pairs = pairs;
    }
    const int rc = softmax_rows_run(images, labels, &q, rows, id_mass, group_mass, scales, kr,
                                    nthreads, tick, tick_ctx, err);
    free(pairs);
    return rc;
}

static int softmax_rows_run(const dnm_matrix *images, const dnm_matrix *labels,
                            const dnm_tta_params *p, void *rows_out, double *id_mass,
                            double *group_mass, double *scales, int kr, int nthreads,
                            dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    double *rows = (double *)rows_out; /* (float rows: dnm's own kernel only, checked) */
    const int64_t N = images->rows, D = images->cols, L = labels->rows;
    const int64_t C = p->n_id, G = p->groups, Q = p->group_size;
    const int dbl = labels->dtype == DNM_F64;
    if (kr == DNM_KERNEL_AVX512 || kr == DNM_KERNEL_AVX2) {
        /* dnm's own kernel (tta_simd.h), on the labels in packed order [ID; groups; rest]
         * when there are groups (the masses then have the same bits with and without the
         * rows); group columns used twice there take the BLAS tiles for the masses alone,
         * the labels' own order and group sums from the rows with the rows */
        int64_t *col = NULL;
        int own = tta_order(L, p, &col);
        if (own < 0 || (own == 0 && (p->packed || p->packed_rows))) {
            err->code = own < 0 ? DNM_ENOMEM : DNM_EDOMAIN;
            return err->code;
        }
        if (!own && rows) own = 1; /* the labels' own order, group sums from the rows */
        if (own) {
            const int nt = dnm_threads_begin(nthreads);
            const int rc = (kr == DNM_KERNEL_AVX512 ? dnm_softmax_rows_f_avx512
                                                    : dnm_softmax_rows_f_avx2)(
                images, labels, p, col, rows_out, id_mass, group_mass, scales, nt, tick,
                tick_ctx, err);
            dnm_threads_end();
            free(col);
            return rc;
        }
        free(col);
    }
    if (p->packed_rows) { /* dnm's own kernel only */
        err->code = DNM_EDOMAIN;
        return DNM_EDOMAIN;
    }
    double invT = 1.0 / p->temperature;
    if (!isfinite(invT)) invT = DBL_MAX;
    const int64_t ntiles = (N + DNM_TTA_IT - 1) / DNM_TTA_IT;
    int nt = dnm_threads_begin(nthreads);
    if ((double)N * (double)L * (double)D < 1e7) nt = 1;
    if (nt > ntiles) nt = (int)ntiles;
    if (nt < 1) nt = 1;
    volatile int stop = 0;
    int64_t done = 0;
    const size_t esz = dbl ? sizeof(double) : sizeof(float);
#pragma omp parallel num_threads(nt)
    {
        void *xb = malloc((size_t)DNM_TTA_IT * (size_t)D * esz);
        float *sb = dbl ? NULL
                        : (float *)malloc((size_t)DNM_TTA_IT * DNM_TTA_LT * sizeof(float));
        double *own = rows ? NULL : (double *)malloc((size_t)DNM_TTA_IT * (size_t)L * sizeof(double));
        if (!xb || (!dbl && !sb) || (!rows && !own)) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            if (stop) continue;
            const int64_t r0 = t * DNM_TTA_IT, nr = r0 + DNM_TTA_IT < N ? DNM_TTA_IT : N - r0;
            int64_t bad = -1;
            const int rc = dbl ? dnm_pack_rows_d(images, r0, r0 + nr, (double *)xb, D, 1, NULL, &bad)
                               : dnm_pack_rows_f(images, r0, r0 + nr, (float *)xb, D, 1, NULL, &bad);
            if (rc != DNM_OK) {
                dnm_error_record(err, rc, 0, bad);
                stop = 1;
                continue;
            }
            double *zt = rows ? rows + r0 * L : own;
            for (int64_t j0 = 0; j0 < L; j0 += DNM_TTA_LT) {
                const int64_t w = j0 + DNM_TTA_LT < L ? DNM_TTA_LT : L - j0;
                if (dbl) {
                    DNM_BLAS(cblas_dgemm)(DnmRowMajor, DnmNoTrans, DnmTrans, (int)nr, (int)w,
                                          (int)D, 1.0, (const double *)xb, (int)D,
                                          (const double *)labels->data + j0 * D, (int)D, 0.0,
                                          zt + j0, (int)L);
                } else {
                    DNM_BLAS(cblas_sgemm)(DnmRowMajor, DnmNoTrans, DnmTrans, (int)nr, (int)w,
                                          (int)D, 1.0f, (const float *)xb, (int)D,
                                          (const float *)labels->data + j0 * D, (int)D, 0.0f,
                                          sb, (int)w);
                    for (int64_t r = 0; r < nr; r++)
                        for (int64_t j = 0; j < w; j++) zt[r * L + j0 + j] = (double)sb[r * w + j];
                }
            }
            for (int64_t r = 0; r < nr; r++) {
                double *z = zt + r * L;
                const double s = exp_row(z, L, invT);
                const double f = 1.0 / s;
                if (id_mass) id_mass[r0 + r] = lane_sum(z, C) * f;
                if (group_mass) {
                    const double *zn = z + C;
                    for (int64_t g = 0; g < G; g++) {
                        const int64_t *ix = p->index + g * Q;
                        double acc[LANES] = {0};
                        int64_t q = 0;
                        for (; q + LANES <= Q; q += LANES)
                            for (int l = 0; l < LANES; l++) acc[l] += zn[ix[q + l]];
                        for (int l = 0; q < Q; q++, l++) acc[l] += zn[ix[q]];
                        group_mass[(r0 + r) * G + g] = lane_total(acc) * f;
                    }
                }
                if (scales)
                    scales[r0 + r] = f;
                else if (rows)
                    scale_row(z, L, f);
            }
            dnm_tick_done(tick, tick_ctx, &done, ntiles, &stop, err);
        }
        free(xb);
        free(sb);
        free(own);
    }
    dnm_threads_end();
    if (err->code == DNM_OK && p->n_sel > 0) /* the selected columns, as the rows hold them */
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < p->n_sel; k++)
                p->sel_out[i * p->n_sel + k] =
                    scales ? rows[i * L + p->sel[k]] * scales[i] : rows[i * L + p->sel[k]];
    if (err->code == DNM_OK && tick && tick(tick_ctx, ntiles, ntiles)) err->code = DNM_ECANCEL;
    return err->code;
}

/* ---- consumers of the unscaled rows (tta.h) ---------------------------------------------- */

#define DNM_TTA_CW 512 /* columns per task */

/* float rows in panels of a multiple of 8 images, on a CPU with AVX2: the consumers' AVX2
 * loops (tta_simd.h) */
static int tta_panel_simd(int rows_f32, int64_t mr)
{
    return rows_f32 && mr > 1 && mr % 8 == 0 && dnm_have_avx2();
}

static int tta_threads(int nthreads, double work)
{
    int nt = dnm_threads_begin(nthreads);
    if (work < 2e5) nt = 1;
    return nt < 1 ? 1 : nt;
}

void dnm_tta_gather(const void *rows, int rows_f32, int64_t mr, const double *scales, int64_t N,
                    int64_t L, int64_t lb, int64_t off, const int64_t *sel, int64_t n,
                    double *out, int nthreads)
{
    const int64_t nb = (L + lb - 1) / lb;
    /* (column, output position, block) in column order: each row is read forwards */
    int64_t *t = (int64_t *)malloc((size_t)(n > 0 ? n : 1) * 3 * sizeof(int64_t));
    if (t) {
        for (int64_t k = 0; k < n; k++) {
            t[3 * k] = off + sel[k];
            t[3 * k + 1] = k;
        }
        qsort(t, (size_t)n, 3 * sizeof(int64_t), cmp_first);
        for (int64_t k = 0; k < n; k++) t[3 * k + 2] = t[3 * k] / lb;
    }
    const int nt = tta_threads(nthreads, (double)N * (double)n);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const double *sc = scales + i * nb;
        const int64_t base = i / mr * L * mr + i % mr; /* column c at base + c * mr */
        double *o = out + i * n;
        for (int64_t k = 0; k < n; k++) {
            /* (no memory for the order: the same values, in the given order) */
            const int64_t c = t ? t[3 * k] : off + sel[k], b = t ? t[3 * k + 2] : c / lb;
            const int64_t at = base + c * mr;
            o[t ? t[3 * k + 1] : k] =
                (rows_f32 ? (double)((const float *)rows)[at] : ((const double *)rows)[at]) * sc[b];
        }
    }
    dnm_threads_end();
    free(t);
}

void dnm_tta_masked_means(const void *rows, int rows_f32, int64_t mr, const double *scales,
                          int64_t N, int64_t L, int64_t lb, int64_t off,
                          const unsigned char *flag, double *mean1, double *mean2, int nthreads)
{
    const int64_t nb = (L + lb - 1) / lb, K = L - off;
    int64_t n1 = 0, n2 = 0;
    for (int64_t i = 0; i < N; i++) {
        n1 += flag[i] == 1;
        n2 += flag[i] == 2;
    }
    if (!n1 && !n2) return;
    const int64_t ntask = (K + DNM_TTA_CW - 1) / DNM_TTA_CW;
    const int nt = tta_threads(nthreads, (double)N * (double)K);
    const int simd = tta_panel_simd(rows_f32, mr);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < ntask; t++) {
        const int64_t j0 = t * DNM_TTA_CW, j1 = j0 + DNM_TTA_CW < K ? j0 + DNM_TTA_CW : K;
        double a1[DNM_TTA_CW], a2[DNM_TTA_CW];
        int64_t js = j0; /* the columns [js, j1) by the loop below */
        if (simd) {
            js = dnm_tta_panel_sums_avx2((const float *)rows, mr, scales, N, L, lb, off, flag, j0,
                                         j1, a1, a2);
        } else {
            for (int64_t j = 0; j < j1 - j0; j++) a1[j] = a2[j] = 0.0;
        }
        for (int64_t i = 0; i < N && js < j1; i++) {
            if (!flag[i] || flag[i] > 2) continue;
            double *acc = flag[i] == 1 ? a1 : a2;
            const double *sc = scales + i * nb;
            const int64_t base = i / mr * L * mr + i % mr + off * mr; /* column off + j */
            /* the columns of one block share their scale */
            for (int64_t j = js; j < j1;) {
                const int64_t b = (off + j) / lb, e = (b + 1) * lb - off < j1 ? (b + 1) * lb - off : j1;
                const double f = sc[b];
                if (rows_f32) {
                    const float *r = (const float *)rows + base;
                    for (; j < e; j++) acc[j - j0] += (double)r[j * mr] * f;
                } else {
                    const double *r = (const double *)rows + base;
                    for (; j < e; j++) acc[j - j0] += r[j * mr] * f;
                }
            }
        }
        for (int64_t j = j0; j < j1; j++) {
            if (n1) mean1[j] = a1[j - j0] / (double)n1;
            if (n2) mean2[j] = a2[j - j0] / (double)n2;
        }
    }
    dnm_threads_end();
}

#define DNM_TTA_COPY_CW 256 /* columns per task of a row copy */

void dnm_tta_copy_rows(const void *rows, int rows_f32, int64_t mr, const double *scales,
                       int64_t L, int64_t lb, int64_t off, dnm_tta_copy *jobs, int njobs,
                       int nthreads)
{
    const int64_t nb = (L + lb - 1) / lb, K = L - off;
    const int64_t ntask = (K + DNM_TTA_COPY_CW - 1) / DNM_TTA_COPY_CW;
    int64_t total = 0;
    for (int q = 0; q < njobs; q++) total += jobs[q].n;
    const int nt = tta_threads(nthreads, (double)total * (double)K);
    /* float rows in panels on AVX2: the copies by groups of 8 images (each job's k in src
     * order) */
    const int simd = tta_panel_simd(rows_f32, mr);
    int64_t *orders = simd && total > 0 ? (int64_t *)malloc((size_t)total * 2 * sizeof(int64_t))
                                        : NULL;
    int64_t at = 0;
    for (int q = 0; q < njobs; at += jobs[q].n, q++) {
        int64_t *order = orders ? orders + 2 * at : NULL;
        jobs[q].order = order;
        if (!order) continue;
        for (int64_t k = 0; k < jobs[q].n; k++) {
            order[2 * k] = jobs[q].src[k];
            order[2 * k + 1] = k;
        }
        qsort(order, (size_t)jobs[q].n, 2 * sizeof(int64_t), cmp_first); /* (ties: any order) */
        for (int64_t k = 0; k < jobs[q].n; k++) order[k] = order[2 * k + 1];
    }
    /* a task = a range of columns of every row copied, job after job: the rows of one panel
     * share the cache lines read; the product in double either way, rounded to nearest float
     * for a float32 queue (the bits of the C cast) */
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < ntask; t++) {
        const int64_t j0 = t * DNM_TTA_COPY_CW;
        const int64_t j1 = j0 + DNM_TTA_COPY_CW < K ? j0 + DNM_TTA_COPY_CW : K;
        for (int q = 0; q < njobs; q++) {
            const dnm_tta_copy *jb = jobs + q;
            const int f32 = jb->f32;
            const int64_t js =
                jb->order ? dnm_tta_panel_copy_avx2((const float *)rows, mr, scales, L, lb, off,
                                                    jb->src, jb->dst_row, jb->n, jb->dst, f32, j0,
                                                    j1, jb->order)
                          : j0; /* the columns [js, j1) by the loop below */
            for (int64_t k = 0; k < jb->n && js < j1; k++) {
                const int64_t i = jb->src[k], base = i / mr * L * mr + i % mr + off * mr;
                const double *sc = scales + i * nb;
                float *d32 = f32 ? (float *)jb->dst + jb->dst_row[k] * K : NULL;
                double *d64 = f32 ? NULL : (double *)jb->dst + jb->dst_row[k] * K;
                for (int64_t j = js; j < j1;) {
                    const int64_t b = (off + j) / lb;
                    const int64_t e = (b + 1) * lb - off < j1 ? (b + 1) * lb - off : j1;
                    const double f = sc[b];
                    if (rows_f32 && f32) {
                        const float *r = (const float *)rows + base;
                        for (; j < e; j++) d32[j] = (float)((double)r[j * mr] * f);
                    } else if (rows_f32) {
                        const float *r = (const float *)rows + base;
                        for (; j < e; j++) d64[j] = (double)r[j * mr] * f;
                    } else if (f32) {
                        const double *r = (const double *)rows + base;
                        for (; j < e; j++) d32[j] = (float)(r[j * mr] * f);
                    } else {
                        const double *r = (const double *)rows + base;
                        for (; j < e; j++) d64[j] = r[j * mr] * f;
                    }
                }
            }
        }
    }
    dnm_threads_end();
    free(orders);
}

void dnm_tta_aas(const double *a_id, const double *vals, int64_t N, int64_t n, int64_t beta,
                 int64_t step, double *out, int nthreads)
{
    const int64_t m = step > 0 ? (beta + step - 1) / step : 1; /* prefixes */
    const int nt = tta_threads(nthreads, (double)N * (double)(n + m));
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t i = 0; i < N; i++) {
        const double A = a_id[i], *v = vals + i * n;
        double cs = 0.0, acc[LANES] = {0};
        int64_t q = 0;
        for (int64_t k = 1; k <= m; k++) {
            const int64_t P = step > 0 && k * step < n ? k * step : n;
            for (; q < P; q++) cs += v[q]; /* the running sum, as NumPy's cumsum */
            acc[(k - 1) % LANES] += A / (A + cs);
        }
        out[i] = lane_total(acc) / (double)m;
    }
    dnm_threads_end();
}

/* The labels' panel height of the unscaled rows (tta.h). */
int64_t dnm_softmax_panel(const dnm_matrix *labels, int kernel)
{
    const int kr = tta_own_kernel(labels, kernel);
    return kr == DNM_KERNEL_AVX512 ? dnm_softmax_mr_avx512()
                                   : kr == DNM_KERNEL_AVX2 ? dnm_softmax_mr_avx2() : 1;
}

void dnm_rows_mean(const void *a, int f32, int64_t n, int64_t K, double *out, double *ckpt,
                   int64_t every, int64_t valid, int nthreads)
{
    if (!ckpt || every < 1) every = 0, valid = 0;
    if (valid > (every ? n / every : 0)) valid = every ? n / every : 0;
    const int64_t i0 = valid * every, ntask = (K + DNM_TTA_CW - 1) / DNM_TTA_CW;
    const int nt = tta_threads(nthreads, (double)(n - i0) * (double)K);
#pragma omp parallel for num_threads(nt) schedule(static)
    for (int64_t t = 0; t < ntask; t++) {
        const int64_t j0 = t * DNM_TTA_CW, j1 = j0 + DNM_TTA_CW < K ? j0 + DNM_TTA_CW : K;
        double acc[DNM_TTA_CW];
        for (int64_t j = 0; j < j1 - j0; j++) acc[j] = valid ? ckpt[(valid - 1) * K + j0 + j] : 0.0;
        for (int64_t i = i0; i < n; i++) {
            if (f32) {
                const float *r = (const float *)a + i * K;
                for (int64_t j = j0; j < j1; j++) acc[j - j0] += (double)r[j];
            } else {
                const double *r = (const double *)a + i * K;
                for (int64_t j = j0; j < j1; j++) acc[j - j0] += r[j];
            }
            if (every && (i + 1) % every == 0)
                for (int64_t j = j0; j < j1; j++) ckpt[((i + 1) / every - 1) * K + j] = acc[j - j0];
        }
        for (int64_t j = j0; j < j1; j++) out[j] = acc[j - j0] / (double)n;
    }
    dnm_threads_end();
}

/* log(x) for normal x > 0: x = 2^e m, m in [sqrt(1/2), sqrt(2)), log m = 2 atanh(s) with
 * s = (m - 1) / (m + 1), |s| <= 0.1716, by its series to s^23 (truncation < 1e-18), plus
 * e ln 2 in two parts.  Plain C with fma() and no int64 -> double conversion (the exponent
 * through the 2^52 bias): the same bits on every CPU, and a loop over it vectorises. */
static inline double log_pos(double x)
{
    int64_t i;
    memcpy(&i, &x, sizeof i);
    const int64_t eb = (int64_t)((uint64_t)i >> 52) | 0x4330000000000000LL;
    double e;
    memcpy(&e, &eb, sizeof e);
    e -= 4503599627370496.0 + 1023.0; /* the unbiased exponent, exactly */
    const int64_t mi = (i & 0x000fffffffffffffLL) | 0x3ff0000000000000LL; /* m in [1, 2) */
    double m;
    memcpy(&m, &mi, sizeof m);
    const double big = m > 1.4142135623730951 ? 1.0 : 0.0;
    m *= 1.0 - 0.5 * big;
    e += big;
    const double s = (m - 1.0) / (m + 1.0), s2 = s * s;
    double q = 1.0 / 23.0;
    q = fma(q, s2, 1.0 / 21.0);
    q = fma(q, s2, 1.0 / 19.0);
    q = fma(q, s2, 1.0 / 17.0);
    q = fma(q, s2, 1.0 / 15.0);
    q = fma(q, s2, 1.0 / 13.0);
    q = fma(q, s2, 1.0 / 11.0);
    q = fma(q, s2, 1.0 / 9.0);
    q = fma(q, s2, 1.0 / 7.0);
    q = fma(q, s2, 1.0 / 5.0);
    q = fma(q, s2, 1.0 / 3.0);
    const double lm = fma(2.0 * s * s2, q, 2.0 * s); /* 2 (s + s^3 q) */
    return fma(e, 0.6931471803691238, fma(e, 1.9082149292705877e-10, lm));
}

/* -sum_k p_k log(p_k + 1e-8), p_k = v[k] (1 / mass): the terms in chunks, summed in 8
 * fixed lanes */
DNM_TCLONES static double entropy_row(const double *v, int64_t len, double mass)
{
    double acc[LANES] = {0}, t[512];
    const double inv = 1.0 / mass;
    for (int64_t c0 = 0; c0 < len; c0 += 512) {
        const int64_t w = len - c0 < 512 ? len - c0 : 512;
        for (int64_t k = 0; k < w; k++) {
            const double p = v[c0 + k] * inv;
            t[k] = p * log_pos(p + 1e-8);
        }
        lane_add(acc, t, w); /* (chunks of 512: lane k mod 8 throughout) */
    }
    return -lane_total(acc);
}

int dnm_tta_cached(const double *rows, int64_t L, int64_t off, int64_t len, const int64_t *pos,
                   const int64_t *ridx, int64_t n, const double *mass, int64_t *label, double *H,
                   int nthreads)
{
    int oom = 0;
    const int nt = tta_threads(nthreads, (double)n * (double)len * (H ? 8.0 : 1.0));
#pragma omp parallel num_threads(nt)
    {
        double *tmp = pos ? (double *)malloc((size_t)(len > 0 ? len : 1) * sizeof(double)) : NULL;
#pragma omp for schedule(static)
        for (int64_t i = 0; i < n; i++) {
            const double *r = rows + ridx[i] * L + off;
            const double *v = r;
            if (pos) { /* the segment in its own order */
                if (!tmp) {
#pragma omp atomic write
                    oom = 1;
                    continue;
                }
                for (int64_t k = 0; k < len; k++) tmp[k] = r[pos[k]];
                v = tmp;
            }
            int64_t best = 0;
            for (int64_t k = 1; k < len; k++)
                if (v[k] > v[best]) best = k;
            label[i] = best;
            if (H) H[i] = entropy_row(v, len, mass ? mass[i] : lane_sum(v, len));
        }
        free(tmp);
    }
    dnm_threads_end();
    return oom ? DNM_ENOMEM : DNM_OK;
}
