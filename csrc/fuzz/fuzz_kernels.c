/* fuzz_kernels.c - libFuzzer harness for the dnm C kernels (issue 8).
 *
 * Builds dnm_matrix views with fuzzed dtype, shape, byte strides (positive,
 * negative, zero = broadcast, unaligned) and base alignment over a fuzzed
 * buffer, and calls dnm_score (every kind and guard), dnm_knn_log_distance,
 * dnm_neglabel_closeness and dnm_metrics - always within the contract that
 * csrc/_core.c guarantees before it calls them:
 *   - every element (i, j) of a view lies inside the buffer;
 *   - rows >= 1, cols >= 1, matching feature dimensions;
 *   - score: finite temperature > 0 (tiny or huge), tau in (0, 1],
 *     guard in 0..2, groups >= 1, group_size >= 1, indices in [0, M);
 *   - knn: 0 <= k < rows;  closeness: percentile in [0, 1], any max_cut;
 *   - metrics: n_id, n_ood >= 1, tpr in (0, 1] (scores may be non-finite:
 *     the kernel itself reports them).
 * Anything else (a crash, an ASan/UBSan report, a return code outside the
 * documented ones, or a non-finite score/result on a DNM_OK return where the
 * contract promises finite values) is a finding.
 *
 * Input layout: a small header parsed by take_*() below, then the payload
 * bytes copied into each view's buffer (cyclically).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "metrics.h"
#include "mining.h"
#include "score.h"

typedef struct {
    const uint8_t *p;
    size_t n, off;
} reader;

static uint64_t take(reader *r, int nbytes)
{
    uint64_t v = 0;
    for (int i = 0; i < nbytes; i++) {
        v = (v << 8) | (r->off < r->n ? r->p[r->off] : 0);
        r->off++;
    }
    return v;
}

static double take_unit(reader *r) /* in [0, 1] */
{
    return (double)take(r, 2) / 65535.0;
}

typedef struct {
    char *buf;        /* owned allocation */
    dnm_matrix m;
} view;

static const int itemsize[3] = {2, 4, 8};

/* A view of rows x cols (both >= 1) with fuzzed dtype / strides / offset.
 * The buffer is exactly as large as the elements it covers (+ misalignment),
 * so any out-of-bounds read trips ASan. */
static int make_view(reader *r, int64_t rows, int64_t cols, int dtype, view *v)
{
    int isz = itemsize[dtype];
    int mode = (int)(take(r, 1) % 6);
    ptrdiff_t s0, s1;
    switch (mode) {
    case 0: s1 = isz; s0 = cols * isz; break;                   /* C order */
    case 1: s0 = isz; s1 = rows * isz; break;                   /* F order */
    case 2: s1 = isz * (1 + (int)(take(r, 1) % 3)); s0 = s1 * cols * (1 + (int)(take(r, 1) % 2)); break;
    case 3: s1 = -(ptrdiff_t)isz; s0 = -(ptrdiff_t)(cols * isz); break; /* reversed */
    case 4: s1 = isz; s0 = 0; break;                            /* broadcast rows */
    default: /* arbitrary byte strides, possibly unaligned, possibly overlapping */
        s0 = (ptrdiff_t)(int16_t)take(r, 2);
        s1 = (ptrdiff_t)(int16_t)take(r, 2);
        if (s1 == 0 && s0 == 0) s1 = isz;
        break;
    }
    int mis = (int)(take(r, 1) % 8); /* base misalignment in bytes */
    /* extent of the byte offsets of the four corners */
    ptrdiff_t lo = 0, hi = 0;
    ptrdiff_t c[4] = {0, (rows - 1) * s0, (cols - 1) * s1, (rows - 1) * s0 + (cols - 1) * s1};
    for (int i = 0; i < 4; i++) {
        if (c[i] < lo) lo = c[i];
        if (c[i] > hi) hi = c[i];
    }
    size_t span = (size_t)(hi - lo) + (size_t)isz;
    if (span > (1u << 22)) return -1;
    v->buf = (char *)malloc(span + (size_t)mis);
    if (!v->buf) return -1;
    char *base = v->buf + mis;
    /* fill from the payload, cyclically; a few fill modes make finite data likely */
    int fill = (int)(take(r, 1) % 4);
    for (size_t b = 0; b < span; b++) {
        uint8_t byte = r->n ? r->p[(r->off + b) % r->n] : 0;
        base[b] = (char)byte;
    }
    if (fill != 0) { /* overwrite with finite values derived from the bytes */
        for (int64_t i = 0; i < rows; i++)
            for (int64_t j = 0; j < cols; j++) {
                char *e = base - lo + i * s0 + j * s1;
                uint8_t byte = (uint8_t)e[0];
                double val = ((double)byte - 100.0) * (fill == 1 ? 0.1 : fill == 2 ? 1e-3 : 37.0);
                if (dtype == DNM_F16) {
                    /* small integers as float16: sign, exp, mantissa from the byte */
                    uint16_t h = (uint16_t)(((byte & 0x80u) << 8) | ((0x0Fu + (byte & 0x07u)) << 10) | ((byte & 0x78u) << 3));
                    memcpy(e, &h, 2);
                } else if (dtype == DNM_F32) {
                    float f = (float)val;
                    memcpy(e, &f, 4);
                } else {
                    memcpy(e, &val, 8);
                }
            }
    }
    v->m.data = base - lo;
    v->m.dtype = dtype;
    v->m.s0 = s0;
    v->m.s1 = s1;
    v->m.rows = rows;
    v->m.cols = cols;
    return 0;
}

