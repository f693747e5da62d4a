/* score_avx512.c - the float scoring kernel for CPUs with AVX-512F (chosen at
 * run time; see dnm_score in score.c).
 *
 * Instead of calling SGEMM per tile (which repacks the label tile on every
 * call and writes a whole logit tile to memory before the epilogue reads it
 * back), this kernel owns its product:
 *
 *  - the label matrix [ID; negatives in group order] is normalised and packed
 *    once per call into panels of NR = 14 labels, [k][14] (zero-padded);
 *  - each thread normalises an image tile and packs it into panels of MR = 32
 *    images, [k][32];
 *  - a 32 x 14 register-tile microkernel (28 zmm accumulators, images along
 *    the vector lanes) computes the logits of 32 images against one label
 *    block (about 1 MB of packed labels, kept in L2 across the image tile's
 *    panels) into a small buffer [label][32], still in L1/L2;
 *  - the epilogue folds that buffer into per-image, per-accumulator
 *    log-domain state (running shift and sum, in double) with 16 images per
 *    vector: the same arithmetic as dnm_fold_row_f (one shift per row and
 *    block, exp in float, sums in double, a segment that underflows redone
 *    with its own maximum).
 *
 * Every logit is one FMA chain over k = 0..D-1 in order, whatever the tile
 * sizes, the thread count or the batch: a row's score does not depend on how
 * many other rows are scored with it.
 */
#include "score.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#if defined(__GNUC__) && defined(__x86_64__) && !defined(DNM_NO_CLONES)
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,fma")))
#define MR 32          /* images per microkernel tile (2 zmm) */
#define NR 14          /* labels per microkernel tile */
#ifndef DNM_KC
#define DNM_KC 512 /* k per microkernel call; longer rows are summed in slabs */
#endif
#define KC DNM_KC
#ifndef DNM_LB_BYTES
#define DNM_LB_BYTES (1 << 20) /* packed labels per block (kept in L2) */
#endif
#ifndef DNM_IT_BYTES
#define DNM_IT_BYTES (1 << 19) /* packed images per tile, at most */
#endif
#ifndef DNM_IT_MAX
#define DNM_IT_MAX 256
#endif
#define SEG_MIN 1e-20  /* as DNM_SEG_MIN in common.c */

static int have = -1;

int dnm_have_avx512(void)
{
    int h = __atomic_load_n(&have, __ATOMIC_RELAXED);
    if (h < 0) {
        __builtin_cpu_init();
        h = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
        __atomic_store_n(&have, h, __ATOMIC_RELAXED);
    }
    return h;
}

/* c[j*MR + i] (+)= sum_k a[k*MR + i] * b[k*NR + j] for i < 32, j < 14 (the next
 * label panel starts bnext floats after b).  With
 * mx, the running maxima mx[0..32) take in the first nvalid columns. */
TGT static void ukernel(int64_t kc, const float *restrict a, const float *restrict b,
                        int64_t bnext, float *restrict c, int accumulate, float *restrict mx,
                        int nvalid)
{
    __m512 x0[NR], x1[NR];
    if (accumulate) {
#pragma GCC unroll 14
        for (int j = 0; j < NR; j++) {
            x0[j] = _mm512_load_ps(c + j * MR);
            x1[j] = _mm512_load_ps(c + j * MR + 16);
        }
    } else {
#pragma GCC unroll 14
        for (int j = 0; j < NR; j++) x0[j] = x1[j] = _mm512_setzero_ps();
    }
    for (int64_t k = 0; k < kc; k++) {
        const __m512 a0 = _mm512_load_ps(a), a1 = _mm512_load_ps(a + 16);
#pragma GCC unroll 14
        for (int j = 0; j < NR; j++) {
            const __m512 bj = _mm512_set1_ps(b[j]);
            x0[j] = _mm512_fmadd_ps(a0, bj, x0[j]);
            x1[j] = _mm512_fmadd_ps(a1, bj, x1[j]);
        }
        /* the next label panel into L2 while this one is consumed (the first image
         * panel of a block would otherwise wait for it) */
        _mm_prefetch((const char *)(b + bnext), _MM_HINT_T1);
        a += MR;
        b += NR;
    }
#pragma GCC unroll 14
    for (int j = 0; j < NR; j++) {
        _mm512_store_ps(c + j * MR, x0[j]);
        _mm512_store_ps(c + j * MR + 16, x1[j]);
    }
    if (mx) {
        __m512 m0 = _mm512_load_ps(mx), m1 = _mm512_load_ps(mx + 16);
#pragma GCC unroll 14
        for (int j = 0; j < NR; j++) {
            if (j < nvalid) {
                m0 = _mm512_max_ps(m0, x0[j]);
                m1 = _mm512_max_ps(m1, x1[j]);
            }
        }
        _mm512_store_ps(mx, m0);
        _mm512_store_ps(mx + 16, m1);
    }
}

