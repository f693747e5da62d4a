/* tta_simd.h - the float32 softmax rows of the test-time adaptive scores
 * (dnm_softmax_rows, tta.h) on dnm's own product kernel, with their own
 * epilogue.  Included by score_avx512.c and score_avx2.c after score_simd.h,
 * whose microkernel (ukernel / block_product: one FMA chain per logit over
 * k = 0..D-1 in order, MR images along the vector lanes, NR broadcast labels),
 * image packing (pack_tile) and vector vocabulary it uses.
 *
 * The labels are taken in "packed order": [ID; group 0; ...; group G-1; the
 * other columns in index order] when there are groups (col[p] = the label row
 * at packed position p; the rows are written to the labels' own positions, or
 * with p->packed_rows in packed order), in
 * their own order when there are none, or when group columns repeat and the
 * rows are wanted (col NULL; the group masses are then summed from the
 * finished row), cut into blocks of LB labels (a multiple of 42, the same
 * blocks in both builds).  An image tile (up to DNM_TTA_SIMD_IT images,
 * normalised and packed once) is multiplied block by block; the blocks are the
 * threads' tasks (each packs its block into panels of NR labels, L2-resident,
 * or takes it from the labels packed once, dnm_softmax_pack, then runs every
 * image panel against it).  Per image and block the epilogue
 * takes the block's maximum m_b (from the microkernel) as shift and computes
 * e_j = exp((z_j - m_b) / T), one exp per logit, in float (the double exp for a
 * lane whose argument is below -80; see tta_fold); it sums them in double per
 * accumulator (ID, each group, the rest) in column order, lane by lane, and
 * writes them (as doubles) to the image's row when rows are wanted (unscaled rows, with
 * scales: straight from the epilogue into the panel layout of tta.h, [block columns][MR
 * images] as it computes them, double or, with p->rows_f32, float).  Once every block is
 * done, each image combines its blocks in block order: m = max m_b,
 * f_b = exp((m_b - m) / T), S_a = sum_b f_b s_ab, S = sum_a S_a; the masses
 * are S_a / S and the row's block b is scaled by f_b / S (one more pass over
 * the row), or, with scales, f_b / S is stored for the consumers to apply as
 * they read (tta.h).  Selected columns (p->sel) are copied out of each
 * block's values while they are in cache and scaled with the row.  Nothing in a row's arithmetic depends on the other rows, the
 * tile, the thread count or the vector width: a row's results are bitwise the
 * same in any batch, with any threads, in the AVX2 and AVX-512 builds.
 */
#include "tta.h"

#ifndef DNM_TTA_SIMD_IT
#define DNM_TTA_SIMD_IT 256 /* images per tile, at most */
#endif
#define DNM_TTA_PAIRS_BYTES (64.0 * 1048576.0) /* per-block partial sums of a tile, at most */

/* Labels [j0, j0 + w) of packed order into panels of NR labels [k][NR] at lp
 * (labels past w are zero). */
static void tta_pack_block(const float *lab, int64_t D, const int64_t *col, int64_t j0, int64_t w,
                           float *lp)
{
    const int64_t np = (w + NR - 1) / NR;
    for (int64_t jp = 0; jp < np; jp++) {
        const float *src[NR];
        for (int i = 0; i < NR; i++) {
            const int64_t j = jp * NR + i;
            src[i] = j < w ? lab + (col ? col[j0 + j] : j0 + j) * D : NULL;
        }
        float *panel = lp + jp * NR * D;
        for (int i = 0; i < NR; i++) {
            if (src[i]) {
                for (int64_t k = 0; k < D; k++) panel[k * NR + i] = src[i][k];
            } else {
                for (int64_t k = 0; k < D; k++) panel[k * NR + i] = 0.0f;
            }
        }
    }
}

/* The labels packed once (dnm_softmax_pack, tta.h): block b's panels (as
 * tta_pack_block packs them) at b * LB * D, the last block's panels padded to NR. */
int64_t SIMD_FN(dnm_softmax_packed_floats)(int64_t L, int64_t D)
{
    const int64_t LB = dnm_tta_lb(D), nb = (L + LB - 1) / LB, w = L - (nb - 1) * LB;
    return ((nb - 1) * LB + (w + NR - 1) / NR * NR) * D;
}

int64_t SIMD_FN(dnm_softmax_mr)(void) { return MR; }

