/* common.c - see common.h. */
#include "common.h"
#include "dnm_blas.h"

#include <math.h>
#include <string.h>
#include <omp.h>
#include <pthread.h>

/* ---- float16 -> float, portable (no F16C needed) ---------------------- */
static float half_to_float(uint16_t h)
{
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1fu;
    uint32_t man = h & 0x3ffu;
    uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: renormalise */
            int e = -1;
            do { e++; man <<= 1; } while ((man & 0x400u) == 0);
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 0x1f) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline double load(const char *p, int dtype)
{
    switch (dtype) {
    case DNM_F16: { uint16_t h; memcpy(&h, p, 2); return (double)half_to_float(h); }
    case DNM_F32: { float f; memcpy(&f, p, 4); return (double)f; }
    default: { double d; memcpy(&d, p, 8); return d; }
    }
}

/* Load row i into a double scratch row and return its L2 norm (+inf when it
 * exceeds DBL_MAX), or -1 if the row is not finite.  The norm is computed
 * with scaling, as *scale * *snorm: the row divided by *scale (its largest
 * magnitude, or 1 where no scaling was needed) has norm *snorm, in [1, sqrt(n)]
 * when scaled, so normalising as (x / scale) / snorm cannot overflow or lose
 * the row to underflow whatever the norm. */
static double load_row(const dnm_matrix *m, int64_t i, double *tmp, double *scale,
                       double *snorm)
{
    const char *base = m->data + i * m->s0;
    double amax = 0.0;
    int finite = 1;
    if (m->dtype == DNM_F32 && m->s1 == 4 && ((uintptr_t)base & 3u) == 0) { /* NumPy views may be unaligned */
        const float *x = (const float *)base;
        for (int64_t j = 0; j < m->cols; j++) tmp[j] = (double)x[j];
    } else if (m->dtype == DNM_F64 && m->s1 == 8) {
        memcpy(tmp, base, (size_t)m->cols * sizeof(double));
    } else {
        for (int64_t j = 0; j < m->cols; j++) tmp[j] = load(base + j * m->s1, m->dtype);
    }
    /* Fast path: a plain sum of squares is exact enough and cannot overflow or
     * underflow when it lands well inside the double range (always the case
     * for finite float16/float32 data); NaN/Inf make it non-finite. */
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < m->cols; j++) ss += tmp[j] * tmp[j];
    *scale = 1.0;
    if (ss >= 0x1p-900 && ss <= 0x1p900) return *snorm = sqrt(ss);
    *snorm = 0.0;
    if (ss == 0.0 && m->dtype != DNM_F64) return 0.0;
    for (int64_t j = 0; j < m->cols; j++) {
        double a = fabs(tmp[j]);
        if (!(a <= 1.7976931348623157e308)) finite = 0; /* NaN or Inf */
        amax = a > amax ? a : amax;
    }
    if (!finite) return -1.0;
    if (amax == 0.0) return 0.0;
    double s = 0.0;
    for (int64_t j = 0; j < m->cols; j++) { double v = tmp[j] / amax; s += v * v; }
    *scale = amax;
    *snorm = sqrt(s);
    return amax * *snorm; /* +inf above DBL_MAX */
}

/* Sum of squares of a float row in double (each square is exact) and the
 * row times 1/norm: AVX-512 where the CPU has it (only the summation order
 * differs from the portable loop; the scaled values are the same bits). */
#if defined(__GNUC__) && defined(__x86_64__) && !defined(DNM_NO_CLONES)
#include "simd_exp.h"
#define DNM_AVX512F DNM_TGT_AVX512
DNM_AVX512F static double sumsq_f_avx512(const float *x, int64_t n)
{
    __m512d a0 = _mm512_setzero_pd(), a1 = a0;
    int64_t j = 0;
    for (; j + 16 <= n; j += 16) {
        const __m512 v = _mm512_loadu_ps(x + j);
        const __m512d lo = _mm512_cvtps_pd(_mm512_castps512_ps256(v));
        const __m512d hi = _mm512_cvtps_pd(
            _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
        a0 = _mm512_fmadd_pd(lo, lo, a0);
        a1 = _mm512_fmadd_pd(hi, hi, a1);
    }
    double ss = _mm512_reduce_add_pd(_mm512_add_pd(a0, a1));
    for (; j < n; j++) ss += (double)x[j] * (double)x[j];
    return ss;
}

DNM_AVX512F static void scale_f_avx512(const float *x, int64_t n, double inv, float *o)
{
    const __m512d vi = _mm512_set1_pd(inv);
    int64_t j = 0;
    for (; j + 8 <= n; j += 8) {
        const __m512d v = _mm512_cvtps_pd(_mm256_loadu_ps(x + j));
        _mm256_storeu_ps(o + j, _mm512_cvtpd_ps(_mm512_mul_pd(v, vi)));
    }
    for (; j < n; j++) o[j] = (float)((double)x[j] * inv);
}
#define DNM_FAST_PACK 1
#endif

static double sumsq_f(const float *x, int64_t n)
{
#ifdef DNM_FAST_PACK
    if (dnm_have_avx512()) return sumsq_f_avx512(x, n);
#endif
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int64_t j = 0; j < n; j++) ss += (double)x[j] * (double)x[j];
    return ss;
}