/* 16 lanes of expf_neg (common.c): the same reduction and polynomial. */
TGT static inline __m512 exp_neg16(__m512 x)
{
    const __m512 lo = _mm512_set1_ps(-87.0f), magic = _mm512_set1_ps(12582912.0f);
    const __m512 xc = _mm512_max_ps(x, lo);
    const __m512 kn = _mm512_fmadd_ps(xc, _mm512_set1_ps(1.44269504088896341f), magic);
    const __m512 n = _mm512_sub_ps(kn, magic);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860682030941723e-6f), r);
    __m512 p = _mm512_set1_ps(0.00138888892f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.00833333377f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.0416666679f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.166666672f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    const __m512i k = _mm512_sub_epi32(_mm512_castps_si512(kn), _mm512_set1_epi32(0x4B400000));
    const __m512i bits = _mm512_add_epi32(_mm512_castps_si512(p), _mm512_slli_epi32(k, 23));
    const __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    return _mm512_maskz_mov_ps((__mmask16)~under, _mm512_castsi512_ps(bits));
}

/* exp(x) in double for x <= 0 (x = -inf gives 0): Cody-Waite reduction, a
 * degree-13 Taylor polynomial on |r| <= ln2/2, scalef; error ~1 ulp. */
TGT static inline __m512d exp_pd8(__m512d x)
{
    x = _mm512_max_pd(x, _mm512_set1_pd(-746.0));
    const __m512d n = _mm512_roundscale_pd(_mm512_mul_pd(x, _mm512_set1_pd(1.4426950408889634)),
                                           _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512d r = _mm512_fnmadd_pd(n, _mm512_set1_pd(0.6931471803691238), x);
    r = _mm512_fnmadd_pd(n, _mm512_set1_pd(1.9082149292705877e-10), r);
    static const double c[] = {1.0 / 6227020800.0, 1.0 / 479001600.0, 1.0 / 39916800.0,
                               1.0 / 3628800.0,    1.0 / 362880.0,    1.0 / 40320.0,
                               1.0 / 5040.0,       1.0 / 720.0,       1.0 / 120.0,
                               1.0 / 24.0,         1.0 / 6.0,         0.5,
                               1.0,                1.0};
    __m512d p = _mm512_set1_pd(c[0]);
    for (int i = 1; i < 14; i++) p = _mm512_fmadd_pd(p, r, _mm512_set1_pd(c[i]));
    return _mm512_scalef_pd(p, n);
}

TGT static inline __m512d lo_pd(__m512 v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
TGT static inline __m512d hi_pd(__m512 v)
{
    return _mm512_cvtps_pd(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
}

/* Sums over the len columns of xs ([len][32]) of exp((x - shift) * invT) for
 * the 32 image lanes, in double (4 x 8 lanes). */
TGT static inline void sumexp32(const float *xs, int64_t len, __m512 sh0, __m512 sh1, __m512 vi,
                                __m512d out[4])
{
    /* float partial sums of at most 16 terms (each <= 1), then double */
    __m512d a0 = _mm512_setzero_pd(), a1 = a0, a2 = a0, a3 = a0;
    for (int64_t j = 0; j < len;) {
        const int64_t end = j + 16 < len ? j + 16 : len;
        __m512 f0 = _mm512_setzero_ps(), f1 = f0;
        for (; j < end; j++) {
            f0 = _mm512_add_ps(f0, exp_neg16(_mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(xs), sh0), vi)));
            f1 = _mm512_add_ps(f1, exp_neg16(_mm512_mul_ps(_mm512_sub_ps(_mm512_load_ps(xs + 16), sh1), vi)));
            xs += MR;
        }
        a0 = _mm512_add_pd(a0, lo_pd(f0));
        a1 = _mm512_add_pd(a1, hi_pd(f0));
        a2 = _mm512_add_pd(a2, lo_pd(f1));
        a3 = _mm512_add_pd(a3, hi_pd(f1));
    }
    out[0] = a0;
    out[1] = a1;
    out[2] = a2;
    out[3] = a3;
}

/* (m, s) <- (m, s) (+) (ms, ss) for 32 images (the lanes of 4 x 8 doubles), as
 * combine() in common.c: the larger shift wins, the other sum is rescaled. */
TGT static void combine32(double *mp, double *sp, const __m512d msd[4], const __m512d ss[4],
                          __m512d vid)
{
    for (int h = 0; h < 4; h++) {
        const __m512d mo = _mm512_loadu_pd(mp + 8 * h), so = _mm512_loadu_pd(sp + 8 * h);
        const __mmask8 gt = _mm512_cmp_pd_mask(msd[h], mo, _CMP_GT_OQ);
        const __m512d hi = _mm512_max_pd(mo, msd[h]), lo = _mm512_min_pd(mo, msd[h]);
        const __m512d e = exp_pd8(_mm512_mul_pd(_mm512_sub_pd(lo, hi), vid));
        /* new max: old sum rescaled plus the new one; else the new one rescaled */
        const __m512d sn = _mm512_mask_blend_pd(gt, _mm512_fmadd_pd(ss[h], e, so),
                                                _mm512_fmadd_pd(so, e, ss[h]));
        _mm512_storeu_pd(mp + 8 * h, hi);
        _mm512_storeu_pd(sp + 8 * h, sn);
    }
}

/* Fold a block of logits sb ([w][32]: w labels, 32 images; mx: each image's
 * maximum over them) into the state of 32 images: m[a*ld + i], s[a*ld + i]
 * for accumulator a, as dnm_fold_row_f does for one row.  With raw, segment
 * q's (shift, sum) pair is stored at raw + q * rawld (32 shifts, 32 sums) for
 * combine32 later, instead of being combined now. */
TGT static void fold_block(const float *sb, const float *mx, int64_t nseg, const int64_t *soff,
                           const int64_t *slen, const int64_t *sacc, float invT, double *m,
                           double *s, int64_t ld, double *raw, int64_t rawld)
{
    const __m512 mx0 = _mm512_load_ps(mx), mx1 = _mm512_load_ps(mx + 16);
    const __m512 vi = _mm512_set1_ps(invT);
    const __m512d vid = _mm512_set1_pd((double)invT), segmin = _mm512_set1_pd(SEG_MIN);
    for (int64_t q = 0; q < nseg; q++) {
        const float *xs = sb + soff[q] * MR;
        const int64_t len = slen[q];
        __m512d ss[4];
        sumexp32(xs, len, mx0, mx1, vi, ss);
        __m512 ms0 = mx0, ms1 = mx1;
        __mmask8 low[4];
        for (int h = 0; h < 4; h++) low[h] = _mm512_cmp_pd_mask(ss[h], segmin, _CMP_NGE_UQ);
        if (low[0] | low[1] | low[2] | low[3]) { /* far below the row's max: own max */
            __m512 sm0 = _mm512_set1_ps(-INFINITY), sm1 = sm0;
            for (int64_t j = 0; j < len; j++) {
                sm0 = _mm512_max_ps(sm0, _mm512_load_ps(xs + j * MR));
                sm1 = _mm512_max_ps(sm1, _mm512_load_ps(xs + j * MR + 16));
            }
            __m512d t[4];
            sumexp32(xs, len, sm0, sm1, vi, t);
            for (int h = 0; h < 4; h++) ss[h] = _mm512_mask_mov_pd(ss[h], low[h], t[h]);
            ms0 = _mm512_mask_mov_ps(ms0, (__mmask16)(low[0] | (low[1] << 8)), sm0);
            ms1 = _mm512_mask_mov_ps(ms1, (__mmask16)(low[2] | (low[3] << 8)), sm1);
        }
        const __m512d msd[4] = {lo_pd(ms0), hi_pd(ms0), lo_pd(ms1), hi_pd(ms1)};
        if (raw) {
            double *r = raw + q * rawld;
            for (int h = 0; h < 4; h++) {
                _mm512_storeu_pd(r + 8 * h, msd[h]);
                _mm512_storeu_pd(r + MR + 8 * h, ss[h]);
            }
        } else {
            combine32(m + sacc[q] * ld, s + sacc[q] * ld, msd, ss, vid);
        }
    }
    /* back to SSE code (finish_row, libm): without this the dirty upper halves
     * make every SSE instruction after it wait on a merge (scores became 3x slower) */
    _mm256_zeroupper();
}

/* combine32 of a pair stored by fold_block(raw) */
TGT static void combine_raw(const double *r, double *mp, double *sp, float invT)
{
    __m512d msd[4], ss[4];
    for (int h = 0; h < 4; h++) {
        msd[h] = _mm512_loadu_pd(r + 8 * h);
        ss[h] = _mm512_loadu_pd(r + MR + 8 * h);
    }
    combine32(mp, sp, msd, ss, _mm512_set1_pd((double)invT));
    _mm256_zeroupper();
}

/* The logits of image panel pa (32 images) against the np label panels at pb
 * into sb, and the images' maxima over the first w labels into mx. */
TGT static void block_product(const float *pa, const float *pb, int64_t np, int64_t w, int64_t D,
                              float *sb, float *mx)
{
    for (int i = 0; i < MR; i++) mx[i] = -INFINITY;
    for (int64_t k0 = 0; k0 < D; k0 += KC) {
        const int64_t kc = k0 + KC < D ? KC : D - k0;
        const int last = k0 + kc == D;
        for (int64_t jp = 0; jp < np; jp++)
            ukernel(kc, pa + k0 * MR, pb + jp * NR * D + k0 * NR, NR * D, sb + jp * NR * MR,
                    k0 > 0, last ? mx : NULL, (int)(w - jp * NR));
    }
}

/* Label rows [j0, j0 + NR) of [ID; negatives in group order], normalised,
 * into one panel [k][NR] (rows past L are zero).  tmp holds NR * D floats. */
static int pack_label_panel(const dnm_matrix *id, const dnm_matrix *neg,
                            const dnm_score_params *p, int64_t j0, int64_t L, float *tmp,
                            float *panel, dnm_error *err)
{
    const int64_t C = id->rows, D = id->cols;
    const int64_t j1 = j0 + NR < L ? j0 + NR : L;
    int64_t bad = -1;
    int rc;
    if (j0 < C) {
        const int64_t e = j1 < C ? j1 : C;
        rc = dnm_pack_rows_f(id, j0, e, tmp, D, 1, NULL, &bad);
        if (rc != DNM_OK) { dnm_error_record(err, rc, 1, bad); return rc; }
    }
    if (j1 > C) {
        const int64_t b = j0 > C ? j0 : C;
        rc = dnm_gather_rows_f(neg, p->index + (b - C), j1 - b, tmp + (b - j0) * D, D, 1, &bad);
        if (rc != DNM_OK) { dnm_error_record(err, rc, 2, bad); return rc; }
    }
    for (int64_t i = j1 - j0; i < NR; i++) memset(tmp + i * D, 0, (size_t)D * sizeof(float));
    for (int64_t k = 0; k < D; k++)
        for (int64_t i = 0; i < NR; i++) panel[k * NR + i] = tmp[i * D + k];
    return DNM_OK;
}

int dnm_pack_labels_f(const dnm_matrix *id, const dnm_matrix *neg, const dnm_score_params *p,
                      float *lab, int nt, dnm_error *err)
{
    const int64_t D = id->cols, L = id->rows + p->groups * p->group_size;
    const int64_t npanels = (L + NR - 1) / NR;
#pragma omp parallel num_threads(nt)
    {
        float *tmp = (float *)malloc((size_t)NR * (size_t)D * sizeof(float));
        if (!tmp) dnm_error_record(err, DNM_ENOMEM, -1, -1);
#pragma omp for schedule(static)
        for (int64_t jp = 0; jp < npanels; jp++) {
            if (tmp) pack_label_panel(id, neg, p, jp * NR, L, tmp, lab + jp * NR * D, err);
        }
        free(tmp);
    }
    return err->code;
}

static void *alloc64(size_t bytes)
{
    return aligned_alloc(64, (bytes + 63) / 64 * 64);
}

/* Rows [r0, r1) of the images, normalised (row-major into xb), into panels of
 * MR images [k][MR] at ap (zero rows pad the last panel). */
static int pack_tile(const dnm_matrix *images, int64_t r0, int64_t r1, float *xb, float *ap,
                     dnm_error *err)
{
    const int64_t D = images->cols, nr = r1 - r0, nmp = (nr + MR - 1) / MR;
    int64_t bad = -1;
    int rc = dnm_pack_rows_f(images, r0, r1, xb, D, 1, NULL, &bad);
    if (rc != DNM_OK) {
        dnm_error_record(err, rc, 0, bad);
        return rc;
    }
    for (int64_t ip = 0; ip < nmp; ip++) {
        float *pa = ap + ip * MR * D;
        for (int64_t i = 0; i < MR; i++) {
            const int64_t r = ip * MR + i;
            if (r < nr) {
                const float *x = xb + r * D;
                for (int64_t k = 0; k < D; k++) pa[k * MR + i] = x[k];
            } else {
                for (int64_t k = 0; k < D; k++) pa[k * MR + i] = 0.0f;
            }
        }
    }
    return DNM_OK;
}

static void reset_state(double *sm, double *ss, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        sm[i] = -INFINITY;
        ss[i] = 0.0;
    }
}