void SIMD_FN(dnm_softmax_pack_f)(const float *lab, int64_t L, int64_t D, const int64_t *col,
                                 const int64_t *pos, const int64_t *rows, int64_t n,
                                 float *packed)
{
    const int64_t LB = dnm_tta_lb(D), nb = (L + LB - 1) / LB;
    if (!rows) {
        for (int64_t b = 0; b < nb; b++) {
            const int64_t j0 = b * LB, w = j0 + LB < L ? LB : L - j0;
            tta_pack_block(lab, D, col, j0, w, packed + j0 * D);
        }
        return;
    }
    for (int64_t k = 0; k < n; k++) { /* label row l at packed position q */
        const int64_t l = rows[k], q = pos ? pos[l] : l, j = q % LB;
        float *panel = packed + (q - j) * D + j / NR * NR * D;
        const float *src = lab + l * D;
        for (int64_t kk = 0; kk < D; kk++) panel[kk * NR + j % NR] = src[kk];
    }
}

/* The epilogue of one block for MR images: sb ([w][MR] logits), mx (the
 * images' maxima over the block).  pm[0..MR) = the shifts m_b, pm[(1 + a) * ld
 * + i] = accumulator a's sum of e_j (acc a covers packed columns [bnd[a],
 * bnd[a + 1]); zero when the block has none of it).  With eb, e_j goes to
 * eb[j * MR + i].  e_j = exp(x) with x = (z_j - m_b) * (float)(1 / T) in float:
 * the float exp of simd_exp.h where x >= DNM_TTA_FEXP_MIN, else (lane by lane,
 * rare: logits that far below their block's maximum) the double exp of
 * (z_j - m_b) / T, so nothing underflows that the double exp would keep.  The
 * choice depends on the lane's own values only. */
#define DNM_TTA_FEXP_MIN (-80.0)

/* some lane of x0 or x1 below lim (a cheap test before the per-lane choice) */
TGT static inline int tta_any_below(VF x0, VF x1, float lim)
{
#if W == 8
    return _mm256_movemask_ps(_mm256_cmp_ps(_mm256_min_ps(x0, x1), _mm256_set1_ps(lim),
                                            _CMP_LT_OQ)) != 0;
#else
    return _mm512_cmp_ps_mask(_mm512_min_ps(x0, x1), _mm512_set1_ps(lim), _CMP_LT_OQ) != 0;
#endif
}

TGT static void tta_fold(const float *sb, const float *mx, int64_t j0, int64_t w,
                         const int64_t *bnd, int64_t NA, double invT, double *pm, int64_t ld,
                         double *eb, float *ebf, int stream)
{
    const VF mx0 = vf_load(mx), mx1 = vf_load(mx + W);
    const VD m[4] = {vd_lo(mx0), vd_hi(mx0), vd_lo(mx1), vd_hi(mx1)};
    const VD vi = vd_set1(invT), lim = vd_set1(DNM_TTA_FEXP_MIN);
    const VF vif = vf_set1(invT < FLT_MAX ? (float)invT : FLT_MAX);
    for (int h = 0; h < 4; h++) vd_storeu(pm + WD * h, m[h]);
    for (int64_t a = 0; a < NA; a++) {
        const int64_t lo = bnd[a] > j0 ? bnd[a] - j0 : 0;
        const int64_t hi = bnd[a + 1] < j0 + w ? bnd[a + 1] - j0 : w;
        VD s[4] = {vd_zero(), vd_zero(), vd_zero(), vd_zero()};
        for (int64_t j = lo; j < hi; j++) {
            const VF z0 = vf_load(sb + j * MR), z1 = vf_load(sb + j * MR + W);
            const VF x0 = vf_mul(vf_sub(z0, mx0), vif), x1 = vf_mul(vf_sub(z1, mx1), vif);
            const VF f0 = exp_neg(x0), f1 = exp_neg(x1);
            VD e[4] = {vd_lo(f0), vd_hi(f0), vd_lo(f1), vd_hi(f1)};
            if (tta_any_below(x0, x1, (float)DNM_TTA_FEXP_MIN)) { /* (x < -80 exactly in both) */
                const VD xd[4] = {vd_lo(x0), vd_hi(x0), vd_lo(x1), vd_hi(x1)};
                const VD zd[4] = {vd_lo(z0), vd_hi(z0), vd_lo(z1), vd_hi(z1)};
                for (int h = 0; h < 4; h++)
                    e[h] = vd_select(vm_gt(lim, xd[h]), exp_pd(vd_mul(vd_sub(zd[h], m[h]), vi)),
                                     e[h]);
            }
            for (int h = 0; h < 4; h++) {
                s[h] = vd_add(s[h], e[h]);
                if (eb) vd_storeu(eb + j * MR + WD * h, e[h]);
            }
            if (ebf) { /* the float exps as they are; a double exp's lane rounded */
                VF g0 = f0, g1 = f1;
                if (tta_any_below(x0, x1, (float)DNM_TTA_FEXP_MIN)) {
                    double t[MR];
                    float tf[MR] __attribute__((aligned(64)));
                    for (int h = 0; h < 4; h++) vd_storeu(t + WD * h, e[h]);
                    for (int i = 0; i < MR; i++) tf[i] = (float)t[i];
                    g0 = vf_load(tf);
                    g1 = vf_load(tf + W);
                }
                if (stream) { /* 64-byte aligned rows, read again only after the call */
                    vf_stream(ebf + j * MR, g0);
                    vf_stream(ebf + j * MR + W, g1);
                } else {
                    vf_storeu(ebf + j * MR, g0);
                    vf_storeu(ebf + j * MR + W, g1);
                }
            }
        }
        for (int h = 0; h < 4; h++) vd_storeu(pm + (1 + a) * ld + WD * h, s[h]);
    }
    SIMD_LEAVE();
}