static void check_rc(int rc, const char *where)
{
    if (rc < DNM_OK || rc > DNM_EGUARD || rc == DNM_ECANCEL) {
        fprintf(stderr, "%s: unexpected return code %d\n", where, rc);
        abort();
    }
}

static int stop_after = -1;
static int tick_stop(void *ctx, int64_t done, int64_t total)
{
    (void)ctx;
    if (done < 0 || total < 0 || done > total) {
        fprintf(stderr, "tick: done %lld of %lld\n", (long long)done, (long long)total);
        abort();
    }
    return stop_after >= 0 && stop_after-- == 0;
}

static void fuzz_score(reader *r)
{
    int dt[3] = {(int)(take(r, 1) % 3), (int)(take(r, 1) % 3), (int)(take(r, 1) % 3)};
    int64_t N = 1 + (int64_t)(take(r, 1) % 40);
    int64_t C = 1 + (int64_t)(take(r, 1) % 20);
    int64_t M = 1 + (int64_t)(take(r, 1) % 40);
    int64_t D = 1 + (int64_t)(take(r, 1) % 24);
    dnm_score_params p;
    memset(&p, 0, sizeof p);
    p.kind = (int)(take(r, 1) % 5);
    p.guard = (int)(take(r, 1) % 3);
    int tsel = (int)(take(r, 1) % 5);
    static const double temps[5] = {0.01, 1.0, 1e-300, 1e300, 1.7976931348623157e308};
    p.temperature = tsel < 4 ? temps[tsel] * (0.5 + take_unit(r)) : temps[4]; /* finite: _core.c refuses inf */
    p.tau = 1.0 - take_unit(r) * 0.999999; /* (0, 1] */
    int nthreads = 1 + (int)(take(r, 1) % 2);
    view vi = {0}, vc = {0}, vn = {0};
    int64_t *index = NULL;
    if (make_view(r, N, D, dt[0], &vi) || make_view(r, C, D, dt[1], &vc)) goto out;
    const dnm_matrix *neg = NULL;
    if (p.kind >= DNM_SCORE_NEGLABEL) {
        if (make_view(r, M, D, dt[2], &vn)) goto out;
        neg = &vn.m;
        p.groups = 1 + (int64_t)(take(r, 1) % 8);
        p.group_size = 1 + (int64_t)(take(r, 1) % 8);
        index = (int64_t *)malloc((size_t)(p.groups * p.group_size) * sizeof(int64_t));
        for (int64_t q = 0; q < p.groups * p.group_size; q++) index[q] = (int64_t)(take(r, 1) % (uint64_t)M);
        p.index = index;
    }
    const int stop_sel = (take(r, 1) % 16 == 0) ? (int)(take(r, 1) % 3) : -1;
    double *out = (double *)malloc((size_t)N * sizeof(double));
    /* float inputs: both float kernels (the AVX-512 one where the CPU has it, and the
     * BLAS tiles); they must agree on the outcome */
    const int is_f64 = dt[0] == DNM_F64 || dt[1] == DNM_F64 || (neg && dt[2] == DNM_F64);
    int rc0 = -1;
    double *out0 = (double *)malloc((size_t)N * sizeof(double));
    for (int kern = 0; kern < (is_f64 ? 1 : 3); kern++) {
    if (kern == 2 && !dnm_have_avx2()) break;
    p.kernel = kern == 0 ? DNM_KERNEL_AUTO : kern == 1 ? DNM_KERNEL_BLAS : DNM_KERNEL_AVX2;
    stop_after = stop_sel;
    int64_t floored = -1;
    dnm_error err;
    memset(&err, 0, sizeof err);
    int rc = dnm_score(&vi.m, &vc.m, neg, &p, out, &floored, nthreads, tick_stop, NULL, &err);
    const int nr = dnm_kernel_nr(dnm_kernel_resolve(DNM_KERNEL_AUTO));
    if (kern == 0 && rc == DNM_OK && !is_f64 && nr > 0) {
        /* labels packed once (as a detector does) give the same bits */
        const int64_t L = vc.m.rows + p.groups * p.group_size;
        float *packed = (float *)malloc((size_t)((L + nr - 1) / nr * nr * D) * sizeof(float));
        double *out2 = (double *)malloc((size_t)N * sizeof(double));
        dnm_error e2;
        memset(&e2, 0, sizeof e2);
        if (dnm_pack_labels(&vc.m, neg, &p, packed, nthreads, &e2) != DNM_OK) {
            fprintf(stderr, "dnm_pack_labels failed (%d) where dnm_score succeeded\n", e2.code);
            abort();
        }
        dnm_score_params pp = p;
        pp.packed = packed;
        int64_t fl2 = -1;
        if (dnm_score(&vi.m, &vc.m, neg, &pp, out2, &fl2, nthreads, NULL, NULL, &e2) != DNM_OK &&
            e2.code != DNM_EGUARD) {
            fprintf(stderr, "dnm_score with packed labels failed (%d)\n", e2.code);
            abort();
        }
        if (memcmp(out, out2, (size_t)N * sizeof(double)) != 0 || fl2 != floored) {
            fprintf(stderr, "dnm_score: packed labels change the scores\n");
            abort();
        }
        free(packed);
        free(out2);
    }
    if (rc != DNM_ECANCEL) check_rc(rc, "dnm_score");
    /* both succeed (OK, or EGUARD: the floor count may differ at the border) or both
     * refuse the input (which bad row wins between two inputs may differ) */
    const int bad_in = rc == DNM_ENONFINITE || rc == DNM_EZERO;
    const int bad_in0 = rc0 == DNM_ENONFINITE || rc0 == DNM_EZERO;
    if (rc0 >= 0 && rc != DNM_ECANCEL && rc0 != DNM_ECANCEL && bad_in != bad_in0) {
        fprintf(stderr, "dnm_score: the float kernels disagree: rc %d vs %d\n", rc0, rc);
        abort();
    }
    if (kern == 2 && rc == DNM_OK && rc0 == DNM_OK && dnm_have_avx512() &&
        memcmp(out, out0, (size_t)N * sizeof(double)) != 0) {
        fprintf(stderr, "dnm_score: the AVX2 and AVX-512 kernels give different bits\n");
        abort();
    }
    if (kern == 0) memcpy(out0, out, (size_t)N * sizeof(double));
    if (kern == 0) rc0 = rc;
    if (rc == DNM_OK) {
        if (floored < 0 || floored > N * (p.groups ? p.groups : 1)) {
            fprintf(stderr, "dnm_score: floored = %lld\n", (long long)floored);
            abort();
        }
        for (int64_t i = 0; i < N; i++)
            if (isnan(out[i])) {
                fprintf(stderr, "dnm_score kind %d guard %d T %g kernel %d: NaN score at %lld\n",
                        p.kind, p.guard, p.temperature, p.kernel, (long long)i);
                abort();
            }
    } else if (rc == DNM_ENONFINITE || rc == DNM_EZERO) {
        if (err.which < 0 || err.which > 2 || err.row < 0) {
            fprintf(stderr, "dnm_score: bad error report which=%d row=%lld\n", err.which, (long long)err.row);
            abort();
        }
    }
    }
    free(out);
    free(out0);
out:
    free(index);
    free(vi.buf);
    free(vc.buf);
    free(vn.buf);
}