/* Scores of nr images from their state (accumulator a of image r at a*ld + r). */
static void finish_tile(const dnm_score_params *p, int64_t C, const double *sm,
                        const double *ss, int64_t ld, int64_t nr, double *row, double *out,
                        int64_t *floored)
{
    const int64_t G = p->groups;
    double *mg = row, *sg = row + 1 + G;
    for (int64_t r = 0; r < nr; r++) {
        for (int64_t a = 0; a <= G; a++) {
            mg[a] = sm[a * ld + r];
            sg[a] = ss[a * ld + r];
        }
        out[r] = dnm_score_finish_row(p, C, mg[0], sg[0], mg + 1, sg + 1, floored);
    }
}

/* One image tile and more than one thread: the threads share the label blocks
 * instead.  Each block's per-segment (shift, sum) pairs are kept and combined
 * afterwards in block order - the order the tile loop combines them in - so
 * the scores are the same bits.  Returns the number of blocks (the progress
 * total) when it ran, errors in err, or -1 (nothing done) when the pairs would
 * take more than 32 MiB. */
static int64_t score_split(const dnm_matrix *images, const dnm_score_params *p, const float *lab,
                       int64_t C, int64_t LB, int nt, float invT, double *out,
                       int64_t *n_floored, dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    const int64_t N = images->rows, D = images->cols, G = p->groups, Q = p->group_size;
    const int64_t L = C + G * Q, nmp = (N + MR - 1) / MR, ITP = nmp * MR;
    const int64_t nblocks = (L + LB - 1) / LB;
    int64_t total = 0;
    for (int64_t b = 0; b < nblocks; b++) {
        const int64_t j0 = b * LB, w = j0 + LB < L ? LB : L - j0;
        total += dnm_score_segments(j0, w, C, Q, NULL, NULL, NULL);
    }
    if ((double)total * (double)nmp * 64.0 * sizeof(double) > 32.0 * 1048576.0) return -1;
    int64_t *bstart = (int64_t *)malloc((size_t)(nblocks + 1) * sizeof(int64_t));
    int64_t *so = (int64_t *)malloc((size_t)total * 3 * sizeof(int64_t));
    double *raw = (double *)malloc((size_t)total * (size_t)nmp * 64 * sizeof(double));
    double *sm = (double *)malloc((size_t)(1 + G) * (size_t)ITP * 2 * sizeof(double));
    double *row = (double *)malloc((size_t)(1 + G) * 2 * sizeof(double));
    float *xb = (float *)malloc((size_t)N * (size_t)D * sizeof(float));
    float *ap = (float *)alloc64((size_t)ITP * (size_t)D * sizeof(float));
    if (!(bstart && so && raw && sm && row && xb && ap)) {
        dnm_error_record(err, DNM_ENOMEM, -1, -1);
        goto out;
    }
    int64_t *soff = so, *slen = so + total, *sacc = so + 2 * total;
    for (int64_t b = 0, t = 0; b < nblocks; b++) {
        const int64_t j0 = b * LB, w = j0 + LB < L ? LB : L - j0;
        bstart[b] = t;
        t += dnm_score_segments(j0, w, C, Q, soff + t, slen + t, sacc + t);
    }
    bstart[nblocks] = total;
    if (pack_tile(images, 0, N, xb, ap, err) != DNM_OK) goto out;

    volatile int stop = 0;
    int64_t done = 0;
#pragma omp parallel num_threads(nt)
    {
        float *sb = (float *)alloc64((size_t)MR * (size_t)(LB + 1) * sizeof(float));
        float *mx = sb ? sb + MR * LB : NULL;
        if (!sb) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t b = 0; b < nblocks; b++) {
            if (stop || !sb) continue;
            const int64_t j0 = b * LB, w = j0 + LB < L ? LB : L - j0, np = (w + NR - 1) / NR;
            const int64_t q0 = bstart[b], nseg = bstart[b + 1] - q0;
            for (int64_t ip = 0; ip < nmp; ip++) {
                block_product(ap + ip * MR * D, lab + j0 * D, np, w, D, sb, mx);
                fold_block(sb, mx, nseg, soff + q0, slen + q0, sacc + q0, invT, NULL, NULL, 0,
                           raw + (q0 * nmp + ip) * 64, nmp * 64);
            }
            dnm_tick_done(tick, tick_ctx, &done, nblocks, &stop, err);
        }
        free(sb);
    }
    if (err->code != DNM_OK) goto out;
    double *ss = sm + (1 + G) * ITP;
    reset_state(sm, ss, (1 + G) * ITP);
    for (int64_t q = 0; q < total; q++)
        for (int64_t ip = 0; ip < nmp; ip++)
            combine_raw(raw + (q * nmp + ip) * 64, sm + sacc[q] * ITP + ip * MR,
                        ss + sacc[q] * ITP + ip * MR, invT);
    finish_tile(p, C, sm, ss, ITP, N, row, out, n_floored);