static void scale_f(const float *x, int64_t n, double inv, float *o)
{
#ifdef DNM_FAST_PACK
    if (dnm_have_avx512()) {
        scale_f_avx512(x, n, inv, o);
        return;
    }
#endif
    for (int64_t j = 0; j < n; j++) o[j] = (float)((double)x[j] * inv);
}

static void scale_d(const float *x, int64_t n, double inv, double *o)
{
    for (int64_t j = 0; j < n; j++) o[j] = (double)x[j] * inv;
}

#define DEFINE_PACK(SUF, REAL)                                                              \
    static int pack_one_##SUF(const dnm_matrix *m, int64_t i, REAL *o, int normalize,       \
                              double *tmp, double *norm_out)                                 \
    {                                                                                        \
        if (m->dtype != DNM_F64) {                                                           \
            /* float16/32 rows, whatever their layout or alignment, go through the same   \
             * arithmetic (results must not depend on where the data sit): a float    \
             * copy if needed, the sum of squares in double (it can neither overflow \
             * nor underflow; NaN/Inf make it non-finite), and one multiply by 1/norm \
             * in double (1/norm may exceed FLT_MAX) instead of a division. */         \
            const char *row = m->data + i * m->s0;                                           \
            const float *x = (const float *)row;                                             \
            if (!(m->dtype == DNM_F32 && m->s1 == 4 && ((uintptr_t)row & 3u) == 0)) {        \
                float *f = (float *)tmp;                                                     \
                for (int64_t j = 0; j < m->cols; j++) f[j] = (float)load(row + j * m->s1, m->dtype); \
                x = f;                                                                       \
            }                                                                                \
            const double ss = sumsq_f(x, m->cols);                                           \
            if (!(ss <= 1.7976931348623157e308)) return DNM_ENONFINITE;                      \
            const double nrm = sqrt(ss);                                                     \
            if (norm_out) *norm_out = nrm;                                                   \
            if (!normalize) {                                                                \
                for (int64_t j = 0; j < m->cols; j++) o[j] = (REAL)x[j];                     \
                return DNM_OK;                                                               \
            }                                                                                \
            if (nrm == 0.0) return DNM_EZERO;                                                \
            const double inv = 1.0 / nrm;                                                    \
            scale_##SUF(x, m->cols, inv, o);                                                 \
            return DNM_OK;                                                                   \
        }                                                                                    \
        double scale, snorm;                                                                 \
        double nrm = load_row(m, i, tmp, &scale, &snorm);                                    \
        if (nrm < 0) return DNM_ENONFINITE;                                                  \
        if (norm_out) *norm_out = nrm;                                                       \
        if (normalize) {                                                                     \
            if (nrm == 0.0) return DNM_EZERO;                                                \
            if (scale == 1.0) {                                                              \
                for (int64_t j = 0; j < m->cols; j++) o[j] = (REAL)(tmp[j] / nrm);           \
            } else { /* scaled first: the norm itself may overflow or be subnormal */      \
                for (int64_t j = 0; j < m->cols; j++) o[j] = (REAL)((tmp[j] / scale) / snorm); \
            }                                                                                \
        } else {                                                                             \
            for (int64_t j = 0; j < m->cols; j++) o[j] = (REAL)tmp[j];                       \
        }                                                                                    \
        return DNM_OK;                                                                       \
    }                                                                                        \
    int dnm_pack_rows_##SUF(const dnm_matrix *m, int64_t r0, int64_t r1, REAL *out,          \
                            int64_t ld, int normalize, double *norms, int64_t *bad_row)      \
    {                                                                                        \
        double *tmp = (double *)malloc((size_t)(m->cols > 0 ? m->cols : 1) * sizeof(double)); \
        if (!tmp) return DNM_ENOMEM;                                                         \
        int rc = DNM_OK;                                                                     \
        for (int64_t i = r0; i < r1 && rc == DNM_OK; i++) {                                  \
            rc = pack_one_##SUF(m, i, out + (i - r0) * ld, normalize, tmp,                   \
                                norms ? norms + (i - r0) : NULL);                            \
            if (rc != DNM_OK && bad_row) *bad_row = i;                                       \
        }                                                                                    \
        free(tmp);                                                                           \
        return rc;                                                                           \
    }                                                                                        \
    int dnm_gather_rows_##SUF(const dnm_matrix *m, const int64_t *idx, int64_t n, REAL *out, \
                              int64_t ld, int normalize, int64_t *bad_pos)                   \
    {                                                                                        \
        double *tmp = (double *)malloc((size_t)(m->cols > 0 ? m->cols : 1) * sizeof(double)); \
        if (!tmp) return DNM_ENOMEM;                                                         \
        int rc = DNM_OK;                                                                     \
        for (int64_t p = 0; p < n && rc == DNM_OK; p++) {                                    \
            rc = pack_one_##SUF(m, idx[p], out + p * ld, normalize, tmp, NULL);              \
            if (rc != DNM_OK && bad_pos) *bad_pos = idx[p];                                  \
        }                                                                                    \
        free(tmp);                                                                           \
        return rc;                                                                           \
    }