/* eb ([w][MR], as tta_fold stores it) into the rows of nimg images, columns
 * [j0, j0 + w) of each: row i at row0 + i * L.  For a full panel whose rows
 * share their alignment (L a multiple of 4), the columns from the first 32-byte
 * boundary on go in 4 x 4 blocks transposed in registers and stored whole (in
 * both builds: MR / 4 such blocks per 4 columns); the others one value at a
 * time.  The values are the same either way. */
TGT static void tta_write_rows(const double *eb, int64_t w, double *row0, int64_t L, int64_t j0,
                               int64_t nimg)
{
    int64_t a = 0, b = 0; /* [a, b): the columns written in 4 x 4 blocks */
    if (nimg == MR && L % 4 == 0 && ((uintptr_t)row0 & 7) == 0) {
        a = (int64_t)((32 - ((uintptr_t)(row0 + j0) & 31)) & 31) / 8;
        a = a < w ? a : w;
        b = a + (w - a) / 4 * 4;
        for (int64_t j = a; j < b; j += 4) {
            for (int h = 0; h < MR / 4; h++) {
                const __m256d c0 = _mm256_loadu_pd(eb + (j + 0) * MR + 4 * h);
                const __m256d c1 = _mm256_loadu_pd(eb + (j + 1) * MR + 4 * h);
                const __m256d c2 = _mm256_loadu_pd(eb + (j + 2) * MR + 4 * h);
                const __m256d c3 = _mm256_loadu_pd(eb + (j + 3) * MR + 4 * h);
                const __m256d t0 = _mm256_unpacklo_pd(c0, c1), t1 = _mm256_unpackhi_pd(c0, c1);
                const __m256d t2 = _mm256_unpacklo_pd(c2, c3), t3 = _mm256_unpackhi_pd(c2, c3);
                const __m256d r[4] = {_mm256_permute2f128_pd(t0, t2, 0x20),
                                      _mm256_permute2f128_pd(t1, t3, 0x20),
                                      _mm256_permute2f128_pd(t0, t2, 0x31),
                                      _mm256_permute2f128_pd(t1, t3, 0x31)};
                for (int i = 0; i < 4; i++) _mm256_store_pd(row0 + (4 * h + i) * L + j0 + j, r[i]);
            }
        }
    }
    for (int64_t i = 0; i < nimg; i++) {
        double *row = row0 + i * L + j0;
        for (int64_t j = 0; j < a; j++) row[j] = eb[j * MR + i];
        for (int64_t j = b; j < w; j++) row[j] = eb[j * MR + i];
    }
    SIMD_LEAVE();
}

/* The blocks of MR images combined in block order (pairs: block b's shifts at
 * pairs + b * (NA + 1) * ld, its sums after them, as tta_fold stores them):
 * S[a * MR + i] = sum_b f_b s_ab with f_b = exp((m_b - m) / T), m = max_b m_b;
 * f_b replaces m_b in pairs. */