out:
    free(bstart);
    free(so);
    free(raw);
    free(sm);
    free(row);
    free(xb);
    free(ap);
    return nblocks;
}

int dnm_score_f_avx512(const dnm_matrix *images, const dnm_matrix *id, const dnm_matrix *neg,
                       const dnm_score_params *p, double *out, int64_t *n_floored, int nt,
                       dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    const int64_t N = images->rows, D = images->cols, C = id->rows;
    const int64_t G = p->groups, Q = p->group_size, L = C + G * Q;
    float invT = (float)(1.0 / p->temperature);
    if (!isfinite(invT)) invT = FLT_MAX; /* as in score_impl.h */
    volatile int stop = 0;
    int64_t floored = 0, done = 0;

    /* label blocks of NPB panels: about 1 MB of packed labels (stays in L2) */
    int64_t npb = (int64_t)DNM_LB_BYTES / (NR * D * (int64_t)sizeof(float));
    npb = npb < 1 ? 1 : npb > 64 ? 64 : npb;
    const int64_t LB = npb * NR, npanels = (L + NR - 1) / NR;
    /* image tiles: at most ~512 KB packed, and enough tiles to keep threads busy */
    int64_t IT = p->tile_rows > 0 ? p->tile_rows : (DNM_IT_BYTES / 4 / D) / MR * MR;
    if (p->tile_rows <= 0) {
        const int64_t share = ((N + 4 * nt - 1) / (4 * nt) + MR - 1) / MR * MR;
        if (IT > share) IT = share;
        if (IT > DNM_IT_MAX) IT = DNM_IT_MAX;
        if (IT < MR) IT = MR;
    }
    const int64_t ntiles = (N + IT - 1) / IT;
    const int64_t ITP = (IT + MR - 1) / MR * MR; /* padded to whole panels */
    const int nt_lab = (double)L * (double)D < 262144.0 ? 1 : nt;
    /* the work counts padded rows: a panel of 32 images costs the same for 1 image */
    const double work = (double)(ntiles > 1 ? N : (N + MR - 1) / MR * MR) * (double)L *
                        (double)(D + 16);
    const int nt_img = ntiles < nt ? (int)ntiles : (work < 33554432.0 ? 1 : nt);

    float *own = NULL; /* the packed labels, unless the caller packed them */
    const float *lab = p->packed;
    if (!lab) {
        own = (float *)alloc64((size_t)npanels * NR * (size_t)D * sizeof(float));
        if (!own) { err->code = DNM_ENOMEM; return DNM_ENOMEM; }
        if (dnm_pack_labels_f(id, neg, p, own, nt_lab, err) != DNM_OK) {
            free(own);
            return err->code;
        }
        lab = own;
    }

    if (ntiles == 1 && nt > 1 && L > LB && work >= 33554432.0) {
        const int64_t nblocks = score_split(images, p, lab, C, LB, nt, invT, out, &floored,
                                            tick, tick_ctx, err);
        if (nblocks > 0) {
            free(own);
            *n_floored = floored;
            return dnm_score_close(p, floored, tick, tick_ctx, nblocks, err);
        }
    }

#pragma omp parallel num_threads(nt_img)
    {
        float *xb = (float *)malloc((size_t)IT * (size_t)D * sizeof(float));
        float *ap = (float *)alloc64((size_t)ITP * (size_t)D * sizeof(float));
        float *sb = (float *)alloc64((size_t)MR * (size_t)(LB + 1) * sizeof(float));
        float *mx = sb ? sb + MR * LB : NULL; /* per image maxima over the block */
        double *sm = (double *)malloc((size_t)(1 + G) * (size_t)ITP * 2 * sizeof(double));
        double *ss = sm ? sm + (1 + G) * ITP : NULL;
        double *row = (double *)malloc((size_t)(1 + G) * 2 * sizeof(double));
        const int64_t maxseg = LB + 2 < G + 2 ? LB + 2 : G + 2;
        int64_t *so = (int64_t *)malloc((size_t)maxseg * 3 * sizeof(int64_t));
        int64_t my_floored = 0;
        const int ok = xb && ap && sb && sm && row && so;
        if (!ok) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
#pragma omp for schedule(dynamic, 1)
        for (int64_t t = 0; t < ntiles; t++) {
            if (stop || !ok) continue;
            const int64_t r0 = t * IT, r1 = r0 + IT < N ? r0 + IT : N, nr = r1 - r0;
            const int64_t nmp = (nr + MR - 1) / MR;
            if (pack_tile(images, r0, r1, xb, ap, err) != DNM_OK) {
                stop = 1;
                continue;
            }
            reset_state(sm, ss, (1 + G) * ITP);
            for (int64_t j0 = 0; j0 < L; j0 += LB) {
                const int64_t w = j0 + LB < L ? LB : L - j0;
                const int64_t np = (w + NR - 1) / NR;
                const float *pb = lab + j0 * D; /* j0 is a multiple of NR */
                int64_t *soff = so, *slen = so + maxseg, *sacc = so + 2 * maxseg;
                const int64_t nseg = dnm_score_segments(j0, w, C, Q, soff, slen, sacc);
                for (int64_t ip = 0; ip < nmp; ip++) {
                    block_product(ap + ip * MR * D, pb, np, w, D, sb, mx);
                    fold_block(sb, mx, nseg, soff, slen, sacc, invT, sm + ip * MR, ss + ip * MR,
                               ITP, NULL, 0);
                }
            }
            finish_tile(p, C, sm, ss, ITP, nr, row, out + r0, &my_floored);
            dnm_tick_done(tick, tick_ctx, &done, ntiles, &stop, err);
        }
#pragma omp atomic
        floored += my_floored;
        free(xb);
        free(ap);
        free(sb);
        free(sm);
        free(row);
        free(so);
    }
    free(own);
    *n_floored = floored;
    return dnm_score_close(p, floored, tick, tick_ctx, ntiles, err);
}

#else /* no AVX-512 kernel in this build */

int dnm_have_avx512(void) { return 0; }

int dnm_pack_labels_f(const dnm_matrix *id, const dnm_matrix *neg, const dnm_score_params *p,
                      float *lab, int nt, dnm_error *err)
{
    (void)id, (void)neg, (void)p, (void)lab, (void)nt;
    err->code = DNM_EDOMAIN;
    return DNM_EDOMAIN;
}

int dnm_score_f_avx512(const dnm_matrix *images, const dnm_matrix *id, const dnm_matrix *neg,
                       const dnm_score_params *p, double *out, int64_t *n_floored, int nt,
                       dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    (void)images, (void)id, (void)neg, (void)p, (void)out, (void)n_floored, (void)nt;
    (void)tick, (void)tick_ctx;
    err->code = DNM_EDOMAIN;
    return DNM_EDOMAIN;
}
#endif