static void fuzz_knn(reader *r)
{
    int dt = (int)(take(r, 1) % 3);
    int64_t N = 1 + (int64_t)(take(r, 1) % 48);
    int64_t D = 1 + (int64_t)(take(r, 1) % 16);
    int64_t k = (int64_t)(take(r, 1) % (uint64_t)N);
    int nthreads = 1 + (int)(take(r, 1) % 2);
    view v = {0};
    if (make_view(r, N, D, dt, &v)) { free(v.buf); return; }
    stop_after = (take(r, 1) % 16 == 0) ? (int)(take(r, 1) % 3) : -1;
    double *rho = (double *)malloc((size_t)N * sizeof(double));
    double *rho2 = (double *)malloc((size_t)N * sizeof(double));
    /* every float kernel the CPU has: AUTO (dnm's own where present), the BLAS tiles, and
     * both builds of dnm's kernel where the CPU runs both (their bits must agree) */
    const int kernels[3] = {DNM_KERNEL_AUTO, DNM_KERNEL_BLAS, DNM_KERNEL_AVX2};
    int rc0 = DNM_OK;
    for (int t = 0; t < 3; t++) {
        if (dnm_kernel_resolve(kernels[t]) < 0) continue;
        dnm_error err;
        memset(&err, 0, sizeof err);
        double *o = t == 0 ? rho : rho2;
        int rc = dnm_knn_log_distance(&v.m, k, o, kernels[t], nthreads, t == 0 ? tick_stop : NULL,
                                      NULL, &err);
        if (rc != DNM_ECANCEL) check_rc(rc, "dnm_knn_log_distance");
        if (rc == DNM_OK)
            for (int64_t i = 0; i < N; i++)
                if (!isfinite(o[i])) {
                    fprintf(stderr, "knn: rho[%lld] = %g on success\n", (long long)i, o[i]);
                    abort();
                }
        if (t == 0) rc0 = rc;
        if (t == 2 && rc0 == DNM_OK && rc == DNM_OK && dt != DNM_F64 &&
            dnm_kernel_resolve(DNM_KERNEL_AUTO) == DNM_KERNEL_AVX512 &&
            memcmp(rho, rho2, (size_t)N * sizeof(double)) != 0) {
            fprintf(stderr, "knn: the AVX2 and AVX-512 builds disagree\n");
            abort();
        }
    }
    free(rho);
    free(rho2);
    free(v.buf);
}