TGT static void tta_combine(double *pairs, int64_t nblocks, int64_t NA, int64_t ld, double invT,
                            double *S)
{
    const VD vi = vd_set1(invT);
    VD m[4];
    for (int h = 0; h < 4; h++) m[h] = vd_set1(-INFINITY);
    for (int64_t b = 0; b < nblocks; b++)
        for (int h = 0; h < 4; h++) m[h] = vd_max(m[h], vd_loadu(pairs + b * (NA + 1) * ld + WD * h));
    for (int64_t a = 0; a < NA; a++)
        for (int h = 0; h < 4; h++) vd_storeu(S + a * MR + WD * h, vd_zero());
    for (int64_t b = 0; b < nblocks; b++) {
        double *pm = pairs + b * (NA + 1) * ld;
        VD f[4];
        for (int h = 0; h < 4; h++) {
            f[h] = exp_pd(vd_mul(vd_sub(vd_loadu(pm + WD * h), m[h]), vi));
            vd_storeu(pm + WD * h, f[h]);
        }
        for (int64_t a = 0; a < NA; a++)
            for (int h = 0; h < 4; h++) {
                double *sp = S + a * MR + WD * h;
                vd_storeu(sp, vd_fma(f[h], vd_loadu(pm + (1 + a) * ld + WD * h), vd_loadu(sp)));
            }
    }
    SIMD_LEAVE();
}