#include <stdlib.h>
DEFINE_PACK(f, float)
DEFINE_PACK(d, double)

void dnm_tick_done(dnm_tick_fn tick, void *ctx, int64_t *done, int64_t total,
                   volatile int *stop, dnm_error *err)
{
    int64_t now;
#pragma omp atomic capture
    now = ++*done;
    if (tick && omp_get_thread_num() == 0 && !*stop) {
        if (tick(ctx, now, total)) {
            *stop = 1;
            dnm_error_record(err, DNM_ECANCEL, -1, -1);
        }
    }
}

void dnm_tick_check(dnm_tick_fn tick, void *ctx, int64_t *done, int64_t total,
                    volatile int *stop, dnm_error *err)
{
    if (tick && omp_get_thread_num() == 0 && !*stop) {
        int64_t now;
#pragma omp atomic read
        now = *done;
        if (tick(ctx, now, total)) {
            *stop = 1;
            dnm_error_record(err, DNM_ECANCEL, -1, -1);
        }
    }
}

void dnm_error_set(dnm_error *err, int code, int which, int64_t row, int64_t col, double value)
{
    err->code = code;
    err->which = which;
    err->row = row;
    err->col = col;
    err->value = value;
}

void dnm_error_reset(dnm_error *err)
{
    dnm_error_set(err, DNM_OK, -1, -1, -1, 0.0);
}

void dnm_error_record(dnm_error *err, int code, int which, int64_t row)
{
#pragma omp critical(dnm_error_record)
    {
        if (err->code == DNM_OK ||
            (which >= 0 && which == err->which && row >= 0 && row < err->row)) {
            err->code = code;
            err->which = which;
            err->row = row;
            err->col = -1;
            err->value = 0.0;
        }
    }
}

/* ---- threads ------------------------------------------------------------ */
/* GNU OpenMP cannot be used in a child forked from a process whose OpenMP
 * thread pool exists: the child has only the forking thread, but libgomp
 * still counts the pool's threads and waits for them forever in the first
 * parallel region of more than one thread.  A pthread_atfork child handler
 * marks such a child (once this process has handed out more than one
 * thread), and every kernel there runs on one thread, as PyTorch does.  A
 * child of a process that never started the pool (spawn, forkserver) keeps
 * its threads.  The lock is our own mutex (not an omp critical) so that the
 * fork handlers can hold it across fork(): the child never inherits it
 * locked by a thread that no longer exists. */
static pthread_mutex_t threads_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static int active_kernels = 0;
static int saved_blas_threads = 1;
static int team_started = 0;  /* a kernel here was given more than one thread */
static int forked_child = 0;  /* forked after that: one thread only */
static int blas_restore = 0;  /* forked during a kernel: OpenBLAS still has dnm's 1 */

static void fork_prepare(void) { pthread_mutex_lock(&threads_lock); }
static void fork_parent(void) { pthread_mutex_unlock(&threads_lock); }
static void fork_child(void)
{
    if (team_started) forked_child = 1;
    if (active_kernels > 0) { /* their threads are not in this process */
        active_kernels = 0;
        blas_restore = 1;
    }
    pthread_mutex_unlock(&threads_lock);
}
static void register_atfork(void) { pthread_atfork(fork_prepare, fork_parent, fork_child); }

int dnm_forked_child(void)
{
    pthread_mutex_lock(&threads_lock);
    const int f = forked_child;
    pthread_mutex_unlock(&threads_lock);
    return f;
}