static void fuzz_closeness(reader *r)
{
    int dt[2] = {(int)(take(r, 1) % 3), (int)(take(r, 1) % 3)};
    int64_t C = 1 + (int64_t)(take(r, 1) % 24);
    int64_t N = 1 + (int64_t)(take(r, 1) % 40);
    int64_t D = 1 + (int64_t)(take(r, 1) % 16);
    double pct = take_unit(r);
    int cs = (int)(take(r, 1) % 4);
    double cut = cs == 0 ? NAN : cs == 1 ? 2.0 * take_unit(r) - 1.0 : cs == 2 ? -INFINITY : 0.95;
    int nthreads = 1 + (int)(take(r, 1) % 2);
    view vc = {0}, vx = {0};
    if (make_view(r, C, D, dt[0], &vc) || make_view(r, N, D, dt[1], &vx)) goto out;
    stop_after = -1;
    double *q = (double *)malloc((size_t)N * sizeof(double));
    const int kernels[3] = {DNM_KERNEL_AUTO, DNM_KERNEL_BLAS, DNM_KERNEL_AVX2};
    for (int t = 0; t < 3; t++) {
        if (dnm_kernel_resolve(kernels[t]) < 0) continue;
        dnm_error err;
        memset(&err, 0, sizeof err);
        int rc = dnm_neglabel_closeness(&vc.m, &vx.m, pct, cut, q, kernels[t], nthreads, tick_stop,
                                        NULL, &err);
        check_rc(rc, "dnm_neglabel_closeness");
        if (rc == DNM_OK)
            for (int64_t i = 0; i < N; i++)
                if (!(q[i] >= -1.0 - 1e-5 && q[i] <= 1.0 + 1e-5)) {
                    fprintf(stderr, "closeness: q[%lld] = %g outside [-1, 1]\n", (long long)i,
                            q[i]);
                    abort();
                }
    }
    free(q);
out:
    free(vc.buf);
    free(vx.buf);
}