int SIMD_FN(dnm_softmax_rows_f)(const dnm_matrix *images, const dnm_matrix *labels,
                                const dnm_tta_params *p, const int64_t *col, void *rows_out,
                                double *id_mass, double *group_mass, double *scales, int nt,
                                dnm_tick_fn tick, void *tick_ctx, dnm_error *err)
{
    const int64_t N = images->rows, D = images->cols, L = labels->rows;
    /* float rows (p->rows_f32: unscaled, no groups, checked by the caller) or double rows */
    float *rows32 = p->rows_f32 ? (float *)rows_out : NULL;
    double *rows = p->rows_f32 ? NULL : (double *)rows_out;
    const int want_rows = rows_out != NULL;
    /* with rows and groups outside the packed order (col NULL), the group masses are
     * gathered from the finished row */
    const int64_t C = p->n_id, G = p->groups, Q = p->group_size;
    const int gather = want_rows && G > 0 && !col, NA = gather ? 2 : G + 2;
    const float *lab = (const float *)labels->data;
    double invT = 1.0 / p->temperature;
    if (!isfinite(invT)) invT = DBL_MAX;
    const int64_t LB = dnm_tta_lb(D);
    const int64_t nblocks = (L + LB - 1) / LB;
    int64_t IT = (N + MR - 1) / MR * MR;
    if (IT > DNM_TTA_SIMD_IT) IT = DNM_TTA_SIMD_IT;
    {
        const int64_t cap = (int64_t)(DNM_TTA_PAIRS_BYTES /
                                      ((double)nblocks * (double)(NA + 1) * sizeof(double))) /
                            MR * MR;
        if (IT > cap) IT = cap < MR ? MR : cap;
    }
    const int64_t ntiles = (N + IT - 1) / IT, total = ntiles * nblocks;
    /* the selected columns: taken from each block while it is in cache when the rows are
     * in packed order (else from the finished rows); selb[b] = the first pair of block b */
    const int fuse = p->n_sel > 0 && (!col || p->packed_rows);
    int64_t *selb = fuse ? (int64_t *)malloc((size_t)(nblocks + 1) * sizeof(int64_t)) : NULL;
    if (fuse && selb) {
        int64_t k = 0;
        for (int64_t b = 0; b <= nblocks; b++) {
            while (k < p->n_sel && p->sel_pairs[2 * k] < b * LB) k++;
            selb[b] = k;
        }
    }
    int64_t *bnd = (int64_t *)malloc((size_t)(NA + 1) * sizeof(int64_t));
    float *xb = (float *)malloc((size_t)IT * (size_t)D * sizeof(float));
    float *ap = (float *)alloc64((size_t)IT * (size_t)D * sizeof(float));
    double *pairs = (double *)malloc((size_t)nblocks * (size_t)(NA + 1) * (size_t)IT *
                                     sizeof(double));
    volatile int stop = 0;
    int64_t done = 0;
    if (!bnd || !xb || !ap || !pairs || (fuse && !selb)) {
        dnm_error_record(err, DNM_ENOMEM, -1, -1);
        goto out;
    }
    bnd[0] = 0;
    bnd[1] = C;
    for (int64_t g = 0; g < NA - 2; g++) bnd[2 + g] = C + (g + 1) * Q;
    bnd[NA] = L;
    /* unscaled rows (scales: no groups, labels in their own order) are written in panels
     * (tta.h): each block's values go from the epilogue straight to their place */
    const int panel = want_rows && scales != NULL;
    /* float panels from a 64-byte boundary (every store of the epilogue is then aligned)
     * larger than the caches: streamed past them */
    const int stream = panel && rows32 && ((uintptr_t)rows32 & 63) == 0 &&
                       (double)N * (double)L * sizeof(float) > 32e6;
    if ((double)N * (double)L * (double)D < 1e7) nt = 1;
    if (nt > nblocks) nt = (int)nblocks;
    if (nt < 1) nt = 1;

#pragma omp parallel num_threads(nt)
    {
        float *lp = p->packed ? NULL : (float *)alloc64((size_t)LB * (size_t)D * sizeof(float));
        float *sb = (float *)alloc64((size_t)MR * (size_t)(LB + 1) * sizeof(float));
        float *mx = sb ? sb + MR * LB : NULL;
        double *eb = want_rows && !panel ? (double *)malloc((size_t)LB * MR * sizeof(double))
                                        : NULL;
        double *S = (double *)malloc((size_t)NA * MR * sizeof(double));
        const int ok = (lp || p->packed) && sb && S && (!want_rows || panel || eb);
        if (!ok) {
            dnm_error_record(err, DNM_ENOMEM, -1, -1);
            stop = 1;
        }
        for (int64_t t = 0; t < ntiles; t++) {
            const int64_t r0 = t * IT, r1 = r0 + IT < N ? r0 + IT : N, nr = r1 - r0;
            const int64_t nmp = (nr + MR - 1) / MR, ld = nmp * MR;
#pragma omp single
            {
                if (!stop && pack_tile(images, r0, r1, xb, ap, 1, 0, err) != DNM_OK) stop = 1;
            }
#pragma omp for schedule(dynamic, 1)
            for (int64_t b = 0; b < nblocks; b++) {
                if (stop || !ok) continue;
                const int64_t j0 = b * LB, w = j0 + LB < L ? LB : L - j0;
                const int64_t np = (w + NR - 1) / NR;
                double *pb = pairs + b * (NA + 1) * ld;
                const float *lpb = p->packed ? p->packed + j0 * D : lp;
                if (!p->packed) tta_pack_block(lab, D, col, j0, w, lp);
                for (int64_t ip = 0; ip < nmp; ip++) {
                    /* the panel's block: [w][MR] at (panel index * L + j0) * MR */
                    const int64_t at = ((r0 / MR + ip) * L + j0) * MR;
                    double *e64 = panel ? (rows ? rows + at : NULL) : eb;
                    float *e32 = panel && rows32 ? rows32 + at : NULL;
                    block_product(ap + ip * MR * D, lpb, np, w, D, sb, mx);
                    tta_fold(sb, mx, j0, w, bnd, NA, invT, pb + ip * MR, ld, e64, e32, stream);
                    if (!want_rows) continue;
                    const int64_t i1 = nr - ip * MR < MR ? nr - ip * MR : MR;
                    if (fuse) { /* the values the rows hold */
                        for (int64_t k = selb[b]; k < selb[b + 1]; k++) {
                            const int64_t c = p->sel_pairs[2 * k] - j0, o = p->sel_pairs[2 * k + 1];
                            double *so = p->sel_out + (r0 + ip * MR) * p->n_sel + o;
                            for (int64_t i = 0; i < i1; i++)
                                so[i * p->n_sel] = e32 ? (double)e32[c * MR + i] : e64[c * MR + i];
                        }
                    }
                    if (panel) {
                        continue;
                    } else if (col && !p->packed_rows) {
                        for (int64_t i = 0; i < i1; i++) {
                            double *row = rows + (r0 + ip * MR + i) * L;
                            for (int64_t j = 0; j < w; j++) row[col[j0 + j]] = eb[j * MR + i];
                        }
                    } else {
                        tta_write_rows(eb, w, rows + (r0 + ip * MR) * L, L, j0, i1);
                    }
                }
                if (stream) _mm_sfence(); /* the streamed rows visible to every thread */
                dnm_tick_done(tick, tick_ctx, &done, total, &stop, err);
            }
#pragma omp for schedule(static)
            for (int64_t ip = 0; ip < nmp; ip++) {
                if (stop || !ok) continue;
                tta_combine(pairs + ip * MR, nblocks, NA, ld, invT, S);
                const int64_t i1 = nr - ip * MR < MR ? nr - ip * MR : MR;
                for (int64_t i = 0; i < i1; i++) {
                    const int64_t r = r0 + ip * MR + i;
                    double tot = 0.0;
                    for (int64_t a = 0; a < NA; a++) tot += S[a * MR + i];
                    const double inv = 1.0 / tot;
                    if (id_mass) id_mass[r] = S[i] * inv;
                    if (group_mass && !gather)
                        for (int64_t g = 0; g < G; g++) group_mass[r * G + g] = S[(1 + g) * MR + i] * inv;
                    if (!want_rows) continue;
                    double *row = rows ? rows + r * L : NULL; /* (float rows: scales only) */
                    for (int64_t b = 0; b < nblocks; b++) {
                        const double c = pairs[b * (NA + 1) * ld + ip * MR + i] * inv;
                        const int64_t j0 = b * LB, j1 = j0 + LB < L ? j0 + LB : L;
                        if (fuse) {
                            double *so = p->sel_out + r * p->n_sel;
                            for (int64_t k = selb[b]; k < selb[b + 1]; k++)
                                so[p->sel_pairs[2 * k + 1]] *= c; /* e c, as the rows' values */
                        }
                        if (scales) {
                            scales[r * nblocks + b] = c;
                        } else if (col && !p->packed_rows) {
                            for (int64_t j = j0; j < j1; j++) row[col[j]] *= c;
                        } else {
                            for (int64_t j = j0; j < j1; j++) row[j] *= c;
                        }
                    }
                    if (group_mass && gather) { /* 8 fixed lanes, as the BLAS tiles */
                        const double *zn = row + C;
                        for (int64_t g = 0; g < G; g++) {
                            const int64_t *ix = p->index + g * Q;
                            double acc[8] = {0};
                            int64_t q = 0;
                            for (; q + 8 <= Q; q += 8)
                                for (int l = 0; l < 8; l++) acc[l] += zn[ix[q + l]];
                            for (int l = 0; q < Q; q++, l++) acc[l] += zn[ix[q]];
                            double sg = 0.0;
                            for (int l = 0; l < 8; l++) sg += acc[l];
                            group_mass[r * G + g] = sg;
                        }
                    }
                }
            }
        }
        free(lp);
        free(sb);
        free(eb);
        free(S);
    }
    if (p->n_sel > 0 && !fuse && err->code == DNM_OK) /* rows in the labels' own order */
        for (int64_t i = 0; i < N; i++)
            for (int64_t k = 0; k < p->n_sel; k++)
                p->sel_out[i * p->n_sel + k] = rows[i * L + p->sel[k]];
out:
    free(selb);
    free(bnd);
    free(xb);
    free(ap);
    free(pairs);
    if (err->code == DNM_OK && tick && tick(tick_ctx, total, total)) err->code = DNM_ECANCEL;
    return err->code;
}