int dnm_threads_begin(int requested)
{
    int n;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&threads_lock);
    if (active_kernels++ == 0) {
        if (blas_restore) { /* the setting a kernel in the parent had saved */
            blas_restore = 0;
        } else {
            saved_blas_threads = DNM_BLAS(openblas_get_num_threads)();
            if (saved_blas_threads < 1) saved_blas_threads = 1;
        }
        DNM_BLAS(openblas_set_num_threads)(1);
    } else {
        /* not the 1 dnm wrote: set since (threadpoolctl leaving a block), and it stands */
        const int cur = DNM_BLAS(openblas_get_num_threads)();
        if (cur != 1) {
            saved_blas_threads = cur;
            DNM_BLAS(openblas_set_num_threads)(1);
        }
    }
    n = requested > 0 ? requested : omp_get_max_threads();
    if (n > saved_blas_threads) n = saved_blas_threads;
    if (n < 1 || forked_child) n = 1;
    if (n > 1) team_started = 1;
    pthread_mutex_unlock(&threads_lock);
    return n;
}

void dnm_threads_end(void)
{
    pthread_mutex_lock(&threads_lock);
    /* Back to the setting found at the start, unless someone else set OpenBLAS while the
     * kernels ran (threadpoolctl leaving a block): then theirs stands.  (A write of 1 by
     * someone else cannot be told from dnm's own and is undone.) */
    if (--active_kernels == 0 && DNM_BLAS(openblas_get_num_threads)() == 1)
        DNM_BLAS(openblas_set_num_threads)(saved_blas_threads);
    pthread_mutex_unlock(&threads_lock);
}

/* ---- exp and reductions ------------------------------------------------- */
/* exp(x) for x <= 0 in float: Cody-Waite reduction and a degree-6 polynomial,
 * |relative error| < 2e-7; returns 0 below -87 (where expf is subnormal).
 * Branch-free integer/float arithmetic so that loops over it vectorise. */
typedef union { float f; int32_t i; } dnm_fbits;

static inline float expf_neg(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f, ln2_lo = 1.42860682030941723e-6f;
    const float magic = 12582912.0f; /* 1.5 * 2^23 */
    float xc = x < -87.0f ? -87.0f : x;
    dnm_fbits kn, p;
    kn.f = xc * log2e + magic;
    float n = kn.f - magic;
    float r = xc - n * ln2_hi - n * ln2_lo;
    p.f = 1.0f + r * (1.0f + r * (0.5f + r * (0.166666672f + r * (0.0416666679f
          + r * (0.00833333377f + r * 0.00138888892f)))));
    p.i += (kn.i - 0x4B400000) * (1 << 23);
    return x < -87.0f ? 0.0f : p.f;
}

/* ---- fused row epilogue ---------------------------------------------------- */

/* (m, s) <- (m, s) (+) (ms, ss): two shifted sums of exp(logit / T) combined
 * in the log domain, in double. */
static inline void combine(double *m, double *s, double ms, double ss, double invT)
{
    if (ms > *m) {
        *s = (*s != 0.0 ? *s * exp((*m - ms) * invT) : 0.0) + ss;
        *m = ms;
    } else if (ms == *m) {
        *s += ss;
    } else {
        *s += ss * exp((ms - *m) * invT);
    }
}

#define DNM_SEG_MIN 1e-20

/* Sum of exp((x[i] - shift) * invT) for i < len, exp in float, sum in double. */
static double sumexp_seg(const float *x, int64_t len, float shift, float invT)
{
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < len; i++) ss += (double)expf_neg((x[i] - shift) * invT);
    return ss;
}

/* The fold of one row given the per-segment sums' shift `mx`; `segsum`
 * computes the sum of a segment for a given shift. */
#define DNM_FOLD_SEGMENTS(SEGSUM)                                                         \
    for (int64_t q = 0; q < nseg; q++) {                                                  \
        const float *xs = x + seg_off[q];                                                 \
        const int64_t len = seg_len[q];                                                   \
        double ss = SEGSUM(xs, len, mx, invT);                                            \
        double ms = (double)mx;                                                           \
        if (!(ss >= DNM_SEG_MIN)) { /* far below the row's max: redo with its own */     \
            float sm = -INFINITY;                                                         \
            for (int64_t i = 0; i < len; i++) sm = xs[i] > sm ? xs[i] : sm;               \
            ss = sumexp_seg(xs, len, sm, invT);                                           \
            ms = (double)sm;                                                              \
        }                                                                                 \
        const int64_t a = seg_acc[q];                                                     \
        combine(m + a, s + a, ms, ss, (double)invT);                                      \
    }