static void fuzz_metrics(reader *r)
{
    int64_t n1 = 1 + (int64_t)(take(r, 2) % 300);
    int64_t n0 = 1 + (int64_t)(take(r, 2) % 300);
    double tpr = 1.0 - take_unit(r) * 0.9999;
    int nthreads = 1 + (int)(take(r, 1) % 2);
    int mode = (int)(take(r, 1) % 3);
    double *a = (double *)malloc((size_t)(n1 + n0) * sizeof(double));
    for (int64_t i = 0; i < n1 + n0; i++) {
        if (mode == 0) { /* raw bytes: any double, NaN/Inf/-0/subnormal included */
            uint64_t bits = take(r, 8);
            memcpy(&a[i], &bits, 8);
        } else if (mode == 1) { /* few distinct values: ties */
            a[i] = (double)(take(r, 1) % 5) - 2.0;
            if (take(r, 1) == 7) a[i] = -0.0;
        } else {
            a[i] = ((double)(int8_t)take(r, 1)) * 1e-300;
        }
    }
    dnm_metrics_result res;
    dnm_error err;
    memset(&err, 0, sizeof err);
    int rc = dnm_metrics(a, n1, a + n1, n0, tpr, nthreads, NULL, NULL, &res, &err);
    check_rc(rc, "dnm_metrics");
    if (rc == DNM_OK) {
        double v[6] = {res.auroc, res.aupr_in, res.aupr_out, res.fpr_paper, res.fpr_openood, res.fpr_interp};
        for (int i = 0; i < 6; i++)
            if (!(v[i] >= 0.0 && v[i] <= 1.0 + 1e-12)) {
                fprintf(stderr, "metrics: result %d = %.17g outside [0, 1]\n", i, v[i]);
                abort();
            }
        if (res.n_thresholds < 1 || res.n_thresholds > n1 + n0) abort();
    } else if (rc == DNM_ENONFINITE) {
        const double *src = err.which == 0 ? a : a + n1;
        int64_t n = err.which == 0 ? n1 : n0;
        if (err.row < 0 || err.row >= n || isfinite(src[err.row])) {
            fprintf(stderr, "metrics: bad NaN report which=%d row=%lld\n", err.which, (long long)err.row);
            abort();
        }
    }
    free(a);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    reader r = {data, size, 0};
    switch (take(&r, 1) % 4) {
    case 0: fuzz_score(&r); break;
    case 1: fuzz_knn(&r); break;
    case 2: fuzz_closeness(&r); break;
    default: fuzz_metrics(&r); break;
    }
    return 0;
}