#if W == 8
/* ---- TANL's panel consumers on AVX2 (dnm_tta_masked_means / dnm_tta_copy_rows, tta.h, for
 * rows in panels of mr images, mr a multiple of 8): a panel's 8 columns x 8 images are loaded
 * (8 floats of one column each, contiguous) and transposed in registers, so each image's 8
 * consecutive columns come out as one vector; then each value is converted to double and
 * multiplied by its block's scale (a multiply, then an add or a rounding: the same operations,
 * in the same order per column, as the plain C loops, so the same bits). */

/* 8 columns of a panel's group of 8 images (column c's 8 floats at src + c * mr) ->
 * out[i] = image i's 8 columns */
TGT static inline void tta_t8x8(const float *src, int64_t mr, __m256 out[8])
{
    __m256 in[8];
    for (int c = 0; c < 8; c++) in[c] = _mm256_loadu_ps(src + c * mr);
    const __m256 a0 = _mm256_unpacklo_ps(in[0], in[1]), a1 = _mm256_unpackhi_ps(in[0], in[1]);
    const __m256 a2 = _mm256_unpacklo_ps(in[2], in[3]), a3 = _mm256_unpackhi_ps(in[2], in[3]);
    const __m256 a4 = _mm256_unpacklo_ps(in[4], in[5]), a5 = _mm256_unpackhi_ps(in[4], in[5]);
    const __m256 a6 = _mm256_unpacklo_ps(in[6], in[7]), a7 = _mm256_unpackhi_ps(in[6], in[7]);
    const __m256 b0 = _mm256_shuffle_ps(a0, a2, 0x44), b1 = _mm256_shuffle_ps(a0, a2, 0xEE);
    const __m256 b2 = _mm256_shuffle_ps(a1, a3, 0x44), b3 = _mm256_shuffle_ps(a1, a3, 0xEE);
    const __m256 b4 = _mm256_shuffle_ps(a4, a6, 0x44), b5 = _mm256_shuffle_ps(a4, a6, 0xEE);
    const __m256 b6 = _mm256_shuffle_ps(a5, a7, 0x44), b7 = _mm256_shuffle_ps(a5, a7, 0xEE);
    out[0] = _mm256_permute2f128_ps(b0, b4, 0x20);
    out[1] = _mm256_permute2f128_ps(b1, b5, 0x20);
    out[2] = _mm256_permute2f128_ps(b2, b6, 0x20);
    out[3] = _mm256_permute2f128_ps(b3, b7, 0x20);
    out[4] = _mm256_permute2f128_ps(b0, b4, 0x31);
    out[5] = _mm256_permute2f128_ps(b1, b5, 0x31);
    out[6] = _mm256_permute2f128_ps(b2, b6, 0x31);
    out[7] = _mm256_permute2f128_ps(b3, b7, 0x31);
}