static void fold_row_generic(const float *x, int64_t w, int64_t nseg, const int64_t *seg_off,
                             const int64_t *seg_len, const int64_t *seg_acc, float invT,
                             double *m, double *s)
{
    float mx = -INFINITY;
#pragma omp simd reduction(max : mx)
    for (int64_t t = 0; t < w; t++) mx = x[t] > mx ? x[t] : mx;
    DNM_FOLD_SEGMENTS(sumexp_seg)
}

#if defined(__GNUC__) && defined(__x86_64__) && !defined(DNM_NO_CLONES)
#include "simd_exp.h"
#define DNM_AVX2 DNM_TGT_AVX2

DNM_AVX2 static double sumexp_seg_avx2(const float *x, int64_t len, float shift, float invT)
{
    const __m256 vs = _mm256_set1_ps(shift), vi = _mm256_set1_ps(invT);
    __m256d a0 = _mm256_setzero_pd(), a1 = _mm256_setzero_pd();
    int64_t i = 0;
    for (; i + 8 <= len; i += 8) {
        __m256 e = dnm_exp_neg8(_mm256_mul_ps(_mm256_sub_ps(_mm256_loadu_ps(x + i), vs), vi));
        a0 = _mm256_add_pd(a0, _mm256_cvtps_pd(_mm256_castps256_ps128(e)));
        a1 = _mm256_add_pd(a1, _mm256_cvtps_pd(_mm256_extractf128_ps(e, 1)));
    }
    double t[4];
    _mm256_storeu_pd(t, _mm256_add_pd(a0, a1));
    double ss = (t[0] + t[1]) + (t[2] + t[3]);
    for (; i < len; i++) {
        __m256 e = dnm_exp_neg8(_mm256_set1_ps((x[i] - shift) * invT));
        ss += (double)_mm256_cvtss_f32(e);
    }
    return ss;
}

DNM_AVX2 static void fold_row_avx2(const float *x, int64_t w, int64_t nseg,
                                   const int64_t *seg_off, const int64_t *seg_len,
                                   const int64_t *seg_acc, float invT, double *m, double *s)
{
    __m256 vm = _mm256_set1_ps(-INFINITY);
    int64_t t = 0;
    for (; t + 8 <= w; t += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + t));
    float tmp[8];
    _mm256_storeu_ps(tmp, vm);
    float mx = -INFINITY;
    for (int i = 0; i < 8; i++) mx = tmp[i] > mx ? tmp[i] : mx;
    for (; t < w; t++) mx = x[t] > mx ? x[t] : mx;
    DNM_FOLD_SEGMENTS(sumexp_seg_avx2)
}

#endif

void dnm_fold_row_f(const float *x, int64_t w, int64_t nseg, const int64_t *seg_off,
                    const int64_t *seg_len, const int64_t *seg_acc, float invT, double *m,
                    double *s)
{
#if defined(__GNUC__) && defined(__x86_64__) && !defined(DNM_NO_CLONES)
    if (dnm_have_avx2()) {
        fold_row_avx2(x, w, nseg, seg_off, seg_len, seg_acc, invT, m, s);
        return;
    }
#endif
    fold_row_generic(x, w, nseg, seg_off, seg_len, seg_acc, invT, m, s);
}

static double sumexp_seg_d(const double *x, int64_t len, double shift, double invT)
{
    double ss = 0.0;
    for (int64_t i = 0; i < len; i++) ss += exp((x[i] - shift) * invT);
    return ss;
}

void dnm_fold_row_d(const double *x, int64_t w, int64_t nseg, const int64_t *seg_off,
                    const int64_t *seg_len, const int64_t *seg_acc, double invT, double *m,
                    double *s)
{
    double mx = -INFINITY;
    for (int64_t t = 0; t < w; t++) mx = x[t] > mx ? x[t] : mx;
    for (int64_t q = 0; q < nseg; q++) {
        const double *xs = x + seg_off[q];
        const int64_t len = seg_len[q];
        double ss = sumexp_seg_d(xs, len, mx, invT);
        double ms = mx;
        if (!(ss >= DNM_SEG_MIN)) { /* far below the row's max: redo with its own */
            double sm = -INFINITY;
            for (int64_t i = 0; i < len; i++) sm = xs[i] > sm ? xs[i] : sm;
            ss = sumexp_seg_d(xs, len, sm, invT);
            ms = sm;
        }
        combine(m + seg_acc[q], s + seg_acc[q], ms, ss, invT);
    }
}