/* the scales of 8 columns from j on of one image (sc = its row of scales): block b up to
 * column bend (exclusive), block b + 1 after it (a block is 42 columns or more) */
TGT static inline void tta_scales8(const double *sc, int64_t b, int64_t j, int64_t bend,
                                   __m256d *f0, __m256d *f1)
{
    if (j + 8 <= bend) {
        *f0 = *f1 = _mm256_set1_pd(sc[b]);
    } else {
        double t[8];
        for (int q = 0; q < 8; q++) t[q] = sc[j + q < bend ? b : b + 1];
        *f0 = _mm256_loadu_pd(t);
        *f1 = _mm256_loadu_pd(t + 4);
    }
}

/* The masked means' sums of columns [j0, j1) (relative to off) into a1 / a2 (zeroed here),
 * rows in order; the columns past the last full group of 8 are left to the caller (returned:
 * the first such column).  Per panel and group of 8 columns the sums stay in registers
 * while the panel's images are added in order. */
TGT int64_t SIMD_FN(dnm_tta_panel_sums)(const float *rows, int64_t mr, const double *scales,
                                        int64_t N, int64_t L, int64_t lb, int64_t off,
                                        const unsigned char *flag, int64_t j0, int64_t j1,
                                        double *a1, double *a2)
{
    const int64_t nb = (L + lb - 1) / lb, jend = j0 + (j1 - j0) / 8 * 8;
    for (int64_t j = 0; j < j1 - j0; j++) a1[j] = a2[j] = 0.0;
    for (int64_t p = 0; p * mr < N; p++) {
        const int64_t i0 = p * mr, ni = N - i0 < mr ? N - i0 : mr;
        int any = 0;
        for (int64_t q = 0; q < ni; q++) any |= flag[i0 + q] == 1 || flag[i0 + q] == 2;
        if (!any) continue;
        int64_t b = (off + j0) / lb, bend = (b + 1) * lb - off; /* bend: relative to off */
        for (int64_t j = j0; j < jend; j += 8) {
            if (j >= bend) b++, bend += lb;
            __m256d s10 = _mm256_loadu_pd(a1 + j - j0), s11 = _mm256_loadu_pd(a1 + j - j0 + 4);
            __m256d s20 = _mm256_loadu_pd(a2 + j - j0), s21 = _mm256_loadu_pd(a2 + j - j0 + 4);
            const float *src = rows + (p * L + off + j) * mr;
            for (int64_t g = 0; g < ni; g += 8) { /* images i0 + g .. + 7 */
                __m256 v[8];
                tta_t8x8(src + g, mr, v);
                for (int64_t q = 0; q < 8 && g + q < ni; q++) {
                    const int64_t i = i0 + g + q;
                    const int fl = flag[i];
                    if (fl != 1 && fl != 2) continue;
                    __m256d f0, f1;
                    tta_scales8(scales + i * nb, b, j, bend, &f0, &f1);
                    const __m256d x0 = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(v[q])), f0);
                    const __m256d x1 = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(v[q], 1)), f1);
                    if (fl == 1) {
                        s10 = _mm256_add_pd(s10, x0);
                        s11 = _mm256_add_pd(s11, x1);
                    } else {
                        s20 = _mm256_add_pd(s20, x0);
                        s21 = _mm256_add_pd(s21, x1);
                    }
                }
            }
            _mm256_storeu_pd(a1 + j - j0, s10);
            _mm256_storeu_pd(a1 + j - j0 + 4, s11);
            _mm256_storeu_pd(a2 + j - j0, s20);
            _mm256_storeu_pd(a2 + j - j0 + 4, s21);
        }
    }
    SIMD_LEAVE();
    return jend;
}

/* Row copies of columns [j0, j1) (relative to off): dst row dst_row[k] = P[src[k]] (rounded to
 * nearest float when f32; the dst rows distinct); returns the first column left to the caller
 * (past the last full group of 8).  order: the k sorted by src, so that each panel's columns
 * are read once (8 columns x 8 images transposed) for all of its copies. */
TGT int64_t SIMD_FN(dnm_tta_panel_copy)(const float *rows, int64_t mr, const double *scales,
                                        int64_t L, int64_t lb, int64_t off, const int64_t *src,
                                        const int64_t *dst_row, int64_t n, void *dst, int f32,
                                        int64_t j0, int64_t j1, const int64_t *order)
{
    const int64_t nb = (L + lb - 1) / lb, K = L - off, jend = j0 + (j1 - j0) / 8 * 8;
    int64_t grp[64], lane[64]; /* per copy of a panel (mr <= 64 here) */
    const double *scp[64];
    float *d32[64];
    double *d64[64];
    for (int64_t u = 0; u < n;) {
        const int64_t p = src[order[u]] / mr;
        int64_t w = u;
        while (w < n && w - u < 64 && src[order[w]] / mr == p) w++; /* copies from panel p */
        for (int64_t x = u; x < w; x++) {
            const int64_t k = order[x], i = src[k];
            grp[x - u] = i % mr / 8 * 8;
            lane[x - u] = i % 8;
            scp[x - u] = scales + i * nb;
            d32[x - u] = f32 ? (float *)dst + dst_row[k] * K : NULL;
            d64[x - u] = f32 ? NULL : (double *)dst + dst_row[k] * K;
        }
        int64_t b = (off + j0) / lb, bend = (b + 1) * lb - off;
        for (int64_t j = j0; j < jend; j += 8) {
            if (j >= bend) b++, bend += lb;
            const float *s = rows + (p * L + off + j) * mr;
            for (int64_t x = 0; x < w - u;) {
                const int64_t g = grp[x];
                __m256 v[8];
                tta_t8x8(s + g, mr, v);
                for (; x < w - u && grp[x] == g; x++) {
                    __m256d f0, f1;
                    tta_scales8(scp[x], b, j, bend, &f0, &f1);
                    const __m256 r = v[lane[x]];
                    const __m256d y0 = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_castps256_ps128(r)), f0);
                    const __m256d y1 = _mm256_mul_pd(_mm256_cvtps_pd(_mm256_extractf128_ps(r, 1)), f1);
                    if (f32) {
                        _mm256_storeu_ps(d32[x] + j,
                                         _mm256_set_m128(_mm256_cvtpd_ps(y1), _mm256_cvtpd_ps(y0)));
                    } else {
                        _mm256_storeu_pd(d64[x] + j, y0);
                        _mm256_storeu_pd(d64[x] + j + 4, y1);
                    }
                }
            }
        }
        u = w;
    }
    SIMD_LEAVE();
    return jend;
}
#endif
